"""``task: series``: few-label crop-type classification of per-sample time series beside honest baselines.

Splits: per seed, whole spatial blocks go to the test side (``block_column`` of the table, e.g. an H3 cell, or a
square grid of ``block_size_m`` in an equal-area projection of lon/lat; a table without locations gets a
stratified random split and a warning), then ``k`` training samples per class are drawn from the rest. Classes with
fewer than ``min_per_class`` samples are left out of the evaluation (listed in ``data.dropped_classes``); a
(seed, k) whose training side lacks ``k`` samples of a class is skipped and counted in ``skipped``.

Rows (model / protocol), every one on identical splits, scored by macro-F1 (the headline: the classes are very
unbalanced), overall accuracy and Cohen's kappa:

* ``raw series`` / ``linear`` and ``raw series`` / ``random_forest``: the values of every band and step (gaps
  filled by linear interpolation in time, a band never seen by the band's mean), logistic regression and a random
  forest (300 trees);
* ``temporal stats + phenology`` / ``linear``: per band mean, std, min, max and quartiles over the valid steps, and
  NDVI phenology (peak value and day, minimum, amplitude, green-up day, mean), logistic regression;
* ``random-init <encoder>`` / ``linear`` and, with weights, ``pretrained <encoder>`` / ``linear``: frozen pooled
  features of the pixel time-series encoder (:class:`~eossl.models.temporal.PixelSeriesEncoder`);
* fusion (``fusion``): ``raw series + pretrained <encoder>`` and ``raw series + random-init <encoder>`` / ``linear``:
  the raw series concatenated with the frozen features, each standardised, one logistic regression. Whether the
  pretrained features add anything to the raw series is the first row minus ``raw series`` / ``linear``, and
  whether that is pretraining rather than more random dimensions is the first row minus the second.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from eossl.catalog.sensors import load_sensor
from eossl.data.normalization import Normalization
from eossl.data.series.tables import SeriesSamples
from eossl.evaluate.context import TaskNotes
from eossl.evaluate.fewshot import fit_logreg
from eossl.evaluate.metrics import classification_metrics, summarise
from eossl.evaluate.splits import few_label_subset, spatial_block_split
from eossl.report.rows import ResultRow, SeedScores

log = logging.getLogger(__name__)

__all__ = ["evaluate_series", "raw_series_features", "phenology_features", "series_splits", "encoder_features"]

_SCORES = ("macro_f1", "overall_accuracy", "kappa")
EQUAL_AREA = "EPSG:6933"      # WGS 84 / NSIDC EASE-Grid 2.0 Global: metres, equal area, worldwide


# ------------------------------------------------------------------------------------------ features


def _interpolated(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, T, C) with invalid entries filled by linear interpolation over time (nearest at the ends); a band with
    no valid step in a sample takes that band's mean over every sample's valid values."""
    n, t, c = values.shape
    out = values.astype(np.float64).copy()
    band_mean = np.array([values[..., j][valid[..., j]].mean() if valid[..., j].any() else 0.0 for j in range(c)])
    steps = np.arange(t)
    for i in range(n):
        for j in range(c):
            ok = valid[i, :, j]
            if ok.all():
                continue
            out[i, :, j] = np.interp(steps, steps[ok], values[i, ok, j]) if ok.any() else band_mean[j]
    return out


def raw_series_features(s: SeriesSamples) -> np.ndarray:
    """(N, T * C) gap-filled values."""
    return _interpolated(s.values, s.valid).reshape(len(s), -1)


