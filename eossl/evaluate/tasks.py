"""Crop-classification and segmentation runs for ``eossl evaluate`` / ``eossl finetune`` (the patch task lives in
:mod:`eossl.evaluate.patches`).

Every task returns rows in one shape, which the figures and tables read: ``{"model", "protocol", "k",
"per_seed": [{"seed", "n_train", scores...}], "overall_accuracy": {"mean", "ci95", "n"}, ...}``; the row at the
largest k also carries ``metrics_all_seeds`` (per-class metrics and the confusion matrix of every seed's test
predictions pooled).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from eossl.data.labelled.fields import load_fields
from eossl.data.labelled.rasters import SegmentationChips, load_segmentation_chips
from eossl.data.normalization import Normalization
from eossl.evaluate.baselines import RCF_FEATURES, rcf_maps, rcf_model
from eossl.evaluate.config import FieldsConfig, SegmentationConfig
from eossl.evaluate.crops import evaluate_crops
from eossl.evaluate.fewshot import fit_logreg
from eossl.evaluate.metrics import (
    classification_metrics,
    iou_from_confusion,
    mean_ci95,
    metrics_from_confusion,
)
from eossl.evaluate.sanity import check_splits, class_presence, emit, subset_warnings
from eossl.evaluate.segmentation import evaluate_segmentation, train_segmentation
from eossl.evaluate.splits import window_block_split
from eossl.models.backbones import feature_maps
from eossl.models.weights import backbone_for
from eossl.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["TASKS", "SEGMENT_SPLIT_HINT", "crop_rows", "evaluate_crop_task", "evaluate_segment_task", "k_subset",
           "load_segment_chips", "segment_backbone"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")
SEGMENT_SPLIT_HINT = ("use a smaller segmentation.block_size_m or test_fraction, or another seed, so that both sides "
                      "hold every class")


# ------------------------------------------------------------------------------------------- crops


def evaluate_crop_task(f: FieldsConfig, weights, arch: str, ks, seeds: int, seed: int, test_fraction: float,
                       C: float, baselines: list[str], device: str) -> dict:
    """Rows of :func:`evaluate_crops`; ``baselines`` picks random_init, band_statistics, rcf and fusion (there is
    no fine-tuning of field series, so no scratch row)."""
    index = f.scenes.open()
    series = load_fields(index, f.labels, f.class_column, chip_size=f.chip_size, gsd=f.gsd, bands=f.bands,
                         classes=f.classes, min_valid=f.min_valid, id_column=f.id_column, label_crs=f.label_crs)
    raw = evaluate_crops(series, weights=weights, arch=None if weights else arch, ks=tuple(ks), seeds=seeds,
                         seed=seed, block_size_m=f.block_size_m, test_fraction=test_fraction,
                         aggregation=tuple(f.aggregation), pool=f.pool, level=f.level,
                         attention_epochs=f.attention_epochs, C=C, device=device,
                         random_init="random_init" in baselines, band_stats="band_statistics" in baselines,
                         rcf="rcf" in baselines, fusion="fusion" in baselines)
    return {"settings": raw["settings"], "data": raw["data"], "splits": raw["splits"],
            "skipped_k": raw["skipped_k"], "results": crop_rows(raw), "warnings": raw["warnings"]}


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
            row = {"model": m["features"], "protocol": protocol, "k": k, "dim": m["dim"], "per_seed": per_seed,
                   **{sc: {key: scores[sc][key] for key in ("mean", "ci95", "n")} for sc in _SCORES}}
            if k == ks[-1]:
                row["metrics_all_seeds"] = m["metrics_all_seeds"]
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- segmentation


def load_segment_chips(s: SegmentationConfig) -> SegmentationChips:
    return load_segmentation_chips(s.scenes.open(), s.label_raster, chip_size=s.chip_size, gsd=s.gsd, bands=s.bands,
                                   classes=s.classes, label_nodata=s.label_nodata, stride=s.stride,
                                   min_labelled=s.min_labelled, label_crs=s.label_crs)


def segment_backbone(chips: SegmentationChips, weights, arch: str, seed: int):
    """(backbone, Normalization): exported weights adapted to the chips' bands, or a random ``arch`` (seeded)."""
    size = int(chips.images.shape[-1])
    return backbone_for(chips.bands, chips.sensor, size, weights=weights, arch=arch, seed=seed,
                        images=chips.images, valid=chips.valid)


