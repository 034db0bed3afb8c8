"""Feature baselines that need no network: per-band statistics of each chip.

A linear probe on these is the floor any learned representation must beat: on EuroSAT much of the class signal is
in the spectrum alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["band_statistics"]

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
