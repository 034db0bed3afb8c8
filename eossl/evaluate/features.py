"""Frozen-backbone features for linear probes: normalise per band, run the model in eval mode, pool.

The pools (``"last"``, ``"multi"``, ``"statsK"``) are defined in :mod:`eossl.models.pooling`; ``POOLS`` is
re-exported here. :func:`candidate_pools` lists the pools worth comparing for an architecture (what an online
probe scores and ``weights.json`` ``feature_pool`` records the best of).
"""

from __future__ import annotations

import numpy as np
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl.data.normalization import Normalization
from eossl.models.backbones import ARCHS, RESNET_STAGES, create_backbone, is_vit
from eossl.models.pooling import POOLS, check_pool, pool_features, pool_features_many

__all__ = ["POOLS", "candidate_pools", "extract_features", "extract_pools"]


def candidate_pools(arch: str) -> list[str]:
    """Pools worth comparing for ``arch``: ResNet ``last, multi, stats0..stats4``; ViT with N blocks
    ``last, multi, stats{N//2}, stats{N}`` (an unknown ``arch`` is an error listing the known ones)."""
    ARCHS.get(arch)                                      # an unknown arch: an error listing the known ones
    if not is_vit(arch):
        return ["last", "multi", *(f"stats{k}" for k in range(RESNET_STAGES[-1] + 1))]
    with torch.device("meta"):                           # the architecture only: no memory, no init cost
        n = len(create_backbone(arch, 1).blocks)
    return ["last", "multi", f"stats{n // 2}", f"stats{n}"]


def extract_features(model: nn.Module, images: np.ndarray | torch.Tensor, norm: Normalization, pool: str = "last",
                     batch_size: int = 64, device: str | torch.device = "cpu", valid=None) -> np.ndarray:
    """(N, C, H, W) reflectance -> (N, D) float32 features of the standardised chips
    (``norm``: a :class:`~eossl.data.normalization.Normalization` of the C bands; pixels where ``valid``
    (N, H, W) is False are 0), pooled by :func:`eossl.models.pooling.pool_features`.

    The model is moved to ``device`` and run under ``torch.no_grad()`` in eval mode; its train/eval mode is restored
    afterwards. The result depends only on the model and the inputs (no randomness).
    """
    return extract_pools(model, images, norm, [pool], batch_size, device, valid)[pool]


def extract_pools(model: nn.Module, images: np.ndarray | torch.Tensor, norm: Normalization, pools: list[str],
                  batch_size: int = 64, device: str | torch.device = "cpu", valid=None) -> dict[str, np.ndarray]:
    """``{pool: (N, D) float32}``: :func:`extract_features` for several pools, from one forward pass per batch
    (timm ResNet and ViT: ``forward_intermediates`` at every depth the pools need; other models: one pass per
    pool). 5-7x cheaper than one call per pool for a ResNet's candidate pools."""
    for pool in pools:
        check_pool(model, pool)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, C, H, W) with N > 0, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    one_pass = isinstance(model, (ResNet, VisionTransformer)) and pools != ["last"]
    was_training = model.training
    model.to(device).eval()
    out: dict[str, list[np.ndarray]] = {p: [] for p in pools}
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = torch.as_tensor(images[start:start + batch_size]).to(device=device, dtype=torch.float32)
                x = norm.apply(x, None if valid is None else torch.as_tensor(valid[start:start + batch_size]))
                feats = (pool_features_many(model, x, pools) if one_pass
                         else {p: pool_features(model, x, p) for p in pools})
                for pool, f in feats.items():
                    out[pool].append(f.float().cpu().numpy())
    finally:
        model.train(was_training)
    return {p: np.concatenate(v) for p, v in out.items()}
