"""``eossl demo``: the main job on the built-in data (grows with the project).

Today: index the built-in Sentinel-2 scene, cache random 13-band chips from it, read an epoch through the data
module from the cache (checking the chips against the sensor catalog), and draw the SSL views of a few chips.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eossl.augment.views import preset
from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.sensors import load_sensor
from eossl.commands.views import write_view_grid
from eossl.data.cache import write_cache
from eossl.data.config import DataConfig, SamplerConfig, make_sampler
from eossl.data.datamodule import ChipDataModule
from eossl.data.reader import ChipReader
from eossl.runs import new_run_dir, write_json
from eossl.sample_data import builtin_s2_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the built-in Sentinel-2 sample scene")
    p.add_argument("--runs", default="runs", help="parent folder of run directories (default: %(default)s)")
    p.add_argument("--num-samples", type=int, default=2048, help="chips to cache (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="chip size in pixels (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="data-loader workers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run, command="demo")


def run(args: argparse.Namespace) -> int:
    run_dir = new_run_dir(args.runs, "demo")
    sensor = load_sensor("sentinel2-l1c")
    print(f"[1/4] indexing the built-in scene {builtin_s2_root()}")
    index = build_index([builtin_s2_root()], sensor, IndexOptions(exclude=("preview.jp2",)))
    index.save(run_dir / "index.parquet")
    print(index.summary())

    print(f"\n[2/4] caching {args.num_samples} random {args.size}x{args.size} chips of all 13 bands")
    sampler_cfg = SamplerConfig(kind="random", size=args.size, num_samples=args.num_samples, seed=args.seed)
    reader = ChipReader(index)
    sampler = make_sampler(index, sampler_cfg, rank=0, world_size=1)
    t0 = time.perf_counter()
    manifest = write_cache(run_dir / "cache", index, sampler, reader, num_workers=args.workers)
    cache_s = time.perf_counter() - t0

    print("\n[3/4] one epoch through the data module, from the cache")
    cfg = DataConfig(index=str(run_dir / "index.parquet"), sampler=sampler_cfg, cache=str(run_dir / "cache"),
                     batch_size=64, num_workers=0)
    dm = ChipDataModule(cfg, index=index)
    t0 = time.perf_counter()
    total, sums, valid = 0, np.zeros(len(dm.bands)), 0.0
    for batch in dm.train_dataloader():
        total += batch["image"].shape[0]
        sums += batch["image"].double().mean(dim=(2, 3)).sum(dim=0).numpy()
        valid += float(batch["mask"].float().mean()) * batch["image"].shape[0]
    epoch_s = time.perf_counter() - t0
    means = sums / total
    cat_mean, _ = sensor.norm_stats(dm.bands)
    summary = {
        "index": str(run_dir / "index.parquet"), "cache": str(run_dir / "cache"), "chips": total,
        "bands": dm.bands, "cache_seconds": round(cache_s, 2), "epoch_seconds": round(epoch_s, 3),
        "epoch_chips_per_s": round(total / max(epoch_s, 1e-9), 1), "valid_fraction": round(valid / total, 4),
        "band_mean_reflectance": dict(zip(dm.bands, np.round(means, 4).tolist())),
        "catalog_mean_reflectance": dict(zip(dm.bands, np.round(cat_mean.astype(float), 4).tolist())),
        "index_hash": manifest["index_hash"],
    }
    print("\n[4/4] SSL views of 6 chips (preset 'vicreg')")
    views_png = run_dir / "views.png"
    write_view_grid(views_png, index, preset("vicreg"), chips=6, size=args.size, seed=args.seed,
                    title=f"vicreg: 2 views, seed {args.seed}")
    summary["views_png"] = str(views_png)
    write_json(run_dir / "summary.json", summary)
    print(f"{'band':5s} {'scene mean':>10s} {'catalog mean':>12s}")
    for b, m, c in zip(dm.bands, means, cat_mean):
        print(f"{b:5s} {m:10.4f} {c:12.4f}")
    print(f"\ndone: {total} chips cached in {cache_s:.1f} s, epoch read at {summary['epoch_chips_per_s']} chips/s; "
          f"outputs in {run_dir}")
    return 0
