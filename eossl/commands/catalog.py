"""``eossl catalog build|show`` and ``eossl sensors``: scene indexes and the sensor catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import open_index
from eossl.catalog.scan import DEFAULT_PATTERNS
from eossl.catalog.sensors import list_sensors, load_sensor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="build or show a scene index (GeoParquet)")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION")
    csub.required = True

    b = csub.add_parser("build", help="scan folders of rasters / datacubes into an index",
                        description="Scan ROOT folders (or files, URLs, .nc/.zarr datacubes) into a GeoParquet "
                                    "index with one row per acquisition.")
    b.add_argument("roots", nargs="+", metavar="ROOT")
    b.add_argument("--sensor", required=True, help=f"sensor name ({', '.join(list_sensors())}) or a YAML path")
    b.add_argument("--out", required=True, help="output .parquet path")
    b.add_argument("--band-order", help="comma-separated band order of multi-band files without band "
                                        "descriptions (default: the sensor's stack_band_order)")
    b.add_argument("--datetime-source", default="filename,tags,sidecar",
                   help="where to look for acquisition times, in order (default: %(default)s)")
    b.add_argument("--datetime-pattern", action="append", default=[],
                   help="extra file-name regex with a named group 'date' (or 'doy'); repeatable")
    b.add_argument("--datetime", help="one acquisition time for every file (ISO 8601)")
    b.add_argument("--nodata", type=float, help="nodata value for files that declare none (default: sensor's)")
    b.add_argument("--include", action="append", help=f"file name glob; repeatable (default: {' '.join(DEFAULT_PATTERNS)})")
    b.add_argument("--exclude", action="append", default=[], help="glob of files to leave out; repeatable")
    b.add_argument("--strict", action="store_true", help="fail on files that cannot be assigned to a band")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    b.set_defaults(func=run_build, command="catalog build")

    s = csub.add_parser("show", help="print a summary of an index")
    s.add_argument("index")
    s.add_argument("--root", help="where the data lives now, if it moved since the index was built")
    s.set_defaults(func=run_show, command="catalog show")

    n = sub.add_parser("sensors", help="list sensors, or show one sensor's bands")
    n.add_argument("name", nargs="?")
    n.set_defaults(func=run_sensors, command="sensors")


def run_build(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    sources = [s.strip() for s in args.datetime_source.split(",") if s.strip()]
    bad = [s for s in sources if s not in ("filename", "tags", "sidecar")]
    if bad:
        raise ValueError(f"--datetime-source: unknown source(s) {bad}; allowed: filename, tags, sidecar")
    options = IndexOptions(
        band_order=[b.strip() for b in args.band_order.split(",")] if args.band_order else None,
        datetime_sources=sources, datetime_patterns=args.datetime_pattern, datetime=args.datetime,
        nodata=args.nodata, patterns=tuple(args.include) if args.include else DEFAULT_PATTERNS,
        exclude=tuple(args.exclude), strict=args.strict)
    index = build_index(args.roots, args.sensor, options)
    index.save(out)
    print(index.summary())
    print(f"\nwrote {len(index)} acquisitions to {out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(open_index(args.index, root=args.root, check=args.root is not None).summary())
    return 0


def run_sensors(args: argparse.Namespace) -> int:
    if not args.name:
        for name in list_sensors():
            s = load_sensor(name)
            print(f"{name:22s} {len(s.bands):2d} bands  {s.description}")
        return 0
    s = load_sensor(args.name)
    print(f"{s.name}: {s.description}\n")
    print(f"{'band':7s} {'common':10s} {'nm':>8s} {'width':>6s} {'gsd':>5s} {'scale':>9s} {'offset':>7s} "
          f"{'nodata':>7s} {'mean':>8s} {'std':>8s}  aliases")
    for b in s.bands:
        print(f"{b.name:7s} {b.common_name or '':10s} {b.wavelength_nm:8.1f} {b.bandwidth_nm:6.1f} {b.gsd_m:5g} "
              f"{b.scale:9.3g} {b.offset:7.3g} {str(b.nodata):>7s} {s.normalization.mean[b.name]:8.4f} "
              f"{s.normalization.std[b.name]:8.4f}  {', '.join(b.aliases)}")
    print(f"\nnormalisation: {s.normalization.source}")
    return 0
