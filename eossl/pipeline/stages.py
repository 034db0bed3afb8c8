"""What each pipeline stage runs: the same library functions as the commands, with artifacts of earlier stages.

``resolve(stage, base, artifacts)`` gives the stage's resolved config (a typed config object, or a dict for
catalog/export/report) with the artifacts it references filled in; its :func:`config_digest` is what the runner
records to decide whether the stage can be skipped. ``run(...)`` runs it into a run directory and returns the
artifacts it produced (paths).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eossl.config import to_dict
from eossl.pipeline.spec import StageSpec

__all__ = ["config_digest", "resolve", "run_stage", "outputs_exist"]


def _path(base: Path, config: str | None) -> Path | None:
    if config is None:
        return None
    p = Path(config)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise FileNotFoundError(f"config {config} not found (relative paths are relative to the pipeline file, "
                                f"{base})")
    return p


def resolve(stage: StageSpec, base: Path, artifacts: dict[str, dict[str, str]]):
    """The stage's resolved config, with the artifacts of the stages it references filled in."""
    ref = {k: artifacts[v][_artifact_of(k)] for k, v in stage.references().items()}
    cfg_path = _path(base, stage.config)
    sets = list(stage.set)
    if stage.command == "pretrain":
        from eossl.train.config import load_pretrain_config

        return load_pretrain_config(cfg_path, sets + ([f"corpus.index={ref['index']}"] if "index" in ref else []))
    if stage.command in ("evaluate", "finetune"):
        from eossl.finetune.config import EvaluateConfig, FinetuneConfig, load_config

        cls = EvaluateConfig if stage.command == "evaluate" else FinetuneConfig
        return load_config(cls, cfg_path, sets + ([f"weights={ref['weights']}"] if "weights" in ref else []))
    if stage.command == "predict":
        from eossl.finetune.predict_config import load_predict_config

        source = ref.get("input", stage.input)
        return load_predict_config(cfg_path, {"model": ref["model"], "input": source, "out": "map.tif",
                                              "progress": False}, sets)
    if stage.command == "catalog":
        return {"roots": list(stage.roots), "sensor": stage.sensor or "sentinel2-l1c", "set": sets}
    if stage.command == "export":
        return {"run": ref["run"]}
    return {"report": dict(artifacts)}   # every earlier stage's artifacts: any rerun upstream redraws the report


def _artifact_of(reference: str) -> str:
    return {"input": "index", "index": "index", "weights": "weights", "model": "model", "run": "run"}[reference]


def config_digest(stage: StageSpec, cfg) -> str:
    """A hash of the command and its resolved config: equal digests mean nothing the stage reads changed (the
    artifacts of earlier stages enter through their paths, which change whenever those stages rerun)."""
    data = cfg if isinstance(cfg, dict) else to_dict(cfg)
    text = json.dumps({"command": stage.command, "config": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def outputs_exist(outputs: dict[str, str]) -> bool:
    return bool(outputs) and all(Path(p).exists() for p in outputs.values())


def run_stage(stage: StageSpec, cfg, run_dir: Path, *, resume: bool, pipeline_dir: Path, state: dict,
              callbacks: list | None = None) -> dict[str, str]:
    """Run ``stage`` with its resolved ``cfg`` into ``run_dir``; returns its artifacts. ``resume``: continue the
    interrupted attempt in ``run_dir`` (pretraining resumes from its last checkpoint; other stages start over)."""
    if stage.command == "pretrain":
        from eossl.train.pretrain import pretrain

        pretrain(cfg, run_dir, resume=resume, callbacks=callbacks)
        return {"run": str(run_dir), "weights": str(run_dir / "weights"), "index": str(run_dir / "index.parquet")}
    if stage.command == "evaluate":
        from eossl.finetune.runs import run_evaluate

        run_evaluate(cfg, run_dir, cache_dir=pipeline_dir / "cache" / "features", progress=False)
        return {"run": str(run_dir), "metrics": str(run_dir / "metrics.json")}
    if stage.command == "finetune":
        from eossl.finetune.runs import run_finetune

        run_finetune(cfg, run_dir, progress=False)
        return {"run": str(run_dir), "model": str(run_dir / "model")}
    if stage.command == "predict":
        return _predict(cfg, run_dir)
    if stage.command == "catalog":
        from eossl.catalog.build import build_index

        out = build_index(cfg["roots"], cfg["sensor"], progress=False).save(run_dir / "index.parquet")
        return {"index": str(out)}
    if stage.command == "export":
        from eossl.train.export import export_run

        export_run(cfg["run"], run_dir / "weights")
        return {"weights": str(run_dir / "weights")}
    from eossl.report.report import write_report

    path = write_report(run_dir, pipeline_dir, state)
    return {"report": str(path)}


def _predict(cfg, run_dir: Path) -> dict[str, str]:
    from dataclasses import replace

    from eossl.finetune.classifier import load_classifier
    from eossl.finetune.predict import predict_map
    from eossl.report.maps import save_class_map_preview

    cfg = replace(cfg, out=str(run_dir / "map.tif"))
    out = predict_map(load_classifier(cfg.model), cfg.input, cfg.out, acquisition=cfg.acquisition, bands=cfg.bands,
                      sensor=cfg.sensor, nodata=cfg.nodata, bounds=cfg.bounds, bounds_crs=cfg.bounds_crs,
                      overlap=cfg.overlap, batch_size=cfg.batch_size, probabilities=cfg.probabilities,
                      device=cfg.device, tile=cfg.tile, resampling=cfg.resampling,
                      max_output_gb=cfg.max_output_gb, progress=False)
    preview = save_class_map_preview(out, run_dir / "map_preview.png")
    return {"run": str(run_dir), "map": str(out), "preview": str(preview)}
