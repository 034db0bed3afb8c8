"""`eossl run`: pipelines run every stage, skip unchanged ones, rerun a changed stage and what uses it, resume a
killed pretraining stage, stop at the first failure; the report renders with its figures; pipeline files are
strict."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from PIL import Image

from eossl.cli import main
from eossl.commands import stage_commands
from eossl.config import ConfigError
from eossl.pipeline.spec import load_pipeline

PRETRAIN = ["corpus.sampler.chip_size=32", "corpus.sampler.num_samples=32", "corpus.batch_size=8",
            "corpus.num_workers=0", "method.params={proj_dim: 32}", "optim.warmup_steps=2",
            "trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1",
            "trainer.max_steps=4", "probe.data=null"]


def _write(tmp_path, scene, eval_seeds=1, finetune_epochs=1):
    cfg = tmp_path / "configs"
    cfg.mkdir(exist_ok=True)
    (cfg / "evaluate.yaml").write_text(yaml.safe_dump(
        {"protocols": ["linear"], "baselines": ["band_statistics"], "ks": [2], "seeds": eval_seeds}))
    (cfg / "finetune.yaml").write_text(yaml.safe_dump(
        {"k": 2, "finetune": {"epochs": finetune_epochs, "min_steps": 2}}))
    pipe = {"name": "tiny", "stages": [
        {"name": "pretrain", "command": "pretrain", "set": [f"corpus.roots=[{scene}]", *PRETRAIN]},
        {"name": "evaluate", "command": "evaluate", "config": "configs/evaluate.yaml", "weights": "pretrain"},
        {"name": "finetune", "command": "finetune", "config": "configs/finetune.yaml", "weights": "pretrain"},
        {"name": "predict", "command": "predict", "model": "finetune", "input": "pretrain", "set": ["tile=64"]},
        {"name": "report", "command": "report"}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(pipe, sort_keys=False))
    return path


def _actions(runs):
    state = json.loads((runs / "tiny" / "pipeline.json").read_text())
    return {n: r["action"] for n, r in state["stages"].items()}, state


def _nontrivial(path) -> bool:
    img = np.asarray(Image.open(path).convert("L"))
    return min(img.shape) > 100 and img.std() > 5


def test_pipeline_runs_skips_reruns_what_changed_and_reports(tiny_s2_scene, tmp_path, capsys):
    path, runs = _write(tmp_path, tiny_s2_scene), tmp_path / "runs"
    assert main(["run", str(path), "--runs", str(runs)]) == 0
    actions, state = _actions(runs)
    assert actions == dict.fromkeys(["pretrain", "evaluate", "finetune", "predict", "report"], "ran")
    report_dir = runs / "tiny" / state["stages"]["report"]["outputs"]["report"].split("/")[-2]
    md = (report_dir / "report.md").read_text()
    figures = ["pretrain_training.png", "pretrain_views.png", "evaluate_few_label_curve.png",
               "evaluate_confusion_matrix.png", "finetune_confusion_matrix.png", "predict_map.png"]
    for fig in figures:
        assert f"]({fig})" in md and _nontrivial(report_dir / fig), fig
    assert all(f'src="{fig}"' in (report_dir / "report.html").read_text() for fig in figures)
    assert "0 skipped" in capsys.readouterr().out
    pretrain_run = state["stages"]["pretrain"]["run_dir"]               # a report of one run, or the pipeline
    assert main(["report", pretrain_run]) == 0 and main(["report", str(runs / "tiny")]) == 0
    (single,) = (tmp_path / "runs" / "tiny").joinpath(pretrain_run.split("/")[-1]).glob("report-*")
    (curves,) = single.glob("*_training.png")
    assert _nontrivial(curves)
    single_md = (single / "report.md").read_text()
    assert "## Pretraining" in single_md and "Few-label" not in single_md
    assert main(["report", str(tmp_path)]) == 2                          # neither a pipeline nor a run

    assert main(["run", str(path), "--runs", str(runs)]) == 0          # nothing changed: everything skipped
    assert set(_actions(runs)[0].values()) == {"skipped"}

    _write(tmp_path, tiny_s2_scene, finetune_epochs=2)                  # touch the fine-tuning config
    assert main(["run", str(path), "--runs", str(runs)]) == 0
    actions, state2 = _actions(runs)
    assert actions == {"pretrain": "skipped", "evaluate": "skipped", "finetune": "ran", "predict": "ran",
                       "report": "ran"}
    assert state2["stages"]["finetune"]["run_dir"] != state["stages"]["finetune"]["run_dir"]
    assert (tmp_path / "runs" / "tiny").joinpath(state["stages"]["finetune"]["run_dir"].split("/")[-1]).is_dir()


_KILLER = textwrap.dedent("""
    import os, sys
    import lightning as L
    from eossl.commands import stage_commands
    from eossl.pipeline.runner import run_pipeline

    class Kill(L.Callback):   # a hard kill mid-stage: no cleanup
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                os._exit(9)

    run_pipeline(sys.argv[1], stage_commands(), sys.argv[2], callbacks={"pretrain": [Kill()]})
