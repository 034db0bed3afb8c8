"""Parcel-disjoint scores of few-label stack splits (:mod:`eossl.evaluate.parcel_splits`) with 95% CIs from a
bootstrap over test parcels.

The score of a row at one k is the seed average of each seed's score on its test pixels (one test parcel per
multi-parcel class and stack): macro-F1 over the multi-parcel classes, overall accuracy and Cohen's kappa. Seeds
reuse the same few parcels, so they are not independent draws: the CI resamples the *test parcels* instead. Each
resample draws, within each (stack, class), as many parcels as were tested, with replacement; a parcel drawn twice
counts its pixels twice, one not drawn drops out of the seeds that tested it. The seed-averaged scores are then
recomputed from weighted confusion matrices:

* per class c: the mean over seeds of that seed's F1 of c, each seed weighted by the weight of its test
  parcel(s) of c (seeds whose parcels of c were not drawn drop out for c); macro-F1 the mean over classes;
* overall accuracy and kappa: the mean over seeds, each weighted by the mean weight of its test parcels.

With every weight 1 these are exactly the plain seed averages. The 95% interval is the 2.5 and 97.5 percentiles of
``resamples`` resamples (seeded). Paired differences (headline minus a baseline) use the same resamples for both
rows, so the interval of the difference accounts for their shared parcels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scope", "bootstrap_weights", "interval", "seed_counts", "weighted_scores"]


@dataclass
class Scope:
    """What is scored together (one stack, or several pooled). ``codes`` (K,) every class code that can be
    predicted; ``multi`` (M,) the multi-parcel class codes (a subset); per tested parcel g: ``parcel_class``
    (G,) index into ``multi`` and ``strata`` (G,) its (stack, class) stratum."""

    name: str
    codes: np.ndarray
    multi: np.ndarray
    parcel_class: np.ndarray
    strata: np.ndarray

    def index_of(self, codes: np.ndarray) -> np.ndarray:
        """Class codes -> indices into ``codes`` (a ValueError for a code outside them)."""
        codes = np.asarray(codes)
        pos = np.searchsorted(self.codes, codes)
        if codes.size and (pos.max() >= len(self.codes) or (self.codes[np.minimum(pos, len(self.codes) - 1)]
                                                              != codes).any()):
            raise ValueError(f"codes {sorted(set(codes.tolist()) - set(self.codes.tolist()))} are not classes of "
                             f"scope {self.name}")
        return pos


def seed_counts(scope: Scope, y_true: np.ndarray, y_pred: np.ndarray, parcel: np.ndarray) -> np.ndarray:
    """(G, K, K) confusion counts of one seed's test pixels per tested parcel (``parcel`` (N,) index g)."""
    k, g = len(scope.codes), len(scope.strata)
    t, p = scope.index_of(y_true), scope.index_of(y_pred)
    flat = np.bincount((np.asarray(parcel) * k + t) * k + p, minlength=g * k * k)
    return flat.reshape(g, k, k).astype(np.float64)


def bootstrap_weights(strata: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(B, G) multiplicities: per resample and stratum, ``n`` draws with replacement from its ``n`` parcels."""
    rng = np.random.default_rng(seed)
    strata = np.asarray(strata)
    w = np.zeros((resamples, len(strata)))
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        draws = rng.integers(0, len(members), size=(resamples, len(members)))
        np.add.at(w, (np.arange(resamples)[:, None], members[draws]), 1.0)
    return w


def weighted_scores(scope: Scope, counts: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seed-averaged scores from per-seed, per-parcel counts ``counts`` (S, G, K, K) under parcel ``weights``
    (B, G) (None: all 1, B = 1): ``macro_f1``, ``overall_accuracy``, ``kappa`` (B,) and ``per_class_f1`` (B, M)."""
    w = np.ones((1, counts.shape[1])) if weights is None else np.asarray(weights, np.float64)
    cm = np.einsum("bg,sgtp->bstp", w, counts)                                   # (B, S, K, K)
    tp = np.diagonal(cm, axis1=2, axis2=3)                                        # (B, S, K)
    support, predicted = cm.sum(axis=3), cm.sum(axis=2)
    rows = scope.index_of(scope.multi)
    num = 2 * tp[..., rows]
    den = num + (predicted - tp)[..., rows] + (support - tp)[..., rows]
    f1 = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)                    # (B, S, M)
    tested = counts.sum(axis=(2, 3)) > 0                                          # (S, G): parcels of each seed
    member = scope.parcel_class[None, :] == np.arange(len(scope.multi))[:, None]  # (M, G)
    sw = np.einsum("bg,sg,mg->bsm", w, tested.astype(float), member.astype(float))
    per_class = (sw * f1).sum(axis=1) / np.maximum(sw.sum(axis=1), 1e-300)        # (B, M)
    n = cm.sum(axis=(2, 3))
    oa = tp.sum(axis=2) / np.maximum(n, 1e-300)
    expected = (support * predicted).sum(axis=2) / np.maximum(n * n, 1e-300)
    kappa = np.where(expected < 1, (oa - expected) / np.maximum(1 - expected, 1e-300), 1.0)
    tw = (w @ tested.T.astype(float)) / np.maximum(tested.sum(axis=1), 1)[None]   # (B, S)
    tw = np.where(n > 0, tw, 0.0)

    def avg(v):
        return (tw * v).sum(axis=1) / np.maximum(tw.sum(axis=1), 1e-300)

    return {"macro_f1": per_class.mean(axis=1), "overall_accuracy": avg(oa), "kappa": avg(kappa),
            "per_class_f1": per_class}


def interval(values: np.ndarray) -> tuple[float, float]:
    """(2.5, 97.5) percentiles of bootstrap values."""
    lo, hi = np.percentile(np.asarray(values, np.float64), [2.5, 97.5])
    return float(lo), float(hi)