def evaluate_segment_task(s: SegmentationConfig, weights, arch: str, ks, seeds: int, seed: int,
                          test_fraction: float, baselines: list[str], device: str, progress: bool) -> dict:
    """Rows: pretrained (fine-tuned, and frozen backbone + decoder), random-init frozen + decoder, from scratch,
    and per-pixel logistic regressions (:func:`_pixel_probes`: band values, RCF maps, band values + frozen
    features); k = labelled training chips ("all": every training chip of the split). Splits: whole spatial
    blocks of windows, per seed."""
    chips = load_segment_chips(s)
    models, backbones = [], []
    if weights is not None:
        pre = segment_backbone(chips, weights, arch, seed)
        name = f"pretrained {pre[0].weights_info.arch} {pre[0].weights_info.ssl_method}"
        models += [(name, "finetune", pre, False), (name, "frozen + decoder", pre, True)]
        arch = pre[0].weights_info.arch
        backbones.append((name, pre))
    rand = segment_backbone(chips, None, arch, seed)
    backbones.insert(0, (f"random-init {arch}", rand))
    if "random_init" in baselines:
        models.append((f"random-init {arch}", "frozen + decoder", rand, True))
    if "scratch" in baselines:
        models.append((f"from scratch {arch}", "finetune", rand, False))
    splits = [(sd, *window_block_split(chips.bounds, s.block_size_m, test_fraction, sd, crs=chips.crs))
              for sd in range(seed, seed + seeds)]
    presence = class_presence(chips.labels, len(chips.classes))
    warnings = emit(check_splits(presence, splits, chips.classes, unit="windows", hint=SEGMENT_SPLIT_HINT) +
                    subset_warnings(presence, [(k, sd, k_subset(tr, k, sd)) for k in ks for sd, tr, _ in splits],
                                    chips.classes, unit="windows"))
    probes = _pixel_probes(chips, splits, baselines, backbones, device)
    rows = []
    total = (len(models) + len(probes)) * len(ks) * seeds
    bar = tqdm(total=total, desc="evaluate segmentation", unit="fit", disable=not progress)
    for name, protocol, (backbone, norm), frozen in models:
        def fit(train, test, sd, backbone=backbone, norm=norm, frozen=frozen):
            model = train_segmentation(backbone, chips, train, norm=norm, epochs=s.epochs, lr=s.lr,
                                       batch_size=s.batch_size, freeze_backbone=frozen, seed=sd, device=device,
                                       progress=False)
            return evaluate_segmentation(model, chips, test, norm)
        rows += _segment_rows(name, protocol, fit, chips, splits, ks, bar)
    for name, fit in probes:
        rows += _segment_rows(name, "linear", fit, chips, splits, ks, bar)
    bar.close()
    data = {"n_chips": len(chips), "classes": chips.classes, "bands": chips.bands, "sensor": chips.sensor,
            "chip_size": int(chips.images.shape[-1]), "label_values": {str(k): v for k, v in chips.label_values.items()}}
    return {"data": data, "splits": [{"seed": sd, "n_train": int(len(tr)), "n_test": int(len(te))}
                                     for sd, tr, te in splits], "results": rows, "warnings": warnings}


def k_subset(train, k, seed: int) -> np.ndarray:
    """Sorted ``k`` training windows drawn from ``train`` with ``np.random.default_rng(seed)`` (``"all"``: all)."""
    train = np.asarray(train)
    return np.sort(train if k == "all" else np.random.default_rng(seed).permutation(train)[:int(k)])


def _segment_rows(name, protocol, fit, chips, splits, ks, bar) -> list[dict]:
    rows, pooled = [], None
    for ki, k in enumerate(ks):
        per_seed = []
        for sd, train, test in splits:
            sub = k_subset(train, k, sd)
            if len(sub) < 2:
                raise ValueError(f"k = {k} labelled chips leaves {len(sub)} to train on; segmentation needs 2")
            m = fit(sub, test, sd)
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


