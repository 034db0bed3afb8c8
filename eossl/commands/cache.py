"""``eossl cache``: pre-extract a sampler's windows into a sharded, memory-mappable chip cache."""

from __future__ import annotations

import argparse

from eossl.commands import config_flags, print_config

NAME = "cache"
HELP = "pre-extract chips from an index into a chip cache"
DESCRIPTION = ("Write the windows of the configured sampler into OUT as sharded .npy files (resumes an interrupted "
               "run; refuses a cache made from another index/config).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_flags(p, "data config YAML (keys of DataConfig: index, bands, sampler, ...)",
                 "dotted override, e.g. --set sampler.num_samples=4096; repeatable")
    p.add_argument("--index", help="scene index (overrides the config's `index`)")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--workers", type=int, default=0, help="data-loader workers while reading")


def cli(args: argparse.Namespace) -> int:
    from eossl.catalog.index import open_index
    from eossl.config import load_config
    from eossl.data.chips.cache import write_cache
    from eossl.data.chips.config import DataConfig, make_sampler
    from eossl.data.reader import ChipReader

    cfg = load_config(DataConfig, args.config, {"index": args.index}, args.set)
    if args.dry_run:
        return print_config(cfg)
    index = open_index(cfg.index, root=cfg.root)
    sampler = make_sampler(index, cfg.sampler, rank=0, world_size=1)
    reader = ChipReader(index, cfg.bands, cfg.resampling)
    manifest = write_cache(args.out, index, sampler, reader, shard_size=args.shard_size, dtype=args.dtype,
                           num_workers=args.workers)
    print(f"cache {args.out}: {manifest['total']} chips of {len(manifest['bands'])} bands x "
          f"{manifest['size']} px in {len(manifest['shards'])} shards (index {manifest['index_hash']})")
    return 0
