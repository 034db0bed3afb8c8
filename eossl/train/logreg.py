"""Multinomial logistic regression on standardised features, with its inverse regularisation ``C`` chosen by
stratified cross-validation on the training rows only: the frozen linear probe of the evaluations, the classifier
of the stack task and the linear-probe start of LP-FT fine-tuning (:mod:`eossl.train.supervised`) share it.

Fits are tiny, so BLAS is held to one thread (on busy cores its wake-ups cost more than they save).
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["LogReg", "choose_C", "fit_logreg_standardised"]


def _logreg(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000)


def choose_C(x: np.ndarray, y: np.ndarray, grid: list[float], seed: int = 0) -> float:
    """The C of ``grid`` with the best mean macro-F1 over stratified folds (3, or the smallest class count) of the
    training rows ``x``, ``y``; the first of the grid when a class has fewer than 2 rows (no fold possible) or the
    grid has one value. Ties go to the earlier C of the grid."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    grid = list(grid)
    if not grid:
        raise ValueError("choose_C: an empty grid of C values")
    folds = min(3, int(np.bincount(y)[np.unique(y)].min()))
    if folds < 2 or len(grid) == 1:
        return float(grid[0])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # non-convergence inside a fold does not decide anything
        scores = [cross_val_score(make_pipeline(StandardScaler(), _logreg(c)), x, y, cv=cv,
                                  scoring="f1_macro").mean() for c in grid]
    return float(grid[int(np.argmax(scores))])


class LogReg:
    """A fitted standardised logistic regression as arrays: ``center``, ``scale`` (D,), ``coef`` (K', D),
    ``intercept`` (K',), ``classes`` (K',) the labels seen, ``C`` and ``converged``."""

    def __init__(self, center, scale, coef, intercept, classes, C: float, converged: bool):
        self.center, self.scale, self.coef, self.intercept = center, scale, coef, intercept
        self.classes, self.C, self.converged = classes, float(C), bool(converged)

    def logits(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(weight (K, D), bias (K,)) of a linear layer on the raw features whose softmax equals the fitted
        model's probabilities (the standardisation folded in); classes never seen get weight 0 and bias -30."""
        w = np.zeros((n_classes, len(self.center)))
        b = np.full(n_classes, -30.0)
        coef, icpt = self.coef, self.intercept
        if len(self.classes) == 2 and coef.shape[0] == 1:        # binary: sklearn keeps class 1's logit only
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, icpt[0]])
        if len(self.classes) == 1:
            coef, icpt = np.zeros((1, len(self.center))), np.zeros(1)
        folded = coef / self.scale
        w[self.classes] = folded
        b[self.classes] = icpt - folded @ self.center
        return w, b


def fit_logreg_standardised(x: np.ndarray, y: np.ndarray, C: float = 1.0, C_grid=None, seed: int = 0) -> LogReg:
    """Standardise ``x`` with its own statistics and fit the logistic regression (``C``, or chosen from
    ``C_grid`` by :func:`choose_C`)."""
    from sklearn.exceptions import ConvergenceWarning

    x = np.asarray(x, np.float64)
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    present = np.unique(y)
    if len(present) == 1:
        return LogReg(center, scale, np.zeros((1, x.shape[1])), np.zeros(1), present, C, True)
    C = choose_C(x, y, list(C_grid), seed) if C_grid else C
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = _logreg(C).fit((x - center) / scale, y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return LogReg(center, scale, clf.coef_, clf.intercept_, clf.classes_, C, converged)
