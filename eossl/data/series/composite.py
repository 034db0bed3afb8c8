"""Composites of a scene stack on a regular time grid, and the pixel series read from them.

>>> comp = composite(stack, period="month")          # median of the valid observations per month, gaps filled
>>> x = pixel_series(comp)                             # (H*W, P, C+1): every pixel, validity as the last channel

:func:`pixel_series` is the one way series leave a stack: labelled pixels, the unlabeled corpus and prediction all
call it (with their pixels' rows and columns, or none for every pixel), so the three see identical inputs.

Per pixel, band and period: the median of the valid observations (numpy's median: the mean of the two middle
values for an even count), computed for all pixels at once (one sort per period). Periods without a valid
observation are filled by linear interpolation in time between the nearest valid periods (the nearest one at the
ends of the series); a pixel and band never valid stays 0 and is flagged in ``never_valid``. The validity channel
is the fraction of the period's recorded observations (dates x bands, bands missing on a date not counted) that
were valid: 0 for a gap-filled period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from eossl.data.series.stack import SceneStack
from eossl.data.series.stack_layers import StackGrid

__all__ = ["Composite", "composite", "pixel_series", "period_grid", "fill_gaps", "masked_median"]

_CHUNK = 8192       # series gap-filled per block (vectorised within a block)


@dataclass
class Composite:
    """A stack composited on ``P`` periods ``[starts[p], ends[p])`` (datetime64[D]).

    ``values`` (P, C, H, W) float32 medians with gaps filled; ``counts`` (P, C, H, W) int32 valid observations;
    ``validity`` (P, H, W) float32 in [0, 1] (see module doc); ``filled`` (P, C, H, W) bool: the value was
    interpolated; ``never_valid`` (C, H, W) bool: no valid observation at all (value 0).
    """

    values: np.ndarray
    counts: np.ndarray
    validity: np.ndarray
    filled: np.ndarray
    never_valid: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    bands: list[str]
    period: str
    sensor: str
    grid: StackGrid

    @property
    def channels(self) -> list[str]:
        """Names of the last axis of :func:`pixel_series`: the bands, then ``validity``."""
        return [*self.bands, "validity"]


def period_grid(times: np.ndarray, period: str, start=None, end=None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) datetime64[D] of the periods covering ``start``..``end`` (inclusive; default: the first and
    last of ``times``). ``period``: ``"month"`` (calendar months) or ``"<n>D"`` (n-day steps from ``start``)."""
    t0 = np.datetime64(start, "D") if start is not None else np.min(times).astype("datetime64[D]")
    t1 = np.datetime64(end, "D") if end is not None else np.max(times).astype("datetime64[D]")
    if t1 < t0:
        raise ValueError(f"composite: end {t1} is before start {t0}")
    if period == "month":
        months = np.arange(t0.astype("datetime64[M]"), t1.astype("datetime64[M]") + 1)
        return months.astype("datetime64[D]"), (months + 1).astype("datetime64[D]")
    m = re.fullmatch(r"(\d+)D", str(period))
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"composite: unknown period {period!r}; use 'month' or '<n>D' (e.g. '10D')")
    n = int(m.group(1))
    count = int((t1 - t0).astype(int)) // n + 1
    starts = t0 + np.arange(count) * n
    return starts, starts + n


