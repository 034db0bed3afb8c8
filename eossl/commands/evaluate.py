"""``eossl evaluate``: few-label evaluation of exported weights beside the baselines (probe, kNN, fine-tuning)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from eossl.config import to_dict
from eossl.pipeline.commands import COMMANDS
from eossl.runs import marks_failure, new_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"].help,
        description="Score exported weights with few labels (k per class, several seeds, mean and 95%% CI) beside "
                    "the same architecture randomly initialised, per-band statistics, random convolutional features "
                    "(RCF), band statistics fused with the features and supervised training from scratch, all on "
                    "identical splits, with paired differences. Without --config: the built-in EuroSAT-MS sample. Writes "
                    "metrics.json, few_label_curve.png, confusion_matrix.png and table.txt into a new run directory.")
    p.add_argument("--config", help="evaluation config YAML (see configs/evaluate/)")
    p.add_argument("--weights", help="exported weights directory (same as --set weights=DIR)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set ks=[1,5,10] --set seeds=3; repeatable")
    p.add_argument("--runs", default="runs", help="parent folder of new run directories (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run, command="evaluate")


def run(args: argparse.Namespace) -> int:
    from eossl.evaluate.config import EvaluateConfig, config_with_weights
    from eossl.evaluate.runs import results_table, run_evaluate

    cfg = config_with_weights(EvaluateConfig, args.config, args.set, args.weights)
    if args.dry_run:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    run_dir = new_run_dir(args.runs, "evaluate")
    print(f"run directory: {run_dir}")
    with marks_failure(run_dir):
        out = run_evaluate(cfg, run_dir, cache_dir=Path(args.runs) / "cache" / "features",
                           progress=not args.no_progress)
    print(results_table(out["results"]))
    print(f"done in {out['seconds']} s: {run_dir} (metrics.json, few_label_curve.png, confusion_matrix.png, "
          f"table.txt)")
    return 0
