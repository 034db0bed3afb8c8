"""Parcels of a label grid, and the buffers that keep training pixels away from test parcels.

A parcel is an 8-connected region of one label of at least ``min_pixels`` pixels. Smaller fragments (slivers at
field edges, a few stray pixels) are neither trained on nor scored: their pixels get parcel id -1. Pixels of one
parcel are spatially correlated, so evaluation splits by parcel, with a buffer of ``buffer`` pixels around the
test parcels from which no training pixel is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Parcels", "find_parcels", "buffer_mask", "EIGHT_CONNECTED"]

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class Parcels:
    """``ids`` (H, W) int32: 0 unlabelled, -1 a fragment below ``min_pixels``, 1..n the parcel; per parcel
    (index ``i`` is parcel ``i + 1``): ``codes`` (n,) its label code and ``sizes`` (n,) its pixel count."""

    ids: np.ndarray
    codes: np.ndarray
    sizes: np.ndarray
    min_pixels: int

    def __len__(self) -> int:
        return len(self.codes)

    def per_class(self) -> dict[int, int]:
        """Label code -> number of parcels."""
        values, counts = np.unique(self.codes, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def of_class(self, code: int) -> list[int]:
        """Ids of the parcels of one label code."""
        return [i + 1 for i in np.flatnonzero(self.codes == code)]


def find_parcels(codes: np.ndarray, labelled: np.ndarray | None = None, min_pixels: int = 20,
                 exclude: np.ndarray | None = None) -> Parcels:
    """Parcels of (H, W) ``codes`` where ``labelled`` (default: codes != 0), numbered in order of (code, first
    pixel in row-major order). ``exclude`` (H, W) bool: pixels never part of a parcel (e.g. mixed pixels)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"find_parcels: codes must be (H, W), got shape {codes.shape}")
    if min_pixels < 1:
        raise ValueError(f"find_parcels: min_pixels must be >= 1, got {min_pixels}")
    labelled = codes != 0 if labelled is None else np.asarray(labelled, dtype=bool)
    if exclude is not None:
        labelled = labelled & ~np.asarray(exclude, dtype=bool)
    ids = np.zeros(codes.shape, dtype=np.int32)
    ids[labelled] = -1
    out_codes, sizes = [], []
    for code in np.unique(codes[labelled]):            # a loop over classes; connectivity is scipy's
        regions, n = ndimage.label(labelled & (codes == code), structure=EIGHT_CONNECTED)
        if n == 0:
            continue
        counts = np.bincount(regions.ravel(), minlength=n + 1)
        for region in range(1, n + 1):
            if counts[region] >= min_pixels:
                out_codes.append(int(code))
                sizes.append(int(counts[region]))
                ids[regions == region] = len(out_codes)
    return Parcels(ids=ids, codes=np.array(out_codes, dtype=np.int64), sizes=np.array(sizes, dtype=np.int64),
                   min_pixels=min_pixels)


def buffer_mask(ids: np.ndarray, parcel_ids, buffer: int = 2) -> np.ndarray:
    """(H, W) bool: the pixels of the parcels ``parcel_ids`` and every pixel within ``buffer`` pixels of them
    (8-connected dilation, so diagonal neighbours count as 1 px away). Training pixels are drawn outside it."""
    if buffer < 0:
        raise ValueError(f"buffer_mask: buffer must be >= 0 pixels, got {buffer}")
    selected = np.isin(ids, np.asarray(list(parcel_ids), dtype=ids.dtype)) & (ids > 0)
    if buffer == 0 or not selected.any():
        return selected
    return ndimage.binary_dilation(selected, structure=EIGHT_CONNECTED, iterations=buffer)
