"""The evaluation tasks of ``eossl evaluate``, by name (``EvaluateConfig.task``).

Every task is a module with ``run(cfg, ctx) -> list[ResultRow]``: ``cfg`` the
:class:`~eossl.evaluate.config.EvaluateConfig`, ``ctx`` a :class:`~eossl.evaluate.context.TaskContext` into which
the task records its :class:`~eossl.evaluate.context.TaskNotes` (settings, data, splits, warnings);
:class:`~eossl.report.rows.ResultRow` the typed row of ``metrics.json``. This module only maps names to them.
"""

from __future__ import annotations

from collections.abc import Callable

from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext
from eossl.evaluate.tasks import crop, patch, segment, series, stack
from eossl.registry import Registry
from eossl.report.rows import ResultRow

__all__ = ["TASKS", "Task"]

Task = Callable[[EvaluateConfig, TaskContext], list[ResultRow]]

TASKS: Registry[Task] = Registry("evaluation task")
"""task name -> its module's ``run``."""

TASKS.register("patch")(patch.run)
TASKS.register("crop")(crop.run)
TASKS.register("series")(series.run)
TASKS.register("segment")(segment.run)
TASKS.register("stack")(stack.run)
