"""``eossl predict``: a georeferenced class map (COG) from a fine-tuned classifier and a scene or GeoTIFF, or a
crop-type map of a whole scene stack from a map model (a folder with stack_model.json, ``--stack DIR``); a
pipeline's predict stage writes it (and a quick look) into its run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config
from eossl.config import load_config
from eossl.predict.config import PredictConfig

NAME = "predict"
HELP = "class map (Cloud-Optimised GeoTIFF) of a scene from a fine-tuned classifier"
DESCRIPTION = ("Slide the classifier's windows over an indexed acquisition or a multi-band GeoTIFF (at the "
               "classifier's bands and GSD, on the source's CRS grid), blend their softmax probabilities and write "
               "uint8 classes (nodata 255, colour table, class names in the tags) to --out; with --probabilities "
               "also <out stem>_probabilities.tif (one uint8 band per class, p * 254). Flags override --config; "
               "--set overrides both.")
PRODUCES = frozenset({"map", "run"})
ACCEPTS = frozenset({"model", "input"})
MODEL_FILE = "stack_model.json"     # what tells a map model (eossl.evaluate.stack_model) from an image classifier


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="classifier directory (classifier.json + classifier.safetensors), "
                                                  "or a map model (stack_model.json) with --stack")
    p.add_argument("--stack", metavar="DIR", help="map model: the scene stack to map (folder or datacube file)")
    p.add_argument("--labels", metavar="FILE", help="map model: reference labels drawn beside the map (default: "
                                                    "the model's, when --stack is the stack it was fitted on)")
    p.add_argument("--overwrite", action="store_true", default=None, help="map model: replace existing outputs")
    p.add_argument("--input", metavar="INDEX_OR_TIFF", help="scene index (.parquet) or multi-band GeoTIFF/COG")
    p.add_argument("--acquisition", metavar="ID", help="acquisition id (or row position, 0 = first), for an index with several rows")
    p.add_argument("--band-order", "--bands", dest="band_order", nargs="+", metavar="BAND",
                   help="GeoTIFF input: every band of the file in order, space- or comma-separated "
                        "(default: the file's band descriptions)")
    p.add_argument("--sensor", help="GeoTIFF input: sensor of the file (default: the classifier's)")
    p.add_argument("--out", metavar="FILE.tif", help="output class map; never overwritten (a crop-type map: unless --overwrite)")
    p.add_argument("--overlap", type=float, help="fraction of a window shared with its neighbour (default 0.5)")
    p.add_argument("--probabilities", action="store_true", default=None,
                   help="also write <out stem>_probabilities.tif")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default 16)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")
    config_flags(p, "predict config YAML (keys of eossl.predict.config.PredictConfig; with a map model, of "
                    "StackMapConfig)",
                 "override, e.g. --set tile=2048 --set bounds=[x0,y0,x1,y1]; repeatable")


def _is_stack_map(model, sets: list[str]) -> bool:
    """A crop-type map of a stack: a ``stack=`` override, or a model folder holding stack_model.json."""
    return any(s.startswith("stack=") for s in sets) or (model is not None and (Path(model) / MODEL_FILE).is_file())


def _stack_cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.stages import RunContext
    from eossl.predict.config import StackMapConfig

    if args.input or args.acquisition or args.band_order or args.probabilities:
        raise ValueError("a map model maps a stack: give --stack DIR (not --input, --acquisition, --bands, "
                         "--probabilities)")
    flags = {"model": args.model, "stack": args.stack, "labels": args.labels, "out": args.out,
             "overwrite": args.overwrite, "device": args.device}
    cfg = load_config(StackMapConfig, args.config, flags, args.set)
    if args.dry_run:
        return print_config(cfg)
    run(cfg, Path(), RunContext(quick_looks=True))
    return 0


def cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.stages import RunContext

    if args.stack or _is_stack_map(args.model, args.set):
        return _stack_cli(args)
    if args.overwrite or args.labels:
        raise ValueError("--overwrite and --labels are for crop-type maps of a stack (a map model with --stack); "
                         "image class maps are never overwritten")
    order = [b.strip() for item in args.band_order for b in item.split(",") if b.strip()] if args.band_order else None
    flags = {"model": args.model, "input": args.input, "acquisition": args.acquisition, "band_order": order,
             "sensor": args.sensor, "out": args.out, "overlap": args.overlap, "probabilities": args.probabilities,
             "device": args.device, "batch_size": args.batch_size, "progress": args.progress}
    cfg = load_config(PredictConfig, args.config, flags, args.set)
    if args.dry_run:
        return print_config(cfg)
    run(cfg, Path(), RunContext())
    return 0


def check_stage(stage, where: str) -> None:
    from eossl.config import ConfigError

    if not (stage.model and (stage.input or any(s.startswith("stack=") for s in stage.set))):
        raise ConfigError(f"{where}: a predict stage needs model (a finetune stage) and input (or, for a map "
                          f"model, set: [stack=DIR])")


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    if _is_stack_map(ref["model"], sets):
        from eossl.predict.config import StackMapConfig

        return load_config(StackMapConfig, path, {"model": ref["model"], "out": "map.tif"}, sets)
    return load_config(PredictConfig, path, {"model": ref["model"], "input": ref.get("input", stage.input),
                                             "out": "map.tif", "progress": False}, sets)


def run(cfg: PredictConfig, run_dir: Path, ctx) -> dict[str, str]:
    """The class map at ``cfg.out``, relative to ``run_dir``: a pipeline's predict stage writes RUN_DIR/map.tif and,
    as every stage with ``ctx.quick_looks``, a quick look RUN_DIR/map_preview.png; `eossl predict` passes the
    working directory, so --out means what it says."""
    from dataclasses import replace

    import rasterio

    from eossl.predict.config import StackMapConfig

    if isinstance(cfg, StackMapConfig):
        from eossl.predict.stack_run import describe, map_stack

        outputs = map_stack(cfg, run_dir, quick_look=ctx.quick_looks)
        ctx.echo(describe(outputs))
        return {"run": str(run_dir), **outputs}
    from eossl.predict.maps import predict_from_config, probabilities_path

    out, model = predict_from_config(replace(cfg, out=str(Path(run_dir) / cfg.out)))
    outputs = {"run": str(run_dir), "map": str(out)}
    if ctx.quick_looks:
        from eossl.report.maps import save_class_map_preview

        outputs["preview"] = str(save_class_map_preview(out, Path(run_dir) / "map_preview.png"))
    with rasterio.open(out) as ds:
        grid = f"{ds.width}x{ds.height} px at {model.info.gsd_m:g} m, {ds.crs}"
    extra = f" and per-class probabilities to {probabilities_path(out)}" if cfg.probabilities else ""
    ctx.echo(f"wrote a {len(model.info.classes)}-class {model.info.task} map of {cfg.input} ({grid}) to {out}{extra}")
    return outputs
