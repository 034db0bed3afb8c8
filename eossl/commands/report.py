"""``eossl report DIR``: write report.md and report.html of a pipeline's runs (DIR holds pipeline.json) or of
one run directory (pretraining, evaluation, fine-tuning, class map, ...: the run directory tells which)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "write report.md / report.html of a pipeline or of one run"
DESCRIPTION = ("Write a report (training curves, collapse monitors, views, few-label curve, confusion matrices, "
               "class-map quick look) of the runs recorded in DIR/pipeline.json, or of the single run DIR, into a "
               "new directory DIR/report-<time>.")
PRODUCES = frozenset({"report"})
ACCEPTS: frozenset[str] = frozenset()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline_dir", metavar="DIR", help="a pipeline directory (RUNS/<name>, holding pipeline.json) "
                                                        "or a run directory")


def cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.runner import read_state
    from eossl.pipeline.stages import RunContext
    from eossl.runs import new_run_dir

    pipeline_dir = Path(args.pipeline_dir)
    if not pipeline_dir.is_dir():
        raise FileNotFoundError(f"{pipeline_dir} is not a directory; give a pipeline or run directory")
    state = read_state(pipeline_dir) if (pipeline_dir / "pipeline.json").is_file() else _single_run(pipeline_dir)
    out = Path(run(None, new_run_dir(pipeline_dir, NAME), RunContext(pipeline_dir=pipeline_dir,
                                                                      state=state))["report"])
    print(f"report: {out} and {out.with_suffix('.html')}")
    return 0


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict) -> dict:
    return {"report": dict(artifacts)}   # every earlier stage's artifacts: any rerun upstream redraws the report


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """report.md and report.html of the runs in ``ctx.state`` (a pipeline's, or one run's) into ``run_dir``."""
    from eossl.pipeline.report import write_report

    return {"report": str(write_report(run_dir, ctx.pipeline_dir, ctx.state))}


def _single_run(run_dir: Path) -> dict:
    """A one-stage state for a run directory the report knows (the run directory tells what ran in it)."""
    from eossl.pipeline.report import KNOWN_RUNS, run_kind

    if run_kind(run_dir) is None:
        raise ValueError(f"{run_dir} holds no pipeline.json and no run the report knows; it reads {KNOWN_RUNS}")
    return {"name": run_dir.name, "stages": {run_dir.name: {"status": "done", "action": "ran",
                                                            "run_dir": str(run_dir)}}}
