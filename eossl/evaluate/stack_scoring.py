"""Result rows, bootstrap intervals and paired differences of the stack task from its predictions.

``preds[row][stack]`` is one record per split (seed-major, as :func:`eossl.evaluate.parcel_splits.parcel_splits`):
``{"seed", "k", "test_pred" (codes of the split's test pixels), "single_pred" (codes of its single-parcel
pixels), "n_train"}``. Scopes: each stack, and all stacks pooled (the test pixels of every stack in one
confusion matrix per seed); the result rows of ``metrics.json`` are the pooled scope's (the one stack's with one).
See :mod:`eossl.evaluate.parcel_scores` for the statistic and its bootstrap.
"""

from __future__ import annotations

import numpy as np

from eossl.evaluate.metrics import metrics_from_confusion
from eossl.evaluate.parcel_scores import Scope, bootstrap_weights, interval, seed_counts, weighted_scores
from eossl.evaluate.parcel_splits import class_kinds
from eossl.report.rows import PairedDifference, ResultRow, Score, SeedScores

__all__ = ["SCORES", "make_scope", "paired", "paired_records", "result_rows", "scope_rows", "single_parcel_scores"]

SCORES = ("macro_f1", "overall_accuracy", "kappa")


def make_scope(name: str, stacks: list, splits: dict) -> tuple[Scope, dict]:
    """The scope of ``stacks`` (LabelledStack) and, per stack name, parcel id -> tested-parcel index g."""
    codes = sorted({c for s in stacks for c in s.codes})
    multi = sorted({c for s in stacks for c in class_kinds(s.parcels)[0]})
    where, strata, parcel_class, stratum_of = {}, [], [], {}
    for s in stacks:
        code_of = dict(zip(range(1, len(s.parcels) + 1), s.parcels.codes.tolist()))
        tested = sorted({int(p) for sp in splits[s.name] for p in np.unique(sp.test_parcels)})
        where[s.name] = {}
        for pid in tested:
            where[s.name][pid] = len(strata)
            strata.append(stratum_of.setdefault((s.name, code_of[pid]), len(stratum_of)))
            parcel_class.append(multi.index(code_of[pid]))
    return Scope(name, np.array(codes), np.array(multi), np.array(parcel_class), np.array(strata)), where


def _counts(scope: Scope, where: dict, stacks: list, splits: dict, preds: dict, k: str) -> tuple[np.ndarray, list]:
    """(S, G, K, K) per-seed counts of one row at ``k`` over the scope's stacks, and the seeds' training sizes."""
    per_seed, n_train = {}, {}
    for s in stacks:
        codes = s.labels.codes.ravel()
        for sp, p in zip(splits[s.name], preds[s.name], strict=True):
            if sp.k != k:
                continue
            g = np.array([where[s.name][int(q)] for q in sp.test_parcels], dtype=np.int64)
            c = seed_counts(scope, codes[sp.test], p["test_pred"], g)
            per_seed[sp.seed] = per_seed.get(sp.seed, 0) + c
            n_train[sp.seed] = n_train.get(sp.seed, 0) + int(sp.train.size)
    seeds = sorted(per_seed)
    return np.stack([per_seed[sd] for sd in seeds]), [(sd, n_train[sd]) for sd in seeds]


def _summary(point: dict, boot: dict) -> dict:
    out = {}
    for name in SCORES:
        lo, hi = interval(boot[name])
        out[name] = {"mean": float(point[name][0]), "lo": lo, "hi": hi}
    return out


def scope_rows(scope: Scope, where: dict, stacks: list, splits: dict, preds: dict, names: dict, ks: list[str],
               resamples: int, seed: int) -> tuple[dict, dict]:
    """Per (row, k): point scores, per-seed scores, bootstrap values and the pooled confusion matrix of the scope.
    Returns (results keyed by (row, k), the bootstrap weights' description)."""
    weights = bootstrap_weights(scope.strata, resamples, seed)
    out = {}
    for row, by_stack in preds.items():
        for k in ks:
            counts, sizes = _counts(scope, where, stacks, splits, by_stack, k)
            point = weighted_scores(scope, counts)
            seeds = [SeedScores(seed=sd, n_train=n, scores={c: float(weighted_scores(scope, counts[i:i + 1])[c][0])
                                                            for c in SCORES}) for i, (sd, n) in enumerate(sizes)]
            boot = weighted_scores(scope, counts, weights)
            classes = [names[c] for c in scope.codes.tolist()]
            out[(row, k)] = {"point": point, "boot": boot, "per_seed": seeds, "summary": _summary(point, boot),
                             "pooled": metrics_from_confusion(counts.sum(axis=(0, 1)).round().astype(np.int64),
                                                              classes)}
    return out, {"resamples": resamples, "seed": seed, "parcels": int(len(scope.strata)),
                 "strata": int(len(np.unique(scope.strata)))}


