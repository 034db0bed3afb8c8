"""The chip reader: a window (bounds in a CRS, target GSD, bands in any order) -> reflectance + valid mask.

>>> reader = ChipReader(open_index("index.parquet"), bands=["B04", "B03", "B02", "nir"])
>>> chip = reader.read(0, bounds=(x0, y0, x0 + 640, y0 + 640), crs="EPSG:32618", gsd=10)
>>> chip.image.shape, chip.mask.shape   # (4, 64, 64) float32 reflectance, (64, 64) bool

Bands at another resolution are resampled onto the target grid (``resampling``: nearest | bilinear | average);
a window in another CRS than the file is reprojected with GDAL's warper. Values are ``DN * scale + offset`` of the
sensor's band (reflectance for optical bands); invalid pixels are 0 with ``mask`` False. When the index records a
cloud/quality mask for the acquisition (SCL, QA_PIXEL, Fmask: see :mod:`eossl.catalog.quality`), the pixels it
flags are invalid too. A file that cannot be read raises :class:`~eossl.data.sources.ReadError`, one line naming the
file, the band and what to do (also from inside data-loader workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds

from eossl.catalog import quality
from eossl.catalog.index import Asset, SceneIndex
from eossl.data.sources import HandleCache, MissingFileError, RasterHandle, ReadError
from eossl.resample import METHODS, resample_block

__all__ = ["Chip", "ChipReader", "output_grid", "common_bands"]


@dataclass
class Chip:
    """A read window. ``image`` (C, H, W) float32, ``mask`` (H, W) bool (True = every band valid)."""

    image: np.ndarray
    mask: np.ndarray
    bands: list[str]
    bounds: tuple[float, float, float, float]
    crs: str
    acquisition: str
    time: object = None
    extra: dict = field(default_factory=dict)


_MAX_WINDOW_PX = 100_000_000     # one window of more than 1e8 px is a units mistake, not a chip


def _is_geographic(crs) -> bool:
    from rasterio.crs import CRS

    try:
        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:  # an unparsable CRS fails later with rasterio's own message
        return False


def output_grid(bounds, gsd: float | None, size: int | tuple[int, int] | None) -> tuple[int, int, float, float]:
    """(H, W, gsd_x, gsd_y) of a window given either a GSD or an output size."""
    minx, miny, maxx, maxy = bounds
    if maxx <= minx or maxy <= miny:
        raise ValueError(f"window bounds {bounds} are empty: need minx < maxx and miny < maxy")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        return int(h), int(w), (maxx - minx) / w, (maxy - miny) / h
    if gsd is None or gsd <= 0:
        raise ValueError(f"a positive target gsd (or an output size) is needed, got gsd={gsd}")
    w = max(1, round((maxx - minx) / gsd))
    h = max(1, round((maxy - miny) / gsd))
    return h, w, (maxx - minx) / w, (maxy - miny) / h


def common_bands(index: SceneIndex) -> list[str]:
    """Bands present in every acquisition of a one-sensor index, in the sensor's order."""
    sensor = index.sensor(0)
    present = set(sensor.band_names)
    for i in range(len(index)):
        present &= set(index.assets(i))
    if not present:
        raise ValueError(f"no band is present in every acquisition of {index.path or 'the index'}; pass bands")
    return [b for b in sensor.band_names if b in present]


