"""Few-label protocols on labelled chips: linear probe, kNN and full fine-tuning at k labels per class.

Two split schemes, one probe (:func:`fit_logreg`) and one confidence interval (:func:`~eossl.evaluate.metrics.mean_ci95`):

* **hold-out** (:func:`few_label_splits`, ``eossl evaluate``): for each seed, a stratified hold-out (``test_fraction`` of every class) is the test set; the rest is the training
  pool, from which ``k`` chips per class are drawn (nested: the k=5 chips are among the k=10 ones, so curves are
  smooth in k; ``"all"`` = the whole pool). Every model and baseline is scored on the same splits.
* **per-class draws** (:func:`few_shot_splits` / :func:`few_shot_probe`, the online probe and the pretraining
  benchmarks): each draw takes ``per_class`` chips per class (``np.random.default_rng(seed + draw)``) and tests on
  every other chip, which keeps the most test chips on a small labelled set such as the 200 built-in EuroSAT chips.
  The splits depend only on the labels, ``per_class``, ``seed`` and the draw, never on the features, so rows
  scored with the same labels and seed are paired.

>>> splits = few_label_splits(labels, ks=[5, 10, "all"], seeds=5)
>>> preds = linear_probe(features[tr], labels[tr], features[te])
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from eossl.evaluate.metrics import mean_ci95

__all__ = ["FewLabelSplit", "ProbeResult", "few_label_splits", "few_shot_probe", "few_shot_splits", "fit_logreg",
           "k_label", "knn_predict", "linear_probe"]


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


@dataclass
class ProbeResult:
    """Accuracies are fractions in [0, 1]; ``ci95`` is the half-width of the 95% CI of the mean (t-distribution,
    ``draws - 1`` degrees of freedom; NaN for a single draw). ``train_indices``: the training chips of each draw."""

    accuracies: list[float]
    mean: float
    ci95: float
    per_class: int
    draws: int
    seed: int = 0
    n_not_converged: int = 0
    train_indices: list[list[int]] = field(default_factory=list, repr=False)

    @property
    def split_digest(self) -> str:
        """A short hash of the training splits: equal digests mean the same chips were used for training."""
        data = ";".join(",".join(map(str, idx)) for idx in self.train_indices)
        return hashlib.sha1(data.encode()).hexdigest()[:12]

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": None if math.isnan(self.ci95) else self.ci95,
                "accuracies": list(self.accuracies), "per_class": self.per_class, "draws": self.draws,
                "seed": self.seed, "n_not_converged": self.n_not_converged, "split_digest": self.split_digest}

    def __str__(self) -> str:
        ci = "n/a" if math.isnan(self.ci95) else f"{100 * self.ci95:.1f}"
        return f"{100 * self.mean:.1f}% ± {ci} (95% CI, {self.draws} draws, {self.per_class}/class)"


def few_shot_splits(labels: np.ndarray, per_class: int, draws: int, seed: int = 0,
                    classes: list[str] | None = None) -> list[np.ndarray]:
    """For each draw, the sorted indices of ``per_class`` training chips per class (labels: (N,) int).

    Every class needs more than ``per_class`` chips, so that at least one is left to test on.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {labels.shape}")
    if per_class < 1 or draws < 1:
        raise ValueError(f"per_class and draws must be >= 1, got per_class={per_class}, draws={draws}")
    values, counts = np.unique(labels, return_counts=True)
    if values.size < 2:
        raise ValueError(f"a probe needs at least 2 classes, the labels hold {values.size}")
    for value, count in zip(values, counts):
        if count <= per_class:
            name = classes[value] if classes is not None and 0 <= value < len(classes) else value
            raise ValueError(f"class {name!r} has {count} samples; {per_class}/class for training needs at least "
                             f"{per_class + 1} (one left to test). Lower per_class or add samples of that class")
    members = [np.flatnonzero(labels == v) for v in values]
    splits = []
    for draw in range(draws):
        rng = np.random.default_rng(seed + draw)
        splits.append(np.sort(np.concatenate([rng.choice(m, per_class, replace=False) for m in members])))
    return splits


def few_shot_probe(features, labels: np.ndarray, per_class: int = 10, draws: int = 20, seed: int = 0,
                   C: float = 1.0, max_iter: int = 2000, classes: list[str] | None = None) -> ProbeResult:
    """Linear-probe accuracy of (N, D) ``features`` with (N,) int ``labels`` over ``draws`` few-label splits.

    ``features`` may also be a callable ``train_indices -> (N, D)`` for features that depend on the training
    split (random convolutional features whose filters come from the training chips).

    Each draw: :func:`fit_logreg` (``C``, ``max_iter``) on the training chips, accuracy on all remaining chips. Fits that hit ``max_iter`` are counted in
    ``n_not_converged`` instead of warning. ``classes`` (label -> name) only improves error messages.
    """
    labels = np.asarray(labels)
    splits = few_shot_splits(labels, per_class, draws, seed, classes)
    per_split = callable(features)
    accuracies, not_converged = [], 0
    for train in splits:
        x = _checked(features(train) if per_split else features, labels)
        test = np.setdiff1d(np.arange(labels.size), train)
        pred, converged = fit_logreg(x[train], labels[train], x[test], C, max_iter)
        accuracies.append(float((pred == labels[test]).mean()))
        not_converged += not converged
    return ProbeResult(accuracies=accuracies, mean=float(np.mean(accuracies)), ci95=mean_ci95(accuracies)["ci95"] or math.nan,
                       per_class=per_class, draws=draws, seed=seed, n_not_converged=int(not_converged),
                       train_indices=[s.tolist() for s in splits])


def _checked(features, labels: np.ndarray) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features must be (N, D) with N = len(labels) = {labels.shape[0]}, got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features hold NaN or infinite values; check the inputs and normalisation")
    return features
