"""Class-map outputs of :mod:`eossl.predict.maps`: tiled part files filled tile by tile, then converted to a
Cloud-Optimised GeoTIFF beside the output and renamed into place (never over an existing file)."""

from __future__ import annotations

import json
import uuid
from functools import lru_cache
from pathlib import Path

import rasterio
from rasterio.enums import Resampling
from rasterio.shutil import copy as gdal_copy

from eossl import __version__

NODATA = 255
PROB_SCALE = 254  # probabilities are stored as round(p * 254); 255 is nodata


def probabilities_path(out: str | Path) -> Path:
    """Where the per-class probabilities of class map ``out`` go: ``<out stem>_probabilities.tif``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_probabilities{out.suffix}")


@lru_cache(maxsize=1)
def has_cog_driver() -> bool:
    with rasterio.Env() as env:
        return "COG" in env.drivers()


def temp_name(out: Path, suffix: str) -> Path:
    """A fresh hidden name beside ``out`` (same folder, so the final rename is atomic)."""
    return out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.{suffix}")


def part_file(out: Path, grid, count: int, tags: dict, descriptions, colors=None, scale=None):
    """``(path, dataset)``: a tiled GTiff beside ``out`` open for writing, to be filled tile by tile."""
    name = temp_name(out, "part.tif")
    ds = rasterio.open(name, "w", driver="GTiff", width=grid.width, height=grid.height, count=count,
                       dtype="uint8", crs=grid.crs, transform=grid.transform, nodata=NODATA, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", zlevel=1, bigtiff="if_safer")
    ds.update_tags(**tags)
    ds.descriptions = tuple(descriptions)
    if colors is not None:
        ds.write_colormap(1, {**{k: (*rgb, 255) for k, rgb in enumerate(colors)}, NODATA: (0, 0, 0, 0)})
    if scale is not None:
        ds.scales = (scale,) * count
    return Path(name), ds


def to_cog(part: Path, out: Path, resampling: str) -> Path:
    """Convert a filled part file to a hidden COG beside ``out`` (GDAL's COG driver, else tiled GTiff + overviews)."""
    tmp = temp_name(out, "tmp")
    if has_cog_driver():
        gdal_copy(str(part), str(tmp), driver="COG", compress="deflate", overview_resampling=resampling,
                  blocksize=512, bigtiff="if_safer")
    else:
        with rasterio.open(part, "r+") as ds:
            factors = [2 ** k for k in range(1, 30) if max(ds.width, ds.height) / 2 ** k >= 256]
            ds.build_overviews(factors, Resampling[resampling.lower()])
        gdal_copy(str(part), str(tmp), driver="GTiff", tiled=True, blockxsize=512, blockysize=512,
                  compress="deflate", copy_src_overviews=True, bigtiff="if_safer")
    return tmp


def check_output(out: Path, probabilities: bool) -> list[Path]:
    """The output path(s); ValueError if one exists (outputs are never overwritten). Creates the folder."""
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"output {out} must be a .tif file (a Cloud-Optimised GeoTIFF is written)")
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} is a file; choose another --out")
    outs = [out, probabilities_path(out)] if probabilities else [out]
    for path in outs:
        if path.exists():
            raise ValueError(f"{path} exists; choose another --out (outputs are never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return outs


def tags(info, label: str, acquisition: str, overlap: float) -> dict:
    return {"classes": json.dumps(list(info.classes)), "colors": json.dumps([list(c) for c in info.colors]),
            "task": info.task, "arch": info.arch, "bands": json.dumps(list(info.bands)), "gsd_m": str(info.gsd_m),
            "img_size": str(info.img_size), "overlap": str(overlap), "source": label, "acquisition": acquisition,
            "nodata": f"{NODATA}: invalid input or not covered", "eossl_version": __version__}


