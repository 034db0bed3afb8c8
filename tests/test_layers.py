"""The import graph flows one way, front to back, and each shared concept is written once.

Every import in the package counts, including imports inside functions: a lazy import still ties two modules
together. The layers follow the data flow (see README, 'Layout'); a module may import its own layer and the
layers below it, never one above.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "eossl"

# lowest first
LAYERS = [
    ("core", {"config", "registry", "runs", "geo", "gdal_env", "runtime", "distributed", "sample_data", "resample",
              "schedule"}),
    ("catalog", {"catalog"}),
    ("data", {"data"}),
    ("augment", {"augment"}),
    ("models", {"models"}),
    ("losses", {"losses"}),
    ("methods", {"methods"}),
    ("report", {"report"}),
    ("evaluate", {"evaluate"}),
    ("train", {"train"}),
    ("predict", {"predict"}),
    ("pipeline", {"pipeline"}),
    ("commands", {"commands"}),
    ("cli", {"cli", "__main__", "__init__"}),   # __init__: the public facade (eossl.load_backbone, __version__)
]
LEVEL = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer unit of a module: its subpackage, or the top-level module's name ('__init__' for eossl)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """Module -> the eossl modules it imports (``from eossl import __version__`` is not an edge: the version
    string is a constant every layer may read)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        edges = set()
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:      # `if TYPE_CHECKING:` imports exist for annotations only
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "eossl":
                    edges |= {f"eossl.{a.name}" for a in node.names if a.name != "__version__"}
                elif node.module.startswith("eossl."):
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("eossl.")}
        graph[module] = edges
    return graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


GRAPH = _imports()


def test_every_package_and_top_level_module_has_a_layer():
    units = {_unit(m) for m in GRAPH}
    assert units - set(LEVEL) == set(), "add new packages / modules to LAYERS"


def test_no_module_imports_from_a_layer_above_it():
    upward = [f"{m} ({LAYERS[LEVEL[_unit(m)]][0]}) imports {t} ({LAYERS[LEVEL[_unit(t)]][0]})"
              for m, targets in GRAPH.items() for t in targets if LEVEL[_unit(t)] > LEVEL[_unit(m)]]
    assert upward == []


def test_there_is_no_import_cycle():
    modules = set(GRAPH)

    def resolve(target: str) -> str | None:      # `from eossl.x import y` may name the module eossl.x.y
        return target if target in modules else None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m} for m, ts in GRAPH.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):      # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    assert cycles == []


def _code(path: Path) -> str:
    """The module's code with comments and string literals blanked out (docstrings show formulas too)."""
    lines = path.read_text().splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0 - 1, r1):
                start = c0 if r == r0 - 1 else 0
                end = c1 if r == r1 - 1 else len(lines[r].rstrip("\n"))
                lines[r] = lines[r][:start] + " " * (end - start) + lines[r][end:]
    return "".join(lines)


def _sources() -> dict[str, str]:
    return {_module_name(p): _code(p) for p in ROOT.rglob("*.py")}


def test_inputs_are_standardised_in_one_place():
    """``(x - mean) / std`` of input bands is written only in eossl.data.normalization (the view generator fuses
    the same arithmetic into one multiply-add from a Normalization's statistics). The temporal heads (attention,
    L-TAE) z-score their *features* with statistics of the training fields, in one helper: not inputs."""
    pattern = re.compile(r"-\s*[\w.]*mean\w*\s*(\[[^\]]*\]|\.view\s*\([^)]*\))?\s*\)\s*/\s*[\w.]*std")
    found = {m for m, text in _sources().items() if pattern.search(text)}
    assert found == {"eossl.data.normalization", "eossl.evaluate.temporal"}
    assert len(pattern.findall(_sources()["eossl.evaluate.temporal"])) == 1     # the heads' feature helper only
    defined = {m for m, text in _sources().items() if re.search(r"^class Normalization\b", text, re.M)}
    assert defined == {"eossl.data.normalization"}


