"""How a file's stored values become physical values: the sensor's DN scale, or none when already physical.

A sensor declares its DN type and ``value = DN * scale + offset`` per band. Files met in the wild do not always hold
those DN: float32 reflectance exported from a DN product (values 0..1, scaling them again gives 1e-5), DN written
as a wider integer type, 8-bit renderings. :func:`choose_scaling` compares each file's dtype and a small sample of its
values with the declaration and returns the (scale, offset) to store per band, or raises naming the file, the band,
what was found and what to do. Nothing is guessed: a float file is taken as physical values only when its values
are plausible as such and implausible as DN, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from eossl.catalog.sensors import Band
from eossl.gdal_env import open_raster

__all__ = ["BandSample", "Scaling", "sample_file", "choose_scaling"]

# Physical ranges, per unit, on (1st, 50th, 99th) percentiles of a sample.
# SANE: anything outside is impossible whatever the file (a wrong scale, a fill value counted as data).
# LIKELY: used to tell physical values from DN in a float file; the two readings of one sample never both fit
# for the built-in scales (reflectance: p99 in [0.002, 2] as values excludes it as DN x 1e-4 or x 2.75e-5 - 0.2).
_SANE = {"reflectance": ("p1", -0.5, "p99", 2.5), "kelvin": ("p50", 100.0, "p50", 400.0),
         "radiance": ("p1", -10.0, "p99", 1000.0)}
_LIKELY = {"reflectance": ("p1", -0.5, "p99", 2.0, 0.002), "kelvin": ("p50", 180.0, "p50", 350.0, None),
           "radiance": ("p50", 0.5, "p50", 1000.0, None)}
_SAMPLE_SIDE = 64          # pixels per side of each sampled window / of the decimated read
_SMALL = 256 * 256         # files up to this many pixels are read whole


@dataclass(frozen=True)
class BandSample:
    """Valid stored values (1-D, float64) sampled from one band of one file."""

    band: Band          # the sensor's band (declared dtype, scale, offset, unit)
    path: str
    dtype: str          # the file's dtype for that band
    values: np.ndarray


@dataclass(frozen=True)
class Scaling:
    """Per band (scale, offset) to store in the index when they differ from the sensor's, and one line for the log."""

    overrides: dict[str, tuple[float, float]]
    note: str
    as_declared: bool   # every band is the sensor's declared DN type, read with the sensor's scale


def sample_file(path: str, bands: dict[str, int], nodata: dict[str, float | None]) -> dict[str, tuple[str, np.ndarray]]:
    """band -> (file dtype, valid sampled values) for the 1-based band indexes ``bands`` of ``path``.

    Small files are read whole; others through their overviews when present, else 5 windows of 64x64 pixels
    (centre and the quarter points): a few blocks, never the whole file.
    """
    out = {}
    with open_raster(path) as ds:
        big = ds.width * ds.height > _SMALL
        for band, idx in bands.items():
            if not big:
                parts = [ds.read(idx, masked=True)]
            elif ds.overviews(idx):
                shape = (min(ds.height, 2 * _SAMPLE_SIDE), min(ds.width, 2 * _SAMPLE_SIDE))
                parts = [ds.read(idx, out_shape=shape, masked=True)]
            else:
                parts = [ds.read(idx, window=w, masked=True) for w in _windows(ds.width, ds.height)]
            values = np.concatenate([np.ma.compressed(p).astype(np.float64) for p in parts])
            values = values[np.isfinite(values)]
            if nodata.get(band) is not None and np.isfinite(nodata[band]):
                values = values[values != nodata[band]]
            out[band] = (ds.dtypes[idx - 1], values)
    return out


