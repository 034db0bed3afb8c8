"""Finding raster files under roots, telling which band a file holds, and grouping files into acquisitions.

Two layouts are understood:

* **one file per band** (Sentinel-2 SAFE/COG, Landsat, HLS): the band is a token of the file name
  (``T18TUL_20170613T153551_B8A_20m.jp2``, ``LC08_..._SR_B4.TIF``, ``HLS.S30....B02.tif``); files whose names
  differ only by that token (and a resolution token like ``20m``, or an ``R20m`` folder) form one acquisition;
* **one multi-band file per scene**: bands named by the band descriptions when they match the sensor's band
  names/aliases, otherwise taken in ``band_order`` (the sensor's ``stack_band_order`` unless given); see
  :mod:`eossl.catalog.stacks`.

An acquisition id is never empty: band files named only by their band (``B02.tif``) take their folder's name.
Metadata files beside the rasters (STAC items, MTL, MTD) are read by :mod:`eossl.catalog.sidecar`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eossl.catalog.sensors import Sensor
from eossl.catalog.stacks import BandOrderConflict, parse_band_order, stacked_bands

__all__ = ["RasterFile", "Acquisition", "find_files", "band_of_name", "group_files", "parse_datetime",
           "parse_band_order", "BandOrderConflict", "DEFAULT_PATTERNS"]

DEFAULT_PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF", "*.jp2", "*.vrt")
_SPLIT = re.compile(r"[_.\-\s]+")
_RES_TOKEN = re.compile(r"^\d+(\.\d+)?m$", re.IGNORECASE)
_RES_DIR = re.compile(r"^R\d+m$", re.IGNORECASE)


@dataclass
class RasterFile:
    """One file: where it lives and what the header says."""

    path: str                       # local path or GDAL-openable URL
    count: int
    crs: str | None
    res: tuple[float, float]
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    nodata: float | None
    descriptions: tuple[str | None, ...]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Acquisition:
    """Files of one acquisition: band name -> (file, 1-based band index)."""

    key: str
    assets: dict[str, tuple[RasterFile, int]]
    stem: str                       # a representative file name for datetime parsing


def find_files(roots: list[str], patterns: tuple[str, ...] = DEFAULT_PATTERNS,
               exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(root, path)`` of every file under the roots whose name matches a pattern, sorted.

    A root may also be a single file or a GDAL URL (``/vsicurl/...``, ``s3://...``), taken as is.
    """
    found: list[tuple[str, str]] = []
    for root in roots:
        if _is_url(root):
            found.append((root.rsplit("/", 1)[0], root))
            continue
        p = Path(root)
        if not p.exists():
            raise FileNotFoundError(f"catalog root does not exist: {root}")
        if p.is_file():
            found.append((str(p.parent.resolve()), str(p.resolve())))
            continue
        base = str(p.resolve())
        for f in sorted(p.rglob("*")):
            if not f.is_file():
                continue
            if not any(fnmatch.fnmatchcase(f.name, pat) for pat in patterns):
                continue
            if any(fnmatch.fnmatch(str(f), pat) or fnmatch.fnmatch(f.name, pat) for pat in exclude):
                continue
            found.append((base, str(f.resolve())))
    return found


def _is_url(path: str) -> bool:
    return path.startswith(("/vsi", "s3://", "gs://", "http://", "https://", "az://"))


def band_of_name(name: str, sensor: Sensor) -> tuple[str | None, list[str]]:
    """Band named in file ``name`` (without extension) and the remaining tokens, for grouping.

    The last token (or pair of tokens, for ``SR_B4``) that names a band wins.
    """
    tokens = [t for t in _SPLIT.split(name) if t]
    for i in range(len(tokens) - 1, -1, -1):
        if i > 0:
            pair = f"{tokens[i - 1]}_{tokens[i]}"
            band = sensor.match(pair)
            if band:
                return band, tokens[: i - 1] + tokens[i + 1:]
        band = sensor.match(tokens[i])
        if band:
            return band, tokens[:i] + tokens[i + 1:]
    return None, tokens


