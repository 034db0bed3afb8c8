"""Few-label evaluation of exported weights on labelled chips, always beside the baselines, on identical splits.

Rows (model x protocol), each scored at every k of :func:`few_label_splits` and every seed:

* pretrained weights: linear probe, kNN (frozen features, extracted once and cached) and full fine-tuning; with
  ``compare_weights`` (``eossl evaluate --weights A B C``) the same rows for each further set, named by its
  weights (shipped name, import source or run folder) and in its recorded pool, paired with the first;
* the same architecture randomly initialised: linear probe and kNN on its frozen features;
* per-band statistics (mean, std, percentiles per band) with the linear probe;
* random convolutional features (``rcf``: MOSAIKS, torchgeo's ``RCF``, 512 features of 3 px filters) with the
  linear probe; the filters are drawn from the training pool (every non-test chip) of each seed, never from its
  test chips, and the chips are standardised with the sensor catalog's statistics, as for the random-init row;
* fusion (``fusion``): the band statistics concatenated with the frozen features of the pretrained and of the
  random-init model, linear probe (does the model add anything to the spectrum?);
* supervised training from scratch: the fine-tuning protocol from a random init, at the same label budget.

The result is a list of :class:`~eossl.report.rows.ResultRow`: per row and k, the feature dimension (``dim``,
frozen-feature rows), the per-seed overall accuracy / macro-F1 / kappa and their mean and 95% CI, plus full metrics
(per-class, confusion matrix over all seeds' test predictions) of every row at the largest k; beside them
(:class:`~eossl.evaluate.context.TaskNotes`) ``warnings`` about the splits (classes absent from a test side, too
few test chips; :mod:`eossl.evaluate.sanity`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eossl.config import to_dict
from eossl.data.labelled.folders import LabelledChips
from eossl.data.normalization import Normalization
from eossl.data.radiometry import check_radiometry
from eossl.evaluate.baselines import RCF_FEATURES, band_statistics, rcf_features
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskNotes
from eossl.evaluate.features import extract_features
from eossl.evaluate.fewshot import FewLabelSplit, few_label_splits, knn_predict, linear_probe
from eossl.evaluate.finetuning import predict_chips
from eossl.evaluate.metrics import classification_metrics, summarise
from eossl.evaluate.sanity import check_splits, class_presence, emit
from eossl.models.backbones import is_vit
from eossl.models.weights import WEIGHTS_FILE, backbone_for, read_weights_info
from eossl.report.rows import ResultRow, SeedScores
from eossl.runs import atomic_write
from eossl.train.logreg import choose_C
from eossl.train.supervised import finetune_classifier

log = logging.getLogger(__name__)

__all__ = ["evaluate_chips"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")
_SETTINGS = ("ks", "seeds", "seed", "test_fraction", "protocols", "baselines", "pool", "C", "C_grid", "knn_neighbors",
             "finetune")


def evaluate_chips(chips: LabelledChips, cfg: EvaluateConfig, cache_dir: str | Path | None = None,
                   device: str = "cpu", progress: bool = True) -> tuple[list[ResultRow], TaskNotes]:
    """The rows of ``cfg`` (an :class:`~eossl.evaluate.config.EvaluateConfig`: ``weights``, protocols,
    baselines, ks, seeds, pool...) on ``chips``, and the notes beside them (settings, data, warnings);
    ``device`` for features and fine-tuning."""
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
    entries = _entries(chips, weights, info, arch, s, cache_dir, device, user_pool=cfg.pool)
    if not entries:
        raise ValueError("nothing to evaluate: give weights or at least one baseline")
    bar = tqdm(total=len(entries) * len(splits) * len(s.ks), desc="evaluate", unit="fit", disable=not progress)
    results = [row for entry in entries for row in _score(entry, chips, splits, bar)]
    bar.close()
    settings = {k: to_dict(getattr(s, k)) for k in _SETTINGS}
    settings.update(weights=None if weights is None else str(weights), arch=arch,
                    compare_weights=[str(w) for w in getattr(s, "compare_weights", [])])
    if "rcf" in s.baselines:
        settings["rcf"] = {"features": RCF_FEATURES, "kernel_size": 3, "filters_from": "training pool of each seed",
                           "normalization": f"sensor catalog ({chips.sensor})"}
    data = {"n": len(chips), "classes": chips.classes, "bands": chips.bands, "sensor": chips.sensor,
            "class_counts": np.bincount(chips.labels, minlength=len(chips.classes)).tolist()}
    return results, TaskNotes(what=f"{len(chips)} chips", settings=settings, data=data, warnings=warnings)


@dataclass(frozen=True)
class _Entry:
    """One (model, protocol) before scoring: ``prepare(split)`` gives ``predict(train) -> predictions on
    split.test`` (features that depend on the split, RCF, are computed once per split there)."""

    model: str
    protocol: str                                                       # linear, knn or finetune
    prepare: Callable[[FewLabelSplit], Callable[[np.ndarray], np.ndarray]]
    dim: int | None = None                                              # frozen-feature rows: feature dimension


def _score(entry: _Entry, chips: LabelledChips, splits: list[FewLabelSplit], bar) -> list[ResultRow]:
    """The entry's rows, one per k, scored on every split; the last carries the metrics of all seeds pooled."""
    per_k = {k: [] for k in splits[0].train}
    preds_top = []
    for split in splits:
        predict = entry.prepare(split)
        for k, train in split.train.items():
            pred = predict(train)
            m = classification_metrics(chips.labels[split.test], pred, chips.classes)
            per_k[k].append(SeedScores(seed=split.seed, n_train=int(train.size), scores={sc: m[sc] for sc in _SCORES}))
            if k == list(split.train)[-1]:
                preds_top.append((split.test, pred))
            bar.update(1)
    rows = []
    for k, per_seed in per_k.items():
        rows.append(ResultRow(entry.model, entry.protocol, k, per_seed, summarise(per_seed, _SCORES), dim=entry.dim))
        oa = rows[-1].score("overall_accuracy")
        log.info("%s / %s / k=%s: OA %.1f%% ± %.1f", entry.model, entry.protocol, k, 100 * oa.mean,
                 100 * (oa.ci95 or 0))
    y = np.concatenate([chips.labels[t] for t, _ in preds_top])
    p = np.concatenate([q for _, q in preds_top])
    rows[-1] = replace(rows[-1], metrics_all_seeds=classification_metrics(y, p, chips.classes))
    return rows


