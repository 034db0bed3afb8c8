"""Cloud / quality masks delivered beside the bands, and which of their pixels are unusable.

Three kinds are understood, each found by a token of the file name (or a band of that name):

* ``scl``: Sentinel-2 L2A Scene Classification (``..._SCL_20m.jp2``, ``SCL.tif``). Unusable classes: 0 no data,
  1 saturated or defective, 3 cloud shadow, 8 cloud (medium probability), 9 cloud (high probability),
  10 thin cirrus (ESA Sentinel-2 L2A Product Specification, SCL legend). Snow (11) and water (6) stay valid:
  they are surfaces, not contamination.
* ``qa_pixel``: Landsat Collection 2 ``QA_PIXEL`` bit flags. Unusable when bit 0 fill, 1 dilated cloud, 2 cirrus,
  3 cloud or 4 cloud shadow is set (USGS Landsat 8-9 Collection 2 Level-2 Science Product Guide, Table 6-3).
* ``fmask``: HLS v2.0 ``Fmask`` bit flags. Unusable when bit 0 cirrus, 1 cloud, 2 adjacent to cloud/shadow or
  3 cloud shadow is set, or the value is the fill 255 (HLS v2.0 User Guide, Table 9).

:func:`valid_of` is the other half of pixel validity: a band's own nodata value and non-finite floats.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from eossl.catalog import scan
from eossl.catalog.sensors import Sensor

log = logging.getLogger(__name__)

__all__ = ["MASK_KINDS", "valid_of", "MASK_KEY", "QualityMask", "kind_of_name", "kind_of_band", "usable", "split_masks",
           "match_masks"]

MASK_KEY = "_mask"  # key of the quality-mask asset in the index's assets JSON (not a band)
MASK_KINDS = ("scl", "qa_pixel", "fmask")
SCL_UNUSABLE = (0, 1, 3, 8, 9, 10)
QA_PIXEL_UNUSABLE_BITS = (0, 1, 2, 3, 4)
FMASK_UNUSABLE_BITS = (0, 1, 2, 3)
FMASK_FILL = 255

_SPLIT = re.compile(r"[_.\-\s]+")
_RES_TOKEN = re.compile(r"^\d+(\.\d+)?m$", re.IGNORECASE)
_RES_DIR = re.compile(r"^R\d+m$", re.IGNORECASE)
# token sequences naming each kind, longest first
_NAME_TOKENS = (("qa_pixel", ("qa", "pixel")), ("scl", ("scl",)), ("fmask", ("fmask",)))


def kind_of_name(stem: str) -> tuple[str | None, list[str]]:
    """``(kind, other tokens)`` of a file name without extension; kind None when it names no quality mask.

    The other tokens (resolution tokens like ``20m`` dropped) are what the file shares with its band files.
    """
    tokens = [t for t in _SPLIT.split(stem) if t]
    low = [t.lower() for t in tokens]
    for kind, seq in _NAME_TOKENS:
        n = len(seq)
        for i in range(len(low) - n, -1, -1):
            if tuple(low[i:i + n]) == seq:
                rest = tokens[:i] + tokens[i + n:]
                return kind, [t for t in rest if not _RES_TOKEN.match(t)]
    return None, tokens


def kind_of_band(band: str) -> str | None:
    """The mask kind a sensor band called ``band`` holds (``QA_PIXEL``, ``SCL``, ``Fmask``), else None."""
    key = band.lower().replace("-", "_")
    return {"qa_pixel": "qa_pixel", "scl": "scl", "fmask": "fmask"}.get(key)


def usable(kind: str, codes: np.ndarray) -> np.ndarray:
    """Boolean array, True where the mask ``codes`` (any shape, integer-valued) flag nothing unusable."""
    codes = np.asarray(codes)
    finite = np.isfinite(codes) if codes.dtype.kind == "f" else np.ones(codes.shape, dtype=bool)
    codes = np.where(finite, codes, 0).astype(np.int64)  # a NaN code is unusable whatever the kind
    if kind == "scl":
        return finite & ~np.isin(codes, SCL_UNUSABLE)
    if kind == "qa_pixel":
        return finite & ((codes & _bits(QA_PIXEL_UNUSABLE_BITS)) == 0)
    if kind == "fmask":
        return finite & ((codes & _bits(FMASK_UNUSABLE_BITS)) == 0) & (codes != FMASK_FILL)
    raise ValueError(f"unknown quality-mask kind {kind!r}; known kinds: {', '.join(MASK_KINDS)}")


@dataclass(frozen=True)
class QualityMask:
    """The mask of one acquisition: band ``band_index`` of ``file``, decoded as ``kind``."""

    file: scan.RasterFile
    band_index: int
    kind: str


def split_masks(files: list[scan.RasterFile], sensor: Sensor) -> tuple[list[tuple[scan.RasterFile, str]],
                                                                      list[scan.RasterFile]]:
    """``(mask files with their kind, the other files)``: single-band files whose name names a quality mask and
    no band of ``sensor``."""
    masks, others = [], []
    for f in files:
        stem = _stem(f.path)
        kind, _ = kind_of_name(stem)
        if kind is not None and f.count == 1 and scan.band_of_name(stem, sensor)[0] is None:
            masks.append((f, kind))
        else:
            others.append(f)
    return masks, others


def match_masks(acquisitions: list[scan.Acquisition], masks: list[tuple[scan.RasterFile, str]],
                sensor: Sensor) -> dict[str, QualityMask]:
    """Acquisition key -> its quality mask: a mask file in the same folder whose name, without the mask token,
    is that of the band files without the band token (resolution tokens and ``R20m`` folders ignored; the finest
    of several resolutions wins), else a band of the acquisition that is itself a mask (``QA_PIXEL``)."""
    by_signature: dict[tuple, tuple[scan.RasterFile, str]] = {}
    for f, kind in masks:
        sig = (_folder(f.path), tuple(kind_of_name(_stem(f.path))[1]))
        prev = by_signature.get(sig)
        if prev is None or f.res[0] < prev[0].res[0]:
            by_signature[sig] = (f, kind)
    found: dict[str, QualityMask] = {}
    used = set()
    for acq in acquisitions:
        for f, _ in acq.assets.values():
            sig = _signature(f, sensor)
            if sig in by_signature:
                mf, kind = by_signature[sig]
                found[acq.key] = QualityMask(mf, 1, kind)
                used.add(sig)
                break
        else:
            own = [(b, f, idx) for b, (f, idx) in acq.assets.items() if kind_of_band(b)]
            if own:
                b, f, idx = own[0]
                found[acq.key] = QualityMask(f, idx, kind_of_band(b))
    if found:
        kinds = sorted({m.kind for m in found.values()})
        log.info("%d of %d acquisitions have a cloud/quality mask (%s): its cloud, shadow, cirrus and no-data pixels "
                 "are invalid (--no-cloud-mask ignores the masks)", len(found), len(acquisitions), ", ".join(kinds))
    unused = [by_signature[s][0].path for s in by_signature if s not in used]
    if unused:
        log.warning("%d quality-mask file(s) match no acquisition (no band file with the same name and folder) "
                    "and are not used:\n  %s", len(unused), "\n  ".join(unused[:10]))
    return found


def _signature(f: scan.RasterFile, sensor: Sensor) -> tuple:
    stem = _stem(f.path)
    if f.count > 1:   # a stack: the mask file is named like the stack plus a mask token
        rest = [t for t in _SPLIT.split(stem) if t]
    else:
        rest = scan.band_of_name(stem, sensor)[1]
    return _folder(f.path), tuple(t for t in rest if not _RES_TOKEN.match(t))


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _folder(path: str) -> str:
    parent = path.rstrip("/").rsplit("/", 1)[0]
    if _RES_DIR.match(parent.rsplit("/", 1)[-1]):   # SAFE granules: IMG_DATA/R10m, R20m, R60m
        parent = parent.rsplit("/", 1)[0]
    return parent


def _bits(bits: tuple[int, ...]) -> int:
    return sum(1 << b for b in bits)


def valid_of(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where ``data`` holds a value: finite (floats) and not the band's ``nodata`` (None or NaN: no value)."""
    valid = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, dtype=bool)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= data != nodata
    return valid
