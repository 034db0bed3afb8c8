"""Windows centred on label geometries (points or polygons from any file geopandas reads), carrying the label."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import geopandas as gpd

from eossl.catalog.index import SceneIndex
from eossl.data.samplers import SamplerBase
from eossl.data.windows import Window

log = logging.getLogger(__name__)

__all__ = ["LabelWindowSampler", "read_labels"]


def read_labels(path: str | Path, label_column: str, classes: list[str] | None = None
                ) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read label geometries; returns the frame (with an integer ``_class`` column) and the class names."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        frame = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    except Exception as err:
        raise ValueError(f"cannot read label file {path}: {err}") from err
    if label_column not in frame.columns:
        cols = [c for c in frame.columns if c != frame.geometry.name]
        raise ValueError(f"{path}: no label column {label_column!r}; columns are {cols}")
    if frame.crs is None:
        raise ValueError(f"{path}: the label geometries have no CRS; set one (e.g. frame.set_crs('EPSG:4326'))")
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


class LabelWindowSampler(SamplerBase):
    """One window per (label geometry, acquisition containing it), centred on the geometry's centroid.

    ``per_label``: ``all`` (a window in every acquisition over the label: multi-date) or ``first`` (earliest).
    ``on_outside``: labels outside every selected acquisition raise (``error``) or are dropped (``skip``).
    """

    kind = "labels"

    def __init__(self, index: SceneIndex, size: int, labels: str | Path, label_column: str,
                 gsd: float | None = None, *, classes: list[str] | None = None, id_column: str | None = None,
                 per_label: Literal["all", "first"] = "all", on_outside: Literal["error", "skip"] = "error",
                 **kwargs):
        kwargs.setdefault("drop_last", False)
        kwargs.setdefault("min_valid_fraction", 0.0)
        if per_label not in ("all", "first"):
            raise ValueError(f"per_label must be 'all' or 'first', got {per_label!r}")
        self.labels_path = str(labels)
        self.label_column = label_column
        self.per_label = per_label
        self.on_outside = on_outside
        self.labels, self.classes = read_labels(labels, label_column, classes)
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
                    self.index.crs(row)).iloc[0].representative_point()
                e = self.extent()
                bounds = self.snapped(row, centre.x - e / 2, centre.y + e / 2)
                fraction = self.fraction(row, bounds)
                if fraction == 0.0 or fraction < self.min_valid_fraction:
                    continue
                label_id = str(self.labels[self.id_column].iloc[k]) if self.id_column else str(k)
                windows.append(Window((row,), bounds, self.index.crs(row), self.size, self.gsd,
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
                "classes": self.classes, "per_label": self.per_label, "on_outside": self.on_outside}