def _windows(width: int, height: int) -> list[Window]:
    w, h = min(width, _SAMPLE_SIDE), min(height, _SAMPLE_SIDE)
    centres = [(0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]
    return [Window(int(min(max(fx * width - w / 2, 0), width - w)), int(min(max(fy * height - h / 2, 0), height - h)),
                   w, h) for fx, fy in centres]


def choose_scaling(samples: list[BandSample], sensor_name: str) -> Scaling:
    """The scaling of one acquisition's bands (see module doc); ValueError when the values fit no reading."""
    notes, declared = [], True
    for s in samples:
        note = _check_dtype(s, sensor_name)
        if note:
            notes.append(note)
            declared = False
    overrides: dict[str, tuple[float, float]] = {}
    floats = [s for s in samples if _is_float(s.dtype) and not _is_float(s.band.dtype)]
    refl = [s for s in floats if s.band.unit == "reflectance"]
    # reflectance bands of one acquisition share one convention: decide on them together (a dark cirrus band
    # alone would look like reflectance whatever it holds; a band without valid samples follows the others)
    for group in ([refl] if refl else []) + [[s] for s in floats if s.band.unit != "reflectance"]:
        declared = False
        seen = [s for s in group if s.values.size]
        if not seen:
            notes.append(f"{', '.join(s.band.name for s in group)}: no valid value sampled, sensor scale kept")
        elif _decide(seen, sensor_name):
            overrides.update({s.band.name: (1.0, 0.0) for s in group})
            notes.append(f"{seen[0].dtype} {_range(seen, True)} already {seen[0].band.unit} "
                         f"({', '.join(s.band.name for s in group)}): scale 1, offset 0")
        else:
            notes.append(f"{seen[0].dtype} {_range(seen, True)} holds DN "
                         f"({', '.join(s.band.name for s in group)}): sensor scale kept")
    for s in samples:
        _check_sane(s, *overrides.get(s.band.name, (s.band.scale, s.band.offset)), sensor_name=sensor_name)
    if declared:
        dtypes = sorted({s.dtype for s in samples})
        notes.append(f"{'/'.join(dtypes)} DN as declared by {sensor_name}: sensor scale and offset")
    return Scaling(overrides, "; ".join(notes), declared)


def _is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


def _check_dtype(s: BandSample, sensor_name: str) -> str | None:
    """None if ``s`` is stored as declared; a note if it is an acceptable wider integer; ValueError otherwise."""
    found, want = np.dtype(s.dtype), np.dtype(s.band.dtype)
    if found == want or found.kind == "f":
        return None
    if want.kind == "f":
        raise ValueError(
            f"{s.path}: band {s.band.name} is stored as {found.name} integers, but {sensor_name} declares "
            f"{want.name} values; pass a sensor whose dtype and scale describe these integers with --sensor "
            f"(data_catalog/README.md, keys `dtype`, `scale`, `offset`)")
    info = np.iinfo(want)
    lo, hi = (float(s.values.min()), float(s.values.max())) if s.values.size else (0.0, 0.0)
    if found.itemsize >= want.itemsize and info.min <= lo and hi <= info.max:
        return f"{s.band.name} stored as {found.name}, values {lo:g}..{hi:g} within {want.name}: read as DN"
    hint = (f"if it holds {sensor_name} DN in another type, describe it with a sensor YAML that has "
            f"`extends: {sensor_name}` and `dtype: {found.name}` and pass its path with --sensor "
            f"(data_catalog/README.md)" if found.name in ("uint8", "uint16", "int16", "uint32", "int32") else
            f"convert it (gdal_translate -ot {want.name})")
    raise ValueError(
        f"{s.path}: band {s.band.name} is stored as {found.name} (values {lo:g}..{hi:g}), but {sensor_name} "
        f"declares {want.name} DN; {hint}; if it is another product (an 8-bit rendering such as TCI, a mask), "
        f"leave it out with --exclude")


def _stats(group: list[BandSample], physical: bool) -> dict[str, float]:
    """Pooled percentiles of a group read as physical values (scale 1) or as DN (the band's scale/offset)."""
    per = []
    for s in group:
        v = s.values if physical else s.values * s.band.scale + s.band.offset
        per.append(np.percentile(v, [1, 50, 99]))
    arr = np.array(per)
    return {"p1": float(arr[:, 0].min()), "p50": float(np.median(arr[:, 1])), "p99": float(arr[:, 2].max())}


def _fits(stats: dict[str, float], rule: tuple) -> bool:
    lo_key, lo, hi_key, hi = rule[:4]
    ok = stats[lo_key] >= lo and stats[hi_key] <= hi
    return ok and (len(rule) < 5 or rule[4] is None or stats["p99"] >= rule[4])


def _range(group: list[BandSample], physical: bool) -> str:
    st = _stats(group, physical)
    return f"p1..p99 {st['p1']:.4g}..{st['p99']:.4g}"


def _decide(group: list[BandSample], sensor_name: str) -> bool:
    """True: the float values of ``group`` are already physical; False: they are DN. ValueError if unclear."""
    unit = group[0].band.unit
    as_values, as_dn = (_fits(_stats(group, phys), _LIKELY[unit]) for phys in (True, False))
    if as_values != as_dn:
        return as_values
    s = group[0]
    what = "could be either" if as_values else "are neither"
    raise ValueError(
        f"{s.path}: band(s) {', '.join(g.band.name for g in group)}: {s.dtype} values ({_range(group, True)}) "
        f"{what} {unit} nor {sensor_name} DN (x {s.band.scale:g} + {s.band.offset:g} gives {_range(group, False)}); "
        f"check that --sensor {sensor_name} is the file's sensor and that fill values are nodata (--nodata); for "
        f"values already in {unit}, pass a sensor YAML with `extends: {sensor_name}`, `dtype: {s.dtype}`, "
        f"`scale: 1`, `offset: 0` with --sensor (data_catalog/README.md)")


def _check_sane(s: BandSample, scale: float, offset: float, sensor_name: str) -> None:
    if not s.values.size:
        return
    rule = _SANE[s.band.unit]
    st = _stats([BandSample(s.band, s.path, s.dtype, s.values * scale + offset)], physical=True)
    if _fits(st, rule):
        return
    raise ValueError(
        f"{s.path}: band {s.band.name}: {s.dtype} values p1..p99 {np.percentile(s.values, 1):g}.."
        f"{np.percentile(s.values, 99):g} give {s.band.unit} {st['p1']:.4g}..{st['p99']:.4g} (median "
        f"{st['p50']:.4g}) with scale {scale:g} and offset {offset:g}, impossible for {s.band.unit} "
        f"(expected {rule[0]} >= {rule[1]:g}, {rule[2]} <= {rule[3]:g}); check that --sensor {sensor_name} is the "
        f"file's sensor, and declare a fill value counted as data with --nodata")
