"""Spectral and intensity ops for multispectral batches ``(B, C, H, W)``: no RGB-only operation here."""

from __future__ import annotations

from typing import Literal

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from kornia.filters import gaussian_blur2d

from eossl.augment.base import SeededMixin, check_range, gate_view, gated_rows

__all__ = ["RandomBandDropout", "RandomSpectralShift", "RandomBrightnessContrastMS", "RandomGaussianNoiseMS",
           "RandomGaussianBlurMS"]


class RandomBandDropout(SeededMixin, IntensityAugmentationBase2D):
    """Drop bands per sample: each with probability ``p_band``, or exactly ``k`` of them; never every band.

    Dropped bands are filled with ``fill``: ``"zero"`` (0, the band mean in standardised space), ``"mean"`` (the
    sample's own spatial mean of that band) or ``"noise"`` (N(0, 1), standardised noise). Domain: standardised.
    """

    domain = "standardized"

    def __init__(self, p_band: float = 0.2, k: int | None = None, fill: Literal["zero", "mean", "noise"] = "zero",
                 p: float = 1.0, seed: int | None = None):
        super().__init__(p=p)
        if k is None and not 0.0 <= p_band < 1.0:
            raise ValueError(f"p_band must be in [0, 1) (dropping every band is never allowed), got {p_band}")
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if fill not in ("zero", "mean", "noise"):
            raise ValueError(f"fill must be 'zero', 'mean' or 'noise', got {fill!r}")
        self.p_band, self.k, self.fill = float(p_band), k, fill
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b, c = batch_shape[0], batch_shape[1]
        if self.k is not None:
            if self.k >= c:
                raise ValueError(f"cannot drop k={self.k} of {c} bands: at least one band must stay")
            ranks = torch.rand((b, c), generator=self.generator).argsort(dim=1).argsort(dim=1)
            drop = ranks < self.k
        else:
            drop = torch.rand((b, c), generator=self.generator) < self.p_band
            keep = torch.randint(0, c, (b,), generator=self.generator)
            everything = drop.all(dim=1)
            drop[everything, keep[everything]] = False  # never drop every band of a sample
        noise_seed = torch.randint(0, 2**62, (1,), generator=self.generator)
        return {"drop": drop, "noise_seed": noise_seed}

    def apply_transform(self, input, params, flags, transform=None):
        drop = (params["drop"] & params["gate"][:, None]).to(input.device).view(input.shape[0], input.shape[1], 1, 1)
        if self.fill == "zero":
            return input * ~drop
        elif self.fill == "mean":
            fill = input.mean(dim=(2, 3), keepdim=True)
        else:
            g = torch.Generator(device=input.device).manual_seed(int(params["noise_seed"]))
            fill = torch.randn(input.shape, generator=g, device=input.device, dtype=input.dtype)
        return torch.where(drop, fill, input)


class RandomSpectralShift(SeededMixin, IntensityAugmentationBase2D):
    """Per-band gain and offset (calibration, atmosphere) plus a smooth spectral tilt, in reflectance units.

    ``x' = x * gain_b * (1 + tilt * w_b) + offset_b`` with ``w_b`` the band's wavelength scaled to [-1, 1] across
    the bands (from the sensor catalog): neighbouring bands move together, and for a given sample the factor is
    monotone in wavelength. Domain: reflectance.
    """

    domain = "reflectance"

    def __init__(self, wavelengths_nm: list[float], gain: tuple[float, float] = (0.95, 1.05),
                 offset: tuple[float, float] = (-0.01, 0.01), tilt: tuple[float, float] = (-0.05, 0.05),
                 p: float = 0.8, seed: int | None = None):
        super().__init__(p=p)
        if len(wavelengths_nm) < 1:
            raise ValueError("RandomSpectralShift needs the wavelength of every band (from the sensor catalog)")
        self.gain = check_range("gain", gain, low=0.0)
        self.offset = check_range("offset", offset)
        self.tilt = check_range("tilt", tilt, low=-0.99)
        w = torch.tensor(wavelengths_nm, dtype=torch.float32)
        span = (w.max() - w.min()).clamp_min(1e-6)
        self.register_buffer("w_norm", 2 * (w - w.min()) / span - 1 if len(w) > 1 else torch.zeros(1),
                             persistent=False)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b, c = batch_shape[0], batch_shape[1]
        if c != len(self.w_norm):
            raise ValueError(f"RandomSpectralShift was built for {len(self.w_norm)} bands, got a batch with {c}")
        return {"gain": self.uniform(*self.gain, (b, c)), "offset": self.uniform(*self.offset, (b, c)),
                "tilt": self.uniform(*self.tilt, (b, 1))}

    def apply_transform(self, input, params, flags, transform=None):
        dev, dt = input.device, input.dtype
        gate = params["gate"].to(dev)[:, None]
        factor = params["gain"].to(dev, dt) * (1 + params["tilt"].to(dev, dt) * self.w_norm.to(dev, dt))
        factor = torch.where(gate, factor, 1.0)
        offset = torch.where(gate, params["offset"].to(dev, dt), 0.0)
        return torch.addcmul(offset[..., None, None], input, factor[..., None, None])


