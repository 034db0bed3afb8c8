"""The crop-type map's model: the stack evaluation's headline row (a :class:`~eossl.evaluate.stack_model.StackModel`)
fitted on a stack's labelled parcels and saved for ``eossl predict --stack`` (issue 25, point 5).

>>> out = fit_map_model(cfg, "runs/cropmodel")        # cfg: StackFitConfig (the evaluation's config + fit_on)
>>> StackModel.load(out["model"])                       # RUN/model: stack_model.json, .npz, fit.json

The row and its settings come from the stack task itself (:mod:`eossl.evaluate.tasks.stack`: its plan names the
headline row, its model builder the StackModel), never re-derived here. ``fit_on: all`` trains on every pixel of
every parcel (fragments and mixed pixels are no parcel); ``fit_on: split`` on the training pixels of one
evaluation split (seed, k), exactly as the evaluation fits it, so the map's scores on that split's test parcels
are the evaluation's (:func:`score_on_split`, the evaluation's own scoring functions).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from eossl.config import ConfigError, to_dict
from eossl.evaluate.metrics import metrics_from_confusion
from eossl.evaluate.parcel_scores import seed_counts, weighted_scores
from eossl.evaluate.parcel_splits import ParcelSplit, parcel_splits
from eossl.evaluate.stack_inputs import LabelledStack, find_legend, load_labelled_stack, load_stack_entry
from eossl.evaluate.stack_model import AbsentClassWarning, StackModel
from eossl.evaluate.stack_scoring import make_scope
from eossl.evaluate.tasks import stack as stack_task
from eossl.predict.config import StackFitConfig
from eossl.runs import write_json, write_text

log = logging.getLogger(__name__)

__all__ = ["FIT_FILE", "fit_map_model", "fit_splits", "fit_stack_again", "load_fit_stack", "read_fit",
           "score_on_split", "split_of"]

FIT_FILE = "fit.json"       # beside stack_model.json: what the model was fitted on


def _entry(cfg: StackFitConfig):
    stacks = cfg.stack.stacks
    names = [e.name or Path(e.path).name for e in stacks]
    if cfg.map_stack is None:
        if len(stacks) != 1:
            raise ConfigError(f"map_stack: the config has {len(stacks)} stacks ({names}); name the one to map "
                              f"(a map model reads one stack's dates)")
        return stacks[0]
    if cfg.map_stack not in names:
        raise ConfigError(f"map_stack: {cfg.map_stack!r} is not a stack of stack.stacks ({names})")
    return stacks[names.index(cfg.map_stack)]


def load_fit_stack(cfg: StackFitConfig) -> LabelledStack:
    """The labelled stack the model is fitted on, loaded as the stack task loads it."""
    e, st = _entry(cfg), cfg.stack
    return load_stack_entry(e, st)


def split_of(cfg: StackFitConfig, ls: LabelledStack) -> tuple[ParcelSplit, list[ParcelSplit]]:
    """The evaluation's split (seed, k) of ``cfg.split()`` and every seed's split at that k (the scope's parcels)."""
    seed, k = cfg.split()
    splits = parcel_splits(ls.parcels, [k], cfg.seeds, cfg.seed, cfg.stack.buffer)
    return next(sp for sp in splits if sp.seed == seed), splits


def _row(cfg: StackFitConfig) -> str:
    rows, headline, _ = stack_task.plan_rows(cfg.stack, cfg.weights)     # the task's own choice of its headline row
    row = cfg.row or headline
    if row not in rows:
        raise ConfigError(f"row: {row!r} is not scored by this config (rows: {', '.join(rows)}); give weights or "
                          f"another row")
    return row


def _fit(model: StackModel, ls: LabelledStack, train: np.ndarray, train_codes: np.ndarray) -> tuple[list, np.ndarray]:
    """Prepare on every pixel, fit on the rows ``train`` of the features (as the evaluation's ``_predict``);
    (absent-class warnings, the features of every pixel)."""
    model.prepare(ls.samples, comps=[ls.comp])
    feats = model.transform(ls.samples, comp=ls.comp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AbsentClassWarning)
        model.fit_features(feats[train], np.searchsorted(np.asarray(ls.codes), train_codes), allow_absent=True)
    return [str(w.message) for w in caught if issubclass(w.category, AbsentClassWarning)], feats


def fit_map_model(cfg: StackFitConfig, run_dir: str | Path, device: str = "cpu") -> dict:
    """Fit the map model of ``cfg`` into ``run_dir/model`` (with ``fit.json``); returns the fit record."""
    from eossl.evaluate.config import with_resolved_weights

    cfg = with_resolved_weights(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    start = time.time()
    ls = load_fit_stack(cfg)
    row = _row(cfg)
    model = stack_task.row_model(row, ls, cfg, device)
    split = splits = None
    if cfg.fit_on == "split":
        split, splits = split_of(cfg, ls)
        train, train_codes = split.train, split.train_labels
    else:
        train = np.flatnonzero(ls.samples.labels >= 0)                # parcel pixels only (fragments: -1)
        train_codes = np.asarray(ls.codes)[ls.samples.labels[train]]
    absent, feats = _fit(model, ls, train, train_codes)
    model.save(run_dir / "model")
    label = stack_task.row_labels(cfg.weights, stack_task._method(cfg.weights))[row]
    legend = _entry(cfg).legend or find_legend(ls.labels.source)
    rec = {"row": row, "model": label[0], "protocol": label[1], "fit_on": cfg.fit_on, "n_train": int(train.size),
           "train_per_class": {str(c): int((train_codes == c).sum()) for c in ls.codes},
           "stack": {"name": ls.name, "path": str(_entry(cfg).path), "labels": ls.labels.source,
                     "variable": ls.labels.variable, "legend": None if legend is None else str(legend),
                     "period": cfg.stack.period, "bands": cfg.stack.bands, "include_s1": cfg.stack.include_s1,
                     "min_parcel_pixels": cfg.stack.min_parcel_pixels, "sensor": _entry(cfg).sensor,
                     "code_column": _entry(cfg).code_column, "name_column": _entry(cfg).name_column},
           "classes": ls.names, "codes": ls.codes, "warnings": absent, "seconds": round(time.time() - start, 1)}
    if split is not None:
        pred = np.asarray(ls.codes)[model.proba_from_features(feats).argmax(axis=1)]
        rec["split"] = {"seed": split.seed, "k": split.k, "base_seed": cfg.seed, "seeds": cfg.seeds,
                        "buffer": cfg.stack.buffer, "scores": score_on_split(pred, ls, splits, split.seed)}
    write_json(run_dir / "model" / FIT_FILE, rec)
    return {**rec, "model_dir": str(run_dir / "model")}


def read_fit(model_dir: str | Path) -> dict:
    """The fit record of a map model folder ({} when it has none: a model saved by other code)."""
    path = Path(model_dir) / FIT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def fit_stack_again(fit: dict) -> LabelledStack:
    """The labelled stack of a fit record, loaded as the fit (and the evaluation) loaded it."""
    s = fit["stack"]
    return load_labelled_stack(s["path"], s["labels"], s["variable"], s["legend"], s["name"], s["period"],
                               s["bands"], s["include_s1"], s["min_parcel_pixels"], sensor=s.get("sensor"),
                               code_column=s.get("code_column"), name_column=s.get("name_column"))


def fit_splits(fit: dict, ls: LabelledStack) -> list[ParcelSplit]:
    """Every seed's split at the k of a ``fit_on: split`` record (the scope of :func:`score_on_split`)."""
    sp = fit["split"]
    return parcel_splits(ls.parcels, [sp["k"]], sp["seeds"], sp["base_seed"], sp["buffer"])


def score_on_split(pred: np.ndarray, ls: LabelledStack, splits: list[ParcelSplit], seed: int) -> dict:
    """The scores of predicted codes ``pred`` (H*W,) on the test parcels of the split of ``seed`` among
    ``splits`` (every seed's, one k), by the evaluation's own functions (its per-seed score of a row):
    ``macro_f1``, ``overall_accuracy``, ``kappa``, ``per_class_f1`` (multi-parcel classes) and ``metrics``
    (the confusion matrix and per-class precision/recall/F1 of the test pixels)."""
    scope, where = make_scope(ls.name, [ls], {ls.name: splits})
    sp = next(s for s in splits if s.seed == seed)
    g = np.array([where[ls.name][int(q)] for q in sp.test_parcels], dtype=np.int64)
    counts = seed_counts(scope, ls.labels.codes.ravel()[sp.test], np.asarray(pred)[sp.test], g)[None]
    s = weighted_scores(scope, counts)
    names = dict(zip(ls.codes, ls.names))
    return {"macro_f1": float(s["macro_f1"][0]), "overall_accuracy": float(s["overall_accuracy"][0]),
            "kappa": float(s["kappa"][0]),
            "per_class_f1": {names[c]: float(v) for c, v in zip(scope.multi.tolist(), s["per_class_f1"][0])},
            "metrics": metrics_from_confusion(counts.sum(axis=(0, 1)).round().astype(np.int64),
                                              [names[c] for c in scope.codes.tolist()])}
