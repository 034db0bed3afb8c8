"""Feature baselines that need no training: per-band statistics of each chip, and random convolutional features.

A linear probe on these is the floor any learned representation must beat: on EuroSAT much of the class signal is
in the spectrum alone, and random convolutional features with filters drawn from the data (MOSAIKS) add texture.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["band_statistics", "rcf_features", "RCF_FEATURES"]

RCF_FEATURES = 512   # MOSAIKS-style feature count of GEO-Bench's random-convolution baseline

_CHUNK = 256   # chips per vectorised step: bounds the (chunk, C, H*W) float64 temporary


def band_statistics(images: np.ndarray, mask: np.ndarray | None = None,
                    percentiles: tuple[float, ...] = (5, 25, 50, 75, 95)) -> np.ndarray:
    """(N, C, H, W) images, (N, H, W) valid mask -> (N, C * (2 + P)) float64 features.

    Per chip and band, over valid pixels: mean, std (ddof=0) and the ``percentiles`` (numpy's linear method),
    laid out band by band: ``[b0 mean, b0 std, b0 p5, ..., b1 mean, ...]``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    if mask is not None and mask.shape != (n, h, w):
        raise ValueError(f"mask must be (N, H, W) = {(n, h, w)}, got {mask.shape}")
    if any(not 0 <= p <= 100 for p in percentiles):
        raise ValueError(f"percentiles must lie in [0, 100], got {tuple(percentiles)}")
    if mask is not None:
        empty = np.flatnonzero(~mask.reshape(n, -1).any(axis=1))
        if empty.size:
            raise ValueError(f"chip(s) {empty[:10].tolist()}{' ...' if empty.size > 10 else ''} have no valid "
                             f"pixel; drop them before computing band statistics")
    out = np.empty((n, c, 2 + len(percentiles)), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        x = images[start:start + _CHUNK].reshape(-1, c, h * w).astype(np.float64)
        if mask is None or mask[start:start + _CHUNK].all():
            out[start:start + _CHUNK] = _stats(x, percentiles, np.mean, np.std, np.percentile)
        else:
            valid = mask[start:start + _CHUNK].reshape(-1, 1, h * w)
            x = np.where(valid, x, np.nan)
            out[start:start + _CHUNK] = _stats(x, percentiles, np.nanmean, np.nanstd, np.nanpercentile)
    return out.reshape(n, -1)


def _stats(x: np.ndarray, percentiles, mean, std, percentile) -> np.ndarray:
    """(B, C, P) -> (B, C, 2 + len(percentiles)) using the given (nan-aware or plain) reductions."""
    parts = [mean(x, axis=2)[..., None], std(x, axis=2)[..., None]]
    if len(percentiles):
        parts.append(np.moveaxis(percentile(x, list(percentiles), axis=2), 0, -1))
    return np.concatenate(parts, axis=2)


def rcf_features(images: np.ndarray, source: np.ndarray, mean, std, features: int = RCF_FEATURES,
                 kernel_size: int = 3, bias: float = -1.0, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Random convolutional features (MOSAIKS; Rolf et al., Nature Communications 2021) with torchgeo's ``RCF``.

    ``images`` (N, C, H, W) and ``source`` (M, C, H, W) are reflectance; both are standardised with ``mean`` /
    ``std`` (C,). The ``features // 2`` filters are ``kernel_size`` patches drawn from ``source`` (ZCA-whitened by
    torchgeo): pass unlabeled corpus chips or the training split, never test chips. Each filter gives the mean of
    ``relu(conv - bias)`` and of its negative part: (N, features) float32. Deterministic for a ``seed``.
    """
    from torchgeo.models import RCF

    if images.ndim != 4 or source.ndim != 4 or images.shape[1] != source.shape[1]:
        raise ValueError(f"images and source must be (N, C, H, W) with the same C, got {images.shape} and "
                         f"{source.shape}")
    if features < 2 or features % 2:
        raise ValueError(f"features must be an even number >= 2, got {features}")
    if min(source.shape[-2:]) <= kernel_size:
        raise ValueError(f"source chips of {source.shape[-2:]} px are too small for {kernel_size} px filters")
    c = images.shape[1]
    m = torch.as_tensor(np.asarray(mean, np.float32)).view(1, c, 1, 1)
    s = torch.as_tensor(np.asarray(std, np.float32)).view(1, c, 1, 1)
    norm = [{"image": ((torch.as_tensor(x[None], dtype=torch.float32) - m) / s)[0]} for x in source]
    # torchgeo seeds its generator only for a non-zero seed; seed + 1 keeps seed 0 distinct from "unseeded"
    model = RCF(in_channels=c, features=features, kernel_size=kernel_size, bias=bias, seed=seed + 1,
                mode="empirical", dataset=norm)
    out = [model((torch.as_tensor(images[i:i + batch_size], dtype=torch.float32) - m) / s).numpy()
           for i in range(0, images.shape[0], batch_size)]
    return np.concatenate(out).astype(np.float32)
