"""The online probe's record, ``RUN_DIR/probe/history.json``, and the decisions read from it.

Format (accuracies as fractions; ``ci95`` the half-width of the 95% CI over draws, null for one draw)::

    {"settings": {...},
     "baselines": {"k10": {"band statistics": {"mean": .., "ci95": ..}, "RCF": {...},
                           "random init (stats1)": {...}, ...}, ...},
     "baselines_seconds": ..,
     "evaluations": [{"step": s, "minutes": m, "seconds": probe seconds, "k10": {"stats1": {"mean": .., "ci95": ..},
                      ...}, ...}, ...],
     "stopped": null | {"step": .., "minutes": .., "reason": ..},
     "best_pool": null | {"pool": .., "k": .., "mean": .., "step": ..}}

``minutes`` are wall-clock training minutes without the probe's own time; ``best_pool`` is the pool with the
highest mean at the largest k in the last evaluation (``eossl export`` records it in ``weights.json``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

__all__ = ["HISTORY_FILE", "kkey", "main_k", "new_history", "load_history", "best_pool", "beats_baselines",
           "stop_reason", "probe_summary"]

log = logging.getLogger(__name__)
HISTORY_FILE = Path("probe") / "history.json"     # inside the run directory


def kkey(k: int) -> str:
    """The key of ``k`` labelled chips per class: ``"k10"``."""
    return f"k{k}"


def main_k(history: dict) -> int:
    """The largest k of a history: the k of the stop rule, the best pool and the report."""
    return max(int(k) for k in history["settings"]["ks"])


def new_history(settings: dict) -> dict:
    return {"settings": settings, "baselines": {}, "baselines_seconds": None, "evaluations": [], "stopped": None,
            "best_pool": None}


def load_history(path: str | Path, settings: dict, max_step: int) -> dict:
    """The history at ``path`` without the evaluations after ``max_step`` (the step a resumed run restarts
    from), or a new one when there is none. A history made with other settings cannot be continued: a new one
    replaces it (logged), and its baselines are scored again."""
    path = Path(path)
    if not path.is_file():
        return new_history(settings)
    history = json.loads(path.read_text())
    if history.get("settings") != settings:
        log.warning("%s was written with other probe settings; starting a new probe history", path)
        return new_history(settings)
    dropped = [e["step"] for e in history["evaluations"] if e["step"] > max_step]
    if dropped:
        log.info("probe history: dropping the evaluations at steps %s (after the checkpoint's step %d)",
                 dropped, max_step)
    history["evaluations"] = [e for e in history["evaluations"] if e["step"] <= max_step]
    if history.get("stopped") and history["stopped"]["step"] > max_step:
        history["stopped"] = None
    history["best_pool"] = best_pool(history)
    return history


def best_pool(history: dict) -> dict | None:
    """``{"pool", "k", "mean", "step"}`` of the highest mean at the largest k in the last evaluation."""
    if not history["evaluations"]:
        return None
    last, k = history["evaluations"][-1], main_k(history)
    pool, score = max(last[kkey(k)].items(), key=lambda item: item[1]["mean"])
    return {"pool": pool, "k": k, "mean": score["mean"], "step": last["step"]}


def beats_baselines(history: dict, margin: float, patience: int) -> dict | None:
    """The stop rule of ``trainer.stop_when: beats_baselines`` on a history (the module docstring's format).

    At the largest k: the evaluation that completes ``patience`` consecutive evaluations in which the best pool's
    mean accuracy exceeds every baseline's by more than ``margin`` points (means are fractions), or None. Step 0
    (the run's random initialisation) never counts.
    """
    key = kkey(main_k(history))
    baselines = history["baselines"].get(key)
    if not baselines:
        raise ValueError(f"the stop rule needs at least one baseline at {key} to beat")
    bar = max(b["mean"] for b in baselines.values()) + margin / 100
    run = 0
    for e in history["evaluations"]:
        if e["step"] == 0:
            continue
        run = run + 1 if max(v["mean"] for v in e[key].values()) > bar + 1e-12 else 0
        if run >= patience:
            return e
    return None


def stop_reason(history: dict, margin: float, patience: int) -> str:
    k = main_k(history)
    base = history["baselines"][kkey(k)]
    name, strongest = max(base.items(), key=lambda item: item[1]["mean"])
    best = best_pool(history)
    return (f"beats_baselines: best pool {best['pool']} {100 * best['mean']:.1f}% at k={k} beat every baseline "
            f"(strongest: {name} {100 * strongest['mean']:.1f}%) by more than {margin:g} points on {patience} "
            f"consecutive evaluation(s)")


def probe_summary(run_dir: str | Path) -> tuple[dict | None, list[str]]:
    """What ``summary.json`` says about the online probe of ``run_dir`` (None without a history), and a warning
    when the last evaluation's best pool does not beat every baseline at the largest k."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return None, []
    history = json.loads(path.read_text())
    evaluations = history["evaluations"]
    out = {"history": str(path), "evaluations": len(evaluations), "best_pool": history.get("best_pool"),
           "stopped": history.get("stopped"),
           "probe_seconds": round(sum(e.get("seconds", 0.0) for e in evaluations)
                                  + (history.get("baselines_seconds") or 0.0), 1)}
    best, k = history.get("best_pool"), main_k(history)
    base = history.get("baselines", {}).get(kkey(k), {})
    if not best or not base:
        return out, []
    name, strongest = max(base.items(), key=lambda item: item[1]["mean"])
    out["strongest_baseline"] = {"name": name, **strongest}
    if best["mean"] <= strongest["mean"]:
        ci = strongest.get("ci95")
        return out, [f"online probe: the backbone's best pool ({best['pool']}, {100 * best['mean']:.1f}%) does not "
                     f"beat {name} ({100 * strongest['mean']:.1f}%"
                     f"{'' if ci is None or math.isnan(ci) else f' ± {100 * ci:.1f}'}) at k={k} after step "
                     f"{best['step']}: the features are no better than what needs no training"]
    return out, []
