"""Scenes from STAC: Items, ItemCollections and static catalogs (files or URLs) as scene-index rows.

Each STAC Item is one acquisition. Its raster assets are matched to the sensor's bands, in this order: the band
``name`` in ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1), the ``common_name``, the centre wavelength (within half
the sensor band's width, at least 20 nm), then, for single-band assets, the asset key and the file name. A band
that several assets hold (Earth Search's ``red`` COG and ``red-jp2``) is read from the single-band GeoTIFF first.
``raster:bands`` give the scale, offset, nodata and data type (they override the sensor's declaration, and the
values are still checked by :mod:`eossl.catalog.scaling`); the item's ``datetime`` (or ``start_datetime``) is the
acquisition time; an ``scl`` / ``qa_pixel`` / ``fmask`` asset is the cloud mask. A centre wavelength in ``eo:bands``
that contradicts the sensor band it is matched to is an error: the item is not what the sensor describes.

Without a sensor, it is inferred per item from the collection id, ``platform`` / ``constellation``, the processing
level and baseline, and, failing those, the ``eo:bands`` names and wavelengths; the index column ``sensor_source``
says which it chose and why. Asset hrefs are opened through GDAL (local paths, ``file://``, ``http(s)://``, ``s3://``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm.auto import tqdm

from eossl.catalog import platforms, quality, scan
from eossl.catalog.config import IndexOptions, is_stac_source
from eossl.catalog.index import SENSOR_DEFINITION
from eossl.catalog.rows import acquisition_row, add_quality_mask, header
from eossl.catalog.sensors import Sensor, list_sensors, load_sensor, sensor_definition
from eossl.config import ConfigError

log = logging.getLogger(__name__)

__all__ = ["is_stac_source", "read_items", "infer_sensor", "stac_rows", "item_rows", "SENSOR_SOURCE", "STAC_ITEM"]

SENSOR_SOURCE = "sensor_source"     # index column: which sensor was chosen for the row, and why
STAC_ITEM = "stac_item"             # index column: the item's self href (or id) it was built from

_STAC_TYPES = ("Feature", "FeatureCollection", "Catalog", "Collection")
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
_NOT_DATA_ROLES = {"thumbnail", "overview", "metadata", "visual", "rendered_preview", "tilejson"}
_MIN_TOLERANCE_NM = 20.0


# ------------------------------------------------------------------------------------------ reading STAC


def read_items(source: str) -> list:
    """Every pystac Item in ``source``: an Item, an ItemCollection, or a Catalog/Collection (walked recursively)."""
    import pystac

    try:
        text = pystac.StacIO.default().read_text(_local_or_url(source))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"STAC file not found: {source}") from err
    except Exception as err:  # urllib / requests errors differ by scheme
        raise ValueError(f"cannot read STAC JSON {source}: {err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{source}: not JSON ({err}); pass a STAC Item, ItemCollection or catalog file") from err
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _STAC_TYPES:
        raise ValueError(f"{source}: not a STAC Item, ItemCollection, Catalog or Collection (its \"type\" is "
                         f"{kind!r}); scan raster folders by passing the folder instead")
    href = _absolute(source)
    try:
        if kind == "Feature":
            return [pystac.Item.from_dict(data, href=href, preserve_dict=False)]
        if kind == "FeatureCollection":
            items = pystac.ItemCollection.from_dict(data, preserve_dict=False).items
            for item in items:  # relative asset hrefs are relative to the collection file
                if item.get_self_href() is None:
                    item.set_self_href(href)
            return list(items)
        obj = pystac.read_file(href)
        return list(obj.get_items(recursive=True))
    except (pystac.STACError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: invalid STAC {kind}: {err}") from err


def _local_or_url(source: str) -> str:
    return unquote(urlparse(source).path) if source.startswith("file://") else source


def _absolute(source: str) -> str:
    source = _local_or_url(source)
    return source if "://" in source else str(Path(source).resolve())


# ------------------------------------------------------------------------------------------ band metadata


@dataclass(frozen=True)
class BandInfo:
    """One band of one asset as the item describes it (every field optional)."""

    name: str | None = None
    common_name: str | None = None
    wavelength_nm: float | None = None
    width_nm: float | None = None
    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None
    data_type: str | None = None


def asset_bands(asset: dict) -> list[BandInfo]:
    """The bands of an asset from STAC 1.1 ``bands`` or STAC 1.0 ``eo:bands`` + ``raster:bands`` (zipped)."""
    def um(v):
        return None if v is None else float(v) * 1000.0

    def num(v):
        try:
            return None if v is None else float(v)
        except (TypeError, ValueError):   # "nan" nodata strings etc.
            return None
    if isinstance(asset.get("bands"), list):
        return [BandInfo(b.get("name"), b.get("eo:common_name"), um(b.get("eo:center_wavelength")),
                         um(b.get("eo:full_width_half_max")), num(b.get("nodata")), num(b.get("scale")),
                         num(b.get("offset")), b.get("data_type")) for b in asset["bands"] if isinstance(b, dict)]
    eo = [b for b in asset.get("eo:bands") or [] if isinstance(b, dict)]
    raster = [b for b in asset.get("raster:bands") or [] if isinstance(b, dict)]
    out = []
    for i in range(max(len(eo), len(raster))):
        e = eo[i] if i < len(eo) else {}
        r = raster[i] if i < len(raster) else {}
        out.append(BandInfo(e.get("name"), e.get("common_name"), um(e.get("center_wavelength")),
                            um(e.get("full_width_half_max")), num(r.get("nodata")), num(r.get("scale")),
                            num(r.get("offset")), r.get("data_type")))
    return out


def _is_raster_asset(key: str, asset: dict) -> bool:
    roles = set(asset.get("roles") or [])
    if roles & _NOT_DATA_ROLES and "data" not in roles:
        return False
    if key.lower() in ("visual", "thumbnail", "preview", "overview", "rendered_preview", "tilejson"):
        return False
    media = str(asset.get("type") or "").lower()
    if media:
        return "image/tiff" in media or "image/jp2" in media or "image/vnd.stac.geotiff" in media
    href = urlparse(asset.get("href", "")).path.lower()
    return href.endswith(_RASTER_SUFFIXES)


def _tolerance(band) -> float:
    return max(band.bandwidth_nm / 2.0, _MIN_TOLERANCE_NM)


def match_band(info: BandInfo, sensor: Sensor, key: str, href: str, single: bool) -> tuple[str | None, str]:
    """(sensor band, how it was matched) for one asset band; band None when nothing names it."""
    for label, token in (("eo:bands name", info.name), ("common_name", info.common_name)):
        if token and sensor.match(token):
            return sensor.match(token), f"{label} {token!r}"
    if info.wavelength_nm is not None:
        near = min(sensor.bands, key=lambda b: abs(b.wavelength_nm - info.wavelength_nm))
        if abs(near.wavelength_nm - info.wavelength_nm) <= _tolerance(near):
            return near.name, f"centre wavelength {info.wavelength_nm:g} nm"
    if single:
        if sensor.match(key):
            return sensor.match(key), f"asset key {key!r}"
        stem = Path(urlparse(href).path).name.split(".")[0]
        found, _ = scan.band_of_name(stem, sensor)
        if found:
            return found, f"file name {stem!r}"
    return None, ""


def _check_wavelength(info: BandInfo, band, where: str) -> None:
    if info.wavelength_nm is None:
        return
    diff = abs(band.wavelength_nm - info.wavelength_nm)
    if diff > _tolerance(band):
        raise ValueError(f"{where}: eo:bands gives a centre wavelength of {info.wavelength_nm:g} nm, but it is "
                         f"matched to band {band.name} at {band.wavelength_nm:g} nm ({diff:.0f} nm apart); the "
                         f"item does not describe this sensor: pass the right --sensor (or a sensor YAML path)")


# ------------------------------------------------------------------------------------------ sensor inference


def _text(item, key: str) -> str:
    v = item.properties.get(key)
    return " ".join(map(str, v)) if isinstance(v, list) else str(v or "")


def _item_platform(item) -> platforms.Platform | None:
    """What the item says about its satellite: family, unit, level and HLS-ness, or None."""
    collection = str(item.collection_id or "")
    coll = collection.lower()
    plat = None
    for key in ("platform", "constellation"):
        text = _text(item, key)
        if text:
            found = platforms._from_text(text, f"STAC {key} {text!r}", strict=False)
            if found:
                plat = found[0]
                break
    hls = None
    if re.search(r"(?<![a-z])hls", coll):
        hls = True
        family = "sentinel-2" if re.search(r"s30", coll) else "landsat" if re.search(r"l30", coll) else None
        if plat is None and family:
            plat = platforms.Platform(family)
    if plat is None and collection:
        found = platforms._from_text(collection.replace("-", " "), f"STAC collection {collection!r}", strict=False)
        plat = found[0] if found else None
    if plat is None:
        return None
    level = _item_level(item, coll, plat.family)
    return platforms.Platform(plat.family, plat.units, level, hls, plat.source)


def _item_level(item, coll: str, family: str) -> str | None:
    texts = [coll, _text(item, "processing:level"), _text(item, "s2:product_type"),
             _text(item, "landsat:correction"), str(item.id)]
    joined = " ".join(texts).lower()
    if family == "sentinel-2":
        if re.search(r"l2a|msi2a", joined):
            return "L2A"
        if re.search(r"l1c|msi1c", joined):
            return "L1C"
        return None
    if re.search(r"(?<![a-z0-9])l2|c2l2|l2sp|l2sr|[-_]l2[-_]", joined) or re.search(r"c2-l2", joined):
        return "L2"
    if re.search(r"(?<![a-z0-9])l1|c2l1|l1tp|l1gt|l1gs|c2-l1", joined):
        return "L1"
    return None


def _baseline(item) -> float | None:
    text = _text(item, "s2:processing_baseline") or _text(item, "processing:version")
    m = re.search(r"(\d+)\.(\d+)", text)
    if m:
        return float(f"{m.group(1)}.{m.group(2)}")
    m = re.search(r"_N(\d{2})(\d{2})_", str(item.id))
    return float(f"{m.group(1)}.{m.group(2)}") if m else None


def _band_score(item, sensor: Sensor) -> tuple[int, int]:
    """(item bands matched, item bands described) of ``item``'s eo:bands against ``sensor``."""
    matched = described = 0
    for key, asset in item.to_dict(include_self_link=False)["assets"].items():
        if not _is_raster_asset(key, asset):
            continue
        for info in asset_bands(asset):
            if info.name or info.common_name or info.wavelength_nm:
                described += 1
                name, _ = match_band(info, sensor, key, asset.get("href", ""), single=False)
                if name and (info.wavelength_nm is None
                             or abs(sensor.band(name).wavelength_nm - info.wavelength_nm)
                             <= _tolerance(sensor.band(name))):
                    matched += 1
    return matched, described


