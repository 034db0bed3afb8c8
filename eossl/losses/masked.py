"""Masked-autoencoding losses: of image patches (MAE: He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022) and of pixel time series (Presto: Tseng et al., "Lightweight, Pre-trained Transformers for Remote Sensing
Timeseries", 2023)."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch*patch*C); C is read from the tensor (never assumed to be 3)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def mae_loss(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int,
             valid: torch.Tensor | None = None, norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error on masked patches, over valid pixels only.

    Args:
        pred: (B, L, patch*patch*C) reconstruction.
        images: (B, C, H, W) targets.
        mask: (B, L), 1 for patches that were hidden from the encoder (the loss is computed there).
        valid: optional (B, H, W) bool chip mask; invalid pixels neither count nor shape the normalisation.
        norm_pix: normalise each target patch by its own mean and variance (over its valid values).
    """
    target = patchify(images, patch)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} does not match the patchified target {tuple(target.shape)}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must be (B, L) = {tuple(target.shape[:2])}, got {tuple(mask.shape)}")
    c = images.shape[1]
    if valid is not None and tuple(valid.shape) != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"valid must be (B, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(valid.shape)}")
    if valid is None:
        w = torch.ones_like(target)
    else:
        w = patchify(valid.unsqueeze(1).expand(-1, c, -1, -1).to(target.dtype), patch)
    if norm_pix:
        count = w.sum(-1, keepdim=True).clamp_min(1)
        mean = (target * w).sum(-1, keepdim=True) / count
        var = ((target - mean) ** 2 * w).sum(-1, keepdim=True) / (count - 1).clamp_min(1)
        target = (target - mean) / (var + eps).sqrt()
    per_value = (pred - target) ** 2 * w
    weight = w * mask.unsqueeze(-1).to(w.dtype)
    total = weight.sum()
    if total == 0:
        raise ValueError("no masked patch holds a valid pixel: the loss is undefined for this batch")
    return (per_value * mask.unsqueeze(-1)).sum() / total


def masked_series_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                       hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the values that were hidden from the encoder and are valid; 0 when there are none
    (a batch whose hidden values are all invalid teaches nothing, but is no error: the masks are drawn at random).

    Masked autoencoding of pixel time series as in Presto (Tseng et al. 2023): the encoder sees the visible values,
    reconstructs every band at every step, and only the hidden, valid values count.

    Args:
        pred: (B, T, C) reconstruction (normalised values).
        target: (B, T, C) the series (normalised values; invalid entries count 0 but must be finite).
        valid: (B, T, C) bool, the values that were observed.
        hidden: (B, T, C) bool, the values hidden from the encoder.
    """
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, T, C)")
    if valid.shape != pred.shape or hidden.shape != pred.shape:
        raise ValueError(f"valid {tuple(valid.shape)} and hidden {tuple(hidden.shape)} must be (B, T, C) = "
                         f"{tuple(pred.shape)}")
    if valid.dtype != torch.bool or hidden.dtype != torch.bool:
        raise ValueError(f"valid and hidden must be bool masks, got {valid.dtype} and {hidden.dtype}")
    use = (valid & hidden).to(pred.dtype)
    n = use.sum()
    return ((pred - target) ** 2 * use).sum() / n.clamp(min=1.0)
