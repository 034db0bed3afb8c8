"""Few-label crop classification of field time series: pretrained vs random-init backbone vs band statistics vs
random convolutional features (RCF), and band statistics fused with each backbone's features, on identical
spatial-block splits.

>>> series = load_fields(index, "fields.gpkg", "crop")
>>> result = evaluate_crops(series, weights="runs/x/export", block_size_m=2000, ks=(1, 5, 10, "all"), seeds=5)
>>> print(crops_table(result)); json.dumps(result)

For each seed ``s`` in ``seed .. seed + seeds - 1``: one :func:`spatial_block_split` (seed ``s``), then for each
``k`` one :func:`few_label_subset` of it (seed ``s``); every method is trained on that subset and scored on the
whole test side. Scores are the mean and 95% CI (t-distribution) over seeds of overall accuracy and macro-F1.
Normalisation: pretrained weights use their ``weights.json`` statistics (an adapted band those of the band its
kernel came from); the random-init backbone and RCF use the sensor catalog's.

RCF (``rcf=True``): per seed, torchgeo's empirical RCF draws its filters from the valid dates of that seed's
training fields (never a test field); the response maps of every (field, date) chip are averaged over the
positions whose 3 px receptive field is at least half inside the field's valid pixels, then over the field's
valid dates -> (N, 512), logistic regression. Fusion (``fusion=True``): the band statistics concatenated with
the date-averaged features of the random-init and the pretrained backbone, logistic regression.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from eossl.catalog.sensors import load_sensor
from eossl.data.labelled.fields import FieldSeries
from eossl.data.normalization import Normalization
from eossl.data.radiometry import check_radiometry
from eossl.evaluate.baselines import RCF_FEATURES, rcf_model, rcf_pooled
from eossl.evaluate.fewshot import fit_logreg
from eossl.evaluate.metrics import classification_metrics, mean_ci95, metrics_from_confusion
from eossl.evaluate.sanity import check_splits, class_presence, emit
from eossl.evaluate.splits import check_block_split, few_label_subset, spatial_block_split
from eossl.evaluate.temporal import (
    date_positions,
    field_band_statistics,
    field_features,
    mean_over_dates,
    predict_attention,
    predict_ltae,
)
from eossl.models.backbones import is_vit
from eossl.models.weights import adapted_normalization, backbone_for, load_weights, read_weights_info
from eossl.train.heads import fit_attention, fit_ltae

log = logging.getLogger(__name__)

__all__ = ["AGGREGATIONS", "evaluate_crops", "backbone_for_series", "crops_table", "field_rcf"]

AGGREGATIONS = ("mean", "attention", "ltae")


def evaluate_crops(series: FieldSeries, *, weights: str | Path | None = None, arch: str | None = None,
                   ks=(1, 5, 10, "all"), seeds: int = 5, seed: int = 0, block_size_m: float = 2000.0,
                   test_fraction: float = 0.3, aggregation=("mean", "attention"), pool: str = "mean",
                   level: int | None = None, random_init: bool = True, band_stats: bool = True,
                   rcf: bool = False, fusion: bool = False, stats_over_dates: str = "concat",
                   attention_epochs: int = 150, C: float = 1.0, max_iter: int = 2000, batch_size: int = 64,
                   device: str = "cpu") -> dict:
    """Scores of every method per k (see the module docstring); a JSON-ready dict with ``settings``, ``data``,
    ``splits`` (per seed: sizes, smallest train-test centroid distance, test field ids), ``methods`` (name ->
    ``by_k`` -> metric -> ``{"mean", "ci95", "n", "values"}``, plus ``n_not_converged`` logistic-regression fits
    that hit ``max_iter``), ``skipped_k`` (k -> why: too few training fields of a class) and ``warnings`` about the
    splits (:func:`eossl.evaluate.sanity.check_splits`, which raises if a split leaves a class out of training).
    ``pool``/``level``: see :func:`eossl.evaluate.temporal.field_features` (``level`` None: the last feature map;
    ResNet stage 1 or 2 resolves fields much smaller than the chip)."""
    bad = [a for a in aggregation if a not in AGGREGATIONS]
    if bad or not aggregation:
        raise ValueError(f"unknown aggregation {bad}; choose from {', '.join(AGGREGATIONS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    bad_k = [k for k in ks if not (k is None or k == "all" or (isinstance(k, int) and not isinstance(k, bool)
                                                                and k >= 1))]
    if bad_k or not ks:
        raise ValueError(f"ks must hold positive integers, 'all' or None; got {list(ks)}")
    splits, checks = [], []
    for s in range(seed, seed + seeds):
        train, test = spatial_block_split(series.centroids, block_size_m, test_fraction, s, series.labels)
        splits.append((s, train, test))
        checks.append({"seed": s, **check_block_split(series.centroids, train, test, block_size_m),
                       "test_ids": [series.field_ids[i] for i in test]})
    warnings = emit(check_splits(class_presence(series.labels, len(series.classes)), splits, series.classes,
                                 unit="fields", hint="use a smaller fields.block_size_m or test_fraction, or "
                                                     "another seed"))
    subsets, skipped = _subsets(series, splits, ks)          # logs each skipped k
    warnings += [{"code": "k_skipped", "message": f"k = {k} skipped: {why}", "k": k} for k, why in skipped.items()]
    extract = dict(pool=pool, level=level, batch_size=batch_size, device=device)
    feature_sets, arch = _feature_sets(series, weights, arch, dict(random_init=random_init, band_stats=band_stats,
                                                                   rcf=rcf, fusion=fusion), stats_over_dates,
                                       seed, extract)
    fit = dict(positions=date_positions(series.dates), epochs=attention_epochs, C=C, max_iter=max_iter)
    methods = _score_methods(series, feature_sets, aggregation, subsets, splits, fit)
    settings = dict(weights=None if weights is None else str(weights), arch=arch, level=level,
                    ks=[str(k) for k in ks], seeds=seeds, seed=seed, block_size_m=block_size_m,
                    test_fraction=test_fraction, aggregation=list(aggregation), pool=pool,
                    baselines={"random_init": random_init, "band_statistics": band_stats, "rcf": rcf,
                               "fusion": fusion},
                    stats_over_dates=stats_over_dates, attention_epochs=attention_epochs, C=C, max_iter=max_iter)
    return {"settings": settings, "data": series.describe(), "splits": checks, "methods": methods,
            "skipped_k": skipped, "warnings": warnings}


def _score_methods(series: FieldSeries, feature_sets: list[dict], aggregation, subsets: dict, splits,
                   fit: dict) -> dict:
    """Method name -> its description, ``by_k`` -> metric -> mean, CI and per-seed values, and the metrics of all
    seeds' test predictions pooled (``metrics_all_seeds``: per class, confusion matrix) at the last k.
    A ``"split"`` feature set is computed once per seed from that seed's whole training side (``splits``)."""
    methods = {}
    for fs in feature_sets:
        if fs["kind"] == "split":
            by_seed = {s: fs["x"](train, s) for s, train, _ in splits}
            fs = {**fs, "kind": "static", "x": None, "by_seed": by_seed}
        for agg in (("logreg",) if fs["kind"] == "static" else aggregation):
            scores = {}
            for k, per_seed in subsets.items():
                runs = [_run(fs, agg, series, train, test, s, **fit) for s, train, test in per_seed]
                scores[str(k)] = {m: {**mean_ci95([r[m] for r in runs]), "values": [r[m] for r in runs]}
                                  for m in ("overall_accuracy", "macro_f1", "kappa")}
                scores[str(k)]["n_not_converged"] = sum(not r["converged"] for r in runs)
                scores[str(k)]["n_train"] = [int(len(train)) for _, train, _ in per_seed]
            pooled = metrics_from_confusion(np.sum([r["confusion_matrix"] for r in runs], axis=0), series.classes)
            name = f"{fs['name']} + {'mean/logreg' if agg == 'mean' else agg}"
            methods[name] = {"features": fs["name"], "aggregation": agg, "dim": fs["dim"],
                             "normalization": fs["normalization"], "by_k": scores, "metrics_all_seeds": pooled}
            log.info("%s: %s", name, {k: round(v["overall_accuracy"]["mean"], 3) for k, v in scores.items()})
    return methods


