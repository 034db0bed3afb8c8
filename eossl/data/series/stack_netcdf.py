"""Stack layers from NetCDF / Zarr files: a folder of one file per resolution (WorldCereal style) or one datacube.

A file is an image file when it has a time dimension (:data:`eossl.catalog.cubes.TIME_DIMS`), x/y and variables
that are bands of the sensor (or one variable with a band dimension, see :mod:`eossl.catalog.cubes`); a file with
``VV``/``VH`` variables is a Sentinel-1 file; anything else (a label file: no time dimension, no band variables)
is skipped. A variable named ``SCL``/``QA_PIXEL``/``Fmask`` is the cloud mask of the file's dates.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eossl.catalog.cubes import BAND_DIMS, TIME_DIMS, cube_layout, open_cube
from eossl.catalog.quality import kind_of_band, usable, valid_of
from eossl.catalog.scan import band_of_name
from eossl.catalog.sensors import Band, Sensor
from eossl.data.series.stack_layers import S1_BANDS, Layer, MaskLayer

log = logging.getLogger(__name__)

__all__ = ["CUBE_SUFFIXES", "CubeFile", "find_cube_files", "describe", "infer_sensor", "read_cubes", "decode"]

CUBE_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".zarr")
# product names in global attributes -> sensor (used only when no sensor is given)
_PRODUCT_ATTRS = ((re.compile(r"S2[A-D]?[_\-]?(MSI)?L2A", re.I), "sentinel2-l2a"),
                  (re.compile(r"S2[A-D]?[_\-]?(MSI)?L1C", re.I), "sentinel2-l1c"))


@dataclass
class CubeFile:
    """One opened NetCDF/Zarr file (stored values: ``mask_and_scale=False``) and its time dimension."""

    path: Path
    ds: object
    time_dim: str | None


def find_cube_files(path: Path) -> list[Path]:
    """The NetCDF/Zarr files of a folder (not recursive), or ``[path]`` for one such file."""
    if path.suffix.lower() in CUBE_SUFFIXES:
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.suffix.lower() in CUBE_SUFFIXES and not p.name.startswith("."))


def describe(path: Path) -> CubeFile:
    ds = open_cube(str(path), mask_and_scale=False)
    dims = set(ds.dims)
    time_dim = next((d for d in TIME_DIMS if d in dims), None)
    return CubeFile(path=path, ds=ds, time_dim=time_dim)


def infer_sensor(files: list[CubeFile]) -> str | None:
    """``sentinel2-l2a`` when a file has an ``SCL`` variable or an attribute names an S2 L2A product (L1C alike)."""
    for f in files:
        if any(kind_of_band(str(v)) == "scl" for v in f.ds.data_vars):
            return "sentinel2-l2a"
    for f in files:
        texts = [str(v) for v in f.ds.attrs.values() if isinstance(v, str)]
        for pattern, name in _PRODUCT_ATTRS:
            if any(pattern.search(t) for t in texts):
                return name
    return None


def decode(raw: np.ndarray, attrs: dict, band: Band | None) -> tuple[np.ndarray, np.ndarray]:
    """Stored values -> (physical float32 values, 0 where invalid; valid bool). Fill from ``_FillValue`` /
    ``missing_value`` / ``nodata`` (else the sensor band's nodata); scale from ``scale_factor`` / ``add_offset``
    (else the band's; float values without either that look physical, p99 <= 2.5, are kept as they are)."""
    fill = next((attrs[k] for k in ("_FillValue", "missing_value", "nodata") if k in attrs), None)
    if fill is None and band is not None:
        fill = band.nodata
    fill = None if fill is None else float(np.asarray(fill).ravel()[0])
    valid = valid_of(raw, fill)
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    if scale is None and offset is None:
        physical = raw.dtype.kind == "f" and (not valid.any() or np.percentile(raw[valid], 99) <= 2.5)
        scale, offset = (1.0, 0.0) if physical or band is None else (band.scale, band.offset)
    scale = 1.0 if scale is None else float(np.asarray(scale).ravel()[0])
    offset = 0.0 if offset is None else float(np.asarray(offset).ravel()[0])
    values = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    values[~valid] = 0
    return values, valid


def _channels(ds, sensor: Sensor, include_s1: bool) -> list[tuple[str, str, str | None, str]]:
    """(band, variable, band-coordinate value or None, group) of every band / S1 channel in the file."""
    found: dict[str, tuple[str, str, str | None, str]] = {}
    for var in ds.data_vars:
        da = ds[var]
        band_dim = next((d for d in da.dims if d in BAND_DIMS), None)
        if band_dim is not None:
            for value in ds[band_dim].values:
                band = sensor.match(str(value))
                if band:
                    found.setdefault(band, (band, var, value, "optical"))
            continue
        if da.ndim < 3 or kind_of_band(str(var)):
            continue
        if str(var).upper() in S1_BANDS:
            if include_s1:
                found.setdefault(str(var).upper(), (str(var).upper(), var, None, "s1"))
            continue
        band, _ = band_of_name(str(var), sensor)
        if band:
            found.setdefault(band, (band, var, None, "optical"))
    return list(found.values())


def _array(f: CubeFile, var: str, sel, lay) -> np.ndarray:
    """(T, h, w) stored values of one variable (band ``sel``), north row first."""
    da = f.ds[var]
    if sel is not None:
        da = da.sel({next(d for d in da.dims if d in BAND_DIMS): sel})
    arr = da.transpose(f.time_dim, lay.y_dim, lay.x_dim).values
    return arr[:, ::-1] if lay.flip_y else arr


def _times(f: CubeFile) -> np.ndarray:
    t = f.ds[f.time_dim].values
    if not np.issubdtype(t.dtype, np.datetime64):
        raise ValueError(f"{f.path}: time coordinate {f.time_dim!r} holds {t.dtype} values, not dates; give it CF "
                         f"units (e.g. 'days since 2018-01-01') so it decodes to dates")
    return t.astype("datetime64[ns]")


def _read_file(f: CubeFile, channels, sensor: Sensor) -> tuple[list[Layer], list[MaskLayer]]:
    """One Layer per grid of the file's channels, and a MaskLayer per mask variable."""
    times = _times(f)
    groups: dict[tuple, list] = {}
    for band, var, sel, group in channels:
        lay = cube_layout(f.ds, var, str(f.path))
        groups.setdefault((tuple(lay.transform), lay.crs.to_string(), group), []).append((band, var, sel, lay))
    layers = []
    for (_, _, group), members in groups.items():
        vals, oks = [], []
        for band, var, sel, lay in members:
            spec = sensor.band(band) if group == "optical" else None
            v, ok = decode(_array(f, var, sel, lay), f.ds[var].attrs, spec)
            vals.append(v)
            oks.append(ok)
        lay = members[0][3]
        layers.append(Layer(values=np.stack(vals, 1), valid=np.stack(oks, 1), times=times,
                            bands=[m[0] for m in members], crs=lay.crs, transform=lay.transform,
                            source=str(f.path), group=group))
    masks = []
    for var in f.ds.data_vars:
        kind = kind_of_band(str(var))
        if kind and f.time_dim in f.ds[var].dims and f.ds[var].ndim == 3:
            lay = cube_layout(f.ds, var, str(f.path))
            masks.append(MaskLayer(usable=usable(kind, _array(f, var, None, lay)), times=times, crs=lay.crs,
                                   transform=lay.transform, source=f"{f.path}:{var}", kind=kind))
    return layers, masks


def read_cubes(files: list[CubeFile], sensor: Sensor, include_s1: bool,
               where: Path) -> tuple[list[Layer], list[MaskLayer], list[str]]:
    """Layers, masks and the paths used, from the image files among ``files`` (others skipped, logged)."""
    layers, masks, used, skipped = [], [], [], []
    for f in files:
        channels = _channels(f.ds, sensor, include_s1)
        if f.time_dim is None:
            skipped.append(f"{f.path.name}: no time dimension ({'/'.join(TIME_DIMS)})")
            continue
        if not channels:
            skipped.append(f"{f.path.name}: no variable is a {sensor.name} band"
                           + ("" if include_s1 else " (VV/VH are read with include_s1)"))
            continue
        file_layers, file_masks = _read_file(f, channels, sensor)
        layers += file_layers
        masks += file_masks
        used.append(str(f.path))
    for msg in skipped:
        log.info("not an image file: %s", msg)
    if not any(layer.group == "optical" for layer in layers):
        raise FileNotFoundError(f"no image files in {where}: looked for NetCDF/Zarr files with a time dimension and "
                                f"variables that are {sensor.name} bands ({', '.join(sensor.band_names)}); "
                                f"skipped: {'; '.join(skipped) or 'nothing'}")
    return layers, masks, used
