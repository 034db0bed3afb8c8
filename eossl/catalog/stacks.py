"""Which band each layer of a multi-band file holds: band descriptions, ``--band-order`` (with ``NAME:skip``), or the
sensor's ``stack_band_order``; descriptions and a given order must agree."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from eossl.catalog.sensors import Sensor

if TYPE_CHECKING:
    from eossl.catalog.scan import RasterFile

__all__ = ["BandOrderConflict", "parse_band_order", "stacked_bands"]


class BandOrderConflict(ValueError):
    """A multi-band file's band descriptions contradict the band order given for it."""


def parse_band_order(order: list[str], sensor: Sensor) -> list[str | None]:
    """Canonical band per position of a stacked file; ``None`` for ``NAME:skip`` or ``skip`` (a band left out).

    ValueError naming the entry for an unknown band, a bad suffix or a band listed twice.
    """
    out: list[str | None] = []
    for entry in order:
        name, _, flag = str(entry).strip().partition(":")
        if flag.strip().lower() not in ("", "skip"):
            raise ValueError(f"band order entry {entry!r}: the only suffix is ':skip' (e.g. QA:skip)")
        if flag or name.strip().lower() == "skip":
            out.append(None)
            continue
        out.append(sensor.resolve(name.strip()))
    kept = [b for b in out if b is not None]
    dupes = sorted({b for b in kept if kept.count(b) > 1})
    if dupes:
        raise ValueError(f"band order {list(order)} names {', '.join(dupes)} more than once")
    return out


# descriptions of quality / auxiliary layers stacked with the bands (Landsat QA_PIXEL, S2 SCL, Fmask, ...):
# skipped, never taken for a band (compared ignoring case, '_', '-' and spaces)
_AUX_DESCRIPTIONS = {"qa", "bqa", "qapixel", "qaradsat", "srqaaerosol", "srcloudqa", "sratmosopacity", "stqa",
                     "statran", "stcdist", "stdrad", "stemis", "stemsd", "sttrad", "sturad", "scl", "fmask", "aot",
                     "wvp", "tci", "cld", "snw", "mskcldprb", "msksnwprb", "cloudmask", "mask", "validmask"}


def _aux(description: str | None) -> bool:
    return bool(description) and re.sub(r"[\s_\-]", "", description).lower() in _AUX_DESCRIPTIONS


def stacked_bands(f: RasterFile, sensor: Sensor, band_order: list[str] | None) -> dict[str, int]:
    """Band -> 1-based index in a multi-band file: from its band descriptions when they name bands (checked
    against ``band_order`` when both are given), else from ``band_order`` / the sensor's stack order."""
    order = parse_band_order(band_order, sensor) if band_order else None
    if order is not None and len(order) != f.count:
        raise ValueError(
            f"{f.path}: {f.count} bands, but the band order for {sensor.name} has {len(order)} "
            f"({', '.join(band_order)}); list every band of the file in --band-order, marking the ones to leave "
            f"out with NAME:skip (e.g. QA:skip)")
    described = [sensor.match(d) if d else None for d in f.descriptions]
    if any(described):
        _check_descriptions(f, sensor, described, order)
        picked = order if order is not None else described
        return {b: i + 1 for i, b in enumerate(picked) if b is not None}
    if order is None:
        order = list(sensor.stack_band_order)
        if len(order) != f.count:
            raise ValueError(
                f"{f.path}: {f.count} bands, but the band order for {sensor.name} has {len(order)} "
                f"({', '.join(order)}) and the band descriptions do not name the bands; pass the file's band "
                f"order with --band-order (e.g. --band-order {','.join(order[: min(3, len(order))])},...; "
                f"NAME:skip leaves a band out)")
    return {b: i + 1 for i, b in enumerate(order) if b is not None}


def _check_descriptions(f: RasterFile, sensor: Sensor, described: list[str | None],
                        order: list[str | None] | None) -> None:
    """Descriptions that name some bands must name every band (or a known quality layer) once, and agree with
    ``order`` when it is given."""
    descs = list(f.descriptions)
    for i, (desc, band) in enumerate(zip(descs, described, strict=True)):
        wanted = order[i] if order is not None else None
        if order is not None and wanted is not None and (band is not None or _aux(desc)) and band != wanted:
            raise BandOrderConflict(
                f"{f.path}: band {i + 1} is described as {desc!r} but --band-order puts {wanted} there; the "
                f"descriptions name the bands ({', '.join(repr(d) for d in descs)}): drop --band-order, or fix it "
                f"(NAME:skip leaves a band out)")
        if order is None and band is None and not _aux(desc):
            raise ValueError(
                f"{f.path}: band {i + 1} is described as {desc!r}, which is no {sensor.name} band (bands: "
                f"{', '.join(sensor.band_names)}); give every band of the file with --band-order, marking the "
                f"ones to leave out with NAME:skip")
    if order is None:
        named = [b for b in described if b is not None]
        dupes = sorted({b for b in named if named.count(b) > 1})
        if dupes:
            raise ValueError(f"{f.path}: the band descriptions name {', '.join(dupes)} more than once "
                             f"({', '.join(repr(d) for d in descs)}); give the file's band order with --band-order")
