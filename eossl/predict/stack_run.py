"""What ``eossl predict --stack`` does after parsing: the map and its confidence (:mod:`eossl.predict.stack_map`),
a quick look beside the reference labels, and, for a model fitted on one evaluation split (``fit_on: split``)
mapping the stack it was fitted on, the map's scores on that split's test parcels read back from the written
COG (``<out stem>_scores.json``): the evaluation's per-seed scores of the same row, seed and k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from eossl.predict.config import StackMapConfig
from eossl.predict.stack_fit import fit_splits, fit_stack_again, read_fit, score_on_split
from eossl.predict.stack_map import StackMap, class_colors, predict_stack_map
from eossl.runs import write_json

__all__ = ["describe", "map_stack", "preview_path", "scores_path", "score_written_map"]


def preview_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_preview.png")


def scores_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_scores.json")


def _same(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _reference(cfg: StackMapConfig, fit: dict, grid) -> tuple[np.ndarray, int] | None:
    """(label codes on the map's grid, their nodata) of ``cfg.labels`` or of the fit's own labels when the map is
    of the stack the model was fitted on; None otherwise."""
    from eossl.data.labelled.label_grid import load_label_grid

    s = fit.get("stack") or {}
    if cfg.labels is not None:
        same = s.get("labels") and _same(cfg.labels, s["labels"])
        lg = load_label_grid(cfg.labels, grid, variable=s.get("variable") if same else None)
    elif s and _same(cfg.stack, s["path"]):
        lg = load_label_grid(s["labels"], grid, variable=s.get("variable"), legend=s.get("legend"))
    else:
        return None
    return lg.codes, lg.nodata


def score_written_map(out: str | Path, fit: dict) -> dict:
    """The scores of the map COG ``out`` on the test parcels of the fit's split (read back from the file)."""
    with rasterio.open(out) as ds:
        codes = ds.read(1).astype(np.int64).ravel()
    ls = fit_stack_again(fit)
    return score_on_split(codes, ls, fit_splits(fit, ls), fit["split"]["seed"])


def map_stack(cfg: StackMapConfig, run_dir: str | Path, quick_look: bool = True) -> dict[str, str]:
    """Write the map of ``cfg`` (``cfg.out`` relative to ``run_dir``) and its companions; returns their paths."""
    import warnings

    out = Path(run_dir) / cfg.out
    res: StackMap = predict_stack_map(cfg.model, cfg.stack, out, overwrite=cfg.overwrite, chunk=cfg.chunk,
                                      device=cfg.device)
    fit = read_fit(cfg.model)
    outputs = {"map": str(res.out), "confidence": str(res.confidence_out)}
    if quick_look:
        from eossl.report.crop_maps import save_crop_map_figure

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")              # legend repairs were reported when the model was fitted
            ref = _reference(cfg, fit, res.grid)
        title = f"{Path(cfg.stack).name}: {fit.get('model', 'map model')}"
        outputs["preview"] = str(save_crop_map_figure(
            preview_path(out), res.codes, res.nodata, res.class_codes, res.classes, class_colors(len(res.classes)),
            *(ref or (None, 0)), confidence=res.confidence, title=title))
    if fit.get("split") and _same(cfg.stack, fit["stack"]["path"]):
        scores = score_written_map(res.out, fit)
        write_json(scores_path(out), {"seed": fit["split"]["seed"], "k": fit["split"]["k"], "row": fit["row"],
                                      "model": fit["model"], "protocol": fit["protocol"], **scores,
                                      "fit_macro_f1": fit["split"]["scores"]["macro_f1"]})
        outputs["scores"] = str(scores_path(out))
    return outputs


def describe(outputs: dict[str, str]) -> str:
    """One line on what was written."""
    with rasterio.open(outputs["map"]) as ds:
        names = json.loads(ds.tags()["classes"])
        grid = f"{ds.width}x{ds.height} px at {ds.res[0]:g} m, {ds.crs}"
    text = f"wrote a {len(names)}-class crop-type map ({grid}) to {outputs['map']}, its confidence to " \
           f"{outputs['confidence']}"
    if "scores" in outputs:
        s = json.loads(Path(outputs["scores"]).read_text())
        text += (f"; on the test parcels of seed {s['seed']}, k={s['k']}: macro-F1 {100 * s['macro_f1']:.1f}% "
                 f"({outputs['scores']})")
    return text
