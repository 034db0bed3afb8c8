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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eossl.config import ConfigError, apply_overrides, field, from_dict, load_yaml

__all__ = ["ARTIFACT_OF", "PipelineSpec", "StageSpec", "load_pipeline"]

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
        spec = from_dict(PipelineSpec, apply_overrides(data, overrides or []))
        spec.check(commands)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return spec, path.resolve().parent
