"""What every evaluation task (:mod:`eossl.evaluate.tasks`) is given beside its config, and what it reports beside
its rows.

A task is ``run(cfg, ctx) -> list[ResultRow]``: ``cfg`` the typed :class:`~eossl.evaluate.config.EvaluateConfig`
(weights already resolved: what to score, ks, seeds, baselines), ``ctx`` a :class:`TaskContext` (where and how it
runs). What the task found out beside the rows (its settings, a summary of the data, the splits, skipped ks,
warnings; optionally its own headline row and paired differences, when its protocol defines them) it records as
one :class:`TaskNotes` with ``ctx.record(notes)``; ``eossl evaluate`` writes both into ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eossl.report.rows import Headline, PairedDifference, ResultRow

__all__ = ["TaskContext", "TaskNotes"]


@dataclass(frozen=True)
class TaskNotes:
    """A task's outputs beside its rows, in ``metrics.json`` around ``results`` (None: the task has no such key).

    ``what``: what was scored, for plot titles ("90 chips"); not written."""

    what: str
    data: dict
    warnings: list[dict] = field(default_factory=list)
    settings: dict | None = None
    splits: list | dict | None = None
    skipped_k: dict | None = None
    headline: Headline | None = None                    # the task's own headline row (default: runs.py's rule)
    paired: list[PairedDifference] | None = None        # the task's own paired differences (default: per seed)

    @property
    def headline_score(self) -> str:
        """The score the task's tables lead with (``settings.headline``; overall accuracy by default)."""
        return (self.settings or {}).get("headline", "overall_accuracy")

    def to_dict(self, rows: list[ResultRow]) -> dict:
        """The task's part of ``metrics.json``: settings, data, splits, skipped_k, results, warnings."""
        out = {} if self.settings is None else {"settings": self.settings}
        out["data"] = self.data
        out.update({key: value for key, value in (("splits", self.splits), ("skipped_k", self.skipped_k))
                    if value is not None})
        return {**out, "results": [r.to_dict() for r in rows], "warnings": list(self.warnings)}


@dataclass
class TaskContext:
    """Where and how a task runs: ``device`` (resolved, e.g. "cuda:0"), ``progress`` bars, ``cache_dir`` for
    frozen features (None: no cache). The task records its :class:`TaskNotes` here once."""

    device: str = "cpu"
    progress: bool = True
    cache_dir: Path | None = None
    notes: TaskNotes | None = field(default=None, init=False)

    def record(self, notes: TaskNotes) -> None:
        if self.notes is not None:
            raise RuntimeError("a task records its notes once")
        self.notes = notes
