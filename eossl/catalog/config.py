"""How a scan reads files (:class:`IndexOptions`, for :func:`eossl.catalog.build.build_index`) and the config of
``eossl catalog build`` (:class:`CatalogBuildConfig`: those options plus what to scan and where to write)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eossl.config import field

__all__ = ["IndexOptions", "CatalogBuildConfig"]

DatetimeSource = Literal["filename", "tags", "sidecar"]


@dataclass
class IndexOptions:
    """How to read datetimes, band orders and nodata while scanning."""

    band_order: list[str] | None = field(None, help="band names of multi-band files in file order; NAME:skip "
                                                    "leaves a band out")
    datetime_sources: list[DatetimeSource] = field(default_factory=lambda: ["filename", "tags", "sidecar"])
    datetime_patterns: list[str] = field(default_factory=list)
    datetime: str | None = field(None, help="one fixed acquisition time for every file")
    nodata: float | None = field(None, help="nodata of files that declare none (instead of the sensor's)")
    include: list[str] | None = field(None, help="file name globs (default: eossl.catalog.scan.DEFAULT_PATTERNS)")
    exclude: list[str] = field(default_factory=list)
    strict: bool = field(False, help="a file that cannot be assigned to a band is an error, not a warning")
    quick: bool = field(False, help="check headers only, skip reading one block of every file")
    cloud_mask: bool = field(True, help="use SCL / QA_PIXEL / Fmask files beside the bands for the valid mask")


@dataclass(kw_only=True)
class CatalogBuildConfig(IndexOptions):
    """``eossl catalog build``: what to scan and how (flags fill it; --config / --set as for every command)."""

    roots: list[str] = field(help="folders, files, URLs, .nc/.zarr datacubes or STAC JSON (Item, ItemCollection, "
                                  "catalog) to scan")
    sensor: str | None = field(None, help="sensor name or a sensor YAML path; inferred from STAC items when every "
                                          "root is STAC JSON")
    out: str = field(help="output .parquet path")
    overwrite: bool = False
