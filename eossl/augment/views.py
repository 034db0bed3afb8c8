"""SSL view generation: a typed ``ViewSpec`` (with per-method presets) -> a batched, seeded view pipeline.

Order of operations for each view, on the device after transfer:

1. the source chip: with seasonal pairs (``image2`` in the batch) view 1 comes from the first date and view 2
   from the second; otherwise every view comes from the same chip;
2. ops whose domain is reflectance (``spectral_shift``), on reflectance values;
3. per-band normalisation ``(x - mean) / std`` with the sensor's statistics; invalid pixels become 0;
4. the other ops in the order the spec lists them (standardised-domain and geometric ops), through
   ``kornia.augmentation.AugmentationSequential`` with the valid mask as a ``mask`` key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

import kornia.augmentation as K
import torch
from torch import nn

from eossl.augment import spatial, spectral
from eossl.augment.spec import METHOD_PRESETS, PRESETS, OpSpec
from eossl.config import ConfigError
from eossl.data.normalization import Normalization
from eossl.registry import Registry

__all__ = ["OpSpec", "ViewSpec", "ViewGenerator", "OPS", "PRESETS", "METHOD_PRESETS", "preset"]

OPS: Registry[type] = Registry("augmentation op")
for _name, _cls in (("band_dropout", spectral.RandomBandDropout), ("spectral_shift", spectral.RandomSpectralShift),
                    ("brightness_contrast", spectral.RandomBrightnessContrastMS),
                    ("noise", spectral.RandomGaussianNoiseMS), ("blur", spectral.RandomGaussianBlurMS),
                    ("rot90_flip", spatial.RandomRot90Flip), ("rotation", spatial.RandomRotationReflect),
                    ("resized_crop", spatial.RandomResizedCropMS)):
    OPS.register(_name)(_cls)


@dataclass
class ViewSpec:
    """How views are made. ``crop_size`` None keeps the chip size. Multi-crop (DINO, SwAV): after the ``n_views``
    global views come ``local_views`` small ones, made by the same ops with the ``resized_crop`` cropping
    ``local_crop_scale`` of the chip's area to ``local_crop_size`` px."""

    ops: list[OpSpec] = field(default_factory=list)
    n_views: int = 2
    seasonal_pairs: Literal["use", "ignore"] = "use"
    crop_size: int | None = None
    local_views: int = 0
    local_crop_size: int = 16
    local_crop_scale: tuple[float, float] = (0.05, 0.4)

    def __post_init__(self):  # fail at load time: unknown op names and parameters
        if self.n_views < 1:
            raise ConfigError(f"views.n_views must be >= 1, got {self.n_views}")
        if self.local_views < 0 or self.local_crop_size < 4:
            raise ConfigError(f"views.local_views must be >= 0 and views.local_crop_size >= 4, got "
                              f"{self.local_views} and {self.local_crop_size}")
        if self.local_views and not any(op.name == "resized_crop" for op in self.ops):
            raise ConfigError("views.local_views: local views are cut by a resized_crop op, and these views have "
                              "none; add one to views.ops or use a preset that has one (strong, native, ...)")
        if self.seasonal_pairs not in ("use", "ignore"):
            raise ConfigError(f"views.seasonal_pairs: got {self.seasonal_pairs!r}; allowed: 'use', 'ignore'")
        for i, op in enumerate(self.ops):
            _op_class(op, i)


def preset(name: str, **overrides) -> ViewSpec:
    """A ViewSpec from a preset (``strong``, ``light``, ``spatial``, ``native``, ``upright``, ``none``) or a method
    name (``vicreg`` -> strong)."""
    key = METHOD_PRESETS.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown view preset {name!r}; known: {', '.join(sorted(PRESETS) + sorted(METHOD_PRESETS))}")
    return ViewSpec(ops=[OpSpec(o.name, dict(o.params)) for o in PRESETS[key]], **overrides)


def _op_class(spec: OpSpec, i: int) -> type:
    """The registered class of ``spec``; ConfigError for an unknown name or parameter."""
    where = f"views.ops[{i}]"
    try:
        cls = OPS.get(spec.name)
    except ValueError as err:
        raise ConfigError(f"{where}.name: {err}") from err
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "seed", "wavelengths_nm")]
    unknown = [k for k in spec.params if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}.params.{unknown[0]}: unknown parameter of {spec.name}; allowed: {', '.join(allowed)}")
    return cls


