"""Few-label linear probe on EuroSAT-MS: band-statistics baseline vs random-init backbone vs pretrained weights.

Every row is probed on the same splits: ``--draws`` draws of ``--per-class`` training chips per class, the rest
for testing; mean accuracy and 95% CI over draws (see :mod:`eossl.finetune.probe`). The library function
:func:`eossl.finetune.evaluate.probe_report` does the work; this script parses arguments and prints.

    .venv/bin/python benchmarks/probe_eurosat.py [--weights EXPORT_DIR] [--arch resnet18] [--pool last|multi]
        [--per-class 10] [--draws 20] [--seed 0] [--bands B02,B03,...] [--root EUROSAT_FOLDERS]
        [--out results.json]

Without ``--root`` the built-in 200-chip sample (20 per class) is used: with 10/class each draw tests on 100
chips, so expect CIs of 1-2 points.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing eossl

from eossl.finetune.evaluate import probe_report  # noqa: E402
from eossl.finetune.features import POOLS  # noqa: E402
from eossl.finetune.samples import load_eurosat  # noqa: E402
from eossl.models.backbones import ARCHS  # noqa: E402
from eossl.train.export import read_weights_info  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, help="exported weights folder (backbone.safetensors + weights.json)")
    p.add_argument("--arch", choices=ARCHS.names(), help="architecture of the random-init row (default: the "
                   "weights' architecture, or resnet18)")
    p.add_argument("--random-init", action=argparse.BooleanOptionalAction, default=True,
                   help="probe a randomly initialised backbone of the same architecture (default: on)")
    p.add_argument("--seed", type=int, default=0, help="seeds the random init and the splits")
    p.add_argument("--random-inits", type=int, default=1, help="random-init rows with init seeds seed, seed+1, ...")
    p.add_argument("--pool", choices=POOLS, default="last")
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--bands", type=lambda v: v.split(","), help="comma-separated bands to probe on, for every "
                   "row (default: the weights' bands when given, else all 13)")
    p.add_argument("--root", type=Path, help="EuroSAT-MS class folders (default: the built-in sample)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    bands = args.bands
    if bands is None and args.weights is not None:
        bands = read_weights_info(args.weights).bands   # compare on the bands the weights were trained on
    chips = load_eurosat(args.root, bands=bands)
    report = probe_report(chips, weights=args.weights, arch=args.arch, random_init=args.random_init,
                          pool=args.pool, per_class=args.per_class, draws=args.draws, seed=args.seed, C=args.C,
                          device=args.device, random_inits=args.random_inits)
    print(f"# EuroSAT-MS few-label linear probe ({args.root or 'built-in sample'})")
    print(report.table())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:   # user errors: the message says what to do
        sys.exit(f"error: {err}")