@pytest.mark.parametrize("name", ["load_pretrain_config", "load_predict_config", "resolve_data_config",
                                  "config_from", "probe_report", "backbone_for_bands", "normalise_chips"])
def test_replaced_entry_points_are_gone(name):
    assert [m for m, text in _sources().items() if re.search(rf"\bdef {name}\(", text)] == []


def test_one_config_loader_and_one_command_list():
    sources = _sources()
    loaders = {m for m, text in sources.items() if re.search(r"^def load_config\(", text, re.M)}
    assert loaders == {"eossl.config"}
    # the command names are declared once: a literal list of them appears only in the registry
    names = ["catalog", "extract", "pretrain", "pretrain-series", "export", "evaluate", "finetune", "predict", "report"]
    literal = re.compile(r"[\(\[{]\s*" + r"\s*,\s*".join(rf'"{n}"' for n in names[:3]))
    assert {m for m, text in sources.items() if literal.search(text)} == set()
    from eossl.commands import stage_commands

    assert list(stage_commands()) == names
    for mod in stage_commands().values():       # one module per command: its config and the run both call
        assert callable(mod.stage_config) and callable(mod.run) and callable(mod.cli)


def test_the_task_registry_matches_the_config():
    import typing

    from eossl.evaluate.config import EvaluateConfig
    from eossl.evaluate.tasks import TASKS

    assert TASKS.names() == sorted(typing.get_args(typing.get_type_hints(EvaluateConfig)["task"]))
    with pytest.raises(ValueError, match="unknown evaluation task 'pixel'; known: crop, patch, segment"):
        TASKS.get("pixel")


def test_config_dataclasses_live_next_to_the_code_they_configure():
    """Every ``...Config`` class is defined in its package's ``config`` module (catalog, data, train, evaluate,
    predict), never in ``commands/`` or beside unrelated code."""
    pattern = re.compile(r"^class (\w+Config)\b", re.M)
    where = {name: m for m, text in _sources().items() for name in pattern.findall(text)}
    assert where and {m for m in where.values() if not m.endswith(".config")} == set(), where
    assert {"CatalogBuildConfig", "ExportConfig", "PretrainConfig", "EvaluateConfig", "PredictConfig"} <= set(where)


def _config_fields():
    """(dotted class.field, help) of every field of every config dataclass the commands load."""
    import dataclasses
    import typing

    from eossl.catalog.config import CatalogBuildConfig
    from eossl.data.chips.config import DataConfig
    from eossl.evaluate.config import EvaluateConfig, FinetuneConfig
    from eossl.predict.config import PredictConfig
    from eossl.train.config import ExportConfig, PretrainConfig

    seen, out, todo = set(), [], [CatalogBuildConfig, DataConfig, PretrainConfig, ExportConfig, EvaluateConfig,
                                  FinetuneConfig, PredictConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((f"{cls.__name__}.{f.name}", f.metadata.get("help", "")))
            for tp in (hints[f.name], *typing.get_args(hints[f.name])):
                if dataclasses.is_dataclass(tp):
                    todo.append(tp)
    return out


def test_one_name_per_concept_in_the_configs():
    """The side of a chip read from rasters is ``chip_size`` and the names of a file's bands in file order are
    ``band_order`` in every config (the old ``sampler.size``, ``file_bands`` and predict's ``bands`` are read
    through ``RENAMED`` with a warning). ``views.crop_size`` is another concept: the side of a view cut from a chip."""
    fields = _config_fields()
    assert len(fields) > 100
    names = {dotted.split(".")[1] for dotted, _ in fields}
    assert not names & {"size", "file_bands", "img_size", "bands_order"}
    chip = sorted(d for d, h in fields if re.search(r"\bchip side\b", h))
    order = sorted(d for d, h in fields if re.search(r"\bin file order\b", h))
    assert len(chip) >= 3 and all(d.endswith(".chip_size") for d in chip), chip
    assert len(order) >= 4 and all(d.endswith(".band_order") for d in order), order
