"""Merging the layers and masks of a stack onto one grid and one time axis (see :func:`assemble_arrays`)."""

from __future__ import annotations

import warnings

import numpy as np

from eossl.data.series.stack_layers import (
    Layer,
    MaskLayer,
    StackGrid,
    check_same_grid,
    regrid_mask,
    regrid_values,
    target_grid,
)

__all__ = ["StackWarning", "assemble_arrays"]


class StackWarning(UserWarning):
    """Something in a stack's input was repaired or left out: unsorted or duplicated dates, all-cloud dates, a
    band missing on some dates."""


def _dates(times: np.ndarray, limit: int = 8) -> str:
    days = [str(d) for d in np.asarray(times).astype("datetime64[D]")]
    return ", ".join(days[:limit]) + (f" and {len(days) - limit} more" if len(days) > limit else "")


def _warn_unsorted(layers: list[Layer]) -> None:
    for layer in layers:
        if len(layer.times) > 1 and (np.diff(layer.times) < np.timedelta64(0)).any():
            warnings.warn(f"{layer.source}: dates are not in time order; sorted", StackWarning, stacklevel=4)


def _mask_lookup(masks: list[MaskLayer], grid: StackGrid) -> tuple[dict, dict]:
    """Exact timestamp -> usable (H, W), and day -> [usable...] (the fallback when timestamps differ by seconds)."""
    exact: dict = {}
    by_day: dict = {}
    for m in masks:
        usable = regrid_mask(m.usable, abs(m.transform.a), grid, m.source)
        for t, ts in enumerate(m.times):
            exact[ts] = exact[ts] & usable[t] if ts in exact else usable[t]
            by_day.setdefault(ts.astype("datetime64[D]"), []).append(exact[ts])
    return exact, by_day


def _apply_masks(layer: Layer, valid: np.ndarray, exact: dict, by_day: dict) -> np.ndarray:
    """``valid`` (T, C, H, W) with the mask of each date applied (optical layers only)."""
    if layer.group != "optical" or not exact:
        return valid
    for t, ts in enumerate(layer.times):
        m = exact.get(ts)
        if m is None:
            same_day = by_day.get(ts.astype("datetime64[D]"), [])
            m = same_day[0] if len(same_day) == 1 else None
        if m is not None:
            valid[t] &= m[None]
    return valid


def _time_axis(layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """(days (D,) datetime64[D] sorted, times (D,) the earliest timestamp of each day)."""
    stamps = np.concatenate([layer.times for layer in layers])
    days = stamps.astype("datetime64[D]")
    order = np.argsort(stamps, kind="stable")
    udays, first = np.unique(days[order], return_index=True)
    return udays, stamps[order][first]


def _scatter(layers, regridded, bands, udays, shape):
    """Observations into (D, C, H, W): per day and band, the first valid observation (in time, then file, order)
    wins. Returns values, valid and the (D, C) number of observations per day and band."""
    values = np.zeros(shape, dtype=np.float32)
    valid = np.zeros(shape, dtype=bool)
    nobs = np.zeros(shape[:2], dtype=np.int32)
    events = sorted((ts, li, t) for li, layer in enumerate(layers) for t, ts in enumerate(layer.times))
    for ts, li, t in events:
        d = int(np.searchsorted(udays, ts.astype("datetime64[D]")))
        vals, ok = regridded[li]
        for j, band in enumerate(layers[li].bands):
            c = bands.index(band)
            take = ok[t, j] & ~valid[d, c]
            np.copyto(values[d, c], vals[t, j], where=take)
            valid[d, c] |= take
            nobs[d, c] += 1
    return values, valid, nobs


def _warn_inputs(layers, bands, udays, nobs, masks_exact) -> None:
    dup_days = udays[(nobs > 1).any(axis=1)]
    if len(dup_days):
        warnings.warn(f"{len(dup_days)} date(s) observed more than once ({_dates(dup_days)}); merged: the first "
                      f"valid observation of each pixel wins", StackWarning, stacklevel=4)
    for group in ("optical", "s1"):
        chans = [bands.index(b) for b in dict.fromkeys(b for lay in layers if lay.group == group for b in lay.bands)]
        if not chans:
            continue
        seen = (nobs[:, chans] > 0).any(axis=1)
        gaps: dict[tuple, list[str]] = {}               # bands missing on the same dates: one warning
        for c in chans:
            missing = seen & (nobs[:, c] == 0)
            if missing.any():
                gaps.setdefault(tuple(np.flatnonzero(missing)), []).append(bands[c])
        for where, names in gaps.items():
            warnings.warn(f"band{'s' if len(names) > 1 else ''} {', '.join(names)} missing on {len(where)} of "
                          f"{int(seen.sum())} dates ({_dates(udays[list(where)])}); invalid there", StackWarning,
                          stacklevel=4)
    cloudy = [ts for ts, usable in masks_exact.items() if not usable.any()]
    if cloudy:
        warnings.warn(f"{len(cloudy)} of {len(masks_exact)} dates have no usable pixel in their cloud mask (cloud, "
                      f"shadow, cirrus or no data: {_dates(sorted(cloudy))}); kept as invalid", StackWarning,
                      stacklevel=4)


def assemble_arrays(layers: list[Layer], masks: list[MaskLayer], bands: list[str], gsd: float | None):
    """Merge ``layers`` (bands in the order ``bands``) and their cloud ``masks`` onto one grid and one time axis.

    The grid is the finest layer's (or ``gsd``), over a common CRS and extent (ValueError naming both files and
    their bounds otherwise); coarser layers are repeated, finer ones averaged. Each date's mask applies to the
    optical layers of that date. Dates are merged per calendar day. Returns ``(values (T, C, H, W) float32,
    valid (T, C, H, W) bool, times (T,) datetime64[ns], observed (T, C) bool, grid)``.
    """
    for item in [*layers[1:], *masks]:
        check_same_grid(layers[0], item)
    grid = target_grid(layers, gsd)
    _warn_unsorted(layers)
    exact, by_day = _mask_lookup(masks, grid)
    regridded = []
    for layer in layers:
        vals, ok = regrid_values(layer.values, layer.valid, abs(layer.transform.a), grid, layer.source)
        regridded.append((vals, _apply_masks(layer, ok.copy(), exact, by_day)))
    udays, times = _time_axis(layers)
    values, valid, nobs = _scatter(layers, regridded, bands, udays, (len(udays), len(bands), grid.height, grid.width))
    _warn_inputs(layers, bands, udays, nobs, exact)
    return values, valid, times, nobs > 0, grid
