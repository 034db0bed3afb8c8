"""Pixels of a composited stack as :class:`~eossl.data.series.tables.SeriesSamples`: what the series encoder,
the series baselines and the crop-type map read.

Built on :func:`eossl.data.series.composite.pixel_series` (the one way series leave a stack), so the labelled
pixels, the unlabeled pretraining corpus and the pixels of a map see identical inputs:

>>> comp = composite(open_stack("flanders2018/"), period="10D")
>>> s = stack_samples(comp)                                  # every pixel, unlabelled
>>> s.values.shape, s.valid.shape, s.times.shape             # (H*W, P, C), (H*W, P, C), (H*W, P)

``values`` are the composite's medians (gap-filled periods keep their interpolated value); ``valid`` is True
where the period had a valid observation of the band, so the encoder masks gaps and the raw-series baselines
interpolate them as they do for any table; ``times`` are the periods' centre days.
"""

from __future__ import annotations

import numpy as np

from eossl.data.series.composite import Composite, pixel_series
from eossl.data.series.tables import SeriesSamples

__all__ = ["period_centres", "stack_samples"]


def period_centres(comp: Composite) -> np.ndarray:
    """(P,) datetime64[D]: the middle day of each period."""
    starts = comp.starts.astype("datetime64[D]")
    ends = comp.ends.astype("datetime64[D]")
    return starts + (ends - starts) // 2


def stack_samples(comp: Composite, rows=None, cols=None, labels=None, classes: list[str] | None = None,
                  source: str = "") -> SeriesSamples:
    """The pixels at ``rows``/``cols`` (1-D integer arrays; both None: every pixel, row-major) as series.

    ``labels`` (N,) int64 indices into ``classes`` (-1 unlabelled; default: all -1). Sample ids are ``"r<row>c<col>"``.
    """
    p, c, h, w = comp.values.shape
    if rows is None and cols is None:
        rows, cols = np.divmod(np.arange(h * w, dtype=np.int64), w)
    series = pixel_series(comp, rows, cols)                              # (N, P, C+1), validity last
    rows, cols = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(cols, dtype=np.int64).ravel()
    observed = comp.counts[:, :, rows, cols].transpose(2, 0, 1) > 0      # (N, P, C)
    n = len(rows)
    labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"stack_samples: {labels.shape[0]} labels for {n} pixels")
    times = np.broadcast_to(period_centres(comp), (n, p)).copy()
    return SeriesSamples(values=np.ascontiguousarray(series[..., :c], dtype=np.float32), valid=observed,
                         times=times, bands=list(comp.bands), sensor=comp.sensor, labels=labels,
                         classes=list(classes or []), ids=[f"r{r}c{q}" for r, q in zip(rows, cols)], source=source)
