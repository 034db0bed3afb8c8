"""``eossl views``: a PNG grid of a few chips and their SSL views in true and false colour."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from eossl.augment.spec import METHOD_PRESETS, PRESETS
from eossl.commands import config_flags, print_config

if TYPE_CHECKING:
    from eossl.augment.views import ViewSpec

NAME = "views"
HELP = "write a PNG of chips and their augmented SSL views"
DESCRIPTION = ("Sample a few chips, make their views with a preset or a view config, and write a grid in true and "
               "false colour, to see what the model is taught.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", help="scene index (default: the built-in Sentinel-2 scene)")
    p.add_argument("--bands", help="comma-separated bands (default: every band in the index)")
    p.add_argument("--preset", default="vicreg",
                   help=f"view preset or method ({', '.join(sorted(PRESETS) + sorted(METHOD_PRESETS))}); "
                        f"default: %(default)s")
    config_flags(p, "YAML with ViewSpec keys (ops, n_views, seasonal_pairs, crop_size)", "override a ViewSpec key",
                 runs="new run directories", dry_run="print the resolved view spec and exit")
    p.add_argument("--pairs", action="store_true", help="seasonal pairs (needs an index with several dates)")
    p.add_argument("-n", "--chips", type=int, default=6)
    p.add_argument("--chip-size", "--size", dest="chip_size", type=int, default=64, help="chip side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path (default: a new run directory under --runs)")


def resolve_spec(config: str | None, preset_name: str, overrides: list[str]) -> ViewSpec:
    from eossl.augment.views import ViewSpec, preset
    from eossl.config import apply_overrides, from_dict, load_yaml, to_dict

    base = to_dict(preset(preset_name))
    if config:
        base = load_yaml(config) or {}
    return from_dict(ViewSpec, apply_overrides(base, overrides), "views")


def cli(args: argparse.Namespace) -> int:
    from eossl.catalog.build import IndexOptions, build_index
    from eossl.catalog.index import open_index
    from eossl.report.views import write_view_grid
    from eossl.runs import new_run_dir
    from eossl.sample_data import builtin_s2_root

    spec = resolve_spec(args.config, args.preset, args.set)
    if args.dry_run:
        return print_config(spec)
    out = Path(args.out) if args.out else new_run_dir(args.runs, "views") / "views.png"
    if out.exists():
        raise ValueError(f"{out} exists; choose another --out (outputs are never overwritten)")
    if args.index:
        index = open_index(args.index)
    else:
        index = build_index([builtin_s2_root()], "sentinel2-l1c", IndexOptions(exclude=("preview.jp2",)),
                            progress=False)
    meta = write_view_grid(out, index, spec, bands=args.bands.split(",") if args.bands else None, chips=args.chips,
                           chip_size=args.chip_size, seed=args.seed, pairs=args.pairs,
                           title=f"{args.config or args.preset}: {spec.n_views} views, seed {args.seed}")
    print(f"wrote {out} ({meta['chips']} chips x {spec.n_views} views, true and false colour)")
    return 0
