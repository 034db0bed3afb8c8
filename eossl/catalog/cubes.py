"""xarray datacubes (NetCDF / Zarr with x, y, time and bands): indexed one row per time step, and read as a pixel
source behind the chip reader.

Layouts understood:

* bands as variables (``S2-L2A-B02``, ``B04``, ``red``...: a variable is a band when a token of its name is a band
  name or alias of the sensor) or as a ``band``/``bands`` dimension of one variable, whose coordinate values
  name the bands;
* time called ``time``, ``t``, ``date`` or ``timestamp`` (or no time dimension: one acquisition);
* spatial dimensions ``x``/``y`` (or ``easting``/``northing``), regular pixel-centre coordinates, either
  north-up (y decreasing) or south-up;
* the CRS from the variable's ``grid_mapping`` variable (``crs_wkt``/``spatial_ref``), a ``spatial_ref``
  variable, or a ``crs`` / ``epsg`` attribute (WorldCereal NetCDF: ``epsg: 32631``).

Each time step becomes one index row (kind ``cube``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS

from eossl.catalog.quality import valid_of
from eossl.catalog.scan import band_of_name
from eossl.catalog.sensors import Sensor

__all__ = ["CubeLayout", "open_cube", "cube_layout", "scan_cube", "CubeHandle", "find_crs", "TIME_DIMS"]

TIME_DIMS = ("time", "t", "date", "timestamp")
BAND_DIMS = ("band", "bands", "spectral")
X_DIMS = ("x", "easting", "X")
Y_DIMS = ("y", "northing", "Y")


@dataclass
class CubeLayout:
    """Where things are in one cube."""

    time_dim: str | None
    x_dim: str
    y_dim: str
    transform: Affine          # north-up transform of the pixel grid
    flip_y: bool               # True when y increases with the row index in the file (south-up)
    crs: CRS
    width: int
    height: int


def open_cube(path: str, **options):
    """Open a NetCDF/Zarr datacube lazily, with an error naming the file; ``options`` go to xarray's opener
    (e.g. ``mask_and_scale=False`` for the stored values)."""
    import xarray as xr

    if not str(path).startswith(("s3://", "gs://", "http")) and not Path(path).exists():
        raise FileNotFoundError(f"datacube not found: {path}")
    try:
        if str(path).rstrip("/").endswith(".zarr"):
            return xr.open_zarr(path, **options)
        try:
            return xr.open_dataset(path, engine="h5netcdf", **options)
        except (ValueError, OSError):
            return xr.open_dataset(path, **options)
    except Exception as err:
        raise ValueError(f"cannot open datacube {path}: {err}; NetCDF needs h5netcdf (or netCDF4), "
                         f"Zarr needs zarr installed") from err


def _pick(names, candidates) -> str | None:
    for c in candidates:
        if c in names:
            return c
    return None


def find_crs(ds, var: str | None = None) -> CRS | None:
    """The CRS of variable ``var`` (or of the dataset): see the module doc for where it is looked for; None when
    nothing names one."""
    candidates = []
    gm = ds[var].attrs.get("grid_mapping") if var in ds else None
    if gm and gm in ds.variables:
        candidates.append(ds[gm].attrs)
    if "spatial_ref" in ds.variables:
        candidates.append(ds["spatial_ref"].attrs)
    if "crs" in ds.variables:
        candidates.append(ds["crs"].attrs)
    candidates.append(ds.attrs)
    for attrs in candidates:
        for key in ("crs_wkt", "spatial_ref", "crs", "proj4", "epsg"):
            if key in attrs:
                try:
                    return _parse_crs(attrs[key])
                except Exception:
                    continue
    return None


def _parse_crs(value) -> CRS:
    """A CRS from WKT/PROJ/``EPSG:n`` text or a bare EPSG code (``32631``, ``"32631"``)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
        return CRS.from_epsg(int(value))
    return CRS.from_user_input(value)


def _crs_of(ds, var, path) -> CRS:
    crs = find_crs(ds, var)
    if crs is not None:
        return crs
    raise ValueError(f"datacube {path} has no CRS (looked for a grid_mapping variable with crs_wkt/spatial_ref, "
                     f"a spatial_ref variable, or a crs attribute); write one, e.g. with rioxarray's "
                     f"`ds.rio.write_crs('EPSG:32631')`")


