"""Metadata files beside a raster: its acquisition time and platform.

Looked for, in this order, in the file's folder (and the granule folder above an ``R10m``-like folder):

1. any ``*.json`` that is a STAC Item (``"type": "Feature"`` with ``assets``) one of whose asset ``href``s points at
   the file (relative to the JSON, absolute, ``file://``; a URL or a path from another machine matches by file
   name): ``properties.datetime`` (or ``start_datetime``) and ``properties.platform``;
2. ``<stem>.json``, ``metadata.json``, ``item.json``: a STAC item or ``{"datetime": ...}``;
3. Landsat ``*_MTL.txt`` (``DATE_ACQUIRED``, ``SPACECRAFT_ID``), Sentinel-2 ``MTD_*.xml`` (sensing time,
   ``SPACECRAFT_NAME``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from eossl.catalog.scan import parse_datetime

__all__ = ["SidecarInfo", "read_sidecar"]

_RES_DIR = re.compile(r"^R\d+m$", re.IGNORECASE)
_MAX_JSON_BYTES = 5_000_000          # larger JSON files are label/feature collections, not STAC items
_DATE_RE = (re.compile(r"<SENSING_TIME[^>]*>([^<]+)<"), re.compile(r"<PRODUCT_START_TIME>([^<]+)<"),
            re.compile(r"DATE_ACQUIRED\s*=\s*\"?([0-9\-]+)"))
_PLATFORM_RE = (re.compile(r"SPACECRAFT_ID\s*=\s*\"?([A-Za-z0-9_\-]+)"),
                re.compile(r"<SPACECRAFT_NAME>([^<]+)<"))


@dataclass(frozen=True)
class SidecarInfo:
    """What metadata beside a file says; ``source`` names the file each value came from."""

    datetime: datetime | None = None
    platform: str | None = None
    source: str | None = None


def read_sidecar(path: str) -> SidecarInfo:
    """Acquisition time and platform of the local file ``path`` from metadata files beside it (see module doc)."""
    if path.startswith(("/vsi", "s3://", "gs://", "http://", "https://", "az://")):
        return SidecarInfo()
    p = Path(path)
    folders = [p.parent] + ([p.parent.parent] if _RES_DIR.match(p.parent.name) else [])
    for item_path, item in _stac_items_for(p, folders):
        props = item.get("properties") or {}
        value = props.get("datetime") or props.get("start_datetime")
        platform = props.get("platform") or props.get("constellation")
        if value or platform:
            return SidecarInfo(parse_datetime(value) if value else None, platform, item_path)
    stem = p.name.rsplit(".", 1)[0]
    for c in (p.with_name(stem + ".json"), p.parent / "metadata.json", p.parent / "item.json"):
        data = _json(str(c), _mtime(c))
        if isinstance(data, dict):
            props = data.get("properties") if isinstance(data.get("properties"), dict) else {}
            value = props.get("datetime") or data.get("datetime")
            if value:
                return SidecarInfo(parse_datetime(value), props.get("platform") or data.get("platform"), str(c))
    for c in _metadata_files(p, folders):
        text = c.read_text(errors="replace")
        dt = next((parse_datetime(m.group(1)) for rx in _DATE_RE if (m := rx.search(text))), None)
        platform = next((m.group(1).strip() for rx in _PLATFORM_RE if (m := rx.search(text))), None)
        if dt or platform:
            return SidecarInfo(dt, platform, str(c))
    return SidecarInfo()


def _stac_items_for(p: Path, folders: list[Path]) -> list[tuple[str, dict]]:
    """STAC items in ``folders`` whose assets point at ``p``: exact path matches first, then file-name matches."""
    target = p.resolve()
    exact, by_name = [], []
    for folder in folders:
        for name in _listing(str(folder), _mtime(folder)):
            if not name.lower().endswith(".json"):
                continue
            item_path = folder / name
            item = _json(str(item_path), _mtime(item_path))
            if not (isinstance(item, dict) and item.get("type") == "Feature" and isinstance(item.get("assets"), dict)):
                continue
            hrefs = [a.get("href") for a in item["assets"].values() if isinstance(a, dict) and a.get("href")]
            match = _href_match(hrefs, folder, target)
            if match == "path":
                exact.append((str(item_path), item))
            elif match == "name":
                by_name.append((str(item_path), item))
    return exact + by_name


def _href_match(hrefs: list[str], folder: Path, target: Path) -> str | None:
    """``"path"`` if an href resolves to ``target``, ``"name"`` if one only has its file name, else None."""
    named = False
    for href in hrefs:
        url = urlparse(href)
        if url.scheme == "file":
            local = Path(unquote(url.path))
        elif url.scheme and len(url.scheme) > 1:        # http(s), s3, gs: a remote copy of a downloaded file
            named |= unquote(url.path).rsplit("/", 1)[-1] == target.name
            continue
        else:
            local = Path(href)
        local = local if local.is_absolute() else folder / local
        if os.path.normpath(local) == str(target) or (local.exists() and local.resolve() == target):
            return "path"
        named |= local.name == target.name
    return "name" if named else None


def _metadata_files(p: Path, folders: list[Path]) -> list[Path]:
    """Landsat MTL files (the one named like ``p`` when there are several) and SAFE MTD XML files."""
    found = []
    for folder in folders:
        names = _listing(str(folder), _mtime(folder))
        mtl = [n for n in names if n.endswith("MTL.txt")]
        same = [n for n in mtl if p.name.startswith(n[: -len("MTL.txt")].rstrip("_"))]
        found += [folder / n for n in (same or (mtl if len(mtl) == 1 else []))]
        found += [folder / n for n in names if n.startswith("MTD_") and n.endswith(".xml")]
    return found


def _mtime(path: Path) -> int:
    """Modification time (ns) that keys the caches below, so a file written after a first look is seen."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=1024)
def _listing(folder: str, _mtime_ns: int) -> tuple[str, ...]:
    try:
        return tuple(sorted(e.name for e in os.scandir(folder) if e.is_file()))
    except OSError:
        return ()


@lru_cache(maxsize=4096)
def _json(path: str, _mtime_ns: int):
    try:
        if os.path.getsize(path) > _MAX_JSON_BYTES:
            return None
        with open(path, encoding="utf-8", errors="replace") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
