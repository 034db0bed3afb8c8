"""Per-field, per-date features and their aggregation over dates.

* :func:`field_features`: the frozen backbone's feature map of each (field, date) chip, averaged over the cells
  the field covers -> (N, T, D), plus which dates count (N, T).
* :func:`mean_over_dates`: the average over a field's valid dates -> (N, D), for a logistic regression.
* :func:`predict_attention` / :func:`predict_ltae`: the classes that a temporal head
  (:class:`~eossl.models.field_heads.TemporalAttention`: a learned query attends over the valid dates, features +
  a learned embedding of the month or date position, then a linear classifier; or torchgeo's L-TAE) predicts;
  :mod:`eossl.train.heads` fits them.
* :func:`field_band_statistics`: the no-network baseline, per-band statistics over the field's pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl.data.labelled.fields import FieldSeries
from eossl.data.normalization import Normalization
from eossl.evaluate.baselines import band_statistics
from eossl.models.backbones import feature_maps
from eossl.models.field_heads import TemporalAttention, ltae_inputs

__all__ = ["POOLS", "field_features", "mean_over_dates", "date_positions", "predict_attention", "predict_ltae",
           "field_band_statistics"]

POOLS = ("mean", "meanstd")


def field_features(backbone: nn.Module, series: FieldSeries, norm: Normalization, pool: str = "mean",
                   level: int | None = None,
                   batch_size: int = 64, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(N, T, D) float32 features (``meanstd``: (N, T, 2D)) and the (N, T) date-valid mask of ``series``.

    Chips are standardised with ``norm`` (:class:`~eossl.data.normalization.Normalization`), invalid pixels 0. Feature maps
    (``level`` None: the last one, :func:`eossl.models.backbones.feature_maps`; an int: ResNet stage 0 (stem) ..
    4, or ViT block 1..depth, whose finer maps resolve small fields; ViT tokens are laid back onto their grid;
    a ResNet-18's last map of a 32 px chip is a single cell, the whole chip) are averaged over the
    cells at least half covered by the field (area fractions of the field mask); when no cell is (a field smaller
    than a cell), over the cells it touches weighted by the area it covers in each: for a field inside one cell,
    that cell. Features of invalid dates are 0. Eval mode and ``torch.no_grad()``; deterministic.
    """
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
    n, t, c, h, w = series.images.shape
    flat = series.images.reshape(n * t, c, h, w)
    ok = series.valid.reshape(n * t, h, w)
    cover = np.repeat(series.field_mask, t, axis=0)                              # (N*T, H, W)
    was_training = backbone.training
    backbone.to(device).eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, n * t, batch_size):
                x = norm.apply(torch.as_tensor(flat[s:s + batch_size]), torch.as_tensor(ok[s:s + batch_size]))
                fmap = _grid(_feature_map(backbone, x.to(device), level), h, w).float().cpu()
                out.append(_masked_pool(fmap, torch.as_tensor(cover[s:s + batch_size]), pool))
    finally:
        backbone.train(was_training)
    feats = torch.cat(out).numpy().reshape(n, t, -1)
    feats[~series.date_valid] = 0.0
    return feats, series.date_valid.copy()


def _feature_map(backbone: nn.Module, x: torch.Tensor, level: int | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, D, h, w) map or (B, L, D) patch tokens, of the last layer or of ``level``."""
    if level is None:
        return feature_maps(backbone, x)
    if isinstance(backbone, ResNet) and 0 <= level <= 4:
        return backbone.forward_intermediates(x, indices=[level], intermediates_only=True)[0]
    if isinstance(backbone, VisionTransformer) and 1 <= level <= len(backbone.blocks):
        return backbone.forward_intermediates(x, indices=[level - 1], norm=True, output_fmt="NLC",
                                              intermediates_only=True)[0]
    raise ValueError(f"feature level {level} does not exist in a {type(backbone).__name__}: ResNet levels are "
                     f"0 (stem) .. 4, ViT levels 1 .. number of blocks; None takes the last feature map")


def _grid(fmap: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, D, h', w') maps as they are; (B, L, D) tokens -> (B, D, gh, gw) with gh / gw = h / w."""
    if fmap.ndim == 4:
        return fmap
    b, length, d = fmap.shape
    gh = round(math.sqrt(length * h / w))
    gw = length // max(gh, 1)
    if gh * gw != length:
        raise ValueError(f"cannot lay {length} tokens onto a grid with the chip's aspect {h}x{w}")
    return fmap.transpose(1, 2).reshape(b, d, gh, gw)


