"""Spectral-aware, batched, seeded augmentations (Kornia classes) and SSL view generation."""

from eossl.augment.spatial import RandomResizedCropMS, RandomRot90Flip, RandomRotationReflect
from eossl.augment.spectral import (
    RandomBandDropout,
    RandomBrightnessContrastMS,
    RandomGaussianBlurMS,
    RandomGaussianNoiseMS,
    RandomSpectralShift,
)

__all__ = ["RandomBandDropout", "RandomSpectralShift", "RandomBrightnessContrastMS", "RandomGaussianNoiseMS",
           "RandomGaussianBlurMS", "RandomRot90Flip", "RandomRotationReflect", "RandomResizedCropMS"]
