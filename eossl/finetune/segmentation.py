"""Land-cover segmentation from a label raster over indexed scenes: chips, a spatial split, training, metrics.

>>> chips = load_segmentation_chips(index, "landcover.tif", chip_size=64, classes={1: "water", 2: "forest"})
>>> train, test = window_block_split(chips.bounds, block_size_m=2560, test_fraction=0.2, crs=chips.crs)
>>> model = train_segmentation(backbone, chips, train, mean=mean, std=std, epochs=20, lr=1e-3, batch_size=16)
>>> evaluate_segmentation(model, chips, test, mean, std)["mean_iou"]

The label raster may be in any CRS and resolution: it is reprojected onto each chip's grid with nearest
resampling. Labels are class indices into ``chips.classes``; -1 marks pixels to ignore (label nodata, outside
the label raster, or an invalid image pixel). ``mean``/``std`` are per band, in the reader's reflectance units.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import box
from torch import nn
from tqdm.auto import tqdm

from eossl.catalog.index import SceneIndex
from eossl.data.reader import ChipReader
from eossl.data.samplers import GridWindowSampler
from eossl.finetune.classifier import Classifier
from eossl.finetune.metrics import classification_metrics, iou_from_confusion
from eossl.gdal_env import open_raster

__all__ = ["SegmentationChips", "load_segmentation_chips", "normalise_chips", "window_block_split",
           "train_segmentation", "evaluate_segmentation", "predict_segmentation"]


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
                            label_crs: str | None = None) -> SegmentationChips:
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
        with open_raster(str(path)) as src, _georeferenced(src, path, label_crs) as ds:
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
def _georeferenced(src, path: Path, label_crs: str | None):
    """``src``, or a VRT of it in ``label_crs`` when the file declares no CRS; never a guessed CRS."""
    if src.crs is None:
        if label_crs is None:
            raise ValueError(f"{path}: the label raster declares no CRS; set `label_crs` to the CRS of its "
                             f"coordinates (e.g. EPSG:32633) or assign one (gdal_edit.py -a_srs EPSG:XXXX)")
        try:
            crs = CRS.from_user_input(label_crs)
        except Exception as err:  # rasterio's CRSError
            raise ValueError(f"label_crs {label_crs!r} is not a CRS GDAL understands: {err}") from err
        with WarpedVRT(src, src_crs=crs, crs=crs) as vrt:
            yield vrt
        return
    if label_crs is not None and CRS.from_user_input(label_crs) != src.crs:
        raise ValueError(f"{path}: the label raster declares the CRS {src.crs} but `label_crs` is {label_crs}; "
                         f"drop label_crs (it is for files without a CRS) or fix the file")
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


def window_block_split(bounds_list, block_size_m: float, test_fraction: float = 0.2, seed: int = 0,
                       crs: list[str] | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) window indices, sorted: whole square blocks of ``block_size_m`` (window centres) go to test.

    Windows in other CRSs than the first are moved into it first (it must be projected, in metres). Train
    windows that overlap a test window (stride < chip size) are dropped, so no pixel is in both sets.
    """
    b = np.asarray(bounds_list, dtype=np.float64).reshape(-1, 4)
    if block_size_m <= 0 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"need block_size_m > 0 and 0 < test_fraction < 1, got {block_size_m}, {test_fraction}")
    crss = [crs] * len(b) if crs is None or isinstance(crs, str) else list(crs)
    if len(crss) != len(b):
        raise ValueError(f"{len(b)} windows but {len(crss)} CRSs")
    for i, c in enumerate(crss):
        if c is not None and c != crss[0]:
            b[i] = transform_bounds(c, crss[0], *b[i])
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    _, block = np.unique(np.floor(centre / block_size_m).astype(np.int64), axis=0, return_inverse=True)
    n_blocks = int(block.max()) + 1 if block.size else 0
    if n_blocks < 2:
        raise ValueError(f"the {len(b)} windows fall in {n_blocks} block(s) of {block_size_m:g} m: need at least 2 "
                         f"to split; use a smaller block_size_m")
    order = np.random.default_rng(seed).permutation(n_blocks)
    n_test = min(n_blocks - 1, max(1, round(test_fraction * n_blocks)))
    is_test = np.isin(block.ravel(), order[:n_test])
    test = np.flatnonzero(is_test)
    t = b[test]
    overlap = ((b[:, None, 0] < t[None, :, 2]) & (t[None, :, 0] < b[:, None, 2]) &
               (b[:, None, 1] < t[None, :, 3]) & (t[None, :, 1] < b[:, None, 3])).any(axis=1)
    return np.flatnonzero(~is_test & ~overlap), test


