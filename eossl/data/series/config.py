"""Typed config of series extraction (``eossl extract`` and a pipeline's ``extract`` stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eossl.config import field

__all__ = ["ExtractConfig"]


@dataclass
class ExtractConfig:
    """A pipeline's ``extract`` stage (the options of ``eossl extract``): time series at the geometries of
    ``labels``, or at points every ``grid_m`` metres, from an index (``index: STAGE`` of a catalog stage) or from
    ``roots`` indexed now. The table is the stage's ``table`` artifact (a long table: ``sample_id``, ``date``)."""

    roots: list[str] | None = field(None, help="folders or .nc/.zarr datacubes to index now (instead of index)")
    index: str | None = field(None, help="a scene index file (filled in from an `index: STAGE` reference)")
    sensor: str | None = field(None, help="sensor of roots")
    nodata: float | None = field(None, help="fill value of files that declare none (e.g. 65535)")
    labels: str | None = field(None, help="points or polygons to extract at (vector file or CSV with lon/lat)")
    grid_m: float | None = field(None, gt=0, help="instead of labels: unlabeled points every grid_m metres")
    label_column: str | None = field(None, help="labels: the class column, copied to the table")
    id_column: str | None = field(None, help="labels: one id per geometry (default: the row number)")
    label_crs: str | None = field(None, help="labels: CRS of coordinates when the file declares none")
    bands: list[str] | None = field(None, help="bands (default: every band of the index)")
    format: Literal["parquet", "csv"] = "parquet"

    def __post_init__(self):
        from eossl.config import ConfigError

        if (self.labels is None) == (self.grid_m is None):
            raise ConfigError("extract: give labels (points or polygons) or grid_m (a point grid), not both")
        if bool(self.roots) == bool(self.index):
            raise ConfigError("extract: give roots (with sensor) or an index (`index: STAGE` in a pipeline)")
        if self.roots and not self.sensor:
            raise ConfigError("extract: roots need sensor (e.g. sensor: sentinel2-l2a)")
        if self.grid_m is not None and (self.label_column or self.id_column or self.label_crs):
            raise ConfigError("extract: grid_m makes its own points; label_column, id_column and label_crs go "
                              "with labels")
