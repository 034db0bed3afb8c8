"""Few-label linear probe: repeated draws of ``per_class`` training chips per class, logistic regression on
standardised features, accuracy on every other chip, mean and 95% confidence interval over draws.

The training splits depend only on ``labels``, ``per_class``, ``seed`` and the draw number
(``np.random.default_rng(seed + draw)``), never on the features: pretrained, random-init and band-statistics
features given the same labels and seed are scored on identical splits, so their differences are paired.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats  # a dependency of scikit-learn, so always installed with it
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

__all__ = ["ProbeResult", "few_shot_splits", "few_shot_probe", "ci95_half_width", "splits_digest"]


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
        return splits_digest(self.train_indices)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": None if math.isnan(self.ci95) else self.ci95,
                "accuracies": list(self.accuracies), "per_class": self.per_class, "draws": self.draws,
                "seed": self.seed, "n_not_converged": self.n_not_converged, "split_digest": self.split_digest}

    def __str__(self) -> str:
        ci = "n/a" if math.isnan(self.ci95) else f"{100 * self.ci95:.1f}"
        return f"{100 * self.mean:.1f}% ± {ci} (95% CI, {self.draws} draws, {self.per_class}/class)"


def ci95_half_width(values) -> float:
    """Half-width of the 95% confidence interval of the mean: ``t(0.975, n-1) * std(ddof=1) / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))


def splits_digest(train_indices: list[list[int]]) -> str:
    data = ";".join(",".join(map(str, idx)) for idx in train_indices)
    return hashlib.sha1(data.encode()).hexdigest()[:12]


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

    Each draw: StandardScaler fitted on the training chips only, multinomial LogisticRegression (lbfgs, ``C``,
    ``max_iter``) fitted on them, accuracy on all remaining chips. Fits that hit ``max_iter`` are counted in
    ``n_not_converged`` instead of warning. ``classes`` (label -> name) only improves error messages.
    """
    labels = np.asarray(labels)
    splits = few_shot_splits(labels, per_class, draws, seed, classes)
    per_split = callable(features)
    accuracies, not_converged = [], 0
    # These fits are tiny (a few hundred samples): multi-threaded BLAS only adds wake-up overhead, and made L-BFGS
    # 5-10x slower on 2 busy cores. Results are the same.
    with threadpool_limits(limits=1, user_api="blas"):
        for train in splits:
            acc, converged = _fit_and_score(_checked(features(train) if per_split else features, labels), labels,
                                            train, C, max_iter)
            accuracies.append(acc)
            not_converged += not converged
    return ProbeResult(accuracies=accuracies, mean=float(np.mean(accuracies)), ci95=ci95_half_width(accuracies),
                       per_class=per_class, draws=draws, seed=seed, n_not_converged=int(not_converged),
                       train_indices=[s.tolist() for s in splits])


def _checked(features, labels: np.ndarray) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features must be (N, D) with N = len(labels) = {labels.shape[0]}, got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features hold NaN or infinite values; check the inputs and normalisation")
    return features


def _fit_and_score(features: np.ndarray, labels: np.ndarray, train: np.ndarray, C: float, max_iter: int
                   ) -> tuple[float, bool]:
    """Accuracy on the chips outside ``train`` of a probe fitted on ``train``, and whether the fit converged."""
    test = np.setdiff1d(np.arange(labels.size), train)
    scaler = StandardScaler().fit(features[train])
    clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(scaler.transform(features[train]), labels[train])
    for w in caught:   # let anything other than non-convergence through
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float((clf.predict(scaler.transform(features[test])) == labels[test]).mean()), converged