def infer_sensor(item) -> tuple[Sensor, str]:
    """The installed sensor that ``item`` is from, and why (for the index and the log); ValueError naming what
    the item lacks when it cannot be told."""
    plat = _item_platform(item)
    installed = []
    for name in list_sensors():
        try:
            installed.append(load_sensor(name))
        except (ConfigError, ValueError, FileNotFoundError):
            continue
    candidates = installed
    reasons = []
    if plat is not None:
        candidates = [s for s in installed if (d := platforms.of_sensor(s)) is not None
                      and platforms._agrees(plat, d) and (plat.hls or not d.hls)]
        reasons.append(f"{plat.source} ({plat.describe()})")
        if not candidates:
            raise ValueError(f"STAC item {item.id}: the {plat.source} says {plat.describe()}, and no installed "
                             f"sensor fits; describe it in a sensor YAML (data_catalog/README.md) and pass its path "
                             f"with --sensor")
    if len(candidates) > 1 and plat is not None and plat.family == "sentinel-2":
        baseline = _baseline(item)
        if baseline is not None:
            pb04 = [s for s in candidates if s.name.endswith("-pb04")]
            rest = [s for s in candidates if not s.name.endswith("-pb04")]
            candidates = (pb04 if baseline >= 4.0 else rest) or candidates
            reasons.append(f"processing baseline {baseline:05.2f}")
    described = 0
    if len(candidates) > 1:
        scores = {s.name: _band_score(item, s) for s in candidates}
        described = max(d for _, d in scores.values())
        full = [s for s in candidates if described and scores[s.name][0] == described]
        if full:
            candidates = full
            reasons.append(f"eo:bands ({described} bands matched)")
    if plat is None and not described:
        raise ValueError(
            f"STAC item {item.id}: cannot tell its sensor: no collection, platform or constellation naming a known "
            f"satellite and no eo:bands (band names or centre wavelengths) in its assets; pass --sensor NAME "
            f"(installed: {', '.join(list_sensors())}) or a sensor YAML path")
    if plat is None and not reasons:
        raise ValueError(f"STAC item {item.id}: its eo:bands match no installed sensor completely; pass --sensor "
                         f"NAME (installed: {', '.join(list_sensors())}) or a sensor YAML path")
    if len(candidates) > 1:
        raise ValueError(f"STAC item {item.id}: {', '.join(reasons)} fits several sensors "
                         f"({', '.join(s.name for s in candidates)}); pass --sensor with one of them")
    return candidates[0], "inferred from " + "; ".join(reasons)