def _doy_angle(doy: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(doy) * 2 * np.pi / 365.25
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


def phenology_features(s: SeriesSamples) -> np.ndarray:
    """(N, 6 C + 10): temporal band statistics, and NDVI phenology when the series hold B04 and B08 (else 0)."""
    v = np.where(s.valid, s.values, np.nan).astype(np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN bands of a sample: NaN, filled below
        stats = [np.nanmean(v, 1), np.nanstd(v, 1), np.nanmin(v, 1), np.nanmax(v, 1), np.nanpercentile(v, 25, 1),
                 np.nanpercentile(v, 75, 1)]
    out = np.nan_to_num(np.concatenate(stats, axis=1))
    if not {"B04", "B08"} <= set(s.bands):
        log.info("the series lack B04 or B08: no NDVI phenology features")
        return np.concatenate([out, np.zeros((len(s), 10))], axis=1)
    filled = _interpolated(s.values, s.valid)
    red, nir = filled[..., s.bands.index("B04")], filled[..., s.bands.index("B08")]
    ndvi = (nir - red) / np.clip(nir + red, 1e-6, None)
    doy = s.day_of_year().astype(np.float64)
    doy = np.where(np.isfinite(doy), doy, np.arange(ndvi.shape[1])[None] * 30.44 + 15)   # unknown: step months
    peak = ndvi.argmax(1)
    low, high = ndvi.min(1), ndvi.max(1)
    amp = high - low
    rows = np.arange(len(s))
    half = low + 0.5 * amp
    greenup = np.array([int(np.argmax(ndvi[i, : peak[i] + 1] >= half[i])) for i in rows])
    feats = np.concatenate([high[:, None], low[:, None], amp[:, None], ndvi.mean(1)[:, None],
                            _doy_angle(doy[rows, peak]), _doy_angle(doy[rows, greenup]),
                            (peak - greenup)[:, None].astype(np.float64), ndvi.std(1)[:, None]], axis=1)
    return np.concatenate([out, feats], axis=1)


def encoder_features(encoder: torch.nn.Module, s: SeriesSamples, norm: Normalization, batch_size: int = 256,
                     device: str = "cpu") -> np.ndarray:
    """(N, D) frozen features of ``encoder`` on the normalised series."""
    valid = torch.from_numpy(s.valid)
    x = norm.apply_series(s.values, s.valid)
    doy = torch.from_numpy(s.day_of_year())
    encoder = encoder.eval().to(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(s), batch_size):
            sl = slice(i, i + batch_size)
            out.append(encoder(x[sl].to(device), valid[sl].to(device), doy[sl].to(device)).float().cpu())
    return torch.cat(out).numpy()


# ------------------------------------------------------------------------------------------ splits


def _blocks(s: SeriesSamples, block_size_m: float) -> tuple[np.ndarray | None, str]:
    if s.blocks is not None:
        return s.blocks, f"table column blocks ({len(set(s.blocks))} blocks)"
    if s.lonlat is None:
        return None, "random (the table has no lon/lat or block column)"
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", EQUAL_AREA, always_xy=True).transform(s.lonlat[:, 0], s.lonlat[:, 1])
    cells = np.floor(np.stack([x, y], 1) / block_size_m).astype(np.int64)
    ids = np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)
    return ids, f"{block_size_m / 1000:g} km grid in {EQUAL_AREA} ({len(np.unique(ids))} blocks)"


def series_splits(s: SeriesSamples, ks: list, seeds: int, seed: int, test_fraction: float, block_size_m: float
                  ) -> tuple[list[dict], str]:
    """Per seed ``{"seed", "test", "train": {k label: idx or None (skipped)}}`` and how blocks were made."""
    blocks, how = _blocks(s, block_size_m)
    splits = []
    for sd in range(seed, seed + seeds):
        if blocks is None:
            from sklearn.model_selection import train_test_split

            train, test = train_test_split(np.arange(len(s)), test_size=test_fraction, random_state=sd,
                                           stratify=s.labels)
            train, test = np.sort(train), np.sort(test)
        else:
            train, test = spatial_block_split(None, None, test_fraction, sd, labels=s.labels, blocks=blocks)
        per_k = {}
        for k in ks:
            try:
                per_k[str(k)] = few_label_subset(train, s.labels, k, seed=sd, classes=s.classes)
            except ValueError as err:
                log.info("seed %d, k=%s skipped: %s", sd, k, err)
                per_k[str(k)] = None
        splits.append({"seed": sd, "test": test, "pool": train, "train": per_k})
    return splits, how


# ------------------------------------------------------------------------------------------ evaluation


def _keep_classes(s: SeriesSamples, min_per_class: int) -> tuple[SeriesSamples, list[str]]:
    counts = np.bincount(s.labels, minlength=len(s.classes))
    keep = [i for i, n in enumerate(counts) if n >= min_per_class]
    dropped = [f"{s.classes[i]} ({counts[i]})" for i in range(len(s.classes)) if i not in keep]
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} class(es) have at least min_per_class = {min_per_class} samples "
                         f"(counts: {dict(zip(s.classes, counts.tolist()))}); lower series.min_per_class")
    idx = np.flatnonzero(np.isin(s.labels, keep))
    sub = s.subset(idx)
    remap = {old: new for new, old in enumerate(keep)}
    sub.labels = np.array([remap[v] for v in sub.labels], dtype=np.int64)
    sub.classes = [s.classes[i] for i in keep]
    return sub, dropped


