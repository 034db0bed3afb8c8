"""The non-finite-loss guard of every pretraining loop (STYLE.md 11: a non-finite loss raises with the step number).

Used by the SSL LightningModule (:mod:`eossl.train.module`) and by pixel time-series pretraining
(:mod:`eossl.train.series_pretrain`); light on purpose (torch only), so a loop need not import Lightning for it.
"""

from __future__ import annotations

import torch

__all__ = ["NonFiniteLossError", "check_finite_loss"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


def check_finite_loss(loss: torch.Tensor, step: int, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` naming ``step`` (optimiser steps done) and ``epoch`` when the scalar
    ``loss`` is NaN or infinite; otherwise return (one host sync, as ``torch.isfinite`` needs the value)."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss.item()} at step {step} (epoch {epoch}); "
                                 f"lower the learning rate or check the input normalisation")
