"""A small labelled WorldCereal-style stack with parcels, written by tests of the stack task: 24 x 24 px at 10 m
(20 m bands 12 x 12), 12 dates, 5 x 5 px parcels on a grid with 1 px unlabelled gaps: classes 11, 12 with three
parcels each, 13 with two, 14 with one (single-parcel) and 15 a 2 x 2 fragment (never a parcel). The 10 m bands
follow each class's seasonal curve (its NDVI peaks on its own date) plus noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stack_data import B10, B20, write_labels_nc, write_nc, write_s1_nc

SIZE = 24
SLOTS = [(r, c) for r in (0, 6, 12, 18) for c in (0, 6, 12, 18)]     # top-left corners of 5 x 5 parcels
LAYOUT = {11: [0, 1, 4], 12: [2, 3, 6], 13: [8, 10], 14: [12]}       # class code -> slots
FRAGMENT = (15, 15)                                                   # class 15: 2 x 2 px in slot 15
LEGEND = "code,name\n11,early crop\n12,late crop\n13,grass\n14,beet\n15,sliver\n"


def label_codes() -> np.ndarray:
    ct = np.zeros((SIZE, SIZE), np.int64)
    for code, slots in LAYOUT.items():
        for s in slots:
            r, c = SLOTS[s]
            ct[r:r + 5, c:c + 5] = code
    r, c = SLOTS[FRAGMENT[1]]
    ct[r:r + 2, c:c + 2] = FRAGMENT[0]
    return ct


def write_parcel_stack(folder: Path, n_dates: int = 12, seed: int = 0, with_s1: bool = False) -> Path:
    """The stack (10 m, 20 m files with SCL; with ``with_s1`` a Sentinel-1 VV/VH file two days later), its label
    file (variable CT) and a legend CSV in ``folder``."""
    rng = np.random.default_rng(seed)
    ct = label_codes()
    dates = np.datetime64("2018-03-01T10:50:00", "ns") + (np.arange(n_dates) * 15).astype("timedelta64[D]")
    peaks = {0: 6.0, 11: 2.0, 12: 9.0, 13: 5.0, 14: 7.0, 15: 4.0}
    t = np.arange(n_dates)[:, None, None]
    green = np.zeros((n_dates, SIZE, SIZE))
    for code, peak in peaks.items():
        green = np.where(ct[None] == code, np.exp(-0.5 * ((t - peak) / 1.5) ** 2), green)
    base = np.array([500, 800, 900, 2500])[None, :, None, None]
    swing = np.array([-200, -100, -500, 3000])[None, :, None, None]
    r10 = base + swing * green[:, None] + rng.normal(0, 120, (n_dates, 4, SIZE, SIZE))
    r20 = rng.integers(1000, 3000, size=(n_dates, 6, SIZE // 2, SIZE // 2))
    scl = np.full((n_dates, SIZE // 2, SIZE // 2), 4, dtype="uint8")
    scl[1, :3, :3] = 9                                                  # a cloud
    folder.mkdir(parents=True, exist_ok=True)
    write_nc(folder / "S2_L2A_10m_p.nc", np.clip(r10, 1, 9999).astype("uint16"), B10, 10, dates)
    write_nc(folder / "S2_L2A_20m_p.nc", r20.astype("uint16"), B20, 20, dates, scl=scl)
    if with_s1:
        write_s1_nc(folder / "S1_GRD_20m_p.nc", dates + np.timedelta64(2, "D"), SIZE // 2, seed=seed + 1)
    write_labels_nc(folder / "OUTPUT_labels_10m.nc", ct)
    (folder / "legend.csv").write_text(LEGEND)
    return folder
