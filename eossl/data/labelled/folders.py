"""Labelled chips from class folders (``root/<class>/*.tif``), e.g. EuroSAT-MS, as reflectance + valid mask.

>>> chips = load_eurosat()                      # the built-in 200-chip EuroSAT-MS sample
>>> chips.images.shape, chips.mask.shape        # (200, 13, 64, 64) float32, (200, 64, 64) bool
>>> chips.classes[chips.labels[0]], chips.bands[:3]

Values are ``DN * scale + offset`` of the sensor's band (reflectance for optical bands). A pixel is valid when
every band is valid (not the sensor's nodata, not the file's nodata, finite); invalid pixels are 0 with
``mask`` False, as the chip reader produces them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eossl.catalog.sensors import Sensor, load_sensor
from eossl.gdal_env import open_raster

log = logging.getLogger(__name__)

__all__ = ["EUROSAT_FILE_BANDS", "LabelledChips", "load_class_folders", "load_eurosat"]

# Band order inside every EuroSAT-MS GeoTIFF (the files carry no band descriptions): B8A comes last.
EUROSAT_FILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
_SUFFIXES = (".tif", ".tiff")


@dataclass
class LabelledChips:
    """``images`` (N, C, H, W) float32 reflectance, ``mask`` (N, H, W) bool (True = valid), ``labels`` (N,) int64
    indices into ``classes``; ``bands`` are the sensor's canonical names in array order; ``paths`` one per chip;
    ``sensor`` names the sensor the values and band names refer to (its wavelengths and normalisation apply)."""

    images: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    classes: list[str]
    bands: list[str]
    paths: list[str]
    sensor: str = ""

    def __post_init__(self):
        n, c = self.images.shape[:2] if self.images.ndim == 4 else (-1, -1)
        if n < 0 or self.mask.shape != (n, *self.images.shape[2:]) or self.labels.shape != (n,):
            raise ValueError(f"inconsistent chips: images {self.images.shape} (N, C, H, W), mask {self.mask.shape} "
                             f"(N, H, W), labels {self.labels.shape} (N,)")
        if len(self.bands) != c or len(self.paths) != n:
            raise ValueError(f"{c} image bands but {len(self.bands)} band names, {n} chips but {len(self.paths)} paths")

    def __len__(self) -> int:
        return len(self.labels)


def load_eurosat(root: str | Path | None = None, bands: list[str] | None = None) -> LabelledChips:
    """EuroSAT-MS class folders (default: the built-in sample); ``bands`` in sentinel2-l1c order (B8A after B08)
    unless given."""
    if root is None:
        from eossl.sample_data import builtin_eurosat_root

        root = builtin_eurosat_root()
    return load_class_folders(root, sensor="sentinel2-l1c", band_order=list(EUROSAT_FILE_BANDS), bands=bands)


def load_class_folders(root: str | Path, sensor: str | Sensor = "sentinel2-l1c", band_order: list[str] | None = None,
                       bands: list[str] | None = None) -> LabelledChips:
    """Read ``root/<class>/*.tif|*.tiff`` (class folders in sorted order; the label is the folder name).

    ``band_order``: names of the file's bands in file order (None: the band descriptions stored in the files).
    ``bands``: output bands in output order (None: the sensor's band order, restricted to the bands present).
    Every file must have the same shape and band layout.
    """
    sensor = load_sensor(sensor)
    files = _class_files(Path(root))
    classes = sorted(files)
    paths = [p for c in classes for p in files[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in files[c]], dtype=np.int64)

    with open_raster(str(paths[0])) as ds:
        first_bands = _file_band_names(ds, sensor, band_order, paths[0])
        shape = (ds.count, ds.height, ds.width)
    if bands is None:
        out = [b for b in sensor.band_names if b in first_bands]
    else:
        out = sensor.resolve_many(bands)
        missing = [b for b in out if b not in first_bands]
        if missing:
            raise ValueError(f"bands {missing} are not in the files (they hold {', '.join(first_bands)})")
    index = [first_bands.index(b) + 1 for b in out]   # rasterio band indexes are 1-based
    scale = np.array([sensor.band(b).scale for b in out], dtype=np.float32)[:, None, None]
    offset = np.array([sensor.band(b).offset for b in out], dtype=np.float32)[:, None, None]
    nodata = [sensor.band(b).nodata for b in out]
    # float reflectance chips (EuroSAT-style exports) hold physical values already: decided on a sample of the
    # files against the sensor's declared DN type and scale, like `eossl catalog build` does per acquisition
    scaling = _folder_scaling(root, paths[:_SCALING_SAMPLE], index, out, sensor, shape)
    for k, b in enumerate(out):
        if b in scaling.overrides:
            scale[k], offset[k] = scaling.overrides[b]

    images = np.empty((len(paths), len(out), *shape[1:]), dtype=np.float32)
    mask = np.empty((len(paths), *shape[1:]), dtype=bool)
    for i, path in enumerate(paths):
        images[i], mask[i] = _read_chip(path, index, shape, scale, offset, nodata,
                                        check_bands=None if band_order is not None else (sensor, first_bands))
    return LabelledChips(images=images, mask=mask, labels=labels, classes=classes, bands=out,
                         paths=[str(p) for p in paths], sensor=sensor.name)


_SCALING_SAMPLE = 16   # chips read to decide the class folders' radiometric scale


def _folder_scaling(root, paths: list[Path], index: list[int], out: list[str], sensor: Sensor,
                    shape: tuple[int, int, int]):
    """The radiometric scaling of class-folder chips (:func:`eossl.catalog.scaling.choose_scaling` on the values
    :func:`~eossl.catalog.scaling.sample_file` reads from ``paths``); ValueError naming the folder when the values
    fit no reading of the sensor."""
    from eossl.catalog.scaling import BandSample, choose_scaling, sample_file

    bands = dict(zip(out, index, strict=True))
    nodata = {b: sensor.band(b).nodata for b in out}
    values: dict[str, list[np.ndarray]] = {b: [] for b in out}
    dtypes: dict[str, str] = {}
    for path in paths:
        with open_raster(str(path)) as ds:
            if (ds.count, ds.height, ds.width) != shape:
                continue   # named by _read_chip's shape check
        for b, (dtype, v) in sample_file(str(path), bands, nodata).items():
            dtypes[b] = dtype
            values[b].append(v)
    samples = [BandSample(sensor.band(b), str(paths[0]), dtypes[b], np.concatenate(values[b])) for b in out]
    try:
        scaling = choose_scaling(samples, sensor.name)
    except ValueError as err:
        raise ValueError(f"class folders under {root}: {err}") from err
    log.info("class folders under %s: %s", root, scaling.note)
    return scaling


def _read_chip(path: Path, index: list[int], shape: tuple[int, int, int], scale: np.ndarray, offset: np.ndarray,
               nodata: list[float | None], check_bands: tuple[Sensor, list[str]] | None):
    """(C, H, W) float32 values (0 where invalid) and (H, W) valid mask of one file."""
    with open_raster(str(path)) as ds:
        if (ds.count, ds.height, ds.width) != shape:
            raise ValueError(f"{path}: shape (bands, H, W) {(ds.count, ds.height, ds.width)} differs from the "
                             f"first chip's {shape}; every chip must have the same size and band count")
        if check_bands is not None and _file_band_names(ds, check_bands[0], None, path) != check_bands[1]:
            raise ValueError(f"{path}: its band descriptions name other bands than the first chip's "
                             f"({', '.join(check_bands[1])}); every chip must have the same band layout")
        dn = ds.read(index)
        file_nodata = ds.nodata
    valid = np.isfinite(dn).all(axis=0) if dn.dtype.kind == "f" else np.ones(shape[1:], dtype=bool)
    for b, sensor_nodata in enumerate(nodata):
        for value in {sensor_nodata, file_nodata} - {None}:
            valid &= dn[b] != value
    return np.where(valid, dn.astype(np.float32) * scale + offset, np.float32(0)), valid


def _class_files(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise FileNotFoundError(f"labelled chips folder not found: {root}")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise ValueError(f"{root} holds no class folders; expected one sub-folder per class (the folder name is "
                         f"the label) holding {'/'.join(_SUFFIXES)} files")
    files = {}
    for d in dirs:
        found = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if not found:
            raise ValueError(f"class folder {d} holds no {'/'.join(_SUFFIXES)} files; remove it or add chips")
        files[d.name] = found
    return files


def _file_band_names(ds, sensor: Sensor, band_order: list[str] | None, path: Path) -> list[str]:
    """Canonical band names of the file's bands, in file order."""
    if band_order is not None:
        names = sensor.resolve_many(band_order)
        if len(names) != ds.count:
            raise ValueError(f"{path} has {ds.count} bands but band_order names {len(names)}: {list(band_order)}")
        described = [sensor.match(d) if d else None for d in ds.descriptions]
        if all(described) and described != names:
            raise ValueError(f"{path}: band_order {names} contradicts the band descriptions stored in the file "
                             f"({list(ds.descriptions)}); fix band_order or pass band_order=None to use them")
        return names
    if not all(ds.descriptions):
        raise ValueError(f"{path} stores no band descriptions, so its band order is unknown; pass band_order (the "
                         f"band names in file order, e.g. EUROSAT_FILE_BANDS for EuroSAT-MS)")
    try:
        return sensor.resolve_many(list(ds.descriptions))
    except ValueError as err:
        raise ValueError(f"{path}: band descriptions {list(ds.descriptions)}: {err}; pass band_order to name the "
                         f"bands yourself") from err


def load_label_chips(index, labels: str | Path, label_column: str, *, size: int = 64, gsd: float | None = None,
                     bands: list[str] | None = None, classes: list[str] | None = None, id_column: str | None = None,
                     per_label: str = "first", on_outside: str = "error", label_crs: str | None = None,
                     crs_key: str = "label_crs") -> LabelledChips:
    """Labelled chips centred on label geometries (points or polygons, any file geopandas reads) over the scenes
    of ``index`` (a :class:`~eossl.catalog.index.SceneIndex`): one chip per label (``per_label="first"``: its
    earliest acquisition; ``"all"``: one per acquisition over it), read at ``gsd`` metres in the acquisition's
    CRS (its local UTM zone for a scene in a geographic CRS). ``label_crs``: the CRS of a label file that declares
    none (an error otherwise); ``crs_key`` the config key that sets it, as errors name it.

    The labels' class names come from ``label_column`` (``classes`` fixes their order); labels outside every
    acquisition raise unless ``on_outside="skip"``.
    """
    from eossl.data.labelled.points import LabelWindowSampler
    from eossl.data.reader import ChipReader

    sampler = LabelWindowSampler(index, size, labels, label_column, gsd, classes=classes, id_column=id_column,
                                 per_label=per_label, on_outside=on_outside, label_crs=label_crs,
                                 crs_key=crs_key)
    windows = sampler.global_windows(0)
    reader = ChipReader(index, bands=bands)
    try:
        read = [reader.read(w.acquisitions[0], w.bounds, w.crs, w.gsd, w.size) for w in windows]
    finally:
        reader.close()
    return LabelledChips(images=np.stack([c.image for c in read]), mask=np.stack([c.mask for c in read]),
                         labels=np.array([w.label for w in windows], dtype=np.int64), classes=list(sampler.classes),
                         bands=list(read[0].bands),
                         paths=[f"{labels}#{w.label_id}@{c.acquisition}" for w, c in zip(windows, read)],
                         sensor=index.sensor(windows[0].acquisitions[0]).name)
