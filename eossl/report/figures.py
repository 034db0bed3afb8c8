"""Evaluation figures: confusion matrix, few-label curve, training curves and the online probe (PNG, written
atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eossl.report.rows import ResultRow  # noqa: E402
from eossl.runs import atomic_write  # noqa: E402

__all__ = ["save_confusion_matrix", "save_few_label_curve", "save_figure", "save_probe_curves",
           "save_training_curves"]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def save_confusion_matrix(path: str | Path, matrix, classes: list[str], title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class) with the counts written in the cells."""
    cm = np.asarray(matrix, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return save_figure(fig, path)


def save_few_label_curve(path: str | Path, results: list[ResultRow], score: str = "overall_accuracy",
                         title: str = "") -> Path:
    """One line per (model, protocol): mean ``score`` against labels per class, with its 95% CI as a band.

    ``results``: the rows of an evaluation (``k`` "5"/"all"); "all" is placed at its mean number of training
    samples (``per_seed`` ``n_train``) per class.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    lines: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    n_classes = next((len(r.classes) for r in results if r.classes is not None), None)
    for r in results:
        if r.k == "all":
            x = float(np.mean([p.n_train for p in r.per_seed])) / (n_classes or 1)
        else:
            x = float(r.k)
        s = r.score(score)
        lines.setdefault((r.model, r.protocol), []).append((x, s.mean, s.ci95 or 0.0))
    ticks: set[float] = set()
    for (model, protocol), pts in lines.items():
        pts.sort()
        x, y, c = (np.array(v) for v in zip(*pts))
        # pretrained solid; fusion (band statistics + a model's features) dotted; every other baseline dashed
        style = ":" if " + " in model else "-" if model.startswith("pretrained") else "--"
        (line,) = ax.plot(x, 100 * y, style, marker="o", label=f"{model} / {protocol}")
        ax.fill_between(x, np.clip(100 * (y - c), 0, 100), np.clip(100 * (y + c), 0, 100), color=line.get_color(),
                        alpha=0.15)
        ticks.update(x.tolist())
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("labelled samples per class")
    ax.set_ylabel(f"{score.replace('_', ' ')} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_training_curves(path: str | Path, metrics_csvs: list[str | Path], title: str = "") -> Path:
    """Loss, learning rate and the collapse monitors (std of normalised embeddings, effective rank) against the
    step (or epoch, for logs without steps), from Lightning CSV logs (one file per attempt of a resumed run; later attempts win on shared steps)."""
    import pandas as pd

    frames = [pd.read_csv(p) for p in metrics_csvs if Path(p).is_file()]
    if not frames:
        raise FileNotFoundError(f"no training log among {[str(p) for p in metrics_csvs]}")
    log = pd.concat(frames, ignore_index=True)
    panels = [(c, label) for c, label in (("loss", "loss"), ("lr", "learning rate"),
                                          ("embedding_std", "std of normalised embeddings"),
                                          ("effective_rank", "effective rank")) if c in log.columns]
    if not panels:   # e.g. a run shorter than trainer.log_every_n_steps whose log holds only its online probe
        raise ValueError(f"no loss, learning rate or monitor column in {[str(p) for p in metrics_csvs]}")
    x = "step" if "step" in log.columns else "epoch"
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8))
    for ax, (col, label) in zip(np.atleast_1d(axes), panels):
        s = log[[x, col]].dropna().drop_duplicates(x, keep="last").sort_values(x)
        ax.plot(s[x], s[col], lw=1.2)
        ax.set_xlabel(x)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def save_probe_curves(path: str | Path, history: dict, title: str = "") -> Path:
    """The online probe of a pretraining run (``probe/history.json``, :mod:`eossl.train.probe_history`): accuracy
    at the largest k against optimiser steps and against training minutes (without the probe's time), one line
    per pool; the baselines as horizontal bands (mean +- 95% CI), a random init in a pool in that pool's colour
    (dashed), the others grey; the step where ``trainer.stop_when`` stopped training as a dotted line."""
    k = max(int(v) for v in history["settings"]["ks"])
    key = f"k{k}"
    evals = history["evaluations"]
    if not evals:
        raise ValueError("the probe history holds no evaluation to plot")
    pools = list(evals[0][key])
    colour = {p: f"C{i % 10}" for i, p in enumerate(pools)}
    baselines = history.get("baselines", {}).get(key, {})
    greys = iter(["0.3", "0.6", "0.1", "0.8"] * (1 + len(baselines) // 4))
    shade = {n: colour.get(n[n.find("(") + 1:-1] if n.endswith(")") else "") or next(greys) for n in baselines}
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), sharey=True)
    for ax, x, label in zip(axes, ("step", "minutes"), ("optimiser step", "training minutes (probe time excluded)")):
        xs = [e[x] for e in evals]
        for pool in pools:
            ax.plot(xs, [100 * e[key][pool]["mean"] for e in evals], "-", marker="o", ms=3, color=colour[pool],
                    label=pool)
        for name, b in baselines.items():
            m, ci = 100 * b["mean"], 100 * (b.get("ci95") or 0.0)
            ax.axhspan(m - ci, m + ci, color=shade[name], alpha=0.08 if shade[name] in colour.values() else 0.15,
                       lw=0)
            ax.axhline(m, ls="--", lw=1.0, color=shade[name], label=name)
        if history.get("stopped"):
            ax.axvline(history["stopped"][x], ls=":", color="k", lw=1.0, label="stopped (trainer.stop_when)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    means = [100 * e[key][p]["mean"] for e in evals for p in pools]
    means += [100 * b["mean"] for b in baselines.values()]
    axes[0].set_ylim(max(0.0, min(means) - 5), min(100.0, max(means) + 5))   # the means, not the widest CI
    axes[0].set_ylabel(f"probe accuracy at k={k} (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(title or f"online probe, k={k} labelled chips per class "
                          f"({history['settings'].get('draws')} draws; bands: baselines, mean ± 95% CI)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
