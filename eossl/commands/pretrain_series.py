"""``eossl pretrain-series``: masked autoencoding of pixel time series (temporal pretraining for crop mapping)."""

from __future__ import annotations

import argparse

from eossl.commands import config_flags, print_config
from eossl.pipeline.commands import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain-series", help=COMMANDS["pretrain-series"].help,
                       description="Pretrain the pixel time-series encoder by masked autoencoding on unlabeled "
                                   "series sampled from scenes / datacubes (corpus.roots or corpus.index) and/or a "
                                   "series table (corpus.table). Writes RUN/weights (encoder.safetensors + "
                                   "weights.json) for `eossl evaluate --set task=series --weights RUN/weights`.")
    config_flags(p, "pretrain-series config YAML (see configs/pretrain_series/series_mae.yaml)",
                 "dotted override, e.g. corpus.sampler.n_pixels=5000; repeatable", runs="new run directories")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command="pretrain-series")


def run(args: argparse.Namespace) -> int:
    from eossl.config import load_config
    from eossl.runs import new_run_dir
    from eossl.train.config import SeriesPretrainConfig
    from eossl.train.series_pretrain import pretrain_series

    cfg = load_config(SeriesPretrainConfig, args.config, overrides=args.set)
    if args.dry_run:
        return print_config(cfg)
    run_dir = new_run_dir(args.runs, "pretrain-series")
    print(f"run directory: {run_dir}")
    summary = pretrain_series(cfg, run_dir, progress=not args.no_progress)
    print(f"done: {summary['steps']} steps in {summary['seconds']:.0f} s, loss {summary['first_loss']:.4f} -> "
          f"{summary['last_loss']:.4f}; weights: {summary['weights']}")
    return 0
