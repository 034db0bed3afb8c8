"""Sensor descriptions: bands, wavelengths, GSD, scaling to reflectance, nodata and default normalisation.

Sensors are YAML files (schema in ``data_catalog/README.md``) found in, by priority:
directories listed in ``EOSSL_CATALOG_PATH`` (``os.pathsep``-separated), then the built-in ``data_catalog/sensors``.
A path to a YAML file is accepted wherever a sensor name is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from eossl.config import ConfigError, from_dict, load_yaml

__all__ = ["Band", "Sensor", "load_sensor", "list_sensors", "catalog_dirs"]

Unit = Literal["reflectance", "radiance", "kelvin"]
_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class Band:
    """One band of a sensor. ``value = DN * scale + offset`` in ``unit``."""

    name: str
    wavelength_nm: float
    bandwidth_nm: float
    gsd_m: float
    aliases: tuple[str, ...] = ()
    common_name: str | None = None
    unit: Unit = "reflectance"
    dtype: str | None = None
    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None

    def names(self) -> tuple[str, ...]:
        """The band name, its aliases and common name: every string that may refer to it."""
        extra = (self.common_name,) if self.common_name else ()
        return (self.name, *self.aliases, *extra)


@dataclass(frozen=True)
class SensorStatistics:
    """The sensor YAML's ``normalization`` record: per-band mean and std (reflectance) and where they come from;
    :meth:`Sensor.norm_stats` and :class:`eossl.data.normalization.Normalization` use them."""

    source: str
    mean: dict[str, float]
    std: dict[str, float]


@dataclass(frozen=True)
class _SensorFile:
    """The YAML layout, strictly checked (see data_catalog/README.md)."""

    name: str
    description: str | None = None
    extends: str | None = None
    platform: str | None = None
    level: str | None = None
    dtype: str | None = None
    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None
    stack_band_order: list[str] | None = None
    datetime_patterns: list[str] | None = None
    bands: list[Band] | None = None
    normalization: SensorStatistics | None = None


@dataclass(frozen=True)
class Sensor:
    """A validated sensor description. Band-level dtype/nodata/scale/offset are resolved (never None)."""

    name: str
    description: str
    bands: tuple[Band, ...]
    normalization: SensorStatistics
    stack_band_order: tuple[str, ...]
    datetime_patterns: tuple[str, ...] = ()
    platform: str | None = None
    level: str | None = None
    _lookup: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> Band:
        """The band called ``name`` (or one of its aliases, case-insensitive)."""
        return self.bands[self.band_names.index(self.resolve(name))]

    def resolve(self, name: str) -> str:
        """Canonical band name for ``name`` or an alias; ValueError listing the bands otherwise."""
        key = _norm(name)
        if key not in self._lookup:
            raise ValueError(
                f"sensor {self.name!r} has no band {name!r}; its bands are {', '.join(self.band_names)} "
                f"(aliases accepted, e.g. {', '.join(self.bands[0].names()[:3])})"
            )
        return self._lookup[key]

    def resolve_many(self, names: list[str] | tuple[str, ...] | None) -> list[str]:
        """Canonical names for a band list in the caller's order (None: every band, sensor order)."""
        if names is None:
            return self.band_names
        resolved = [self.resolve(n) for n in names]
        dupes = sorted({n for n in resolved if resolved.count(n) > 1})
        if dupes:
            raise ValueError(f"band list {list(names)} names {', '.join(dupes)} more than once")
        return resolved

    def match(self, token: str) -> str | None:
        """Canonical band name if ``token`` is a name/alias of a band, else None."""
        return self._lookup.get(_norm(token))

    def wavelengths(self, names: list[str]) -> list[float]:
        return [self.band(n).wavelength_nm for n in names]

    def norm_stats(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-band (mean, std) arrays, float32, in the order of ``names``."""
        canon = self.resolve_many(names)
        mean = np.array([self.normalization.mean[n] for n in canon], dtype=np.float32)
        std = np.array([self.normalization.std[n] for n in canon], dtype=np.float32)
        return mean, std


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def catalog_dirs() -> list[Path]:
    """Directories searched for ``<sensor>.yaml``, highest priority first."""
    dirs = [Path(p) for p in os.environ.get("EOSSL_CATALOG_PATH", "").split(os.pathsep) if p]
    return dirs + [_builtin_dir()]


def _builtin_dir() -> Path:
    source_tree = Path(__file__).resolve().parents[2] / "data_catalog" / "sensors"
    if source_tree.is_dir():
        return source_tree
    from importlib import resources

    return Path(str(resources.files("eossl.data_catalog") / "sensors"))


def _find_file(name: str) -> Path:
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"sensor file not found: {path}")
        return path
    fname = name.replace("-", "_") + ".yaml"
    for d in catalog_dirs():
        if (d / fname).is_file():
            return d / fname
    raise ValueError(f"unknown sensor {name!r}; known sensors: {', '.join(list_sensors())} "
                     f"(or pass a path to a sensor YAML file, or add its directory to EOSSL_CATALOG_PATH)")


def list_sensors() -> list[str]:
    """Names of every sensor found in the catalog directories."""
    names = set()
    for d in catalog_dirs():
        if d.is_dir():
            names.update(p.stem.replace("_", "-") for p in d.glob("*.yaml"))
    return sorted(names)


_KNOWN_DEFINITIONS: dict[str, tuple[str, str]] = {}     # name -> (definition JSON, where), from opened indexes
_BUILT: dict[str, Sensor] = {}


def remember_definition(name: str, definition_json: str, where: str) -> None:
    """Make ``load_sensor(name)`` find a sensor whose YAML file is not in the catalog, from the definition an index
    stored when it was built with ``--sensor PATH.yaml`` (:class:`~eossl.catalog.index.SceneIndex` calls this), so
    every later command on that index (evaluate, finetune, predict) finds the sensor too."""
    _KNOWN_DEFINITIONS.setdefault(name, (definition_json, where))


def load_sensor(name: str | Sensor) -> Sensor:
    """Load and validate a sensor by name (e.g. ``sentinel2-l1c``) or YAML path; a name the catalog does not know
    but an opened index stored the definition of (:func:`remember_definition`) is rebuilt from that."""
    if isinstance(name, Sensor):
        return name
    try:
        return _load_cached(str(name), os.environ.get("EOSSL_CATALOG_PATH", ""))
    except ValueError:
        known = _KNOWN_DEFINITIONS.get(str(name))
        if known is None:
            raise
        if str(name) not in _BUILT:
            import json

            _BUILT[str(name)] = sensor_from_definition(json.loads(known[0]), known[1])
        return _BUILT[str(name)]


@lru_cache(maxsize=64)
def _load_cached(name: str, _catalog_path: str) -> Sensor:
    spec = _read_spec(name, seen=())
    return _build(spec, str(_find_file(name)))


def _read_spec(name: str, seen: tuple[str, ...]) -> _SensorFile:
    path = _find_file(name)
    try:
        spec = from_dict(_SensorFile, load_yaml(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    expected = path.stem.replace("_", "-")
    if not name.endswith((".yaml", ".yml")) and spec.name != expected:
        raise ConfigError(f"{path}: name {spec.name!r} does not match the file name (expected {expected!r})")
    if spec.extends is None:
        return spec
    if spec.extends in seen:
        raise ConfigError(f"{path}: circular 'extends' chain {' -> '.join((*seen, spec.name, spec.extends))}")
    if spec.bands is not None:
        raise ConfigError(f"{path}: a sensor that extends {spec.extends!r} must not list bands again")
    parent = _read_spec(spec.extends, seen=(*seen, spec.name))
    merged = {k: v for k, v in vars(parent).items()}
    merged.update({k: v for k, v in vars(spec).items() if v is not None})
    merged["extends"] = None
    return _SensorFile(**merged)


def _build(spec: _SensorFile, where: str) -> Sensor:
    if not spec.bands:
        raise ConfigError(f"{where}: sensor {spec.name!r} lists no bands")
    if spec.normalization is None:
        raise ConfigError(f"{where}: sensor {spec.name!r} has no normalization (mean/std per band)")
    bands = []
    lookup: dict[str, str] = {}
    for i, b in enumerate(spec.bands):
        resolved = replace(
            b,
            dtype=b.dtype or spec.dtype or "uint16",
            nodata=b.nodata if b.nodata is not None else spec.nodata,
            scale=b.scale if b.scale is not None else (spec.scale if spec.scale is not None else 1.0),
            offset=b.offset if b.offset is not None else (spec.offset if spec.offset is not None else 0.0),
        )
        if resolved.dtype not in _DTYPES:
            raise ConfigError(f"{where}: bands[{i}].dtype: {resolved.dtype!r}; allowed: {', '.join(_DTYPES)}")
        for label, value in (("wavelength_nm", b.wavelength_nm), ("bandwidth_nm", b.bandwidth_nm),
                             ("gsd_m", b.gsd_m), ("scale", resolved.scale)):
            if not value > 0:
                raise ConfigError(f"{where}: bands[{i}] ({b.name}).{label} must be > 0, got {value}")
        for alias in resolved.names():
            key = _norm(alias)
            if key in lookup and lookup[key] != b.name:
                raise ConfigError(f"{where}: alias {alias!r} of band {b.name} is already used by band {lookup[key]}")
            lookup[key] = b.name
        bands.append(resolved)
    names = [b.name for b in bands]
    norm = spec.normalization
    for label, stats in (("mean", norm.mean), ("std", norm.std)):
        missing = [n for n in names if n not in stats]
        extra = [k for k in stats if k not in names]
        if missing or extra:
            raise ConfigError(f"{where}: normalization.{label} must give exactly the bands {names}; "
                              f"missing {missing}, unknown {extra}")
    bad_std = [n for n in names if not norm.std[n] > 0]
    if bad_std:
        raise ConfigError(f"{where}: normalization.std must be > 0 for every band; not for {bad_std}")
    order = tuple(spec.stack_band_order or names)
    unknown = [n for n in order if n not in names]
    if unknown or len(set(order)) != len(order):
        raise ConfigError(f"{where}: stack_band_order {list(order)} must list distinct bands of {names}")
    for pattern in spec.datetime_patterns or ():
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"{where}: datetime_patterns: {pattern!r} is not a valid regex: {err}") from err
        if not {"date", "doy"} & set(compiled.groupindex):
            raise ConfigError(f"{where}: datetime_patterns: {pattern!r} needs a named group 'date' or 'doy'")
    return Sensor(name=spec.name, description=spec.description or "", bands=tuple(bands), normalization=norm,
                  stack_band_order=order, datetime_patterns=tuple(spec.datetime_patterns or ()),
                  platform=spec.platform, level=spec.level, _lookup=lookup)


def sensor_definition(sensor: Sensor) -> dict:
    """The sensor as a plain mapping in the YAML schema (band values resolved), so an index can carry the exact
    definition it was built with: :func:`sensor_from_definition` rebuilds it where the YAML file is not found."""
    bands = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(b).items() if v is not None}
             for b in sensor.bands]
    norm = sensor.normalization
    return {"name": sensor.name, "description": sensor.description, "platform": sensor.platform,
            "level": sensor.level, "stack_band_order": list(sensor.stack_band_order),
            "datetime_patterns": list(sensor.datetime_patterns), "bands": bands,
            "normalization": {"source": norm.source, "mean": dict(norm.mean), "std": dict(norm.std)}}


def sensor_from_definition(data: dict, where: str) -> Sensor:
    """A sensor from :func:`sensor_definition`'s mapping (checked like a YAML file; ``where`` names the source)."""
    try:
        spec = from_dict(_SensorFile, {k: v for k, v in data.items() if v is not None})
    except ConfigError as err:
        raise ConfigError(f"{where}: stored sensor definition: {err}") from err
    return _build(spec, where)
