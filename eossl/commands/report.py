"""``eossl report PIPELINE_DIR``: (re)write report.md and report.html of a pipeline's runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md / report.html of a pipeline's runs",
                       description="Write a report (training curves, collapse monitors, views, few-label curve, "
                                   "confusion matrices, class-map quick look) of the runs recorded in "
                                   "PIPELINE_DIR/pipeline.json into a new directory PIPELINE_DIR/report-<time>.")
    p.add_argument("pipeline_dir", help="a pipeline directory (RUNS/<pipeline name>, holding pipeline.json)")
    p.set_defaults(func=run, command="report")


def run(args: argparse.Namespace) -> int:
    from eossl.pipeline.runner import read_state
    from eossl.report.report import write_report
    from eossl.runs import new_run_dir

    pipeline_dir = Path(args.pipeline_dir)
    if not (pipeline_dir / "pipeline.json").is_file():
        raise FileNotFoundError(f"no pipeline.json in {pipeline_dir}; run a pipeline with `eossl run` first")
    out = write_report(new_run_dir(pipeline_dir, "report"), pipeline_dir, read_state(pipeline_dir))
    print(f"report: {out} and {out.with_suffix('.html')}")
    return 0
