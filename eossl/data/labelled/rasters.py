"""Label-raster chips: windows of indexed scenes with the label raster reprojected onto each chip's grid.

>>> chips = load_segmentation_chips(index, "landcover.tif", chip_size=64, classes={1: "water", 2: "forest"})

The label raster may be in any CRS and resolution: it is reprojected onto each chip's grid with nearest
resampling. Labels are class indices into ``chips.classes``; -1 marks pixels to ignore (label nodata, outside
the label raster, or an invalid image pixel).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import box

from eossl.catalog.index import SceneIndex
from eossl.data.chips.samplers import GridWindowSampler
from eossl.data.reader import ChipReader
from eossl.gdal_env import open_raster

__all__ = ["SegmentationChips", "load_segmentation_chips"]


@dataclass
class SegmentationChips:
    """``images`` (N, C, H, W) float32 reflectance (0 where invalid), ``valid`` (N, H, W) bool, ``labels``
    (N, H, W) int64 indices into ``classes`` (-1 = ignore). Per chip: ``bounds`` (minx, miny, maxx, maxy) in
    ``crs`` and the ``acquisitions`` id. ``label_values``: label raster value -> class name."""

    images: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    classes: list[str]
    bands: list[str]
    sensor: str
    bounds: list[tuple[float, float, float, float]]
    crs: list[str]
    acquisitions: list[str]
    label_values: dict[int, str]
    gsd: float

    def __len__(self) -> int:
        return len(self.labels)


def load_segmentation_chips(index: SceneIndex, label_raster: str | Path, *, chip_size: int = 64,
                            gsd: float | None = None, bands: list[str] | None = None,
                            classes: dict[int, str] | None = None, label_nodata: float | None = None,
                            stride: int | None = None, min_labelled: float = 0.05,
                            label_crs: str | None = None, crs_key: str = "label_crs") -> SegmentationChips:
    """Chips on a grid (``stride`` px, default ``chip_size``) over where the label raster meets each acquisition.

    ``classes``: label value -> class name (several values may share a name); None: every value present, named
    by its value. ``label_nodata`` overrides the label file's nodata. Windows with fewer than ``min_labelled``
    (fraction) labelled pixels are dropped. ``label_crs``: the CRS of a label raster that declares none (an error
    otherwise). ``gsd`` is in metres (scenes in a geographic CRS are read on their local UTM grid).
    """
    path = Path(label_raster)
    if not path.is_file():
        raise FileNotFoundError(f"label raster not found: {path}")
    if not 0.0 <= min_labelled <= 1.0:
        raise ValueError(f"min_labelled must be a fraction in [0, 1], got {min_labelled}")
    reader = ChipReader(index, bands=bands, allow_empty=True)
    try:
        with open_raster(str(path)) as src, _georeferenced(src, path, label_crs, crs_key) as ds:
            nodata = src.nodata if label_nodata is None else label_nodata
            sampler = _label_grid(index, ds, path, chip_size, stride, gsd)
            images, valid, raw, windows, n_labelled = _read_windows(reader, ds, nodata, sampler, min_labelled)
    finally:
        reader.close()
    if n_labelled == 0:
        raise ValueError(f"{path}: no labelled pixel over the valid pixels of the scenes (every label is the "
                         f"nodata value {nodata} or lies where the images are invalid); check label_nodata")
    if not raw:
        raise ValueError(f"{path}: no window of {chip_size} px holds at least {min_labelled:.0%} labelled "
                         f"pixels; lower min_labelled or chip_size")
    raw = np.stack(raw)
    names, value_map = _classes(raw, classes, path)
    labels = np.full(raw.shape, -1, dtype=np.int64)
    for value, k in value_map.items():
        labels[raw == value] = k
    return SegmentationChips(
        images=np.stack(images), valid=np.stack(valid), labels=labels, classes=names, bands=list(reader.bands),
        sensor=",".join(index.sensor_names), bounds=[b for b, _, _ in windows], crs=[c for _, c, _ in windows],
        acquisitions=[a for _, _, a in windows], label_values={int(v): names[k] for v, k in value_map.items()},
        gsd=float(sampler.gsd))


@contextmanager
def _georeferenced(src, path: Path, label_crs: str | None, crs_key: str = "label_crs"):
    """``src``, or a VRT of it in ``label_crs`` when the file declares no CRS; never a guessed CRS."""
    if src.crs is None:
        if label_crs is None:
            raise ValueError(f"{path}: the label raster declares no CRS; set `{crs_key}` to the CRS of its "
                             f"coordinates (e.g. EPSG:32633) or assign one (gdal_edit.py -a_srs EPSG:XXXX)")
        try:
            crs = CRS.from_user_input(label_crs)
        except Exception as err:  # rasterio's CRSError
            raise ValueError(f"{crs_key} {label_crs!r} is not a CRS GDAL understands: {err}") from err
        with WarpedVRT(src, src_crs=crs, crs=crs) as vrt:
            yield vrt
        return
    if label_crs is not None and CRS.from_user_input(label_crs) != src.crs:
        raise ValueError(f"{path}: the label raster declares the CRS {src.crs} but `{crs_key}` is {label_crs}; "
                         f"drop {crs_key} (it is for files without a CRS) or fix the file")
    yield src


def _read_windows(reader: ChipReader, ds, nodata, sampler: GridWindowSampler, min_labelled: float):
    """Image chips, valid masks, raw label chips (NaN = unlabelled) and (bounds, crs, id) of the kept windows,
    and the number of labelled pixels seen in every window."""
    images, valid, raw, windows, n_labelled = [], [], [], [], 0
    for w in sampler:
        row = w.acquisitions[0]
        chip = reader.read(row, w.bounds, w.crs, size=sampler.size)
        lab = _label_chip(ds, nodata, w.bounds, w.crs, sampler.size)
        lab[~chip.mask] = np.nan
        labelled = np.isfinite(lab)
        n_labelled += int(labelled.sum())
        if labelled.any() and labelled.mean() >= min_labelled:
            images.append(chip.image)
            valid.append(chip.mask)
            raw.append(lab)
            windows.append((w.bounds, w.crs, reader.index.ids[row]))
    return images, valid, raw, windows, n_labelled


def _label_grid(index: SceneIndex, ds, path: Path, chip_size: int, stride: int | None,
                gsd: float | None) -> GridWindowSampler:
    """Grid windows over the label raster's footprint in every acquisition it overlaps."""
    if not any(_overlap_area(ds, index, i) > 0 for i in range(len(index))):
        raise ValueError(f"{path}: the label raster (bounds {tuple(round(v, 4) for v in ds.bounds)}, {ds.crs}) "
                         f"lies outside every scene of index {index.path or ''}; index the scenes it covers")
    footprint = box(*ds.bounds).segmentize(max(ds.bounds[2] - ds.bounds[0], ds.bounds[3] - ds.bounds[1]) / 16)
    try:
        return GridWindowSampler(index, chip_size, stride=stride, gsd=gsd, roi=footprint, roi_crs=ds.crs.to_string())
    except ValueError as err:   # e.g. the overlap holds no valid image pixel
        raise ValueError(f"{path}: {err}") from err


