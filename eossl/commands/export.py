"""``eossl export RUN_DIR --out DIR``: portable backbone weights (safetensors + weights.json) from a run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import yaml

from eossl.config import config_from, field, to_dict
from eossl.train.export import export_run, read_weights_info


@dataclass
class ExportConfig:
    run_dir: str = field(help="a directory written by `eossl pretrain`")
    out: str = field(help="output directory (must not hold weights already)")
    checkpoint: str | None = field(None, help="a specific checkpoint instead of checkpoints/last.ckpt")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a pretraining run's backbone as portable weights",
                       description="Write DIR/backbone.safetensors (timm keys) and DIR/weights.json (arch, bands, "
                                   "wavelengths, GSD, normalisation, method, data, epochs) from RUN_DIR's last "
                                   "checkpoint.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a directory written by `eossl pretrain`")
    p.add_argument("--out", metavar="DIR", help="output directory (must not hold weights already)")
    p.add_argument("--checkpoint", help="a specific checkpoint file instead of checkpoints/last.ckpt")
    p.add_argument("--config", help="YAML with run_dir, out, checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override; repeatable")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run, command="export")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(ExportConfig, args.config, {"run_dir": args.run_dir, "out": args.out,
                                                  "checkpoint": args.checkpoint}, args.set)
    if args.dry_run:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    out = export_run(cfg.run_dir, cfg.out, checkpoint=cfg.checkpoint)
    info = read_weights_info(out)
    print(f"exported {info.arch} ({info.in_chans} bands: {', '.join(info.bands)}), {info.ssl_method}, "
          f"{info.epochs} epochs, step {info.extra.get('global_step')} -> {out}")
    return 0