class RandomBrightnessContrastMS(SeededMixin, IntensityAugmentationBase2D):
    """Brightness (additive, the same for every band) and contrast (around each band's spatial mean).

    ``x' = (x - m_b) * contrast + m_b + brightness``; values are never clipped. Domain: standardised
    (``brightness`` is in standard deviations).
    """

    domain = "standardized"

    def __init__(self, brightness: tuple[float, float] = (-0.2, 0.2), contrast: tuple[float, float] = (0.8, 1.2),
                 p: float = 0.8, seed: int | None = None):
        super().__init__(p=p)
        self.brightness = check_range("brightness", brightness)
        self.contrast = check_range("contrast", contrast, low=0.0)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b = batch_shape[0]
        return {"brightness": self.uniform(*self.brightness, (b,)), "contrast": self.uniform(*self.contrast, (b,))}

    def apply_transform(self, input, params, flags, transform=None):
        shape, gate = (-1, 1, 1, 1), gate_view(params, input)
        m = input.mean(dim=(2, 3), keepdim=True)
        c = torch.where(gate, params["contrast"].to(input.device, input.dtype).view(shape), 1.0)
        b = torch.where(gate, params["brightness"].to(input.device, input.dtype).view(shape), 0.0)
        return torch.addcmul(m * (1 - c) + b, input, c.expand_as(m))  # (x - m) * c + m + b in one pass


class RandomGaussianNoiseMS(SeededMixin, IntensityAugmentationBase2D):
    """Additive Gaussian noise with a standard deviation drawn per sample and band from ``std``.

    Domain: standardised (``std`` in standard deviations of each band)."""

    domain = "standardized"

    def __init__(self, std: tuple[float, float] = (0.0, 0.1), p: float = 0.5, seed: int | None = None):
        super().__init__(p=p)
        self.std = check_range("std", std, low=0.0)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b, c = batch_shape[0], batch_shape[1]
        return {"sigma": self.uniform(*self.std, (b, c)),
                "noise_seed": torch.randint(0, 2**62, (1,), generator=self.generator)}

    def apply_transform(self, input, params, flags, transform=None):
        idx = gated_rows(params, input.device)
        out = input.clone()
        if len(idx):
            g = torch.Generator(device=input.device).manual_seed(int(params["noise_seed"]))
            noise = torch.randn((len(idx), *input.shape[1:]), generator=g, device=input.device, dtype=input.dtype)
            sigma = params["sigma"].to(input.device, input.dtype)[idx]
            out.index_add_(0, idx, noise.mul_(sigma[..., None, None]))
        return out


class RandomGaussianBlurMS(SeededMixin, IntensityAugmentationBase2D):
    """Gaussian blur of every band with a per-sample sigma (pixels), reflect borders. Domain: any."""

    domain = "any"

    def __init__(self, kernel_size: int = 7, sigma: tuple[float, float] = (0.1, 1.5), p: float = 0.5,
                 seed: int | None = None):
        super().__init__(p=p)
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd number >= 3, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.sigma = check_range("sigma", sigma, low=1e-3)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        s = self.uniform(*self.sigma, (batch_shape[0], 1))
        return {"sigma": s.expand(-1, 2).contiguous()}

    def apply_transform(self, input, params, flags, transform=None):
        idx = gated_rows(params, input.device)
        out = input.clone()
        if len(idx):
            sigma = params["sigma"].to(input.device, input.dtype)[idx]
            out[idx] = gaussian_blur2d(input[idx], self.kernel_size, sigma, border_type="reflect")
        return out