def result_rows(scored: dict, labels: dict, headline: str, ks: list[str]) -> list[ResultRow]:
    """ResultRows of one scope: mean over seeds, ci95 the half-width of the bootstrap interval (the interval
    itself is in ``parcel_scores``); only the headline row at the largest k carries the pooled metrics."""
    rows = []
    for (row, k), r in scored.items():
        scores = {c: Score(mean=r["summary"][c]["mean"], ci95=(r["summary"][c]["hi"] - r["summary"][c]["lo"]) / 2,
                           n=len(r["per_seed"])) for c in SCORES}
        model, protocol = labels[row]
        pooled = r["pooled"] if row == headline and k == ks[-1] else None
        rows.append(ResultRow(model, protocol, k, r["per_seed"], scores, metrics_all_seeds=pooled))
    return rows


def paired(scored: dict, labels: dict, headline: str, ks: list[str], scope: str) -> list[dict]:
    """Headline minus each other row at each k, on the same bootstrap resamples."""
    out = []
    for (row, k), r in scored.items():
        if row == headline or (headline, k) not in scored:
            continue
        h = scored[(headline, k)]
        entry = {"scope": scope, "k": k, "headline": _label(labels[headline]), "baseline": _label(labels[row])}
        for c in SCORES:
            lo, hi = interval(h["boot"][c] - r["boot"][c])
            entry[c] = {"mean": float(h["point"][c][0] - r["point"][c][0]), "lo": lo, "hi": hi}
        out.append(entry)
    return out


def paired_records(entries: list[dict], rows: list[ResultRow]) -> list[PairedDifference]:
    """:func:`paired` entries of one scope as the ``paired_differences`` of ``metrics.json``: per-seed differences
    from the rows, the mean the point estimate, ``ci95`` the half-width of the parcel-bootstrap interval (the
    interval itself, which may be asymmetric, stays in ``parcel_scores.paired``)."""
    by_key = {r.key: r for r in rows}
    out = []
    for e in entries:
        head = (e["headline"]["model"], e["headline"]["protocol"])
        base = (e["baseline"]["model"], e["baseline"]["protocol"])
        a, b = by_key[(*head, e["k"])], by_key[(*base, e["k"])]
        theirs = {s.seed: s.scores for s in b.per_seed}
        per_seed = [SeedScores(seed=s.seed, scores={c: s.scores[c] - theirs[s.seed][c] for c in s.scores})
                    for s in a.per_seed if s.seed in theirs]
        scores = {c: Score(mean=e[c]["mean"], ci95=(e[c]["hi"] - e[c]["lo"]) / 2, n=len(per_seed)) for c in SCORES}
        out.append(PairedDifference(head, base, e["k"], per_seed, scores))
    return out


def _label(pair: tuple[str, str]) -> dict:
    return {"model": pair[0], "protocol": pair[1]}


def single_parcel_scores(stack, splits: list, preds: list, row_label: tuple[str, str]) -> list[dict]:
    """Within-parcel scores of the single-parcel classes of one stack and row, per k: recall (the share of the
    parcel's scored pixels predicted as its class) and F1 (= 2 recall / (1 + recall): no other class is scored
    there), mean, min and max over seeds. One parcel each: no CI."""
    _, single = class_kinds(stack.parcels)
    acc: dict = {}
    codes = stack.labels.codes.ravel()
    for sp, p in zip(splits, preds, strict=True):
        for c in single:
            sel = codes[sp.single] == c
            if sel.any():
                acc.setdefault((sp.k, c), []).append((float((p["single_pred"][sel] == c).mean()), int(sel.sum())))
    out = []
    for (k, c), vals in acc.items():
        rec = np.array([v for v, _ in vals])
        out.append({"stack": stack.name, **_label(row_label), "k": k, "code": c,
                    "class": stack.names[stack.codes.index(c)], "seeds": len(vals),
                    "scored_pixels": float(np.mean([n for _, n in vals])),
                    "recall": {"mean": float(rec.mean()), "min": float(rec.min()), "max": float(rec.max())},
                    "f1": float(np.mean(2 * rec / (1 + rec)))})
    return out
