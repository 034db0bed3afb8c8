"""Windows centred on label geometries (points or polygons from any file geopandas reads), carrying the label.

Label coordinates are never guessed: a file must declare its CRS, or ``label_crs`` must say what it is. That holds
for GeoJSON without a ``crs`` member (GDAL would silently call it lon/lat) and for CSV point tables, whose point
columns are ``x``/``y``, ``lon``/``lat``, ``longitude``/``latitude`` or ``easting``/``northing``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd
from pyproj import CRS

from eossl.catalog.index import SceneIndex
from eossl.data.chips.samplers import SamplerBase
from eossl.data.windows import Window

log = logging.getLogger(__name__)

__all__ = ["LabelWindowSampler", "read_labels"]


CSV_SUFFIXES = (".csv", ".tsv", ".txt")
POINT_COLUMNS = (("x", "y"), ("lon", "lat"), ("longitude", "latitude"), ("easting", "northing"))


def read_labels(path: str | Path, label_column: str, classes: list[str] | None = None,
                label_crs: str | None = None, crs_key: str = "label_crs") -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read label geometries; returns the frame (with an integer ``_class`` column) and the class names.

    ``label_crs``: the CRS of the coordinates when the file declares none (required then); when the file declares
    one, ``label_crs`` must agree with it. ``crs_key``: the config key that sets it, as errors name it (e.g.
    ``data.label_crs``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"label file not found: {path}")
    frame = _read_frame(path)
    if label_column not in frame.columns:
        cols = [c for c in frame.columns if c != frame.geometry.name]
        raise ValueError(f"{path}: no label column {label_column!r}; columns are {cols}")
    frame = _with_crs(frame, path, label_crs, crs_key)
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].copy()
    names = [str(v) for v in frame[label_column]]
    if classes is None:
        classes = sorted(set(names))
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"{path}: column {label_column!r} has values {unknown[:5]} not in the classes {classes}")
    frame["_class"] = [classes.index(n) for n in names]
    frame["_label_name"] = names
    return frame.reset_index(drop=True), list(classes)


def _read_frame(path: Path) -> gpd.GeoDataFrame:
    """The file as a GeoDataFrame, its CRS None when the file declares none."""
    try:
        if path.suffix.lower() in CSV_SUFFIXES:
            return _read_points_table(path)
        frame = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    except Exception as err:
        if isinstance(err, ValueError) and str(path) in str(err):
            raise
        raise ValueError(f"cannot read label file {path}: {err}") from err
    if path.suffix.lower() in (".geojson", ".json") and not _geojson_declares_crs(path):
        frame = frame.set_crs(None, allow_override=True)  # GDAL's lon/lat default is a guess: drop it
    return frame


def _geojson_declares_crs(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return isinstance(data, dict) and data.get("crs") is not None


def _read_points_table(path: Path) -> gpd.GeoDataFrame:
    table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else None, engine="python")
    lower = {str(c).lower(): c for c in table.columns}
    for xs, ys in POINT_COLUMNS:
        if xs in lower and ys in lower:
            x, y = lower[xs], lower[ys]
            return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table[x], table[y]), crs=None)
    names = ", ".join("/".join(pair) for pair in POINT_COLUMNS)
    raise ValueError(f"{path}: a point table needs coordinate columns ({names}); its columns are "
                     f"{list(table.columns)}: rename the coordinate columns")


def _with_crs(frame: gpd.GeoDataFrame, path: Path, label_crs: str | None,
              crs_key: str = "label_crs") -> gpd.GeoDataFrame:
    """``frame`` with its CRS set from ``label_crs`` or checked against it; coordinates checked for lon/lat."""
    given = None
    if label_crs is not None:
        try:
            given = CRS.from_user_input(label_crs)
        except Exception as err:  # pyproj's CRSError
            raise ValueError(f"{crs_key} {label_crs!r} is not a CRS PROJ understands: {err}; give e.g. "
                             f"EPSG:32633") from err
    if frame.crs is None:
        if given is None:
            raise ValueError(f"{path}: the label file declares no CRS, so its coordinates cannot be placed; set "
                             f"`{crs_key}` to the CRS they are in (e.g. EPSG:32633, or EPSG:4326 for lon/lat) or "
                             f"write the file with its CRS")
        frame = frame.set_crs(given)
    elif given is not None and not CRS.from_user_input(frame.crs).equals(given, ignore_axis_order=True):
        raise ValueError(f"{path}: the file declares the CRS {frame.crs.to_string()} but `{crs_key}` is "
                         f"{label_crs}; drop {crs_key} (it is for files without a CRS) or fix the file")
    if frame.crs.is_geographic and len(frame):
        x0, y0, x1, y1 = frame.total_bounds
        if x0 < -180 or x1 > 360 or y0 < -90 or y1 > 90:
            raise ValueError(f"{path}: coordinates span x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, which are not "
                             f"longitudes/latitudes although the CRS is {frame.crs.to_string()}; the file's "
                             f"coordinates are projected: give their CRS with `{crs_key}` (files without a CRS) "
                             f"or fix the file's CRS")
    return frame


class LabelWindowSampler(SamplerBase):
    """One window per (label geometry, acquisition containing it), centred on the geometry's centroid.

    ``per_label``: ``all`` (a window in every acquisition over the label: multi-date) or ``first`` (earliest).
    ``on_outside``: labels outside every selected acquisition raise (``error``) or are dropped (``skip``).
    ``label_crs``: CRS of the label coordinates for a file that declares none (see :func:`read_labels`).
    """

    kind = "labels"

    def __init__(self, index: SceneIndex, size: int, labels: str | Path, label_column: str,
                 gsd: float | None = None, *, classes: list[str] | None = None, id_column: str | None = None,
                 per_label: Literal["all", "first"] = "all", on_outside: Literal["error", "skip"] = "error",
                 label_crs: str | None = None, crs_key: str = "label_crs", **kwargs):
        kwargs.setdefault("drop_last", False)
        kwargs.setdefault("min_valid_fraction", 0.0)
        if per_label not in ("all", "first"):
            raise ValueError(f"per_label must be 'all' or 'first', got {per_label!r}")
        self.labels_path = str(labels)
        self.label_column = label_column
        self.per_label = per_label
        self.on_outside = on_outside
        self.label_crs = label_crs
        self.labels, self.classes = read_labels(labels, label_column, classes, label_crs, crs_key)
        if id_column is not None and id_column not in self.labels.columns:
            raise ValueError(f"{labels}: no id column {id_column!r}; columns are {list(self.labels.columns)}")
        self.id_column = id_column
        super().__init__(index, size, gsd, **kwargs)

    def _make_windows(self, epoch: int) -> list[Window]:
        rows = [r.row for r in self.regions]
        foot = self.index.frame.iloc[rows].geometry.reset_index(drop=True)
        points = self.labels.geometry.to_crs("EPSG:4326").representative_point()
        windows, outside = [], []
        for k, point in enumerate(points):
            hits = [rows[j] for j in foot.sindex.query(point, predicate="intersects")]
            hits.sort(key=lambda i: (self.index.datetime(i) is None, self.index.datetime(i) or 0, i))
            made = 0
            for row in hits[:1] if self.per_label == "first" else hits:
                centre = gpd.GeoSeries([self.labels.geometry.iloc[k]], crs=self.labels.crs).to_crs(
                    self.window_crs(row)).iloc[0].representative_point()
                e = self.extent()
                bounds = self.snapped(row, centre.x - e / 2, centre.y + e / 2)
                fraction = self.fraction(row, bounds)
                if fraction == 0.0 or fraction < self.min_valid_fraction:
                    continue
                label_id = str(self.labels[self.id_column].iloc[k]) if self.id_column else str(k)
                windows.append(Window((row,), bounds, self.window_crs(row), self.size, self.gsd,
                                      label=int(self.labels["_class"].iloc[k]),
                                      label_name=self.labels["_label_name"].iloc[k], label_id=label_id))
                made += 1
            if made == 0:
                outside.append(k)
        if outside and (self.on_outside == "error" or len(outside) == len(points)):
            ids = [str(self.labels[self.id_column].iloc[k]) if self.id_column else str(k) for k in outside[:5]]
            raise ValueError(f"{self.labels_path}: {len(outside)} of {len(points)} label geometries lie outside "
                             f"every selected acquisition (or on nodata), e.g. rows {ids}; check the label CRS "
                             f"and the index, or pass on_outside='skip' to drop them")
        if outside:
            log.warning("%s: dropped %d label geometries outside every acquisition", self.labels_path, len(outside))
        return windows

    def config(self) -> dict:
        return {**super().config(), "labels": self.labels_path, "label_column": self.label_column,
                "classes": self.classes, "per_label": self.per_label, "on_outside": self.on_outside,
                **({"label_crs": self.label_crs} if self.label_crs else {})}