""")


def test_a_killed_pipeline_resumes_its_interrupted_stage(tiny_s2_scene, tmp_path):
    path, runs = _write(tmp_path, tiny_s2_scene), tmp_path / "runs"
    script = tmp_path / "kill.py"
    script.write_text(_KILLER)
    proc = subprocess.run([sys.executable, str(script), str(path), str(runs)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    state = json.loads((runs / "tiny" / "pipeline.json").read_text())
    assert state["stages"]["pretrain"]["status"] == "running"
    assert main(["run", str(path), "--runs", str(runs)]) == 0
    actions, state = _actions(runs)
    assert actions["pretrain"] == "resumed" and actions["predict"] == "ran"
    summary = json.loads((runs / "tiny" / state["stages"]["pretrain"]["run_dir"].split("/")[-1] /
                          "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["steps_this_attempt"] == 2    # steps 3-4 after the step-2 ckpt


def test_first_failure_stops_with_the_stage_named(tiny_s2_scene, tmp_path, capsys):
    path, runs = _write(tmp_path, tiny_s2_scene), tmp_path / "runs"
    pipe = yaml.safe_load(path.read_text())
    pipe["stages"][1]["set"] = ["data.root=/nonexistent/eurosat"]
    pipe["stages"] = pipe["stages"][:3]
    path.write_text(yaml.safe_dump(pipe))
    assert main(["run", str(path), "--runs", str(runs)]) == 1
    out = capsys.readouterr().out
    assert "stage 'evaluate' (evaluate) failed" in out and "/nonexistent/eurosat" in out
    state = json.loads((runs / "tiny" / "pipeline.json").read_text())
    assert state["stages"]["evaluate"]["status"] == "failed" and "finetune" not in state["stages"]


@pytest.mark.parametrize("stages, message", [
    ([{"name": "a", "command": "pretrain"}, {"name": "a", "command": "pretrain"}], "duplicate stage name 'a'"),
    ([{"name": "e", "command": "evaluate", "weights": "p"}], "'p' is not an earlier stage"),
    ([{"name": "f", "command": "finetune"}, {"name": "p", "command": "predict", "model": "f"}], "needs model"),
    ([{"name": "e", "command": "evaluate"}, {"name": "f", "command": "finetune", "weights": "e"}],
     "stage 'e' \\(evaluate\\) produces no weights"),
    ([{"name": "p", "command": "pretrain", "model": "x"}], "a pretrain stage takes no 'model'"),
    ([{"name": "x", "command": "train"}], "stages\\[0\\].command: got 'train'"),
    ([{"name": "c", "command": "catalog"}], "catalog stage needs roots"),
    ([{"name": "p", "command": "pretrain", "confg": "x.yaml"}], "stages\\[0\\].confg: unknown key"),
    ([], "at least one stage"),
])
def test_bad_pipelines_are_refused_at_load_time(tmp_path, stages, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "stages": stages}))
    with pytest.raises(ConfigError, match=message):
        load_pipeline(path, None, stage_commands())


@pytest.mark.filterwarnings("error::FutureWarning")   # shipped files use no renamed key
def test_shipped_pipelines_load_and_dry_run(capsys):
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.yaml"))
    assert shipped
    for path in shipped:
        spec, _ = load_pipeline(path, None, stage_commands())
        assert spec.stages
    assert main(["run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# [5/5] report: report" in out and "weights: <pretrain.weights>" in out


@pytest.mark.parametrize("command, args, message", [
    ("pretrain", ["--set", "optim.name=adam"], "optim.name: got 'adam' .*allowed: 'sgd', 'adamw', 'lars'"),
    ("pretrain", ["--set", "corpus.batch_size=1"], "corpus.batch_size: 1 is out of range; allowed: >= 2"),
    ("pretrain", ["--set", "trainer.epochs=three"], "trainer.epochs: got 'three' .*expected an integer"),
    ("pretrain", ["--set", "model.archh=resnet18"], "model.archh: unknown key; allowed keys: arch"),
    ("evaluate", ["--set", "ks=[0]"], "ks: expected positive integers or 'all'"),
    ("evaluate", ["--set", "task=crop"], "task 'crop' needs a fields: section"),
    ("evaluate", ["--set", "test_fraction=1.5"], "test_fraction: 1.5 is out of range"),
    ("finetune", ["--set", "k=many"], "k: got 'many'"),
    ("finetune", ["--set", "finetune.precision=fp16"], "finetune.precision: got 'fp16'"),
    ("predict", ["--model", "m", "--input", "i.tif"], "out: missing required field"),
    ("predict", ["--model", "m", "--input", "i.tif", "--out", "o.tif", "--set", "overlap=1"],
     "overlap: 1.0 is out of range"),
    ("catalog build", ["/data", "--out", "x.parquet"], "sensor: missing required field"),
    ("export", ["runs/x"], "out: missing required field"),
    ("views", ["--set", "n_views=0"], "n_views"),
    ("run", ["--set", "stages=[]"], "stages: a pipeline needs at least one stage"),
    ("run", ["--set", "stages[0]=x"], "stages\\[0\\]=x: unknown key|unknown key"),
])
def test_bad_configs_fail_at_load_time_with_the_dotted_path(command, args, message, capsys):
    assert main([*command.split(), *args, "--dry-run"]) == 2
    assert re.search(message, capsys.readouterr().err), message