# ------------------------------------------------------------------------------------------ items -> rows


@dataclass
class _Planned:
    band: str
    key: str
    href: str
    index: int              # 1-based band in the asset's file
    info: BandInfo
    how: str
    rank: tuple


def _plan_item(item, sensor: Sensor, where: str) -> tuple[dict[str, _Planned], list[tuple[str, str, str]]]:
    """(sensor band -> where it is read, [(mask kind, asset key, href)]) for one item."""
    chosen: dict[str, _Planned] = {}
    masks = []
    for key, asset in item.assets.items():
        d = asset.to_dict()
        href = asset.get_absolute_href() or asset.href
        href = _local_or_url(href)
        if not _is_raster_asset(key, d):
            continue
        kind = quality.kind_of_band(key) or quality.kind_of_name(key)[0]
        infos = asset_bands(d)
        if kind is not None and len(infos) <= 1 and not (infos and match_band(infos[0], sensor, key, href,
                                                                                 single=False)[0]):
            masks.append((kind, key, href))
            continue
        single = len(infos) <= 1
        for i, info in enumerate(infos or [BandInfo()], start=1):
            band, how = match_band(info, sensor, key, href, single)
            if band is None:
                continue
            _check_wavelength(info, sensor.band(band), f"{where}, asset {key!r} band {i}")
            path = urlparse(href).path.lower()
            rank = (0 if single else 1, 1 if path.endswith(".jp2") else 0, key)
            if band not in chosen or rank < chosen[band].rank:
                chosen[band] = _Planned(band, key, href, i, info, how, rank)
    return chosen, masks


