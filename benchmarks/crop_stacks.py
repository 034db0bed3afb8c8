"""Few-label crop types on the two labelled Flanders stacks, scored across parcels (``task: stack``, issue 25).

Runs ``eossl evaluate`` with configs/evaluate/flanders_stacks.yaml (both shared stacks, 10-day composites,
parcels >= 20 px, leave-one-parcel-out per class, 2 px buffer, k = 5, 10, 20, 50, seeds fixed in advance) and the
given series weights (or none: the baseline rows only, headline the raw series), then writes ``OUT/table.md``:
parcel-disjoint macro-F1 over the multi-parcel classes pooled over the stacks and per stack with 95% bootstrap
intervals over test parcels, the headline minus each row (paired, same resamples), and the single-parcel classes'
within-parcel recall, apart. ``OUT/metrics.json`` holds everything.

    .venv/bin/python benchmarks/crop_stacks.py --weights DIR --seeds 20 --out runs/crop_stacks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eossl.config import load_config  # noqa: E402
from eossl.evaluate.config import EvaluateConfig  # noqa: E402
from eossl.evaluate.runs import run_evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "evaluate" / "flanders_stacks.yaml"
SHARED = ROOT.parent / "shared" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="exported series weights (eossl pretrain-series); none: baselines")
    p.add_argument("--seeds", type=int, default=20, help="fixed before any result (the protocol's 20)")
    p.add_argument("--ks", nargs="+", default=["5", "10", "20", "50"])
    p.add_argument("--period", default="10D")
    p.add_argument("--rows", nargs="+", default=None, help="rows to score (default: every row)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--set", action="append", default=[], help="another override of the evaluate config (KEY=VALUE)")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def _interval(v: dict) -> str:
    return f"{100 * v['mean']:.1f} [{100 * v['lo']:.1f}, {100 * v['hi']:.1f}]"


def _diff(v: dict) -> str:
    mark = " *" if v["lo"] > 0 or v["hi"] < 0 else ""
    return f"{100 * v['mean']:+.1f} [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}]{mark}"


def scores_table(ps: dict, scope: str, ks: list[str], score: str = "macro_f1") -> list[str]:
    rows = [r for r in ps["rows"] if r["scope"] == scope]
    names = list(dict.fromkeys(f"{r['model']} / {r['protocol']}" for r in rows))
    cell = {(f"{r['model']} / {r['protocol']}", r["k"]): _interval(r[score]) for r in rows}
    out = [f"| {scope}: {score.replace('_', ' ')} % [95% CI] | " + " | ".join(f"k={k}" for k in ks) + " |",
           "|---|" + "---|" * len(ks)]
    return out + [f"| {n} | " + " | ".join(cell.get((n, k), "-") for k in ks) + " |" for n in names]


def paired_table(ps: dict, scope: str, ks: list[str]) -> list[str]:
    rows = [r for r in ps["paired"] if r["scope"] == scope]
    if not rows:
        return []
    head = rows[0]["headline"]
    names = list(dict.fromkeys(f"{r['baseline']['model']} / {r['baseline']['protocol']}" for r in rows))
    cell = {(f"{r['baseline']['model']} / {r['baseline']['protocol']}", r["k"]): _diff(r["macro_f1"]) for r in rows}
    out = [f"| {scope}: {head['model']} / {head['protocol']} minus, macro-F1 points [95% CI] | "
           + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    return out + [f"| {n} | " + " | ".join(cell.get((n, k), "-") for k in ks) + " |" for n in names]


def single_table(ps: dict, ks: list[str]) -> list[str]:
    cell, names = {}, []
    for r in ps["single_parcel"]:
        name = f"{r['stack']}: {r['class']} | {r['model']} / {r['protocol']}"
        names.append(name)
        cell[(name, r["k"])] = f"{100 * r['recall']['mean']:.0f} ({r['scored_pixels']:.0f} px)"
    out = ["| single-parcel class (scored within its parcel only): recall % (scored px) | model | "
           + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    return out + [f"| {n} | " + " | ".join(cell.get((n, k), "-") for k in ks) + " |" for n in dict.fromkeys(names)]


def markdown(metrics: dict, seconds: float) -> str:
    ps, ks = metrics["parcel_scores"], metrics["settings"]["ks"]
    head = metrics["settings"]["headline_row"]
    lines = [f"# Crop types across parcels: {metrics['settings']['seeds']} seeds, headline "
             f"{head['model']} / {head['protocol']} (named before scoring), {seconds / 60:.1f} min", "",
             "Parcel-disjoint scores over the multi-parcel classes; 95% CIs from a bootstrap over test parcels "
             f"({ps['scopes'][0]['resamples']} resamples); * = the paired CI excludes zero.", ""]
    for sc in [s["scope"] for s in ps["scopes"]][::-1]:
        lines += scores_table(ps, sc, ks) + [""] + scores_table(ps, sc, ks, "overall_accuracy") + [""]
        lines += paired_table(ps, sc, ks) + [""]
    lines += single_table(ps, ks) + [""]
    lines += ["Warnings:", *[f"- [{w['code']}] {w['message']}" for w in metrics["warnings"]]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    sets = [f"seeds={args.seeds}", f"ks=[{', '.join(args.ks)}]", f"stack.period={args.period}",
            f"stack.resamples={args.resamples}", "device=cpu",
            f"stack.stacks=[{{path: {SHARED / 'worldcereal_lpis_flanders2018'}, variable: CT}}, "
            f"{{path: {SHARED / 'worldcereal_lpis_flanders2019'}, variable: CT}}]", *args.set]
    if args.weights:
        sets.append(f"weights={args.weights}")
    if args.rows:
        sets.append(f"stack.rows=[{', '.join(args.rows)}]")
    cfg = load_config(EvaluateConfig, CONFIG, overrides=sets)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ev = run_evaluate(cfg, args.out, progress=False)
    text = markdown(ev.metrics, time.time() - start)
    (args.out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
