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

from eossl.augment.base import SeededMixin, check_range

__all__ = ["RandomRot90Flip", "RandomRotationReflect", "RandomResizedCropMS"]


def _eye(b: int, device, dtype) -> torch.Tensor:
    return torch.eye(3, device=device, dtype=dtype).expand(b, 3, 3).clone()


class RandomRot90Flip(SeededMixin, GeometricAugmentationBase2D):
    """Exact 90-degree rotations (k = 0..3, counter-clockwise) and a horizontal flip, per sample; no interpolation.

    Non-square chips only get k in {0, 2}. Every dihedral symmetry of the square is reachable.
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

    def compute_transformation(self, input, params, flags):
        b, h, w = input.shape[0], input.shape[-2], input.shape[-1]
        mats = _eye(b, input.device, input.dtype)
        for i in range(b):
            m = torch.eye(3, dtype=input.dtype)
            if bool(params["flip"][i]):
                m = torch.tensor([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]], dtype=input.dtype)
            size_x, size_y = (w, h)
            for _ in range(int(params["k"][i])):  # (x, y) -> (y, size_x - 1 - x), then the axes swap
                r = torch.tensor([[0.0, 1, 0], [-1, 0, size_x - 1], [0, 0, 1]], dtype=input.dtype)
                m = r @ m
                size_x, size_y = size_y, size_x
            mats[i] = m.to(input.device)
        return mats

    def apply_transform(self, input, params, flags, transform=None):
        out = input
        flip = params["flip"].to(input.device)
        if bool(flip.any()):
            out = torch.where(flip.view(-1, *([1] * (input.ndim - 1))), input.flip(-1), input)
        k = params["k"].to(input.device)
        result = out.clone()
        for kk in (1, 2, 3):
            idx = (k == kk).nonzero(as_tuple=True)[0]
            if len(idx):
                result[idx] = torch.rot90(out[idx], kk, dims=(-2, -1))
        return result

    def inverse_transform(self, input, flags, transform=None, size=None):
        raise NotImplementedError("RandomRot90Flip has no inverse here; keep the original batch instead")


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

        angle = params["angle"].to(input.device, input.dtype)
        scale = torch.ones(input.shape[0], 2, device=input.device, dtype=input.dtype)
        mats = _eye(input.shape[0], input.device, input.dtype)
        mats[:, :2] = get_rotation_matrix2d(self._center(input), angle, scale)
        return mats

    def apply_transform(self, input, params, flags, transform=None):
        angle = params["angle"].to(input.device, input.dtype)
        return rotate(input, angle, center=self._center(input), mode="bilinear", padding_mode="reflection")

    def apply_transform_mask(self, input, params, flags, transform=None):
        angle = params["angle"].to(input.device, input.dtype)
        return rotate(input, angle, center=self._center(input), mode="nearest", padding_mode="zeros")

    def inverse_transform(self, input, flags, transform=None, size=None):
        raise NotImplementedError("RandomRotationReflect has no inverse here; keep the original batch instead")


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
        cw = torch.sqrt(area * r).clamp(1, w)
        ch = torch.sqrt(area / r).clamp(1, h)
        x0 = torch.rand(b, generator=self.generator) * (w - cw)
        y0 = torch.rand(b, generator=self.generator) * (h - ch)
        x1, y1 = x0 + cw - 1, y0 + ch - 1
        boxes = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1), torch.stack([x1, y1], -1),
                             torch.stack([x0, y1], -1)], dim=1)
        return {"src": boxes}

    def _dst(self, b, device, dtype):
        h, w = self.size
        d = torch.tensor([[0.0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], device=device, dtype=dtype)
        return d.expand(b, 4, 2)

    def compute_transformation(self, input, params, flags):
        src = params["src"].to(input.device, input.dtype)
        return get_perspective_transform(src, self._dst(input.shape[0], input.device, input.dtype))

    def apply_transform(self, input, params, flags, transform=None):
        src = params["src"].to(input.device, input.dtype)
        return crop_and_resize(input, src, self.size, mode="bilinear", align_corners=True)

    def apply_non_transform(self, input, params, flags, transform=None):
        return torch.nn.functional.interpolate(input, size=self.size, mode="bilinear", align_corners=True) \
            if tuple(input.shape[-2:]) != self.size else input

    def apply_transform_mask(self, input, params, flags, transform=None):
        src = params["src"].to(input.device, input.dtype)
        return crop_and_resize(input, src, self.size, mode="nearest", align_corners=True)

    def apply_non_transform_mask(self, input, params, flags, transform=None):
        # samples that are not cropped are still resized to the output size, their masks too
        if tuple(input.shape[-2:]) == self.size:
            return input
        return torch.nn.functional.interpolate(input, size=self.size, mode="nearest")

    def inverse_transform(self, input, flags, transform=None, size=None):
        raise NotImplementedError("RandomResizedCropMS has no inverse here; keep the original batch instead")
