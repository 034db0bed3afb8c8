"""``eossl views``: a PNG grid of a few chips and their SSL views in true and false colour."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from eossl.augment.views import METHOD_PRESETS, PRESETS, ViewGenerator, ViewSpec, preset
from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import open_index
from eossl.config import apply_overrides, from_dict, load_yaml, to_dict
from eossl.data.config import SamplerConfig, make_sampler
from eossl.data.dataset import ChipDataset, Collate
from eossl.data.reader import ChipReader
from eossl.report.plots import composite_bands, save_view_grid
from eossl.runs import new_run_dir, write_json
from eossl.sample_data import builtin_s2_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("views", help="write a PNG of chips and their augmented SSL views",
                       description="Sample a few chips, make their views with a preset or a view config, and "
                                   "write a grid in true and false colour, to see what the model is taught.")
    p.add_argument("--index", help="scene index (default: the built-in Sentinel-2 scene)")
    p.add_argument("--bands", help="comma-separated bands (default: every band in the index)")
    p.add_argument("--preset", default="vicreg",
                   help=f"view preset or method ({', '.join(sorted(PRESETS) + sorted(METHOD_PRESETS))}); "
                        f"default: %(default)s")
    p.add_argument("--config", help="YAML with ViewSpec keys (ops, n_views, seasonal_pairs, crop_size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a ViewSpec key")
    p.add_argument("--pairs", action="store_true", help="seasonal pairs (needs an index with several dates)")
    p.add_argument("-n", "--chips", type=int, default=6)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path (default: a new run directory under --runs)")
    p.add_argument("--runs", default="runs")
    p.add_argument("--dry-run", action="store_true", help="print the resolved view spec and exit")
    p.set_defaults(func=run, command="views")


def resolve_spec(config: str | None, preset_name: str, overrides: list[str]) -> ViewSpec:
    base = to_dict(preset(preset_name))
    if config:
        base = load_yaml(config) or {}
    return from_dict(ViewSpec, apply_overrides(base, overrides), "views")


def run(args: argparse.Namespace) -> int:
    import yaml

    spec = resolve_spec(args.config, args.preset, args.set)
    if args.dry_run:
        print(yaml.safe_dump(to_dict(spec), sort_keys=False))
        return 0
    out = Path(args.out) if args.out else new_run_dir(args.runs, "views") / "views.png"
    if out.exists():
        raise ValueError(f"{out} exists; choose another --out (outputs are never overwritten)")
    if args.index:
        index = open_index(args.index)
    else:
        index = build_index([builtin_s2_root()], "sentinel2-l1c", IndexOptions(exclude=("preview.jp2",)),
                            progress=False)
    meta = write_view_grid(out, index, spec, bands=args.bands.split(",") if args.bands else None, chips=args.chips,
                           size=args.size, seed=args.seed, pairs=args.pairs,
                           title=f"{args.config or args.preset}: {spec.n_views} views, seed {args.seed}")
    print(f"wrote {out} ({meta['chips']} chips x {spec.n_views} views, true and false colour)")
    return 0


def write_view_grid(out: Path, index, spec: ViewSpec, *, bands: list[str] | None = None, chips: int = 6,
                    size: int = 64, seed: int = 0, pairs: bool = False, title: str = "") -> dict:
    """Sample ``chips`` windows of ``index``, make their views and write the PNG grid plus a JSON sidecar."""
    reader = ChipReader(index, bands)
    sampler = make_sampler(index, SamplerConfig(kind="seasonal_pair" if pairs else "random", size=size,
                                                num_samples=chips, seed=seed), rank=0, world_size=1)
    dataset = ChipDataset(reader)
    batch = Collate(reader.bands)([dataset[w] for w in sampler])
    sensor = index.sensor(0)
    mean, std = sensor.norm_stats(reader.bands)
    gen = ViewGenerator(spec, reader.bands, sensor.wavelengths(reader.bands), mean, std, size, seed=seed)
    views = gen(batch["image"], batch["mask"], batch.get("image2"), batch.get("mask2"))
    m, s = torch.as_tensor(mean).view(1, -1, 1, 1), torch.as_tensor(std).view(1, -1, 1, 1)
    view_arrays = [(v["image"] * s + m).numpy() for v in views]  # back to reflectance for display
    save_view_grid(out, batch["image"].numpy(), batch["mask"].numpy(), view_arrays,
                   [v["mask"].numpy() for v in views], composite_bands(sensor, reader.bands), title=title)
    meta = {"spec": to_dict(spec), "seed": seed, "bands": reader.bands, "index": index.path, "pairs": pairs,
            "chips": int(len(sampler)), "view_std": [float(np.std(v)) for v in view_arrays]}
    write_json(out.with_suffix(".json"), meta)
    return meta
