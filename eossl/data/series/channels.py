"""The wavelength key and normalisation of every channel of a stack, Sentinel-1 VV/VH included.

The series encoder embeds each band through its centre wavelength (:class:`~eossl.models.temporal.
PixelSeriesEncoder`). Radar backscatter has no optical wavelength, so VV and VH get fixed **pseudo-wavelengths**:
keys for that embedding, not physics. VV takes the Sentinel-1 C-band wavelength (5.55 cm = 5.55e7 nm), VH twice
that (the two polarisations share one physical wavelength but must not share a key). Both lie more than three
orders of magnitude beyond the longest band of any sensor in the catalog (thermal infrared, about 12 µm), so they
can never coincide with an optical band's key, and optical bands keep their own wavelengths (their embedding is
unchanged). Exported weights record them in ``wavelengths_nm`` like any band, so a loader re-targets by them.

Sentinel-1 values in a stack are backscatter in dB (:func:`eossl.data.series.stack.open_stack`); the sensor
catalog holds no statistics for them, so their mean / std come from the valid values of the corpus itself.
"""

from __future__ import annotations

import numpy as np

from eossl.data.normalization import Normalization
from eossl.data.series.stack_layers import S1_BANDS

__all__ = ["PSEUDO_WAVELENGTHS_NM", "channel_wavelengths", "channel_normalization"]

PSEUDO_WAVELENGTHS_NM = {"VV": 5.55e7, "VH": 1.11e8}
assert set(PSEUDO_WAVELENGTHS_NM) == set(S1_BANDS)


def channel_wavelengths(sensor, bands: list[str]) -> list[float]:
    """The embedding key (nm) of each of ``bands``: the ``sensor``'s centre wavelength (a
    :class:`~eossl.catalog.sensors.Sensor`), or the pseudo-wavelength of VV/VH."""
    return [PSEUDO_WAVELENGTHS_NM[b] if b in PSEUDO_WAVELENGTHS_NM else sensor.band(b).wavelength_nm for b in bands]


def channel_normalization(sensor, bands: list[str], values: np.ndarray, valid: np.ndarray,
                          stored: Normalization | None = None) -> Normalization:
    """Statistics for ``bands``: from ``stored`` (e.g. the ``init`` weights') for the bands it has, else the sensor
    catalog's for optical bands and the mean / std of the valid ``values`` (N, T, C) for VV/VH."""
    pairs = []
    for i, b in enumerate(bands):
        if stored is not None and b in stored.bands:
            j = stored.bands.index(b)
            pairs.append((float(stored.mean[j]), float(stored.std[j])))
        elif b in PSEUDO_WAVELENGTHS_NM:
            seen = values[..., i][valid[..., i]]
            if seen.size < 2 or not np.std(seen) > 0:
                raise ValueError(f"{b}: fewer than two distinct valid values in the corpus, so no statistics to "
                                 f"normalise it with; drop it (corpus.include_s1: false)")
            pairs.append((float(np.mean(seen, dtype=np.float64)), float(np.std(seen, dtype=np.float64))))
        else:
            mean, std = sensor.norm_stats([b])
            pairs.append((float(mean[0]), float(std[0])))
    return Normalization(tuple(bands), [m for m, _ in pairs], [s for _, s in pairs])
