"""``eossl evaluate`` (few-label evaluation of exported weights beside the baselines: probe, kNN, fine-tuning) and
``eossl finetune`` (fine-tune exported weights, or train from scratch, on labelled chips; save the classifier)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config
from eossl.pipeline.commands import COMMANDS
from eossl.runs import marks_failure, new_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    _register(sub, "evaluate", run, "evaluation", "--set ks=[1,5,10] --set seeds=3", "",
              "Score exported weights with few labels (k per class, several seeds, mean and 95%% CI) beside the "
              "same architecture randomly initialised, per-band statistics, random convolutional features (RCF), "
              "band statistics fused with the features and supervised training from scratch, all on identical "
              "splits, with paired differences. Without --config: the built-in EuroSAT-MS sample. Writes "
              "metrics.json, few_label_curve.png, confusion_matrix.png and table.txt into a new run directory.")


def register_finetune(sub: argparse._SubParsersAction) -> None:
    _register(sub, "finetune", run_finetune, "fine-tuning", "--set k=10 --set finetune.epochs=50",
              "; none: from scratch",
              "Fine-tune a backbone + linear head on k labelled chips per class (default: all of the training "
              "pool) with AdamW, cosine schedule and layer-wise LR decay, score a stratified hold-out, and save "
              "the classifier (model/) for `eossl predict`. Without --config: the built-in EuroSAT-MS sample.")


def _register(sub, name: str, func, what: str, example: str, no_weights: str, description: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name].help, description=description)
    config_flags(p, f"{what} config YAML (see configs/{name}/)", f"dotted override, e.g. {example}; repeatable",
                 runs="new run directories")
    p.add_argument("--weights", help=f"exported weights directory (same as --set weights=DIR), or published weights "
                                     f"torchgeo:<WeightsEnum name>, e.g. torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO"
                                     f"{no_weights}")
    p.add_argument("--weights-file", help="local file of the torchgeo:NAME weights (machines without internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=func, command=name)


def _config_and_run_dir(args: argparse.Namespace, cls):
    """(config, a new run directory), or (config, None) under --dry-run."""
    from eossl.evaluate.config import config_with_weights

    cfg = config_with_weights(cls, args.config, args.set, args.weights, args.weights_file, resolve=not args.dry_run)
    if args.dry_run:
        return cfg, None
    run_dir = new_run_dir(args.runs, args.command)
    print(f"run directory: {run_dir}")
    return cfg, run_dir


def run(args: argparse.Namespace) -> int:
    from eossl.evaluate.config import EvaluateConfig
    from eossl.evaluate.runs import results_table, run_evaluate

    cfg, run_dir = _config_and_run_dir(args, EvaluateConfig)
    if run_dir is None:
        return print_config(cfg)
    with marks_failure(run_dir):
        out = run_evaluate(cfg, run_dir, cache_dir=Path(args.runs) / "cache" / "features",
                           progress=not args.no_progress)
    print(results_table(out["results"], out.get("settings", {}).get("headline", "overall_accuracy")))
    print(f"done in {out['seconds']} s: {run_dir} (metrics.json, few_label_curve.png, confusion_matrix.png, "
          f"table.txt)")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from eossl.evaluate.config import FinetuneConfig
    from eossl.evaluate.runs import run_finetune

    cfg, run_dir = _config_and_run_dir(args, FinetuneConfig)
    if run_dir is None:
        return print_config(cfg)
    with marks_failure(run_dir):
        out = run_finetune(cfg, run_dir, progress=not args.no_progress)
    m = out["metrics"]
    print(f"done in {out['seconds']} s: hold-out ({out['n_test']} chips) overall accuracy "
          f"{100 * m['overall_accuracy']:.1f}%, macro-F1 {100 * m['macro_f1']:.1f}%, kappa {m['kappa']:.3f}; "
          f"classifier in {out['model']} (for eossl predict), metrics in {run_dir / 'metrics.json'}")
    return 0