def masked_median(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over axis 0 of the valid entries of (n, ...) ``values``: ((...) float32, NaN where none is valid;
    (...) int32 counts). One sort for all positions at once."""
    count = valid.sum(axis=0, dtype=np.int32)
    if values.shape[0] == 0:
        return np.full(values.shape[1:], np.nan, np.float32), count
    ordered = np.sort(np.where(valid, values, np.inf), axis=0)
    lo = np.maximum((count - 1) // 2, 0)[None]
    hi = np.maximum(count // 2, 0)[None]
    med = 0.5 * (np.take_along_axis(ordered, lo, 0)[0] + np.take_along_axis(ordered, np.minimum(hi, len(ordered) - 1),
                                                                             0)[0])
    return np.where(count > 0, med, np.nan).astype(np.float32), count


def fill_gaps(series: np.ndarray, has: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(P, N) ``series`` with the entries where ``has`` is False interpolated linearly in time ``t`` (P,) between
    the nearest entries that have a value (the nearest one at the ends; 0 where a column has none)."""
    p = len(t)
    idx = np.arange(p)[:, None]
    prev = np.maximum.accumulate(np.where(has, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(has, idx, p)[::-1], axis=0)[::-1]
    has_prev, has_next = prev >= 0, nxt < p
    prev_c, next_c = np.clip(prev, 0, p - 1), np.clip(nxt, 0, p - 1)
    pv = np.take_along_axis(series, prev_c, 0)
    nv = np.take_along_axis(series, next_c, 0)
    tp, tn = t[prev_c], t[next_c]
    span = np.where(tn > tp, tn - tp, 1.0)
    w = np.clip((t[:, None] - tp) / span, 0.0, 1.0)
    between = pv + w * (nv - pv)
    out = np.where(has_prev & has_next, between, np.where(has_prev, pv, np.where(has_next, nv, 0.0)))
    return np.where(has, series, out).astype(np.float32)


def composite(stack: SceneStack, period: str = "10D", start=None, end=None) -> Composite:
    """Median composites of ``stack`` on a regular time grid (see module doc): vectorised over every pixel, one
    pass per period. ``start``/``end``: dates (``"2018-01-01"``) bounding the grid (default: the stack's)."""
    if len(stack.times) == 0:
        raise ValueError("composite: the stack has no dates")
    starts, ends = period_grid(stack.times, period, start, end)
    t, c, h, w = stack.values.shape
    days = stack.times.astype("datetime64[D]")
    observed = stack.observed if stack.observed is not None else np.ones((t, c), dtype=bool)
    med = np.empty((len(starts), c, h, w), np.float32)
    counts = np.empty((len(starts), c, h, w), np.int32)
    validity = np.zeros((len(starts), h, w), np.float32)
    for p, (s, e) in enumerate(zip(starts, ends, strict=True)):
        sel = np.flatnonzero((days >= s) & (days < e))
        med[p], counts[p] = masked_median(stack.values[sel], stack.valid[sel])
        recorded = int(observed[sel].sum())
        if recorded:
            validity[p] = counts[p].sum(axis=0) / recorded
    has = counts > 0
    centre = ((starts - starts[0]).astype(float) + (ends - starts).astype(float) / 2)
    flat, flat_has = med.reshape(len(starts), -1), has.reshape(len(starts), -1)
    values = np.empty_like(flat)
    for a in range(0, flat.shape[1], _CHUNK):          # column blocks bound the temporaries' memory
        values[:, a:a + _CHUNK] = fill_gaps(flat[:, a:a + _CHUNK], flat_has[:, a:a + _CHUNK], centre)
    values = values.reshape(med.shape)
    return Composite(values=values, counts=counts, validity=validity, filled=~has, never_valid=~has.any(axis=0),
                     starts=starts, ends=ends, bands=list(stack.bands), period=str(period), sensor=stack.sensor,
                     grid=stack.grid)


def pixel_series(comp: Composite, rows=None, cols=None) -> np.ndarray:
    """(N, P, C+1) float32 series of the pixels at ``rows``/``cols`` (1-D integer arrays of equal length; both
    None: every pixel, row-major, N = H*W); the last channel is the validity."""
    p, c, h, w = comp.values.shape
    if (rows is None) != (cols is None):
        raise ValueError("pixel_series: give both rows and cols (or neither, for every pixel)")
    if rows is None:
        vals = comp.values.reshape(p, c, h * w)
        valid = comp.validity.reshape(p, 1, h * w)
    else:
        rows, cols = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(cols, dtype=np.int64).ravel()
        if rows.shape != cols.shape:
            raise ValueError(f"pixel_series: rows ({rows.size}) and cols ({cols.size}) differ in length")
        if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w):
            raise ValueError(f"pixel_series: a pixel lies outside the {h}x{w} stack grid")
        vals = comp.values[:, :, rows, cols]
        valid = comp.validity[:, None, rows, cols]
    return np.concatenate([vals, valid], axis=1).transpose(2, 0, 1).astype(np.float32, copy=False)
