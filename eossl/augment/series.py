"""Views of pixel time series for invariance objectives: a random subset of dates, a temporal shift and a
per-band spectral gain, drawn per sample from one seeded generator, as batched tensor ops.

>>> g = torch.Generator().manual_seed(0)
>>> x1, v1, d1 = series_view(x, valid, doy, g, keep=(0.5, 0.9), shift_days=15, jitter=0.1, mean=m, std=s)
>>> x2, v2, d2 = series_view(x, valid, doy, g, ...)          # a second view of the same pixels

Per sample (the draws, in this order, all from ``g``, on the CPU):

* **dates kept**: a fraction ``f ~ U(keep)`` of the sample's valid steps (a step with at least one valid band) is
  kept, ``max(1, round(f * n_valid))`` of them chosen at random; the others become invalid (``valid`` False,
  value 0, the normalisation's rule for invalid values). A sample without valid steps stays as it is.
* **temporal shift**: the day of year of every step moves by one offset ``~ U(-shift_days, shift_days)``
  (NaN, unknown, stays NaN). It is not wrapped into 1..366: the encoder reads the day of year through sin/cos of
  the season, which is periodic anyway.
* **spectral gain**: each band's reflectance is multiplied by ``1 + U(-jitter, jitter)``, one gain per sample and
  band (the same on every date: a calibration / atmosphere difference, not noise). Domain: the values are
  standardised ``(r - mean) / std`` when ``mean``/``std`` (C,) are given, and the gain is applied to the
  reflectance they stand for (``z' = g z + (g - 1) mean / std``); without them the values are taken as reflectance.
  Sentinel-1 VV/VH (dB) get the same gain on their dB values (a few dB at most at the usual jitter).

Inputs are never edited in place. Random subsets of time steps as views follow TS2Vec (Yue et al., "TS2Vec:
Towards Universal Representation of Time Series", AAAI 2022); the shift and the gain are the series analogues of
eossl's image views (a seasonal offset between years and places, a per-band gain as in
:class:`~eossl.augment.spectral.RandomBrightnessContrastMS`).
"""

from __future__ import annotations

import torch

__all__ = ["series_view", "keep_steps"]


def keep_steps(step_valid: torch.Tensor, fraction: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, T) bool: the steps kept, ``max(1, round(fraction * n_valid))`` of each sample's valid steps
    (``step_valid`` (B, T) bool, ``fraction`` (B,)) at random; never an invalid step. No valid step: none kept."""
    b, t = step_valid.shape
    scores = torch.rand(b, t, generator=g).to(step_valid.device)
    scores = torch.where(step_valid, scores, torch.full_like(scores, 2.0))          # invalid steps rank last
    rank = scores.argsort(dim=1).argsort(dim=1)                                       # 0 = first chosen
    n_valid = step_valid.sum(1)
    n_keep = torch.clamp(torch.round(fraction.to(scores.device) * n_valid).long(), min=1)
    return (rank < n_keep[:, None]) & step_valid


def series_view(x: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor, g: torch.Generator,
                keep: tuple[float, float] = (0.5, 0.9), shift_days: float = 15.0, jitter: float = 0.1,
                mean: torch.Tensor | None = None, std: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One view of a batch (see the module doc): ``x`` (B, T, C) float, ``valid`` (B, T, C) bool, ``doy`` (B, T)
    day of year (NaN unknown) -> new (x, valid, doy) of the same shapes. ``keep`` = (low, high) fractions in
    (0, 1]; ``shift_days`` >= 0; ``jitter`` in [0, 1)."""
    lo, hi = keep
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"series_view: keep must be (low, high) with 0 < low <= high <= 1, got {keep}")
    if shift_days < 0 or not 0 <= jitter < 1:
        raise ValueError(f"series_view: need shift_days >= 0 and 0 <= jitter < 1, got {shift_days}, {jitter}")
    if x.ndim != 3 or valid.shape != x.shape or doy.shape != x.shape[:2]:
        raise ValueError(f"series_view: x (B, T, C), valid like x and doy (B, T); got {tuple(x.shape)}, "
                         f"{tuple(valid.shape)}, {tuple(doy.shape)}")
    b, _, c = x.shape
    fraction = lo + (hi - lo) * torch.rand(b, generator=g)
    kept = keep_steps(valid.any(-1), fraction, g)
    shift = (2 * torch.rand(b, generator=g) - 1) * shift_days
    gain = (1 + (2 * torch.rand(b, c, generator=g) - 1) * jitter).to(x.device, x.dtype)
    out_valid = valid & kept[..., None]
    out = x * gain[:, None]
    if mean is not None or std is not None:
        if mean is None or std is None or mean.shape != (c,) or std.shape != (c,):
            raise ValueError(f"series_view: give both mean and std, each ({c},)")
        out = out + ((gain - 1) * (mean / std).to(x.device, x.dtype))[:, None]
    out = torch.where(out_valid, out, torch.zeros_like(out))
    return out, out_valid, doy + shift.to(doy.device, doy.dtype)[:, None]