def cube_layout(ds, var: str, path: str, crs: CRS | None = None) -> CubeLayout:
    """Grid of variable ``var``; ``crs`` (when given) instead of the one the file names."""
    dims = ds[var].dims
    x_dim = _pick(dims, X_DIMS)
    y_dim = _pick(dims, Y_DIMS)
    if x_dim is None or y_dim is None:
        raise ValueError(f"datacube {path}: variable {var!r} has dimensions {dims}; expected spatial "
                         f"dimensions named one of {X_DIMS} and {Y_DIMS}")
    x = ds[x_dim].values.astype(float)
    y = ds[y_dim].values.astype(float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"datacube {path}: need at least 2 pixels along x and y to know the resolution")
    rx, ry = np.diff(x), np.diff(y)
    if not (np.allclose(rx, rx[0], rtol=1e-6) and np.allclose(ry, ry[0], rtol=1e-6)):
        raise ValueError(f"datacube {path}: x/y coordinates are not regularly spaced; resample it to a grid")
    res_x, res_y = abs(rx[0]), abs(ry[0])
    flip_y = ry[0] > 0
    left = x.min() - res_x / 2
    top = y.max() + res_y / 2
    return CubeLayout(time_dim=_pick(dims, TIME_DIMS), x_dim=x_dim, y_dim=y_dim,
                      transform=Affine(res_x, 0, left, 0, -res_y, top), flip_y=bool(flip_y),
                      crs=crs if crs is not None else _crs_of(ds, var, path), width=len(x), height=len(y))


def _band_variables(ds, sensor: Sensor, path: str) -> dict[str, tuple[str, str | None]]:
    """Band -> (variable, band coordinate value or None)."""
    found: dict[str, tuple[str, str | None]] = {}
    for var in ds.data_vars:
        band_dim = _pick(ds[var].dims, BAND_DIMS)
        if band_dim is not None:
            for value in ds[band_dim].values:
                band = sensor.match(str(value))
                if band and band not in found:
                    found[band] = (var, str(value))
            continue
        if ds[var].ndim < 2:
            continue
        band, _ = band_of_name(str(var), sensor)
        if band and band not in found:
            found[band] = (var, None)
    if not found:
        raise ValueError(f"datacube {path}: no variable or band coordinate names a {sensor.name} band "
                         f"({', '.join(sensor.band_names)}); variables are {list(ds.data_vars)}")
    return found


def scan_cube(path: str, sensor: Sensor, nodata: float | None = None) -> list[dict]:
    """Index rows (one per time step) for a datacube."""
    from eossl.catalog.index import footprint_rows, mask_shape

    path = str(Path(path).resolve()) if not str(path).startswith(("s3://", "gs://", "http")) else str(path)
    ds = open_cube(path)
    bands = _band_variables(ds, sensor, path)
    first_var = next(iter(bands.values()))[0]
    layout = cube_layout(ds, first_var, path)
    t = layout.transform
    bounds = (t.c, t.f + t.e * layout.height, t.c + t.a * layout.width, t.f)
    times = ds[layout.time_dim].values if layout.time_dim else [None]
    root = str(Path(path).parent)
    rel = Path(path).name
    native_wkt, geo = footprint_rows(bounds, layout.crs.to_string())
    handle = CubeHandle(path, ds=ds)
    rows = []
    ids = _step_ids(rel, times)
    for ti, tval in enumerate(times):
        assets = {}
        for band in sensor.band_names:
            if band not in bands:
                continue
            var, sel = bands[band]
            nd = ds[var].attrs.get("nodata", ds[var].attrs.get("missing_value"))
            nd = nodata if nodata is not None else (float(nd) if nd is not None else sensor.band(band).nodata)
            prescaled = "scale_factor" in ds[var].encoding or "add_offset" in ds[var].encoding
            assets[band] = {"path": rel, "var": var, "band_sel": sel,
                            "time_index": ti if layout.time_dim else None, "nodata": nd, "band_index": 1,
                            **({"scale": 1.0, "offset": 0.0} if prescaled else {})}
        mask = _coarse_cube_mask(handle, assets, mask_shape(bounds, t.a))
        when = None if tval is None else pd.Timestamp(tval)
        rows.append({
            "id": ids[ti], "sensor": sensor.name, "kind": "cube",
            "datetime": when, "root": root, "assets": json.dumps(assets), "crs": layout.crs.to_string(),
            "res": float(t.a), "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3],
            "footprint_native": native_wkt, "valid_fraction": float(mask.mean()),
            "mask": np.packbits(mask.ravel()).tobytes(), "mask_shape": f"{mask.shape[0]},{mask.shape[1]}",
            "geometry": geo,
        })
    return rows


