"""Field polygons x acquisitions of one area -> a per-field image time series, for crop classification.

>>> series = load_fields(index, "fields.gpkg", "crop", chip_size=32)
>>> series.images.shape, series.field_mask.shape, series.date_valid.shape   # (N,T,C,H,W), (N,H,W), (N,T)

One working grid for every date: the CRS most acquisitions use (a geographic CRS is replaced by the UTM zone of
the fields, as is a projected CRS not in metres) at ``gsd`` metres (default: that acquisition's resolution in
metres, converted from degrees at its centre for a geographic CRS),
pixel-aligned with it. A field's chip therefore covers the same ground on every date and one field mask serves all
dates; acquisitions in another CRS are warped by the reader. Dates are calendar days (UTC): the acquisitions of one
day (tiles of one pass) are mosaicked, the first valid pixel wins. Chips are cut from one read per (date, tile of
``tile_px`` grid pixels holding nearby fields), which matches per-field reads exactly on the data's own grid and
saves the per-read overhead (about 80 ms for the WorldCereal NetCDF cube).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.features import rasterize
from rasterio.transform import from_origin, rowcol
from rasterio.warp import transform_bounds
from shapely.geometry import box

from eossl.catalog.index import SceneIndex
from eossl.data.labelled.points import read_labels
from eossl.data.reader import ChipReader
from eossl.geo import crs_is_metric, scene_gsd_m

log = logging.getLogger(__name__)

__all__ = ["FieldSeries", "load_fields"]

POLYGON_TYPES = ("Polygon", "MultiPolygon")


@dataclass
class FieldSeries:
    """Per-field chips over time. ``images`` (N, T, C, H, W) float32 reflectance (0 where invalid), ``valid``
    (N, T, H, W) bool, ``field_mask`` (N, H, W) bool, ``labels`` (N,) int64, ``date_valid`` (N, T) bool (at least
    ``min_valid`` of the field's pixels valid on that date), ``centroids`` (N, 2) in ``crs`` (metres), ``dates``
    (T,) UTC timestamps (None for an index without datetimes)."""

    images: np.ndarray
    valid: np.ndarray
    field_mask: np.ndarray
    labels: np.ndarray
    classes: list[str]
    bands: list[str]
    dates: list
    field_ids: list[str]
    centroids: np.ndarray
    crs: str
    sensor: str
    gsd: float
    date_valid: np.ndarray
    min_valid: float = 0.5

    def __post_init__(self):
        n, t, c, h, w = self.images.shape
        expected = {"valid": (n, t, h, w), "field_mask": (n, h, w), "labels": (n,), "centroids": (n, 2),
                    "date_valid": (n, t)}
        bad = {k: getattr(self, k).shape for k, s in expected.items() if getattr(self, k).shape != s}
        if bad or len(self.field_ids) != n or len(self.dates) != t or len(self.bands) != c:
            raise ValueError(f"inconsistent FieldSeries for images (N,T,C,H,W) = {(n, t, c, h, w)}: shapes {bad}, "
                             f"{len(self.field_ids)} ids, {len(self.dates)} dates, {len(self.bands)} bands")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx) -> FieldSeries:
        """The fields at ``idx`` (positions or a boolean mask), every date kept."""
        idx = np.arange(len(self))[np.asarray(idx)]
        per_field = {"images", "valid", "field_mask", "labels", "centroids", "date_valid"}
        changes = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name in per_field}
        return replace(self, **changes, field_ids=[self.field_ids[i] for i in idx])

    def describe(self) -> dict:
        return {"n_fields": len(self), "classes": list(self.classes), "bands": list(self.bands),
                "class_counts": np.bincount(self.labels, minlength=len(self.classes)).tolist(),
                "dates": [None if d is None else f"{d:%Y-%m-%d}" for d in self.dates], "crs": self.crs,
                "gsd_m": self.gsd, "sensor": self.sensor, "chip_size": int(self.images.shape[-1]),
                "valid_dates_per_field": float(self.date_valid.sum(axis=1).mean())}


@dataclass(frozen=True)
class _Grid:
    crs: str
    gsd: float
    origin: tuple[float, float]   # (x, y) of a pixel corner; pixels are gsd squares from it


def load_fields(index: SceneIndex, labels_path: str | Path, class_column: str, *, chip_size: int = 32,
                gsd: float | None = None, bands: list[str] | None = None, classes: list[str] | None = None,
                min_valid: float = 0.5, id_column: str | None = None, resampling: str = "bilinear",
                tile_px: int = 256, label_crs: str | None = None, crs_key: str = "label_crs") -> FieldSeries:
    """Read a ``chip_size`` px chip centred on each field polygon of ``labels_path`` on every date of ``index``.

    ``class_column`` holds the crop class; ``id_column`` the field ids (default: the row number in the file).
    A date counts for a field (``date_valid``) when at least ``min_valid`` of its pixels are valid there; dates
    below it are kept and masked out downstream. Fields outside every acquisition, or without a valid date, are
    dropped with a warning naming them (an error when no field is left). A field is rasterised on its chip with
    ``all_touched=False``; a field smaller than a pixel keeps the pixel under its representative point.
    ``label_crs``: the CRS of a label file that declares none (an error otherwise).
    """
    if chip_size < 1 or tile_px < 1 or not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"need chip_size >= 1, tile_px >= 1 and 0 <= min_valid <= 1; got {chip_size}, {tile_px}, "
                         f"{min_valid}")
    if len(set(index.sensor_names)) != 1:
        raise ValueError(f"the index mixes sensors {index.sensor_names}; a field series needs one sensor: select "
                         f"its rows, e.g. SceneIndex(index.frame[index.frame.sensor == name])")
    frame, classes = _read_fields(labels_path, class_column, classes, id_column, label_crs, crs_key)
    frame = _drop_outside(frame, index, labels_path)
    dates = _dates(index)
    grid = _working_grid(index, frame, gsd)
    geoms = frame.geometry.to_crs(grid.crs)
    corners = np.array([_chip_corner(g.centroid, grid, chip_size) for g in geoms])      # (N, 2) col, row
    masks = np.stack([_field_mask(g, grid, c, chip_size) for g, c in zip(geoms, corners)])
    reader = ChipReader(index, bands=bands, resampling=resampling, allow_empty=True)
    images, valid = _read_series(reader, [rows for _, rows in dates], grid, corners, chip_size, tile_px)
    covered = (valid & masks[:, None]).sum(axis=(2, 3)) / masks.sum(axis=(1, 2))[:, None]
    date_valid = (covered > 0) & (covered >= min_valid)
    centroids = np.array([[g.centroid.x, g.centroid.y] for g in geoms], dtype=np.float64).reshape(-1, 2)
    series = FieldSeries(images=images, valid=valid, field_mask=masks, labels=frame["_class"].to_numpy(np.int64),
                         classes=classes, bands=list(reader.bands), dates=[d for d, _ in dates],
                         field_ids=list(frame["_field_id"]), centroids=centroids, crs=grid.crs,
                         sensor=index.sensor_names[0], gsd=grid.gsd, date_valid=date_valid, min_valid=min_valid)
    return _drop_unobserved(series, labels_path)


# ------------------------------------------------------------------------------------------- labels


def _read_fields(path, class_column: str, classes, id_column, label_crs=None,
                 crs_key: str = "label_crs") -> tuple[gpd.GeoDataFrame, list[str]]:
    """The field polygons with ``_class`` and ``_field_id`` columns; errors name the file and what to fix."""
    path = Path(path)
    if path.exists() and _feature_count(path) == 0:
        raise ValueError(f"label file {path} holds no features; write the field polygons into it")
    frame, classes = read_labels(path, class_column, classes, label_crs, crs_key)
    if len(frame) == 0:
        raise ValueError(f"label file {path} holds no field with a geometry; every geometry is empty or missing")
    if id_column is not None and id_column not in frame.columns:
        cols = [c for c in frame.columns if c != frame.geometry.name and not c.startswith("_")]
        raise ValueError(f"{path}: no id column {id_column!r}; columns are {cols}")
    ids = [str(v) for v in frame[id_column]] if id_column else [str(k) for k in range(len(frame))]
    dupes = sorted({i for i, n in Counter(ids).items() if n > 1})
    if dupes:
        raise ValueError(f"{path}: field ids repeat in column {id_column!r}: {dupes[:10]}; ids must be unique")
    frame["_field_id"] = ids
    kinds = frame.geometry.geom_type
    bad = [(i, k) for i, k in zip(ids, kinds) if k not in POLYGON_TYPES]
    if bad:
        raise ValueError(f"{path}: {len(bad)} geometries are not polygons, e.g. {bad[:5]} (id, type); crop fields "
                         f"need field boundaries (Polygon/MultiPolygon): buffer points or drop those rows")
    return frame, classes


def _feature_count(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    try:
        import pyogrio

        return int(pyogrio.read_info(path)["features"])
    except Exception:   # unreadable here: let read_labels report it with its own message
        return -1


def _drop_outside(frame: gpd.GeoDataFrame, index: SceneIndex, path) -> gpd.GeoDataFrame:
    """Drop (with a warning) fields that intersect no acquisition footprint; raise when none is left."""
    foot = index.frame.geometry
    hits = foot.sindex.query(frame.geometry.to_crs("EPSG:4326"), predicate="intersects")
    inside = np.zeros(len(frame), dtype=bool)
    inside[np.unique(hits[0])] = True
    outside = [str(v) for v in frame["_field_id"][~inside]]
    if not inside.any():
        raise ValueError(f"{path}: all {len(frame)} fields lie outside every acquisition of the index (ids "
                         f"{outside[:10]}); check the label CRS ({frame.crs}) and that the index covers the fields "
                         f"(`eossl catalog show`)")
    if outside:
        log.warning("%s: dropped %d of %d fields outside every acquisition: ids %s", path, len(outside), len(frame),
                    outside[:20])
    return frame[inside].reset_index(drop=True)


def _drop_unobserved(series: FieldSeries, path) -> FieldSeries:
    seen = series.date_valid.any(axis=1)
    if seen.all():
        return series
    lost = [i for i, s in zip(series.field_ids, seen) if not s]
    if not seen.any():
        raise ValueError(f"{path}: no field has a date with at least {series.min_valid:.0%} valid pixels (ids "
                         f"{lost[:10]}); the fields lie on nodata: check the index, or lower min_valid")
    log.warning("%s: dropped %d of %d fields without a date with %.0f%% valid pixels: ids %s", path, len(lost),
                len(series), 100 * series.min_valid, lost[:20])
    return series.subset(seen)


# --------------------------------------------------------------------------------------------- grid


def _dates(index: SceneIndex) -> list[tuple[pd.Timestamp | None, list[int]]]:
    """(date, rows) per calendar day (UTC), in time order."""
    times = [index.datetime(i) for i in range(len(index))]
    if len(index) > 1 and any(t is None for t in times):
        missing = [index.ids[i] for i, t in enumerate(times) if t is None][:3]
        raise ValueError(f"acquisitions {missing} have no datetime, so they cannot be ordered into a time series; "
                         f"rebuild the index with --datetime-pattern, a sidecar, or --datetime")
    if times == [None]:
        return [(None, [0])]
    days: dict[pd.Timestamp, list[int]] = {}
    for i in sorted(range(len(index)), key=lambda i: times[i]):
        day = times[i].tz_convert("UTC") if times[i].tzinfo else times[i].tz_localize("UTC")
        days.setdefault(day.normalize(), []).append(i)
    return list(days.items())


def _working_grid(index: SceneIndex, frame: gpd.GeoDataFrame, gsd: float | None) -> _Grid:
    crs = Counter(index.crs(i) for i in range(len(index))).most_common(1)[0][0]
    ref = next(i for i in range(len(index)) if index.crs(i) == crs)
    if gsd is not None and gsd <= 0:
        raise ValueError(f"gsd must be > 0 metres, got {gsd}")
    if not crs_is_metric(crs):
        utm = frame.estimate_utm_crs().to_string()
        gsd_m = float(gsd or scene_gsd_m(index, ref))
        log.info("the acquisitions are in %s (not metres); fields are read on %s, the UTM zone of the fields, at "
                 "%g m", crs, utm, gsd_m)
        return _Grid(utm, gsd_m, (0.0, 0.0))
    minx, _, _, maxy = index.bounds(ref)
    return _Grid(crs, float(gsd or index.res(ref)), (minx, maxy))


def _chip_corner(centre, grid: _Grid, size: int) -> tuple[int, int]:
    """(col, row) on the working grid of the top-left pixel of the chip centred on ``centre``."""
    col = round((centre.x - grid.origin[0]) / grid.gsd - size / 2)
    row = round((grid.origin[1] - centre.y) / grid.gsd - size / 2)
    return int(col), int(row)


def _chip_transform(grid: _Grid, corner):
    return from_origin(grid.origin[0] + corner[0] * grid.gsd, grid.origin[1] - corner[1] * grid.gsd,
                       grid.gsd, grid.gsd)


def _field_mask(geom, grid: _Grid, corner, size: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre is in the field; at least the pixel under its representative point."""
    transform = _chip_transform(grid, corner)
    mask = rasterize([(geom, 1)], out_shape=(size, size), transform=transform, all_touched=False,
                     dtype="uint8").astype(bool)
    if not mask.any():
        p = geom.representative_point()
        r, c = rowcol(transform, p.x, p.y)
        mask[min(max(int(r), 0), size - 1), min(max(int(c), 0), size - 1)] = True
    return mask


# --------------------------------------------------------------------------------------------- reads


def _read_series(reader: ChipReader, date_rows: list[list[int]], grid: _Grid, corners: np.ndarray, size: int,
                 tile_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, C, H, W) images and (N, T, H, W) valid masks, one read per (date, acquisition, tile of fields)."""
    n, t, c = len(corners), len(date_rows), len(reader.bands)
    images = np.zeros((n, t, c, size, size), dtype=np.float32)
    valid = np.zeros((n, t, size, size), dtype=bool)
    tiles: dict[tuple[int, int], list[int]] = {}
    first = corners.min(axis=0)
    for k, (col, row) in enumerate(corners - first):
        tiles.setdefault((col // tile_px, row // tile_px), []).append(k)
    for members in tiles.values():
        (c0, r0), (c1, r1) = corners[members].min(axis=0), corners[members].max(axis=0) + size
        bounds = (grid.origin[0] + c0 * grid.gsd, grid.origin[1] - r1 * grid.gsd,
                  grid.origin[0] + c1 * grid.gsd, grid.origin[1] - r0 * grid.gsd)
        for ti, rows in enumerate(date_rows):
            image, ok = _mosaic(reader, rows, bounds, grid.crs, (r1 - r0, c1 - c0))
            for k in members:
                dc, dr = corners[k] - (c0, r0)
                images[k, ti] = image[:, dr:dr + size, dc:dc + size]
                valid[k, ti] = ok[dr:dr + size, dc:dc + size]
    return images, valid


def _mosaic(reader: ChipReader, rows: list[int], bounds, crs: str, shape) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) image and (H, W) valid mask of ``bounds`` from the acquisitions ``rows`` (first valid wins)."""
    image = np.zeros((len(reader.bands), *shape), dtype=np.float32)
    ok = np.zeros(shape, dtype=bool)
    for i in rows:
        native = reader.index.crs(i)
        window = bounds if native == crs else transform_bounds(crs, native, *bounds, densify_pts=21)
        if not box(*window).intersects(box(*reader.index.bounds(i))):
            continue
        chip = reader.read(i, bounds, crs=crs, size=shape)
        fill = chip.mask & ~ok
        image[:, fill] = chip.image[:, fill]
        ok |= fill
        if ok.all():
            break
    return image, ok
