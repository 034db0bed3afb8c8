"""One scene-index row from one acquisition: header checks, bounds, radiometric scaling, the coarse valid mask and
the cloud mask. Used by the folder scan (:mod:`eossl.catalog.build`) and by STAC items (:mod:`eossl.catalog.stac`)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import from_bounds

from eossl.catalog import quality, scaling, scan, sidecar
from eossl.catalog.config import IndexOptions
from eossl.catalog.index import footprint_rows, mask_shape
from eossl.catalog.integrity import check_intact, exclude_hint, unreadable
from eossl.catalog.sensors import Sensor
from eossl.gdal_env import is_remote, open_raster

log = logging.getLogger(__name__)

__all__ = ["header", "acquisition_row", "add_quality_mask"]


def header(path: str, quick: bool = False) -> scan.RasterFile:
    """What the catalog needs from a file's header, after checking the file is whole (see catalog.integrity)."""
    try:
        with warnings.catch_warnings():  # a missing CRS is reported below, with what to do
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = open_raster(path)
    except ValueError as err:
        raise ValueError(f"{err}; or {exclude_hint(path)}") from err
    with ds:
        check_intact(ds, path, read_block=not quick)
        return scan.RasterFile(path=path, count=ds.count, crs=ds.crs.to_string() if ds.crs else None,
                               res=(abs(ds.res[0]), abs(ds.res[1])), bounds=tuple(ds.bounds), width=ds.width,
                               height=ds.height, nodata=ds.nodata, descriptions=tuple(ds.descriptions),
                               tags=ds.tags())


def acquisition_row(acq: scan.Acquisition, root_of: dict[str, str], sensor: Sensor,
                     options: IndexOptions, logged: set[str] | None = None) -> dict:
    """One index row. ``logged``: radiometry notes already logged at info level in this build (others: debug)."""
    files = {f.path: f for f, _ in acq.assets.values()}
    # the first band file with metadata beside it (a STAC item may list only some of the bands)
    side = next((i for i in map(sidecar.read_sidecar, files) if i.datetime), sidecar.SidecarInfo())
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
    chosen = _scaling(acq, sensor, nodata_of)
    for band, (scale, offset) in chosen.overrides.items():
        assets[band].update(scale=scale, offset=offset)
    note = chosen.note if chosen.as_declared else f"acquisition {acq.key}: {chosen.note}"
    if logged is None or note not in logged:
        log.info("radiometry: %s", note)
        if logged is not None:
            logged.add(note)
    mask = _coarse_mask(acq, bounds, res, nodata_of)
    native_wkt, geo = footprint_rows(bounds, crs)
    return {
        "id": acq.key, "sensor": sensor.name, "kind": "raster",
        "datetime": _acquisition_time(acq, sensor, options, side), "root": root,
        "assets": json.dumps(assets), "crs": crs, "res": float(res),
        "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3],
        "footprint_native": native_wkt, "valid_fraction": float(mask.mean()),
        "mask": np.packbits(mask.ravel()).tobytes(), "mask_shape": f"{mask.shape[0]},{mask.shape[1]}",
        "geometry": geo,
    }


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
                raise ValueError(unreadable(f.path, f"band {idx}: {err.__cause__ or err}")) from err
        valid = quality.valid_of(data, nodata_of[band])
        if internal is not None:
            valid &= internal
        mask &= valid
    return mask


def add_quality_mask(row: dict, qm: quality.QualityMask) -> None:
    """Mark the pixels ``qm`` flags (cloud, shadow, cirrus, no data) invalid in the row's coarse mask, and record
    the mask in its assets (key ``_mask``) so that readers apply it to every chip."""
    f = qm.file
    if f.crs != row["crs"]:
        log.warning("acquisition %s: its %s mask %s is in %s, its bands in %s; the mask is not used (reproject it "
                    "to the bands' CRS, or pass --no-cloud-mask to silence this)", row["id"], qm.kind, f.path,
                    f.crs, row["crs"])
        return
    shape = tuple(int(v) for v in row["mask_shape"].split(","))
    bounds = (row["minx"], row["miny"], row["maxx"], row["maxy"])
    with open_raster(f.path) as ds:
        try:  # outside the mask file counts as unusable (masked)
            codes = ds.read(qm.band_index, window=from_bounds(*bounds, transform=ds.transform), out_shape=shape,
                            resampling=Resampling.nearest, boundless=True, masked=True)
        except RasterioIOError as err:
            raise ValueError(unreadable(f.path, f"{qm.kind} mask: {err.__cause__ or err}")) from err
    usable = quality.usable(qm.kind, codes.filled(0)) & ~np.ma.getmaskarray(codes)
    h, w = shape
    mask = np.unpackbits(np.frombuffer(row["mask"], dtype=np.uint8), count=h * w).reshape(shape).astype(bool)
    mask &= usable
    row["mask"] = np.packbits(mask.ravel()).tobytes()
    row["valid_fraction"] = float(mask.mean())
    try:
        rel = f.path if is_remote(f.path) else str(Path(f.path).relative_to(row["root"]))
    except ValueError:  # not under the acquisition's root: keep the absolute path
        rel = f.path
    assets = json.loads(row["assets"])
    assets[quality.MASK_KEY] = {"path": rel, "band_index": qm.band_index, "nodata": None, "kind": qm.kind}
    row["assets"] = json.dumps(assets)
    log.debug("acquisition %s: %s mask %s leaves %.1f%% of the pixels valid", row["id"], qm.kind, f.path,
              100 * row["valid_fraction"])


def _scaling(acq: scan.Acquisition, sensor: Sensor, nodata_of: dict[str, float | None]) -> scaling.Scaling:
    """Scale per band from each file's dtype and a small sample of its values (see catalog.scaling)."""
    by_file: dict[str, dict[str, int]] = {}
    for band, (f, idx) in acq.assets.items():
        by_file.setdefault(f.path, {})[band] = idx
    samples = []
    for path, bands in by_file.items():
        for band, (dtype, values) in scaling.sample_file(path, bands, nodata_of).items():
            samples.append(scaling.BandSample(sensor.band(band), path, dtype, values))
    return scaling.choose_scaling(samples, sensor.name)


def _acquisition_time(acq: scan.Acquisition, sensor: Sensor, options: IndexOptions,
                      side: sidecar.SidecarInfo | None = None):
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
            found = (side or sidecar.read_sidecar(first.path)).datetime
        if found is not None:
            return found
    return None