def _subsets(series: FieldSeries, splits, ks) -> tuple[dict, dict]:
    """k -> [(seed, train subset, test)] for the feasible ks; infeasible k -> the reason."""
    subsets, skipped = {}, {}
    for k in ks:
        try:
            subsets[k] = [(s, few_label_subset(train, series.labels, k, s, series.classes), test)
                          for s, train, test in splits]
        except ValueError as err:
            if not isinstance(k, int):
                raise
            skipped[str(k)] = str(err)
            log.warning("k = %s skipped: %s", k, err)
    if not subsets:
        raise ValueError(f"no k in {list(ks)} is feasible on these splits: {skipped}")
    return subsets, skipped


def _run(fs: dict, agg: str, series: FieldSeries, train, test, s: int, *, positions, epochs: int, C: float,
         max_iter: int) -> dict:
    """Train one method on ``train`` and score it on ``test`` -> classification_metrics dict."""
    y = series.labels
    if np.unique(y[train]).size < 2:
        raise ValueError(f"seed {s}: the training fields hold a single class; use more fields or larger k")
    if agg == "attention":
        feats, valid = fs["x"]
        model = fit_attention(feats[train], valid[train], y[train], positions, len(series.classes), seed=s,
                              epochs=epochs)
        pred, converged = predict_attention(model, feats[test], valid[test], positions), True
    elif agg == "ltae":
        feats, valid = fs["x"]
        model = fit_ltae(feats[train], valid[train], y[train], len(series.classes), seed=s, epochs=epochs)
        pred, converged = predict_ltae(model, feats[test], valid[test]), True
    else:
        x = fs["by_seed"][s] if "by_seed" in fs else fs["x"] if fs["kind"] == "static" else mean_over_dates(*fs["x"])
        pred, converged = fit_logreg(x[train], y[train], x[test], C, max_iter)
    return {**classification_metrics(y[test], pred, series.classes), "converged": converged}


