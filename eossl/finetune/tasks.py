"""Crop-classification and segmentation runs for ``eossl evaluate`` / ``eossl finetune`` (the patch task lives in
:mod:`eossl.finetune.evaluation`).

Every task returns rows in one shape, which the figures and tables read: ``{"model", "protocol", "k",
"per_seed": [{"seed", "n_train", scores...}], "overall_accuracy": {"mean", "ci95", "n"}, ...}``; the row at the
largest k also carries ``metrics_all_seeds`` (per-class metrics and the confusion matrix of every seed's test
predictions pooled).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from eossl.catalog.sensors import load_sensor
from eossl.finetune.config import FieldsConfig, SegmentationConfig
from eossl.finetune.crops import evaluate_crops
from eossl.finetune.evaluate import backbone_for_bands
from eossl.finetune.fewshot import fit_logreg
from eossl.finetune.fields import load_fields
from eossl.finetune.metrics import (
    classification_metrics,
    iou_from_confusion,
    mean_ci95,
    metrics_from_confusion,
)
from eossl.finetune.segmentation import (
    SegmentationChips,
    evaluate_segmentation,
    load_segmentation_chips,
    train_segmentation,
    window_block_split,
)
from eossl.models.backbones import create_backbone

log = logging.getLogger(__name__)

__all__ = ["crop_rows", "evaluate_crop_task", "evaluate_segment_task", "load_segment_chips", "segment_backbone"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")


# ------------------------------------------------------------------------------------------- crops


def evaluate_crop_task(f: FieldsConfig, weights, arch: str, ks, seeds: int, seed: int, test_fraction: float,
                       C: float, device: str) -> dict:
    index = f.scenes.open()
    series = load_fields(index, f.labels, f.class_column, chip_size=f.chip_size, gsd=f.gsd, bands=f.bands,
                         classes=f.classes, min_valid=f.min_valid, id_column=f.id_column)
    raw = evaluate_crops(series, weights=weights, arch=None if weights else arch, ks=tuple(ks), seeds=seeds,
                         seed=seed, block_size_m=f.block_size_m, test_fraction=test_fraction,
                         aggregation=tuple(f.aggregation), pool=f.pool, level=f.level,
                         attention_epochs=f.attention_epochs, C=C, device=device)
    return {"settings": raw["settings"], "data": raw["data"], "splits": raw["splits"],
            "skipped_k": raw["skipped_k"], "results": crop_rows(raw)}


def crop_rows(raw: dict) -> list[dict]:
    """:func:`evaluate_crops` output as result rows (model = features, protocol = aggregation)."""
    rows = []
    for m in raw["methods"].values():
        protocol = {"logreg": "linear", "mean": "mean + linear"}.get(m["aggregation"], m["aggregation"])
        ks = list(m["by_k"])
        for k in ks:
            scores = m["by_k"][k]
            per_seed = [{"seed": raw["settings"]["seed"] + i, "n_train": n,
                         **{sc: scores[sc]["values"][i] for sc in _SCORES}}
                        for i, n in enumerate(scores["n_train"])]
            row = {"model": m["features"], "protocol": protocol, "k": k, "per_seed": per_seed,
                   **{sc: {key: scores[sc][key] for key in ("mean", "ci95", "n")} for sc in _SCORES}}
            if k == ks[-1]:
                row["metrics_all_seeds"] = m["metrics_all_seeds"]
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- segmentation


def load_segment_chips(s: SegmentationConfig) -> SegmentationChips:
    return load_segmentation_chips(s.scenes.open(), s.label_raster, chip_size=s.chip_size, gsd=s.gsd, bands=s.bands,
                                   classes=s.classes, label_nodata=s.label_nodata, stride=s.stride,
                                   min_labelled=s.min_labelled)


def segment_backbone(chips: SegmentationChips, weights, arch: str, seed: int):
    """(backbone, mean, std): exported weights adapted to the chips' bands, or a random ``arch`` (seeded)."""
    size = int(chips.images.shape[-1])
    if weights is not None:
        return backbone_for_bands(weights, chips.bands, chips.sensor, size, chips.images, chips.valid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_backbone(arch, len(chips.bands), img_size=size)
    mean, std = load_sensor(chips.sensor).norm_stats(chips.bands)
    return model, mean, std


def evaluate_segment_task(s: SegmentationConfig, weights, arch: str, ks, seeds: int, seed: int,
                          test_fraction: float, baselines: list[str], device: str, progress: bool) -> dict:
    """Rows: pretrained (fine-tuned, and frozen backbone + decoder), random-init frozen + decoder, from scratch,
    and per-pixel band values with logistic regression; k = labelled training chips ("all": every training chip
    of the split). Splits: whole spatial blocks of windows, per seed."""
    chips = load_segment_chips(s)
    models = []
    if weights is not None:
        pre = segment_backbone(chips, weights, arch, seed)
        name = f"pretrained {pre[0].weights_info.arch} {pre[0].weights_info.ssl_method}"
        models += [(name, "finetune", pre, False), (name, "frozen + decoder", pre, True)]
        arch = pre[0].weights_info.arch
    rand = segment_backbone(chips, None, arch, seed)
    if "random_init" in baselines:
        models.append((f"random-init {arch}", "frozen + decoder", rand, True))
    if "scratch" in baselines:
        models.append((f"from scratch {arch}", "finetune", rand, False))
    splits = [(sd, *window_block_split(chips.bounds, s.block_size_m, test_fraction, sd, crs=chips.crs))
              for sd in range(seed, seed + seeds)]
    rows = []
    total = (len(models) + ("band_statistics" in baselines)) * len(ks) * seeds
    bar = tqdm(total=total, desc="evaluate segmentation", unit="fit", disable=not progress)
    for name, protocol, (backbone, mean, std), frozen in models:
        def fit(train, test, sd, backbone=backbone, mean=mean, std=std, frozen=frozen):
            model = train_segmentation(backbone, chips, train, mean=mean, std=std, epochs=s.epochs, lr=s.lr,
                                       batch_size=s.batch_size, freeze_backbone=frozen, seed=sd, device=device,
                                       progress=False)
            return evaluate_segmentation(model, chips, test, mean, std)
        rows += _segment_rows(name, protocol, fit, chips, splits, ks, bar)
    if "band_statistics" in baselines:
        rows += _segment_rows("band values per pixel", "linear", lambda tr, te, sd: _pixel_probe(chips, tr, te, sd),
                              chips, splits, ks, bar)
    bar.close()
    data = {"n_chips": len(chips), "classes": chips.classes, "bands": chips.bands, "sensor": chips.sensor,
            "chip_size": int(chips.images.shape[-1]), "label_values": {str(k): v for k, v in chips.label_values.items()}}
    return {"data": data, "splits": [{"seed": sd, "n_train": int(len(tr)), "n_test": int(len(te))}
                                     for sd, tr, te in splits], "results": rows}


def _segment_rows(name, protocol, fit, chips, splits, ks, bar) -> list[dict]:
    rows, pooled = [], None
    for ki, k in enumerate(ks):
        per_seed = []
        for sd, train, test in splits:
            sub = train if k == "all" else np.random.default_rng(sd).permutation(train)[:int(k)]
            if len(sub) < 2:
                raise ValueError(f"k = {k} labelled chips leaves {len(sub)} to train on; segmentation needs 2")
            m = fit(np.sort(sub), test, sd)
            per_seed.append({"seed": sd, "n_train": int(len(sub)), "mean_iou": m["mean_iou"],
                             **{sc: m[sc] for sc in _SCORES}})
            if ki == len(ks) - 1:
                cm = np.asarray(m["confusion_matrix"])
                pooled = cm if pooled is None else pooled + cm
            bar.update(1)
        rows.append({"model": name, "protocol": protocol, "k": "all" if k == "all" else str(k), "per_seed": per_seed,
                     **{sc: mean_ci95([r[sc] for r in per_seed]) for sc in (*_SCORES, "mean_iou")}})
    rows[-1]["metrics_all_seeds"] = metrics_from_confusion(pooled, chips.classes)
    return rows


def _pixel_probe(chips: SegmentationChips, train, test, seed: int, max_pixels: int = 20000) -> dict:
    """Logistic regression on the band values of single labelled pixels (a per-pixel spectral baseline)."""
    x = np.moveaxis(chips.images[train], 1, -1).reshape(-1, chips.images.shape[1])
    y = chips.labels[train].ravel()
    keep = np.flatnonzero((y >= 0) & chips.valid[train].ravel())
    keep = np.random.default_rng(seed).permutation(keep)[:max_pixels]
    xt = np.moveaxis(chips.images[test], 1, -1).reshape(-1, chips.images.shape[1])
    yt = chips.labels[test].ravel()
    pred = fit_logreg(x[keep], y[keep], xt)[0]
    m = classification_metrics(yt, np.where(yt >= 0, pred, 0), chips.classes)
    m["mean_iou"] = iou_from_confusion(m["confusion_matrix"])[1]
    return m
