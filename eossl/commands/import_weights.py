"""``eossl import SOURCE --out DIR``: published weights (torchgeo, plain timm / torchvision checkpoints) as an eossl
weights directory with a complete weights.json, model card and STAC MLM item."""

from __future__ import annotations

import argparse

NAME = "import"
HELP = "published weights (torchgeo:NAME, timm/torchvision checkpoints) as eossl weights"
DESCRIPTION = ("Turn published weights into an eossl weights directory. SOURCE is torchgeo:<WeightsEnum name> "
               "(bands, channels and normalisation from torchgeo's metadata and transforms; downloaded by torchgeo, "
               "or --weights-file) or a timm / torchvision state dict (.pth/.pt/.safetensors; give --arch and "
               "--sensor, and --bands unless it is a 3-band RGB stem). `eossl import --list` prints torchgeo's "
               "names.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", metavar="SOURCE", help="torchgeo:NAME or a checkpoint file")
    p.add_argument("--out", metavar="DIR", help="output directory (must not hold weights already)")
    p.add_argument("--weights-file", help="local file of torchgeo:NAME weights (no download)")
    p.add_argument("--sensor", help="sensor of the weights' bands (default for torchgeo: inferred from its metadata)")
    p.add_argument("--arch", help="architecture of a plain checkpoint (resnet18, resnet50, vit_small_patch16, ...)")
    p.add_argument("--bands", help="comma-separated bands of a plain checkpoint's stem, in input order "
                                   "(default for 3 channels: the sensor's red,green,blue)")
    p.add_argument("--mean", help="comma-separated per-band means in reflectance (plain checkpoints; default: the "
                                  "sensor catalog's statistics)")
    p.add_argument("--std", help="comma-separated per-band standard deviations in reflectance (as --mean)")
    p.add_argument("--unmatched", choices=["error", "mean", "zero"], default="error",
                   help="stem policy, recorded in weights.json, for data bands the weights have no counterpart for "
                        "(e.g. an RGB checkpoint on 13 bands): error (default), mean kernel, or zero kernel")
    p.add_argument("--ssl-method", default="supervised", help="how a plain checkpoint was trained (model card)")
    p.add_argument("--pretrain-data", default="unknown", help="what a plain checkpoint was trained on (model card)")
    p.add_argument("--list", action="store_true", help="print torchgeo's weights names and exit")


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as err:
        raise ValueError(f"{flag} {text!r}: give comma-separated numbers") from err


def cli(args: argparse.Namespace) -> int:
    from eossl.models.published import TORCHGEO, import_checkpoint, import_torchgeo, torchgeo_names

    if args.list:
        print("\n".join(torchgeo_names()))
        return 0
    if not args.source or not args.out:
        raise ValueError("give SOURCE (torchgeo:NAME or a checkpoint file) and --out DIR")
    if args.source.startswith(TORCHGEO):
        out = import_torchgeo(args.source, args.out, weights_file=args.weights_file, sensor=args.sensor,
                              unmatched=args.unmatched)
    else:
        if args.weights_file:
            raise ValueError("--weights-file is for torchgeo:NAME sources; a checkpoint file is SOURCE itself")
        missing = [f for f, v in (("--arch", args.arch), ("--sensor", args.sensor)) if not v]
        if missing:
            raise ValueError(f"a plain checkpoint needs {' and '.join(missing)} (its file records neither)")
        out = import_checkpoint(args.source, args.out, arch=args.arch, sensor=args.sensor,
                                bands=[b.strip() for b in args.bands.split(",")] if args.bands else None,
                                mean=_floats(args.mean, "--mean"), std=_floats(args.std, "--std"),
                                unmatched=args.unmatched, ssl_method=args.ssl_method,
                                pretrain_data=args.pretrain_data)
    from eossl.models.weights import read_weights_info

    info = read_weights_info(out)
    print(f"wrote {out}: {info.arch}, bands {', '.join(info.bands)}, normalisation mean "
          f"{[round(v, 4) for v in info.normalization['mean']]} std {[round(v, 4) for v in info.normalization['std']]}"
          f", unmatched bands: {info.unmatched}")
    return 0