def _overlap_area(ds, index: SceneIndex, i: int) -> float:
    """Area (CRS units of row ``i``) where the label raster's bounds meet acquisition ``i``'s bounds."""
    try:
        lb = transform_bounds(ds.crs, index.crs(i), *ds.bounds, densify_pts=21)
    except Exception:  # no transformation between the CRSs (outside a projection's area of use)
        return 0.0
    return box(*lb).intersection(box(*index.bounds(i))).area if all(np.isfinite(lb)) else 0.0


def _label_chip(ds, nodata, bounds, crs: str, size: int) -> np.ndarray:
    """(size, size) float64 label values on the chip grid (nearest), NaN where unlabelled or outside."""
    out = np.full((size, size), np.nan, dtype=np.float64)
    gx, gy = (bounds[2] - bounds[0]) / size, (bounds[3] - bounds[1]) / size
    reproject(source=rasterio.band(ds, 1), destination=out, src_nodata=nodata, dst_nodata=np.nan,
              dst_transform=from_origin(bounds[0], bounds[3], gx, gy), dst_crs=crs, resampling=Resampling.nearest)
    return out


def _classes(raw: np.ndarray, classes: dict[int, str] | None, path: Path) -> tuple[list[str], dict[float, int]]:
    """(class names, label value -> class index) from the mapping or from the values present in ``raw``."""
    present = np.unique(raw[np.isfinite(raw)])
    if (present != np.round(present)).any():
        raise ValueError(f"{path}: label values must be integers, found {present[present != np.round(present)][:5]}")
    if classes is None:
        names = [str(int(v)) for v in present]
        return names, {float(v): k for k, v in enumerate(present)}
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"classes must be a non-empty mapping label value -> name, e.g. {{1: 'water'}}, got "
                         f"{classes!r}")
    unknown = sorted(int(v) for v in set(present.tolist()) - {float(v) for v in classes})
    if unknown:
        raise ValueError(f"{path}: label values {unknown[:10]} are not in the classes {classes}; add them to "
                         f"classes, or set label_nodata if they mean 'no label'")
    names = list(dict.fromkeys(str(n) for n in classes.values()))
    return names, {float(v): names.index(str(n)) for v, n in classes.items()}
