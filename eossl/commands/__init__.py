"""The ``eossl`` commands, one module each; :data:`COMMANDS` lists them, and the CLI and the pipeline read it.

A command module is light to import (no torch at module level, so ``eossl <command> --help`` answers at once)
and exposes:

* ``NAME``, ``HELP`` (one line, for ``eossl --help``), ``DESCRIPTION`` (for ``eossl NAME --help``);
* ``add_arguments(parser)``: its options;
* ``cli(args) -> int``: what ``eossl NAME`` does: the config from the file, the flags and ``--set``
  (``config(args)``), ``--dry-run``, a run directory, then ``run``;
* a pipeline stage command also ``PRODUCES`` / ``ACCEPTS`` (artifact names), ``stage_config(stage, path, sets,
  ref, artifacts)`` (its config from the stage spec and the artifacts of earlier stages) and
  ``run(cfg, run_dir, ctx) -> artifacts``, the same ``run`` its ``cli`` calls; optionally ``check_stage(stage)``
  and ``RESUMES`` (an interrupted stage continues in its run directory).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["COMMANDS", "modules", "stage_commands", "config_flags", "print_config"]

# every command, in the order `eossl --help` lists them: the modules of this package
COMMANDS = ("catalog", "sensors", "extract", "cache", "views", "pretrain", "pretrain_series", "export",
            "import_weights", "weights", "evaluate", "finetune", "predict", "report", "run")


def modules() -> dict[str, ModuleType]:
    """Command name -> its module, for every command."""
    loaded = (importlib.import_module(f"eossl.commands.{m}") for m in COMMANDS)
    return {mod.NAME: mod for mod in loaded}


def stage_commands() -> dict[str, ModuleType]:
    """The commands a pipeline stage can run (those with ``stage_config`` and ``run``), in data-flow order: the
    table :func:`eossl.pipeline.runner.run_pipeline` and :func:`eossl.pipeline.spec.load_pipeline` are given."""
    return {name: mod for name, mod in modules().items() if hasattr(mod, "stage_config")}


def config_flags(p, config: str, overrides: str = "dotted override; repeatable", runs: str | None = None,
                 dry_run: str = "print the resolved config and exit") -> None:
    """The flags of every configured command: --config (help ``config``), --set KEY=VALUE (repeatable), --dry-run,
    and --runs (the parent folder of new run directories) when ``runs`` names what goes there."""
    p.add_argument("--config", help=config)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=overrides)
    if runs:
        p.add_argument("--runs", default="runs", help=f"parent folder of {runs} (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help=dry_run)


def print_config(cfg) -> int:
    """--dry-run: print the resolved config (a config dataclass or plain data) as YAML; the exit code 0."""
    import yaml

    from eossl.config import to_dict

    print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return 0
