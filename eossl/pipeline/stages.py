"""What each pipeline stage runs: the same library functions as the commands, with artifacts of earlier stages.

One class per stage command of :data:`eossl.pipeline.commands.COMMANDS`: ``config(stage, path, sets, ref,
artifacts)`` gives its resolved config (typed, or a dict) with the artifacts it references (``ref``: artifact ->
path; ``artifacts``: every earlier stage's) filled in; ``run(cfg, run_dir, ctx)`` runs it and returns the artifacts
it produced (paths). :func:`config_digest` is what the runner records to decide whether a stage can be skipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from eossl.config import to_dict
from eossl.pipeline.commands import ARTIFACT_OF, command
from eossl.pipeline.spec import StageSpec

__all__ = ["StageContext", "config_digest", "resolve", "run_stage", "outputs_exist"]


def _path(base: Path, config: str | None) -> Path | None:
    if config is None:
        return None
    p = Path(config)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise FileNotFoundError(f"config {config} not found (relative paths are relative to the pipeline file, "
                                f"{base})")
    return p


@dataclass
class StageContext:
    """What a running stage may need beyond its config: ``resume`` (continue the interrupted attempt in its run
    directory; pretraining resumes from its last checkpoint, other stages start over), the pipeline's directory
    and state, and Lightning callbacks for pretraining."""

    pipeline_dir: Path
    state: dict
    resume: bool = False
    callbacks: list | None = field(default=None)


def resolve(stage: StageSpec, base: Path, artifacts: dict[str, dict[str, str]]):
    """The stage's resolved config, with the artifacts of the stages it references filled in."""
    ref = {k: artifacts[v][ARTIFACT_OF[k]] for k, v in stage.references().items()}
    return command(stage.command).stage_class().config(stage, _path(base, stage.config), list(stage.set), ref,
                                                        artifacts)


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
    """Run ``stage`` with its resolved ``cfg`` into ``run_dir``; returns its artifacts."""
    ctx = StageContext(pipeline_dir=pipeline_dir, state=state, resume=resume, callbacks=callbacks)
    return command(stage.command).stage_class().run(cfg, run_dir, ctx)


class CatalogStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
        from eossl.catalog.stac import is_stac_source

        stac_only = bool(stage.roots) and all(is_stac_source(str(r)) for r in stage.roots)
        # STAC items name their sensor; folders of rasters default to the built-in corpus's
        sensor = stage.sensor or (None if stac_only else "sentinel2-l1c")
        return {"roots": list(stage.roots), "sensor": sensor, "set": sets}

    @staticmethod
    def run(cfg: dict, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.catalog.build import build_index

        out = build_index(cfg["roots"], cfg["sensor"], progress=False).save(run_dir / "index.parquet")
        return {"index": str(out)}


class PretrainStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        from eossl.config import load_config
        from eossl.train.config import PretrainConfig

        return load_config(PretrainConfig, path, overrides=sets + ([f"corpus.index={ref['index']}"] if "index" in ref else []))

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.train.pretrain import pretrain

        pretrain(cfg, run_dir, resume=ctx.resume, callbacks=ctx.callbacks)
        return {"run": str(run_dir), "weights": str(run_dir / "weights"), "index": str(run_dir / "index.parquet")}


class ExtractStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        from eossl.config import load_config
        from eossl.data.chips.config import ExtractConfig

        return load_config(ExtractConfig, path, overrides=sets + ([f"index={ref['index']}", "roots=null"]
                                                                  if "index" in ref else []))

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.data.series.extract import run_extract

        run_dir.mkdir(parents=True, exist_ok=True)
        out, _ = run_extract(cfg, run_dir / f"series.{cfg.format}", overwrite=ctx.resume, progress=False)
        return {"table": str(out), "run": str(run_dir)}


class PretrainSeriesStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        from eossl.config import load_config
        from eossl.train.config import SeriesPretrainConfig

        # an extract stage's long table: sample_id per geometry, date per row
        table = [f"corpus.table={ref['table']}", "corpus.id_column=sample_id", "corpus.time_column=date"] \
            if "table" in ref else []
        return load_config(SeriesPretrainConfig, path, overrides=table + sets)

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.train.series_pretrain import pretrain_series

        pretrain_series(cfg, run_dir, progress=False)
        return {"run": str(run_dir), "weights": str(run_dir / "weights")}


class ExportStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
        return {"run": ref["run"]}

    @staticmethod
    def run(cfg: dict, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.train.export import export_run

        export_run(cfg["run"], run_dir / "weights")
        return {"weights": str(run_dir / "weights")}


def _labelled_config(cls_name: str, path, sets: list[str], ref: dict):
    from eossl.config import load_config
    from eossl.evaluate import config as evaluate_config

    cls = getattr(evaluate_config, cls_name)
    return load_config(cls, path, overrides=sets + ([f"weights={ref['weights']}"] if "weights" in ref else []))


class EvaluateStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        return _labelled_config("EvaluateConfig", path, sets, ref)

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.evaluate.runs import run_evaluate

        run_evaluate(cfg, run_dir, cache_dir=ctx.pipeline_dir / "cache" / "features", progress=False)
        return {"run": str(run_dir), "metrics": str(run_dir / "metrics.json")}


class FinetuneStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        return _labelled_config("FinetuneConfig", path, sets, ref)

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.evaluate.runs import run_finetune

        run_finetune(cfg, run_dir, progress=False)
        return {"run": str(run_dir), "model": str(run_dir / "model")}


class PredictStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict):
        from eossl.config import load_config
        from eossl.predict.config import PredictConfig

        return load_config(PredictConfig, path, {"model": ref["model"], "input": ref.get("input", stage.input),
                                          "out": "map.tif", "progress": False}, sets)

    @staticmethod
    def run(cfg, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from dataclasses import replace

        from eossl.predict.maps import predict_from_config
        from eossl.report.maps import save_class_map_preview

        out, _ = predict_from_config(replace(cfg, out=str(run_dir / "map.tif")))
        preview = save_class_map_preview(out, run_dir / "map_preview.png")
        return {"run": str(run_dir), "map": str(out), "preview": str(preview)}


class ReportStage:
    @staticmethod
    def config(stage: StageSpec, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
        return {"report": dict(artifacts)}   # every earlier stage's artifacts: any rerun upstream redraws the report

    @staticmethod
    def run(cfg: dict, run_dir: Path, ctx: StageContext) -> dict[str, str]:
        from eossl.pipeline.report import write_report

        return {"report": str(write_report(run_dir, ctx.pipeline_dir, ctx.state))}
