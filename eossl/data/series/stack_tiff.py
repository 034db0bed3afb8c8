"""Stack layers from a folder of GeoTIFF scenes over time.

Files are grouped into acquisitions by the catalog's rules (:func:`eossl.catalog.scan.group_files`): one
multi-band file per date (band descriptions name the bands, else the sensor's stack order) or one file per band and
date (the band a token of the file name). Each acquisition's date comes from its file name (the sensor's
``datetime_patterns``) or the GeoTIFF tags. Cloud masks: an ``SCL``/``QA_PIXEL``/``Fmask`` file named like the
band files (:func:`eossl.catalog.quality.match_masks`), or a layer of a multi-band file described as one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from eossl.catalog import quality, scan
from eossl.catalog.rows import header
from eossl.catalog.sensors import Sensor
from eossl.data.series.stack_layers import Layer, MaskLayer
from eossl.data.series.stack_netcdf import decode
from eossl.gdal_env import open_raster

log = logging.getLogger(__name__)

__all__ = ["PATTERNS", "find_tiffs", "infer_sensor", "read_tiffs"]

PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF")


def find_tiffs(path: Path) -> list[scan.RasterFile]:
    """Headers of the GeoTIFF files under ``path`` (a folder, searched recursively, or one file)."""
    return [header(p, quick=True) for _, p in scan.find_files([str(path)], PATTERNS)]


def infer_sensor(files: list[scan.RasterFile]) -> str | None:
    """``sentinel2-l2a`` when an SCL file or an SCL layer is present, else None (the caller asks for it)."""
    for f in files:
        stem = Path(f.path).stem
        if quality.kind_of_name(stem)[0] == "scl" or any(quality.kind_of_band(d or "") == "scl"
                                                         for d in f.descriptions):
            return "sentinel2-l2a"
    return None


def _date(acq: scan.Acquisition, sensor: Sensor) -> np.datetime64:
    patterns = list(sensor.datetime_patterns)
    first = next(iter(acq.assets.values()))[0]
    found = (scan.datetime_from_name(acq.stem, patterns) or scan.datetime_from_name(acq.key, patterns)
             or scan.datetime_from_tags(first.tags))
    if found is None:
        raise ValueError(f"{first.path}: no date in the file name or its tags (TIFFTAG_DATETIME, DATETIME, ...); "
                         f"put the acquisition date in the name (e.g. ..._20180615_...) or write a DATETIME tag")
    return np.datetime64(found.replace(tzinfo=None), "ns")


def _read_band(f: scan.RasterFile, idx: int, sensor: Sensor, band: str) -> tuple[np.ndarray, np.ndarray]:
    with open_raster(f.path) as ds:
        raw = ds.read(idx)
        scale, offset = ds.scales[idx - 1], ds.offsets[idx - 1]
    attrs = {} if f.nodata is None else {"_FillValue": f.nodata}
    if (scale, offset) != (1.0, 0.0):   # GDAL's default when the file says nothing: then the sensor's scale
        attrs.update(scale_factor=scale, add_offset=offset)
    return decode(raw, attrs, sensor.band(band))


def _layers_of(acq: scan.Acquisition, when: np.datetime64, sensor: Sensor) -> list[Layer]:
    """One single-date Layer per file grid of the acquisition."""
    by_grid: dict[tuple, list] = {}
    for band, (f, idx) in acq.assets.items():
        if f.crs is None:
            raise ValueError(f"{f.path}: the file has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX)")
        by_grid.setdefault((f.crs, f.res, f.bounds), []).append((band, f, idx))
    layers = []
    for members in by_grid.values():
        pairs = [_read_band(f, idx, sensor, band) for band, f, idx in members]
        f = members[0][1]
        with open_raster(f.path) as ds:
            transform = ds.transform
        layers.append(Layer(values=np.stack([v for v, _ in pairs])[None], valid=np.stack([o for _, o in pairs])[None],
                            times=np.array([when]), bands=[m[0] for m in members], crs=CRS.from_user_input(f.crs),
                            transform=transform, source=f.path))
    return layers


def _own_mask(acq: scan.Acquisition) -> quality.QualityMask | None:
    """A layer of a multi-band file of the acquisition described as SCL / QA_PIXEL / Fmask."""
    for f, _ in acq.assets.values():
        for i, d in enumerate(f.descriptions, start=1):
            kind = quality.kind_of_band(d or "")
            if kind:
                return quality.QualityMask(f, i, kind)
    return None


def _mask_layer(qm: quality.QualityMask, when: np.datetime64) -> MaskLayer:
    with open_raster(qm.file.path) as ds:
        codes, transform = ds.read(qm.band_index), ds.transform
    return MaskLayer(usable=quality.usable(qm.kind, codes)[None], times=np.array([when]),
                     crs=CRS.from_user_input(qm.file.crs), transform=transform, source=qm.file.path, kind=qm.kind)


def read_tiffs(files: list[scan.RasterFile], sensor: Sensor,
               where: Path) -> tuple[list[Layer], list[MaskLayer], list[str]]:
    """Layers (one per acquisition and grid), masks and the paths used."""
    mask_files, others = quality.split_masks(files, sensor)
    roots = {f.path: str(Path(where).resolve() if Path(where).is_dir() else Path(where).parent.resolve())
             for f in files}
    acquisitions, skipped = scan.group_files(others, roots, sensor, None)
    for msg in skipped:
        log.info("not an image file: %s", msg)
    if not acquisitions:
        raise FileNotFoundError(f"no image files in {where}: none of its {len(files)} GeoTIFF files holds a "
                                f"{sensor.name} band ({', '.join(sensor.band_names)}) by name or band description")
    masks_of = quality.match_masks(acquisitions, mask_files, sensor)
    layers, masks, used = [], [], []
    for acq in acquisitions:
        when = _date(acq, sensor)
        layers += _layers_of(acq, when, sensor)
        qm = masks_of.get(acq.key) or _own_mask(acq)
        if qm is not None:
            masks.append(_mask_layer(qm, when))
        used += sorted({f.path for f, _ in acq.assets.values()})
    return layers, masks, used
