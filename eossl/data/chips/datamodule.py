"""Lightning DataModule over a scene index + window sampler, reading live or from a chip cache.

Batches are dicts: ``image`` (B, C, H, W) float32 reflectance, ``mask`` (B, H, W) bool, ``bands`` (list of C
names), ``time`` (list of ISO strings / None), ``bounds`` (B, 4) float64, ``crs`` (list), ``acquisition`` (list),
``label`` (B,) long; seasonal pairs add ``image2``, ``mask2``, ``time2``. Normalisation and augmentation happen
on the device after transfer (not here).

Under DDP, samplers shard windows by rank themselves: build the Trainer with ``use_distributed_sampler=False``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from eossl.catalog.index import SceneIndex, open_index
from eossl.data.chips.cache import CachedChipDataset
from eossl.data.chips.config import DataConfig, make_sampler
from eossl.data.chips.dataset import ChipDataset, Collate
from eossl.data.chips.resumable import ResumableLoader, SkippableSampler
from eossl.data.chips.samplers import dist_info
from eossl.data.reader import ChipReader

__all__ = ["ChipDataModule", "ShuffledIndexSampler"]


class ShuffledIndexSampler(Sampler[int]):
    """Seeded per-epoch permutation of ``range(n)``, sharded by DDP rank (for cached chips)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool = True):
        self.n, self.seed, self.shuffle, self.drop_last = n, seed, shuffle, drop_last
        self.rank, self.world_size = dist_info(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        n = (self.n // self.world_size) * self.world_size if self.drop_last and self.world_size > 1 else self.n
        return order[self.rank:n:self.world_size]

    def __iter__(self):
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._order())


class ChipDataModule(L.LightningDataModule):
    """Train batches from ``cfg`` (live reads, or the cache in ``cfg.cache`` when given)."""

    def __init__(self, cfg: DataConfig, index: SceneIndex | None = None):
        super().__init__()
        self.cfg = cfg
        self.index = index
        self.reader: ChipReader | None = None
        self.sampler = None
        self.dataset = None

    @property
    def bands(self) -> list[str]:
        self.setup()
        return list(self.reader.bands)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        cfg = self.cfg
        if self.index is None:
            self.index = open_index(cfg.index, root=cfg.root)
        rank, world = self._dist()
        self.reader = ChipReader(self.index, cfg.bands, cfg.resampling)
        if cfg.cache:
            window_sampler = make_sampler(self.index, cfg.sampler, rank=0, world_size=1)
            self.dataset = CachedChipDataset(cfg.cache, self.index, window_sampler, self.reader)
            self.sampler = ShuffledIndexSampler(len(self.dataset), cfg.sampler.seed, rank=rank, world_size=world)
        else:
            self.sampler = make_sampler(self.index, cfg.sampler, rank=rank, world_size=world)
            self.dataset = ChipDataset(self.reader)

    def _dist(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return dist_info()

    def train_dataloader(self) -> DataLoader:
        """A :class:`ResumableLoader`: its position in the epoch is saved with checkpoints."""
        self.setup()
        cfg = self.cfg
        return ResumableLoader(self.dataset, batch_size=cfg.batch_size, sampler=SkippableSampler(self.sampler),
                          num_workers=cfg.num_workers, pin_memory=cfg.pin_memory and torch.cuda.is_available(),
                          collate_fn=Collate(self.reader.bands), persistent_workers=cfg.num_workers > 0,
                          drop_last=False)
