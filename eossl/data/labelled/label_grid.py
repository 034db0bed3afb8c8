"""Label rasters on a scene stack's grid, with class names from a legend file.

>>> labels = load_label_grid("OUTPUT_POLY_10m.nc", stack, variable="CT",
...                          legend="croptype_legend.csv")        # codes (H, W), names {1200: "Maize", ...}

The labels come from a NetCDF/Zarr variable (named, or the file's single integer variable) or a GeoTIFF. They
must be in the stack's CRS and cover its extent (a ValueError naming both otherwise), at an integer resolution
ratio: labels finer than the stack (10 m labels over a 20 m stack) are aggregated by majority, the pixels whose
block holds more than one value (two classes, or a class and unlabelled) flagged in ``mixed``; coarser labels are
repeated. ``nodata`` (default 0) means unlabelled; so does the file's own fill value.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from eossl.catalog.cubes import TIME_DIMS, cube_layout, find_crs, open_cube
from eossl.data.labelled.legend import read_legend
from eossl.data.series.stack_layers import StackGrid, bounds_of, ratio_of
from eossl.gdal_env import open_raster

__all__ = ["LabelGrid", "LabelWarning", "load_label_grid"]

CUBE_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".zarr")


class LabelWarning(UserWarning):
    """Labels were repaired or completed: a code missing from the legend, for instance."""


@dataclass
class LabelGrid:
    """Labels on a stack grid: ``codes`` (H, W) int64 label codes, ``labelled`` (H, W) bool (False: unlabelled,
    code ``nodata``), ``mixed`` (H, W) bool (aggregated from finer labels that disagree), ``names`` code -> class
    name for every code present."""

    codes: np.ndarray
    labelled: np.ndarray
    mixed: np.ndarray
    names: dict[int, str]
    nodata: int
    grid: StackGrid
    source: str
    variable: str | None = None

    @property
    def classes(self) -> list[int]:
        """The label codes present (labelled pixels), sorted."""
        return sorted(int(c) for c in np.unique(self.codes[self.labelled]))


def _grid_of(stack_grid) -> StackGrid:
    grid = stack_grid if isinstance(stack_grid, StackGrid) else getattr(stack_grid, "grid", None)
    if not isinstance(grid, StackGrid):
        raise TypeError(f"stack_grid must be a SceneStack, a Composite or a StackGrid, got {type(stack_grid).__name__}")
    return grid


def _pick_variable(ds, variable: str | None, path: str) -> str:
    if variable is not None:
        if variable not in ds.data_vars:
            raise ValueError(f"label file {path} has no variable {variable!r}; its variables: {list(ds.data_vars)}")
        return variable
    ints = [v for v in ds.data_vars if ds[v].dtype.kind in "iu" and ds[v].ndim >= 2
            and not set(ds[v].dims) & set(TIME_DIMS)]
    if len(ints) != 1:
        raise ValueError(f"label file {path}: cannot tell which variable holds the labels (integer variables: "
                         f"{ints or 'none'}; all variables: {list(ds.data_vars)}); pass variable=")
    return ints[0]


def _read_cube(path: str, variable, label_crs, crs_key: str = "label_crs") -> tuple[np.ndarray, CRS | None, object, float | None, str]:
    ds = open_cube(path, mask_and_scale=False)
    var = _pick_variable(ds, variable, path)
    crs = _given_crs(find_crs(ds, var), label_crs, crs_key, path)
    if crs is None:
        raise ValueError(f"label file {path} has no CRS (no grid_mapping/spatial_ref/crs/epsg); set "
                         f"{crs_key}: 'EPSG:XXXX' to the CRS its x/y coordinates are in")
    lay = cube_layout(ds, var, path, crs=crs)
    da = ds[var]
    extra = [d for d in da.dims if d not in (lay.x_dim, lay.y_dim)]
    if any(da.sizes[d] != 1 for d in extra):
        raise ValueError(f"label file {path}: variable {var!r} has dimensions {da.dims}; labels must be 2-D (y, x)")
    arr = da.isel({d: 0 for d in extra}).transpose(lay.y_dim, lay.x_dim).values
    fill = da.attrs.get("_FillValue", da.attrs.get("NoData"))
    return (arr[::-1] if lay.flip_y else arr), crs, lay.transform, fill, var


def _given_crs(declared, label_crs, crs_key: str, path: str):
    """The file's CRS, or ``label_crs`` for a file that declares none; both and different: an error."""
    if not label_crs:
        return declared
    try:
        given = CRS.from_user_input(label_crs)
    except Exception as err:  # pyproj's / rasterio's CRSError
        raise ValueError(f"{crs_key} {label_crs!r} is not a CRS PROJ understands: {err}; give e.g. EPSG:32631") from err
    if declared is not None and CRS.from_user_input(declared) != given:
        raise ValueError(f"label file {path} declares the CRS {CRS.from_user_input(declared).to_string()} but "
                         f"{crs_key} is {label_crs}; drop {crs_key} (it is for files without a CRS) or fix the file")
    return given


