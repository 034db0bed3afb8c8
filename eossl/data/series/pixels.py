"""Pixel time series sampled from indexed scenes and datacubes: an unlabeled corpus for temporal pretraining.

Acquisitions of one place (same CRS, footprints overlapping by at least half the smaller one) form a stack, in
time order. Windows of ``window`` px are drawn at random in the area every member of a stack covers, read from
each date at the stack's finest resolution (the scene index's readers: scaling, nodata and cloud masks applied),
and pixels with at least ``min_valid_steps`` valid dates become series (up to ``per_window`` per window). Stacks
are visited in proportion to their area. Each series' id is ``CRS:x,y`` of its pixel centre. Deterministic given
``seed``.
"""

from __future__ import annotations

import logging

import numpy as np
from shapely.geometry import box
from tqdm.auto import tqdm

from eossl.catalog.index import SceneIndex
from eossl.data.reader import ChipReader
from eossl.data.series.tables import SeriesSamples

log = logging.getLogger(__name__)

__all__ = ["stacks_of", "sample_pixel_series"]


def stacks_of(index: SceneIndex, min_overlap: float = 0.5) -> list[list[int]]:
    """Groups of index rows of one place (see module doc), each in time order (undated rows last)."""
    parent = list(range(len(index)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    boxes = [box(*index.bounds(i)) for i in range(len(index))]
    for i in range(len(index)):
        for j in range(i + 1, len(index)):
            if index.crs(i) != index.crs(j):
                continue
            inter = boxes[i].intersection(boxes[j]).area
            if inter >= min_overlap * min(boxes[i].area, boxes[j].area) > 0:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(index)):
        groups.setdefault(find(i), []).append(i)

    def when(i):
        t = index.datetime(i)
        return (t is None, t.value if t is not None else 0)
    return [sorted(g, key=when) for g in groups.values()]


def sample_pixel_series(index: SceneIndex, n_pixels: int, *, window: int = 32, per_window: int = 64,
                        min_valid_steps: int = 3, bands: list[str] | None = None, seed: int = 0,
                        progress: bool = True, max_windows: int | None = None) -> SeriesSamples:
    """Up to ``n_pixels`` unlabeled pixel series (see module doc); T is the longest stack's number of dates."""
    if n_pixels < 1 or window < 1 or per_window < 1:
        raise ValueError(f"n_pixels, window and per_window must be >= 1, got {n_pixels}, {window}, {per_window}")
    reader = ChipReader(index, bands=bands, resampling="bilinear", allow_empty=True)
    bands = reader.bands if bands is None else list(reader.bands)
    stacks = [s for s in stacks_of(index) if len(s) >= min_valid_steps]
    if not stacks:
        raise ValueError(f"no place in {index.path or 'the index'} has {min_valid_steps} or more dates "
                         f"(min_valid_steps); index more dates of one area, or lower min_valid_steps")
    areas = []
    for s in stacks:
        common = box(*index.bounds(s[0]))
        for i in s[1:]:
            common = common.intersection(box(*index.bounds(i)))
        areas.append(common)
    weights = np.array([a.area for a in areas])
    if not weights.sum() > 0:
        raise ValueError("the acquisitions of each place share no area")
    rng = np.random.default_rng(seed)
    t_max = max(len(s) for s in stacks)
    values, valid, times, ids = [], [], [], []
    n, tries = 0, 0
    limit = max_windows or max(50, 20 * int(np.ceil(n_pixels / per_window)))
    bar = tqdm(total=n_pixels, desc="sampling pixel series", unit="px", disable=not progress)
    while n < n_pixels and tries < limit:
        tries += 1
        k = int(rng.choice(len(stacks), p=weights / weights.sum()))
        stack, area = stacks[k], areas[k]
        res = min(index.res(i) for i in stack)
        minx, miny, maxx, maxy = area.bounds
        nx, ny = int((maxx - minx) // res), int((maxy - miny) // res)
        w = min(window, nx, ny)
        if w < 1:
            continue
        side = w * res          # windows on the stack's pixel grid: pixels are read, not interpolated
        x0 = minx + res * int(rng.integers(0, nx - w + 1))
        y0 = maxy - side - res * int(rng.integers(0, ny - w + 1))
        bounds = (x0, y0, x0 + side, y0 + side)
        chips = [reader.read(i, bounds, gsd=res) for i in stack]
        img = np.stack([c.image for c in chips])                       # (T, C, h, w)
        ok = np.stack([c.mask for c in chips])                         # (T, h, w)
        good = ok.sum(0) >= min_valid_steps
        ys, xs = np.nonzero(good)
        if ys.size == 0:
            continue
        pick = rng.choice(ys.size, size=min(per_window, ys.size, n_pixels - n), replace=False)
        v = img[:, :, ys[pick], xs[pick]].transpose(2, 0, 1)           # (P, T, C)
        m = np.repeat(ok[:, ys[pick], xs[pick]].T[:, :, None], len(bands), axis=2)
        when = np.array([np.datetime64(c.time.tz_localize(None).date() if c.time is not None else "NaT", "D")
                         for c in chips])
        pad = t_max - len(stack)
        values.append(np.pad(v, ((0, 0), (0, pad), (0, 0))))
        valid.append(np.pad(m, ((0, 0), (0, pad), (0, 0))))
        times.append(np.concatenate([np.tile(when, (len(pick), 1)),
                                     np.full((len(pick), pad), np.datetime64("NaT"), dtype="datetime64[D]")], 1))
        crs = index.crs(stack[0])
        ids += [f"{crs}:{x0 + (c + 0.5) * res:.2f},{y0 + side - (r + 0.5) * res:.2f}"
                for r, c in zip(ys[pick], xs[pick])]
        n += len(pick)
        bar.update(len(pick))
    bar.close()
    reader.close()
    if n == 0:
        raise ValueError(f"no pixel with {min_valid_steps} valid dates in {tries} windows; the stacks are mostly "
                         f"cloud or nodata: lower min_valid_steps or index clearer dates")
    if n < n_pixels:
        log.warning("sampled %d of %d pixel series in %d windows (the rest had too few valid dates)", n, n_pixels,
                    tries)
    sensor = index.sensor(stacks[0][0]).name
    return SeriesSamples(np.concatenate(values).astype(np.float32), np.concatenate(valid),
                         np.concatenate(times).astype("datetime64[D]"), list(bands), sensor,
                         np.full(n, -1, dtype=np.int64), [], ids,
                         source=f"{index.path or 'index'}: {len(stacks)} stack(s), {tries} windows")



