"""Seasonal pairs: two acquisitions of the same place from different seasons (or at least ``min_days`` apart).

Acquisitions are the "same place" when they share a CRS and their footprints overlap by at least
``min_overlap`` (intersection over the smaller footprint). A window is drawn in the overlap of the anchor and
its partner and must be valid in both. When a place has no partner, ``fallback`` decides: ``skip`` (never
sample it) or ``same`` (pair the acquisition with itself: both views then come from one date).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from shapely.geometry import box

from eossl.catalog.index import SceneIndex
from eossl.data.chips.samplers import SamplerBase
from eossl.data.windows import Window

__all__ = ["SeasonalPairSampler", "season_of"]

Fallback = Literal["skip", "same"]


def season_of(month: int, latitude: float) -> int:
    """Meteorological season 0..3 (DJF, MAM, JJA, SON), flipped in the southern hemisphere."""
    season = (month % 12) // 3
    return (season + 2) % 4 if latitude < 0 else season


class SeasonalPairSampler(SamplerBase):
    """``num_samples`` windows per epoch, each read from two acquisitions of one place."""

    kind = "seasonal_pair"

    def __init__(self, index: SceneIndex, size: int, num_samples: int, gsd: float | None = None, *,
                 min_days: int = 60, different_season: bool = True, fallback: Fallback = "skip",
                 min_overlap: float = 0.5, max_tries: int = 200, **kwargs):
        if fallback not in ("skip", "same"):
            raise ValueError(f"fallback must be 'skip' or 'same', got {fallback!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)
        self.min_days = int(min_days)
        self.different_season = bool(different_season)
        self.fallback = fallback
        self.min_overlap = float(min_overlap)
        self.max_tries = int(max_tries)
        super().__init__(index, size, gsd, **kwargs)
        self.partners = self._partners()

    def _partners(self) -> dict[int, list[int]]:
        rows = [r.row for r in self.regions]
        times = [self.index.datetime(i) for i in rows]
        if any(t is None for t in times):
            missing = [self.index.ids[i] for i, t in zip(rows, times) if t is None][:3]
            raise ValueError(f"seasonal pairs need acquisition datetimes; {missing} have none: rebuild the index "
                             f"with --datetime-pattern or a sidecar")
        b = self.index.frame.geometry.bounds
        lat = (b["miny"] + b["maxy"]) / 2
        partners: dict[int, list[int]] = {}
        for a, ta in zip(rows, times):
            fa = box(*self.index.bounds(a))
            found = []
            for b, tb in zip(rows, times):
                if b == a or self.window_crs(a) != self.window_crs(b):  # same metric grid (UTM zone)
                    continue
                fb = box(*self.index.bounds(b))
                overlap = fa.intersection(fb).area / min(fa.area, fb.area)
                if overlap < self.min_overlap or abs((tb - ta).days) < self.min_days:
                    continue
                if self.different_season and season_of(ta.month, lat.iloc[a]) == season_of(tb.month, lat.iloc[b]):
                    continue
                found.append(b)
            if found:
                partners[a] = found
            elif self.fallback == "same":
                partners[a] = [a]
        if not partners:
            raise ValueError(
                f"no acquisition has a partner of the same place at least {self.min_days} days apart"
                f"{' in another season' if self.different_season else ''}; lower min_days, set "
                f"different_season=false, or use fallback='same' to pair a date with itself")
        return partners

    def _make_windows(self, epoch: int) -> list[Window]:
        g = self.generator(epoch)
        anchors = [r for r in self.regions if r.row in self.partners]
        weights = torch.tensor([r.weight for r in anchors], dtype=torch.float64)
        e = self.extent()
        windows = []
        for _ in range(self.num_samples):
            for _attempt in range(self.max_tries):
                region = anchors[int(torch.multinomial(weights, 1, generator=g))]
                options = self.partners[region.row]
                partner = options[int(torch.randint(len(options), (1,), generator=g))]
                x0, y0, x1, y1 = box(*region.bounds).intersection(box(*self.frame(partner)[1])).bounds
                u, v = torch.rand(2, generator=g, dtype=torch.float64).tolist()
                bounds = self.snapped(region.row, x0 + u * max(x1 - x0 - e, 0.0), y1 - v * max(y1 - y0 - e, 0.0))
                if not self.in_roi(region, bounds):
                    continue
                if min(self.fraction(region.row, bounds), self.fraction(partner, bounds)) >= self.min_valid_fraction:
                    first, second = sorted((region.row, partner), key=lambda i: self._time_key(i))
                    windows.append(Window((first, second), bounds, self.window_crs(region.row), self.size, self.gsd))
                    break
            else:
                raise ValueError(f"found no window valid (>= {self.min_valid_fraction}) in both acquisitions of a "
                                 f"pair in {self.max_tries} tries; lower min_valid_fraction or the chip size")
        return windows

    def _time_key(self, i: int):
        t = self.index.datetime(i)
        return (pd.Timestamp(t).value if t is not None else np.iinfo(np.int64).max, i)

    def config(self) -> dict:
        return {**super().config(), "num_samples": self.num_samples, "min_days": self.min_days,
                "different_season": self.different_season, "fallback": self.fallback,
                "min_overlap": self.min_overlap}
