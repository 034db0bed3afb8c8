"""Separable resampling of an axis-aligned source block onto a target pixel grid, nodata-aware.

For windows in the file's own CRS, resampling a 20 m or 60 m band onto a 10 m grid is separable:
``out = Wy @ src @ Wx.T`` with 1-D weight matrices. Invalid source pixels get weight zero and the weights are
renormalised (normalised convolution), so nodata never bleeds into valid pixels. The output pixel is valid when
the source pixel under its centre is valid. Weights are exactly 0/1 when grids align, so aligned reads are exact.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

__all__ = ["Method", "METHODS", "axis_weights", "resample_block"]

Method = Literal["nearest", "bilinear", "average"]
METHODS = ("nearest", "bilinear", "average")
_EPS = 1e-6


def axis_weights(start: float, length: float, n_out: int, n_src: int, method: str) -> np.ndarray:
    """(n_out, n_src) weights along one axis (read-only; cached, as windows snapped to a grid repeat them).

    Output pixel j covers source coordinates ``[start + j*s, start + (j+1)*s]`` with ``s = length / n_out``;
    source pixel i covers ``[i, i+1]`` (edge coordinates relative to the block's first pixel).
    """
    return _axis_weights(round(start, 9), round(length, 9), n_out, n_src, method)


@lru_cache(maxsize=4096)
def _axis_weights(start: float, length: float, n_out: int, n_src: int, method: str) -> np.ndarray:
    s = length / n_out
    w = np.zeros((n_out, n_src), dtype=np.float32)
    j = np.arange(n_out)
    centre = start + (j + 0.5) * s
    if method == "nearest":
        idx = np.clip(np.floor(centre + _EPS).astype(int), 0, n_src - 1)
        w[j, idx] = 1.0
    elif method == "bilinear":
        u = centre - 0.5
        i0 = np.floor(u + _EPS).astype(int)
        f = np.where(np.abs(u - i0) < _EPS, 0.0, u - i0)
        lo = np.clip(i0, 0, n_src - 1)
        hi = np.clip(i0 + 1, 0, n_src - 1)
        np.add.at(w, (j, lo), (1.0 - f).astype(np.float32))
        np.add.at(w, (j, hi), f.astype(np.float32))
    elif method == "average":
        a = start + j * s
        b = a + s
        i = np.arange(n_src)
        overlap = np.clip(np.minimum(b[:, None], i[None, :] + 1) - np.maximum(a[:, None], i[None, :]), 0, None)
        total = overlap.sum(axis=1, keepdims=True)
        w[:] = np.where(total > 0, overlap / np.maximum(total, _EPS), 0.0)
    else:
        raise ValueError(f"unknown resampling method {method!r}; allowed: {', '.join(METHODS)}")
    w.setflags(write=False)
    return w


def is_identity(start: float, length: float, n_out: int) -> bool:
    """True when the output grid is the source grid shifted by a whole number of pixels."""
    return abs(length / n_out - 1.0) < _EPS and abs(start - round(start)) < _EPS


def resample_block(src: np.ndarray, valid: np.ndarray, y: tuple[float, float], x: tuple[float, float],
                   out_shape: tuple[int, int], method: str) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``src`` (h, w) with validity ``valid`` onto ``out_shape``.

    ``y`` and ``x`` are ``(start, length)`` of the output extent in source-pixel edge coordinates.
    Returns ``(values float32 (H, W), valid bool (H, W))``; invalid outputs hold 0.
    """
    h_out, w_out = out_shape
    if is_identity(y[0], y[1], h_out) and is_identity(x[0], x[1], w_out):
        r, c = round(y[0]), round(x[0])
        vals = src[r:r + h_out, c:c + w_out].astype(np.float32)
        ok = valid[r:r + h_out, c:c + w_out].copy()
        vals[~ok] = 0.0
        return vals, ok
    wy = axis_weights(y[0], y[1], h_out, src.shape[0], method)
    wx = axis_weights(x[0], x[1], w_out, src.shape[1], method)
    if valid.all():  # the common case: no nodata in the block, so no renormalisation
        return (wy @ src.astype(np.float32) @ wx.T).astype(np.float32, copy=False), np.ones(out_shape, dtype=bool)
    vf = valid.astype(np.float32)
    data = np.where(valid, src, 0).astype(np.float32)
    num = wy @ data @ wx.T
    den = wy @ vf @ wx.T
    ny = axis_weights(y[0], y[1], h_out, src.shape[0], "nearest")
    nx = axis_weights(x[0], x[1], w_out, src.shape[1], "nearest")
    ok = ((ny @ vf @ nx.T) > 0.5) & (den > _EPS)
    out = np.zeros(out_shape, dtype=np.float32)
    np.divide(num, den, out=out, where=ok)
    return out, ok