def _masked_pool(fmap: torch.Tensor, cover: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, D, h, w) map, (B, H, W) bool field mask -> (B, D) (or (B, 2D)) average over the field's cells."""
    b, d, gh, gw = fmap.shape
    frac = nn.functional.adaptive_avg_pool2d(cover[:, None].float(), (gh, gw)).reshape(b, -1)   # (B, h*w)
    weight = (frac >= 0.5).float()
    empty = weight.sum(dim=1) == 0
    weight[empty] = frac[empty]                 # no cell half covered: the covered cells, weighted by area
    weight = weight / weight.sum(dim=1, keepdim=True)
    cells = fmap.reshape(b, d, -1)                                               # (B, D, h*w)
    avg = torch.einsum("bdl,bl->bd", cells, weight)
    if pool == "mean":
        return avg
    var = torch.einsum("bdl,bl->bd", (cells - avg[:, :, None]) ** 2, weight)
    return torch.cat([avg, var.clamp_min(0).sqrt()], dim=1)


def mean_over_dates(feats: np.ndarray, date_valid: np.ndarray) -> np.ndarray:
    """(N, T, D) features, (N, T) bool -> (N, D) average over each field's valid dates (0 without any)."""
    w = date_valid.astype(np.float64)[..., None]
    return (feats * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)


def date_positions(dates) -> np.ndarray:
    """(T,) int64 positions for the date embedding: month - 1 (0..11) when every date is known, else 0..T-1."""
    if len(dates) and all(d is not None for d in dates):
        return np.array([d.month - 1 for d in dates], dtype=np.int64)
    return np.arange(len(dates), dtype=np.int64)


def predict_attention(model: TemporalAttention, feats: np.ndarray, date_valid: np.ndarray,
                      positions: np.ndarray) -> np.ndarray:
    """(N,) int64 predicted classes for (N, T, D) features."""
    with torch.no_grad():
        logits = model(torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(date_valid, dtype=torch.bool),
                       torch.as_tensor(positions, dtype=torch.int64))
    return logits.argmax(dim=1).numpy()


def predict_ltae(model: nn.Module, feats: np.ndarray, date_valid: np.ndarray) -> np.ndarray:
    """(N,) int64 predicted classes of a :func:`eossl.train.heads.fit_ltae` model."""
    with torch.no_grad():
        x = ltae_inputs(torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(date_valid, dtype=torch.bool),
                         model.mean, model.std)
        return model(x).argmax(dim=1).numpy()


def field_band_statistics(series: FieldSeries, percentiles: tuple[float, ...] = (10, 50, 90),
                          over_dates: str = "concat") -> np.ndarray:
    """Per field, date and band: mean, std and ``percentiles`` over the field's valid pixels.

    ``over_dates="concat"``: (N, T * C * (2 + P)), dates in order, so the temporal profile (what tells most crops
    apart) is kept; a field's invalid dates take the average of its valid dates. ``"mean"``: (N, C * (2 + P)),
    the average over its valid dates (a seasonal spectrum, no order).
    """
    if over_dates not in ("concat", "mean"):
        raise ValueError(f"over_dates must be 'concat' or 'mean', got {over_dates!r}")
    n, t, c, h, w = series.images.shape
    ok = series.date_valid.reshape(-1)
    pixels = (series.valid & series.field_mask[:, None]).reshape(n * t, h, w)
    stats = np.zeros((n * t, c * (2 + len(percentiles))))
    stats[ok] = band_statistics(series.images.reshape(n * t, c, h, w)[ok], pixels[ok], percentiles)
    stats = stats.reshape(n, t, -1)
    avg = mean_over_dates(stats, series.date_valid)                              # (N, F)
    if over_dates == "mean":
        return avg
    filled = np.where(series.date_valid[..., None], stats, avg[:, None, :])
    return filled.reshape(n, -1)
