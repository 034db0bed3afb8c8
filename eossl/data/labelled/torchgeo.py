"""Labelled chips from torchgeo classification datasets by name (``data.torchgeo: EuroSAT`` with a local ``root``).

torchgeo reads the files (its own layout, split lists and band handling; ``download=False``, ``checksum=False``:
nothing is fetched or hashed); eossl turns the samples into :class:`~eossl.data.labelled.LabelledChips`: stored
values to the sensor's physical values (``DN * scale + offset``), band names through the sensor's aliases, a valid
mask (every band finite and not the sensor's nodata), classes from the dataset. Every split listed in ``splits``
is read and pooled: eossl draws its own few-label splits (seeded, stratified) from the pool.

Single-label datasets only: a multi-label dataset (BigEarthNet) has no single class per chip for the probe, kNN
and fine-tuning rows, and is refused rather than reduced to a biased subset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eossl.catalog.sensors import load_sensor
from eossl.data.labelled.folders import LabelledChips

log = logging.getLogger(__name__)

__all__ = ["TORCHGEO_DATASETS", "check_dataset_name", "load_torchgeo"]


@dataclass(frozen=True)
class TorchgeoDataset:
    """How eossl reads one torchgeo dataset: the sensor its bands and values are, and its splits."""

    sensor: str
    splits: tuple[str, ...] = ("train", "val", "test")
    multilabel: bool = False
    note: str = ""


TORCHGEO_DATASETS = {
    "EuroSAT": TorchgeoDataset("sentinel2-l1c", note="27,000 64x64 Sentinel-2 L1C chips, 10 land-cover classes"),
    "EuroSAT100": TorchgeoDataset("sentinel2-l1c", note="100-chip subset of EuroSAT (for tests and demos)"),
    "EuroSATSpatial": TorchgeoDataset("sentinel2-l1c", note="EuroSAT with splits by longitude"),
    "BigEarthNet": TorchgeoDataset("sentinel2-l2a", multilabel=True, note="multi-label: refused"),
}


def _names() -> str:
    return ", ".join(f"{n} ({d.note})" for n, d in TORCHGEO_DATASETS.items())


def check_dataset_name(name: str) -> TorchgeoDataset:
    """The entry of ``name`` in :data:`TORCHGEO_DATASETS`; a ValueError listing them (and the closest) otherwise."""
    spec = TORCHGEO_DATASETS.get(name)
    if spec is None:
        import difflib

        close = difflib.get_close_matches(name, list(TORCHGEO_DATASETS), n=1, cutoff=0.6)
        raise ValueError(f"data.torchgeo: {name!r} is not a dataset eossl reads through torchgeo"
                         + (f" (did you mean {close[0]}?)" if close else "") + f"; these are: {_names()}. Other "
                         f"layouts: class folders (data.root) or labels over scenes (data.labels)")
    return spec


def load_torchgeo(name: str, root: str | Path, bands: list[str] | None = None,
                  splits: list[str] | None = None, progress: bool = True) -> LabelledChips:
    """The chips of torchgeo dataset ``name`` under ``root`` (see module doc); ``bands`` in this order (default:
    every band the dataset has), ``splits`` to pool (default: all of the dataset's)."""
    import torchgeo.datasets as tgd
    from torchgeo.datasets.errors import DatasetNotFoundError

    spec = check_dataset_name(name)
    if spec.multilabel:
        raise ValueError(f"data.torchgeo: {name} is multi-label; eossl's evaluation needs one class per chip (probe, "
                         f"kNN, fine-tuning), and a single-label subset would be biased. Use a single-label dataset "
                         f"({', '.join(n for n, d in TORCHGEO_DATASETS.items() if not d.multilabel)})")
    if root is None or not Path(root).is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder; data.torchgeo reads a local copy of {name} "
                                f"(nothing is downloaded): give the folder torchgeo's {name}(root=...) would use")
    sensor = load_sensor(spec.sensor)
    cls = getattr(tgd, name)
    all_bands = [sensor.resolve(b) for b in cls.all_band_names]
    wanted = sensor.resolve_many(bands) if bands is not None else [b for b in sensor.band_names if b in all_bands]
    missing = [b for b in wanted if b not in all_bands]
    if missing:
        raise ValueError(f"data.bands: {name} has no band {', '.join(missing)}; it has {', '.join(all_bands)}")
    native = [cls.all_band_names[all_bands.index(b)] for b in wanted]
    splits = list(splits or spec.splits)
    bad = [s for s in splits if s not in spec.splits]
    if bad:
        raise ValueError(f"data.torchgeo_splits: {name} has no split {', '.join(bad)}; it has {', '.join(spec.splits)}")
    images, labels, paths, classes = [], [], [], None
    for split in splits:
        try:
            ds = cls(root=str(root), split=split, bands=native, download=False, checksum=False)
        except DatasetNotFoundError as err:
            raise FileNotFoundError(f"data.root: torchgeo finds no {name} {split} split in {root} ({err}); "
                                    f"the folder must hold torchgeo's layout for {name} (its split lists and "
                                    f"extracted files), or leave {split} out with data.torchgeo_splits") from err
        if classes is not None and list(ds.classes) != classes:
            raise ValueError(f"{name} under {root}: split {split} has classes {list(ds.classes)}, not {classes}")
        classes = list(ds.classes)
        for i in tqdm(range(len(ds)), desc=f"reading {name} {split}", unit="chip", disable=not progress):
            sample = ds[i]
            images.append(np.asarray(sample["image"], dtype=np.float32))
            labels.append(int(sample["label"]))
            paths.append(str(ds.samples[i][0]) if hasattr(ds, "samples") else f"{name}/{split}/{i}")
    if not images:
        raise ValueError(f"{name} under {root}: the splits {', '.join(splits)} hold no chips")
    stored = np.stack(images)
    valid = np.isfinite(stored).all(axis=1)
    out = np.empty_like(stored)
    for c, b in enumerate(wanted):
        band = sensor.band(b)
        if band.nodata is not None:
            valid &= stored[:, c] != band.nodata
        out[:, c] = stored[:, c] * band.scale + band.offset
    out[~np.broadcast_to(valid[:, None], out.shape)] = 0.0
    log.info("%s under %s: %d chips of %d classes, bands %s (%s values)", name, root, len(labels), len(classes),
             ", ".join(wanted), sensor.name)
    return LabelledChips(images=out, mask=valid, labels=np.asarray(labels, dtype=np.int64), classes=classes,
                         bands=wanted, paths=paths, sensor=sensor.name)