def normalise_chips(images: np.ndarray, valid: np.ndarray, mean, std) -> torch.Tensor:
    """(N, C, H, W) reflectance -> standardised tensor, invalid pixels 0 (the mean)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    c = images.shape[1]
    if mean.size != c or std.size != c or (std <= 0).any():
        raise ValueError(f"mean and std need one value per band ({c}) and std > 0; got {mean.size} and {std.size}")
    x = (images - mean[:, None, None]) / std[:, None, None]
    return torch.from_numpy(np.where(valid[:, None], x, 0.0).astype(np.float32))


def _augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-sample flips and (square chips) 90-degree rotations of images (B, C, H, W) and labels (B, H, W)."""
    n = x.shape[0]
    ks = torch.randint(0, 4 if x.shape[-1] == x.shape[-2] else 1, (n,), generator=g).tolist()
    flips = torch.randint(0, 2, (n,), generator=g).tolist()
    out = [(torch.rot90(xi, k, (1, 2)), torch.rot90(yi, k, (0, 1))) for xi, yi, k in zip(x, y, ks)]
    out = [(a.flip(-1), b.flip(-1)) if f else (a, b) for (a, b), f in zip(out, flips)]
    return torch.stack([a for a, _ in out]), torch.stack([b for _, b in out])


def _check_idx(idx, n: int, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{what} must be a non-empty list of chip indices in 0..{n - 1}, got {idx.size} indices")
    return idx


def train_segmentation(backbone: nn.Module, chips: SegmentationChips, train_idx, *, mean, std, epochs: int,
                       lr: float, batch_size: int, freeze_backbone: bool = False, seed: int = 0,
                       device: str = "cpu", weight_decay: float = 1e-4, progress: bool = True) -> Classifier:
    """Fine-tune a copy of ``backbone`` + a :class:`SegmentationDecoder` on chips ``train_idx``.

    Cross-entropy ignoring -1 labels, AdamW, cosine learning rate per step, random flips / rot90. Every random
    draw (decoder init, shuffling, augmentation) comes from ``seed``. ``freeze_backbone``: only the decoder trains
    and the backbone stays in eval mode (BatchNorm statistics unchanged). Returns the model in eval mode, with
    ``history`` ({"loss": per epoch}).
    """
    idx = _check_idx(train_idx, len(chips), "train_idx")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    x_all = normalise_chips(chips.images[idx], chips.valid[idx], mean, std)
    y_all = torch.from_numpy(chips.labels[idx])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(copy.deepcopy(backbone), len(chips.classes), task="segment").to(device)
    if freeze_backbone:
        model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batches = _batches(len(idx), batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(batches))
    g = torch.Generator().manual_seed(seed)
    history, step = [], 0
    for _ in tqdm(range(epochs), desc="segmentation", unit="epoch", disable=not progress):
        model.train()
        if freeze_backbone:
            model.backbone.eval()
        perm, total = torch.randperm(len(idx), generator=g), 0.0
        for lo, hi in batches:
            x, y = _augment(x_all[perm[lo:hi]], y_all[perm[lo:hi]], g)
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y, ignore_index=-1, reduction="sum")
            loss = loss / (y >= 0).sum().clamp(min=1)   # mean over labelled pixels (0 when there are none)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite segmentation loss at step {step}; lower lr or check mean/std")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, step = total + float(loss.detach()) * (hi - lo), step + 1
        history.append(total / batches[-1][1])
    model.history = {"loss": history}
    return model.eval()


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch; a trailing batch of one chip is dropped (BatchNorm needs two in training)."""
    spans = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans.pop()
    return spans


@torch.no_grad()
def predict_segmentation(model: nn.Module, images: np.ndarray, valid: np.ndarray, mean, std,
                         batch_size: int = 16) -> np.ndarray:
    """(N, C, H, W) reflectance + (N, H, W) valid -> (N, H, W) int64 class indices (model in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    x = normalise_chips(images, valid, mean, std)
    out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def evaluate_segmentation(model: nn.Module, chips: SegmentationChips, test_idx, mean, std,
                          batch_size: int = 16) -> dict:
    """Per-pixel metrics over chips ``test_idx``, ignored (-1) pixels excluded: those of
    :func:`classification_metrics` plus ``iou`` per class (in ``per_class``), ``mean_iou`` (over classes present
    in the labels, like macro-F1) and ``n_ignored``. JSON-ready."""
    idx = _check_idx(test_idx, len(chips), "test_idx")
    pred = predict_segmentation(model, chips.images[idx], chips.valid[idx], mean, std, batch_size)
    y = chips.labels[idx]
    metrics = classification_metrics(y.ravel(), np.where(y >= 0, pred, 0).ravel(), chips.classes)
    iou, metrics["mean_iou"] = iou_from_confusion(metrics["confusion_matrix"])
    for k, name in enumerate(chips.classes):
        metrics["per_class"][name]["iou"] = None if math.isnan(iou[k]) else float(iou[k])
    metrics["n_ignored"] = int((y < 0).sum())
    return metrics
