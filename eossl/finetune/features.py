"""Frozen-backbone features for linear probes: normalise per band, run the model in eval mode, pool.

Pools:

* ``"last"``: the model's own pooled output ``model(x)`` (ResNet: global average of layer4; ViT: the class token
  after the final norm, as timm's ``global_pool="token"``).
* ``"multi"``: concatenated global averages of several depths. ResNet: layer1..layer4 (64+128+256+512 = 960
  for resnet18). ViT: the mean patch token (prefix tokens excluded) of each of the last 4 blocks, each after the
  final norm as DINO's linear evaluation does (4 x 192 = 768 for ViT-Tiny). Built on timm's
  ``forward_intermediates``.
"""

from __future__ import annotations

import numpy as np
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["POOLS", "VIT_LAST_BLOCKS", "extract_features"]

POOLS = ("last", "multi")
VIT_LAST_BLOCKS = 4
RESNET_STAGES = [1, 2, 3, 4]   # forward_intermediates indices: 0 is the stem, 1..4 are layer1..layer4


def extract_features(model: nn.Module, images: np.ndarray | torch.Tensor, mean, std, pool: str = "last",
                     batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """(N, C, H, W) reflectance -> (N, D) float32 features of ``(x - mean) / std`` (``mean``/``std``: (C,)).

    The model is moved to ``device`` and run under ``torch.no_grad()`` in eval mode; its train/eval mode is restored
    afterwards. The result depends only on the model and the inputs (no randomness).
    """
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    c = images.shape[1]
    mean_t = _per_band(mean, c, "mean", device)
    std_t = _per_band(std, c, "std", device)
    if not bool((std_t > 0).all()):
        raise ValueError(f"std must be > 0 for every band, got {std_t.flatten().tolist()}")
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = torch.as_tensor(images[start:start + batch_size]).to(device=device, dtype=torch.float32)
                x = (x - mean_t) / std_t
                feats = model(x) if pool == "last" else _multi_scale(model, x)
                out.append(feats.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no images to extract features from (N = 0)")
    return np.concatenate(out)


def _per_band(values, c: int, label: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values, dtype=np.float32)).flatten()
    if t.numel() != c:
        raise ValueError(f"{label} has {t.numel()} values but the images have {c} bands; give one per band")
    return t.to(device).view(1, c, 1, 1)


def _multi_scale(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised -> (B, D) concatenated pooled intermediate features (see the module docstring)."""
    if isinstance(model, ResNet):
        maps = model.forward_intermediates(x, indices=RESNET_STAGES, intermediates_only=True)
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
    if isinstance(model, VisionTransformer):
        tokens = model.forward_intermediates(x, indices=VIT_LAST_BLOCKS, norm=True, output_fmt="NLC",
                                             intermediates_only=True)   # patch tokens only, (B, L, D) each
        return torch.cat([t.mean(dim=1) for t in tokens], dim=1)
    raise ValueError(f"pool='multi' supports timm ResNet and VisionTransformer backbones, not "
                     f"{type(model).__name__}; use pool='last'")
