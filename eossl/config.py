"""Typed, strict configuration: dataclasses loaded from YAML/dicts.

Every config object in eossl is a dataclass. :func:`from_dict` builds one from plain data and fails at load time
with the dotted path of the offending key, what was given and what is allowed:

* an unknown key (the allowed keys are listed),
* a wrong type (``int`` given a string, a list given a number, ...),
* a value outside the range declared with :func:`field` (``ge``/``le``/``gt``/``lt``) or outside ``Literal[...]``,
* a missing required field (a dataclass field without a default).

Defaults live in the dataclass definitions, nowhere else.

A renamed key stays readable for a while: a config dataclass lists ``RENAMED = {"old": "new"}`` (a plain class
attribute, not a field); :func:`from_dict` then reads ``old`` as ``new`` with a ``FutureWarning`` naming both, and
refuses a mapping that gives both. Saved run configs written before a rename keep loading that way. A new name
``section.key`` moves a key into the nested section ``section`` (dropped, with the warning, when that section is
null: switched off).

A config dataclass with a classmethod ``from_shorthand(value, path) -> dict | None`` accepts a plain value (a
string) wherever it is a field's type: the value is replaced by the plain data it stands for before typing
(``probe.data: builtin`` is the :class:`~eossl.data.labelled.config.LabelledDataConfig` of the built-in sample).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")
_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

__all__ = ["ConfigError", "field", "from_dict", "to_dict", "load_config", "config_data", "load_yaml",
           "apply_overrides"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the dotted key path."""


def field(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
          ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
          help: str = "") -> Any:
    """A dataclass field with an optional numeric range and a help text."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _check_range(value: Any, meta: typing.Mapping[str, Any], path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    checks = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    for key, ok, sym in checks:
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{path}: {value!r} is out of range; allowed: {sym} {bound}")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert plain data ``value`` to type ``tp`` or raise ConfigError naming ``path``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: got {_describe(value)}; allowed: {', '.join(repr(a) for a in allowed)}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{path}: null is not allowed; expected {_type_name(tp)}")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{path}: got {_describe(value)}; expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: got {_describe(value)}; expected a list ({_type_name(tp)})")
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: got {_describe(value)}; expected a mapping ({_type_name(tp)})")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(k, kt, f"{path}.{k}"): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: got {_describe(value)}; expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: got {_describe(value)}; expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string: accept scientific notation
        raise ConfigError(f"{path}: got {_describe(value)}; expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: got {_describe(value)}; expected a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{path}: got {_describe(value)}; expected a path string")
    raise ConfigError(f"{path}: unsupported config type {_type_name(tp)}")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly (see module docstring)."""
    where = path or "<root>"
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        keys = [f.name for f in dataclasses.fields(cls) if f.init]
        dotted = ", ".join(f"{path + '.' if path else ''}{k}" for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
        raise ConfigError(f"{where}: got {_describe(data)}; expected a mapping of {cls.__name__}'s keys ({dotted}), "
                          f"e.g. --set {path + '.' if path else ''}{keys[0]}=...")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = _renamed_keys(cls, data, path)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{sub}: missing required field ({_type_name(hints[name])})")
            continue
        given = data[name]
        if isinstance(given, dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):   # a partial mapping keeps the field's own defaults
                given = _over_defaults(default, given, sub)
        value = _convert(given, hints[name], sub)
        _check_range(value, f.metadata, sub)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {err}") from err
    return obj


def _renamed_keys(cls: type, data: dict, path: str) -> dict:
    """``data`` with shorthand values expanded and the keys ``cls.RENAMED`` lists under their new names (a
    FutureWarning for each); see the module docstring."""
    prefix = f"{path}." if path else ""
    out = dict(data)
    for name, section_type in _shorthand_fields(cls).items():
        if name in out and out[name] is not None and not isinstance(out[name], dict):
            out[name] = section_type.from_shorthand(out[name], f"{prefix}{name}")
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old not in out:
            continue
        section, _, key = new.rpartition(".")
        target = _section(cls, out, section, prefix) if section else out
        if target is not None and key in target:
            raise ConfigError(f"{prefix}{old}: renamed {new}, and both are given; keep only {prefix}{new}")
        warnings.warn(f"config key {prefix}{old} is renamed {prefix}{new}; the old name is still read but will "
                      f"be removed: write {new} in the config", FutureWarning, stacklevel=3)
        value = out.pop(old)
        if target is not None:
            target[key] = value
    return out


def _section(cls: type, out: dict, name: str, prefix: str) -> dict | None:
    """The mapping of nested section ``name`` in ``out`` (a copy, put back), a new one when absent and the
    field's default is a section, or None when the section is (or defaults to) null."""
    if name in out:
        if out[name] is None:
            return None
        if not isinstance(out[name], dict):
            raise ConfigError(f"{prefix}{name}: expected a mapping, got {_describe(out[name])}")
        out[name] = dict(out[name])
        return out[name]
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is None:
        return None
    out[name] = {}
    return out[name]


@functools.cache
def _shorthand_fields(cls: type) -> dict[str, type]:
    """Field name -> the config dataclass (with ``from_shorthand``) that types it, for the fields of ``cls``."""
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        for option in (hints[f.name], *get_args(hints[f.name])):
            if dataclasses.is_dataclass(option) and hasattr(option, "from_shorthand"):
                out[f.name] = option
    return out


def _over_defaults(default: Any, given: dict, path: str) -> dict:
    """The plain form of dataclass ``default`` with ``given`` laid over it: nested config dataclasses are merged
    key by key; any other value (a list, a plain mapping such as a method's params) is replaced as a whole."""
    out = to_dict(default)
    for k, v in _renamed_keys(type(default), given, path).items():
        current = getattr(default, k, None)
        merge = isinstance(v, dict) and dataclasses.is_dataclass(current)
        out[k] = _over_defaults(current, v, f"{path}.{k}") if merge else v
    return out


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-ready) form of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with path.open() as fh:
            # libyaml's safe loader where PyYAML was built with it: the same documents, 5-10x faster to parse
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested mapping, returning a copy."""
    import copy

    result = copy.deepcopy(data) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. corpus.sampler.chip_size=128")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def load_config(cls: type[T], path: str | Path | None = None, flags: dict[str, Any] | None = None,
                overrides: typing.Iterable[str] | None = None) -> T:
    """``cls`` from the YAML ``path`` (None: defaults), updated by command-line ``flags`` (None values ignored),
    then by ``key=value`` ``overrides``: the precedence every command uses."""
    return from_dict(cls, config_data(path, flags, overrides))


def config_data(path: str | Path | None = None, flags: dict[str, Any] | None = None,
                overrides: typing.Iterable[str] | None = None) -> dict:
    """The plain data :func:`load_config` types: the YAML ``path``, then ``flags``, then ``overrides``."""
    data = load_yaml(path) if path else {}
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = dict(data or {})
    data.update({k: v for k, v in (flags or {}).items() if v is not None})
    return apply_overrides(data, overrides or [])