def _build_op(spec: OpSpec, i: int, wavelengths: list[float], chip_size: int, crop_size: int | None, seed: int):
    where = f"views.ops[{i}]"
    cls = _op_class(spec, i)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.params.items()}
    if "wavelengths_nm" in inspect.signature(cls.__init__).parameters:
        kwargs["wavelengths_nm"] = wavelengths
    if spec.name == "resized_crop":
        kwargs.setdefault("size", crop_size or chip_size)
        if kwargs.get("scale") == "native":   # a crop_size box at the chip's own resolution: no zoom (sub-pixel shifts only)
            side = kwargs["size"] if isinstance(kwargs["size"], int) else kwargs["size"][0]
            if side > chip_size:
                raise ConfigError(f"{where}: a native-resolution crop of {side} px does not fit in {chip_size} px "
                                  f"chips; lower views.crop_size or raise corpus.sampler.chip_size")
            kwargs["scale"] = ((side / chip_size) ** 2,) * 2
            kwargs["ratio"] = (1.0, 1.0)
    try:
        return cls(seed=seed, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({spec.name}): {err}") from err


LOCAL_SEED_OFFSET = 500        # local-view op i is seeded seed * 1000 + 500 + i


class ViewGenerator(nn.Module):
    """Makes ``spec.n_views`` global and ``spec.local_views`` local views of a batch on its device.

    Args:
        spec: the ViewSpec.
        bands: band names of the batch, in channel order.
        wavelengths_nm, mean, std: per band, from the sensor catalog (mean/std in the reader's units).
        chip_size: chip side in pixels (used when ``spec.crop_size`` is None).
        seed: seeds every op; the same seed gives the same views.
    """

    def __init__(self, spec: ViewSpec, bands: list[str], wavelengths_nm: list[float], mean, std, chip_size: int,
                 seed: int = 0):
        super().__init__()
        if not (len(bands) == len(wavelengths_nm) == len(mean) == len(std)):
            raise ValueError("bands, wavelengths, mean and std must have one entry per band")
        self.spec, self.bands = spec, list(bands)
        self.reflectance_ops, self.sequential = self._pipeline(spec.ops, wavelengths_nm, chip_size, spec.crop_size,
                                                               seed, offset=0)
        local = [OpSpec(o.name, {**o.params, "size": spec.local_crop_size, "scale": list(spec.local_crop_scale)})
                 if o.name == "resized_crop" else o for o in spec.ops] if spec.local_views else []
        self.local_reflectance_ops, self.local_sequential = self._pipeline(
            local, wavelengths_nm, chip_size, spec.local_crop_size, seed, offset=LOCAL_SEED_OFFSET)
        self.norm = Normalization(tuple(bands), mean, std)
        self.register_buffer("mean", torch.as_tensor(self.norm.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(self.norm.std).view(1, -1, 1, 1), persistent=False)
        # Normalization.apply's arithmetic fused into one multiply-add on the device: x * (1 / std) - mean / std
        self.register_buffer("scale", 1.0 / self.std, persistent=False)
        self.register_buffer("shift", -self.mean / self.std, persistent=False)

    @staticmethod
    def _pipeline(specs: list[OpSpec], wavelengths_nm, chip_size: int, crop_size: int | None, seed: int, offset: int):
        """(reflectance ops, Kornia sequential of the others or None); op i is seeded ``seed * 1000 + offset + i``."""
        ops = [_build_op(o, i, list(wavelengths_nm), chip_size, crop_size, seed * 1000 + offset + i)
               for i, o in enumerate(specs)]
        for i, op in enumerate(ops):
            op.eossl_index = offset + i
        others = [op for op in ops if op.domain != "reflectance"]
        return (nn.ModuleList([op for op in ops if op.domain == "reflectance"]),
                K.AugmentationSequential(*others, data_keys=["input", "mask"]) if others else None)

    def reseed(self, seed: int) -> None:
        """Reseed every op as ``ViewGenerator(..., seed=seed)`` would (training reseeds per step to resume exactly)."""
        ops = [*self.reflectance_ops, *self.local_reflectance_ops]
        for seq in (self.sequential, self.local_sequential):
            ops += list(seq.children()) if seq is not None else []
        for op in ops:
            op.reseed(int(seed) * 1000 + op.eossl_index)

    def check(self, image: torch.Tensor) -> None:
        if image.ndim != 4:
            raise ValueError(f"views need a (B, C, H, W) batch, got shape {tuple(image.shape)}")
        if image.shape[1] != len(self.bands):
            raise ValueError(f"the batch has {image.shape[1]} bands but the views were configured for "
                             f"{len(self.bands)} ({', '.join(self.bands)}); check the data's band list")
        if torch.isnan(image.amax()):  # NaN propagates through the max: no full boolean tensor needed
            raise ValueError("the batch contains NaN values; the reader marks nodata with the mask and 0, so NaNs "
                             "come from upstream code: fill them and set the mask before making views")

    @torch.no_grad()
    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, image2: torch.Tensor | None = None,
                mask2: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """Views of a reflectance batch: a list of ``{"image": (B, C, h, w) standardised, "mask": (B, h, w)}``."""
        self.check(image)
        if mask is None:
            mask = torch.ones(image.shape[0], *image.shape[2:], dtype=torch.bool, device=image.device)
        pairs = image2 is not None and self.spec.seasonal_pairs == "use"
        if pairs:
            self.check(image2)
            mask2 = torch.ones_like(mask) if mask2 is None else mask2
        views = []
        for v in range(self.spec.n_views + self.spec.local_views):
            x, m = (image2, mask2) if pairs and v % 2 == 1 else (image, mask)
            local = v >= self.spec.n_views
            for op in self.local_reflectance_ops if local else self.reflectance_ops:
                x = op(x)
            mf = m.unsqueeze(1).to(x.dtype)
            x = torch.addcmul(self.shift, x, self.scale).mul_(mf)  # (x - mean) / std, invalid pixels 0
            sequential = self.local_sequential if local else self.sequential
            if sequential is not None:
                x, mf = sequential(x, mf)
            valid = mf > 0.5
            views.append({"image": x.mul_(valid), "mask": valid[:, 0]})  # invalid pixels stay 0 (the band mean)
        return views
