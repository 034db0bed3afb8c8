"""``eossl evaluate``: few-label evaluation of exported weights beside the baselines (probe, kNN, fine-tuning);
a pipeline's evaluate stage runs the same :func:`run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config

NAME = "evaluate"
HELP = "few-label evaluation: linear probe, kNN, fine-tuning, with baselines"
DESCRIPTION = ("Score exported weights with few labels (k per class, several seeds, mean and 95%% CI) beside the "
               "same architecture randomly initialised, per-band statistics, random convolutional features (RCF), "
               "band statistics fused with the features and supervised training from scratch, all on identical "
               "splits, with paired differences. Without --config: the built-in EuroSAT-MS sample. Writes "
               "metrics.json, few_label_curve.png, confusion_matrix.png and table.txt into a new run directory.")
PRODUCES = frozenset({"run", "metrics"})
ACCEPTS = frozenset({"weights"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    labelled_flags(p, NAME, "evaluation", "--set ks=[1,5,10] --set seeds=3",
                   "; several (--weights A B C) are scored side by side on the same splits, with paired "
                   "differences A minus each", many=True)


def labelled_flags(p: argparse.ArgumentParser, name: str, what: str, example: str, no_weights: str,
                   many: bool = False) -> None:
    """The flags of the commands on labelled chips (evaluate, finetune)."""
    config_flags(p, f"{what} config YAML (see configs/{name}/)", f"dotted override, e.g. {example}; repeatable",
                 runs="new run directories")
    p.add_argument("--weights", nargs="+" if many else None,
                   help=f"exported weights directory (same as --set weights=DIR), eossl's shipped weights "
                        f"eossl:NAME (`eossl weights list`), or published weights torchgeo:<WeightsEnum name>, e.g. "
                        f"torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO{no_weights}")
    p.add_argument("--weights-file", help="local file of the torchgeo:NAME weights (machines without internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_and_run_dir(args: argparse.Namespace, cls: type):
    """(config of class ``cls``, a new run directory), or (config, None) under --dry-run."""
    from eossl.evaluate.config import config_with_weights
    from eossl.runs import new_run_dir

    cfg = config_with_weights(cls, args.config, args.set, args.weights,
                              args.weights_file, resolve=not args.dry_run)
    if args.dry_run:
        return cfg, None
    run_dir = new_run_dir(args.runs, args.command)
    print(f"run directory: {run_dir}")
    return cfg, run_dir


def labelled_stage_config(cls: type, path, sets: list[str], ref: dict):
    """A pipeline stage's config of class ``cls``, weights from ``ref``."""
    from eossl.config import load_config

    return load_config(cls, path, overrides=sets + ([f"weights={ref['weights']}"] if "weights" in ref else []))


def cli(args: argparse.Namespace) -> int:
    from eossl.evaluate.config import EvaluateConfig
    from eossl.pipeline.stages import RunContext
    from eossl.runs import marks_failure

    cfg, run_dir = config_and_run_dir(args, EvaluateConfig)
    if run_dir is None:
        return print_config(cfg)
    with marks_failure(run_dir):
        run(cfg, run_dir, RunContext(progress=not args.no_progress, cache_dir=Path(args.runs) / "cache"))
    return 0


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    from eossl.evaluate.config import EvaluateConfig

    return labelled_stage_config(EvaluateConfig, path, sets, ref)


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """Evaluate ``cfg`` into ``run_dir``; features are cached under ``ctx.cache_dir``/features."""
    from eossl.evaluate.runs import results_table, run_evaluate

    out = run_evaluate(cfg, run_dir, cache_dir=ctx.cache_dir / "features" if ctx.cache_dir else None,
                       progress=ctx.progress)
    ctx.echo(results_table(out.rows, out.notes.headline_score))
    ctx.echo(f"done in {out.seconds} s: {run_dir} (metrics.json, few_label_curve.png, confusion_matrix.png, "
             f"table.txt)")
    return {"run": str(run_dir), "metrics": str(Path(run_dir) / "metrics.json")}
