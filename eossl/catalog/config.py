"""``eossl catalog build``'s config: what to scan and how; :meth:`CatalogBuildConfig.options` is the scanner's
:class:`~eossl.catalog.build.IndexOptions`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eossl.config import field

__all__ = ["CatalogBuildConfig"]


@dataclass
class CatalogBuildConfig:
    """``eossl catalog build``: what to scan and how (flags fill it; --config / --set as for every command)."""

    roots: list[str] = field(help="folders, files, URLs or .nc/.zarr datacubes to scan")
    sensor: str = field(help="sensor name or a sensor YAML path")
    out: str = field(help="output .parquet path")
    band_order: list[str] | None = field(None, help="band names of multi-band files in file order; NAME:skip "
                                                    "leaves a band out")
    datetime_sources: list[Literal["filename", "tags", "sidecar"]] = field(
        default_factory=lambda: ["filename", "tags", "sidecar"])
    datetime_patterns: list[str] = field(default_factory=list)
    datetime: str | None = None
    nodata: float | None = None
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    strict: bool = False
    overwrite: bool = False
    quick: bool = field(False, help="check headers only, skip reading one block of every file")
    cloud_mask: bool = field(True, help="use SCL / QA_PIXEL / Fmask files beside the bands for the valid mask")

    def options(self):
        """The scanner's :class:`~eossl.catalog.build.IndexOptions` for this config."""
        from eossl.catalog.build import IndexOptions
        from eossl.catalog.scan import DEFAULT_PATTERNS

        return IndexOptions(
            band_order=self.band_order, datetime_sources=list(self.datetime_sources),
            datetime_patterns=list(self.datetime_patterns), datetime=self.datetime, nodata=self.nodata,
            patterns=tuple(self.include) if self.include else DEFAULT_PATTERNS, exclude=tuple(self.exclude),
            strict=self.strict, quick=self.quick, cloud_mask=self.cloud_mask)
