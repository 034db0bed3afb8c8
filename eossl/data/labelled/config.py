"""Typed configs of labelled data: the ``data`` section of ``eossl evaluate`` / ``eossl finetune`` and the online
probe's ``probe.data`` (one :class:`LabelledDataConfig` for both), and the ``scenes`` the crop and segmentation
tasks read. Types only at import (no torch): the readers are imported by :meth:`LabelledDataConfig.load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eossl.config import ConfigError, field

__all__ = ["ScenesConfig", "LabelledDataConfig", "BUILTIN"]

BUILTIN = "builtin"      # the shorthand (and the name in logs) of the built-in EuroSAT-MS sample


@dataclass
class ScenesConfig:
    """Imagery for crop and segmentation tasks: an index made by ``eossl catalog``, or folders / datacubes to
    index now (``roots`` with ``sensor``)."""

    index: str | None = field(None, help="index GeoParquet written by `eossl catalog`")
    roots: list[str] | None = field(None, help="folders of GeoTIFFs or NetCDF/Zarr datacubes to index")
    sensor: str = field("sentinel2-l2a", help="sensor of the files under roots")
    nodata: float | None = field(None, help="nodata of files that declare none (e.g. 65535)")
    band_order: list[str] | None = field(None, help="band names in file order of multi-band files without band "
                                                    "descriptions")

    def __post_init__(self):
        if (self.index is None) == (self.roots is None):
            raise ConfigError("scenes: give either index (from `eossl catalog`) or roots (to index now)")

    def open(self):
        from eossl.catalog.build import IndexOptions, build_index
        from eossl.catalog.index import open_index

        if self.index is not None:
            return open_index(self.index)
        return build_index(list(self.roots), self.sensor, IndexOptions(nodata=self.nodata, band_order=self.band_order),
                           progress=False)


@dataclass
class LabelledDataConfig:
    """Labelled chips: class folders (``root``), chips centred on label geometries over scenes (``labels`` with
    ``scenes``), or neither: the built-in EuroSAT-MS sample.

    A plain string stands for the common cases (:meth:`from_shorthand`): ``builtin`` (the built-in sample), a
    class-folder root, or ``none`` / ``null`` (no data: the online probe off)."""

    RENAMED = {"file_bands": "band_order"}   # names of 0.1.0, still read (eossl.config)

    root: str | None = field(None, help="class folders root/<class>/*.tif (or the local root of data.torchgeo); "
                                        "null: the built-in EuroSAT-MS sample")
    torchgeo: str | None = field(None, help="a torchgeo classification dataset read from root (EuroSAT, EuroSAT100, "
                                            "EuroSATSpatial; eossl.data.labelled.torchgeo)")
    torchgeo_splits: list[str] | None = field(None, help="with torchgeo: the splits pooled (default: all)")
    labels: str | None = field(None, help="label points/polygons (any file geopandas reads); chips centred on them")
    label_column: str | None = field(None, help="with labels: the column holding each geometry's class")
    label_crs: str | None = field(None, help="with labels: CRS of the label coordinates when the file declares "
                                             "none (GeoJSON without a crs member, CSV x/y or lon/lat columns)")
    scenes: ScenesConfig | None = field(None, help="with labels: the imagery the chips are read from")
    chip_size: int = field(64, ge=8, help="with labels: chip side in px")
    gsd: float | None = field(None, gt=0, help="with labels: chip GSD in metres (default: the scenes')")
    sensor: str = field("sentinel2-l1c", help="sensor of the chips (data_catalog/sensors)")
    band_order: list[str] | None = field(
        None, help="band names in file order; null: the files' band descriptions. EuroSAT-MS files have none: "
                 "[B01, B02, B03, B04, B05, B06, B07, B08, B09, B10, B11, B12, B8A]")
    bands: list[str] | None = field(None, help="bands to use, in this order; null: every band of the files")

    def __post_init__(self):
        if self.labels is not None and (self.label_column is None or self.scenes is None or self.root is not None):
            raise ConfigError("data: chips from label geometries need labels, label_column and scenes (and no root)")
        if self.torchgeo is not None:
            from eossl.data.labelled.torchgeo import check_dataset_name

            try:                                  # a typo is caught when the config loads (--dry-run), not later
                check_dataset_name(self.torchgeo)
            except ValueError as err:
                raise ConfigError(str(err)) from err
            if self.root is None or self.labels is not None:
                raise ConfigError("data.torchgeo: give the dataset's local folder as data.root (nothing is "
                                  "downloaded), and no data.labels")

    @classmethod
    def from_shorthand(cls, value: object, path: str) -> dict | None:
        """The plain data a string stands for: ``builtin`` -> ``{}`` (the built-in sample), ``none`` / ``null`` /
        ``""`` -> None (no data), any other string -> ``{"root": value}`` (a class-folder root)."""
        if not isinstance(value, str):
            raise ConfigError(f"{path}: got {value!r} ({type(value).__name__}); expected a mapping of "
                              f"{cls.__name__} keys, {BUILTIN!r}, a class-folder root or null")
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            return None
        return {} if text == BUILTIN else {"root": value}

    @property
    def builtin(self) -> bool:
        """Whether this is the built-in EuroSAT-MS sample (no root, no labels)."""
        return self.root is None and self.labels is None

    def describe(self) -> str:
        """How logs and messages name the data: ``builtin``, the root, or the labels file."""
        return BUILTIN if self.builtin else (self.labels or self.root)

    def load(self):
        """The labelled chips (:class:`~eossl.data.labelled.LabelledChips`)."""
        from eossl.data.labelled.folders import load_class_folders, load_eurosat

        if self.labels is not None:
            from eossl.data.labelled.folders import load_label_chips

            return load_label_chips(self.scenes.open(), self.labels, self.label_column, size=self.chip_size,
                                    gsd=self.gsd, bands=self.bands, label_crs=self.label_crs,
                                    crs_key="data.label_crs")
        if self.torchgeo is not None:
            from eossl.data.labelled.torchgeo import load_torchgeo

            return load_torchgeo(self.torchgeo, self.root, bands=self.bands, splits=self.torchgeo_splits)
        if self.root is None:
            return load_eurosat(bands=self.bands)
        return load_class_folders(Path(self.root).expanduser(), sensor=self.sensor, band_order=self.band_order,
                                  bands=self.bands)
