"""``eossl export RUN_DIR --out DIR``: portable backbone weights (safetensors + weights.json) from a run; a pipeline's
export stage writes them into its run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config
from eossl.models.pool_names import POOLS

NAME = "export"
HELP = "export a pretraining run's backbone as portable weights"
DESCRIPTION = ("Write DIR/backbone.safetensors (timm keys) and DIR/weights.json (arch, bands, wavelengths, GSD, "
               "normalisation, method, data, epochs, feature pool) from RUN_DIR's last checkpoint. The feature pool "
               "is the online probe's best (RUN_DIR/probe/history.json), else last, unless --feature-pool sets it.")
PRODUCES = frozenset({"weights"})
ACCEPTS = frozenset({"run"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a directory written by `eossl pretrain`")
    p.add_argument("--out", metavar="DIR", help="output directory (must not hold weights already)")
    p.add_argument("--checkpoint", help="a specific checkpoint file instead of checkpoints/last.ckpt")
    p.add_argument("--data-licence", metavar="LICENCE", help="licence of the pretraining data, for the model card "
                                                          "(README.md), e.g. CC-BY-SA-4.0")
    p.add_argument("--onnx", action="store_true", default=None,
                   help="also write backbone.onnx (the recorded pool, dynamic batch), checked with onnxruntime")
    p.add_argument("--feature-pool", metavar="POOL",
                   help=f"record this pool in weights.json instead of the probe's choice ({', '.join(POOLS)})")
    config_flags(p, "YAML with run_dir, out, checkpoint, feature_pool, data_licence, onnx")


def cli(args: argparse.Namespace) -> int:
    from eossl.config import load_config
    from eossl.pipeline.stages import RunContext
    from eossl.train.config import ExportConfig

    cfg = load_config(ExportConfig, args.config, {"run_dir": args.run_dir, "out": args.out,
                                                  "checkpoint": args.checkpoint,
                                                  "feature_pool": args.feature_pool,
                                                  "data_licence": args.data_licence, "onnx": args.onnx}, args.set)
    if args.dry_run:
        return print_config(cfg)
    run(cfg, Path(), RunContext())
    return 0


def check_stage(stage, where: str) -> None:
    from eossl.config import ConfigError

    if not stage.run:
        raise ConfigError(f"{where}: an export stage needs run (a pretrain stage)")


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
    return {"run": ref["run"]}


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """The weights of the run ``cfg.run_dir`` into ``cfg.out``, relative to ``run_dir``: a pipeline's export stage
    writes RUN_DIR/weights; `eossl export` passes the working directory, so --out means what it says. ``cfg``: an
    :class:`~eossl.train.config.ExportConfig`, or a stage's ``{run}``."""
    from eossl.models.weights import read_weights_info
    from eossl.train.export import export_run

    cfg = export_config(cfg)
    out = export_run(cfg.run_dir, Path(run_dir) / cfg.out, checkpoint=cfg.checkpoint, feature_pool=cfg.feature_pool,
                     data_licence=cfg.data_licence)
    if cfg.onnx:
        from eossl.models.onnx_export import export_onnx

        ctx.echo(f"wrote {export_onnx(out)} (checked against PyTorch with onnxruntime)")
    info = read_weights_info(out)
    chosen = (info.feature_pool_source or {}).get("chosen_by", "no probe history")
    ctx.echo(f"exported {info.arch} ({info.in_chans} bands: {', '.join(info.bands)}), {info.ssl_method}, "
             f"{info.epochs} epochs, step {info.extra.get('global_step')}, feature pool {info.feature_pool} "
             f"({chosen}) -> {out}")
    return {"weights": str(out)}


def export_config(cfg):
    """An :class:`~eossl.train.config.ExportConfig` as it is, or the one of a pipeline stage's ``{run}``
    (:func:`stage_config`, whose shape keeps the stage's recorded digest): its weights go to ``weights`` in the
    stage's run directory."""
    from eossl.train.config import ExportConfig

    return cfg if isinstance(cfg, ExportConfig) else ExportConfig(run_dir=cfg["run"], out="weights")
