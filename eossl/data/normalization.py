"""Per-band standardisation, the one place inputs are normalised: ``(x - mean) / std``, invalid pixels 0.

>>> norm = Normalization.of_sensor("sentinel2-l1c", ["B02", "B03", "B04", "B08"])
>>> x = norm.apply(images, valid)              # (..., C, H, W) reflectance -> float32 tensor
>>> norm.for_bands(["B04", "B08"]).mean        # the statistics of a subset, in that order

One rule for invalid pixels everywhere: where ``valid`` is False the standardised value is 0, the band mean, so
nodata looks like an average pixel to a network instead of a large negative value. Statistics are in the
reader's reflectance units (DN x scale + offset); they come from the sensor catalog (``Sensor.norm_stats``) or
from exported weights (``weights.json``: ``normalization``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["Normalization"]


@dataclass(frozen=True, eq=False)
class Normalization:
    """``bands`` (C names, input order) with their ``mean`` and ``std`` ((C,) float32, std > 0)."""

    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        bands = tuple(self.bands)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1)
        if mean.size != len(bands) or std.size != len(bands):
            raise ValueError(f"normalisation: {len(bands)} bands ({', '.join(bands)}) but {mean.size} means and "
                             f"{std.size} standard deviations; give one of each per band")
        bad = [b for b, s in zip(bands, std) if not s > 0]
        if bad:
            raise ValueError(f"normalisation: the standard deviation of {', '.join(bad)} is not > 0")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def of_sensor(cls, sensor, bands: list[str]) -> Normalization:
        """The sensor catalog's statistics for ``bands`` (a :class:`~eossl.catalog.sensors.Sensor` or its name)."""
        from eossl.catalog.sensors import load_sensor

        s = load_sensor(sensor) if isinstance(sensor, str) else sensor
        mean, std = s.norm_stats(list(bands))
        return cls(tuple(bands), mean, std)

    @classmethod
    def of_weights(cls, info) -> Normalization:
        """The statistics stored with exported weights (a :class:`~eossl.models.weights.WeightsInfo` or a
        classifier's info: ``bands`` and ``normalization`` {"mean", "std"})."""
        return cls(tuple(info.bands), info.normalization["mean"], info.normalization["std"])

    def for_bands(self, bands: list[str], source: dict[str, str] | None = None) -> Normalization:
        """The statistics of ``bands``, in that order. ``source`` maps a band to the band whose statistics it
        takes (a stem adapted by wavelength: the band whose kernel it received); an unknown band is an error."""
        source = source or {}
        missing = [b for b in bands if source.get(b, b) not in self.bands]
        if missing:
            raise ValueError(f"no normalisation statistics for {', '.join(missing)}; these are known: "
                             f"{', '.join(self.bands)}")
        index = [self.bands.index(source.get(b, b)) for b in bands]
        return Normalization(tuple(bands), self.mean[index], self.std[index])

    def to_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``, the ``normalization`` record of weights.json and classifier.json."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def apply_series(self, x, valid=None) -> torch.Tensor:
        """(..., T, C) time series, bands last (numpy or torch) -> float32 tensor ``(x - mean) / std``, 0 where
        ``valid`` ((..., T, C) bool, or None) is False."""
        if x.shape[-1] != len(self.bands):
            raise ValueError(f"the series have {x.shape[-1]} bands but the normalisation {len(self.bands)} "
                             f"({', '.join(self.bands)}); give one mean and std per band")
        out = self.apply(torch.as_tensor(x).unsqueeze(-1).unsqueeze(-1))[..., 0, 0]
        if valid is not None:
            out = out.masked_fill(~torch.as_tensor(valid, dtype=torch.bool, device=out.device), 0.0)
        return out

    def apply(self, x, valid=None) -> torch.Tensor:
        """(..., C, H, W) reflectance (numpy or torch) -> float32 tensor ``(x - mean) / std``, 0 where ``valid``
        ((..., H, W) bool, or None: every pixel) is False.

        A numpy input is standardised in numpy and returned as a CPU tensor sharing its memory: small operations on
        torch's intra-op threads are slow on busy cores. A tensor stays on its device."""
        if x.shape[-3] != len(self.bands):
            raise ValueError(f"the data has {x.shape[-3]} bands but the normalisation {len(self.bands)} "
                             f"({', '.join(self.bands)}); give one mean and std per band")
        mean_b, std_b = self.mean.reshape(-1, 1, 1), self.std.reshape(-1, 1, 1)
        # one new array, then in place: a class-map tile is tens of MB
        if isinstance(x, torch.Tensor):
            mean_t, std_t = (torch.from_numpy(v).to(x.device) for v in (mean_b, std_b))
            out = (x.to(torch.float32) - mean_t) / std_t
            if valid is not None:
                out.masked_fill_(~torch.as_tensor(valid, dtype=torch.bool, device=x.device).unsqueeze(-3), 0.0)
            return out
        out = np.subtract(np.asarray(x, np.float32), mean_b, dtype=np.float32)
        out /= std_b
        if valid is not None:
            np.copyto(out, np.float32(0), where=~np.expand_dims(np.asarray(valid, bool), -3))
        return torch.from_numpy(out)

    def check(self, images, valid, what: str, warn_at: float = 3.0, fail_at: float = 50.0) -> np.ndarray:
        """Compare the data's per-band mean with these statistics; returns |z| per band.

        ``images``: (..., C, H, W) with ``valid`` (..., H, W) or None. A band whose mean lies more than
        ``warn_at`` standard deviations away is logged; beyond ``fail_at`` the values are in other units (DN
        instead of reflectance, a wrong scale) and a ValueError names the bands."""
        c = images.shape[-3]
        x = np.moveaxis(np.asarray(images), -3, 0).reshape(c, -1)
        if valid is not None:
            x = x[:, np.asarray(valid).reshape(-1)]
        if x.shape[1] == 0:
            raise ValueError(f"{what}: no valid pixel to check the normalisation on")
        data_mean = x.mean(axis=1, dtype=np.float64)
        z = np.abs(data_mean - self.mean.astype(np.float64)) / self.std.astype(np.float64)
        far = [f"{b} (mean {m:.4g}, expected {mu:.4g} ± {sd:.3g})"
               for b, m, mu, sd, zz in zip(self.bands, data_mean, self.mean, self.std, z) if zz > warn_at]
        if far and z.max() > fail_at:
            raise ValueError(f"{what}: the data's values are far outside the normalisation the model expects: "
                             f"{', '.join(far)}. Are they in the reader's units (reflectance = DN x scale + offset)? "
                             f"Check the sensor's scale/offset or the file's band order")
        if far:
            log.warning("%s: band means more than %g std from the model's normalisation: %s", what, warn_at,
                        ", ".join(far))
        return z