class ChipReader:
    """Reads chips from an indexed acquisition. Safe to use in data-loader workers (handles per process)."""

    def __init__(self, index: SceneIndex, bands: list[str] | None = None, resampling: str = "bilinear",
                 max_open: int = 256, allow_empty: bool = False):
        if resampling not in METHODS:
            raise ValueError(f"unknown resampling {resampling!r}; allowed: {', '.join(METHODS)}")
        self.index = index
        if len(index.sensor_names) > 1:
            if bands is None:
                raise ValueError(f"index mixes sensors {index.sensor_names}; pass an explicit band list")
            self.bands = list(bands)
        elif bands is None:
            self.bands = common_bands(index)
        else:  # the index's sensor: from the catalog, or the definition stored in the index
            self.bands = index.sensor(0).resolve_many(bands)
        self.resampling = resampling
        self.allow_empty = allow_empty
        self._handles = HandleCache(max_open)
        self._same_crs: dict[tuple[str, str], bool] = {}
        self._plans: dict[int, list] = {}

    # ------------------------------------------------------------------------------------------ public

    def read(self, acquisition: int | str, bounds, crs: str | None = None, gsd: float | None = None,
             size: int | tuple[int, int] | None = None) -> Chip:
        """Read ``bounds`` (minx, miny, maxx, maxy) in ``crs`` (default: the acquisition's) from one acquisition."""
        i = self.index.position(acquisition) if isinstance(acquisition, str) else int(acquisition)
        crs = crs or self.index.crs(i)
        if gsd is not None and size is None and _is_geographic(crs):
            raise ValueError(f"gsd={gsd} with bounds in {crs}, whose units are degrees: read in metres instead, with "
                             f"crs=eossl.geo.working_crs(index, {i}) (the scene's local UTM zone) and bounds in that "
                             f"CRS, or give size=(height, width) in pixels")
        gsd = gsd if (gsd is not None or size is not None) else self.index.res(i)
        h, w, gx, gy = output_grid(bounds, gsd, size)
        if h * w > _MAX_WINDOW_PX:
            raise ValueError(f"a window of {h} x {w} px ({len(self.bands)} bands, {4 * h * w * len(self.bands) / 1e9:.1f} "
                             f"GB) from bounds {tuple(bounds)} at gsd {gsd} in {crs}: are the bounds and the gsd in the "
                             f"same units as that CRS? Read smaller windows (eossl's samplers tile a scene)")
        plan = self._plan(i)
        image = np.zeros((len(plan), h, w), dtype=np.float32)
        mask = np.ones((h, w), dtype=bool)
        for c, (band, asset, scale, offset) in enumerate(plan):
            vals, ok = self._guarded(i, band, asset, self._read_band, bounds, crs, (h, w), (gx, gy))
            image[c] = np.where(ok, vals * scale + offset, 0.0)
            mask &= ok
        qa = self.index.quality_mask(i)
        if qa is not None:
            mask &= self._guarded(i, f"{qa.mask_kind} mask", qa, self._read_quality, bounds, crs, (h, w), (gx, gy))
        image[:, ~mask] = 0.0
        if not self.allow_empty and not mask.any():
            self._raise_empty(i, bounds, crs)
        return Chip(image=image, mask=mask, bands=list(self.bands), bounds=tuple(float(v) for v in bounds),
                    crs=str(crs), acquisition=self.index.ids[i], time=self.index.datetime(i))

    def close(self) -> None:
        self._handles.close()

    # ----------------------------------------------------------------------------------------- private

    def _plan(self, i: int) -> list[tuple[str, Asset, np.float32, np.float32]]:
        """(band, asset, scale, offset) per requested band of row ``i`` (cached: the same for every window)."""
        if i not in self._plans:
            sensor = self.index.sensor(i)
            assets = self.index.assets(i)
            plan = []
            for band in sensor.resolve_many(self.bands):
                asset = assets.get(band)
                if asset is None:
                    raise ValueError(f"acquisition {self.index.ids[i]!r} has no band {band} (it has "
                                     f"{', '.join(assets)}); choose bands present in every acquisition")
                spec = sensor.band(band)
                scale = spec.scale if asset.scale is None else asset.scale
                offset = spec.offset if asset.offset is None else asset.offset
                plan.append((band, asset, np.float32(scale), np.float32(offset)))
            self._plans[i] = plan
        return self._plans[i]

    def _handle(self, asset: Asset):
        if asset.var is not None:
            from eossl.catalog.cubes import CubeHandle

            return self._handles.get(("cube", asset.path), lambda: CubeHandle(asset.path))
        return self._handles.get(("raster", asset.path), lambda: RasterHandle(asset.path))

    def _is_same_crs(self, a, b: str) -> bool:
        key = (str(a), str(b))
        if key not in self._same_crs:
            try:
                self._same_crs[key] = CRS.from_user_input(a) == CRS.from_user_input(b)
            except CRSError as err:
                raise ValueError(f"window CRS {b!r} is not a CRS GDAL understands: {err}") from err
        return self._same_crs[key]

    def _guarded(self, i: int, band: str, asset: Asset, read, *args):
        """``read(asset, *args)``; a failure becomes a :class:`ReadError` naming the file, the band and the fix."""
        try:
            return read(asset, *args)
        except ReadError:
            raise
        except (ValueError, OSError, RasterioError, CPLE_BaseError) as err:
            detail = " ".join(str(err).replace(f"{asset.path}: ", "").split())
            kind = MissingFileError if isinstance(err, FileNotFoundError) else ReadError
            raise kind(f"{asset.path} (band {band} of acquisition {self.index.ids[i]!r}): {detail}") from err

    def _read_band(self, asset: Asset, bounds, crs, shape, gsd, method: str | None = None):
        handle = self._handle(asset)
        t = handle.transform
        axis_aligned = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
        if axis_aligned and self._is_same_crs(handle.crs_str, crs):
            return self._read_aligned(handle, asset, bounds, shape, method or self.resampling)
        return self._read_warped(handle, asset, bounds, crs, shape, gsd, method or self.resampling)

    def _read_quality(self, asset: Asset, bounds, crs, shape, gsd) -> np.ndarray:
        """(H, W) bool: True where the quality mask flags nothing (codes resampled with nearest, never mixed)."""
        codes, ok = self._read_band(asset, bounds, crs, shape, gsd, method="nearest")
        return ok & quality.usable(asset.mask_kind, codes)

    def _read_aligned(self, handle, asset, bounds, shape, method):
        t = handle.transform
        minx, miny, maxx, maxy = bounds
        col0, row0 = (minx - t.c) / t.a, (t.f - maxy) / -t.e
        ncol, nrow = (maxx - minx) / t.a, (maxy - miny) / -t.e
        c0, r0 = math.floor(col0 + 1e-6) - 1, math.floor(row0 + 1e-6) - 1
        c1, r1 = math.ceil(col0 + ncol - 1e-6) + 1, math.ceil(row0 + nrow - 1e-6) + 1
        src, valid = handle.read_block(asset, (r0, r1), (c0, c1))
        return resample_block(src, valid, (row0 - r0, nrow), (col0 - c0, ncol), shape, method)

    def _read_warped(self, handle, asset, bounds, crs, shape, gsd, method):
        h, w = shape
        try:
            sb = transform_bounds(crs, handle.crs, *bounds, densify_pts=21)
        except Exception as err:
            raise ValueError(f"cannot transform the window {bounds} from {crs} to the CRS of {asset.path} "
                             f"({handle.crs}): {err}; give the window in a CRS that can be converted") from err
        if not all(np.isfinite(sb)):
            raise ValueError(f"the window {bounds} in {crs} has no valid position in the CRS of {asset.path} "
                             f"({handle.crs}); the window may lie outside that projection's area of use")
        inv = ~handle.transform
        corners = [inv * (x, y) for x in (sb[0], sb[2]) for y in (sb[1], sb[3])]
        cs, rs = [p[0] for p in corners], [p[1] for p in corners]
        c0, c1 = math.floor(min(cs)) - 2, math.ceil(max(cs)) + 2
        r0, r1 = math.floor(min(rs)) - 2, math.ceil(max(rs)) + 2
        src, valid = handle.read_block(asset, (r0, r1), (c0, c1))
        source = np.where(valid, src, np.nan).astype(np.float32)
        dst = np.full((h, w), np.nan, dtype=np.float32)
        reproject(source=source, destination=dst,
                  src_transform=handle.transform @ handle.transform.translation(c0, r0), src_crs=handle.crs,
                  src_nodata=np.nan, dst_transform=from_origin(bounds[0], bounds[3], gsd[0], gsd[1]),
                  dst_crs=crs, dst_nodata=np.nan, resampling=Resampling[method])
        ok = np.isfinite(dst)
        return np.where(ok, dst, 0.0).astype(np.float32), ok

    def _raise_empty(self, i: int, bounds, crs):
        from shapely.geometry import box

        fp = box(*self.index.bounds(i))
        win = box(*bounds)
        if self._is_same_crs(self.index.crs(i), crs) and not fp.intersects(win):
            raise ValueError(f"window {tuple(round(v, 2) for v in bounds)} ({crs}) lies outside acquisition "
                             f"{self.index.ids[i]!r}, whose footprint is {self.index.bounds(i)} "
                             f"({self.index.crs(i)}); pick a window inside it (see `eossl catalog show`)")
        raise ValueError(f"window {tuple(round(v, 2) for v in bounds)} ({crs}) of acquisition "
                         f"{self.index.ids[i]!r} holds no valid pixel (all nodata or outside the data); "
                         f"samplers skip such windows, use min_valid_fraction > 0")
