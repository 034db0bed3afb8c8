"""A scene stack: every date of one place on one grid, as it comes from a folder of files or a datacube.

>>> stack = open_stack("worldcereal_lpis_flanders2018/")          # 10 m + 20 m NetCDF files, sensor from SCL
>>> stack.values.shape, stack.bands                                # (118, 10, 64, 64), ['B02', ..., 'B12']

Inputs understood, with no file names hard-coded (files are recognised by their content):

* a folder of NetCDF/Zarr files, one per resolution (WorldCereal style: ``timestamp``/``time`` dimension, x/y
  pixel centres, bands as variables, ``scale_factor``/``_FillValue``, an ``epsg`` attribute); files without a time
  dimension or without band variables (label files) are not image files; Sentinel-1 files (``VV``/``VH``) are
  used only with ``include_s1``;
* a folder of GeoTIFF scenes over time: one multi-band file per date (band descriptions) or one file per band and
  date, the date in the file name or tags, an ``SCL``/``QA_PIXEL``/``Fmask`` file per date as cloud mask;
* a single datacube file (NetCDF/Zarr with a time dimension).

Layers at several resolutions are merged on the finest grid (or ``gsd``); coarser bands are repeated (nearest) at
an integer ratio, and every file must share one CRS and extent. Values are physical (reflectance): the file's
``scale_factor``/``add_offset`` when it has them, else the sensor's. Invalid: the fill value / nodata, and the
unusable classes of each date's cloud mask. Repaired input raises a :class:`StackWarning` (see
:func:`eossl.data.series.stack_merge.assemble_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine

from eossl.catalog.sensors import list_sensors, load_sensor
from eossl.data.series import stack_netcdf, stack_tiff
from eossl.data.series.stack_layers import S1_BANDS, StackGrid
from eossl.data.series.stack_merge import StackWarning, assemble_arrays

__all__ = ["SceneStack", "StackWarning", "open_stack"]


@dataclass
class SceneStack:
    """Dates x bands of one place on one grid.

    ``values`` (T, C, H, W) float32 physical units (0 where invalid), ``valid`` (T, C, H, W) bool, ``times`` (T,)
    datetime64[ns] sorted (one step per calendar day), ``bands`` (C,) canonical names of ``sensor`` (then ``VV``,
    ``VH`` with Sentinel-1), ``observed`` (T, C) bool: the band was recorded on that date (False where missing).
    ``transform`` maps (col, row) to pixel corners in ``crs``; ``gsd`` in metres; ``sources`` the files read.
    """

    values: np.ndarray
    valid: np.ndarray
    times: np.ndarray
    bands: list[str]
    sensor: str
    crs: str
    transform: Affine
    gsd: float
    sources: list[str]
    observed: np.ndarray = field(default=None)

    @property
    def height(self) -> int:
        return int(self.values.shape[2])

    @property
    def width(self) -> int:
        return int(self.values.shape[3])

    @property
    def grid(self) -> StackGrid:
        from rasterio.crs import CRS

        return StackGrid(crs=CRS.from_user_input(self.crs), transform=self.transform, height=self.height,
                         width=self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.grid.bounds

    def __repr__(self) -> str:
        t, c, h, w = self.values.shape
        span = f"{str(self.times[0])[:10]}..{str(self.times[-1])[:10]}" if t else "no dates"
        return (f"SceneStack({self.sensor}, {t} dates {span}, bands {self.bands}, {h}x{w} px at {self.gsd:g} m, "
                f"{self.crs}, {self.valid.mean():.0%} valid)")


def open_stack(path: str | Path, sensor: str | None = None, bands: list[str] | None = None,
               gsd: float | None = None, include_s1: bool = False) -> SceneStack:
    """Read a folder of NetCDF/Zarr or GeoTIFF files, or one datacube file, into a :class:`SceneStack`.

    ``sensor``: sensor name or YAML (default: inferred from an ``SCL`` layer or the files' attributes, else an
    error asking for it). ``bands``: canonical names or aliases, in the order wanted (default: every band found,
    sensor order; ``VV``/``VH`` here imply ``include_s1``). ``gsd``: target resolution in metres (default: the
    finest file's). FileNotFoundError when the path holds no image file; ValueError for grids that do not line up.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"stack not found: {path}")
    wanted_s1 = [b for b in bands or [] if b.upper() in S1_BANDS]
    include_s1 = include_s1 or bool(wanted_s1)
    cube_files = stack_netcdf.find_cube_files(path)
    if cube_files:
        infos = [stack_netcdf.describe(f) for f in cube_files]
        try:
            name = _sensor_name(sensor, stack_netcdf.infer_sensor(infos), path)
            layers, masks, sources = stack_netcdf.read_cubes(infos, load_sensor(name), include_s1, path)
        finally:
            for info in infos:
                info.ds.close()
    else:
        files = stack_tiff.find_tiffs(path)
        if not files:
            raise FileNotFoundError(
                f"no image files in {path}: looked for NetCDF/Zarr files ({', '.join(stack_netcdf.CUBE_SUFFIXES)}) "
                f"with a time dimension and band variables, and GeoTIFF scenes ({', '.join(stack_tiff.PATTERNS)}); "
                f"put the stack's files there or point at the folder that holds them")
        name = _sensor_name(sensor, stack_tiff.infer_sensor(files), path)
        layers, masks, sources = stack_tiff.read_tiffs(files, load_sensor(name), path)
    order = _band_order(layers, load_sensor(name), bands, include_s1, path)
    layers = _select(layers, order)
    values, valid, times, observed, grid = assemble_arrays(layers, masks, order, gsd)
    return SceneStack(values=values, valid=valid, times=times, bands=order, sensor=load_sensor(name).name,
                      crs=grid.crs.to_string(), transform=grid.transform, gsd=grid.gsd, sources=sources,
                      observed=observed)


def _sensor_name(given: str | None, inferred: str | None, path: Path) -> str:
    if given is not None:
        return given
    if inferred is None:
        raise ValueError(f"cannot tell the sensor of the stack in {path}: no SCL layer and no attribute naming a "
                         f"product (e.g. 'S2_L2A'); pass sensor= one of {', '.join(list_sensors())}")
    return inferred


def _band_order(layers, sensor, bands, include_s1: bool, path: Path) -> list[str]:
    """The stack's channels: the requested ``bands`` (checked against what the files hold) or every band found."""
    found = {b for layer in layers for b in layer.bands if layer.group == "optical"}
    s1_found = [b for b in S1_BANDS if any(b in layer.bands for layer in layers if layer.group == "s1")]
    if not found:
        raise FileNotFoundError(f"no {sensor.name} band in the image files of {path}; pass sensor= the files' sensor")
    if bands is None:
        return [b for b in sensor.band_names if b in found] + (s1_found if include_s1 else [])
    order = []
    for b in bands:
        name = b.upper() if b.upper() in S1_BANDS else sensor.resolve(b)
        if name not in found and name not in s1_found:
            raise ValueError(f"band {b!r} is in no image file of {path}; bands found: "
                             f"{', '.join(sorted(found) + s1_found)}")
        order.append(name)
    if len(set(order)) != len(order):
        raise ValueError(f"band list {bands} names a band more than once")
    return order


def _select(layers, order: list[str]):
    """Layers restricted to the channels in ``order`` (layers left with none are dropped)."""
    out = []
    for layer in layers:
        keep = [j for j, b in enumerate(layer.bands) if b in order]
        if not keep:
            continue
        if len(keep) < len(layer.bands):
            layer.values, layer.valid = layer.values[:, keep], layer.valid[:, keep]
            layer.bands = [layer.bands[j] for j in keep]
        out.append(layer)
    return out