def evaluate_series(s: SeriesSamples, *, ks=(5, 10, "all"), seeds: int = 10, seed: int = 0,
                    test_fraction: float = 0.3, block_size_m: float = 10000.0, min_per_class: int = 20,
                    C: float = 1.0, baselines=("raw_series", "random_forest", "phenology", "random_init", "fusion"),
                    encoder_kwargs: dict | None = None, pretrained=None, pretrained_name: str = "",
                    pretrained_norm: Normalization | None = None, device: str = "cpu",
                    progress: bool = True) -> tuple[list[ResultRow], TaskNotes]:
    """Result rows of the rows named above, and the notes beside them (settings, data, splits, skipped ks,
    warnings).

    ``pretrained``: a pretrained encoder (its features are scored as ``pretrained <pretrained_name>``), on data
    normalised with ``pretrained_norm`` (default: the sensor's statistics, as the random-init row)."""
    if (s.labels < 0).any():
        raise ValueError(f"{s.source}: {int((s.labels < 0).sum())} samples have no label; give series.label_column")
    s, dropped = _keep_classes(s, min_per_class)
    if dropped:
        log.info("classes with fewer than %d samples left out: %s", min_per_class, ", ".join(dropped))
    splits, how = series_splits(s, list(ks), seeds, seed, test_fraction, block_size_m)
    encoder_kwargs = dict(encoder_kwargs or {})
    wavelengths = [float(w) for w in load_sensor(s.sensor).wavelengths(s.bands)]
    entries = _entries(s, baselines, C, seed, encoder_kwargs, wavelengths, pretrained, pretrained_name,
                       pretrained_norm, device)
    results, skipped = [], {}
    bar = tqdm(total=len(entries) * len(splits) * len(ks), desc="evaluate series", unit="fit", disable=not progress)
    for name, protocol, fit in entries:
        results += _score(s, name, protocol, fit, splits, ks, skipped, bar)
    bar.close()
    warnings = []
    if s.blocks is None and s.lonlat is None:
        warnings.append({"code": "random_split", "message": "the table has no lon/lat or block column: test samples "
                                                            "may neighbour training samples, scores are optimistic"})
    skipped_k = {k: n // len(entries) for k, n in skipped.items()}
    for k, n in skipped_k.items():
        warnings.append({"code": "skipped_k", "message": f"k={k} was skipped in {n} of {seeds} seeds: a class had "
                                                         f"fewer than {k} training samples after the spatial split"})
    counts = np.bincount(s.labels, minlength=len(s.classes)).tolist()
    test_sizes = [int(sp["test"].size) for sp in splits]
    settings = {"ks": [str(k) for k in ks], "seeds": seeds, "seed": seed, "test_fraction": test_fraction,
                "blocks": how, "min_per_class": min_per_class, "C": C, "headline": "macro_f1",
                "encoder": {"wavelengths_nm": wavelengths, **encoder_kwargs}}
    data = {"n": len(s), "classes": s.classes, "class_counts": counts, "bands": s.bands, "sensor": s.sensor,
            "steps": int(s.values.shape[1]), "source": s.source, "dropped_classes": dropped, "notes": s.notes}
    return results, TaskNotes(what=f"{len(s)} series", settings=settings, data=data,
                              splits={"test_sizes": test_sizes, "blocks": how}, skipped_k=skipped_k,
                              warnings=warnings)


def _entries(s: SeriesSamples, baselines, C: float, seed: int, encoder_kwargs: dict, wavelengths: list[float],
             pretrained, pretrained_name: str, pretrained_norm, device: str) -> list:
    """(model, protocol, fit(train, test, seed) -> predictions) of every row, in table order."""
    from sklearn.ensemble import RandomForestClassifier

    from eossl.models.temporal import PixelSeriesEncoder

    norm = Normalization.of_sensor(s.sensor, s.bands)

    def logreg(x):
        return lambda tr, te, sd: fit_logreg(x[tr], s.labels[tr], x[te], C)[0]

    rows, fused = [], []
    if pretrained is not None:
        feats = encoder_features(pretrained, s, pretrained_norm or norm, device=device)
        rows.append((f"pretrained {pretrained_name}", "linear", logreg(feats)))
        fused.append((f"pretrained {pretrained_name}", feats))
    fusion = "fusion" in baselines and pretrained is not None       # without weights the fusion rows have no question
    if "random_init" in baselines or fusion:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rand = PixelSeriesEncoder(wavelengths, **encoder_kwargs)
        name = f"random-init pixel transformer ({sum(p.numel() for p in rand.parameters()) / 1e6:.2f} M)"
        feats = encoder_features(rand, s, norm, device=device)
        if "random_init" in baselines:
            rows.append((name, "linear", logreg(feats)))
        fused.append((name, feats))
    raw = raw_series_features(s) if {"raw_series", "random_forest"} & set(baselines) or fusion else None
    if fusion:
        rows += [(f"raw series + {name}", "linear", logreg(np.hstack([raw, feats]))) for name, feats in fused]
    if "raw_series" in baselines:
        rows.append(("raw series", "linear", logreg(raw)))
    if "random_forest" in baselines:
        def forest(tr, te, sd):
            rf = RandomForestClassifier(n_estimators=300, random_state=sd, n_jobs=1)
            return rf.fit(raw[tr], s.labels[tr]).predict(raw[te])
        rows.append(("raw series", "random_forest", forest))
    if "phenology" in baselines:
        rows.append(("temporal stats + phenology", "linear", logreg(phenology_features(s))))
    if not rows:
        raise ValueError("nothing to evaluate: give weights or at least one baseline")
    return rows


def _score(s: SeriesSamples, name: str, protocol: str, fit, splits: list[dict], ks, skipped: dict,
           bar) -> list[ResultRow]:
    """One row per k with a training subset in some seed (``skipped`` counts the others per k); the last carries
    the metrics of every seed's test predictions at the largest k, pooled."""
    per_k = {str(k): [] for k in ks}
    top = []
    for sp in splits:
        for k, train in sp["train"].items():
            bar.update(1)
            if train is None:
                skipped[k] = skipped.get(k, 0) + 1
                continue
            pred = fit(train, sp["test"], sp["seed"])
            m = classification_metrics(s.labels[sp["test"]], pred, s.classes)
            per_k[k].append(SeedScores(seed=sp["seed"], n_train=int(train.size), scores={c: m[c] for c in _SCORES}))
            if k == str(ks[-1]):
                top.append((sp["test"], pred))
    rows = [ResultRow(name, protocol, k, per_seed, summarise(per_seed, _SCORES))
            for k, per_seed in per_k.items() if per_seed]
    if top:
        y = np.concatenate([s.labels[t] for t, _ in top])
        p = np.concatenate([q for _, q in top])
        rows[-1] = replace(rows[-1], metrics_all_seeds=classification_metrics(y, p, s.classes))
    return rows
