"""Supervised training of a segmentation model: a backbone + decoder fine-tuned on label-raster chips
(:mod:`eossl.data.labelled.rasters`); :mod:`eossl.evaluate.segmentation` scores what it returns.

``norm``: the :class:`~eossl.data.normalization.Normalization` of the chips' bands (reflectance units).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from eossl.data.labelled.rasters import SegmentationChips
from eossl.data.normalization import Normalization
from eossl.models.classifier import Classifier

__all__ = ["chip_indices", "train_segmentation"]


def _augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-sample flips and (square chips) 90-degree rotations of images (B, C, H, W) and labels (B, H, W)."""
    n = x.shape[0]
    ks = torch.randint(0, 4 if x.shape[-1] == x.shape[-2] else 1, (n,), generator=g).tolist()
    flips = torch.randint(0, 2, (n,), generator=g).tolist()
    out = [(torch.rot90(xi, k, (1, 2)), torch.rot90(yi, k, (0, 1))) for xi, yi, k in zip(x, y, ks)]
    out = [(a.flip(-1), b.flip(-1)) if f else (a, b) for (a, b), f in zip(out, flips)]
    return torch.stack([a for a, _ in out]), torch.stack([b for _, b in out])


def chip_indices(idx, n: int, what: str) -> np.ndarray:
    """``idx`` as a flat int64 array of chip indices, checked to be non-empty and within 0..n-1."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{what} must be a non-empty list of chip indices in 0..{n - 1}, got {idx.size} indices")
    return idx


def train_segmentation(backbone: nn.Module, chips: SegmentationChips, train_idx, *, norm: Normalization, epochs: int,
                       lr: float, batch_size: int, freeze_backbone: bool = False, seed: int = 0,
                       device: str = "cpu", weight_decay: float = 1e-4, progress: bool = True) -> Classifier:
    """Fine-tune a copy of ``backbone`` + a :class:`SegmentationDecoder` on chips ``train_idx``.

    Cross-entropy ignoring -1 labels, AdamW, cosine learning rate per step, random flips / rot90. Every random
    draw (decoder init, shuffling, augmentation) comes from ``seed``. ``freeze_backbone``: only the decoder trains
    and the backbone stays in eval mode (BatchNorm statistics unchanged). Returns the model in eval mode, with
    ``history`` ({"loss": per epoch}).
    """
    idx = chip_indices(train_idx, len(chips), "train_idx")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    x_all = norm.apply(chips.images[idx], chips.valid[idx])
    y_all = torch.from_numpy(chips.labels[idx])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(copy.deepcopy(backbone), len(chips.classes), task="segment").to(device)
    if freeze_backbone:
        model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batches = _batches(len(idx), batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(batches))
    g = torch.Generator().manual_seed(seed)
    history, step = [], 0
    for _ in tqdm(range(epochs), desc="segmentation", unit="epoch", disable=not progress):
        model.train()
        if freeze_backbone:
            model.backbone.eval()
        perm, total = torch.randperm(len(idx), generator=g), 0.0
        for lo, hi in batches:
            x, y = _augment(x_all[perm[lo:hi]], y_all[perm[lo:hi]], g)
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y, ignore_index=-1, reduction="sum")
            loss = loss / (y >= 0).sum().clamp(min=1)   # mean over labelled pixels (0 when there are none)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite segmentation loss at step {step}; lower lr or check the normalisation")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, step = total + float(loss.detach()) * (hi - lo), step + 1
        history.append(total / batches[-1][1])
    model.history = {"loss": history}
    return model.eval()


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch; a trailing batch of one chip is dropped (BatchNorm needs two in training)."""
    spans = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans.pop()
    return spans
