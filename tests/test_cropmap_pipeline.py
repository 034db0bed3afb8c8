"""Pipeline variables (``vars:``, ``${name}``, ``--set name=VALUE``) and the crop-map pipeline's stages end to end on
a tiny labelled stack: evaluate (task: stack) -> finetune (the map model) -> predict (the map) -> report."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from parcel_stack_data import write_parcel_stack

from eossl.commands import stage_commands
from eossl.config import ConfigError
from eossl.pipeline.spec import load_pipeline

CROPMAP = Path(__file__).resolve().parents[1] / "pipelines" / "cropmap.yaml"


def _stage(spec, name):
    return next(s for s in spec.stages if s.name == name)


def test_pipeline_variables_default_and_override_from_the_command_line():
    spec, _ = load_pipeline(CROPMAP, [], stage_commands())
    assert spec.vars["stack"].endswith("worldcereal_lpis_flanders2018")
    assert _stage(spec, "map").set == [f"stack={spec.vars['stack']}", "labels=null"]
    spec, _ = load_pipeline(CROPMAP, ["stack=/data/my stack", "labels=/data/ct.tif"], stage_commands())
    assert _stage(spec, "evaluate").set == ["stack.stacks=[{path: /data/my stack, labels: /data/ct.tif, variable: CT}]"]
    assert _stage(spec, "pretrain").set == ["corpus.stacks=[/data/my stack]"]
    spec, _ = load_pipeline(CROPMAP, ["vars.variable=null"], stage_commands())
    assert "variable: null" in _stage(spec, "finetune").set[0]


def test_an_unknown_pipeline_variable_is_an_error_naming_the_variables(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "vars": {"stack": "a"},
                                    "stages": [{"name": "r", "command": "report", "set": ["x=${stak}"]}]}))
    with pytest.raises(ConfigError, match=r"no pipeline variable 'stak'; variables: \['stack'\]"):
        load_pipeline(path, [], stage_commands())
    path.write_text(yaml.safe_dump({"name": "p", "vars": {"stack": ["a"]}, "stages": [{"name": "r", "command": "report"}]}))
    with pytest.raises(ConfigError, match="a string, a number or null"):
        load_pipeline(path, [], stage_commands())


def test_the_crop_map_stages_run_end_to_end_and_report_the_map(tmp_path):
    from eossl.pipeline.runner import run_pipeline

    folder = write_parcel_stack(tmp_path / "parcels")
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({
        "task": "stack", "ks": [5], "seeds": 2,
        "stack": {"stacks": [{"path": "unset"}], "period": "month", "rows": ["raw"], "resamples": 20}}))
    entry = "stack.stacks=[{path: ${stack}, variable: CT}]"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "cm", "vars": {"stack": "unset"}, "stages": [
        {"name": "evaluate", "command": "evaluate", "config": "eval.yaml", "set": [entry]},
        {"name": "finetune", "command": "finetune", "config": "eval.yaml", "set": [entry]},
        {"name": "map", "command": "predict", "model": "finetune", "set": ["stack=${stack}"]},
        {"name": "report", "command": "report"}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = run_pipeline(tmp_path / "p.yaml", stage_commands(), tmp_path / "runs",
                             overrides=[f"stack={folder}"], echo=lambda *a: None)
    outs = state["stages"]["map"]["outputs"]
    assert {"map", "confidence", "preview"} <= set(outs)
    report = Path(state["stages"]["report"]["outputs"]["report"])
    text = report.read_text()
    assert "## Crop-type map model (finetune)" in text and "## Crop-type map (map)" in text
    assert "The stack evaluation of the same row at k = 5" in text
    for fig in ("map_map.png", "map_confusion.png", "map_f1.png"):
        assert (report.parent / fig).is_file(), fig
