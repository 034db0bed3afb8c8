"""``eossl weights``: the weights shipped with eossl (``eossl:<name>``): list them, show one, and (maintainers)
ship an exported run's weights."""

from __future__ import annotations

import argparse
import json

NAME = "weights"
HELP = "list eossl's shipped weights (eossl:NAME), show one, or ship exported weights"
DESCRIPTION = """\
eossl weights list                 the shipped weights, one line each
eossl weights show NAME            what one set is: bands, method, pool, licences, what reproduces it; checksums
                                   verified
eossl weights ship DIR --name N    (maintainers) copy exported weights DIR into the package as eossl:N (float16
                                   when features stay within 1e-3), with licences and reproduction recorded
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the shipped weights")
    show = sub.add_parser("show", help="one set of shipped weights")
    show.add_argument("name", help="eossl:NAME or NAME")
    ship = sub.add_parser("ship", help="(maintainers) ship exported weights with the package")
    ship.add_argument("src", help="exported weights folder (RUN/weights)")
    ship.add_argument("--name", required=True)
    ship.add_argument("--description", required=True)
    ship.add_argument("--run", help="the run folder (its config.yaml and environment are recorded)")
    ship.add_argument("--commit", required=True, help="the eossl commit the run was trained with")
    ship.add_argument("--weights-licence", required=True)
    ship.add_argument("--source", action="append", default=[], metavar="NAME=LICENCE",
                      help="a training source and its licence; repeatable")
    ship.add_argument("--attribution", default=None)
    ship.add_argument("--root", default=None, help="where shipped weights live (default: the package's)")
    ship.add_argument("--fp32", action="store_true", help="store float32 even when float16 would do")
    ship.add_argument("--overwrite", action="store_true", help="replace a shipped set of the same name")


def cli(args: argparse.Namespace) -> int:
    from eossl.models import shipped

    if args.action == "list":
        index = shipped.shipped_index()["weights"]
        if not index:
            print("no shipped weights")
        for name, rec in sorted(index.items()):
            print(f"{shipped.PREFIX}{name:40s} {rec['arch']:10s} {rec['ssl_method']:8s} {len(rec['bands']):2d} bands  "
                  f"{rec['description']}")
        return 0
    if args.action == "show":
        folder = shipped.shipped_dir(args.name)                 # verifies the checksums
        rec = shipped.shipped_index()["weights"][args.name.removeprefix(shipped.PREFIX)]
        print(f"{shipped.PREFIX}{folder.name}: {rec['description']}\nfolder: {folder} (checksums verified)")
        for key in ("arch", "ssl_method", "feature_pool", "bands", "storage", "fp16_max_abs_feature_diff"):
            print(f"{key}: {rec[key]}")
        print("licences:", json.dumps(rec["licences"], indent=2))
        print("reproduce:", json.dumps({k: v for k, v in rec["reproduce"].items() if k != "config"}, indent=2))
        print(f"model card: {folder / 'README.md'}")
        return 0
    return _ship(args, shipped)


def _ship(args, shipped) -> int:
    from pathlib import Path

    from eossl.models import ship

    sources = []
    for s in args.source:
        name, sep, licence = s.partition("=")
        if not sep or not name or not licence:
            raise SystemExit(f"--source {s!r}: give NAME=LICENCE")
        sources.append({"name": name, "licence": licence})
    reproduce = {"commit": args.commit, "cpu_flags": " ".join(ship.cpu_flags())}
    if args.run:
        run = Path(args.run)
        cfg = run / "config.yaml"
        if not cfg.is_file():
            raise SystemExit(f"--run {run}: no config.yaml; give the run folder of `eossl pretrain`")
        import yaml

        config = yaml.safe_load(cfg.read_text())
        trainer = config.get("trainer", {})
        reproduce.update({"command": "eossl pretrain --config config.yaml (the run's resolved config, below; from the "
                                     "repository root at the commit)",
                          "seed": trainer.get("seed"), "precision": trainer.get("precision"),
                          "config": cfg.read_text()})
        env = run / "environment.json"
        if env.is_file():
            e = json.loads(env.read_text())
            reproduce.update({"torch": e.get("torch"), "platform": e.get("platform"), "threads": e.get("threads")})
    if "torch" not in reproduce:
        import torch

        reproduce["torch"] = torch.__version__
    from eossl.train.module import cpu_has_native_bf16

    reproduce["native_bf16"] = cpu_has_native_bf16()
    rec = ship.ship_weights(args.src, args.name, description=args.description, reproduce=reproduce,
                               licences={"weights": args.weights_licence, "sources": sources,
                                         "attribution": args.attribution}, root=args.root, fp16=not args.fp32,
                               overwrite=args.overwrite)
    print(f"shipped {shipped.PREFIX}{args.name}: {rec['storage']}, feature gap {rec['fp16_max_abs_feature_diff']}, "
          f"{len(rec['files'])} files")
    return 0
