"""Few-label protocols on labelled chips: linear probe, kNN and full fine-tuning at k labels per class.

For each seed, a stratified hold-out (``test_fraction`` of every class) is the test set; the rest is the training
pool, from which ``k`` chips per class are drawn (nested: the k=5 chips are among the k=10 ones, so curves are
smooth in k; ``"all"`` = the whole pool). Every model and baseline is scored on the same splits.

>>> splits = few_label_splits(labels, ks=[5, 10, "all"], seeds=5)
>>> preds = linear_probe(features[tr], labels[tr], features[te])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["FewLabelSplit", "few_label_splits", "fit_logreg", "k_label", "knn_predict", "linear_probe"]


def k_label(k: int | str) -> str:
    return "all" if k == "all" else str(int(k))


@dataclass
class FewLabelSplit:
    seed: int
    test: np.ndarray                      # (n_test,) indices
    pool: np.ndarray                      # (n_pool,) indices the training subsets are drawn from
    train: dict[str, np.ndarray]          # k label ("5", "all") -> indices


def few_label_splits(labels: np.ndarray, ks: list[int | str], seeds: int, test_fraction: float = 0.3,
                     seed: int = 0, classes: list[str] | None = None) -> list[FewLabelSplit]:
    """Stratified hold-out + nested k-per-class training subsets, one split per seed ``seed .. seed + seeds - 1``.

    Every class needs at least ``k`` chips in its training pool: a clear error names the class otherwise.
    """
    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    values = np.unique(labels)
    if values.size < 2:
        raise ValueError(f"few-label evaluation needs at least 2 classes, the labels hold {values.size}")
    numeric = sorted(int(k) for k in ks if k != "all")
    if any(k < 1 for k in numeric) or any(k != "all" and not isinstance(k, (int, np.integer)) for k in ks):
        raise ValueError(f"ks must be positive integers or 'all', got {ks}")
    splits = []
    for s in range(seed, seed + seeds):
        rng = np.random.default_rng(s)
        test, pools = [], {}
        for v in values:
            members = rng.permutation(np.flatnonzero(labels == v))
            n_test = max(1, int(round(test_fraction * members.size)))
            if members.size - n_test < 1:
                raise ValueError(f"class {_name(v, classes)!r} has {members.size} samples: too few to hold "
                                 f"{n_test} out for testing and keep one for training")
            test.append(members[:n_test])
            pools[v] = members[n_test:]
        for k in numeric:
            short = [(_name(v, classes), p.size) for v, p in pools.items() if p.size < k]
            if short:
                name, n = short[0]
                raise ValueError(f"class {name!r} has only {n} training samples (after holding out "
                                 f"{test_fraction:.0%} for testing), fewer than k = {k}; lower k or add samples "
                                 f"of that class ({len(short)} classes are short)")
        train = {k_label(k): np.sort(np.concatenate([p[:k] for p in pools.values()])) for k in numeric}
        if "all" in ks:
            train["all"] = np.sort(np.concatenate(list(pools.values())))
        splits.append(FewLabelSplit(seed=s, test=np.sort(np.concatenate(test)),
                                    pool=np.sort(np.concatenate(list(pools.values()))), train=train))
    return splits


def _name(value, classes):
    return classes[value] if classes is not None and 0 <= value < len(classes) else value


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, C: float = 1.0,
                 max_iter: int = 2000) -> np.ndarray:
    """Logistic regression on standardised features (scaler fitted on the training rows); predicted labels."""
    return fit_logreg(train_x, train_y, test_x, C, max_iter)[0]


def fit_logreg(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, C: float = 1.0,
               max_iter: int = 2000) -> tuple[np.ndarray, bool]:
    """Predictions of StandardScaler + multinomial LogisticRegression (lbfgs) and whether the fit converged.

    The fits are tiny: multi-threaded BLAS only adds wake-up overhead on busy cores, so it is limited to one
    thread. Warnings other than non-convergence pass through."""
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(scaler.transform(train_x), train_y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf.predict(scaler.transform(test_x)), converged


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_neighbors: int = 5) -> np.ndarray:
    """Cosine-similarity kNN with distance weighting; ``n_neighbors`` is capped by the training set size."""
    n = min(n_neighbors, len(train_y))
    clf = KNeighborsClassifier(n_neighbors=n, metric="cosine", weights="distance", algorithm="brute")
    return clf.fit(train_x, train_y).predict(test_x)
