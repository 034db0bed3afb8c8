"""``eossl catalog build|search|show``: scene indexes; a pipeline's catalog stage indexes its roots."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config

NAME = "catalog"
HELP = "build (from folders or STAC), search (a STAC API) or show a scene index"
PRODUCES = frozenset({"index"})
ACCEPTS: frozenset[str] = frozenset()


def add_arguments(p: argparse.ArgumentParser) -> None:
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION")
    csub.required = True
    _build_arguments(csub)
    _search_arguments(csub)
    s = csub.add_parser("show", help="print a summary of an index")
    s.add_argument("index")
    s.add_argument("--root", help="where the data lives now, if it moved since the index was built")
    s.set_defaults(command="catalog show")


def _build_arguments(csub) -> None:
    from eossl.catalog.scan import DEFAULT_PATTERNS
    from eossl.catalog.sensors import list_sensors

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
    b.set_defaults(command="catalog build")


def _search_arguments(csub) -> None:
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
    q.set_defaults(command="catalog search")


def cli(args: argparse.Namespace) -> int:
    return {"build": run_build, "search": run_search, "show": run_show}[args.catalog_command](args)


def check_stage(stage, where: str) -> None:
    from eossl.config import ConfigError

    if not stage.roots:
        raise ConfigError(f"{where}: a catalog stage needs roots (and sensor)")


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
    """A pipeline's catalog stage: its roots and sensor (the stage's own keys; the index goes to its run
    directory)."""
    from eossl.catalog.stac import is_stac_source

    stac_only = bool(stage.roots) and all(is_stac_source(str(r)) for r in stage.roots)
    # STAC items name their sensor; folders of rasters default to the built-in corpus's
    sensor = stage.sensor or (None if stac_only else "sentinel2-l1c")
    return {"roots": list(stage.roots), "sensor": sensor, "set": sets}


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """Index ``cfg.roots`` as ``cfg.sensor`` into ``cfg.out``, relative to ``run_dir``: a pipeline's catalog stage
    writes RUN_DIR/index.parquet; `eossl catalog build` passes the working directory, so --out means what it says.
    ``cfg``: a :class:`~eossl.catalog.config.CatalogBuildConfig`, or a stage's ``{roots, sensor, set}``."""
    from eossl.catalog.build import build_index

    cfg = build_config(cfg)
    out = Path(run_dir) / cfg.out
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    index = build_index(list(cfg.roots), cfg.sensor, cfg, progress=ctx.progress)
    index.save(out)
    ctx.echo(index.summary())
    ctx.echo(f"\nwrote {len(index)} acquisitions to {out}")
    return {"index": str(out)}


def build_config(cfg):
    """A :class:`~eossl.catalog.config.CatalogBuildConfig` as it is, or the one of a pipeline stage's ``{roots,
    sensor, set}`` (:func:`stage_config`, whose shape keeps the stage's recorded digest): its index is
    ``index.parquet`` in the stage's run directory."""
    from eossl.catalog.config import CatalogBuildConfig
    from eossl.config import load_config

    if isinstance(cfg, CatalogBuildConfig):
        return cfg
    return load_config(CatalogBuildConfig, None, {"roots": cfg["roots"], "sensor": cfg["sensor"],
                                                  "out": "index.parquet"}, cfg["set"])


def run_build(args: argparse.Namespace) -> int:
    from eossl.catalog.config import CatalogBuildConfig
    from eossl.config import load_config
    from eossl.pipeline.stages import RunContext

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
    run(cfg, Path(), RunContext())
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