def _feature_sets(series: FieldSeries, weights, arch, use: dict, over_dates, seed, extract: dict
                  ) -> tuple[list[dict], str]:
    """Band statistics (N, F), random-init and pretrained backbone features ((N, T, D), (N, T)), RCF (a function
    of a seed's training fields) and fusion rows (N, F + D), as ``use`` selects; the arch."""
    out, backbones = [], []
    stats = field_band_statistics(series, over_dates=over_dates) if use["band_stats"] or use["fusion"] else None
    if use["band_stats"]:
        out.append({"name": "band statistics", "kind": "static", "x": stats, "dim": stats.shape[1],
                    "normalization": "none"})
    loaded, used, norm = backbone_for_series(series, weights, arch) if weights is not None else (None, series, None)
    arch = loaded.info.arch if loaded is not None else arch or "resnet18"
    if use["random_init"] or use["fusion"]:
        rand, catalog = backbone_for(used.bands, series.sensor, int(series.images.shape[-1]), arch=arch, seed=seed)
        x = field_features(rand, used, catalog, **extract)
        backbones.append({"name": f"random-init {arch}", "kind": "temporal", "x": x, "dim": x[0].shape[-1],
                          "normalization": f"sensor catalog ({series.sensor})"})
    if loaded is not None:
        x = field_features(loaded.model, used, norm, **extract)
        backbones.append({"name": f"pretrained {arch} {loaded.info.ssl_method}", "kind": "temporal", "x": x,
                          "dim": x[0].shape[-1], "normalization": "weights.json"})
    out += [b for b in backbones if use["random_init"] or b["name"].startswith("pretrained")]
    if use["rcf"]:
        out.append({"name": f"RCF {RCF_FEATURES}", "kind": "split", "dim": RCF_FEATURES,
                    "x": lambda train, s: field_rcf(series, train, s, extract["device"]),
                    "normalization": f"sensor catalog ({series.sensor})"})
    if use["fusion"]:
        out += [{"name": f"band stats + {b['name']}", "kind": "static", "dim": stats.shape[1] + b["dim"],
                 "x": np.hstack([stats, mean_over_dates(*b["x"])]), "normalization": f"none + {b['normalization']}"}
                for b in backbones]
    if not out:
        raise ValueError("nothing to evaluate: give weights, or enable a baseline (baselines: random_init, "
                         "band_statistics, rcf or fusion)")
    return out, arch


