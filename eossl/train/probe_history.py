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
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["HISTORY_FILE", "kkey", "main_k", "new_history", "load_history", "best_pool", "beats_baselines",
           "stop_reason", "probe_summary", "Comparison", "ProbeVerdict", "probe_verdict", "run_verdict"]

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


# what the verdict compares the recorded pool with, in this order; names as eossl.evaluate.online_probe records them
# (BASELINE_NAMES, not imported: that module imports this one)
INIT = "its initialisation"
VERDICT_BASELINES = ("RCF", "band statistics", "random init")


@dataclass(frozen=True)
class Comparison:
    """The recorded pool's final mean accuracy (``score``) against one reference (``other``), fractions."""
    against: str                # "its initialisation" (the same pool at step 0), "RCF", "band statistics", ...
    score: float
    other: float

    @property
    def points(self) -> float:
        return round(100 * (self.score - self.other), 2)

    @property
    def beat(self) -> bool:     # strictly above, as probe_summary's warning reads it
        return self.score > self.other

    def phrase(self) -> str:
        if self.against == INIT:
            return f"{INIT} ({100 * self.score:.1f}% vs {100 * self.other:.1f}% at step 0)"
        return f"{self.against} ({100 * self.other:.1f}%)"

    def to_dict(self) -> dict:
        return {**asdict(self), "points": self.points, "beat": self.beat}


@dataclass(frozen=True)
class ProbeVerdict:
    """Did pretraining beat its initialisation and the cheap baselines, in the recorded pool at the largest k?"""
    pool: str
    k: int
    step: int
    score: float
    comparisons: tuple[Comparison, ...]
    missing: tuple[str, ...]    # references the history does not hold

    @property
    def beat_all(self) -> bool:
        return bool(self.comparisons) and all(c.beat for c in self.comparisons)

    def sentence(self) -> str:
        """One plain sentence: what pretraining did not beat, what it beat, what was not recorded."""
        lost = [c.phrase() for c in self.comparisons if not c.beat]
        won = [c.phrase() for c in self.comparisons if c.beat]
        parts = []
        if lost:
            parts.append("pretraining did not beat " + _join(lost, "nor"))
        if won:
            parts.append(("it beat " if lost else "pretraining beat ") + _join(won, "and"))
        if self.missing:
            parts.append("nothing to compare with: " if not self.comparisons else "not recorded: ")
            parts[-1] += ", ".join("an evaluation at step 0" if m == INIT else m for m in self.missing)
        return (f"online probe verdict: {'; '.join(parts)} [pool {self.pool} "
                f"{100 * self.score:.1f}% at k={self.k}, step {self.step}]")

    def to_dict(self) -> dict:
        return {"pool": self.pool, "k": self.k, "step": self.step, "score": self.score, "beat_all": self.beat_all,
                "comparisons": [c.to_dict() for c in self.comparisons], "missing": list(self.missing),
                "sentence": self.sentence()}


def _join(items: list[str], word: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def probe_verdict(history: dict) -> ProbeVerdict | None:
    """The verdict of a history (the module docstring's format), None without an evaluation. The recorded pool's
    last mean at the largest k against, in order: the same pool at step 0, RCF, band statistics and the random
    initialisation of that pool; a reference the history lacks is listed in ``missing``."""
    best = history.get("best_pool") or best_pool(history)
    if not best:
        return None
    pool, key = best["pool"], kkey(best["k"])
    step0 = next((e for e in history["evaluations"] if e["step"] == 0), None)
    base = history.get("baselines", {}).get(key, {})
    refs = {INIT: step0.get(key, {}).get(pool) if step0 is not None and best["step"] > 0 else None,
            **{name: base.get(f"{name} ({pool})" if name == "random init" else name) for name in VERDICT_BASELINES}}
    comparisons = tuple(Comparison(name, best["mean"], ref["mean"]) for name, ref in refs.items() if ref)
    missing = tuple(name for name, ref in refs.items() if not ref)
    return ProbeVerdict(pool, best["k"], best["step"], best["mean"], comparisons, missing)


def run_verdict(run_dir: str | Path) -> ProbeVerdict | None:
    """:func:`probe_verdict` of ``RUN_DIR/probe/history.json``, None without one."""
    path = Path(run_dir) / HISTORY_FILE
    return probe_verdict(json.loads(path.read_text())) if path.is_file() else None
