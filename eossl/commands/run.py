"""``eossl run [PIPELINE]``: run a pipeline's stages in order; unchanged stages are skipped, an interrupted one
resumes. Without PIPELINE: the built-in demo pipeline on the sample data (pipelines/demo.yaml)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import config_flags, print_config, stage_commands

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"
NAME = "run"
HELP = "run a pipeline (default: the built-in demo: pretrain, evaluate, finetune, predict, report)"
DESCRIPTION = ("Run the stages of a pipeline file in order. A stage whose config and inputs are unchanged since its "
               "last successful run is skipped; an interrupted pretraining stage resumes from its last checkpoint; "
               "the first failure stops the pipeline with the stage named. State and run directories live in "
               "RUNS/<pipeline name>/; report.md/report.html come from a report stage.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", nargs="?", help=f"pipeline YAML (default: {DEMO.relative_to(DEMO.parents[1])})")
    config_flags(p, "the pipeline YAML (same as PIPELINE)",
                 "override a key of the pipeline file, e.g. --set name=demo-2 (a separate state); repeatable",
                 runs="pipeline directories", dry_run="print each stage's resolved config and exit")


def cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.runner import PipelineError, run_pipeline
    from eossl.pipeline.spec import load_pipeline

    if args.pipeline and args.config and args.pipeline != args.config:
        raise ValueError("give the pipeline either as PIPELINE or as --config, not both")
    path = Path(args.pipeline or args.config) if (args.pipeline or args.config) else DEMO
    if not path.is_file():
        raise FileNotFoundError(f"pipeline file not found: {path}" + (
            "" if args.pipeline else " (the built-in demo ships in the source tree: run from a clone of eossl)"))
    if args.dry_run:
        _dry_run(path, args.set)
        return 0
    try:
        state = run_pipeline(path, stage_commands(), args.runs, overrides=args.set)
    except PipelineError as err:
        print(f"eossl run: {err}")
        return 1
    spec, _ = load_pipeline(path, args.set, stage_commands())
    report = next((r["outputs"]["report"] for r in state["stages"].values() if "report" in r.get("outputs", {})),
                  None)
    actions = [r.get("action", "?") for r in state["stages"].values()]
    print(f"done in {state['seconds']} s: {len(spec.stages)} stages ({actions.count('ran')} ran, "
          f"{actions.count('resumed')} resumed, {actions.count('skipped')} skipped); state in "
          f"{Path(args.runs) / spec.name / 'pipeline.json'}" + (f"; report: {report}" if report else ""))
    return 0


def _dry_run(path: Path, overrides: list[str]) -> None:
    """Print the stages with the configs they would run (artifacts of earlier stages shown as placeholders)."""
    from eossl.pipeline.spec import load_pipeline
    from eossl.pipeline.stages import resolve

    commands = stage_commands()
    spec, base = load_pipeline(path, overrides, commands)
    artifacts = {}
    for i, st in enumerate(spec.stages):
        cfg = resolve(st, base, artifacts, commands)
        print(f"# [{i + 1}/{len(spec.stages)}] {st.name}: {st.command}")
        print_config(cfg)
        artifacts[st.name] = {a: f"<{st.name}.{a}>" for a in sorted(commands[st.command].PRODUCES)}
