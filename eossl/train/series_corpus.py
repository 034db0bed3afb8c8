"""The unlabeled corpus of series pretraining (``corpus`` of :class:`~eossl.train.config.SeriesPretrainConfig`).

Three sources, any combination, concatenated in this order:

* ``roots`` / ``index``: pixel series sampled from indexed scenes and datacubes
  (:func:`eossl.data.series.pixels.sample_pixel_series`);
* ``table``: the rows of a series table, labels unused (``exclude_ids`` keeps test samples out);
* ``stacks``: every pixel of each scene stack, composited on ``period``
  (``open_stack -> composite -> stack_samples``, the one path from a stack to series, so pretraining reads the
  same inputs as the labelled pixels and the map).

Sources with different numbers of steps are padded to the longest with invalid steps (value 0, time NaT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.series.tables import SeriesSamples

__all__ = ["series_corpus", "stack_corpus", "merge_series"]


def _scene_part(c, seed: int) -> tuple[SeriesSamples, dict]:
    from eossl.catalog.build import IndexOptions, build_index
    from eossl.catalog.index import open_index
    from eossl.data.series.pixels import sample_pixel_series

    index = open_index(c.index) if c.index else build_index(list(c.roots), c.sensor, IndexOptions(nodata=c.nodata),
                                                             progress=False)
    s = sample_pixel_series(index, c.sampler.n_pixels, window=c.sampler.window, per_window=c.sampler.per_window,
                            min_valid_steps=c.min_valid_steps, bands=c.bands, seed=seed)
    return s, {"kind": "pixel series", "from": c.index or list(c.roots), "n": len(s), "how": s.source}


def _table_part(c) -> tuple[SeriesSamples, dict]:
    from eossl.data.series.tables import read_series_table

    s = read_series_table(c.table, c.sensor, id_column=c.id_column, time_column=c.time_column, bands=c.bands,
                          nodata=c.nodata, min_valid_steps=c.min_valid_steps)
    excluded = 0
    keep = list(range(len(s)))
    if c.exclude_ids:
        drop = set(map(str, c.exclude_ids))
        keep = [i for i, sid in enumerate(s.ids) if sid not in drop]
        excluded = len(s) - len(keep)
    rows = len(keep)
    s = s.subset(keep * c.table_repeats)
    return s, {"kind": "table rows (labels unused)", "from": c.table, "n": len(s), "rows": rows,
               "repeats": c.table_repeats, "excluded_ids": excluded}


def stack_corpus(path: str | Path, sensor: str | None, bands: list[str] | None, period: str,
                 include_s1: bool) -> tuple[SeriesSamples, dict]:
    """Every pixel of the stack at ``path`` (H*W series of its composite's P periods, row-major), ids
    ``"<folder>:r<row>c<col>"``, and its description."""
    from eossl.data.series.composite import composite
    from eossl.data.series.stack import open_stack
    from eossl.data.series.stack_samples import stack_samples

    stack = open_stack(path, sensor=sensor, bands=bands, include_s1=include_s1)
    comp = composite(stack, period)
    s = stack_samples(comp, source=f"every pixel of the stack {path}, {period} composites")
    s.ids = [f"{Path(path).name}:{i}" for i in s.ids]
    t, _, h, w = stack.values.shape
    return s, {"kind": "stack pixels", "from": str(path), "n": len(s), "height": h, "width": w, "dates": t,
               "periods": int(comp.values.shape[0]), "period": period, "bands": list(s.bands)}


def merge_series(parts: list[SeriesSamples]) -> SeriesSamples:
    """The series of ``parts`` (same bands) one after another, unlabelled, padded to the longest with invalid steps."""
    bands = parts[0].bands
    for p in parts[1:]:
        if p.bands != bands:
            raise ValueError(f"corpus: one source has the bands {p.bands}, another {bands}; set corpus.bands to the "
                             f"bands they all have (corpus.include_s1 adds VV/VH to stacks only)")
    t = max(p.values.shape[1] for p in parts)

    def pad(a, fill):
        width = [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        return np.pad(a, width, constant_values=fill)
    return SeriesSamples(np.concatenate([pad(p.values, 0) for p in parts]),
                         np.concatenate([pad(p.valid, False) for p in parts]),
                         np.concatenate([pad(p.times, np.datetime64("NaT")) for p in parts]),
                         list(bands), parts[0].sensor, np.full(sum(len(p) for p in parts), -1, dtype=np.int64),
                         [], [i for p in parts for i in p.ids], source="; ".join(p.source for p in parts))


def series_corpus(cfg) -> tuple[SeriesSamples, dict]:
    """The pretraining series of ``cfg.corpus`` and a description of them (for ``corpus.json``)."""
    c = cfg.corpus
    found = []
    if c.index or c.roots:
        found.append(_scene_part(c, cfg.seed))
    if c.table:
        found.append(_table_part(c))
    for path in c.stacks or []:
        found.append(stack_corpus(path, c.sensor, c.bands, c.period, c.include_s1))
    if not found:
        raise ValueError("corpus: give roots or index (scenes / datacubes to sample pixel series from), table "
                         "and/or stacks (every pixel of each stack)")
    merged = merge_series([s for s, _ in found])
    described = [d for _, d in found]
    return merged, {"parts": described, "n": len(merged), "steps": int(merged.values.shape[1]),
                    "bands": merged.bands, "sensor": merged.sensor}
