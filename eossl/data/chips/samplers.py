"""Window samplers: deterministic, DDP-aware, rejecting windows below a valid-pixel fraction.

Every random draw (which scene, where in it) comes from one ``torch.Generator`` seeded with ``(seed, epoch)``.
A sampler first builds the *global* list of windows for an epoch, then yields the shard of its DDP rank
(``windows[rank::world_size]``): shards are disjoint, and the windows do not depend on data-loader workers
because samplers run in the main process. Validity is judged on the coarse mask stored in the index, so no
pixel is read while sampling.

Windows are cut on a metric grid: ``gsd`` is in metres (default: the finest ground resolution of the index). An
acquisition in a projected CRS in metres keeps its own CRS and pixel grid; one in a geographic CRS (or in feet) is
worked on in the UTM zone of its centre (:func:`eossl.geo.working_crs`, logged), its windows carry that CRS and the
reader warps the pixels onto it.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import torch
from shapely import wkt as shapely_wkt
from shapely.geometry import box
from torch.utils.data import Sampler

from eossl.catalog.index import SceneIndex
from eossl.data.windows import Window, snap_origin, valid_fraction
from eossl.geo import scene_gsd_m, working_bounds, working_crs

__all__ = ["SamplerBase", "RandomWindowSampler", "GridWindowSampler", "dist_info"]


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): explicit values, else from torch.distributed when initialised, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


@dataclass
class _Region:
    """Where windows may go in one acquisition: native bounds, optionally an ROI polygon (native CRS)."""

    row: int
    bounds: tuple[float, float, float, float]
    roi: object | None
    weight: float


class SamplerBase(Sampler[Window]):
    """Shared parts: candidate rows, ROI/time filter, grid snapping, DDP sharding, epochs."""

    kind = "base"

    def __init__(self, index: SceneIndex, size: int, gsd: float | None = None, *, roi=None,
                 roi_crs: str = "EPSG:4326", time_range: tuple[str | None, str | None] | None = None,
                 min_valid_fraction: float = 0.5, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool = True):
        if size < 1:
            raise ValueError(f"chip size must be >= 1 pixel, got {size}")
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
        self.index = index
        self.size = int(size)
        # metres: a degree or foot resolution is converted at each scene's centre
        self.gsd = float(gsd) if gsd else min(scene_gsd_m(index, i) for i in range(len(index)))
        self.min_valid_fraction = float(min_valid_fraction)
        self.seed = int(seed)
        self.rank, self.world_size = dist_info(rank, world_size)
        self.drop_last = drop_last
        self.epoch = 0
        self.time_range = tuple(time_range) if time_range else None
        self.roi = shapely_wkt.loads(roi) if isinstance(roi, str) else roi
        self.roi_crs = roi_crs
        self._masks: dict[int, np.ndarray] = {}
        self._frames: dict[int, tuple[str, tuple[float, float, float, float], tuple[float, float], float]] = {}
        self.regions = self._regions()
        self._cache: tuple[int, list[Window]] | None = None

    # --------------------------------------------------------------------------------------- regions

    def _regions(self) -> list[_Region]:
        rows = self.index.select(self.time_range, self.roi, self.roi_crs)
        rows = [int(i) for i in rows if self.index.frame["valid_fraction"].iloc[i] > 0]
        if not rows:
            raise ValueError(f"no acquisition of index {self.index.path or ''} matches the time range "
                             f"{self.time_range} / ROI and has valid pixels; widen the filters")
        areas = gpd.GeoSeries(self.index.frame.geometry.iloc[rows].values, crs="EPSG:4326").to_crs(6933).area
        regions = []
        for i, area in zip(rows, areas):
            crs, full, _, _ = self.frame(i)
            bounds, roi = full, None
            if self.roi is not None:
                roi = gpd.GeoSeries([self.roi], crs=self.roi_crs).to_crs(crs).iloc[0]
                roi = roi.intersection(box(*bounds))
                if roi.is_empty:
                    continue
                bounds = tuple(max(a, b) if k < 2 else min(a, b)
                               for k, (a, b) in enumerate(zip(bounds, roi.bounds)))
                area = area * roi.area / box(*full).area
            vf = float(self.index.frame["valid_fraction"].iloc[i])
            regions.append(_Region(row=i, bounds=bounds, roi=roi, weight=float(area) * vf))
        if not regions:
            raise ValueError("the ROI does not overlap any acquisition footprint")
        return regions

    def extent(self) -> float:
        """Window side length in metres (the units of every working CRS)."""
        return self.size * self.gsd

    def frame(self, row: int) -> tuple[str, tuple[float, float, float, float], tuple[float, float], float]:
        """``(crs, bounds, grid origin (x, y), grid step)`` windows of ``row`` are cut on, in metres.

        A metric CRS: the acquisition's own bounds and pixel grid. Otherwise its local UTM zone, its footprint's
        bounds there and a grid of ``gsd`` steps from (0, 0).
        """
        if row not in self._frames:
            crs = working_crs(self.index, row)
            if crs == self.index.crs(row):
                bx0, _, _, by1 = bounds = self.index.bounds(row)
                self._frames[row] = (crs, bounds, (bx0, by1), self.index.res(row))
            else:
                self._frames[row] = (crs, working_bounds(self.index, row, crs), (0.0, 0.0), self.gsd)
        return self._frames[row]

    def window_crs(self, row: int) -> str:
        """The CRS of the windows of ``row`` (see :meth:`frame`)."""
        return self.frame(row)[0]

    def snapped(self, row: int, x0: float, y1: float) -> tuple[float, float, float, float]:
        """Window with top-left near (x0, y1), snapped to the row's working grid (see :meth:`frame`)."""
        _, _, (ox, oy), step = self.frame(row)
        x = snap_origin(x0, ox, step)
        top = oy - snap_origin(oy - y1, 0.0, step)
        e = self.extent()
        return (x, top - e, x + e, top)

    def fraction(self, row: int, bounds) -> float:
        """Valid fraction of ``bounds`` (in the row's working CRS), from the coarse mask of the index."""
        if row not in self._masks:
            self._masks[row] = self.index.valid_mask(row)
        crs = self.window_crs(row)
        if crs != self.index.crs(row):
            from rasterio.warp import transform_bounds

            bounds = transform_bounds(crs, self.index.crs(row), *bounds, densify_pts=5)
        return valid_fraction(self.index, row, bounds, self._masks)

    def in_roi(self, region: _Region, bounds) -> bool:
        if region.roi is None:
            return True
        cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
        from shapely.geometry import Point

        return region.roi.contains(Point(cx, cy))

    # ----------------------------------------------------------------------------------- iteration

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def global_windows(self, epoch: int | None = None) -> list[Window]:
        """Every window of an epoch, before DDP sharding."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._make_windows(epoch))
        return self._cache[1]

    @abc.abstractmethod
    def _make_windows(self, epoch: int) -> list[Window]:
        """The global window list of one epoch (each sampler's own recipe)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shard(self, windows: list[Window]) -> list[Window]:
        n = len(windows)
        if self.drop_last and self.world_size > 1:
            n = (n // self.world_size) * self.world_size
        return windows[self.rank:n:self.world_size]

    def __iter__(self):
        return iter(self._shard(self.global_windows()))

    def __len__(self) -> int:
        return len(self._shard(self.global_windows()))

    def config(self) -> dict:
        """What determines the windows (recorded by caches, compared to refuse stale ones)."""
        return {"kind": self.kind, "size": self.size, "gsd": self.gsd, "seed": self.seed,
                "min_valid_fraction": self.min_valid_fraction,
                "time_range": list(self.time_range) if self.time_range else None,
                "roi": self.roi.wkt if self.roi is not None else None, "roi_crs": self.roi_crs}


class RandomWindowSampler(SamplerBase):
    """``num_samples`` random windows per epoch, scenes chosen with probability proportional to valid area."""

    kind = "random"

    def __init__(self, index: SceneIndex, size: int, num_samples: int, gsd: float | None = None,
                 max_tries: int = 200, **kwargs):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)
        self.max_tries = int(max_tries)
        super().__init__(index, size, gsd, **kwargs)

    def _make_windows(self, epoch: int) -> list[Window]:
        g = self.generator(epoch)
        weights = torch.tensor([r.weight for r in self.regions], dtype=torch.float64)
        e = self.extent()
        windows = []
        for _ in range(self.num_samples):
            for _attempt in range(self.max_tries):
                region = self.regions[int(torch.multinomial(weights, 1, generator=g))]
                x0, y0, x1, y1 = region.bounds
                u, v = torch.rand(2, generator=g, dtype=torch.float64).tolist()
                left = x0 + u * max(x1 - x0 - e, 0.0)
                top = y1 - v * max(y1 - y0 - e, 0.0)
                bounds = self.snapped(region.row, left, top)
                if self.in_roi(region, bounds) and self.fraction(region.row, bounds) >= self.min_valid_fraction:
                    windows.append(Window((region.row,), bounds, self.window_crs(region.row), self.size, self.gsd))
                    break
            else:
                raise ValueError(
                    f"found no window with valid fraction >= {self.min_valid_fraction} in {self.max_tries} tries; "
                    f"the data is mostly nodata at this chip size: lower min_valid_fraction or the chip size")
        return windows

    def config(self) -> dict:
        return {**super().config(), "num_samples": self.num_samples}


class GridWindowSampler(SamplerBase):
    """Windows on a regular grid with ``stride`` pixels over every selected acquisition (or the ROI).

    The last row and column are shifted inwards so the grid covers the whole extent.
    """

    kind = "grid"

    def __init__(self, index: SceneIndex, size: int, stride: int | None = None, gsd: float | None = None,
                 **kwargs):
        kwargs.setdefault("drop_last", False)
        kwargs.setdefault("min_valid_fraction", 0.0)
        self.stride = int(stride or size)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 pixel, got {stride}")
        super().__init__(index, size, gsd, **kwargs)

    def _make_windows(self, epoch: int) -> list[Window]:
        e, step = self.extent(), self.stride * self.gsd
        windows = []
        for region in self.regions:
            x0, y0, x1, y1 = region.bounds
            xs = _starts(x0, x1 - e, step)
            tops = [y1 - d for d in _starts(0.0, (y1 - y0) - e, step)]
            for top in tops:
                for left in xs:
                    bounds = self.snapped(region.row, left, top)
                    if region.roi is not None and not region.roi.intersects(box(*bounds)):
                        continue
                    fraction = self.fraction(region.row, bounds)
                    if fraction == 0.0 or fraction < self.min_valid_fraction:
                        continue
                    windows.append(Window((region.row,), bounds, self.window_crs(region.row), self.size, self.gsd))
        if not windows:
            raise ValueError("the grid holds no window with valid pixels; check the ROI and chip size")
        return windows

    def config(self) -> dict:
        return {**super().config(), "stride": self.stride}


def _starts(lo: float, hi: float, step: float) -> list[float]:
    """Start positions lo, lo+step, ... with a last one at hi (when the extent is not a multiple of step)."""
    if hi <= lo:
        return [lo]
    n = math.floor((hi - lo) / step + 1e-9)
    starts = [lo + k * step for k in range(n + 1)]
    if hi - starts[-1] > 1e-6:
        starts.append(hi)
    return starts
