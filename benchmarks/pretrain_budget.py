"""Budget curve: probe accuracy of pretraining recipes at several step budgets, beside the cheap baselines.

Each recipe (a pretraining config) is trained with a full schedule at ``--multiples`` x ``--base-steps`` optimiser
steps (one run per budget: the cosine schedule completes in each), or the snapshots of one long run
(``--snapshots RUN_DIR``, checkpoints kept with ``trainer.keep_every_n_steps``; their LR had not decayed yet, so
they understate a completed run of that length). Every point is scored by ``pretrain_quality.quality`` (EuroSAT-MS,
k = 5 and 10, 20 draws, paired against band statistics, RCF and random init) and plotted against steps and
against training minutes, the baselines as horizontal bands.

    .venv/bin/python benchmarks/pretrain_budget.py --recipe default=configs/pretrain/default.yaml \\
        --recipe quality=configs/pretrain/quality.yaml --multiples 1 4 16 --out runs/budget
    .venv/bin/python benchmarks/pretrain_budget.py --snapshots runs/quality-run --out runs/budget-snapshots
    .venv/bin/python benchmarks/pretrain_budget.py --history default=runs/default-run quality=runs/quality-run \
        --out runs/budget-online

``--history NAME=RUN_DIR`` plots the online probe of finished runs (``RUN_DIR/probe/history.json``: 10 draws, the
run's own baselines; no training, seconds to draw): the cheapest curve, one schedule per run.

Runs that already have ``summary.json`` under ``--out`` are reused, so the script can be rerun to add points.
Long: 16x the default is about 2 hours per recipe on a 2-core CPU; start it in the background.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain_quality import quality  # noqa: E402

BASELINES = ("band statistics", "RCF 512 (training-split filters)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", default=[], metavar="NAME=CONFIG", help="repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every recipe")
    p.add_argument("--history", nargs="+", default=[], metavar="NAME=RUN_DIR",
                   help="plot the online-probe histories of these runs instead of training or scoring")
    p.add_argument("--snapshots", type=Path, help="score the kept step-*.ckpt of this run instead of training")
    p.add_argument("--base-steps", type=int, default=192, help="the built-in default's steps")
    p.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--pools", nargs="+", default=["last", "multi", "stats0", "stats1", "stats2"])
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--replot", type=Path, metavar="BUDGET_JSON", help="redraw budget.png from a budget.json")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def with_random_init(result: dict) -> dict:
    """The random init of each pool (the same draws and init seeds at every point) as dotted baseline lines."""
    first = next((pts[0] for pts in result["curves"].values() if pts and "random init" in pts[0]), None)
    if first is not None:
        for k, pools in first["random init"].items():
            result["baselines"][k].update({f"random init ({p})": v for p, v in pools.items()})
    return result


def train(name: str, config: str, steps: int, out: Path, overrides: list[str]) -> Path:
    run = out / f"{name}-{steps}"
    if not (run / "summary.json").is_file():
        cmd = [sys.executable, "-m", "eossl", "pretrain", "--config", config, "--run-dir", str(run),
               "--set", f"trainer.max_steps={steps}", "--set", "trainer.progress_bar=false"]
        for o in overrides:
            cmd += ["--set", o]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return run


def snapshot_points(run: Path, out: Path) -> list[tuple[int, float, Path]]:
    """(step, minutes, weights) for every kept checkpoint of ``run`` (minutes pro rata of the run's pace)."""
    summary = json.loads((run / "summary.json").read_text())
    pace = summary["seconds_this_attempt"] / 60 / max(1, summary["steps_this_attempt"])
    points = []
    for ckpt in sorted((run / "checkpoints").glob("step-*.ckpt")):
        step = int(ckpt.stem.split("-")[-1].split("=")[-1])
        weights = out / f"snapshot-{step}"
        if not (weights / "weights.json").is_file():
            subprocess.run([sys.executable, "-m", "eossl", "export", str(run), "--out", str(weights),
                            "--checkpoint", str(ckpt)], check=True)
        points.append((step, step * pace, weights))
    return points


def from_histories(specs: list[str], pools: list[str], ks: list[int]) -> dict:
    """The plot's input from online-probe histories: every evaluation is a point (its minutes exclude probing)."""
    curves, baselines = {}, {}
    for spec in specs:
        name, run = spec.split("=", 1)
        h = json.loads((Path(run) / "probe" / "history.json").read_text())
        curves[name] = [{"steps": e["step"], "minutes": e["minutes"],
                         "k": {k: {p: (100 * e[f"k{k}"][p]["mean"], 100 * (e[f"k{k}"][p]["ci95"] or 0))
                                   for p in pools} for k in ks}} for e in h["evaluations"]]
        for k in ks:
            b = h["baselines"][f"k{k}"]
            baselines.setdefault(k, {n: (100 * b[n]["mean"], 100 * (b[n]["ci95"] or 0))
                                     for n in ("band statistics", "RCF")})
            for p in pools:   # the random init of the run's own seed, in each pool
                baselines[k].setdefault(f"random init ({p})", (100 * b[f"random init ({p})"]["mean"], 0.0))
    return {"curves": curves, "baselines": baselines, "pools": pools, "ks": ks, "draws": h["settings"]["draws"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        result = json.loads(args.replot.read_text())
        result["ks"] = [str(k) for k in result["ks"]]
        plot(with_random_init(result), args.out / "budget.png")
        print(f"wrote {args.out / 'budget.png'}")
        return 0
    if args.history:
        result = from_histories(args.history, args.pools, args.ks)
        (args.out / "budget.json").write_text(json.dumps(result, indent=2))
        plot(result, args.out / "budget.png")
        print(f"wrote {args.out / 'budget.json'} and {args.out / 'budget.png'}")
        return 0
    curves: dict[str, list[dict]] = {}
    if args.snapshots:
        curves[f"{args.snapshots.name} (snapshots)"] = [
            {"steps": s, "minutes": m, "weights": str(w)} for s, m, w in snapshot_points(args.snapshots, args.out)]
    for spec in args.recipe:
        name, config = spec.split("=", 1)
        curves[name] = []
        for mult in args.multiples:
            run = train(name, config, mult * args.base_steps, args.out, args.set)
            summary = json.loads((run / "summary.json").read_text())
            curves[name].append({"steps": summary["global_step"], "minutes": summary["seconds_this_attempt"] / 60,
                                 "weights": str(run / "weights")})
    baselines = None
    for name, points in curves.items():
        for pt in points:
            q = quality([Path(pt["weights"])], args.pools, args.ks, args.draws)
            pt["k"] = {k: {p: q["k"][k]["accuracy"][f"pretrained ({p})"] for p in args.pools} for k in args.ks}
            pt["random init"] = {k: {p: q["k"][k]["accuracy"][f"random init ({p})"] for p in args.pools}
                                 for k in args.ks}
            baselines = {k: {b: q["k"][k]["accuracy"][b] for b in BASELINES} for k in args.ks}
            print(name, pt["steps"], {k: {p: round(v[0], 1) for p, v in d.items()} for k, d in pt["k"].items()},
                  flush=True)
    result = {"curves": curves, "baselines": baselines, "pools": args.pools, "ks": args.ks, "draws": args.draws}
    (args.out / "budget.json").write_text(json.dumps(result, indent=2))
    plot(with_random_init(result), args.out / "budget.png")
    print(f"wrote {args.out / 'budget.json'} and {args.out / 'budget.png'}")
    return 0


def plot(result: dict, path: Path) -> None:
    ks = result["ks"]
    fig, axes = plt.subplots(len(ks), 2, figsize=(11, 3.6 * len(ks)), squeeze=False)
    for row, k in enumerate(ks):
        for col, x in enumerate(("steps", "minutes")):
            ax = axes[row][col]
            for i, (b, (m, ci)) in enumerate(result["baselines"][k].items()):
                if b.startswith("random init"):   # per pool: a dotted line in the pool's colour
                    pool = b[len("random init ("):-1]
                    if pool in result["pools"]:
                        ax.axhline(m, color=f"C{result['pools'].index(pool)}", ls=":", lw=1,
                                   label=f"random init ({pool}) {m:.1f}")
                    continue
                ax.axhspan(m - ci, m + ci, color=("0.5", "C8")[i % 2], alpha=0.25, label=f"{b} {m:.1f} ± {ci:.1f}")
            for ci_, (name, points) in enumerate(result["curves"].items()):
                for pi, pool in enumerate(result["pools"]):
                    xs = [p[x] for p in points]
                    ys = [p["k"][k][pool][0] for p in points]
                    ax.plot(xs, ys, marker="o", color=f"C{pi}", ls=("-", "--", ":")[ci_ % 3],
                            label=f"{name} ({pool})")
            ax.set_xlabel("optimiser steps" if x == "steps" else "training minutes (2-core CPU)")
            ax.set_ylabel(f"probe accuracy %, k = {k}")
            ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
