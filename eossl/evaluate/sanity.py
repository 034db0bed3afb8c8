"""Is an evaluation degenerate? Checks of splits (which classes each side holds) and of results (how many seeds
behind a CI, how wide it is, accuracy at chance), returned as structured warnings ``{"code", "message", ...}``
that go to the log, into ``metrics.json`` (``"warnings"``) and into the report.

A split that leaves a class of the data with no training sample is not a degenerate result but a wrong
experiment: :func:`check_splits` raises a ValueError naming the class, its counts and what to change.

A *sample* is the unit that is split: a chip (patch task), a field (crop task) or a window (segmentation, where a
window "holds" a class when any of its labelled pixels has it). ``presence`` is the (N, K) bool matrix of which
sample holds which class (:func:`class_presence`).

>>> warnings = check_splits(class_presence(labels, len(classes)), [(0, train, test)], classes, unit="chips",
...                         hint="lower test_fraction")
>>> warnings += result_warnings(rows, seeds_hint="set seeds to 5 (--set seeds=5)")
>>> out["warnings"] = emit(warnings)      # logged with logging.warning, JSON-ready
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MAX_CI95_HALF_WIDTH", "MIN_SEEDS_FOR_CI", "MIN_TEST_PER_CLASS", "MIN_TEST_TOTAL", "accuracy_warnings",
           "check_splits", "class_presence", "emit", "require_training_classes", "result_warnings",
           "subset_warnings"]

MIN_TEST_PER_CLASS = 5        # fewer test samples of a class: its recall / F1 / IoU rest on a handful of samples
MIN_TEST_TOTAL = 30           # fewer test samples in a split: every score rests on very few independent samples
MIN_SEEDS_FOR_CI = 3          # a 95% t-interval from 2 seeds uses t(0.975, 1) = 12.7: reported, but flagged
MAX_CI95_HALF_WIDTH = 0.25    # a CI half-width beyond 25 points of accuracy says the result is not resolved
_LIST = 6                     # at most this many items named in one message


def class_presence(labels, n_classes: int) -> np.ndarray:
    """(N, K) bool: sample i holds class k. ``labels`` (N,) class indices (one per chip or field) or (N, H, W)
    per-pixel indices (a window holds every class among its pixels); negative labels are ignored."""
    labels = np.asarray(labels, dtype=np.int64)
    flat = labels.reshape(labels.shape[0], -1)
    out = np.zeros((flat.shape[0], n_classes), dtype=bool)
    rows, cols = np.nonzero(flat >= 0)
    out[rows, flat[rows, cols]] = True
    return out


def require_training_classes(presence: np.ndarray, train_idx, test_idx, classes: list[str], *, unit: str,
                             where: str, hint: str) -> None:
    """ValueError when a class held by some sample (``presence`` (N, K)) has no sample in ``train_idx``."""
    train, test = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    in_data, n_train, n_test = presence.sum(0), presence[train].sum(0), presence[test].sum(0)
    gaps = np.flatnonzero((in_data > 0) & (n_train == 0))
    if gaps.size:
        names = "; ".join(f"class {classes[c]!r}: 0 training {unit}, {n_test[c]} test, {in_data[c]} in all"
                          for c in gaps[:_LIST])
        raise ValueError(f"{where} leaves {gaps.size} class(es) out of training ({names}): the model would never "
                         f"learn them and their scores would be meaningless; {hint}")


def check_splits(presence: np.ndarray, splits, classes: list[str], *, unit: str, hint: str,
                 small_hint: str = "raise test_fraction") -> list[dict]:
    """Raise (:func:`require_training_classes`) if a split leaves a class out of training; else warnings about
    the test sides. ``splits``: [(seed, train_idx, test_idx)]; one warning per problem, naming the seeds.
    ``hint``: what changes the split (the command's keys); ``small_hint``: what else enlarges the test side."""
    presence = np.asarray(presence, dtype=bool)
    for seed, train, test in splits:
        require_training_classes(presence, train, test, classes, unit=unit, where=f"the split of seed {seed}",
                                 hint=hint)
    seeds = [s for s, _, _ in splits]
    tests = np.stack([presence[np.asarray(t, dtype=np.int64)].sum(0) for _, _, t in splits])   # (S, K)
    totals = np.asarray([len(t) for _, _, t in splits])
    in_data = presence.sum(0)
    out = []
    for c in np.flatnonzero(in_data == 0):
        out.append(_w("class_without_samples", f"class {classes[c]!r} is in the class list but no {unit[:-1]} "
                                               f"holds it: it is neither trained nor scored", classes=[classes[c]]))
    for c in np.flatnonzero(in_data > 0):
        absent = [s for s, n in zip(seeds, tests[:, c]) if n == 0]
        if absent:
            out.append(_w("class_absent_from_test",
                          f"class {classes[c]!r} ({in_data[c]} {unit} in all) has no test {unit} in the split of "
                          f"seed(s) {_join(absent)}: its recall, F1 and IoU are undefined there, and macro-F1 / "
                          f"mean IoU average over fewer classes; {hint}", classes=[classes[c]], seeds=absent))
    one = [(s, np.flatnonzero(row)) for s, row in zip(seeds, tests) if np.count_nonzero(row) <= 1]
    if one:
        held = {repr(classes[int(c[0])]) if c.size else "none" for _, c in one}
        out.append(_w("one_class_test", f"the test side of seed(s) {_join([s for s, _ in one])} holds a single "
                                        f"class ({_join(sorted(held))}): overall accuracy only measures that class "
                                        f"and kappa / macro-F1 say nothing; {hint}", seeds=[s for s, _ in one]))
    smallest = np.where(tests > 0, tests, np.iinfo(np.int64).max).min(0)       # (K,) fewest, where any
    few = [(classes[c], int(smallest[c])) for c in np.flatnonzero(smallest < MIN_TEST_PER_CLASS)]
    if few:
        out.append(_w("few_test_samples_per_class",
                      f"{len(few)} class(es) have fewer than {MIN_TEST_PER_CLASS} test {unit} in some split: "
                      f"{_join([f'{n!r} (as few as {k})' for n, k in few])}; their per-class scores rest on a "
                      f"handful of {unit}", classes=[n for n, _ in few]))
    if totals.min() < MIN_TEST_TOTAL:
        out.append(_w("small_test_split",
                      f"the test side holds only {totals.min()} {unit} (seed {seeds[int(np.argmin(totals))]}; "
                      f"fewer than {MIN_TEST_TOTAL}): every score rests on very few independent {unit}; label "
                      f"more {unit} or {small_hint}", n_test=int(totals.min())))
    return out


def subset_warnings(presence: np.ndarray, subsets, classes: list[str], *, unit: str) -> list[dict]:
    """Classes of the data missing from few-label training subsets ``[(k, seed, idx)]`` (the split held them;
    the draw of k samples did not): one warning per class, naming the ks and seeds."""
    presence = np.asarray(presence, dtype=bool)
    in_data = presence.sum(0) > 0
    missing: dict[int, list[str]] = {}
    for k, seed, idx in subsets:
        for c in np.flatnonzero(in_data & (presence[np.asarray(idx, dtype=np.int64)].sum(0) == 0)):
            missing.setdefault(int(c), []).append(f"k={k} seed {seed}")
    return [_w("class_absent_from_training_subset",
               f"class {classes[c]!r} is in none of the training {unit} drawn at {_join(where)}: those rows cannot "
               f"predict it and score it as always wrong", classes=[classes[c]]) for c, where in missing.items()]


def result_warnings(rows: list[dict], seeds_hint: str = "set seeds to 5 (--set seeds=5)") -> list[dict]:
    """Warnings about result rows ``{"model", "protocol", "k", "overall_accuracy": {"mean", "ci95", "n"}, ...}``
    (the row at the largest k may carry ``metrics_all_seeds``, whose supports give the number of test classes):
    CIs from fewer than :data:`MIN_SEEDS_FOR_CI` seeds, CIs wider than :data:`MAX_CI95_HALF_WIDTH`, and accuracy
    at or below chance. ``seeds_hint``: how to raise the number of seeds (the command's config key or flag)."""
    if not rows:
        return []
    out = []
    n = min(int(r["overall_accuracy"]["n"]) for r in rows)
    if n < MIN_SEEDS_FOR_CI:
        what = ("there is no confidence interval (one seed)" if n == 1 else
                f"the 95% CIs come from {n} seeds (fewer than {MIN_SEEDS_FOR_CI}; t(0.975, {n - 1}) = "
                f"{_t975(n - 1):.1f}), so they are reported but say little")
        out.append(_w("few_seeds", f"{what}; {seeds_hint}", n_seeds=n))
    wide = [(r, r["overall_accuracy"]["ci95"]) for r in rows
            if (r["overall_accuracy"]["ci95"] or 0) > MAX_CI95_HALF_WIDTH]
    if wide:
        out.append(_w("wide_ci", f"{len(wide)} result(s) have a 95% CI half-width above "
                                 f"{100 * MAX_CI95_HALF_WIDTH:.0f} points of overall accuracy: "
                                 f"{_join([f'{_label(r)} ± {100 * ci:.1f}' for r, ci in wide])}; the differences "
                                 f"between these rows are not resolved (more seeds, more test samples)",
                      rows=[_label(r) for r, _ in wide]))
    supports = next((r["metrics_all_seeds"]["confusion_matrix"] for r in rows if "metrics_all_seeds" in r), None)
    n_classes = int((np.asarray(supports).sum(1) > 0).sum()) if supports is not None else None
    out += accuracy_warnings([(_label(r), r["overall_accuracy"]["mean"]) for r in rows], n_classes)
    return out


def accuracy_warnings(scores: list[tuple[str, float]], n_classes: int | None) -> list[dict]:
    """(label, overall accuracy) pairs at 0, or (with ``n_classes`` test classes) at or below chance 1/K."""
    zero = [name for name, oa in scores if oa <= 0.0]
    out = []
    if zero:
        out.append(_w("zero_accuracy", f"overall accuracy is 0% for {_join(zero)}: no test sample is right, "
                                       f"which points to a broken input (labels, bands or units), not a weak model",
                      rows=zero))
    if n_classes and n_classes > 1:
        chance = 1.0 / n_classes
        low = [(name, oa) for name, oa in scores if 0.0 < oa <= chance]
        if low:
            named = _join([f"{n} ({100 * oa:.1f}%)" for n, oa in low])
            out.append(_w("accuracy_at_chance", f"overall accuracy at or below chance (1/{n_classes} = "
                                                f"{100 * chance:.1f}%) for {named}", rows=[n for n, _ in low]))
    return out


def emit(warnings: list[dict], logger: logging.Logger = log) -> list[dict]:
    """Log every warning (``logging.warning``) and return the list."""
    for w in warnings:
        logger.warning("evaluation warning [%s]: %s", w["code"], w["message"])
    return warnings


def _w(code: str, message: str, **details) -> dict:
    return {"code": code, "message": message, **details}


def _join(items) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - _LIST} more" if len(items) > _LIST else ""
    return ", ".join(items[:_LIST]) + more


def _label(row: dict) -> str:
    return f"{row['model']} / {row['protocol']} k={row['k']}"


def _t975(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))
