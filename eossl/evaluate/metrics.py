"""Classification metrics: overall accuracy, macro-F1, Cohen's kappa, per-class precision/recall/F1, confusion.

>>> m = classification_metrics(y_true, y_pred, classes=["water", "forest", "crop"])
>>> m["overall_accuracy"], m["macro_f1"], m["kappa"], m["per_class"]["water"]["f1"], m["confusion_matrix"]

``y_true`` entries < 0 are ignored (unlabelled pixels, nodata). A class absent from both ``y_true`` and ``y_pred``
has precision/recall/F1 of NaN (reported as None in JSON) and is left out of macro-F1, which averages over the
classes present in ``y_true``. The confusion matrix is scikit-learn's; the scores are computed from it here because
scikit-learn's macro-F1 counts every class (an absent class as 0) and would change with the class list of a few-label
split, and because segmentation needs them from a matrix summed over chunks of pixels.
"""

from __future__ import annotations

import math

import numpy as np

from eossl.report.rows import Score, SeedScores

__all__ = ["classification_metrics", "confusion_matrix", "iou_from_confusion", "mean_ci95", "metrics_from_confusion",
           "summarise"]


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted class; entries with y_true < 0 are skipped."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    y_true, y_pred = _check(y_true, y_pred, n_classes)
    keep = y_true >= 0
    if not keep.any():      # every entry ignored (a chunk of unlabelled pixels): no counts
        return np.zeros((n_classes, n_classes), np.int64)
    return sk_confusion_matrix(y_true[keep], y_pred[keep], labels=np.arange(n_classes)).astype(np.int64)


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    """Metrics of integer predictions against integer labels (class indices into ``classes``); JSON-ready."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes)


def metrics_from_confusion(cm, classes: list[str]) -> dict:
    """The metrics of :func:`classification_metrics` from a (K, K) confusion matrix (rows = true class); summing
    the matrices of several test sets gives their pooled metrics."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {len(classes)} classes")
    n = int(cm.sum())
    if n == 0:
        raise ValueError("no labelled samples to score (every y_true is < 0)")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.where(support > 0, 0.0, np.nan))
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(recall) & np.isnan(precision), np.nan, f1)
    present = support > 0
    accuracy = float(tp.sum() / n)
    expected = float((support * predicted).sum() / (n * n))
    kappa = 1.0 if expected == 1.0 else (accuracy - expected) / (1.0 - expected)
    per_class = {name: {"precision": _num(precision[i]), "recall": _num(recall[i]), "f1": _num(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(classes)}
    return {"overall_accuracy": accuracy, "macro_f1": float(np.nanmean(np.where(present, f1, np.nan))),
            "kappa": float(kappa), "n": n, "per_class": per_class, "classes": list(classes),
            "confusion_matrix": cm.tolist()}


def iou_from_confusion(cm) -> tuple[np.ndarray, float]:
    """Per-class intersection over union (NaN for a class neither labelled nor predicted) and their mean over
    the classes present in the labels (as macro-F1). ``cm``: (K, K), rows = true class."""
    cm = np.asarray(cm, dtype=np.float64)
    tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return iou, float(iou[cm.sum(1) > 0].mean())


def mean_ci95(values) -> dict:
    """Mean and half-width of the 95% CI of the mean (t-distribution; None for a single value)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to summarise")
    half = None if v.size < 2 else float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return {"mean": float(v.mean()), "ci95": half, "n": int(v.size)}


def summarise(per_seed: list[SeedScores], names) -> dict[str, Score]:
    """Score name -> :func:`mean_ci95` of its per-seed values, in the order of ``names``."""
    return {name: Score(**mean_ci95([s.scores[name] for s in per_seed])) for name in names}


def _check(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} entries but y_pred has {y_pred.size}")
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    if y_true.size and (y_true.max() >= n_classes or y_pred[y_true >= 0].min(initial=0) < 0
                        or y_pred[y_true >= 0].max(initial=0) >= n_classes):
        raise ValueError(f"labels and predictions must be class indices in 0..{n_classes - 1} (negative y_true = "
                         f"ignored); got y_true up to {y_true.max()}, y_pred in {y_pred.min()}..{y_pred.max()}")
    return y_true, y_pred


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)
