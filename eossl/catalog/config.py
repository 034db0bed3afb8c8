"""How a scan reads files (:class:`IndexOptions`, for :func:`eossl.catalog.build.build_index`) and the config of
``eossl catalog build`` (:class:`CatalogBuildConfig`: those options plus what to scan and where to write)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from eossl.config import ConfigError, field

__all__ = ["IndexOptions", "CatalogBuildConfig", "is_stac_source"]

DatetimeSource = Literal["filename", "tags", "sidecar"]


def is_stac_source(root: str) -> bool:
    """Whether a ``catalog build`` root is STAC JSON (by name: ``.json`` / ``.geojson``, local or URL)."""
    text = str(root)
    path = urlparse(text).path if "://" in text else text
    return path.lower().endswith((".json", ".geojson"))


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

    def __post_init__(self):
        others = [r for r in self.roots or [] if not is_stac_source(str(r))]
        if self.sensor is None and others:
            raise ConfigError(f"sensor: missing required field (the roots that are not STAC JSON need it: "
                              f"{', '.join(map(str, others[:3]))}); pass --sensor NAME")
