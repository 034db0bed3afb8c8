"""Frozen-backbone features for linear probes: normalise per band, run the model in eval mode, pool.

Pools:

* ``"last"``: the model's own pooled output ``model(x)`` (ResNet: global average of layer4; ViT: the class token
  after the final norm, as timm's ``global_pool="token"``).
* ``"multi"``: concatenated global averages of several depths. ResNet: layer1..layer4 (64+128+256+512 = 960
  for resnet18). ViT: the mean patch token (prefix tokens excluded) of each of the last 4 blocks, each after the
  final norm as DINO's linear evaluation does (4 x 192 = 768 for ViT-Tiny). Built on timm's
  ``forward_intermediates``.
* ``"statsK"``: mean and (population) standard deviation over positions of one intermediate depth ``K`` (ResNet: 0 is the stem,
  1..4 are layer1..layer4; ViT: block K, patch tokens after the final norm): first- and second-order statistics
  of local features, the learned counterpart of the per-band statistics baseline. With few labels, early and
  middle depths of a ResNet carry the spectral information that land cover is told apart by (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl.models.backbones import multi_level

__all__ = ["POOLS", "extract_features"]

POOLS = ("last", "multi", *(f"stats{k}" for k in range(13)))   # statsK: K up to 12 (ViT blocks)


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
                if pool == "last":
                    feats = model(x)
                elif pool == "multi":
                    feats = multi_level(model, x)
                else:
                    feats = _statistics(model, x, int(pool[len("stats"):]))
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


def _statistics(model: nn.Module, x: torch.Tensor, depth: int) -> torch.Tensor:
    """(B, C, H, W) normalised -> (B, 2D): mean and std over positions of the features at ``depth``."""
    if isinstance(model, ResNet):
        (fmap,) = model.forward_intermediates(x, indices=[depth], intermediates_only=True)
        flat = fmap.flatten(2)                                    # (B, D, h*w)
    elif isinstance(model, VisionTransformer):
        if depth < 1 or depth > len(model.blocks):
            raise ValueError(f"pool 'stats{depth}': the ViT has blocks 1..{len(model.blocks)}")
        (tokens,) = model.forward_intermediates(x, indices=[depth - 1], norm=True, output_fmt="NLC",
                                                intermediates_only=True)
        flat = tokens.transpose(1, 2)                             # (B, D, L)
    else:
        raise ValueError(f"pool 'stats{depth}' supports timm ResNet and VisionTransformer backbones, not "
                         f"{type(model).__name__}; use pool='last'")
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, correction=0)], dim=1)
