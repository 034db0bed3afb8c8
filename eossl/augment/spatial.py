"""Geometric ops for multispectral batches ``(B, C, H, W)``; band-agnostic, and masks follow the geometry.

Used inside ``kornia.augmentation.AugmentationSequential(..., data_keys=["input", "mask"])`` a valid-pixel mask
``(B, 1, H, W)`` goes through the same transform as the image (nearest, zero padding: pixels that come from
outside the chip become invalid).
"""

from __future__ import annotations

import math

import torch
from kornia.augmentation import GeometricAugmentationBase2D
from kornia.geometry.transform import crop_and_resize, get_perspective_transform, rotate

from eossl.augment.base import SeededMixin, check_range, gated_rows

__all__ = ["RandomRot90Flip", "RandomRotationReflect", "RandomResizedCropMS"]


def _eye(b: int, device, dtype) -> torch.Tensor:
    return torch.eye(3, device=device, dtype=dtype).expand(b, 3, 3).clone()


_DIHEDRAL: dict[tuple, tuple[torch.Tensor, list]] = {}


def _dihedral(h: int, w: int, device) -> tuple[torch.Tensor, list]:
    """The 8 (k, flip) elements for an (h, w) grid: 3x3 pixel-coordinate matrices and flat pixel orders."""
    key = (h, w, str(device))
    if key not in _DIHEDRAL:
        mats, orders = [], []
        pixels = torch.arange(h * w, device=device).view(h, w)
        for flip in (False, True):
            for k in range(4):
                m = torch.tensor([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]]) if flip else torch.eye(3)
                size_x, size_y = w, h
                for _ in range(k):  # (x, y) -> (y, size_x - 1 - x); the axes swap
                    m = torch.tensor([[0.0, 1, 0], [-1, 0, size_x - 1], [0, 0, 1]]) @ m
                    size_x, size_y = size_y, size_x
                mats.append(m)
                src = pixels.flip(-1) if flip else pixels
                orders.append(torch.rot90(src, k, dims=(0, 1)).reshape(-1) if (h == w or k % 2 == 0) else None)
        _DIHEDRAL[key] = (torch.stack(mats), orders)
    return _DIHEDRAL[key]


class RandomRot90Flip(SeededMixin, GeometricAugmentationBase2D):
    """Exact 90-degree rotations (k = 0..3, counter-clockwise) and a horizontal flip, per sample; no interpolation.

    Non-square chips only get k in {0, 2}. Every dihedral symmetry of the square is reachable. Applied as one
    gather with precomputed pixel orders.
    """

    def __init__(self, p: float = 1.0, seed: int | None = None):
        super().__init__(p=p)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b, h, w = batch_shape[0], batch_shape[-2], batch_shape[-1]
        k = torch.randint(0, 4, (b,), generator=self.generator)
        if h != w:
            k = (k // 2) * 2
        return {"k": k, "flip": torch.rand(b, generator=self.generator) < 0.5}

    @staticmethod
    def _codes(params) -> torch.Tensor:
        code = params["k"].long() + 4 * params["flip"].long()
        return torch.where(params["gate"], code, 0) if "gate" in params else code

    def compute_transformation(self, input, params, flags):
        mats, _ = _dihedral(input.shape[-2], input.shape[-1], "cpu")
        return mats[self._codes(params)].to(input.device, input.dtype)

    def apply_transform(self, input, params, flags, transform=None):
        b, c, h, w = input.shape
        _, orders = _dihedral(h, w, input.device)
        codes = self._codes(params).tolist()
        if any(orders[i] is None for i in codes):
            raise ValueError(f"a 90-degree rotation of a non-square {h}x{w} chip was requested")
        index = torch.stack([orders[i] for i in codes])[:, None, :].expand(b, c, h * w)
        return input.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)