def field_rcf(series: FieldSeries, train, seed: int, device: str = "cpu") -> np.ndarray:
    """(N, 512) RCF features of every field: filters drawn (seed ``seed``) from the valid dates of the ``train``
    fields only; per (field, date) chip the response maps are averaged over the field's valid pixels
    (:func:`eossl.evaluate.baselines.rcf_pooled`), then over the field's valid dates. Sensor catalog statistics."""
    n, t, c, h, w = series.images.shape
    flat, valid = series.images.reshape(n * t, c, h, w), series.valid.reshape(n * t, h, w)
    is_train = np.zeros(n, bool)
    is_train[np.asarray(train, dtype=np.int64)] = True
    source = np.flatnonzero(np.repeat(is_train, t) & series.date_valid.reshape(-1))
    if source.size == 0:
        raise ValueError("RCF: the training fields have no valid date to draw filters from")
    catalog = Normalization.of_sensor(series.sensor, series.bands)
    model = rcf_model(flat, catalog, seed=seed, source_mask=valid, source_index=source)
    cover = (series.field_mask[:, None] & series.valid).reshape(n * t, h, w)
    feats = rcf_pooled(model, flat, catalog, valid, weights=cover, device=device).reshape(n, t, -1)
    return mean_over_dates(feats, series.date_valid)


def backbone_for_series(series: FieldSeries, weights: str | Path, arch: str | None = None):
    """Exported weights made ready for ``series``: ``(LoadedWeights (the plain timm model, its info and band
    matches), series with the bands the model takes, in its input order, its Normalization)``. When the data holds
    every band of the weights, those bands are picked by name (in the weights' order); else the stem is adapted to
    the data's bands by name and wavelength (:func:`eossl.models.weights.load_weights`; an error names a band
    without a counterpart). The statistics
    come from ``weights.json`` (an adapted band takes those of the band its kernel came from)."""
    info = read_weights_info(weights)
    if arch is not None and arch != info.arch:
        raise ValueError(f"arch {arch!r} differs from the weights' architecture {info.arch!r}; the random-init "
                         f"baseline must use the same architecture (leave arch unset)")
    size = int(series.images.shape[-1])
    if is_vit(info.arch) and info.img_size != size:
        raise ValueError(f"{weights}: a {info.arch} trained on {info.img_size} px images cannot take {size} px chips; "
                         f"load the fields with chip_size={info.img_size}")
    if set(info.bands) <= set(series.bands):
        idx = [series.bands.index(b) for b in info.bands]
        used = replace(series, images=series.images[:, :, idx], bands=list(info.bands))
        loaded = load_weights(weights, img_size=size, pool="last")
    else:
        missing = sorted(set(info.bands) - set(series.bands))
        log.info("the data lacks bands %s of %s: adapting the stem to the data's bands", missing, weights)
        used = series
        wavelengths = load_sensor(series.sensor).wavelengths(series.bands)
        loaded = load_weights(weights, bands=list(zip(series.bands, wavelengths)), img_size=size, pool="last")
    norm = adapted_normalization(loaded, list(used.bands), series.sensor)
    check_radiometry(series.images, series.valid, series.bands, series.sensor, f"fields for {weights}")
    norm.check(used.images, used.valid, f"fields for {weights}")
    return loaded, used, norm


def crops_table(result: dict, metric: str = "overall_accuracy") -> str:
    """A text table of ``metric`` (mean ± 95% CI, in %) per method and k."""
    ks = list(next(iter(result["methods"].values()))["by_k"])
    width = max(len(n) for n in result["methods"])
    d = result["data"]
    lines = [f"{d['n_fields']} fields, {len(d['classes'])} classes, {len(d['dates'])} dates; {metric}, "
             f"{result['settings']['seeds']} seeds, blocks of {result['settings']['block_size_m']:g} m",
             f"{'method':<{width}}  " + "  ".join(f"{'k=' + k:>14}" for k in ks)]
    for name, m in result["methods"].items():
        cells = []
        for k in ks:
            v = m["by_k"][k][metric]
            ci = "n/a" if v["ci95"] is None else f"{100 * v['ci95']:.1f}"
            cells.append(f"{100 * v['mean']:6.1f} ± {ci:>5}")
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)
