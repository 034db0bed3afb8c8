"""MiniRocket-style random convolutional features of multivariate time series: the series analogue of RCF.

Dempster, Schmidt & Webb 2021, "MiniRocket: a very fast (almost) deterministic transform for time series
classification", KDD. As there: the 84 kernels of length 9 whose weights are -1 except three 2s (every choice of
3 of the 9 positions), dilations spaced exponentially from 1 to (T - 1) / 8, a few biases per (kernel, dilation)
from quantiles of that kernel's output (quantile levels from a low-discrepancy sequence), zero padding on every
other (kernel, dilation) and none on the rest, and PPV features (proportion of positive values of output - bias
over time). Multivariate as in the paper's code: each (kernel, dilation) sums the outputs of a random subset of
channels. Here the biases come from the outputs on every pixel given to :func:`fit_minirocket` (unlabeled; at
most ``max_pixels`` of them, drawn with the seed), the seed fixes the channel subsets, and everything is numpy,
vectorised over pixels (one matrix product per dilation and block of pixels).

>>> state = fit_minirocket(x_all, n_features=2000, seed=0)     # x (N, T, C) standardised, gaps filled
>>> f = minirocket_features(x, state)                           # (N, F) in [0, 1], F close to n_features
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["KERNEL_WEIGHTS", "fit_minirocket", "minirocket_features"]

KERNEL_WEIGHTS = np.full((84, 9), -1.0, np.float32)
"""(84, 9): -1 everywhere, 2 at three positions (all 84 choices of 3 of 9); each kernel sums to 0."""
for _i, _pos in enumerate(itertools.combinations(range(9), 3)):
    KERNEL_WEIGHTS[_i, list(_pos)] = 2.0

_PHI = (math.sqrt(5) + 1) / 2
_BLOCK = 1024          # pixels per matrix product (bounds the (84, block, T) temporaries)


def _dilations(steps: int, n_features: int) -> np.ndarray:
    """Exponentially spaced integer dilations 1 .. (T - 1) / 8 (just 1 for series shorter than a kernel)."""
    top = max((steps - 1) / 8, 1.0)
    count = min(32, max(1, n_features // 84))
    return np.unique(np.floor(2.0 ** np.linspace(0, math.log2(top), count)).astype(np.int64))


def _shifted(x: np.ndarray, d: int) -> np.ndarray:
    """(9, N, T, C): ``x`` (N, T, C) at offsets (j - 4) * d, zero outside the series."""
    n, t, c = x.shape
    padded = np.pad(x, ((0, 0), (4 * d, 4 * d), (0, 0)))
    return np.stack([padded[:, j * d:j * d + t] for j in range(9)])


def _outputs(x: np.ndarray, d: int, masks: np.ndarray) -> np.ndarray:
    """(84, N, T) outputs of the 84 kernels at dilation ``d``, kernel m summed over the channels of ``masks[m]``."""
    w = KERNEL_WEIGHTS[:, :, None] * masks[:, None, :]                           # (84, 9, C)
    s = _shifted(x, d)                                                             # (9, N, T, C)
    n, t = x.shape[:2]
    flat = s.transpose(0, 3, 1, 2).reshape(9 * x.shape[2], n * t)
    return (w.reshape(84, -1) @ flat).reshape(84, n, t)


def _in_range(steps: int, d: int, padded: np.ndarray) -> np.ndarray:
    """(84, T) bool: the time positions scored per kernel (all with padding; else those whose taps all lie in
    the series, or all when there are none)."""
    inner = np.zeros(steps, bool)
    inner[4 * d: steps - 4 * d] = True
    if not inner.any():
        inner[:] = True
    return np.where(padded[:, None], True, inner[None])


def fit_minirocket(x: np.ndarray, n_features: int = 2000, seed: int = 0, max_pixels: int = 16384) -> dict:
    """Kernels, channel subsets and biases for (N, T, C) series ``x`` (standardised, no gaps): a dict of arrays
    (``dilations`` (D,), ``masks`` (D, 84, C), ``padded`` (D, 84), ``biases`` (D, 84, q)); F = D * 84 * q."""
    if x.ndim != 3:
        raise ValueError(f"minirocket: series must be (N, T, C), got shape {x.shape}")
    rng = np.random.default_rng(seed)
    n, t, c = x.shape
    dil = _dilations(t, n_features)
    q = max(1, round(n_features / (84 * len(dil))))
    pick = np.sort(rng.choice(n, size=max_pixels, replace=False)) if n > max_pixels else np.arange(n)
    sample = x[pick].astype(np.float32)
    masks = np.zeros((len(dil), 84, c), np.float32)
    padded = np.zeros((len(dil), 84), bool)
    biases = np.zeros((len(dil), 84, q), np.float32)
    for i, d in enumerate(dil):
        for m in range(84):
            size = int(np.clip(2 ** rng.uniform(0, math.log2(min(c, 9) + 1)), 1, c))
            masks[i, m, rng.choice(c, size=size, replace=False)] = 1.0
        padded[i] = (np.arange(84) + i) % 2 == 0
        out = _outputs(sample, int(d), masks[i])                                 # (84, n, T)
        keep = _in_range(t, int(d), padded[i])
        levels = ((np.arange(q)[None] + q * (np.arange(84)[:, None] + 84 * i) + 1) * _PHI) % 1    # (84, q)
        for m in range(84):
            biases[i, m] = np.quantile(out[m][:, keep[m]], levels[m])
    return {"dilations": dil, "masks": masks, "padded": padded, "biases": biases, "steps": np.array(t)}


def minirocket_features(x: np.ndarray, state: dict) -> np.ndarray:
    """(N, F) float32 PPV features of (N, T, C) series ``x`` with the kernels of :func:`fit_minirocket`; each
    pixel's features depend on that pixel only."""
    n, t, c = x.shape
    if t != int(state["steps"]) or c != state["masks"].shape[-1]:
        raise ValueError(f"minirocket: fitted on series of {int(state['steps'])} steps x {state['masks'].shape[-1]} "
                         f"channels, got {t} x {c}")
    dil, biases = state["dilations"], state["biases"]
    q = biases.shape[-1]
    out = np.empty((n, len(dil) * 84 * q), np.float32)
    for a in range(0, n, _BLOCK):
        block = x[a:a + _BLOCK].astype(np.float32)
        cols = []
        for i, d in enumerate(dil):
            conv = _outputs(block, int(d), state["masks"][i])                     # (84, b, T)
            keep = _in_range(t, int(d), state["padded"][i])                       # (84, T)
            pos = (conv[..., None] > biases[i][:, None, None, :]) & keep[:, None, :, None]
            ppv = pos.sum(axis=2) / keep.sum(axis=1)[:, None, None]               # (84, b, q)
            cols.append(ppv.transpose(1, 0, 2).reshape(len(block), -1))
        out[a:a + _BLOCK] = np.concatenate(cols, axis=1)
    return out
