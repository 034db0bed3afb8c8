"""``task: crop``: few-label crop classification of field time series (:mod:`eossl.evaluate.crops`).

Rows: model = the features, protocol = how the dates are aggregated (``mean + linear``: the date-averaged features
and a logistic regression; ``attention``, ``ltae``; ``linear`` for static features). There is no fine-tuning of
field series, so no scratch row."""

from __future__ import annotations

from eossl.data.labelled.fields import load_fields
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext, TaskNotes
from eossl.evaluate.crops import evaluate_crops
from eossl.report.rows import ResultRow, Score, SeedScores

__all__ = ["crop_rows", "run"]

_SCORES = ("overall_accuracy", "macro_f1", "kappa")
_PROTOCOLS = {"logreg": "linear", "mean": "mean + linear"}


def run(cfg: EvaluateConfig, ctx: TaskContext) -> list[ResultRow]:
    """Rows of :func:`evaluate_crops` on the fields of ``cfg.fields``; ``cfg.baselines`` picks random_init,
    band_statistics, rcf and fusion."""
    f, baselines = cfg.fields, cfg.baselines
    series = load_fields(f.scenes.open(), f.labels, f.class_column, chip_size=f.chip_size, gsd=f.gsd, bands=f.bands,
                         classes=f.classes, min_valid=f.min_valid, id_column=f.id_column, label_crs=f.label_crs,
                         crs_key="fields.label_crs")
    raw = evaluate_crops(series, weights=cfg.weights, arch=None if cfg.weights else cfg.arch, ks=tuple(cfg.ks),
                         seeds=cfg.seeds, seed=cfg.seed, block_size_m=f.block_size_m, test_fraction=cfg.test_fraction,
                         aggregation=tuple(f.aggregation), pool=f.pool, level=f.level,
                         attention_epochs=f.attention_epochs, C=cfg.C, device=ctx.device,
                         random_init="random_init" in baselines, band_stats="band_statistics" in baselines,
                         rcf="rcf" in baselines, fusion="fusion" in baselines)
    ctx.record(TaskNotes(what=f"{raw['data']['n_fields']} fields", settings=raw["settings"], data=raw["data"],
                         splits=raw["splits"], skipped_k=raw["skipped_k"], warnings=raw["warnings"]))
    return crop_rows(raw)


def crop_rows(raw: dict) -> list[ResultRow]:
    """:func:`evaluate_crops` output as result rows (model = features, protocol = aggregation); the row at the
    largest k carries the metrics of every seed pooled."""
    rows = []
    for m in raw["methods"].values():
        protocol = _PROTOCOLS.get(m["aggregation"], m["aggregation"])
        ks = list(m["by_k"])
        for k in ks:
            scores = m["by_k"][k]
            per_seed = [SeedScores(seed=raw["settings"]["seed"] + i, n_train=n,
                                   scores={sc: scores[sc]["values"][i] for sc in _SCORES})
                        for i, n in enumerate(scores["n_train"])]
            rows.append(ResultRow(m["features"], protocol, k, per_seed,
                                  {sc: Score.from_dict(scores[sc]) for sc in _SCORES}, dim=m["dim"],
                                  metrics_all_seeds=m["metrics_all_seeds"] if k == ks[-1] else None))
    return rows
