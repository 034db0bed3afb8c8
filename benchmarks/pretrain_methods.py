"""Every SSL method on the built-in default's budget and data, over several training seeds: the few-label
EuroSAT-MS probe (k = 5 and 10, 20 draws) in the pool each run's online probe recorded, paired against per-band
statistics, random convolutional features and the same architecture randomly initialised, and seconds per
training step (the online probe's time left out).

    .venv/bin/python benchmarks/pretrain_methods.py --out runs/methods                 # every method, seeds 0 1
    .venv/bin/python benchmarks/pretrain_methods.py --methods vicreg simclr --seeds 0 1 2 --out runs/methods

Each run is ``eossl pretrain --config configs/pretrain/default.yaml --set method.name=M --set trainer.seed=S
--set corpus.sampler.seed=S`` plus what the method needs to run at all (:data:`NEEDS`: ViT-only methods on
``vit_tiny_patch8``, one view for the pretext tasks and the masked methods, the ``upright`` views for rotation
prediction). Everything else is the default's: 384 steps of batch 128, its views, LARS. Runs that already have
``summary.json`` under ``--out`` are reused, and so are their scores in ``methods.json`` (same runs, draws and
ks; rows of older versions without per-draw accuracies are rescored), so the script can be rerun to add methods
or seeds; the rows that do not depend on the weights (band
statistics, RCF, random inits) are computed once per architecture in a process. Roughly 4-10
minutes per run on a 2-core CPU: start it in the background (``nohup ... &``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain_quality import paired, quality  # noqa: E402

from eossl.methods import METHODS  # noqa: E402
from eossl.models.weights import read_weights_info  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "default.yaml"
VIT = ["model.arch=vit_tiny_patch8"]
NEEDS = {"mae": [*VIT, "views.n_views=1"], "ijepa": [*VIT, "views.n_views=1"],
         "rotation": ["views.n_views=1", "views.preset=upright"], "jigsaw": ["views.n_views=1"]}
ROWS = {"vs band statistics": "band stats", "vs RCF": "RCF", "vs random init": "random init"}
BASELINES: dict = {}      # the weights-independent rows of quality(), computed once per process


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--versus", default="vicreg",
                   help="method every row is also paired with, draw by draw (default: the built-in default's)")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def train(method: str, seed: int, out: Path, overrides: list[str]) -> Path:
    run = out / f"{method}-seed{seed}"
    if not (run / "summary.json").is_file():
        cmd = [sys.executable, "-m", "eossl", "pretrain", "--config", str(CONFIG), "--run-dir", str(run)]
        for o in [f"method.name={method}", f"trainer.seed={seed}", f"corpus.sampler.seed={seed}",
                  "trainer.progress_bar=false", *NEEDS.get(method, []), *overrides]:
            cmd += ["--set", o]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        # the chip cache (1.7 GB per run at the default's 8192 chips) is only needed to resume; a finished run's
        # weights and summary are what is scored, and the seeded sampler rebuilds the cache if ever needed
        shutil.rmtree(run / "cache", ignore_errors=True)
    return run


def score(method: str, runs: list[Path], ks: list[int], draws: int) -> dict:
    """The method's row: recorded pools, seconds per step, and at each k the accuracy and paired differences in
    the pool most of its runs recorded (the first run's on a tie)."""
    weights = [r / "weights" for r in runs]
    recorded = [read_weights_info(w).feature_pool for w in weights]
    pool = Counter(recorded).most_common(1)[0][0] if len(set(recorded)) < len(recorded) else recorded[0]
    q = quality(weights, pools=[pool], ks=tuple(ks), draws=draws, baselines=BASELINES)
    row = {"method": method, "arch": read_weights_info(weights[0]).arch, "pool": pool, "recorded": recorded,
           "seeds": len(runs), "runs": [str(r) for r in runs],
           "draws": draws, "ks": list(ks), "k": {}}
    for k in ks:
        acc, paired = q["k"][k]["accuracy"], q["k"][k]["paired"][pool]
        row["k"][k] = {"accuracy": acc[f"pretrained ({pool})"], "per_seed": paired["per_weights"],
                       "per_draw": [float(a) for a in q["k"][k]["per_draw"][pool]],
                       **{ROWS[name]: paired[name] for name in ROWS},
                       "band statistics": acc["band statistics"]}
    return row


def seconds_per_step(run: Path) -> float:
    """Training seconds per step of one run as its summary recorded them, the online probe's time left out."""
    s = json.loads((Path(run) / "summary.json").read_text())
    return (s["seconds_this_attempt"] - s.get("probe_seconds_this_attempt", 0.0)) / s["steps_this_attempt"]


def table(rows: list[dict], ks: list[int], versus: str = "vicreg") -> str:
    """Markdown tables per k; s/step per training seed (a run that shared the CPU shows up as an outlier). The
    column ``- <versus>`` pairs each method with the ``versus`` method draw by draw (same EuroSAT draws, each
    method's accuracy averaged over its training seeds, possibly in different pools)."""
    ref = next((r for r in rows if r["method"] == versus), None)
    lines = []
    for k in ks:
        lines += [f"\n### k = {k}\n", "| method | arch | pool (recorded per seed) | accuracy % | per seed | - band stats "
                  f"| - RCF | - random init | - {versus} | s/step per seed |",
                  "|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            c = r["k"][k]
            vs = paired(c["per_draw"], ref["k"][k]["per_draw"]) if ref is not None and r is not ref else None
            diffs = " | ".join([*(f"{c[v][0]:+.1f} ± {c[v][1]:.1f}" for v in ROWS.values()),
                                f"{vs[0]:+.1f} ± {vs[1]:.1f}" if vs else ""])
            lines.append(f"| {r['method']} | {r['arch']} | {r['pool']} ({', '.join(r['recorded'])}) | "
                         f"{c['accuracy'][0]:.1f} | {' / '.join(f'{v:.1f}' for v in c['per_seed'])} | {diffs} | "
                         f"{' / '.join(f'{seconds_per_step(run):.2f}' for run in r['runs'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = args.methods or METHODS.names()
    unknown = [m for m in methods if m not in METHODS.names()]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(METHODS.names())}")
    args.out.mkdir(parents=True, exist_ok=True)
    done = args.out / "methods.json"
    # rows scored earlier from the same runs, draws and ks are kept (rows of older versions lack "runs": rescored)
    earlier = {r["method"]: r for r in json.loads(done.read_text())} if done.is_file() else {}
    rows = []
    for method in methods:
        runs = [train(method, s, args.out, args.set) for s in args.seeds]
        old = earlier.get(method)
        if old and old.get("runs") == [str(r) for r in runs] and old.get("draws") == args.draws \
                and old.get("ks") == list(args.ks) and all("per_draw" in v for v in old["k"].values()):
            rows.append({**old, "k": {int(k): v for k, v in old["k"].items()}})     # JSON keys are strings
        else:
            rows.append(score(method, runs, args.ks, args.draws))
        (args.out / "methods.json").write_text(json.dumps(rows, indent=2))   # after every method: partial results
        print(table(rows[-1:], args.ks, args.versus), flush=True)
    text = table(rows, args.ks, args.versus)
    (args.out / "methods.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
