"""What views are made of, as plain data: an op (``OpSpec``) and the named presets of ops.

No torch or kornia here: the pretraining config (:mod:`eossl.train.config`) and ``eossl views --help`` read these
without loading the view pipeline (:mod:`eossl.augment.views`, which builds and checks the ops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["OpSpec", "PRESETS", "METHOD_PRESETS"]


@dataclass
class OpSpec:
    """One op: a registered ``name`` and its keyword arguments (``seed`` and ``wavelengths_nm`` are supplied)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _strong(crop_scale=(0.2, 1.0)) -> list[OpSpec]:
    return [OpSpec("spectral_shift", {"p": 0.8}),
            OpSpec("resized_crop", {"scale": list(crop_scale)}),
            OpSpec("rot90_flip"),
            OpSpec("brightness_contrast", {"p": 0.8, "brightness": [-0.1, 0.1]}),
            OpSpec("band_dropout", {"p_band": 0.2, "p": 0.5, "fill": "mean"}),
            OpSpec("blur", {"p": 0.5}),
            OpSpec("noise", {"p": 0.3})]


PRESETS: dict[str, list[OpSpec]] = {
    "strong": _strong(),
    "light": [OpSpec("resized_crop", {"scale": [0.5, 1.0]}), OpSpec("rot90_flip")],
    # geometry only: keeps the spectra, which is what few-label land-cover probes need (BENCHMARKS.md)
    "spatial": [OpSpec("resized_crop", {"scale": [0.2, 1.0]}), OpSpec("rot90_flip")],
    # the ground sampling distance kept: crops of crop_size px at native resolution (no zoom: texture scale tells
    # land covers apart), exact rotations/flips, a small per-band gain/offset (BENCHMARKS.md, issue 11)
    "native": [OpSpec("spectral_shift", {"p": 0.8}), OpSpec("resized_crop", {"scale": "native"}),
               OpSpec("rot90_flip")],
    # strong without rotations or flips: rotation prediction must not see rotated chips
    "upright": [op for op in _strong() if op.name != "rot90_flip"],
    "none": [],
}
METHOD_PRESETS = {"simsiam": "strong", "moco_v2": "strong", "moco_v3": "strong", "simclr": "strong",
                  "byol": "strong", "dino": "strong", "barlow": "strong", "vicreg": "strong", "mae": "light",
                  "rotation": "upright", "jigsaw": "strong", "swav": "strong", "ijepa": "light"}