def _sensor_for_item(sensor: Sensor, planned: dict[str, _Planned]) -> Sensor:
    """``sensor`` with each band's scale, offset, nodata and dtype as the item's raster:bands give them."""
    bands = []
    for b in sensor.bands:
        p = planned.get(b.name)
        if p is None:
            bands.append(b)
            continue
        i = p.info
        changes = {k: v for k, v in (("scale", i.scale), ("offset", i.offset), ("nodata", i.nodata),
                                     ("dtype", i.data_type)) if v is not None}
        if changes.get("dtype") not in (None, "uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"):
            changes.pop("dtype")
        if "scale" in changes and not changes["scale"] > 0:
            changes.pop("scale")
        bands.append(replace(b, **changes))
    return replace(sensor, bands=tuple(bands))


def _open_header(href: str, where: str, quick: bool) -> scan.RasterFile:
    try:
        return header(href, quick)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"{where}: the asset cannot be read: {err}") from err


def item_rows(items: list, sensor: Sensor | str | None, options: IndexOptions | None = None,
              progress: bool = True, source: str = "STAC") -> list[dict]:
    """One index row per item (see the module doc). ``sensor`` None: inferred per item."""
    options = options or IndexOptions()
    given = load_sensor(sensor) if sensor is not None else None
    rows, logged, seen = [], set(), set()
    for item in tqdm(items, desc="indexing STAC items", unit="item", disable=not progress):
        where = f"STAC item {item.id} ({item.get_self_href() or source})"
        if item.id in seen:
            log.warning("%s: an item with this id was already indexed; the duplicate is skipped", where)
            continue
        seen.add(item.id)
        if given is not None:
            base, why = given, "--sensor"
        else:
            base, why = infer_sensor(item)
        planned, masks = _plan_item(item, base, where)
        if not planned:
            assets = ", ".join(item.assets) or "none"
            raise ValueError(f"{where}: none of its assets ({assets}) is a {base.name} band: no eo:bands/bands "
                             f"names, common names or centre wavelengths, and no asset key or file name naming a "
                             f"band; check --sensor, or add eo:bands to the item")
        files: dict[str, scan.RasterFile] = {}
        assets = {}
        for band in sorted(planned, key=base.band_names.index):
            p = planned[band]
            if p.href not in files:
                files[p.href] = _open_header(p.href, f"{where}, asset {p.key!r} ({p.href})", options.quick)
            if p.index > files[p.href].count:
                raise ValueError(f"{where}, asset {p.key!r}: its metadata lists band {p.index} ({band}) but "
                                 f"{p.href} has {files[p.href].count} band(s)")
            assets[band] = (files[p.href], p.index)
        item_platform = _text(item, "platform") or _text(item, "constellation") or None
        for href, f in files.items():
            platforms.check_platform(href, platforms.detect(href, f.tags, item_platform, where), base)
        variant = _sensor_for_item(base, planned)
        acq = scan.Acquisition(key=item.id, assets=assets, stem=item.id)
        local = [h for h in files if "://" not in h and not h.startswith("/vsi")]
        root = os.path.commonpath([os.path.dirname(h) for h in local]) if local else ""
        row = acquisition_row(acq, {h: root for h in files}, variant, _no_sidecar(options), logged)
        _restate_scaling(row, base, variant)
        row["sensor"] = base.name
        when = item.datetime or _start(item)
        if options.datetime:
            when = scan.parse_datetime(options.datetime)
        row["datetime"] = when
        row[SENSOR_SOURCE] = why
        row[SENSOR_DEFINITION] = json.dumps(sensor_definition(base))
        row[STAC_ITEM] = item.get_self_href() or item.id
        if options.cloud_mask and masks:
            kind, key, href = masks[0]
            f = _open_header(href, f"{where}, asset {key!r} ({href})", options.quick)
            add_quality_mask(row, quality.QualityMask(f, 1, kind))
        log.debug("%s: %s (%s); bands %s", where, base.name, why,
                  ", ".join(f"{b} <- {p.key}[{p.index}] by {p.how}" for b, p in planned.items()))
        rows.append(row)
    return rows


