"""Every ``eossl`` command, declared once.

The command line builds its parser from this list and imports a command's module only when that command runs
(``eossl --help``, ``--version`` and ``eossl sensors`` answer without loading torch); pipelines take their stage
commands from it: what a stage produces, which artifacts of earlier stages it accepts, and the stage class
(:mod:`eossl.pipeline.stages`) that reads its config and runs it. This module imports nothing heavy.

>>> COMMANDS["evaluate"].produces
frozenset({'run', 'metrics'})
>>> stage_commands()
['catalog', 'extract', 'pretrain', 'pretrain-series', 'export', 'evaluate', 'finetune', 'predict', 'report']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["ARTIFACT_OF", "COMMANDS", "Command", "command", "stage_commands"]


@dataclass(frozen=True)
class Command:
    """``parser``: ``"module:function"`` adding the command's argparse parser to a subparsers action (the
    function sets ``func``, the CLI's ``run(args)``); ``stage``: ``"module:Class"`` of its pipeline stage, or None
    for a command that is not a pipeline stage."""

    name: str
    help: str
    parser: str
    stage: str | None = None
    produces: frozenset[str] = frozenset()
    accepts: frozenset[str] = frozenset()

    def add_parser(self, sub) -> None:
        """Import the command's module and add its full parser to ``sub``."""
        _load(self.parser)(sub)

    def stage_class(self):
        if self.stage is None:
            raise ValueError(f"{self.name!r} is not a pipeline stage; stage commands: {', '.join(stage_commands())}")
        return _load(self.stage)


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


_STAGES = "eossl.pipeline.stages"
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("catalog", "build (from folders or STAC), search (a STAC API) or show a scene index",
            "eossl.commands.catalog:register",
            f"{_STAGES}:CatalogStage", produces=frozenset({"index"})),
    Command("sensors", "list sensors, or show one sensor's bands", "eossl.commands.catalog:register_sensors"),
    Command("extract", "time series at points, polygons or a point grid from scenes and datacubes (a long table)",
            "eossl.commands.extract:register", f"{_STAGES}:ExtractStage", produces=frozenset({"table", "run"}),
            accepts=frozenset({"index"})),
    Command("cache", "pre-extract chips from an index into a chip cache", "eossl.commands.cache:register"),
    Command("views", "write a PNG of chips and their augmented SSL views", "eossl.commands.views:register"),
    Command("pretrain", "self-supervised pretraining (default: VICReg / ResNet-18 on the built-in scene)",
            "eossl.commands.pretrain:register", f"{_STAGES}:PretrainStage",
            produces=frozenset({"weights", "index", "run"}), accepts=frozenset({"index"})),
    Command("pretrain-series", "temporal pretraining: masked autoencoding of pixel time series",
            "eossl.commands.pretrain_series:register", f"{_STAGES}:PretrainSeriesStage",
            produces=frozenset({"weights", "run"}), accepts=frozenset({"table"})),
    Command("export", "export a pretraining run's backbone as portable weights", "eossl.commands.export:register",
            f"{_STAGES}:ExportStage", produces=frozenset({"weights"}), accepts=frozenset({"run"})),
    Command("import", "published weights (torchgeo:NAME, timm/torchvision checkpoints) as eossl weights",
            "eossl.commands.import_weights:register"),
    Command("evaluate", "few-label evaluation: linear probe, kNN, fine-tuning, with baselines",
            "eossl.commands.evaluate:register", f"{_STAGES}:EvaluateStage", produces=frozenset({"run", "metrics"}),
            accepts=frozenset({"weights"})),
    Command("finetune", "fine-tune weights on labelled chips and save a classifier for `eossl predict`",
            "eossl.commands.evaluate:register_finetune", f"{_STAGES}:FinetuneStage", produces=frozenset({"model", "run"}),
            accepts=frozenset({"weights"})),
    Command("predict", "class map (Cloud-Optimised GeoTIFF) of a scene from a fine-tuned classifier",
            "eossl.commands.predict:register", f"{_STAGES}:PredictStage", produces=frozenset({"map", "run"}),
            accepts=frozenset({"model", "input"})),
    Command("report", "write report.md / report.html of a pipeline or of one run", "eossl.commands.report:register",
            f"{_STAGES}:ReportStage", produces=frozenset({"report"})),
    Command("run", "run a pipeline (default: the built-in demo: pretrain, evaluate, finetune, predict, report)",
            "eossl.commands.run:register"),
)}

# the artifact a stage reference takes from the stage it names
ARTIFACT_OF = {"input": "index", "index": "index", "weights": "weights", "model": "model", "run": "run",
               "table": "table"}


def command(name: str) -> Command:
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
    return COMMANDS[name]


def stage_commands() -> list[str]:
    """The commands a pipeline stage can run, in data-flow order."""
    return [c.name for c in COMMANDS.values() if c.stage is not None]
