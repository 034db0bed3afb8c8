"""Pipeline files (``pipelines/*.yaml``): an ordered set of stages, each a command with its config, overrides and
the artifacts it takes from earlier stages. Typed and strict like every config.

```yaml
name: demo
stages:
  - {name: pretrain, command: pretrain, config: ../configs/pretrain/default.yaml}
  - {name: evaluate, command: evaluate, config: ../configs/evaluate/eurosat.yaml, weights: pretrain}
  - {name: finetune, command: finetune, config: ../configs/finetune/eurosat.yaml, weights: pretrain}
  - {name: predict, command: predict, model: finetune, input: pretrain, set: [acquisition=0]}
  - {name: report, command: report}
```

``config`` paths are relative to the pipeline file. ``weights``/``model``/``input``/``index`` name an earlier
stage whose artifact is used (weights: a pretrain or export stage; model: a finetune stage; input and index: a
catalog or pretrain stage's scene index).

Pipeline variables: a top-level ``vars:`` mapping of names to default values (strings, numbers or null), written
``${name}`` anywhere in a stage's strings (its ``set:`` entries above all) and replaced before the stages are
read; ``eossl run PIPELINE --set name=VALUE`` (or ``vars.name=VALUE``) overrides a default, so one pipeline file
points at another stack or label file from the command line:

```yaml
vars: {stack: ../shared/data/worldcereal_lpis_flanders2018, labels: null}
stages:
  - {name: evaluate, command: evaluate, config: ../configs/evaluate/x.yaml,
     set: ["stack.stacks=[{path: '${stack}', labels: '${labels}'}]"]}
```

A null value is substituted as ``null`` (YAML's null, so ``labels: null`` inside a quoted ``'${labels}'``
must be written unquoted: ``labels: ${labels}``); ``${name}`` of no variable is an error naming the variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eossl.config import ConfigError, apply_overrides, field, from_dict, load_yaml

__all__ = ["ARTIFACT_OF", "PipelineSpec", "StageSpec", "load_pipeline", "substitute_vars"]

# the artifact a stage reference takes from the stage it names
ARTIFACT_OF = {"input": "index", "index": "index", "weights": "weights", "model": "model", "run": "run",
               "table": "table"}


@dataclass
class StageSpec:
    name: str = field(help="unique stage name (also its run directory prefix)")
    command: str = field(help="what the stage runs: a stage command (eossl.commands.stage_commands)")
    config: str | None = field(None, help="the command's config YAML, relative to the pipeline file")
    set: list[str] = field(default_factory=list, help="dotted overrides of that config")
    roots: list[str] | None = field(None, help="catalog: folders / files / datacubes to index")
    sensor: str | None = field(None, help="catalog: sensor of the files")
    index: str | None = field(None, help="pretrain / extract: the stage whose scene index is the corpus")
    table: str | None = field(None, help="pretrain-series: the extract stage whose table joins the corpus")
    run: str | None = field(None, help="export: the pretrain stage to export")
    weights: str | None = field(None, help="evaluate / finetune: the stage whose weights are used")
    model: str | None = field(None, help="predict: the finetune stage whose classifier is used")
    input: str | None = field(None, help="predict: the stage whose scene index is mapped, or a raster path")

    def references(self) -> dict[str, str]:
        """Artifact -> stage name, for the stage references this stage makes."""
        refs = {k: getattr(self, k) for k in ("index", "run", "weights", "model", "table") if getattr(self, k)}
        if self.input and not _looks_like_path(self.input):
            refs["input"] = self.input
        return refs


@dataclass
class PipelineSpec:
    name: str = field(help="the pipeline's name: its state and runs live in RUNS/<name>/")
    stages: list[StageSpec] = field(help="in order")
    description: str = ""
    vars: dict = field(default_factory=dict, help="pipeline variables (name -> value), ${name} in stage strings; "
                                                  "override with --set name=VALUE")

    def __post_init__(self):
        if not self.stages:
            raise ConfigError("stages: a pipeline needs at least one stage")

    def check(self, commands: Mapping[str, Any]) -> None:
        """Each stage runs a stage command of ``commands`` (name -> command module), with unique names and
        references to earlier stages that produce what it takes."""
        seen: dict[str, StageSpec] = {}
        for i, st in enumerate(self.stages):
            where = f"stages[{i}] ({st.name})"
            if st.command not in commands:
                raise ConfigError(f"stages[{i}].command: got {st.command!r}; allowed: "
                                  f"{', '.join(map(repr, commands))}")
            if st.name in seen:
                raise ConfigError(f"{where}: duplicate stage name {st.name!r}")
            command = commands[st.command]
            for artifact, ref in st.references().items():
                if artifact not in command.ACCEPTS:
                    raise ConfigError(f"{where}: a {st.command} stage takes no {artifact!r}; it takes "
                                      f"{sorted(command.ACCEPTS) or 'no stage references'}")
                if ref not in seen:
                    raise ConfigError(f"{where}: {artifact}: {ref!r} is not an earlier stage; earlier stages: "
                                      f"{list(seen) or 'none'}")
                if ARTIFACT_OF[artifact] not in commands[seen[ref].command].PRODUCES:
                    raise ConfigError(f"{where}: {artifact}: stage {ref!r} ({seen[ref].command}) produces no "
                                      f"{ARTIFACT_OF[artifact]}")
            if hasattr(command, "check_stage"):
                command.check_stage(st, where)
            seen[st.name] = st


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".tif", ".tiff", ".parquet", ".nc", ".zarr"))


def load_pipeline(path: str | Path, overrides: list[str] | None,
                  commands: Mapping[str, Any]) -> tuple[PipelineSpec, Path]:
    """The pipeline of ``path`` (with ``key=value`` overrides, e.g. ``name=demo-2``), checked against the stage
    ``commands`` (:func:`eossl.commands.stage_commands`), and the folder its relative config paths resolve
    against."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline file not found: {path}; see pipelines/ for examples")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with name and stages")
    try:
        spec = from_dict(PipelineSpec, substitute_vars(apply_overrides(data, _var_overrides(data, overrides or []))))
        spec.check(commands)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return spec, path.resolve().parent


_VAR = re.compile(r"\$\{([^}]*)\}")


def _var_overrides(data: dict, overrides: list[str]) -> list[str]:
    """``name=VALUE`` of a pipeline variable becomes ``vars.name=VALUE``; other overrides are unchanged."""
    names = set(data.get("vars") or {})
    return [f"vars.{o.strip()}" if o.split("=", 1)[0].strip() in names else o for o in overrides]


def substitute_vars(data: dict) -> dict:
    """``data`` with every ``${name}`` in its stages replaced by the value of pipeline variable ``name``."""
    values = data.get("vars") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"vars: expected a mapping of names to values, got {values!r}")
    bad = {k: v for k, v in values.items() if isinstance(v, (dict, list))}
    if bad:
        raise ConfigError(f"vars: {sorted(bad)}: a pipeline variable is a string, a number or null")

    def one(match: re.Match) -> str:
        name = match.group(1).strip()
        if name not in values:
            raise ConfigError(f"${{{name}}}: no pipeline variable {name!r}; variables: {sorted(values) or 'none'} "
                              f"(declare it under vars:)")
        v = values[name]
        return "null" if v is None else str(v)

    def walk(node):
        if isinstance(node, str):
            return _VAR.sub(one, node)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return {**data, "stages": walk(data.get("stages"))}
