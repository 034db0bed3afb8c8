"""``eossl run``: run a pipeline's stages in order, skipping what has not changed and resuming what was cut.

State lives in ``RUNS/<pipeline>/pipeline.json`` (written atomically after every change): per stage the digest
of its resolved config, its status (``running``, ``done``, ``failed``), its run directory and its artifacts.

* A stage whose digest matches its last successful run, with its artifacts still on disk, is skipped.
* A pretraining stage left ``running`` (the process was killed) with the same digest resumes in its run
  directory from its last checkpoint; other interrupted stages (minutes at most) run again in a new directory.
* Anything else runs in a new run directory (``RUNS/<pipeline>/<stage>-<timestamp>``); earlier runs are never
  overwritten. Because artifacts enter a stage's config by path, a stage that reruns makes every stage that uses
  its artifacts rerun too, and no other.
* The first failure stops the pipeline with the stage named; fix it and rerun: finished stages are skipped.

The stage commands come in as ``commands`` (name -> command module, :func:`eossl.commands.stage_commands`): the
pipeline sits below the commands in the layers and names none of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from eossl.pipeline.spec import PipelineSpec, load_pipeline
from eossl.pipeline.stages import StageCommand, config_digest, outputs_exist, resolve, run_stage
from eossl.runs import marks_failure, new_run_dir, write_json

log = logging.getLogger(__name__)

__all__ = ["PipelineError", "run_pipeline", "read_state"]


class PipelineError(RuntimeError):
    """A stage failed; the message names it and the cause."""


def read_state(pipeline_dir: Path) -> dict:
    path = Path(pipeline_dir) / "pipeline.json"
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def run_pipeline(path: str | Path, commands: Mapping[str, StageCommand], runs: str | Path = "runs", *,
                 overrides: list[str] | None = None, callbacks: dict[str, list] | None = None, echo=print) -> dict:
    """Run the pipeline file ``path`` with the stage ``commands``; returns its state (stage name -> record with
    ``action``: ran, resumed, skipped). ``callbacks``: extra Lightning callbacks per stage name (tests use them to
    kill a pretraining run)."""
    spec, base = load_pipeline(path, overrides, commands)
    pipeline_dir = Path(runs) / spec.name
    pipeline_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(pipeline_dir)
    state.update(name=spec.name, pipeline=str(Path(path).resolve()))
    artifacts: dict[str, dict[str, str]] = {}
    total = time.time()
    for i, stage in enumerate(spec.stages):
        cfg = resolve(stage, base, artifacts, commands)
        digest = config_digest(stage, cfg)
        rec = state["stages"].get(stage.name, {})
        prefix = f"[{i + 1}/{len(spec.stages)}] {stage.name} ({stage.command})"
        if rec.get("status") == "done" and rec.get("digest") == digest and outputs_exist(rec.get("outputs", {})):
            rec["action"] = "skipped"
            artifacts[stage.name] = rec["outputs"]
            echo(f"{prefix}: unchanged since {rec['finished']}, skipped ({rec['run_dir']})")
            continue
        resume = (rec.get("status") == "running" and rec.get("digest") == digest
                  and _resumable(commands[stage.command], rec))
        run_dir = Path(rec["run_dir"]) if resume else new_run_dir(pipeline_dir, stage.name)
        rec = {"digest": digest, "status": "running", "run_dir": str(run_dir), "command": stage.command,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "outputs": {}}
        state["stages"][stage.name] = rec
        _save(pipeline_dir, state)
        echo(f"{prefix}: {'resuming' if resume else 'running'} in {run_dir}")
        start = time.time()
        try:
            with marks_failure(run_dir, "rerun the pipeline: finished stages are skipped"):
                rec["outputs"] = run_stage(commands[stage.command], cfg, run_dir, resume=resume,
                                           pipeline_dir=pipeline_dir, state=state,
                                           callbacks=(callbacks or {}).get(stage.name))
        except Exception as err:
            rec.update(status="failed", error=f"{type(err).__name__}: {err}")
            _save(pipeline_dir, state)
            raise PipelineError(f"stage {stage.name!r} ({stage.command}) failed: {err}\n(its run directory: "
                                f"{run_dir}; fix the cause and rerun: finished stages are skipped)") from err
        rec.update(status="done", action="resumed" if resume else "ran", seconds=round(time.time() - start, 1),
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        artifacts[stage.name] = rec["outputs"]
        _save(pipeline_dir, state)
        echo(f"{prefix}: done in {rec['seconds']} s")
    state["seconds"] = round(time.time() - total, 1)
    _save(pipeline_dir, state)
    return state


def _resumable(command: StageCommand, rec: dict) -> bool:
    """A command that ``RESUMES`` (pretraining) continues from its last checkpoint; the other stages are short and
    run again in a new directory (the interrupted attempt's directory is left as it is)."""
    run_dir = Path(rec.get("run_dir", ""))
    return getattr(command, "RESUMES", False) and (run_dir / "checkpoints" / "last.ckpt").is_file()


def _save(pipeline_dir: Path, state: dict) -> None:
    write_json(pipeline_dir / "pipeline.json", state)


def describe(spec: PipelineSpec) -> str:
    return "\n".join(f"{i + 1}. {s.name}: {s.command}" + (f" ({s.config})" if s.config else "")
                     for i, s in enumerate(spec.stages))
