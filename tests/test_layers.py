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
    ("train", {"train"}),
    ("evaluate", {"evaluate"}),     # above train: its supervised fits are train/'s, the online probe is evaluate's
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
    L-TAE; eossl.models.field_heads) z-score their *features* with statistics of the training fields, in one
    helper: not inputs."""
    pattern = re.compile(r"-\s*[\w.]*mean\w*\s*(\[[^\]]*\]|\.view\s*\([^)]*\))?\s*\)\s*/\s*[\w.]*std")
    found = {m for m, text in _sources().items() if pattern.search(text)}
    assert found == {"eossl.data.normalization", "eossl.models.field_heads"}
    assert len(pattern.findall(_sources()["eossl.models.field_heads"])) == 1     # the heads' feature helper only
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


def _string_values(tree: ast.AST) -> set[str]:
    """The string constants of a module that are values (docstrings are prose, not values)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def _trees(under: Path = ROOT) -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(under.rglob("*.py"))}


def test_each_command_is_declared_in_exactly_one_module():
    """A command's name is written once, as ``NAME = "..."`` at the top of its own module in eossl/commands/
    (whose ``COMMANDS`` lists the modules: the one command list the CLI and the pipeline read)."""
    from eossl.commands import COMMANDS, modules

    declared: dict[str, list[str]] = {}
    for m, tree in _trees().items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == "NAME" for t in targets) and \
                    isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                declared.setdefault(node.value.value, []).append(m)
    commands = modules()
    assert len(commands) == len(COMMANDS)          # two modules declaring one name would collapse into one entry
    assert {name: declared.get(name) for name in commands} == {name: [mod.__name__]
                                                                for name, mod in commands.items()}


def test_no_command_is_named_outside_its_module():
    """The pipeline runs the stage commands it is handed (name -> module) and names none of them; a command module
    names no other command (the report tells runs apart by what their run directories hold, not by which command
    wrote them). Checked: the names a pipeline stage can run, as string values anywhere in eossl/pipeline/ or in
    another command's module; artifact names (PRODUCES / ACCEPTS: what stages hand on, such as ``report``) are a
    vocabulary of their own, and COMMANDS (eossl.commands) is the list itself."""
    from eossl.commands import stage_commands

    stages = stage_commands()
    names = set(stages)
    artifacts = {a for mod in stages.values() for a in mod.PRODUCES | mod.ACCEPTS}
    pipeline = {m: sorted(_string_values(tree) & names) for m, tree in _trees(ROOT / "pipeline").items()}
    assert {m: found for m, found in pipeline.items() if found} == {}
    elsewhere = {}
    for m, tree in _trees(ROOT / "commands").items():
        if m == "eossl.commands":
            continue
        own = {name for name, mod in stages.items() if mod.__name__ == m}
        found = sorted(_string_values(tree) & (names - own - artifacts))
        if found:
            elsewhere[m] = found
    assert elsewhere == {}
    sample = ast.parse('"""a pretrain run."""\ndef f(rec):\n    """evaluate"""\n    return rec["command"] == "pretrain"')
    assert _string_values(sample) & names == {"pretrain"}        # the check sees values, not docstrings