class RandomRotationReflect(SeededMixin, GeometricAugmentationBase2D):
    """Rotation by an angle drawn from ``degrees`` (counter-clockwise), bilinear, with reflect padding.

    The reflected border is data mirrored from inside the chip, so the rotated mask marks it invalid.
    """

    def __init__(self, degrees: tuple[float, float] = (-180.0, 180.0), p: float = 0.5, seed: int | None = None):
        super().__init__(p=p)
        self.degrees = check_range("degrees", degrees)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        return {"angle": self.uniform(*self.degrees, (batch_shape[0],))}

    def _center(self, input):
        h, w = input.shape[-2], input.shape[-1]
        return torch.tensor([[(w - 1) / 2, (h - 1) / 2]], device=input.device, dtype=input.dtype).expand(
            input.shape[0], 2)

    def compute_transformation(self, input, params, flags):
        from kornia.geometry.transform import get_rotation_matrix2d

        angle = torch.where(params["gate"], params["angle"], 0.0).to(input.device, input.dtype)
        scale = torch.ones(input.shape[0], 2, device=input.device, dtype=input.dtype)
        mats = _eye(input.shape[0], input.device, input.dtype)
        mats[:, :2] = get_rotation_matrix2d(self._center(input), angle, scale)
        return mats

    def _rotate_gated(self, input, params, mode: str, padding: str):
        idx = gated_rows(params, input.device)
        out = input.clone()
        if len(idx):
            angle = params["angle"].to(input.device, input.dtype)[idx]
            out[idx] = rotate(input[idx], angle, center=self._center(input)[idx], mode=mode, padding_mode=padding)
        return out

    def apply_transform(self, input, params, flags, transform=None):
        return self._rotate_gated(input, params, "bilinear", "reflection")

    def apply_transform_mask(self, input, params, flags, transform=None):
        return self._rotate_gated(input, params, "nearest", "zeros")



class RandomResizedCropMS(SeededMixin, GeometricAugmentationBase2D):
    """Crop a random box (area fraction ``scale``, aspect ratio ``ratio``) and resize it to ``size``."""

    def __init__(self, size: tuple[int, int] | int, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), p: float = 1.0, seed: int | None = None):
        super().__init__(p=p)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale = check_range("scale", scale, low=1e-4)
        if self.scale[1] > 1:
            raise ValueError(f"scale: the area fraction cannot exceed 1, got {scale}")
        self.ratio = check_range("ratio", ratio, low=1e-3)
        self._init_rng(seed)

    def generate_parameters(self, batch_shape):
        b, h, w = batch_shape[0], batch_shape[-2], batch_shape[-1]
        area = self.uniform(*self.scale, (b,)) * h * w
        log_r = self.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), (b,))
        r = torch.exp(log_r)
        cw = torch.sqrt(area * r).clamp(min(2, w), w)  # at least 2 px: a 1 px box is degenerate
        ch = torch.sqrt(area / r).clamp(min(2, h), h)
        x0 = torch.rand(b, generator=self.generator) * (w - cw)
        y0 = torch.rand(b, generator=self.generator) * (h - ch)
        x1, y1 = x0 + cw - 1, y0 + ch - 1
        boxes = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1), torch.stack([x1, y1], -1),
                             torch.stack([x0, y1], -1)], dim=1)
        return {"src": boxes}

    def _src(self, input, params) -> torch.Tensor:
        """Crop boxes; samples the gate skips use the whole chip (they are only resized)."""
        h, w = input.shape[-2], input.shape[-1]
        full = torch.tensor([[0.0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        src = torch.where(params["gate"].view(-1, 1, 1), params["src"], full)
        return src.to(input.device, input.dtype)

    def _dst(self, b, device, dtype):
        h, w = self.size
        d = torch.tensor([[0.0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], device=device, dtype=dtype)
        return d.expand(b, 4, 2)

    def compute_transformation(self, input, params, flags):
        return get_perspective_transform(self._src(input, params), self._dst(input.shape[0], input.device,
                                                                             input.dtype))

    def apply_transform(self, input, params, flags, transform=None):
        return crop_and_resize(input, self._src(input, params), self.size, mode="bilinear", align_corners=True)

    def apply_transform_mask(self, input, params, flags, transform=None):
        return crop_and_resize(input, self._src(input, params), self.size, mode="nearest", align_corners=True)