def _entries(chips: LabelledChips, weights, info, arch: str, s: EvaluateConfig, cache_dir, device,
             user_pool: str | None = None) -> list[_Entry]:
    """The rows to score, in table order (see the module docstring); ``user_pool``: the pool the config named
    (null: each weights' recorded pool)."""
    img = int(chips.images.shape[-1])
    catalog = Normalization.of_sensor(chips.sensor, chips.bands)

    def frozen(model, protocol, features) -> _Entry:
        return _Entry(model, protocol, lambda split: _frozen(protocol, features, chips, split, s),
                      int(features.shape[1]))

    def tuned(model, make, norm) -> _Entry:
        return _Entry(model, "finetune", lambda split: _finetuned(make, norm, chips, split, s, device))

    def random_backbone():
        return backbone_for(chips.bands, chips.sensor, img, arch=arch, seed=s.seed)[0]

    out, fused = [], []
    stats = band_statistics(chips.images, chips.mask) if {"band_statistics", "fusion"} & set(s.baselines) else None
    compared = list(getattr(s, "compare_weights", []) or [])
    every = [weights, *compared] if info is not None else []
    labels = [_weights_label(w) for w in every]
    if len(set(labels)) < len(labels):          # two runs' folders of one name: the paths tell them apart
        labels = [str(w) for w in every]
    for i, w in enumerate(every):
        w_info = info if i == 0 else read_weights_info(w)
        pretrained, norm = backbone_for(chips.bands, chips.sensor, img, weights=w, images=chips.images,
                                        valid=chips.mask)
        # several weights: each row names its weights; the first keeps "pretrained", so paired differences are
        # the first minus each of the others (and minus each baseline)
        label = f"{w_info.arch} {w_info.ssl_method}" + (f" ({labels[i]})" if compared else "")
        name = f"pretrained {label}" if i == 0 else label
        pool = s.pool if i == 0 or user_pool is not None else w_info.feature_pool    # each its recorded pool
        key = _file_digest(Path(w) / WEIGHTS_FILE)
        feats = _cached(cache_dir, f"{name}-{pool}-{key}", chips,
                        lambda m=pretrained, n=norm, q=pool: extract_features(m, chips.images, n, pool=q, device=device))
        out += [frozen(name, p, feats) for p in ("linear", "knn") if p in s.protocols]
        if "finetune" in s.protocols:
            out.append(tuned(name, lambda m=pretrained: copy.deepcopy(m), norm))
        if i == 0:
            fused.append((name, feats))
    if {"random_init", "fusion"} & set(s.baselines):
        feats = extract_features(random_backbone(), chips.images, catalog, pool=s.pool, device=device)
        if "random_init" in s.baselines:
            out += [frozen(f"random-init {arch}", p, feats) for p in ("linear", "knn") if p in s.protocols]
        fused.append((f"random-init {arch}", feats))
    if "band_statistics" in s.baselines:
        out.append(frozen("band statistics", "linear", stats))
    if "rcf" in s.baselines:
        out.append(_Entry(f"RCF {RCF_FEATURES}", "linear", lambda split: _frozen(
            "linear", _rcf(chips, catalog, split, device), chips, split, s), RCF_FEATURES))
    if "fusion" in s.baselines:
        out += [frozen(f"band stats + {name}", "linear", np.hstack([stats, feats])) for name, feats in fused]
    if "scratch" in s.baselines:
        out.append(tuned(f"from scratch {arch}", random_backbone, catalog))
    return out


