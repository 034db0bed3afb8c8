"""A data loader that can resume mid-epoch: its position is saved in Lightning checkpoints.

Lightning stores the ``state_dict`` of every stateful train loader in the checkpoint and hands it back on resume,
before the epoch's iterator is created; the sampler then skips the samples of the batches already trained.
The count of trained batches is kept up to date by ``eossl.train.checkpoint.LoaderProgress``.
"""

from __future__ import annotations

import itertools

from torch.utils.data import DataLoader, Sampler

__all__ = ["SkippableSampler", "ResumableLoader"]


class SkippableSampler(Sampler[int]):
    """Wraps a sampler with ``set_epoch``; can skip the first ``n`` indices of one given epoch (once)."""

    def __init__(self, base: Sampler):
        self.base = base
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def skip_once(self, epoch: int, n: int) -> None:
        self._skip = (int(epoch), int(n))

    def __iter__(self):
        skip = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            skip = self._skip[1]
            self._skip = None
        return itertools.islice(iter(self.base), skip, None)

    def __len__(self) -> int:
        return len(self.base)


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch is saved in checkpoints and restored on resume.

    Needs a :class:`SkippableSampler` as ``sampler`` and ``drop_last`` semantics that keep batch boundaries fixed
    (the position is stored in batches).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, SkippableSampler):
            raise TypeError("ResumableLoader needs a SkippableSampler")
        self.batches_done = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("batch_size") != self.batch_size:
            raise ValueError(f"the checkpoint was written with batch size {state.get('batch_size')} per device, "
                             f"this run uses {self.batch_size}; resume with the run's own config")
        self.batches_done = int(state["batches_done"])
        self.sampler.skip_once(state["epoch"], self.batches_done * self.batch_size)
