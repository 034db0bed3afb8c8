"""``eossl catalog build|search|show`` and ``eossl sensors``: scene indexes and the sensor catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.catalog.config import CatalogBuildConfig
from eossl.catalog.scan import DEFAULT_PATTERNS
from eossl.catalog.sensors import list_sensors, load_sensor
from eossl.commands import config_flags, print_config
from eossl.config import load_config
from eossl.pipeline.commands import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help=COMMANDS["catalog"].help)
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION")
    csub.required = True

    b = csub.add_parser("build", help="scan folders of rasters / datacubes into an index",
                        description="Scan ROOT folders (or files, URLs, .nc/.zarr datacubes, STAC Item / "
                                    "ItemCollection / catalog JSON) into a GeoParquet index with one row per "
                                    "acquisition.")
    b.add_argument("roots", nargs="*", metavar="ROOT")
    b.add_argument("--sensor", help=f"sensor name ({', '.join(list_sensors())}) or a YAML path; optional when every "
                                    f"ROOT is STAC JSON (inferred per item, the index says which)")
    b.add_argument("--out", help="output .parquet path")
    config_flags(b, "YAML with the keys of these options (roots, sensor, out, band_order, ...)")
    b.add_argument("--band-order", help="comma-separated band names of multi-band files, in file order; NAME:skip "
                                        "(or skip) leaves a band out, e.g. B1,B2,B3,B4,B5,B7,QA:skip (default: the "
                                        "band descriptions, else the sensor's stack_band_order); must agree with "
                                        "the band descriptions when a file has them")
    b.add_argument("--datetime-source",
                   help="where to look for acquisition times, in order (default: filename,tags,sidecar)")
    b.add_argument("--datetime-pattern", action="append", default=[],
                   help="extra file-name regex with a named group 'date' (or 'doy'); repeatable")
    b.add_argument("--datetime", help="one acquisition time for every file (ISO 8601)")
    b.add_argument("--nodata", type=float, help="nodata value for files that declare none (default: sensor's)")
    b.add_argument("--include", action="append", help=f"file name glob; repeatable (default: {' '.join(DEFAULT_PATTERNS)})")
    b.add_argument("--exclude", action="append", default=[], help="glob of files to leave out; repeatable")
    b.add_argument("--strict", action="store_true", help="fail on files that cannot be assigned to a band")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    b.add_argument("--quick", action="store_true",
                   help="check headers only; skip reading one block of every file (which finds truncated files)")
    b.add_argument("--no-cloud-mask", action="store_true",
                   help="ignore SCL / QA_PIXEL / Fmask files beside the bands (by default their cloud, shadow, "
                        "cirrus and no-data pixels are invalid)")
    b.set_defaults(func=run_build, command="catalog build")

    q = csub.add_parser("search", help="query a STAC API and index the items it returns",
                        description="Search a STAC API (pystac-client) and write the scene index of the items "
                                    "found, plus the items themselves as an ItemCollection (--items-out). Asset "
                                    "hrefs stay URLs, read later through GDAL's remote access.")
    q.add_argument("url", help="the STAC API landing page, e.g. https://earth-search.aws.element84.com/v1")
    q.add_argument("--collection", action="append", required=True, help="collection id; repeatable")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--bbox", help="west,south,east,north in degrees (EPSG:4326)")
    where.add_argument("--intersects", help="a vector file (GeoJSON, GeoPackage, shapefile): items touching its "
                                            "geometries")
    q.add_argument("--datetime", help="an instant or range, e.g. 2023-04-01/2023-09-30 (.. for open ends)")
    q.add_argument("--max-cloud", type=float, help="largest eo:cloud_cover (percent) to keep")
    q.add_argument("--max-items", type=int, default=100, help="most items to return (default 100)")
    q.add_argument("--sensor", help="sensor of every item (default: inferred per item)")
    q.add_argument("--out", required=True, help="output .parquet path")
    q.add_argument("--items-out", help="where to write the items found (default: OUT with .items.json)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing index / items file")
    q.add_argument("--quick", action="store_true", help="read asset headers only (no block read per asset)")
    q.add_argument("--no-cloud-mask", action="store_true", help="do not use the items' SCL / QA_PIXEL assets")
    q.set_defaults(func=run_search, command="catalog search")

    s = csub.add_parser("show", help="print a summary of an index")
    s.add_argument("index")
    s.add_argument("--root", help="where the data lives now, if it moved since the index was built")
    s.set_defaults(func=run_show, command="catalog show")


def register_sensors(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("sensors", help=COMMANDS["sensors"].help)
    n.add_argument("name", nargs="?")
    n.set_defaults(func=run_sensors, command="sensors")


def run_build(args: argparse.Namespace) -> int:
    from eossl.catalog.build import build_index

    flags = {"roots": args.roots or None, "sensor": args.sensor, "out": args.out,
             "band_order": [b.strip() for b in args.band_order.split(",")] if args.band_order else None,
             "datetime_sources": [s.strip() for s in args.datetime_source.split(",") if s.strip()]
             if args.datetime_source else None,
             "datetime_patterns": args.datetime_pattern or None, "datetime": args.datetime, "nodata": args.nodata,
             "include": args.include, "exclude": args.exclude or None, "strict": args.strict or None,
             "overwrite": args.overwrite or None, "quick": args.quick or None,
             "cloud_mask": False if args.no_cloud_mask else None}
    cfg = load_config(CatalogBuildConfig, args.config, flags, args.set)
    if args.dry_run:
        return print_config(cfg)
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    index = build_index(list(cfg.roots), cfg.sensor, cfg)
    index.save(out)
    print(index.summary())
    print(f"\nwrote {len(index)} acquisitions to {out}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from eossl.catalog.config import IndexOptions
    from eossl.catalog.index import SceneIndex, make_frame
    from eossl.catalog.stac import item_rows, save_items, search_items

    out = Path(args.out)
    items_out = Path(args.items_out) if args.items_out else out.with_suffix(".items.json")
    for path, what in ((out, "--out"), (items_out, "--items-out")):
        if path.exists() and not args.overwrite:
            raise ValueError(f"{path} exists; pass --overwrite to replace it, or choose another {what}")
    bbox = None
    if args.bbox:
        try:
            bbox = [float(v) for v in args.bbox.split(",")]
        except ValueError:
            bbox = []
        if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            raise ValueError(f"--bbox {args.bbox!r}: give west,south,east,north in degrees, e.g. 4.2,50.7,4.6,50.9")
    intersects = _geometry(args.intersects) if args.intersects else None
    items = search_items(args.url, collections=args.collection, bbox=bbox, intersects=intersects,
                         datetime=args.datetime, max_cloud=args.max_cloud, max_items=args.max_items)
    if not items:
        raise ValueError(f"the search of {args.url} found no items (collections {', '.join(args.collection)}); "
                         f"widen --bbox/--intersects or --datetime, or raise --max-cloud")
    options = IndexOptions(quick=args.quick, cloud_mask=not args.no_cloud_mask)
    index = SceneIndex(make_frame(item_rows(items, args.sensor, options, source=args.url)))
    save_items(items, items_out)
    index.save(out)
    print(index.summary())
    print(f"\nwrote {len(index)} acquisitions to {out} and the {len(items)} items to {items_out}")
    return 0


def _geometry(path: str) -> dict:
    """The union of a vector file's geometries, in EPSG:4326, as GeoJSON."""
    import geopandas as gpd
    from shapely.geometry import mapping

    try:
        frame = gpd.read_file(path)
    except Exception as err:  # pyogrio raises several types
        raise ValueError(f"--intersects {path}: cannot read it as a vector file ({err})") from err
    if frame.empty:
        raise ValueError(f"--intersects {path}: the file holds no geometries")
    if frame.crs is not None:
        frame = frame.to_crs("EPSG:4326")
    return mapping(frame.geometry.union_all())


def run_show(args: argparse.Namespace) -> int:
    from eossl.catalog.index import open_index

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
