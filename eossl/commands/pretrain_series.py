"""``eossl pretrain-series``: temporal pretraining of the pixel time-series encoder for crop mapping (masked
autoencoding and/or an invariance objective between two views of each pixel); a pipeline's pretrain-series stage
runs the same :func:`run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config

NAME = "pretrain-series"
HELP = "temporal pretraining of pixel time series (masked autoencoding, two-view VICReg / NT-Xent)"
DESCRIPTION = ("Pretrain the pixel time-series encoder (objective: masked | contrastive | masked+contrastive) on "
               "unlabeled series: every pixel of scene stacks (corpus.stacks), series sampled from scenes / "
               "datacubes (corpus.roots or corpus.index) and/or a series table (corpus.table). Writes RUN/weights "
               "(encoder.safetensors + weights.json) for `eossl evaluate --set task=series|stack --weights "
               "RUN/weights`.")
PRODUCES = frozenset({"weights", "run"})
ACCEPTS = frozenset({"table"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_flags(p, "pretrain-series config YAML (see configs/pretrain_series/series_mae.yaml)",
                 "dotted override, e.g. corpus.sampler.n_pixels=5000; repeatable", runs="new run directories")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cli(args: argparse.Namespace) -> int:
    from eossl.config import load_config
    from eossl.train.config import SeriesPretrainConfig

    cfg = load_config(SeriesPretrainConfig, args.config, overrides=args.set)
    return run_new(cfg, args.runs, args.dry_run, progress=not args.no_progress)


def run_new(cfg, runs: str, dry_run: bool, progress: bool) -> int:
    """The command line's part (also `eossl pretrain` with a series config): --dry-run, or a new run directory
    under ``runs`` and :func:`run`."""
    from eossl.pipeline.stages import RunContext
    from eossl.runs import new_run_dir

    if dry_run:
        return print_config(cfg)
    run_dir = new_run_dir(runs, NAME)
    print(f"run directory: {run_dir}")
    run(cfg, run_dir, RunContext(progress=progress))
    return 0


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    from eossl.config import load_config
    from eossl.train.config import SeriesPretrainConfig

    # an extract stage's long table: sample_id per geometry, date per row
    table = [f"corpus.table={ref['table']}", "corpus.id_column=sample_id", "corpus.time_column=date"] \
        if "table" in ref else []
    return load_config(SeriesPretrainConfig, path, overrides=table + sets)


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """Pretrain the series encoder of ``cfg`` into ``run_dir`` (weights in RUN_DIR/weights)."""
    from eossl.train.series_pretrain import pretrain_series

    summary = pretrain_series(cfg, run_dir, progress=ctx.progress)
    ctx.echo(f"done: {summary['steps']} steps in {summary['seconds']:.0f} s, loss {summary['first_loss']:.4f} -> "
             f"{summary['last_loss']:.4f}; weights: {summary['weights']}")
    return {"run": str(run_dir), "weights": str(Path(run_dir) / "weights")}