def _step_ids(name: str, times) -> list[str]:
    """Row ids ``name@YYYY-MM-DD`` (with the time of day, or the step number, where dates repeat)."""
    if len(times) == 1 and times[0] is None:
        return [name]
    stamps = [pd.Timestamp(t) for t in times]
    ids = [f"{name}@{t:%Y-%m-%d}" for t in stamps]
    if len(set(ids)) < len(ids):
        ids = [f"{name}@{t:%Y-%m-%dT%H:%M:%S}" for t in stamps]
    if len(set(ids)) < len(ids):
        ids = [f"{i}#{k}" for k, i in enumerate(ids)]
    return ids


def padded_read(read, height: int, width: int, rows: tuple[int, int], cols: tuple[int, int],
                dtype) -> tuple[np.ndarray, np.ndarray]:
    """Call ``read(r0, r1, c0, c1)`` on the part of the window inside ``(height, width)``; pad the rest."""
    r0, r1 = rows
    c0, c1 = cols
    out = np.zeros((r1 - r0, c1 - c0), dtype=dtype)
    inside = np.zeros(out.shape, dtype=bool)
    rr0, rr1 = max(r0, 0), min(r1, height)
    cc0, cc1 = max(c0, 0), min(c1, width)
    if rr0 < rr1 and cc0 < cc1:
        out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = read(rr0, rr1, cc0, cc1)
        inside[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = True
    return out, inside


def _coarse_cube_mask(handle: CubeHandle, assets: dict, shape: tuple[int, int]) -> np.ndarray:
    from eossl.catalog.index import Asset
    from eossl.resample import resample_block

    mask = np.ones(shape, dtype=bool)
    for a in assets.values():
        asset = Asset(path=handle.path, band_index=1, nodata=a["nodata"], var=a["var"], band_sel=a["band_sel"],
                      time_index=a["time_index"])
        data, valid = handle.read_block(asset, (0, handle.height), (0, handle.width))
        _, ok = resample_block(data, valid, (0, handle.height), (0, handle.width), shape, "nearest")
        mask &= ok
    return mask


class CubeHandle:
    """A datacube opened once per worker; reads integer windows of one (variable, band, time)."""

    def __init__(self, path: str, ds=None):
        self.path = path
        self.ds = ds if ds is not None else open_cube(path)
        self._layouts: dict[str, CubeLayout] = {}
        first = next(v for v in self.ds.data_vars if self.ds[v].ndim >= 2)
        layout = self.layout(first)
        self.crs, self.transform = layout.crs, layout.transform
        self.crs_str = self.crs.to_string()
        self.width, self.height = layout.width, layout.height

    def layout(self, var: str) -> CubeLayout:
        if var not in self._layouts:
            if var not in self.ds.data_vars:
                raise ValueError(f"datacube {self.path} has no variable {var!r} (the index is stale? rebuild it)")
            self._layouts[var] = cube_layout(self.ds, var, self.path)
        return self._layouts[var]

    def read_block(self, asset, rows, cols):
        lay = self.layout(asset.var)
        da = self.ds[asset.var]
        sel = {}
        if lay.time_dim is not None:
            sel[lay.time_dim] = asset.time_index
        if asset.band_sel is not None:
            band_dim = _pick(da.dims, BAND_DIMS)
            da = da.sel({band_dim: asset.band_sel})
        da = da.isel(sel).transpose(lay.y_dim, lay.x_dim)

        def read(r0, r1, c0, c1):
            if lay.flip_y:
                block = da.isel({lay.y_dim: slice(lay.height - r1, lay.height - r0),
                                 lay.x_dim: slice(c0, c1)}).values
                return block[::-1]
            return da.isel({lay.y_dim: slice(r0, r1), lay.x_dim: slice(c0, c1)}).values

        data, inside = padded_read(read, lay.height, lay.width, rows, cols, da.dtype)
        return data, inside & valid_of(data, asset.nodata)

    def close(self) -> None:
        self.ds.close()
