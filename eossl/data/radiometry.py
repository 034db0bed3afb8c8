"""Are reader-produced chips in physical units? A check run before pretraining, evaluation and prediction.

The reader returns ``DN * scale + offset`` of the sensor's band: reflectance for optical bands (about 0..1, a
little above 1 for bright clouds and snow), kelvin for thermal bands. A wrong scale gives values that no model
normalisation check notices when they are far too *small* (float reflectance scaled again by 1e-4 gives 1e-5,
which lies within a few standard deviations of every band's mean). The physical range catches both directions:

* nearly every reflectance band with a median below 0.002: scaled twice (a DN scale applied to reflectance);
* nearly every reflectance band with a median above 2: raw DN (the sensor's scale was not applied);
* any reflectance band with a median above 1.5, or below -0.02: a wrong scale, a band read as another (a thermal
  or QA band taken for a reflectance band), or an offset the data does not have (sentinel2-l2a-pb04 on older
  products);
* a kelvin band with a median outside 150..400 K.

A single reflectance band with a median below 0.0005 is only logged: open water is that dark in the SWIR.
"""

from __future__ import annotations

import logging

import numpy as np

from eossl.catalog.sensors import Sensor, load_sensor

log = logging.getLogger(__name__)

__all__ = ["band_statistics", "check_radiometry", "check_chips", "spread"]

TWICE_SCALED_MEDIAN = 0.002    # below this in (nearly) every reflectance band: a DN scale applied to reflectance
RAW_DN_MEDIAN = 2.0            # above this in (nearly) every reflectance band: DN, the sensor scale not applied
REFLECTANCE_MEDIAN = (-0.02, 1.5)  # plausible median of one reflectance band
DARK_MEDIAN = 0.0005           # a single band this dark is possible (water in the SWIR): logged only
KELVIN_MEDIAN = (150.0, 400.0)
NEARLY_ALL = 0.75              # "nearly every band": this fraction of the reflectance bands
MAX_CHIPS = 256                # chips sampled for the statistics (evenly spaced), to bound time and memory