def _read_tiff(path: str, label_crs,
               crs_key: str = "label_crs") -> tuple[np.ndarray, CRS | None, object, float | None, None]:
    with open_raster(path) as ds:
        arr, crs, transform, fill = ds.read(1), ds.crs, ds.transform, ds.nodata
    crs = _given_crs(crs, label_crs, crs_key, path)
    if crs is None:
        raise ValueError(f"label file {path} has no CRS; set {crs_key}: 'EPSG:XXXX' (the CRS of its grid), or "
                         f"assign one with gdal_edit.py -a_srs EPSG:XXXX")
    if transform.b or transform.d or transform.e > 0:
        raise ValueError(f"label file {path} is not a north-up grid; warp it (gdalwarp) onto the stack's grid")
    return arr, crs, transform, fill, None


def _check_alignment(path: str, crs: CRS, transform, shape, grid: StackGrid) -> None:
    if crs != grid.crs:
        raise ValueError(f"labels {path} are in {crs.to_string()} but the stack is in {grid.crs.to_string()}; "
                         f"reproject the labels onto the stack's grid (gdalwarp -t_srs {grid.crs.to_string()})")
    a, b = bounds_of(transform, *shape), grid.bounds
    tol = 0.01 * min(abs(transform.a), grid.gsd)
    if max(abs(x - y) for x, y in zip(a, b, strict=True)) > tol:
        fmt = ", ".join
        raise ValueError(f"labels {path} cover bounds ({fmt(f'{v:.2f}' for v in a)}) but the stack covers "
                         f"({fmt(f'{v:.2f}' for v in b)}) in {grid.crs.to_string()}; clip both to one extent")


def majority(codes: np.ndarray, k: int, nodata: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) codes -> (h/k, w/k) majority code of each k x k block (ties: ``nodata`` first, then the smallest
    code) and a bool flag where the block holds more than one code."""
    h, w = codes.shape
    blocks = codes.reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, k * k)
    present = np.unique(blocks)
    order = np.concatenate([present[present == nodata], present[present != nodata]])
    counts = np.stack([(blocks == u).sum(axis=-1) for u in order])          # (U, H, W): a loop over codes only
    return order[np.argmax(counts, axis=0)], (counts > 0).sum(axis=0) > 1


def load_label_grid(path: str | Path, stack_grid, variable: str | None = None, legend: str | Path | None = None,
                    code_column: str | None = None, name_column: str | None = None, nodata: int | None = None,
                    label_crs: str | None = None, crs_key: str = "label_crs") -> LabelGrid:
    """Labels from ``path`` on ``stack_grid`` (a SceneStack, Composite or StackGrid); see the module doc.

    ``legend``: CSV/TSV of code -> name (columns found by content unless ``code_column``/``name_column``);
    without it the names are the codes. ``crs_key``: the config key that sets ``label_crs``, as errors name it. Codes missing from the legend keep their number (:class:`LabelWarning`).
    """
    path = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"label file not found: {path}")
    grid = _grid_of(stack_grid)
    reader = _read_cube(path, variable, label_crs, crs_key) if Path(path).suffix.lower() in CUBE_SUFFIXES else \
        _read_tiff(path, label_crs, crs_key)
    arr, crs, transform, fill, var = reader
    _check_alignment(path, crs, transform, arr.shape, grid)
    if arr.dtype.kind == "f":
        if not np.all(np.isnan(arr) | (arr == np.round(arr))):
            raise ValueError(f"labels {path} hold fractional values; a label raster holds integer class codes")
        arr = np.where(np.isnan(arr), nodata if nodata is not None else 0, arr)
    nodata = int(nodata) if nodata is not None else 0
    codes = arr.astype(np.int64)
    if fill is not None and np.isfinite(float(np.asarray(fill).ravel()[0])):
        codes[codes == int(np.asarray(fill).ravel()[0])] = nodata
    kind, k = ratio_of(abs(transform.a), grid.gsd, path)
    mixed = np.zeros((grid.height, grid.width), dtype=bool)
    if kind == "repeat" and k > 1:
        codes = np.repeat(np.repeat(codes, k, axis=0), k, axis=1)
    elif kind == "aggregate" and k > 1:
        codes, mixed = majority(codes, k, nodata)
    labelled = codes != nodata
    present = sorted(int(c) for c in np.unique(codes[labelled]))
    names = {c: str(c) for c in present}
    if legend is not None:
        names, missing = read_legend(legend, present, code_column, name_column)
        if missing:
            warnings.warn(f"label codes {missing} of {path} are not in the legend {legend}; named by their number",
                          LabelWarning, stacklevel=2)
    return LabelGrid(codes=codes, labelled=labelled, mixed=mixed, names=names, nodata=nodata, grid=grid,
                     source=path, variable=var)
