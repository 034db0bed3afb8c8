"""``task: segment``: land-cover segmentation of label-raster chips (:mod:`eossl.evaluate.segmentation`).

Rows: pretrained (fine-tuned, and frozen backbone + decoder), random-init frozen + decoder, from scratch, and
per-pixel logistic regressions (:func:`~eossl.evaluate.pixel_probes.pixel_probes`: band values, RCF maps, band
values + frozen features); k = labelled training chips ("all": every training chip of the split). Splits: whole
spatial blocks of windows, per seed. Scores per pixel, mean IoU beside the classification scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tqdm.auto import tqdm

from eossl.data.labelled.rasters import SegmentationChips
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext, TaskNotes
from eossl.evaluate.metrics import metrics_from_confusion, summarise
from eossl.evaluate.pixel_probes import pixel_probes
from eossl.evaluate.sanity import check_splits, class_presence, emit, subset_warnings
from eossl.evaluate.segmentation import (
    SEGMENT_SPLIT_HINT,
    evaluate_segmentation,
    k_subset,
    load_segment_chips,
    segment_backbone,
)
from eossl.evaluate.splits import window_block_split
from eossl.models.info import read_weights_info
from eossl.report.rows import ResultRow, SeedScores
from eossl.train.segmentation import train_segmentation

__all__ = ["run"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")


def run(cfg: EvaluateConfig, ctx: TaskContext) -> list[ResultRow]:
    """Rows of every model and baseline of ``cfg`` on the chips of ``cfg.segmentation``."""
    s = cfg.segmentation
    chips = load_segment_chips(s)
    models, backbones = _models(chips, cfg)
    splits = [(sd, *window_block_split(chips.bounds, s.block_size_m, cfg.test_fraction, sd, crs=chips.crs))
              for sd in range(cfg.seed, cfg.seed + cfg.seeds)]
    presence = class_presence(chips.labels, len(chips.classes))
    warnings = emit(check_splits(presence, splits, chips.classes, unit="windows", hint=SEGMENT_SPLIT_HINT) +
                    subset_warnings(presence, [(k, sd, k_subset(tr, k, sd)) for k in cfg.ks for sd, tr, _ in splits],
                                    chips.classes, unit="windows"))
    probes = pixel_probes(chips, splits, cfg.baselines, backbones, ctx.device)
    rows = []
    total = (len(models) + len(probes)) * len(cfg.ks) * cfg.seeds
    bar = tqdm(total=total, desc="evaluate segmentation", unit="fit", disable=not ctx.progress)
    for name, protocol, (backbone, norm), frozen in models:
        def fit(train, test, sd, backbone=backbone, norm=norm, frozen=frozen):
            model = train_segmentation(backbone, chips, train, norm=norm, epochs=s.epochs, lr=s.lr,
                                       batch_size=s.batch_size, freeze_backbone=frozen, seed=sd, device=ctx.device,
                                       progress=False)
            return evaluate_segmentation(model, chips, test, norm)
        rows += _segment_rows(name, protocol, fit, chips, splits, cfg.ks, bar)
    for name, fit in probes:
        rows += _segment_rows(name, "linear", fit, chips, splits, cfg.ks, bar)
    bar.close()
    data = {"n_chips": len(chips), "classes": chips.classes, "bands": chips.bands, "sensor": chips.sensor,
            "chip_size": int(chips.images.shape[-1]), "label_values": {str(k): v for k, v in chips.label_values.items()}}
    ctx.record(TaskNotes(what=f"{len(chips)} chips (per-pixel scores)", data=data, warnings=warnings,
                         splits=[{"seed": sd, "n_train": int(len(tr)), "n_test": int(len(te))} for sd, tr, te in splits]))
    return rows


def _models(chips: SegmentationChips, cfg: EvaluateConfig) -> tuple[list, list]:
    """The backbone rows ``(name, protocol, (backbone, Normalization), frozen)`` that ``cfg`` asks for, and the
    frozen backbones ``(name, (backbone, Normalization))`` whose features the fusion probes read (random-init
    first)."""
    models, backbones, arch = [], [], cfg.arch
    if cfg.weights is not None:
        pre = segment_backbone(chips, cfg.weights, arch, cfg.seed)
        info = read_weights_info(cfg.weights)
        name = f"pretrained {info.arch} {info.ssl_method}"
        models += [(name, "finetune", pre, False), (name, "frozen + decoder", pre, True)]
        arch = info.arch
        backbones.append((name, pre))
    rand = segment_backbone(chips, None, arch, cfg.seed)
    backbones.insert(0, (f"random-init {arch}", rand))
    if "random_init" in cfg.baselines:
        models.append((f"random-init {arch}", "frozen + decoder", rand, True))
    if "scratch" in cfg.baselines:
        models.append((f"from scratch {arch}", "finetune", rand, False))
    return models, backbones


def _segment_rows(name, protocol, fit, chips: SegmentationChips, splits, ks, bar) -> list[ResultRow]:
    """One row per k of ``fit(train, test, seed) -> metrics`` on every split; the last carries the metrics of
    every seed's test pixels pooled."""
    rows, pooled = [], None
    for ki, k in enumerate(ks):
        per_seed = []
        for sd, train, test in splits:
            sub = k_subset(train, k, sd)
            if len(sub) < 2:
                raise ValueError(f"k = {k} labelled chips leaves {len(sub)} to train on; segmentation needs 2")
            m = fit(sub, test, sd)
            per_seed.append(SeedScores(seed=sd, n_train=int(len(sub)),
                                       scores={"mean_iou": m["mean_iou"], **{sc: m[sc] for sc in _SCORES}}))
            if ki == len(ks) - 1:
                cm = np.asarray(m["confusion_matrix"])
                pooled = cm if pooled is None else pooled + cm
            bar.update(1)
        rows.append(ResultRow(name, protocol, "all" if k == "all" else str(k), per_seed,
                              summarise(per_seed, (*_SCORES, "mean_iou"))))
    rows[-1] = replace(rows[-1], metrics_all_seeds=metrics_from_confusion(pooled, chips.classes))
    return rows
