"""Tiny WorldCereal-style stacks written by tests: a 10 m and a 20 m NetCDF file per stack (uint16, scale_factor
1e-4, fill 0, SCL at 20 m, ``timestamp`` dimension, ``epsg`` attribute), a label file, and the same scenes as
GeoTIFF folders and as one datacube. Every writer returns what it wrote, so tests compare value by value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from conftest import write_geotiff

B10 = ["B02", "B03", "B04", "B08"]
B20 = ["B05", "B06", "B07", "B8A", "B11", "B12"]
ORIGIN = (500000.0, 5600080.0)       # west, north
SIZE10 = 8                            # 8 x 8 px at 10 m, 4 x 4 at 20 m: 80 m x 80 m
EPSG = 32631
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Raw:
    """What was written: raw uint16 (T, C, h, w) per resolution, SCL (T, 4, 4), dates (T,) datetime64[ns]."""

    dates: np.ndarray
    r10: np.ndarray
    r20: np.ndarray
    scl: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)


def make_raw(n_dates: int = 4, seed: int = 0) -> Raw:
    """Seeded values 1..9999 with a few fill zeros; SCL 4 (vegetation) with clouds (9) and shadow (3) here and
    there. The dates are 10-20 days apart from 2018-03-01."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2018-03-01T10:50:31", "ns")
    gaps = np.cumsum([0] + list(rng.integers(10, 21, size=n_dates - 1)))
    dates = start + gaps.astype("timedelta64[D]").astype("timedelta64[ns]")
    r10 = rng.integers(1, 10000, size=(n_dates, 4, SIZE10, SIZE10)).astype("uint16")
    r20 = rng.integers(1, 10000, size=(n_dates, 6, SIZE10 // 2, SIZE10 // 2)).astype("uint16")
    r10[0, 1, 0, 0] = 0                       # fill in one 10 m band
    r20[1, 2, 3, 3] = 0                       # fill in one 20 m band
    scl = np.full((n_dates, SIZE10 // 2, SIZE10 // 2), 4, dtype="uint8")
    scl[0, 1, 1] = 9                          # cloud
    scl[1, 2, 0] = 3                          # shadow
    scl[2, 0, 3] = 8
    return Raw(dates=dates, r10=r10, r20=r20, scl=scl)


def _coords(res: float, n: int, origin=ORIGIN) -> dict:
    x = origin[0] + res / 2 + res * np.arange(n)
    y = origin[1] - res / 2 - res * np.arange(n)
    return {"x": x, "y": y}


def _band_var(raw: np.ndarray, time_dim: str) -> xr.Variable:
    return xr.Variable((time_dim, "y", "x"), raw, attrs={"scale_factor": 1e-4, "_FillValue": np.uint16(0)})


def write_nc(path: Path, raw: np.ndarray, bands: list[str], res: float, dates: np.ndarray, scl: np.ndarray | None = None,
             origin=ORIGIN, epsg: int | None = EPSG, time_dim: str = "timestamp", attrs: dict | None = None) -> Path:
    """One WorldCereal-style file: bands as uint16 variables with scale_factor/_FillValue attributes."""
    n = raw.shape[-1]
    data = {b: _band_var(raw[:, i], time_dim) for i, b in enumerate(bands)}
    if scl is not None:
        data["SCL"] = xr.Variable((time_dim, "y", "x"), scl, attrs={"_FillValue": np.uint8(0)})
    data["sunZenithAngles"] = xr.Variable((time_dim,), np.full(len(dates), 40.0, dtype="float32"))
    ds = xr.Dataset(data, coords={time_dim: dates, **_coords(res, n, origin)},
                    attrs={**({"epsg": epsg} if epsg else {}), "resolution": res, **(attrs or {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf", encoding={v: {"_FillValue": None} for v in ds.coords})
    return path


def write_labels_nc(path: Path, ct: np.ndarray, res: float = 10.0, epsg: int | None = EPSG, origin=ORIGIN,
                    extra: bool = True) -> Path:
    data = {"CT": xr.Variable(("y", "x"), ct.astype("uint16"), attrs={"_FillValue": np.uint16(0)})}
    if extra:
        data["LC"] = xr.Variable(("y", "x"), (ct > 0).astype("uint16") * 11)
    ds = xr.Dataset(data, coords=_coords(res, ct.shape[0], origin), attrs={"epsg": epsg} if epsg else {})
    ds.to_netcdf(path, engine="h5netcdf", encoding={v: {"_FillValue": None} for v in ds.coords})
    return path


def write_s1_nc(path: Path, dates: np.ndarray, size: int, seed: int = 5) -> Path:
    """A WorldCereal-style Sentinel-1 file: VH, VV (int32, scale 1e-4, fill 0) on ``size`` x ``size`` px at 20 m."""
    s1 = np.random.default_rng(seed).integers(-200000, 50000, size=(len(dates), 2, size, size)).astype("int32")
    ds = xr.Dataset({b: xr.Variable(("timestamp", "y", "x"), s1[:, i],
                                    attrs={"scale_factor": 1e-4, "_FillValue": np.int32(0)})
                     for i, b in enumerate(["VH", "VV"])},
                    coords={"timestamp": dates, **_coords(20, size)}, attrs={"epsg": EPSG})
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def write_wc_folder(folder: Path, raw: Raw, with_s1: bool = False, labels: np.ndarray | None = None) -> Raw:
    """The 10 m and 20 m files (and optionally an S1 file on its own dates and a label file) in ``folder``."""
    raw.files["10m"] = write_nc(folder / "S2_L2A_10m_x.nc", raw.r10, B10, 10, raw.dates,
                                attrs={"name": "S2_L2A_10m_x"})
    raw.files["20m"] = write_nc(folder / "S2_L2A_20m_x.nc", raw.r20, B20, 20, raw.dates, scl=raw.scl,
                                attrs={"name": "S2_L2A_20m_x"})
    if with_s1:
        raw.files["s1"] = write_s1_nc(folder / "S1_GRD_20m_x.nc", raw.dates + np.timedelta64(3, "D"), 4)
    if labels is not None:
        raw.files["labels"] = write_labels_nc(folder / "OUTPUT_labels_10m.nc", labels)
    return raw


def write_tiff_folder(folder: Path, raw: Raw, layout: str = "per_band") -> None:
    """The same scenes as GeoTIFFs: ``per_band`` (one file per band and date, plus an SCL file per date) or
    ``stacked`` (one multi-band file per date and resolution with band descriptions; SCL a described layer)."""
    crs = f"EPSG:{EPSG}"
    for t, when in enumerate(raw.dates):
        stamp = str(when.astype("datetime64[s]")).replace("-", "").replace(":", "")
        if layout == "per_band":
            for i, b in enumerate(B10):
                write_geotiff(folder / f"T31UDS_{stamp}_{b}.tif", raw.r10[t, i], 10, origin=ORIGIN, crs=crs, nodata=0)
            for i, b in enumerate(B20):
                write_geotiff(folder / f"T31UDS_{stamp}_{b}.tif", raw.r20[t, i], 20, origin=ORIGIN, crs=crs, nodata=0)
            write_geotiff(folder / f"T31UDS_{stamp}_SCL.tif", raw.scl[t], 20, origin=ORIGIN, crs=crs)
        else:
            write_geotiff(folder / f"S2_{stamp}_10m.tif", raw.r10[t], 10, origin=ORIGIN, crs=crs, descriptions=B10)
            r20 = np.concatenate([raw.r20[t], raw.scl[t][None].astype("uint16")])
            write_geotiff(folder / f"S2_{stamp}_20m.tif", r20, 20, origin=ORIGIN, crs=crs,
                          descriptions=[*B20, "SCL"])


def write_datacube(path: Path, raw: Raw) -> Path:
    """One file on the 10 m grid: a ``reflectance(time, band, y, x)`` variable (20 m bands repeated) and SCL."""
    r20 = np.repeat(np.repeat(raw.r20, 2, axis=2), 2, axis=3)
    allb = np.concatenate([raw.r10, r20], axis=1)
    scl = np.repeat(np.repeat(raw.scl, 2, axis=1), 2, axis=2)
    ds = xr.Dataset({"reflectance": xr.Variable(("time", "band", "y", "x"), allb,
                                                attrs={"scale_factor": 1e-4, "_FillValue": np.uint16(0)}),
                     "SCL": xr.Variable(("time", "y", "x"), scl)},
                    coords={"time": raw.dates, "band": B10 + B20, **_coords(10, SIZE10)}, attrs={"epsg": EPSG})
    ds.to_netcdf(path, engine="h5netcdf", encoding={v: {"_FillValue": None} for v in ds.coords if v != "band"})
    return path


def expected(raw: Raw) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(values (T, 10, 8, 8) float32 reflectance, valid bool, bands in sensor order) computed by hand."""
    r20 = np.repeat(np.repeat(raw.r20, 2, axis=2), 2, axis=3)
    scl = np.repeat(np.repeat(raw.scl, 2, axis=1), 2, axis=2)
    by_band = {**{b: raw.r10[:, i] for i, b in enumerate(B10)}, **{b: r20[:, i] for i, b in enumerate(B20)}}
    order = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    stored = np.stack([by_band[b] for b in order], axis=1)
    clear = ~np.isin(scl, (0, 1, 3, 8, 9, 10))
    valid = (stored != 0) & clear[:, None]
    values = np.where(valid, stored.astype(np.float32) * np.float32(1e-4), 0).astype(np.float32)
    return values, valid, order
