"""What pretraining asks of the online probe. The probe is evaluation during training and lives a layer above
(:mod:`eossl.evaluate.online_probe`); its caller (``eossl pretrain``'s ``run``) builds it and hands it to
:func:`eossl.train.pretrain.pretrain`, so train/ runs it without importing evaluation code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import lightning as L

    from eossl.data.normalization import Normalization

__all__ = ["ProbeHook", "ProbeCallback"]


class ProbeCallback(Protocol):
    """A Lightning callback that also says how long it ran (kept out of the training throughput)."""

    @property
    def attempt_seconds(self) -> float: ...


class ProbeHook(Protocol):
    """The online probe of one run (:class:`eossl.evaluate.online_probe.ProbeSetup`)."""

    def prepare(self) -> None:
        """On rank 0, before the run directory is written: read and check the labelled data (fail early)."""

    def callback(self, norm: Normalization, run_dir: Path) -> L.Callback | ProbeCallback:
        """The trainer's callback, once the corpus normalisation ``norm`` is known (on every rank)."""