def test_one_module_per_evaluation_task_returning_result_rows():
    """Every module of eossl/evaluate/tasks/ is one task, registered under its module's name, with ``run(cfg, ctx)
    -> list[ResultRow]``; tasks/__init__.py only maps names to those ``run`` functions (no code of its own)."""
    import importlib

    from eossl.evaluate.tasks import TASKS

    folder = ROOT / "evaluate" / "tasks"
    tasks = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(folder.glob("*.py")) if p.stem != "__init__"}
    assert sorted(tasks) == TASKS.names()
    for name, tree in tasks.items():
        runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
        assert len(runs) == 1, f"{name}: define run(cfg, ctx) -> list[ResultRow] once"
        fn = runs[0]
        assert [a.arg for a in fn.args.posonlyargs + fn.args.args] == ["cfg", "ctx"], name
        assert not (fn.args.kwonlyargs or fn.args.vararg or fn.args.kwarg), name
        assert fn.returns is not None and ast.unparse(fn.returns) == "list[ResultRow]", name
        assert TASKS.get(name) is importlib.import_module(f"eossl.evaluate.tasks.{name}").run
    registry = ast.parse((folder / "__init__.py").read_text())
    code = [n for n in ast.walk(registry) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                                            ast.ClassDef, ast.If, ast.For, ast.While, ast.With))]
    assert code == [], "tasks/__init__.py only maps names: write the task's code in its module"
    for node in registry.body:       # imports, docstrings, Task / TASKS / __all__, and TASKS.register(name)(module.run)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            register = node.value.func
            assert isinstance(register, ast.Call) and ast.unparse(register.func) == "TASKS.register", ast.unparse(node)
            assert ast.unparse(node.value.args[0]) == f"{register.args[0].value}.run", ast.unparse(node)
        else:
            assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Expr)), \
                ast.unparse(node)


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


_WEIGHTS_ATTRS = {"weights_info", "band_matches"}
# an identifier that names a torch module: model, backbone, encoder, net, module, wrapped, pooled (with _ or digits)
_MODULE_NAME = re.compile(r"(^|_)(model|backbone|encoder|net|module|wrapped|pooled)(_|\d|$)", re.I)


