"""The classifiers of a :class:`~eossl.evaluate.stack_model.StackModel`, fitted by scikit-learn and kept as plain
arrays (saved as .npz, no pickle), with their class probabilities computed from those arrays in numpy: the same
code scores the test pixels of an evaluation and every pixel of a map, before and after a save/load.

* ``linear``: standardisation on the training pixels + multinomial logistic regression (lbfgs), as
  :func:`eossl.evaluate.fewshot.fit_logreg`; ``C`` fixed, or chosen from ``C_grid`` by stratified 3-fold
  cross-validation (macro-F1) on the training pixels only;
* ``random_forest``: 300 trees (scikit-learn's), stored node by node.

Classes absent from the training pixels keep their column of the (N, K) probabilities, always 0.
"""

from __future__ import annotations

import numpy as np

from eossl.train.logreg import fit_logreg_standardised

__all__ = ["CLASSIFIERS", "fit_classifier", "classifier_proba"]

CLASSIFIERS = ("linear", "random_forest")


def _fit_linear(x: np.ndarray, y: np.ndarray, C: float, C_grid, seed: int) -> dict:
    fit = fit_logreg_standardised(x, y, C, C_grid, seed)
    return {"center": fit.center, "scale": fit.scale, "coef": fit.coef, "intercept": fit.intercept,
            "present": fit.classes, "C": np.array(fit.C), "converged": np.array(fit.converged)}


def _linear_scores(state: dict, x: np.ndarray) -> np.ndarray:
    """(N, K') probabilities of the present classes (softmax; sigmoid for two)."""
    z = ((x - state["center"]) / state["scale"]) @ state["coef"].T + state["intercept"]
    if len(state["present"]) == 2:
        z = np.concatenate([np.zeros_like(z), z], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_forest(x: np.ndarray, y: np.ndarray, trees: int, seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(x, y)
    parts = {"left": [], "right": [], "feature": [], "threshold": [], "value": []}
    roots, offset = [], 0
    for est in rf.estimators_:
        t = est.tree_
        roots.append(offset)
        leaf = t.children_left < 0
        parts["left"].append(np.where(leaf, -1, t.children_left + offset))
        parts["right"].append(np.where(leaf, -1, t.children_right + offset))
        parts["feature"].append(np.where(leaf, 0, t.feature))
        parts["threshold"].append(t.threshold)
        v = t.value[:, 0, :]
        parts["value"].append(v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300))
        offset += t.node_count
    out = {k: np.concatenate(v) for k, v in parts.items()}
    return {**out, "roots": np.array(roots), "present": rf.classes_}


def _forest_scores(state: dict, x: np.ndarray, block: int = 4096) -> np.ndarray:
    """(N, K') mean over trees of each tree's leaf class fractions (as scikit-learn, which compares float32
    features with the thresholds)."""
    x = x.astype(np.float32)
    out = np.empty((len(x), state["value"].shape[1]))
    left, right, feat, thr = state["left"], state["right"], state["feature"], state["threshold"]
    for a in range(0, len(x), block):
        xb = x[a:a + block]
        node = np.broadcast_to(state["roots"], (len(xb), len(state["roots"]))).copy()   # (b, trees)
        rows = np.arange(len(xb))[:, None]
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            go_left = xb[rows, feat[node]] <= thr[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        out[a:a + block] = state["value"][node].mean(axis=1)
    return out


def fit_classifier(kind: str, x: np.ndarray, y: np.ndarray, C: float = 1.0, C_grid=None, trees: int = 300,
                   seed: int = 0) -> dict:
    """The fitted state (dict of arrays) of classifier ``kind`` on (N, D) ``x`` and (N,) class indices ``y``."""
    if kind == "linear":
        return _fit_linear(np.asarray(x, np.float64), y, C, C_grid, seed)
    if kind == "random_forest":
        return _fit_forest(x, y, trees, seed)
    raise ValueError(f"unknown classifier {kind!r}; known: {', '.join(CLASSIFIERS)}")


def classifier_proba(kind: str, state: dict, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, K) class probabilities; the columns of classes absent from training are 0."""
    scores = _linear_scores(state, np.asarray(x, np.float64)) if kind == "linear" else _forest_scores(state, x)
    out = np.zeros((len(x), n_classes))
    out[:, state["present"]] = scores
    return out
