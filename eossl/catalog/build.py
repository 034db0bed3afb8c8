"""``eossl catalog build``: scan folders of rasters (and datacubes) into a scene index."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import from_bounds
from tqdm.auto import tqdm

from eossl.catalog import scan
from eossl.catalog.index import SceneIndex, footprint_rows, make_frame
from eossl.catalog.sensors import Sensor, load_sensor
from eossl.data.sources import valid_of
from eossl.gdal_env import is_remote, open_raster

log = logging.getLogger(__name__)

__all__ = ["IndexOptions", "build_index", "MASK_SIZE"]

MASK_SIZE = 256  # longest side of the coarse valid mask stored per acquisition
DatetimeSource = Literal["filename", "tags", "sidecar"]
CUBE_SUFFIXES = (".nc", ".nc4", ".zarr", ".h5")


@dataclass
class IndexOptions:
    """How to read datetimes, band orders and nodata while scanning."""

    band_order: list[str] | None = None
    datetime_sources: list[DatetimeSource] = field(default_factory=lambda: ["filename", "tags", "sidecar"])
    datetime_patterns: list[str] = field(default_factory=list)
    datetime: str | None = None          # one fixed acquisition time for every file
    nodata: float | None = None          # overrides the sensor's nodata when files declare none
    patterns: tuple[str, ...] = scan.DEFAULT_PATTERNS
    exclude: tuple[str, ...] = ()
    strict: bool = False                 # a file that cannot be assigned to a band is an error, not a warning


def build_index(roots: list[str], sensor: str | Sensor, options: IndexOptions | None = None,
                progress: bool = True) -> SceneIndex:
    """Scan ``roots`` and return the index (call ``.save(path)`` to write it)."""
    options = options or IndexOptions()
    sensor = load_sensor(sensor)
    cube_roots = [r for r in roots if str(r).rstrip("/").endswith(CUBE_SUFFIXES)]
    raster_roots = [r for r in roots if r not in cube_roots]
    rows: list[dict] = []
    if cube_roots:
        from eossl.data.datacube import scan_cube

        for r in cube_roots:
            rows.extend(scan_cube(r, sensor, nodata=options.nodata))
    if raster_roots:
        rows.extend(_raster_rows(raster_roots, sensor, options, progress))
    if not rows:
        raise ValueError(f"no {sensor.name} rasters found under {', '.join(map(str, roots))} "
                         f"(looked for {', '.join(options.patterns)})")
    return SceneIndex(make_frame(rows))


def _raster_rows(roots: list[str], sensor: Sensor, options: IndexOptions, progress: bool) -> list[dict]:
    found = scan.find_files(roots, tuple(options.patterns), tuple(options.exclude))
    if not found:
        return []
    files, root_of = [], {}
    for root, path in tqdm(found, desc="reading headers", unit="file", disable=not progress):
        files.append(_header(path))
        root_of[path] = root
    acquisitions, skipped = scan.group_files(files, root_of, sensor, options.band_order)
    if skipped:
        if options.strict:
            raise ValueError("files that cannot be indexed:\n  " + "\n  ".join(skipped))
        log.warning("skipped %d file(s) that name no %s band:\n  %s", len(skipped), sensor.name,
                    "\n  ".join(skipped[:10]))
    if not acquisitions:
        raise ValueError(f"none of the {len(files)} files under {', '.join(roots)} could be assigned to a "
                         f"{sensor.name} band:\n  " + "\n  ".join(skipped[:10]))
    rows = []
    for acq in tqdm(acquisitions, desc="indexing acquisitions", unit="acq", disable=not progress):
        rows.append(_acquisition_row(acq, root_of, sensor, options))
    return rows


def _header(path: str) -> scan.RasterFile:
    with open_raster(path) as ds:
        return scan.RasterFile(path=path, count=ds.count, crs=ds.crs.to_string() if ds.crs else None,
                               res=(abs(ds.res[0]), abs(ds.res[1])), bounds=tuple(ds.bounds), width=ds.width,
                               height=ds.height, nodata=ds.nodata, descriptions=tuple(ds.descriptions),
                               tags=ds.tags())


def _acquisition_row(acq: scan.Acquisition, root_of: dict[str, str], sensor: Sensor,
                     options: IndexOptions) -> dict:
    files = {f.path: f for f, _ in acq.assets.values()}
    crss = {f.crs for f in files.values()}
    if None in crss:
        bad = [p for p, f in files.items() if f.crs is None]
        raise ValueError(f"{bad[0]}: the file has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX) and rebuild")
    if len(crss) > 1:
        raise ValueError(f"acquisition {acq.key}: its band files are in different CRSs ({', '.join(sorted(crss))}): "
                         f"{', '.join(sorted(files))}; reproject them to one CRS first")
    crs = crss.pop()
    b = np.array([f.bounds for f in files.values()])
    bounds = (b[:, 0].max(), b[:, 1].max(), b[:, 2].min(), b[:, 3].min())
    if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
        raise ValueError(f"acquisition {acq.key}: its band files do not overlap: {', '.join(sorted(files))}")
    res = min(min(f.res) for f in files.values())
    root = root_of[next(iter(files))]
    assets, nodata_of = {}, {}
    for band, (f, idx) in sorted(acq.assets.items(), key=lambda kv: sensor.band_names.index(kv[0])):
        nodata = f.nodata if f.nodata is not None else (
            options.nodata if options.nodata is not None else sensor.band(band).nodata)
        rel = f.path if is_remote(f.path) else str(Path(f.path).relative_to(root))
        assets[band] = {"path": rel, "band_index": idx, "nodata": nodata}
        nodata_of[band] = nodata
    mask = _coarse_mask(acq, bounds, res, nodata_of)
    native_wkt, geo = footprint_rows(bounds, crs)
    return {
        "id": acq.key, "sensor": sensor.name, "kind": "raster",
        "datetime": _acquisition_time(acq, sensor, options), "root": root,
        "assets": json.dumps(assets), "crs": crs, "res": float(res),
        "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3],
        "footprint_native": native_wkt, "valid_fraction": float(mask.mean()),
        "mask": np.packbits(mask.ravel()).tobytes(), "mask_shape": f"{mask.shape[0]},{mask.shape[1]}",
        "geometry": geo,
    }


def mask_shape(bounds: tuple[float, float, float, float], res: float) -> tuple[int, int]:
    """Shape of the coarse mask: the pixel grid at ``res``, shrunk so its longest side is <= MASK_SIZE."""
    w = max(1, round((bounds[2] - bounds[0]) / res))
    h = max(1, round((bounds[3] - bounds[1]) / res))
    f = max(1.0, max(w, h) / MASK_SIZE)
    return max(1, round(h / f)), max(1, round(w / f))


def _coarse_mask(acq: scan.Acquisition, bounds, res: float, nodata_of: dict[str, float | None]) -> np.ndarray:
    shape = mask_shape(bounds, res)
    mask = np.ones(shape, dtype=bool)
    for band, (f, idx) in acq.assets.items():
        with open_raster(f.path) as ds:
            window = from_bounds(*bounds, transform=ds.transform)
            try:
                data = ds.read(idx, window=window, out_shape=shape, resampling=Resampling.nearest)
                internal = (ds.read_masks(idx, window=window, out_shape=shape, resampling=Resampling.nearest) > 0
                            if MaskFlags.per_dataset in ds.mask_flag_enums[idx - 1] else None)
            except RasterioIOError as err:
                raise ValueError(f"cannot read raster {f.path} (band {idx}): {err}; the file may be truncated "
                                 f"or corrupt: re-download it, or leave it out with --exclude") from err
        valid = valid_of(data, nodata_of[band])
        if internal is not None:
            valid &= internal
        mask &= valid
    return mask


def _acquisition_time(acq: scan.Acquisition, sensor: Sensor, options: IndexOptions):
    if options.datetime:
        return scan.parse_datetime(options.datetime)
    patterns = list(options.datetime_patterns) + list(sensor.datetime_patterns)
    first = next(iter(acq.assets.values()))[0]
    for source in options.datetime_sources:
        if source == "filename":
            found = scan.datetime_from_name(acq.stem, patterns) or scan.datetime_from_name(acq.key, patterns)
        elif source == "tags":
            found = scan.datetime_from_tags(first.tags)
        else:
            found = scan.datetime_from_sidecar(first.path)
        if found is not None:
            return found
    return None
