"""Spectral-aware, batched, seeded augmentations (Kornia classes) and SSL view generation.

The op classes load on first use (``from eossl.augment import RandomBandDropout``), so the plain-data specs of
:mod:`eossl.augment.spec` import without torch or kornia.
"""

from __future__ import annotations

import importlib

__all__ = ["RandomBandDropout", "RandomSpectralShift", "RandomBrightnessContrastMS", "RandomGaussianNoiseMS",
           "RandomGaussianBlurMS", "RandomRot90Flip", "RandomRotationReflect", "RandomResizedCropMS"]

_HOME = {"RandomResizedCropMS": "spatial", "RandomRot90Flip": "spatial", "RandomRotationReflect": "spatial"}


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'eossl.augment' has no attribute {name!r}")
    return getattr(importlib.import_module(f"eossl.augment.{_HOME.get(name, 'spectral')}"), name)
