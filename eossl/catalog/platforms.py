"""Which satellite a file comes from, read from its name, its GeoTIFF tags or a STAC item, checked against the sensor.

A Landsat 5 TM scene indexed as Sentinel-2 or Landsat 8 gives plausible-looking numbers in the wrong bands, so the
catalog refuses it. Detected: Sentinel-2 product ids and ``S2A``/``S2B``/``S2C`` tokens, Landsat product and scene
ids (``LT05_L2SP_...``, ``LE07``, ``LC08``, ``LT50420342011167...``), NASA HLS names (``HLS.S30``/``HLS.L30``),
tags such as ``SPACECRAFT_ID``/``SPACECRAFT_NAME``/``SENSOR`` and the STAC ``platform`` property. A sensor's
platform is its YAML ``platform`` text (``Sentinel-2A/2B/2C``, ``Landsat 4/5``); a sensor without one is not
checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from eossl.catalog.sensors import Sensor, list_sensors, load_sensor
from eossl.config import ConfigError

__all__ = ["Platform", "detect", "of_sensor", "check_platform"]

_B = r"(?<![A-Za-z0-9])"      # token start: not preceded by a letter or digit
_E = r"(?![A-Za-z0-9])"
# (regex, kind, product id?): product ids are also trusted in folder names (a SAFE folder holds the band files)
_PRODUCT_IDS = (
    (re.compile(_B + r"HLS\.([SL])30\."), "hls", True),
    (re.compile(_B + r"S2([A-D])_MSI(L1C|L2A)_"), "s2", True),
    (re.compile(_B + r"L[COTEM]0([1-9])_(L1TP|L1GT|L1GS|L2SP|L2SR)_"), "landsat", True),
    (re.compile(_B + r"L[COTEM]([1-9])\d{13}[A-Z]{3}\d{2}" + _E), "landsat", True),
)
# loose tokens: trusted in the file name only
_TOKENS = ((re.compile(_B + r"S2([A-D])" + _E), "s2", False),
           (re.compile(_B + r"L[COTEM]0([1-9])" + _E), "landsat", False))
_S2_LEVEL = re.compile(_B + r"(?:MSI)?(L1C|L2A)" + _E)
_TAG_KEYS = ("SPACECRAFT_ID", "SPACECRAFT_NAME", "SPACECRAFT", "PLATFORM", "SATELLITE", "SENSOR", "PRODUCT",
             "PRODUCT_ID", "LANDSAT_PRODUCT_ID", "PRODUCT_URI")
_LEVEL_TAGS = ("PROCESSING_LEVEL", "PRODUCT_TYPE")


@dataclass(frozen=True)
class Platform:
    """A platform as detected or declared. ``units``: which satellites (``{"A"}``, ``{"5"}``; empty = unknown)."""

    family: str                      # "sentinel-2" | "landsat"
    units: frozenset[str] = frozenset()
    level: str | None = None         # "L1C", "L2A" (Sentinel-2), "L1", "L2" (Landsat)
    hls: bool | None = None          # NASA HLS product (True), an ESA/USGS product id (False), unknown (None)
    source: str = ""                 # where it was seen, for messages

    def describe(self) -> str:
        name = "Sentinel-2" if self.family == "sentinel-2" else "Landsat"
        units = "/".join(sorted(self.units))
        text = f"{name}{'' if not units else (units if self.family == 'sentinel-2' else ' ' + units)}"
        text += f" {self.level}" if self.level else ""
        return ("HLS " + text) if self.hls else text


def _level(text: str | None) -> str | None:
    if not text:
        return None
    t = re.sub(r"[^A-Z0-9]", "", text.upper()).replace("LEVEL", "L")
    if t in ("L1TP", "L1GT", "L1GS", "L1"):
        return "L1"
    if t in ("L2SP", "L2SR", "L2"):
        return "L2"
    for level in ("L1C", "L2A"):
        if level in t:              # "L1C", "S2MSI1C" is not matched on purpose: needs the L
            return level
    return None


def _from_match(m: re.Match, kind: str, product_id: bool, source: str) -> Platform:
    if kind == "hls":
        return Platform("sentinel-2" if m.group(1) == "S" else "landsat", hls=True, source=source)
    level = _level(m.group(2)) if (m.lastindex or 0) >= 2 else None
    return Platform("sentinel-2" if kind == "s2" else "landsat", frozenset({m.group(1)}), level,
                    False if product_id else None, source)


def _from_text(text: str, source: str, strict: bool) -> list[Platform]:
    """Platforms named in ``text``: product ids (and loose tokens unless ``strict``)."""
    found = []
    for rx, kind, product_id in _PRODUCT_IDS + (() if strict else _TOKENS):
        m = rx.search(text)
        if m:
            found.append(_from_match(m, kind, product_id, source))
    if not found and not strict:
        m = re.search(r"sentinel[-_ ]?2\s*([A-D])?" + _E, text, re.IGNORECASE)
        if m:
            found.append(Platform("sentinel-2", frozenset({m.group(1).upper()} if m.group(1) else set()),
                                  source=source))
        m = re.search(r"landsat[-_ ]?0?([1-9])" + _E, text, re.IGNORECASE)
        if m:
            found.append(Platform("landsat", frozenset({m.group(1)}), source=source))
    return found[:1]


def detect(path: str, tags: dict[str, str] | None = None, stac_platform: str | None = None,
           stac_source: str = "STAC item") -> list[Platform]:
    """Every platform statement about the file at ``path``: its name, folder names, tags and a STAC platform."""
    p = PurePath(path)
    stem = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
    found = _from_text(stem, f"file name {p.name!r}", strict=False)
    if found and found[0].family == "sentinel-2" and found[0].level is None and found[0].hls is None:
        m = _S2_LEVEL.search(stem)
        if m:
            found[0] = Platform("sentinel-2", found[0].units, m.group(1), None, found[0].source)
    for folder in list(p.parents)[:6]:
        if folder.name:
            found += _from_text(folder.name, f"folder name {folder.name!r}", strict=True)
    upper = {str(k).upper(): str(v) for k, v in (tags or {}).items()}
    tag_level = next((_level(upper[k]) for k in _LEVEL_TAGS if k in upper and _level(upper[k])), None)
    for key in _TAG_KEYS:
        if key in upper:
            for plat in _from_text(upper[key], f"tag {key}={upper[key]!r}", strict=False):
                level = plat.level or tag_level
                found.append(Platform(plat.family, plat.units, level, plat.hls, plat.source))
    if stac_platform:
        found += _from_text(stac_platform, f"{stac_source} platform {stac_platform!r}", strict=False)
    return found


def of_sensor(sensor: Sensor) -> Platform | None:
    """The platform a sensor declares (None when its ``platform`` text names no known family)."""
    text = sensor.platform or ""
    hls = "hls" in f"{sensor.name} {sensor.description}".lower()
    if re.search(r"sentinel[-_ ]?2", text, re.IGNORECASE):
        units = frozenset(re.findall(r"2([A-D])", text.upper()))
        return Platform("sentinel-2", units, _level(sensor.level), hls, f"sensor {sensor.name}")
    m = re.search(r"landsat(.*)", text, re.IGNORECASE)
    if m:
        units = frozenset(re.findall(r"(?<![0-9])([1-9])(?![0-9])", m.group(1)))
        return Platform("landsat", units, _level(sensor.level), hls, f"sensor {sensor.name}")
    return None


def _agrees(found: Platform, declared: Platform) -> bool:
    if found.family != declared.family:
        return False
    if found.units and declared.units and not found.units <= declared.units:
        return False
    if found.level and declared.level and found.level != declared.level:
        return False
    return found.hls is None or declared.hls is None or found.hls == declared.hls


def _sensors_for(found: Platform) -> list[str]:
    names = []
    for name in list_sensors():
        try:
            declared = of_sensor(load_sensor(name))
        except (ConfigError, ValueError, FileNotFoundError):
            continue                    # a broken user YAML is reported when it is used, not here
        if declared is not None and _agrees(found, declared) and (found.hls or not declared.hls):
            names.append(name)
    return names


def check_platform(path: str, found: list[Platform], sensor: Sensor) -> None:
    """Raise ValueError if a platform statement about ``path`` contradicts ``sensor``'s platform."""
    declared = of_sensor(sensor)
    if declared is None:
        return
    for plat in found:
        if _agrees(plat, declared):
            continue
        fits = _sensors_for(plat)
        use = (f"index these files with --sensor {' or --sensor '.join(fits)} (a separate index)" if fits else
               "no installed sensor fits; describe it in a sensor YAML (data_catalog/README.md) and pass its "
               "path with --sensor")
        raise ValueError(
            f"{path}: the {plat.source} says {plat.describe()}, but --sensor {sensor.name} is "
            f"{declared.describe() or sensor.platform}; {use}, or leave these files out with --exclude")