def group_files(files: list[RasterFile], roots: dict[str, str], sensor: Sensor,
                band_order: list[str] | None) -> tuple[list[Acquisition], list[str]]:
    """Group files into acquisitions; returns the acquisitions and one message per skipped file."""
    groups: dict[tuple[str, str], Acquisition] = {}
    skipped: list[str] = []
    if band_order:
        parse_band_order(band_order, sensor)     # an unknown name is the user's error, not a file to skip
    for f in files:
        stem = _stem(f.path)
        if f.count > 1:
            try:
                mapping = stacked_bands(f, sensor, band_order)
            except BandOrderConflict:
                raise                   # the user's --band-order contradicts the file: never skip quietly
            except ValueError as err:
                skipped.append(str(err))
                continue
            key = _rel_key(f.path, roots[f.path], stem)
            groups[(roots[f.path], key)] = Acquisition(key=key, assets={b: (f, i) for b, i in mapping.items()},
                                                       stem=stem)
            continue
        band = _single_band(f, sensor, stem)
        if band is None:
            skipped.append(f"{f.path}: the file name names no band of {sensor.name} "
                           f"({', '.join(sensor.band_names)}) and its description does not either")
            continue
        _, rest = band_of_name(stem, sensor)
        rest = [t for t in rest if not _RES_TOKEN.match(t)]
        parent = _parent(f.path)
        key = _rel_key(parent + "/" + "_".join(rest), roots[f.path], "_".join(rest)).rstrip("/")
        key = key or _folder_name(parent, stem)
        acq = groups.setdefault((roots[f.path], key), Acquisition(key=key, assets={}, stem=stem))
        prev = acq.assets.get(band)
        if prev is not None and prev[0].res[0] <= f.res[0]:
            continue  # same band at several resolutions (SAFE R10m/R20m/R60m): keep the finest
        acq.assets[band] = (f, 1)
    acquisitions = list(groups.values())
    # the same relative layout under two roots: name those acquisitions by their full path instead
    keys = [a.key for a in acquisitions]
    for (root, _), acq in groups.items():
        if keys.count(acq.key) > 1:
            acq.key = f"{root.rstrip('/')}/{acq.key}"
    return acquisitions, skipped


def _single_band(f: RasterFile, sensor: Sensor, stem: str) -> str | None:
    band, _ = band_of_name(stem, sensor)
    if band is None and f.descriptions and f.descriptions[0]:
        band = sensor.match(f.descriptions[0])
    return band


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _parent(path: str) -> str:
    parent = path.rstrip("/").rsplit("/", 1)[0]
    if _RES_DIR.match(parent.rsplit("/", 1)[-1]):
        parent = parent.rsplit("/", 1)[0]
    return parent


def _folder_name(folder: str, stem: str) -> str:
    """A never-empty acquisition id for band files named only by their band (``B02.tif``): their folder's name."""
    return folder.rstrip("/").rsplit("/", 1)[-1] or stem


def _rel_key(path: str, root: str, fallback: str) -> str:
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return fallback or path


# --------------------------------------------------------------------------------------------- datetimes

_TAG_KEYS = ("ACQUISITIONDATETIME", "DATETIME", "TIFFTAG_DATETIME", "SENSING_TIME", "DATE_ACQUIRED",
             "acquisition_date", "datetime", "time")


def parse_datetime(text: str) -> datetime:
    """Parse the date formats met in file names, tags and sidecars into an aware UTC datetime."""
    s = text.strip().strip('"')
    with contextlib.suppress(ValueError):  # ISO 8601, with a UTC offset or Z when given
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    for fmt in ("%Y%m%dT%H%M%S", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M:%S",
                "%Y-%m-%d"):
        try:
            return datetime.strptime(s[: len(datetime(2000, 1, 1).strftime(fmt))], fmt).replace(
                tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"cannot parse a date from {text!r}")


def datetime_from_name(name: str, patterns: list[str]) -> datetime | None:
    for pattern in patterns:
        m = re.search(pattern, name)
        if not m:
            continue
        groups = m.groupdict()
        if groups.get("doy"):
            doy = groups["doy"]
            dt = datetime(int(doy[:4]), 1, 1, tzinfo=UTC) + timedelta(days=int(doy[4:7]) - 1)
            hms = groups.get("time") or ""
            if len(hms) >= 6 and hms[:6].isdigit():
                dt += timedelta(hours=int(hms[:2]), minutes=int(hms[2:4]), seconds=int(hms[4:6]))
            return dt
        if groups.get("date"):
            text = groups["date"] + (("T" + groups["time"]) if groups.get("time") else "")
            try:
                return parse_datetime(text)
            except ValueError:
                continue
    return None


def datetime_from_tags(tags: dict[str, str]) -> datetime | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for key in _TAG_KEYS:
        if key.upper() in upper:
            try:
                return parse_datetime(upper[key.upper()])
            except ValueError:
                continue
    return None
