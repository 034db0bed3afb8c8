"""Open file handles for pixel sources (raster files, datacube variables), kept per worker process.

A handle exposes ``crs``, ``transform``, ``width``, ``height`` and ``read_block(asset, rows, cols)``, which returns
the pixels of an integer window together with their validity, padding with invalid pixels outside the source.
Handles are cached per process (a forked data-loader worker re-opens its own: GDAL handles must not cross a fork)
with a bound on how many stay open.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Protocol

import numpy as np
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from eossl.catalog.cubes import padded_read
from eossl.catalog.integrity import gdal_detail, unreadable
from eossl.catalog.quality import valid_of
from eossl.gdal_env import open_raster

__all__ = ["PixelSource", "RasterHandle", "HandleCache", "ReadError", "MissingFileError", "valid_of"]

# torch's text for an exception re-raised from a worker: "Caught ReadError in DataLoader worker process 0.
# Original Traceback (most recent call last): ... eossl.data.sources.ReadError: <message>"
_WORKER_HEAD = re.compile(r"^Caught (\w+) in [^\n]*\nOriginal ")


class ReadError(ValueError):
    """Reading pixels failed. The message is one line naming the file, the band and what to do.

    Raised in a data-loader worker, it reaches the main process through torch, which rebuilds it as
    ``ReadError("Caught ReadError in DataLoader worker process 0. Original Traceback ...")``. The constructor
    recovers the one-line message from that text; the worker's traceback stays available as a note on the
    exception (printed with the traceback under ``eossl -v``)."""

    def __init__(self, message: str):
        text = str(message)
        head = _WORKER_HEAD.match(text)
        found = re.findall(rf"^(?:[\w.]+\.)?{head.group(1)}: (.*)$", text, re.MULTILINE) if head else []
        super().__init__(found[-1] if found else text)
        if found:
            self.add_note(text)


class MissingFileError(ReadError, FileNotFoundError):
    """A file the index names is not there (a :class:`ReadError` that is also a FileNotFoundError)."""


class PixelSource(Protocol):
    crs: object
    transform: Affine
    width: int
    height: int

    def read_block(self, asset, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        ...

    def close(self) -> None:
        ...


class RasterHandle:
    """One open raster file (GeoTIFF/COG/JP2/VRT, local or remote)."""

    def __init__(self, path: str):
        self.path = path
        self.ds = open_raster(path)
        self.crs = self.ds.crs
        self.crs_str = self.crs.to_string() if self.crs else ""
        self.transform = self.ds.transform
        self.width, self.height = self.ds.width, self.ds.height
        self.dtype = self.ds.dtypes[0]
        self.per_dataset_mask = [MaskFlags.per_dataset in flags for flags in self.ds.mask_flag_enums]

    def read_block(self, asset, rows, cols):
        idx = asset.band_index
        if idx > self.ds.count:
            raise ValueError(f"{self.path}: band index {idx} requested but the file has {self.ds.count} bands; "
                             f"the index is stale, rebuild it with `eossl catalog build`")
        per_dataset = self.per_dataset_mask[idx - 1]

        def read(r0, r1, c0, c1):
            return self.ds.read(idx, window=Window(c0, r0, c1 - c0, r1 - r0))

        try:
            data, inside = padded_read(read, self.height, self.width, rows, cols, self.dtype)
            valid = inside & valid_of(data, asset.nodata)
            if per_dataset:  # an internal mask band (e.g. GDAL .msk / COG mask) marks nodata too
                masks, _ = padded_read(
                    lambda r0, r1, c0, c1: self.ds.read_masks(idx, window=Window(c0, r0, c1 - c0, r1 - r0)),
                    self.height, self.width, rows, cols, np.uint8)
                valid &= masks > 0
        except MemoryError as err:   # a size problem, not a damaged file: say so
            raise MemoryError(f"reading rows {rows} x columns {cols} of {self.path} (band {idx}) needs more memory "
                              f"than is free; read a smaller window (check the GSD and CRS units of the "
                              f"request)") from err
        except Exception as err:  # GDAL reports truncated or corrupt blocks with several exception types
            if isinstance(err, ValueError) and str(self.path) in str(err):
                raise
            raise ValueError(unreadable(self.path, f"band index {idx}: {gdal_detail(err)}")) from err
        return data, valid

    def close(self) -> None:
        self.ds.close()


class HandleCache:
    """LRU of open handles, reset in a new process (after fork)."""

    def __init__(self, max_open: int = 256):
        self.max_open = max_open
        self._pid = os.getpid()
        self._handles: OrderedDict[tuple, PixelSource] = OrderedDict()

    def get(self, key: tuple, factory) -> PixelSource:
        if os.getpid() != self._pid:  # forked worker: never use the parent's GDAL handles
            self._handles = OrderedDict()
            self._pid = os.getpid()
        handle = self._handles.get(key)
        if handle is None:
            handle = factory()
            self._handles[key] = handle
            if len(self._handles) > self.max_open:
                _, old = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(key)
        return handle

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()

    def __getstate__(self):  # handles are never pickled into workers (spawn); they re-open lazily
        return {"max_open": self.max_open, "_pid": -1, "_handles": OrderedDict()}
