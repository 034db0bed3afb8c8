"""Windows: what a sampler yields and the reader reads. Plain, picklable, JSON-serialisable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from eossl.catalog.index import SceneIndex

__all__ = ["Window", "snap_origin", "valid_fraction"]


@dataclass(frozen=True)
class Window:
    """A chip to read: ``acquisitions`` are index row positions (2 for a seasonal pair), ``bounds`` are
    (minx, miny, maxx, maxy) in ``crs`` and the chip is ``size`` x ``size`` pixels at ``gsd``."""

    acquisitions: tuple[int, ...]
    bounds: tuple[float, float, float, float]
    crs: str
    size: int
    gsd: float
    label: int | None = None
    label_name: str | None = None
    label_id: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Window:
        return cls(**{**d, "acquisitions": tuple(d["acquisitions"]), "bounds": tuple(d["bounds"])})


def snap_origin(x: float, origin: float, step: float) -> float:
    """``x`` moved down onto the grid ``origin + k * step`` (so windows align with the file's pixels)."""
    return origin + math.floor((x - origin) / step + 1e-9) * step


def valid_fraction(index: SceneIndex, i: int, bounds, masks: dict[int, np.ndarray] | None = None) -> float:
    """Fraction of ``bounds`` (in row ``i``'s CRS) covered by valid data, from the coarse index mask.

    Window area outside the acquisition counts as invalid.
    """
    mask = masks[i] if masks is not None and i in masks else index.valid_mask(i)
    bx0, by0, bx1, by1 = index.bounds(i)
    h, w = mask.shape
    cw, ch = (bx1 - bx0) / w, (by1 - by0) / h
    x0, y0, x1, y1 = bounds
    # cells whose centres fall inside the window
    c0 = math.ceil((x0 - bx0) / cw - 0.5)
    c1 = math.floor((x1 - bx0) / cw - 0.5)
    r0 = math.ceil((by1 - y1) / ch - 0.5)
    r1 = math.floor((by1 - y0) / ch - 0.5)
    if c1 < c0 or r1 < r0:  # window smaller than one cell: the cell under its centre decides
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c, r = int((cx - bx0) // cw), int((by1 - cy) // ch)
        return float(mask[r, c]) if 0 <= r < h and 0 <= c < w else 0.0
    total = (c1 - c0 + 1) * (r1 - r0 + 1)
    sub = mask[max(r0, 0):min(r1, h - 1) + 1, max(c0, 0):min(c1, w - 1) + 1]
    return float(sub.sum()) / total
