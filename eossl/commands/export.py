"""``eossl export RUN_DIR --out DIR``: portable backbone weights (safetensors + weights.json) from a run."""

from __future__ import annotations

import argparse

from eossl.train.export import export_run, read_weights_info


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a pretraining run's backbone as portable weights",
                       description="Write DIR/backbone.safetensors (timm keys) and DIR/weights.json (arch, bands, "
                                   "wavelengths, GSD, normalisation, method, data, epochs) from RUN_DIR's last "
                                   "checkpoint.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `eossl pretrain`")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold weights already)")
    p.add_argument("--checkpoint", help="a specific checkpoint file instead of checkpoints/last.ckpt")
    p.set_defaults(func=run, command="export")


def run(args: argparse.Namespace) -> int:
    out = export_run(args.run_dir, args.out, checkpoint=args.checkpoint)
    info = read_weights_info(out)
    print(f"exported {info.arch} ({info.in_chans} bands: {', '.join(info.bands)}), {info.ssl_method}, "
          f"{info.epochs} epochs, step {info.extra.get('global_step')} -> {out}")
    return 0
