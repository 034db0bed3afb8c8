"""``eossl finetune``: fine-tune exported weights (or train from scratch) on labelled chips; save the classifier."""

from __future__ import annotations

import argparse

import yaml

from eossl.config import to_dict
from eossl.pipeline.commands import COMMANDS
from eossl.runs import marks_failure, new_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=COMMANDS["finetune"].help,
        description="Fine-tune a backbone + linear head on k labelled chips per class (default: all of the "
                    "training pool) with AdamW, cosine schedule and layer-wise LR decay, score a stratified "
                    "hold-out, and save the classifier (model/) for `eossl predict`. Without --config: the "
                    "built-in EuroSAT-MS sample.")
    p.add_argument("--config", help="fine-tuning config YAML (see configs/finetune/)")
    p.add_argument("--weights", help="exported weights directory (same as --set weights=DIR); none: from scratch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set k=10 --set finetune.epochs=50; repeatable")
    p.add_argument("--runs", default="runs", help="parent folder of new run directories (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run, command="finetune")


def run(args: argparse.Namespace) -> int:
    from eossl.evaluate.config import FinetuneConfig, config_with_weights
    from eossl.evaluate.runs import run_finetune

    cfg = config_with_weights(FinetuneConfig, args.config, args.set, args.weights)
    if args.dry_run:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    run_dir = new_run_dir(args.runs, "finetune")
    print(f"run directory: {run_dir}")
    with marks_failure(run_dir):
        out = run_finetune(cfg, run_dir, progress=not args.no_progress)
    m = out["metrics"]
    print(f"done in {out['seconds']} s: hold-out ({out['n_test']} chips) overall accuracy "
          f"{100 * m['overall_accuracy']:.1f}%, macro-F1 {100 * m['macro_f1']:.1f}%, kappa {m['kappa']:.3f}; "
          f"classifier in {out['model']} (for eossl predict), metrics in {run_dir / 'metrics.json'}")
    return 0
