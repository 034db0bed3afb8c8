"""Checkpoints that survive a kill: atomic writes, and a data loader that resumes mid-epoch where it stopped.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same directory and renames it
  over the target, so a kill while saving leaves the previous ``last.ckpt`` intact.
* :class:`eossl.data.resumable.ResumableLoader` is a ``DataLoader`` with ``state_dict``/``load_state_dict`` (Lightning stores it in the
  checkpoint): it records how many batches of the current epoch were trained, and after a resume its sampler
  skips exactly those, so the resumed run sees the same batches as an uninterrupted one.
* :class:`LoaderProgress` is the callback that tells the loader which batch was trained last.

Together with per-step reseeding of the augmentations (``SSLModule``) a resumed run reaches the same parameters
as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from eossl.data.chips.resumable import ResumableLoader

__all__ = ["AtomicCheckpointIO", "LoaderProgress", "last_checkpoint", "CHECKPOINT_DIR", "LAST"]

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.tmp-<pid>`` beside the target, then ``os.replace`` (atomic on POSIX)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)  # object stores: rely on the store
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class LoaderProgress(L.Callback):
    """Keeps :attr:`ResumableLoader.batches_done` equal to the batches trained so far in the current epoch.

    Lightning runs checkpoint callbacks after all others, so a checkpoint saved at the end of a batch sees the
    count including that batch.
    """

    @staticmethod
    def _loaders(trainer: L.Trainer) -> list[ResumableLoader]:
        loader = trainer.fit_loop._combined_loader
        flat = loader.flattened if loader is not None else []
        return [dl for dl in flat if isinstance(dl, ResumableLoader)]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        for dl in self._loaders(trainer):
            dl.batches_done = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for dl in self._loaders(trainer):
            dl.batches_done = batch_idx + 1


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """``RUN_DIR/checkpoints/last.ckpt`` if it exists."""
    path = Path(run_dir) / CHECKPOINT_DIR / LAST
    return path if path.is_file() else None