def _no_sidecar(options: IndexOptions) -> IndexOptions:
    return replace(options, datetime_sources=[s for s in options.datetime_sources if s != "sidecar"])


def _start(item):
    from eossl.catalog.scan import parse_datetime

    value = item.properties.get("start_datetime")
    return parse_datetime(value) if value else None


def _restate_scaling(row: dict, base: Sensor, variant: Sensor) -> None:
    """Row assets hold (scale, offset) only where they differ from the base sensor's declaration: the index is
    read with the base sensor, so the item's raster:bands values are written out where they differ from it."""
    assets = json.loads(row["assets"])
    for band, a in assets.items():
        if band.startswith("_"):
            continue
        b, v = base.band(band), variant.band(band)
        scale = a.get("scale", v.scale)
        offset = a.get("offset", v.offset)
        if (scale, offset) != (b.scale, b.offset):
            a.update(scale=scale, offset=offset)
        else:
            a.pop("scale", None)
            a.pop("offset", None)
    row["assets"] = json.dumps(assets)


def stac_rows(sources: list[str], sensor: Sensor | str | None, options: IndexOptions | None = None,
              progress: bool = True) -> list[dict]:
    """Rows for every item in the STAC files or URLs ``sources``."""
    rows = []
    for source in sources:
        items = read_items(source)
        if not items:
            raise ValueError(f"{source}: the STAC file holds no items")
        rows.extend(item_rows(items, sensor, options, progress, source))
    return rows