def _weights_label(w) -> str:
    """How a row names its weights: eossl's shipped name, the import source, or the folder (its run's name)."""
    extra = read_weights_info(w).extra or {}
    shipped = (extra.get("shipped") or {}).get("name")
    if shipped:
        return shipped
    if str(extra.get("source", "")).startswith("torchgeo:"):
        return str(extra["source"])
    p = Path(w)
    return f"{p.parent.name}/{p.name}" if p.name == "weights" else p.name


def _rcf(chips: LabelledChips, catalog: Normalization, split: FewLabelSplit, device) -> np.ndarray:
    """(N, 512) RCF features, the filters drawn from the split's training pool."""
    return rcf_features(chips.images, chips.images, catalog, seed=split.seed, mask=chips.mask,
                        source_mask=chips.mask, source_index=split.pool, device=device)


def _frozen(protocol: str, x: np.ndarray, chips: LabelledChips, split: FewLabelSplit, s: EvaluateConfig):
    """train -> predictions of the linear probe or kNN on frozen features ``x`` (N, D)."""
    y = chips.labels
    if protocol == "linear":
        def probe(train):
            C = choose_C(x[train], y[train], s.C_grid, split.seed) if s.C_grid else s.C
            return linear_probe(x[train], y[train], x[split.test], C=C)
        return probe
    return lambda train: knn_predict(x[train], y[train], x[split.test], s.knn_neighbors)


def _finetuned(make, norm: Normalization, chips: LabelledChips, split: FewLabelSplit, s: EvaluateConfig, device):
    """train -> predictions of a backbone from ``make()`` fine-tuned on ``train`` (seeded by the split)."""
    def predict(train):
        model = finetune_classifier(make(), chips.images, chips.labels, train, len(chips.classes), norm, s.finetune,
                                    seed=split.seed, device=device)
        return predict_chips(model, chips.images[split.test], norm, device=device).argmax(1)
    return predict


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
