"""Process-wide GDAL/rasterio setup, in one place, and file opening with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

__all__ = ["configure_gdal", "open_raster", "is_remote"]

# Defaults that make cloud-hosted COGs fast to open and cheap to read; a value the user already set wins.
_GDAL_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.vrt",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "VSI_CACHE": "TRUE",
    "GDAL_NUM_THREADS": "1",  # parallelism comes from data-loader workers, not from GDAL threads
}
_configured = False


def configure_gdal() -> None:
    """Set GDAL configuration defaults through the environment (idempotent, read by GDAL on demand)."""
    global _configured
    if _configured:
        return
    for key, value in _GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)
    _configured = True


def is_remote(path: str) -> bool:
    return str(path).startswith(("/vsi", "s3://", "gs://", "http://", "https://", "az://"))


def open_raster(path: str) -> rasterio.DatasetReader:
    """Open a raster for reading; FileNotFoundError / ValueError naming the file when that fails."""
    configure_gdal()
    if not is_remote(path) and not Path(path).exists():
        raise FileNotFoundError(f"raster file not found: {path} (was it moved or deleted? rebuild the index "
                                f"with `eossl catalog build`; if the data moved, open the index with its new "
                                f"location: the `root` key, e.g. corpus.root when pretraining)")
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        detail = " ".join(str(err).replace(f"{path}: ", "").split())
        raise ValueError(f"cannot read raster {path}: {detail}. The file is unreadable (truncated, corrupt, missing "
                         f"or not a raster): check that GDAL can open it (`gdalinfo`), and re-download it if it was "
                         f"cut short") from err