# ------------------------------------------------------------------------------------------ STAC API search


def search_items(url: str, *, collections: list[str] | None = None, bbox: list[float] | None = None,
                 intersects: dict | None = None, datetime: str | None = None, max_cloud: float | None = None,
                 max_items: int | None = 100, query: dict | None = None) -> list:
    """Items from the STAC API at ``url`` (pystac-client). ``max_cloud``: ``eo:cloud_cover`` <= this (percent),
    asked of the API through the query extension when it has it, and checked on every item returned."""
    try:
        from pystac_client import Client
        from pystac_client.exceptions import APIError
        from pystac_client.warnings import DoesNotConformTo
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("`eossl catalog search` needs pystac-client: pip install pystac-client") from err
    if bbox is not None and intersects is not None:
        raise ValueError("give --bbox or --intersects, not both")
    try:
        client = Client.open(url)
    except Exception as err:  # requests / JSON / STAC errors: name the URL
        raise ValueError(f"cannot open the STAC API at {url}: {err}; check the URL (the API's landing page, e.g. "
                         f"https://earth-search.aws.element84.com/v1)") from err
    query = dict(query or {})
    if max_cloud is not None:
        query["eo:cloud_cover"] = {"lte": float(max_cloud)}
    kwargs = {"collections": collections or None, "bbox": bbox, "intersects": intersects, "datetime": datetime,
              "max_items": max_items}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DoesNotConformTo)
        try:
            search = client.search(**kwargs, query=query or None)
        except DoesNotConformTo:
            log.warning("the STAC API at %s has no query extension: eo:cloud_cover is filtered on the items it "
                        "returns (up to --max-items of them)", url)
            search = client.search(**kwargs)
    try:
        items = list(search.items())
    except APIError as err:
        raise ValueError(f"the STAC API at {url} refused the search ({err}); check --collection (the API lists "
                         f"its collections at {url.rstrip('/')}/collections), --bbox and --datetime") from err
    if max_cloud is not None:
        kept = [i for i in items if (c := i.properties.get("eo:cloud_cover")) is None or float(c) <= max_cloud]
        if len(kept) < len(items):
            log.info("%d item(s) above %.1f%% cloud cover left out", len(items) - len(kept), max_cloud)
        items = kept
    return items


def save_items(items: list, path: str | Path) -> Path:
    """Write ``items`` as one ItemCollection (GeoJSON), atomically: the record of what a search returned."""
    import pystac

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False), indent=1))
    tmp.replace(path)
    return path
