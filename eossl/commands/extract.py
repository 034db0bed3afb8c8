"""``eossl extract``: time series at points or polygons from indexed scenes and datacubes (a long table); a
pipeline's extract stage writes it into its run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "extract"
HELP = "time series at points, polygons or a point grid from scenes and datacubes (a long table)"
DESCRIPTION = ("Per geometry and date, the pixel under a point or the mean of the valid pixels in a polygon, for "
               "every band, from the acquisitions of an index (or of ROOTS indexed now). Writes a long table "
               "(Parquet or CSV) for `eossl evaluate --set task=series --set series.table=OUT --set "
               "series.id_column=sample_id --set series.time_column=date`.")
PRODUCES = frozenset({"table", "run"})
ACCEPTS = frozenset({"index"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("roots", nargs="*", metavar="ROOT", help="folders or .nc/.zarr datacubes to index now "
                                                            "(instead of --index)")
    p.add_argument("--index", help="a scene index from `eossl catalog build`")
    p.add_argument("--sensor", help="sensor of ROOTS")
    p.add_argument("--nodata", type=float, help="nodata of ROOTS files that declare none (e.g. 65535)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--labels", help="points or polygons (GeoPackage, GeoParquet, GeoJSON, Shapefile, CSV with "
                                        "lon/lat)")
    where.add_argument("--grid", type=float, metavar="METRES", help="instead of --labels: unlabeled points every "
                                                                    "METRES over the index's footprints (pixel "
                                                                    "centres), e.g. a pretraining table")
    p.add_argument("--label-column", help="the class column, copied to the table")
    p.add_argument("--id-column", help="one id per geometry (default: the row number)")
    p.add_argument("--label-crs", help="CRS of the label coordinates when the file declares none")
    p.add_argument("--bands", help="comma-separated bands (default: every band of the index)")
    p.add_argument("--out", required=True, help="output .parquet or .csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config(args: argparse.Namespace):
    """The ExtractConfig of the flags (this command takes no config file)."""
    from eossl.data.series.config import ExtractConfig

    if bool(args.index) == bool(args.roots):
        raise ValueError("give --index or ROOTS (with --sensor), not both")
    if args.roots and not args.sensor:
        raise ValueError("ROOTS need --sensor (e.g. --sensor sentinel2-l2a)")
    if args.grid is not None and (args.label_column or args.id_column or args.label_crs):
        raise ValueError("--grid makes its own points: --label-column, --id-column and --label-crs go with --labels")
    return ExtractConfig(roots=args.roots or None, index=args.index, sensor=args.sensor, nodata=args.nodata,
                         labels=args.labels, grid_m=args.grid, label_column=args.label_column,
                         id_column=args.id_column, label_crs=args.label_crs,
                         bands=[b.strip() for b in args.bands.split(",")] if args.bands else None)


def cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.stages import RunContext

    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it, or choose another --out")
    run(config(args), Path(), RunContext(progress=not args.no_progress, out=Path(args.out),
                                         overwrite=args.overwrite))
    return 0


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    from eossl.config import load_config
    from eossl.data.series.config import ExtractConfig

    return load_config(ExtractConfig, path, overrides=sets + ([f"index={ref['index']}", "roots=null"]
                                                              if "index" in ref else []))


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """The table of ``cfg`` as RUN_DIR/series.<format> (a pipeline's extract stage), or at ``ctx.out`` (`eossl
    extract --out`: the config names no output, so the command line's path comes with the context)."""
    from eossl.data.series.extract import run_extract

    if ctx.out is None:
        run_dir.mkdir(parents=True, exist_ok=True)
    out, table = run_extract(cfg, ctx.out or run_dir / f"series.{cfg.format}", overwrite=ctx.overwrite or ctx.resume,
                             progress=ctx.progress)
    n = table["sample_id"].nunique()
    ctx.echo(f"wrote {len(table)} rows ({n} geometries x dates, {int((table['valid_pixels'] > 0).sum())} with valid "
             f"pixels) to {out}")
    return {"table": str(out), "run": str(run_dir)}
