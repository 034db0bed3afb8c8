"""The pieces a scene stack is assembled from: bands of one file on its own grid (:class:`Layer`), a cloud / quality
mask on its own grid (:class:`MaskLayer`), and bringing either onto the stack's grid at an integer resolution ratio.

Readers (:mod:`eossl.data.series.stack_netcdf`, :mod:`eossl.data.series.stack_tiff`) produce these;
:mod:`eossl.data.series.stack_merge` checks that their grids line up and merges them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS

__all__ = ["Layer", "MaskLayer", "StackGrid", "S1_BANDS", "bounds_of", "check_same_grid", "target_grid",
           "ratio_of", "regrid_values", "regrid_mask"]

S1_BANDS = ("VV", "VH")        # Sentinel-1 backscatter channels, recognised by name (no sensor YAML: no wavelength)


@dataclass
class Layer:
    """Bands of one file (one grid): ``values`` (T, C, h, w) float32 physical units (0 where invalid), ``valid``
    (T, C, h, w) bool, ``times`` (T,) datetime64[ns] in file order. ``group`` is ``"optical"`` (the sensor's bands,
    cloud-masked) or ``"s1"`` (VV/VH, never cloud-masked)."""

    values: np.ndarray
    valid: np.ndarray
    times: np.ndarray
    bands: list[str]
    crs: CRS
    transform: Affine
    source: str
    group: str = "optical"


@dataclass
class MaskLayer:
    """A per-date quality mask: ``usable`` (T, h, w) bool (False: cloud, shadow, cirrus, no data), ``times`` (T,)."""

    usable: np.ndarray
    times: np.ndarray
    crs: CRS
    transform: Affine
    source: str
    kind: str


@dataclass(frozen=True)
class StackGrid:
    """A north-up pixel grid: ``transform`` maps (col, row) to the top-left corner of each pixel in ``crs``."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @property
    def gsd(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return bounds_of(self.transform, self.height, self.width)


def bounds_of(transform: Affine, height: int, width: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a north-up grid."""
    return (transform.c, transform.f + transform.e * height, transform.c + transform.a * width, transform.f)


def _item_bounds(item) -> tuple[float, float, float, float]:
    arr = item.values if isinstance(item, Layer) else item.usable
    return bounds_of(item.transform, arr.shape[-2], arr.shape[-1])


def check_same_grid(ref, other) -> None:
    """ValueError naming both files and their bounds when ``other`` has another CRS or extent than ``ref``."""
    if CRS.from_user_input(ref.crs) != CRS.from_user_input(other.crs):
        raise ValueError(f"grids do not line up: {other.source} is in {other.crs} but {ref.source} is in {ref.crs}; "
                         f"reproject one of them so every file of the stack shares one CRS")
    a, b = _item_bounds(ref), _item_bounds(other)
    tol = 0.01 * min(abs(ref.transform.a), abs(other.transform.a))
    if max(abs(x - y) for x, y in zip(a, b, strict=True)) > tol:
        raise ValueError(f"grids do not line up: {other.source} covers bounds {_fmt(b)} but {ref.source} covers "
                         f"{_fmt(a)} (same CRS {ref.crs}); clip the files to one extent")


def _fmt(bounds) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in bounds) + ")"


def ratio_of(src_res: float, dst_res: float, source: str) -> tuple[str, int]:
    """``("repeat", k)`` when the source is k times coarser, ``("aggregate", k)`` when k times finer; ValueError
    naming the file when the ratio is not an integer."""
    for kind, r in (("repeat", src_res / dst_res), ("aggregate", dst_res / src_res)):
        k = int(round(r))
        if k >= 1 and abs(r - k) < 1e-6 * max(r, 1):
            return kind, k
    raise ValueError(f"{source}: resolution {src_res:g} m is not an integer ratio of the stack's {dst_res:g} m; "
                     f"pass gsd= a resolution that divides (or is a multiple of) every file's")


def target_grid(items: list, gsd: float | None) -> StackGrid:
    """The stack grid: the finest resolution of the layers (or ``gsd``) over the first layer's extent."""
    ref = items[0]
    res = float(gsd) if gsd is not None else min(abs(float(i.transform.a)) for i in items)
    for item in items:
        ratio_of(abs(float(item.transform.a)), res, item.source)
    minx, miny, maxx, maxy = _item_bounds(ref)
    width, height = (maxx - minx) / res, (maxy - miny) / res
    if abs(width - round(width)) > 1e-6 or abs(height - round(height)) > 1e-6:
        raise ValueError(f"the extent of {ref.source} ({_fmt((minx, miny, maxx, maxy))}) is not a whole number of "
                         f"{res:g} m pixels; pass a gsd that divides it")
    return StackGrid(crs=CRS.from_user_input(ref.crs), transform=Affine(res, 0, minx, 0, -res, maxy),
                     height=int(round(height)), width=int(round(width)))


def regrid_values(values: np.ndarray, valid: np.ndarray, src_res: float, grid: StackGrid,
                  source: str) -> tuple[np.ndarray, np.ndarray]:
    """(..., h, w) values and validity onto the grid: coarser pixels repeated (nearest), finer ones averaged over
    their valid sub-pixels (valid where any sub-pixel is). Returns (..., H, W) float32 values and bool validity."""
    kind, k = ratio_of(src_res, grid.gsd, source)
    if k == 1:
        return values, valid
    if kind == "repeat":
        return (np.repeat(np.repeat(values, k, axis=-2), k, axis=-1),
                np.repeat(np.repeat(valid, k, axis=-2), k, axis=-1))
    blocks = (*values.shape[:-2], values.shape[-2] // k, k, values.shape[-1] // k, k)
    ok = valid.reshape(blocks)
    count = ok.sum(axis=(-3, -1))
    total = np.where(ok, values.reshape(blocks), 0).sum(axis=(-3, -1), dtype=np.float64)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0).astype(np.float32)
    return mean, count > 0


def regrid_mask(usable: np.ndarray, src_res: float, grid: StackGrid, source: str) -> np.ndarray:
    """(T, h, w) usable flags onto the grid: repeated when coarser; when finer, a pixel is usable only where all
    its sub-pixels are (a cloud anywhere in a stack pixel masks it)."""
    kind, k = ratio_of(src_res, grid.gsd, source)
    if k == 1:
        return usable
    if kind == "repeat":
        return np.repeat(np.repeat(usable, k, axis=-2), k, axis=-1)
    t, h, w = usable.shape
    return usable.reshape(t, h // k, k, w // k, k).all(axis=(2, 4))
