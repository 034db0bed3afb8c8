"""Is a raster file whole? Checks run by ``eossl catalog build`` on every file it indexes.

A file cut short (an interrupted download) often still opens: its header sits at the start. Two checks find it:

* the header check (always, costs no pixel read): in a local GeoTIFF, the last block of every band must end
  inside the file;
* the block read (skipped with ``--quick``): the last full-resolution block (bottom-right, up to 512 x 512 px)
  of every band is decoded, as a data-loader worker would; this also finds corrupt compressed data, and it is
  the only check for JPEG 2000, VRT and remote files.

A file without a CRS always gets the block read, so a truncated file is not reported as "no CRS".
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from rasterio.windows import Window

from eossl.gdal_env import is_remote

__all__ = ["unreadable", "exclude_hint", "check_intact", "gdal_detail"]

MAX_BLOCK = 512  # longest side of the block read (JPEG 2000 files report the whole image as one block)


def exclude_hint(path: str) -> str:
    """How to build the index without ``path``; for a remote href (a STAC asset URL), what to check instead: a
    network or credential failure is not fixed by leaving files out."""
    if is_remote(path):
        return ("if it is remote, check the network and the credentials GDAL uses for it (AWS_NO_SIGN_REQUEST=YES "
                "for public buckets, AWS_PROFILE, GDAL_HTTP_* options) and run again; `--quick` reads headers only")
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    return f"leave it out of the index with `eossl catalog build --exclude '{name}'`"


def unreadable(path: str, detail: str) -> str:
    """The one-line message for a file that cannot be read, with both ways out."""
    detail = " ".join(str(detail).replace(f"{path}: ", "").split())
    if is_remote(path):
        return f"{path}: could not be read ({detail}); {exclude_hint(path)}"
    return (f"{path}: the file is unreadable: truncated or corrupt ({detail}); re-download it (compare its size "
            f"with the source), or {exclude_hint(path)}")


def check_intact(ds, path: str, read_block: bool = True) -> None:
    """Raise ValueError (:func:`unreadable`) when the open dataset ``ds`` of ``path`` is cut short or corrupt."""
    short = _truncated_blocks(ds, path)
    if short:
        raise ValueError(unreadable(path, short))
    if read_block or ds.crs is None:
        _read_last_block(ds, path)


def _last_block(ds, bidx: int) -> tuple[int, int, int, int]:
    """(x index, y index, block height, block width) of the bottom-right block of band ``bidx``."""
    bh, bw = ds.block_shapes[bidx - 1]
    return math.ceil(ds.width / bw) - 1, math.ceil(ds.height / bh) - 1, bh, bw


def _truncated_blocks(ds, path: str) -> str | None:
    """What is missing when a local GeoTIFF's last block of some band ends beyond the end of the file."""
    if ds.driver != "GTiff" or is_remote(path) or not Path(path).is_file():
        return None
    size = os.path.getsize(path)
    for bidx in range(1, ds.count + 1):
        x, y, _, _ = _last_block(ds, bidx)
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
        nbytes = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
        if offset is None or nbytes is None:   # a sparse (empty) block, or offsets GDAL could not read
            continue
        end = int(offset) + int(nbytes)
        if end > size:
            return (f"band {bidx}'s last block ends at byte {end:,} but the file has {size:,} bytes")
    return None


def _read_last_block(ds, path: str) -> None:
    x, y, bh, bw = _last_block(ds, 1)
    col = max(x * bw, ds.width - MAX_BLOCK)
    row = max(y * bh, ds.height - MAX_BLOCK)
    window = Window(col, row, ds.width - col, ds.height - row)
    try:
        ds.read(window=window)
    except Exception as err:  # GDAL reports truncation and decoding errors with several exception types
        raise ValueError(unreadable(path, f"reading its last block failed: {gdal_detail(err)}")) from err


def gdal_detail(err: Exception) -> str:
    """The useful part of a rasterio read error (the cause GDAL gave, when rasterio only says 'Read failed')."""
    cause = err.__cause__ or err.__context__
    text = str(err)
    if cause is not None and "previous exception" in text:
        text = str(cause)
    return text or type(err).__name__
