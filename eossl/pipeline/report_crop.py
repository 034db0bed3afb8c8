"""Report sections of the crop-type map of a scene stack: the map model (what it was fitted on) and the map (the
map beside the reference labels in the same colours, its confidence, and the confusion matrix and per-class F1 on
the test parcels: the map's own when its model was fitted on one evaluation split, else the stack evaluation's of
the same row, from that evaluation's metrics.json in the same pipeline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from eossl.report.crop_maps import save_per_class_f1
from eossl.report.figures import save_confusion_matrix

__all__ = ["SECTIONS", "is_crop_map", "is_map_model"]

MODEL_RECORD, FIT_RECORD = "stack_model.json", "fit.json"


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def is_map_model(run: Path, outputs: dict | None) -> bool:
    return (run / "model" / MODEL_RECORD).is_file()


def _map_file(run: Path, outputs: dict | None) -> Path | None:
    out = outputs or {}
    if out.get("map") and out.get("confidence"):
        return Path(out["map"])
    return next((p.with_name(p.name.replace("_confidence", "")) for p in sorted(run.glob("*_confidence.tif"))), None)


def is_crop_map(run: Path, outputs: dict | None) -> bool:
    return _map_file(run, outputs) is not None


def _map_model(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    fit = _json(Path(rec["run_dir"]) / "model" / FIT_RECORD)
    if not fit:
        return [("h2", f"Crop-type map model ({name})"), ("p", "A StackModel without a fit record.")]
    s = fit["stack"]
    per = ", ".join(f"{n} {fit['train_per_class'][str(c)]}" for c, n in zip(fit["codes"], fit["classes"]))
    where = (f"the training pixels of evaluation seed {fit['split']['seed']} at k = {fit['split']['k']}"
             if fit.get("split") else "every pixel of every labelled parcel (fragments excluded)")
    blocks = [("h2", f"Crop-type map model ({name})"),
              ("p", f"{fit['model']} / {fit['protocol']} (row {fit['row']}), fitted in {fit['seconds']} s on {where}"
                    f" of stack {s['name']} ({s['path']}, labels {s['labels']}): {fit['n_train']} px ({per}).")]
    if fit.get("warnings"):
        blocks.append(("warn", f"Warnings ({len(fit['warnings'])})", fit["warnings"]))
    return blocks


def _evaluation(pipeline_dir: Path, stack: str) -> dict:
    """The metrics.json of the last stack evaluation in the pipeline that scored ``stack`` ({} if none)."""
    found = {}
    for rec in _json(pipeline_dir / "pipeline.json").get("stages", {}).values():
        m = _json(Path(rec.get("run_dir", "")) / "metrics.json")
        if rec.get("status") == "done" and m.get("task") == "stack" and \
                stack in [d["name"] for d in m.get("data", {}).get("stacks", [])]:
            found = m
    return found


def _scores_blocks(name: str, out_dir: Path, cm: dict, per_class: dict, what: str) -> list[tuple]:
    blocks = []
    if cm:
        save_confusion_matrix(out_dir / f"{name}_confusion.png", cm["confusion_matrix"], list(cm["per_class"]),
                              title=what)
        blocks.append(("img", f"{name}_confusion.png", f"Confusion matrix on the test parcels: {what}"))
    if per_class:
        save_per_class_f1(out_dir / f"{name}_f1.png", per_class, title=what)
        blocks.append(("img", f"{name}_f1.png", f"Per-class F1 on the test parcels (multi-parcel classes): {what}"))
    return blocks


def _from_evaluation(name: str, fit: dict, m: dict, out_dir: Path) -> list[tuple]:
    ks = m["settings"]["ks"]
    k = ks[-1]
    row = next((r for r in m["results"] if r["model"] == fit.get("model") and r["protocol"] == fit.get("protocol")
                and r["k"] == k), None)
    if row is None:
        return []
    scope = fit["stack"]["name"]
    per = next((r["per_class_f1"] for r in m["parcel_scores"]["rows"] if r["scope"] == scope
                and r["model"] == row["model"] and r["protocol"] == row["protocol"] and r["k"] == k), {})
    mf = row["macro_f1"]
    text = (f"The stack evaluation of the same row at k = {k} ({len(row['per_seed'])} seeds, leave-one-parcel-out"
            f"): macro-F1 {100 * mf['mean']:.1f}% ± {100 * mf['ci95']:.1f} over the multi-parcel classes (over all "
            f"the evaluation's stacks); confusion matrix of every seed's test pixels, per-class F1 on {scope}.")
    return [("p", text)] + _scores_blocks(name, out_dir, row.get("metrics_all_seeds") or {}, per,
                                          f"{fit['model']} / {fit['protocol']}, k={k}, seeds pooled")


def _crop_map(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run = Path(rec["run_dir"])
    out = _map_file(run, rec.get("outputs"))
    conf = out.with_name(f"{out.stem}_confidence{out.suffix}")
    blocks = [("h2", f"Crop-type map ({name})"),
              ("p", f"Cloud-Optimised GeoTIFF of legend codes with a colour table and the class names in its tags: "
                    f"{out}; confidence (maximum class probability, float32, a separate file): {conf}.")]
    preview = out.with_name(f"{out.stem}_preview.png")
    if preview.is_file():
        shutil.copyfile(preview, out_dir / f"{name}_map.png")
        blocks.append(("img", f"{name}_map.png", "The map, the reference labels in the same colours (grey: labels "
                                                 "without a parcel, not mapped) and the confidence"))
    import rasterio

    with rasterio.open(out) as ds:
        fit = _json(Path(ds.tags().get("model", "")) / FIT_RECORD)
    scores = _json(out.with_name(f"{out.stem}_scores.json"))
    if scores:
        blocks.append(("p", f"The map read back from the file, on the test parcels of evaluation seed "
                            f"{scores['seed']} at k = {scores['k']} (its model was fitted on that split's training "
                            f"pixels): macro-F1 {100 * scores['macro_f1']:.1f}%, overall accuracy "
                            f"{100 * scores['overall_accuracy']:.1f}%, kappa {scores['kappa']:.3f}."))
        blocks += _scores_blocks(name, out_dir, scores["metrics"], scores["per_class_f1"],
                                 f"the map, seed {scores['seed']}, k={scores['k']}")
    elif fit:
        m = _evaluation(run.parent, fit["stack"]["name"])
        blocks += _from_evaluation(name, fit, m, out_dir) if m else [
            ("p", "No stack evaluation of this stack in the pipeline: no scores on test parcels (the map model was "
                  "fitted on every parcel).")]
    return blocks


# kind -> (what tells it, its test, its section), for eossl.pipeline.report's table of kinds
SECTIONS = {"crop-type map model": ("model/stack_model.json", is_map_model, _map_model),
            "crop-type map": ("map.tif with map_confidence.tif", is_crop_map, _crop_map)}
