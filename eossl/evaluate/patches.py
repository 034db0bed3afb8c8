"""Few-label evaluation of exported weights on labelled chips, always beside the baselines, on identical splits.

Rows (model x protocol), each scored at every k of :func:`few_label_splits` and every seed:

* pretrained weights: linear probe, kNN (frozen features, extracted once and cached) and full fine-tuning;
* the same architecture randomly initialised: linear probe and kNN on its frozen features;
* per-band statistics (mean, std, percentiles per band) with the linear probe;
* random convolutional features (``rcf``: MOSAIKS, torchgeo's ``RCF``, 512 features of 3 px filters) with the
  linear probe; the filters are drawn from the training pool (every non-test chip) of each seed, never from its
  test chips, and the chips are standardised with the sensor catalog's statistics, as for the random-init row;
* fusion (``fusion``): the band statistics concatenated with the frozen features of the pretrained and of the
  random-init model, linear probe (does the model add anything to the spectrum?);
* supervised training from scratch: the fine-tuning protocol from a random init, at the same label budget.

The result is a JSON-ready dict: per row and k, the feature dimension (``dim``, frozen-feature rows), the
per-seed overall accuracy / macro-F1 / kappa and their mean and 95% CI, plus full metrics (per-class, confusion
matrix over all seeds' test predictions) of every row at the largest k, and ``warnings`` about the splits (classes
absent from a test side, too few test chips; :mod:`eossl.evaluate.sanity`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eossl.config import to_dict
from eossl.data.labelled.folders import LabelledChips
from eossl.data.normalization import Normalization
from eossl.data.radiometry import check_radiometry
from eossl.evaluate.baselines import RCF_FEATURES, band_statistics, rcf_features
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.features import extract_features
from eossl.evaluate.fewshot import FewLabelSplit, few_label_splits, knn_predict, linear_probe
from eossl.evaluate.finetuning import finetune_classifier, predict_chips
from eossl.evaluate.metrics import classification_metrics, mean_ci95
from eossl.evaluate.sanity import check_splits, class_presence, emit
from eossl.models.backbones import is_vit
from eossl.models.weights import WEIGHTS_FILE, backbone_for, read_weights_info
from eossl.runs import atomic_write

log = logging.getLogger(__name__)

__all__ = ["evaluate_chips"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")
_SETTINGS = ("ks", "seeds", "seed", "test_fraction", "protocols", "baselines", "pool", "C", "knn_neighbors", "finetune")


def evaluate_chips(chips: LabelledChips, cfg: EvaluateConfig, cache_dir: str | Path | None = None,
                   device: str = "cpu", progress: bool = True) -> dict:
    """The rows of ``cfg`` (an :class:`~eossl.evaluate.config.EvaluateConfig`: ``weights``, protocols,
    baselines, ks, seeds, pool...) on ``chips``; ``device`` for features and fine-tuning."""
    if not chips.sensor:
        raise ValueError("the chips name no sensor, so band wavelengths and normalisation are unknown; load them "
                         "with load_class_folders(..., sensor=...)")
    weights = cfg.weights
    s = replace(cfg, pool=cfg.resolved_pool())
    info = read_weights_info(weights) if weights is not None else None
    arch = info.arch if info is not None else s.arch
    img = int(chips.images.shape[-1])
    if info is not None and is_vit(arch) and info.img_size != img:
        raise ValueError(f"{weights}: a {arch} trained on {info.img_size} px images cannot take {img} px chips")
    splits = few_label_splits(chips.labels, s.ks, s.seeds, s.test_fraction, s.seed, chips.classes)
    warnings = emit(check_splits(class_presence(chips.labels, len(chips.classes)),
                                 [(sp.seed, sp.pool, sp.test) for sp in splits], chips.classes, unit="chips",
                                 hint="add chips of the classes named or change test_fraction"))
    if info is None:  # with weights, backbone_for checks the chips (normalisation, then physical range)
        check_radiometry(chips.images, chips.mask, chips.bands, chips.sensor, "evaluation chips")
    rows = _rows(chips, weights, info, arch, s, cache_dir, device)
    if not rows:
        raise ValueError("nothing to evaluate: give weights or at least one baseline")

    results = []
    bar = tqdm(total=len(rows) * len(splits) * len(s.ks), desc="evaluate", unit="fit", disable=not progress)
    for model_name, protocol, what in rows:
        per_k = {k: [] for k in splits[0].train}
        preds_top = []
        for split in splits:
            x = what(split) if callable(what) else what           # split-dependent features (RCF) per seed
            for k, train in split.train.items():
                pred = _predict(protocol, x, chips, train, split.test, s, split.seed, device)
                m = classification_metrics(chips.labels[split.test], pred, chips.classes)
                per_k[k].append({"seed": split.seed, "n_train": int(train.size),
                                 **{sc: m[sc] for sc in _SCORES}})
                if k == list(split.train)[-1]:
                    preds_top.append((split.test, pred))
                bar.update(1)
        dim = {"dim": int(x.shape[1])} if isinstance(x, np.ndarray) else {}     # frozen-feature rows
        for k, per_seed in per_k.items():
            results.append({"model": model_name, "protocol": protocol, "k": k, **dim, "per_seed": per_seed,
                            **{sc: mean_ci95([r[sc] for r in per_seed]) for sc in _SCORES}})
            log.info("%s / %s / k=%s: OA %.1f%% ± %.1f", model_name, protocol, k,
                     100 * results[-1]["overall_accuracy"]["mean"],
                     100 * (results[-1]["overall_accuracy"]["ci95"] or 0))
        y = np.concatenate([chips.labels[t] for t, _ in preds_top])
        p = np.concatenate([q for _, q in preds_top])
        results[-1]["metrics_all_seeds"] = classification_metrics(y, p, chips.classes)
    bar.close()
    settings = {k: to_dict(getattr(s, k)) for k in _SETTINGS}
    settings.update(weights=None if weights is None else str(weights), arch=arch)
    if "rcf" in s.baselines:
        settings["rcf"] = {"features": RCF_FEATURES, "kernel_size": 3, "filters_from": "training pool of each seed",
                           "normalization": f"sensor catalog ({chips.sensor})"}
    data = {"n": len(chips), "classes": chips.classes, "bands": chips.bands, "sensor": chips.sensor,
            "class_counts": np.bincount(chips.labels, minlength=len(chips.classes)).tolist()}
    return {"settings": settings, "data": data, "results": results, "warnings": warnings}


def _rows(chips: LabelledChips, weights, info, arch: str, s: EvaluateConfig, cache_dir, device) -> list:
    """(model, protocol, what) per row; ``what``: (N, D) features, a function of the split giving them (RCF),
    or ``(backbone factory, Normalization)`` for fine-tuning."""
    img = int(chips.images.shape[-1])
    catalog = Normalization.of_sensor(chips.sensor, chips.bands)

    def random_backbone():
        return backbone_for(chips.bands, chips.sensor, img, arch=arch, seed=s.seed)[0]

    rows, fused = [], []
    stats = band_statistics(chips.images, chips.mask) if {"band_statistics", "fusion"} & set(s.baselines) else None
    if info is not None:
        pretrained, norm = backbone_for(chips.bands, chips.sensor, img, weights=weights, images=chips.images,
                                        valid=chips.mask)
        name = f"pretrained {arch} {info.ssl_method}"
        key = _file_digest(Path(weights) / WEIGHTS_FILE)
        feats = _cached(cache_dir, f"{name}-{s.pool}-{key}", chips,
                        lambda: extract_features(pretrained, chips.images, norm, pool=s.pool, device=device))
        rows += [(name, p, feats) for p in ("linear", "knn") if p in s.protocols]
        if "finetune" in s.protocols:
            rows.append((name, "finetune", (lambda: copy.deepcopy(pretrained), norm)))
        fused.append((name, feats))
    if {"random_init", "fusion"} & set(s.baselines):
        feats = extract_features(random_backbone(), chips.images, catalog, pool=s.pool, device=device)
        if "random_init" in s.baselines:
            rows += [(f"random-init {arch}", p, feats) for p in ("linear", "knn") if p in s.protocols]
        fused.append((f"random-init {arch}", feats))
    if "band_statistics" in s.baselines:
        rows.append(("band statistics", "linear", stats))
    if "rcf" in s.baselines:
        def rcf(split: FewLabelSplit) -> np.ndarray:
            return rcf_features(chips.images, chips.images, catalog, seed=split.seed, mask=chips.mask,
                                source_mask=chips.mask, source_index=split.pool, device=device)
        rows.append((f"RCF {RCF_FEATURES}", "linear", rcf))
    if "fusion" in s.baselines:
        rows += [(f"band stats + {name}", "linear", np.hstack([stats, feats])) for name, feats in fused]
    if "scratch" in s.baselines:
        rows.append((f"from scratch {arch}", "finetune", (random_backbone, catalog)))
    return rows


def _predict(protocol, what, chips, train, test, s: EvaluateConfig, seed: int, device) -> np.ndarray:
    y = chips.labels
    if protocol == "linear":
        return linear_probe(what[train], y[train], what[test], C=s.C)
    if protocol == "knn":
        return knn_predict(what[train], y[train], what[test], s.knn_neighbors)
    make, norm = what
    model = finetune_classifier(make(), chips.images, y, train, len(chips.classes), norm, s.finetune,
                                seed=seed, device=device)
    return predict_chips(model, chips.images[test], norm, device=device).argmax(1)


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _cached(cache_dir, name: str, chips: LabelledChips, compute) -> np.ndarray:
    """Frozen features, computed once per (weights, pool, chips) and kept in ``cache_dir`` as .npy."""
    if cache_dir is None:
        return compute()
    chips_key = hashlib.sha1(np.ascontiguousarray(chips.images).tobytes()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = Path(cache_dir) / f"{safe}-{chips_key}.npy"
    if path.is_file():
        log.info("features from cache %s", path)
        return np.load(path)
    feats = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.save(tmp, feats))
    return feats