def band_statistics(images: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (median (C,), 99th percentile (C,)) of the valid, finite pixels; NaN for a band without any.

    ``images``: (C, H, W) or (N, C, H, W) (any leading dims); ``valid``: the matching (H, W) / (N, H, W) or None.
    At most ``MAX_CHIPS`` evenly spaced chips are used."""
    images = np.asarray(images)
    c, h, w = images.shape[-3:]
    x = images.reshape(-1, c, h, w)
    v = None if valid is None else np.asarray(valid, dtype=bool).reshape(-1, h, w)
    if len(x) > MAX_CHIPS:
        pick = np.unique(np.linspace(0, len(x) - 1, MAX_CHIPS).round().astype(int))
        x = x[pick]
        v = None if v is None else v[pick]
    flat = np.moveaxis(x, 1, 0).reshape(c, -1).astype(np.float64)
    keep = np.ones(flat.shape[1], dtype=bool) if v is None else v.reshape(-1)
    median, p99 = np.full(c, np.nan), np.full(c, np.nan)
    for b in range(c):
        vals = flat[b, keep]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            median[b], p99[b] = np.percentile(vals, [50, 99])
    return median, p99


def check_radiometry(images: np.ndarray, valid: np.ndarray | None, bands: list[str], sensor: str | Sensor,
                     what: str) -> dict[str, tuple[float, float]]:
    """Check that chips are in the units of ``sensor``'s bands; returns ``{band: (median, p99)}``.

    ``images`` (..., C, H, W) with ``valid`` (..., H, W) as :func:`band_statistics`; ``bands``: the C band names
    (names the sensor does not know are not checked); ``what`` names the chips in messages. Raises ValueError
    naming the bands, the likely cause and what to do."""
    sensor = load_sensor(sensor)
    median, p99 = band_statistics(images, valid)
    units = [sensor.band(b).unit if sensor.match(b) else None for b in bands]
    stats = {b: (float(m), float(p)) for b, m, p in zip(bands, median, p99)}
    refl = [(b, m) for b, m, u in zip(bands, median, units) if u == "reflectance" and np.isfinite(m)]
    problems = _reflectance_problems(refl, sensor) if refl else []
    hot = [f"{b} (median {m:.4g})" for b, m, u in zip(bands, median, units)
           if u == "kelvin" and np.isfinite(m) and not KELVIN_MEDIAN[0] <= m <= KELVIN_MEDIAN[1]]
    if hot:
        problems.append(f"thermal band(s) {', '.join(hot)} are not brightness temperatures in kelvin "
                        f"({KELVIN_MEDIAN[0]:g}..{KELVIN_MEDIAN[1]:g} K): check the band order of the files "
                        f"(--band-order of `eossl catalog build`) and the band's scale/offset in the sensor YAML")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
    dark = [f"{b} ({m:.2g})" for b, m in refl if m < DARK_MEDIAN]
    if dark:
        log.warning("%s: reflectance band(s) with a median below %g: %s (plausible over water; otherwise check "
                    "their scale)", what, DARK_MEDIAN, ", ".join(dark))
    return stats


def _reflectance_problems(refl: list[tuple[str, float]], sensor: Sensor) -> list[str]:
    names = ", ".join(f"{b} ({m:.3g})" for b, m in refl)
    scale = {sensor.band(b).scale for b, _ in refl}
    scale_txt = f"scale {scale.pop():g}" if len(scale) == 1 else "scale"
    if np.mean([abs(m) < TWICE_SCALED_MEDIAN for _, m in refl]) >= NEARLY_ALL:
        return [f"reflectance medians {names} are about 1e4 times too small: the values look scaled twice (the "
                f"{sensor.name} DN {scale_txt} applied to data that already holds reflectance, e.g. a float 0-1 "
                f"file). Rebuild the index with `eossl catalog build` and a --sensor whose bands have scale: 1 "
                f"(a sensor YAML), so float reflectance is read as is"]
    if np.mean([m > RAW_DN_MEDIAN for _, m in refl]) >= NEARLY_ALL:
        return [f"reflectance medians {names} look like raw DN: the sensor's {scale_txt} was not applied. Check that "
                f"the data is read through the index (`eossl catalog build --sensor {sensor.name}`) and that the "
                f"sensor's scale matches the files"]
    lo, hi = REFLECTANCE_MEDIAN
    out = []
    high = [f"{b} ({m:.3g})" for b, m in refl if m > hi]
    if high:
        out.append(f"band(s) {', '.join(high)} have medians above {hi:g}, not a reflectance: a band read as another "
                   f"(a thermal or QA band in its place: check --band-order of `eossl catalog build` and the "
                   f"band descriptions) or a wrong scale for it in the sensor YAML")
    low = [f"{b} ({m:.3g})" for b, m in refl if m < lo]
    if low:
        out.append(f"band(s) {', '.join(low)} have negative medians: an offset the data does not have was applied "
                   f"(e.g. --sensor sentinel2-l2a-pb04 for products of processing baseline < 04.00: use "
                   f"sentinel2-l2a), or the band order is wrong")
    return out


def check_chips(chips: list, sensor: str | Sensor, what: str) -> dict[str, tuple[float, float]]:
    """:func:`check_radiometry` over reader :class:`~eossl.data.reader.Chip` objects of one size and band list."""
    if not chips:
        return {}
    return check_radiometry(np.stack([c.image for c in chips]), np.stack([c.mask for c in chips]),
                            list(chips[0].bands), sensor, what)


def spread(items: list, n: int) -> list:
    """Up to ``n`` items evenly spaced through ``items`` (first and last included)."""
    if len(items) <= n:
        return list(items)
    return [items[k] for k in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]