def _pixel_probes(chips: SegmentationChips, splits, baselines: list[str], backbones, device: str) -> list:
    """(name, fit(train, test, seed) -> metrics) of the per-pixel logistic-regression rows: band values
    (``band_statistics``); RCF response maps (``rcf``: 3 px filters drawn from each seed's training windows,
    zero-padded so every pixel has its 512 values); band values + a frozen backbone's last feature map upsampled
    bilinearly to the pixels (``fusion``: random-init and pretrained, ``backbones`` = [(name, (model, Normalization))])."""
    out = []
    if "band_statistics" in baselines:
        out.append(("band values per pixel", lambda tr, te, sd: _pixel_probe(chips, tr, te, sd, _band_values(chips))))
    if "rcf" in baselines:
        pools, models = {sd: train for sd, train, _ in splits}, {}

        def rcf(tr, te, sd):
            if sd not in models:
                models[sd] = rcf_model(chips.images, _catalog(chips), seed=sd, source_mask=chips.valid,
                                       source_index=pools[sd])
            return _pixel_probe(chips, tr, te, sd, _rcf_values(chips, models[sd], device))
        out.append((f"RCF {RCF_FEATURES} per pixel", rcf))
    if "fusion" in baselines:
        out += [(f"band values + {name}", lambda tr, te, sd, b=b: _pixel_probe(chips, tr, te, sd,
                                                                            _fused_values(chips, *b, device)))
                for name, b in backbones]
    return out


def _catalog(chips: SegmentationChips) -> Normalization:
    return Normalization.of_sensor(chips.sensor, chips.bands)


def _band_values(chips: SegmentationChips):
    return lambda idx: chips.images[idx]


def _rcf_values(chips: SegmentationChips, model, device: str):
    """chip indices -> (n, 512, H, W) RCF response maps, each position centred on its pixel."""
    norm = _catalog(chips)
    model = model.to(device)

    def maps(idx):
        with torch.no_grad():
            x = norm.apply(chips.images[idx], chips.valid[idx]).to(device)
            return rcf_maps(model, x, same_size=True).cpu().numpy()
    return maps


def _fused_values(chips: SegmentationChips, backbone, norm: Normalization, device: str):
    """chip indices -> (n, C + D, H, W): band values, then the backbone's last map upsampled to the pixels."""
    backbone = backbone.to(device).eval()
    h, w = chips.images.shape[-2:]

    def maps(idx):
        with torch.no_grad():
            f = feature_maps(backbone, norm.apply(chips.images[idx], chips.valid[idx]).to(device))
            if f.ndim == 3:                                      # ViT patch tokens (B, L, D) -> (B, D, g, g)
                b, length, d = f.shape
                g = math.isqrt(length)
                if g * g != length:
                    raise ValueError(f"cannot lay {length} patch tokens onto a square grid")
                f = f.transpose(1, 2).reshape(b, d, g, g)
            f = torch.nn.functional.interpolate(f.float(), size=(h, w), mode="bilinear", align_corners=False)
        return np.concatenate([chips.images[idx], f.cpu().numpy()], axis=1)
    return maps


