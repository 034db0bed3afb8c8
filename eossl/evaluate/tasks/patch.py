"""``task: patch``: few-label classification of labelled chips (:mod:`eossl.evaluate.patches`)."""

from __future__ import annotations

from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext
from eossl.evaluate.patches import evaluate_chips
from eossl.report.rows import ResultRow

__all__ = ["run"]


def run(cfg: EvaluateConfig, ctx: TaskContext) -> list[ResultRow]:
    """Rows of every (model, protocol) of ``cfg`` on the chips of ``cfg.data``."""
    rows, notes = evaluate_chips(cfg.data.load(), cfg, cache_dir=ctx.cache_dir, device=ctx.device,
                                 progress=ctx.progress)
    ctx.record(notes)
    return rows