def _pinned_weights_attributes(tree: ast.AST) -> list[str]:
    """Where what loaded weights are travels on a torch module instead of in ``LoadedWeights`` (model, info,
    band_matches): any ``.weights_info`` (the record calls it ``info``); setting or deleting ``.band_matches``
    (the record is frozen, so that can only pin it onto a module); reading ``.band_matches`` off a module-like
    name (``model.``, ``x.backbone.``); either name as a string (``getattr(m, "weights_info")``, or a tuple of
    names handed to setattr)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _WEIGHTS_ATTRS:
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if node.attr == "weights_info" or not isinstance(node.ctx, ast.Load) or _MODULE_NAME.search(name):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in _WEIGHTS_ATTRS:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_the_checker_of_pinned_weights_attributes_catches_them():
    bad = ["model.weights_info = info", "x = getattr(backbone, 'weights_info', None)", "m.band_matches = []",
           "a = model.band_matches", "a = loaded.model.band_matches", "a = enc.weights_info.arch",
           "setattr(m, 'band_matches', [])", "hasattr(m, 'weights_info')", "del m.band_matches",
           "KEEP = ('weights_info', 'band_matches')"]
    good = ["a = loaded.band_matches", "a = loaded.info.arch", "a = read_weights_info(p)", "b = record.band_matches",
            "getattr(model, 'pool', None)"]
    assert [s for s in bad if not _pinned_weights_attributes(ast.parse(s))] == []
    assert [s for s in good if _pinned_weights_attributes(ast.parse(s))] == []


def test_weights_info_is_never_pinned_onto_a_module():
    """Every loader of weights returns one record (``eossl.models.info.LoadedWeights``: model, info,
    band_matches); no module of eossl sets or reads ``weights_info``/``band_matches`` on a torch module."""
    found = {_module_name(p): hits for p in sorted(ROOT.rglob("*.py"))
             if (hits := _pinned_weights_attributes(ast.parse(p.read_text(), str(p))))}
    assert found == {}


_STEP_CALLS = {"backward", "zero_grad", "step"}
_LIGHTNING = ("lightning", "lightning.pytorch", "pytorch_lightning")


def _training_steps(tree: ast.AST) -> list[str]:
    """The calls that make a training loop: ``.backward()`` (a loss's, or ``torch.autograd.backward``),
    ``.zero_grad()``, any ``.step()`` (an optimiser's, an LR scheduler's, a gradient scaler's: the AST cannot tell
    what a name holds, so every ``.step()`` call counts), anything constructed from ``torch.optim`` (optimisers and
    ``torch.optim.lr_scheduler``, however imported: ``torch.optim.AdamW``, ``from torch import optim``,
    ``from torch.optim import SGD``) and a Lightning ``Trainer``. Definitions (an autograd Function's ``def
    backward``), docstrings, comments and annotations are not calls."""
    optim_roots, lightning_roots, trainer_names = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "torch.optim" or a.name.startswith("torch.optim."):
                    optim_roots.add(a.asname or a.name)
                elif a.name in _LIGHTNING:
                    lightning_roots.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full == "torch.optim" or full.startswith("torch.optim."):
                    optim_roots.add(a.asname or a.name)
                elif node.module in _LIGHTNING and a.name == "Trainer":
                    trainer_names.add(a.asname or a.name)
                elif full in _LIGHTNING:
                    lightning_roots.add(a.asname or a.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        root = func.split(".")[0]
        if ((isinstance(node.func, ast.Attribute) and node.func.attr in _STEP_CALLS)
                or func.startswith("torch.optim.") or root in optim_roots
                or func in trainer_names or (root in lightning_roots and func.endswith(".Trainer"))):
            found.append(f"line {node.lineno}: {func}()")
    return found


def test_the_checker_of_training_loops_catches_them():
    bad = ["loss.backward()", "torch.autograd.backward(loss)", "opt.zero_grad(set_to_none=True)", "opt.step()",
           "sched.step()", "scaler.step(opt)", "o = torch.optim.AdamW(params, lr=1e-3)",
           "s = torch.optim.lr_scheduler.CosineAnnealingLR(o, 10)", "from torch import optim\no = optim.SGD(p, 0.1)",
           "import torch.optim as topt\no = topt.Adam(p)", "from torch.optim import SGD as S\no = S(p, lr=0.1)",
           "from torch.optim.lr_scheduler import StepLR\ns = StepLR(o, 3)", "import lightning as L\nt = L.Trainer()",
           "from lightning.pytorch import Trainer\nTrainer(max_steps=3).fit(m)"]
    good = ["class G(torch.autograd.Function):\n    @staticmethod\n    def backward(ctx, grad):\n        return grad",
            "clf = LogisticRegression().fit(x, y)", "def f(o: torch.optim.Optimizer) -> None:\n    pass",
            '"""loss.backward(); opt.step()"""', "lr = cfg.optim.base_lr", "import torch\nx = torch.no_grad()"]
    assert [s for s in bad if not _training_steps(ast.parse(s))] == []
    assert [s for s in good if _training_steps(ast.parse(s))] == []


def test_no_training_loop_outside_train():
    """Every training loop is train/'s (STYLE.md, 'One shape per kind of room'): no module outside eossl/train/
    calls ``.backward()``, ``.zero_grad()`` or ``.step()``, constructs an optimiser or LR scheduler from
    ``torch.optim`` or a Lightning ``Trainer`` (see ``_training_steps``). Evaluation fits its supervised models by
    calling train/ (``train.supervised`` fine-tunes a classifier, ``train.heads`` fits the temporal heads,
    ``train.segmentation`` a segmentation model); the online probe, evaluation during pretraining, is a callback
    in evaluate/ that the pretraining command hands to train/. Not trivially met: the loops are found where they
    live."""
    found = {m: hits for m, tree in _trees().items() if (hits := _training_steps(tree))}
    outside = {m: hits for m, hits in found.items() if not m.startswith("eossl.train.")}
    assert outside == {}, "move the loop to eossl/train/ and call it from there"
    assert {"eossl.train.supervised", "eossl.train.heads", "eossl.train.segmentation", "eossl.train.optim",
            "eossl.train.pretrain"} <= set(found)


def test_the_schedule_is_written_once():
    """A warmup-cosine learning-rate formula appears only in eossl/schedule.py (train/optim.py's EMA momentum is
    another schedule: of the target network's momentum)."""
    root = ROOT
    cosine = re.compile(r"math\.cos\(\s*math\.pi")
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if cosine.search(p.read_text()))
    assert found == ["schedule.py", "train/optim.py"]
    assert len(cosine.findall((root / "train" / "optim.py").read_text())) == 1        # ema_momentum only
