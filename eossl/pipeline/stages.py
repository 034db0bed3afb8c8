"""How the pipeline runs a stage: through its command's own module (:mod:`eossl.commands`), given to the runner
as a table (command name -> module), so the pipeline sits below the commands and names none of them.

A stage command (:class:`StageCommand`) gives its resolved config with ``stage_config(stage, path, sets, ref,
artifacts)`` (``ref``: artifact -> path of the stages it references; ``artifacts``: every earlier stage's) and
runs it with ``run(cfg, run_dir, ctx)`` -> the artifacts it produced (paths), the same ``run`` as ``eossl
<command>`` (whose run directory is a new one under --runs, or, for the commands that write where --out says, the
working directory, against which a relative ``out`` of their config resolves). :func:`config_digest` is what the runner records to decide whether a stage can be skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eossl.config import to_dict
from eossl.pipeline.spec import ARTIFACT_OF, StageSpec

__all__ = ["RunContext", "StageCommand", "config_digest", "resolve", "run_stage", "outputs_exist"]


class StageCommand(Protocol):
    """What the pipeline reads of a command module (see :mod:`eossl.commands`)."""

    NAME: str
    PRODUCES: frozenset[str]
    ACCEPTS: frozenset[str]

    def stage_config(self, stage: StageSpec, path: Path | None, sets: list[str], ref: dict[str, str],
                     artifacts: dict[str, dict[str, str]]) -> Any: ...

    def run(self, cfg: Any, run_dir: Path, ctx: RunContext) -> dict[str, str]: ...


def _silent(*args, **kwargs) -> None:
    return None


@dataclass
class RunContext:
    """What a running command may need beyond its config. ``progress``: progress bars; ``echo``: where its
    closing summary goes (print on the command line, nowhere in a pipeline); ``resume``: continue the
    interrupted attempt in its run directory (pretraining resumes from its last checkpoint); ``callbacks``:
    extra Lightning callbacks for pretraining; ``cache_dir``: shared caches (evaluate's features); a pipeline's
    directory and state (the report reads them); ``quick_looks``: also write the quick looks a report shows
    (a class map's preview; a pipeline stage does, ``eossl predict --out`` writes the map alone); ``out`` and
    ``overwrite``: the command line's ``--out`` of a command whose config names no output (``eossl extract``),
    written there instead of into the run directory, and whether it may replace an existing file."""

    progress: bool = True
    echo: Callable[..., None] = print
    resume: bool = False
    callbacks: list | None = None
    cache_dir: Path | None = None
    pipeline_dir: Path | None = None
    state: dict | None = None
    quick_looks: bool = False
    out: Path | None = None
    overwrite: bool = False


def _path(base: Path, config: str | None) -> Path | None:
    if config is None:
        return None
    p = Path(config)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise FileNotFoundError(f"config {config} not found (relative paths are relative to the pipeline file, "
                                f"{base})")
    return p


def resolve(stage: StageSpec, base: Path, artifacts: dict[str, dict[str, str]],
            commands: Mapping[str, StageCommand]):
    """The stage's resolved config, with the artifacts of the stages it references filled in."""
    ref = {k: artifacts[v][ARTIFACT_OF[k]] for k, v in stage.references().items()}
    return commands[stage.command].stage_config(stage, _path(base, stage.config), list(stage.set), ref, artifacts)


def config_digest(stage: StageSpec, cfg) -> str:
    """A hash of the command and its resolved config: equal digests mean nothing the stage reads changed (the
    artifacts of earlier stages enter through their paths, which change whenever those stages rerun)."""
    data = cfg if isinstance(cfg, dict) else to_dict(cfg)
    text = json.dumps({"command": stage.command, "config": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def outputs_exist(outputs: dict[str, str]) -> bool:
    return bool(outputs) and all(Path(p).exists() for p in outputs.values())


def run_stage(command: StageCommand, cfg, run_dir: Path, *, resume: bool, pipeline_dir: Path, state: dict,
              callbacks: list | None = None) -> dict[str, str]:
    """Run ``command`` with its resolved ``cfg`` into ``run_dir`` (quietly); returns its artifacts."""
    ctx = RunContext(progress=False, echo=_silent, resume=resume, callbacks=callbacks,
                     cache_dir=pipeline_dir / "cache", pipeline_dir=pipeline_dir, state=state, quick_looks=True)
    return command.run(cfg, run_dir, ctx)