def _pixel_probe(chips: SegmentationChips, train, test, seed: int, maps, max_pixels: int = 20000,
                 batch: int = 16, budget: int = 2 ** 26) -> dict:
    """Logistic regression on per-pixel features ``maps(idx)`` -> (n, F, H, W) of chips ``idx``: trained on up to
    ``max_pixels`` labelled pixels of the ``train`` chips (seeded draw), scored on every labelled pixel of the
    ``test`` chips. :func:`fit_logreg` returns predictions only, so test chips beyond ``budget`` feature values
    are predicted in chunks, each refitting the same (deterministic) model."""
    hw = chips.labels.shape[1] * chips.labels.shape[2]
    labelled = (chips.labels[train] >= 0) & chips.valid[train]
    keep = np.random.default_rng(seed).permutation(np.flatnonzero(labelled.ravel()))[:max_pixels]
    chip, pix = np.divmod(keep, hw)
    x = None
    for lo in range(0, len(train), batch):
        sel = np.flatnonzero((chip >= lo) & (chip < lo + batch))
        if sel.size:
            f = maps(train[lo:lo + batch])
            x = np.empty((keep.size, f.shape[1]), np.float32) if x is None else x
            x[sel] = f.reshape(f.shape[0], f.shape[1], hw)[chip[sel] - lo, :, pix[sel]]
    y = chips.labels[train].ravel()[keep]
    step = max(1, budget // (x.shape[1] * hw))
    truth, pred = [], []
    for lo in range(0, len(test), step):
        idx = test[lo:lo + step]
        lab = chips.labels[idx].ravel() >= 0
        f = np.concatenate([maps(idx[i:i + batch]) for i in range(0, len(idx), batch)])
        pred.append(fit_logreg(x, y, np.moveaxis(f, 1, -1).reshape(-1, x.shape[1])[lab])[0])
        truth.append(chips.labels[idx].ravel()[lab])
    m = classification_metrics(np.concatenate(truth), np.concatenate(pred), chips.classes)
    m["mean_iou"] = iou_from_confusion(m["confusion_matrix"])[1]
    return m


# ----------------------------------------------------------------------------------------------- the task registry

TASKS: Registry = Registry("evaluation task")
"""task name -> ``evaluate(cfg: EvaluateConfig, *, device, cache_dir, progress) -> (result, what)``: the rows of
``eossl evaluate`` for that task (``result["results"]``, settings, data, warnings) and a short description of
what was scored, for plot titles. ``EvaluateConfig.task`` names one."""


@TASKS.register("patch")
def _patch_task(cfg, *, device: str, cache_dir, progress: bool) -> tuple[dict, str]:
    from eossl.evaluate.patches import evaluate_chips

    chips = cfg.data.load()
    out = evaluate_chips(chips, cfg, cache_dir=cache_dir, device=device,
                         progress=progress)
    return out, f"{len(chips)} chips"


@TASKS.register("crop")
def _crop_task(cfg, *, device: str, cache_dir, progress: bool) -> tuple[dict, str]:
    out = evaluate_crop_task(cfg.fields, cfg.weights, cfg.arch, cfg.ks, cfg.seeds, cfg.seed, cfg.test_fraction,
                             cfg.C, cfg.baselines, device)
    return out, f"{out['data']['n_fields']} fields"


@TASKS.register("series")
def _series_task(cfg, *, device: str, cache_dir, progress: bool) -> tuple[dict, str]:
    from eossl.evaluate.series_eval import evaluate_series

    samples = cfg.series.load()
    encoder, name, kwargs, norm = None, "", dict(cfg.series.encoder), None
    if cfg.weights is not None:
        from eossl.catalog.sensors import load_sensor
        from eossl.models.temporal import encoder_kwargs, load_series_encoder, series_normalization

        sensor = load_sensor(samples.sensor)
        encoder = load_series_encoder(cfg.weights, sensor.wavelengths(samples.bands))
        kwargs = encoder_kwargs(encoder.weights_info)
        name = f"pixel transformer {encoder.weights_info.ssl_method}"
        norm = series_normalization(encoder, sensor, samples.bands)
    out = evaluate_series(samples, ks=cfg.ks, seeds=cfg.seeds, seed=cfg.seed, test_fraction=cfg.test_fraction,
                          block_size_m=cfg.series.block_size_m, min_per_class=cfg.series.min_per_class, C=cfg.C,
                          baselines=cfg.series.baselines, encoder_kwargs=kwargs, pretrained=encoder,
                          pretrained_name=name, pretrained_norm=norm, device=device, progress=progress)
    return out, f"{out['data']['n']} series"


@TASKS.register("segment")
def _segment_task(cfg, *, device: str, cache_dir, progress: bool) -> tuple[dict, str]:
    out = evaluate_segment_task(cfg.segmentation, cfg.weights, cfg.arch, cfg.ks, cfg.seeds, cfg.seed,
                                cfg.test_fraction, cfg.baselines, device, progress)
    return out, f"{out['data']['n_chips']} chips (per-pixel scores)"
