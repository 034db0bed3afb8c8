"""Multi-band backbones built with timm: ``in_chans = number of bands``, no classifier head, no hub weights.

Architectures: ResNet-18/50 and ViT-Tiny/Small/Base with patch 8 or 16 at any image size. ``backbone(x)``
maps a normalised (B, C, H, W) batch to pooled (B, D) features; :func:`feature_maps` gives the last feature map
(ResNet, (B, D, h, w)) or the patch tokens (ViT, (B, L, D)) for methods and decoders that need them.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from eossl.registry import Registry

__all__ = ["ARCHS", "create_backbone", "stem_key", "feature_maps", "is_vit"]

# name -> (timm model name, extra kwargs)
ARCHS: Registry[tuple[str, dict]] = Registry("backbone architecture")
for _name, _timm, _kw in (
        ("resnet18", "resnet18", {}), ("resnet50", "resnet50", {}),
        ("vit_tiny_patch16", "vit_tiny_patch16_224", {}), ("vit_tiny_patch8", "vit_tiny_patch16_224", {"patch_size": 8}),
        ("vit_small_patch16", "vit_small_patch16_224", {}),
        ("vit_small_patch8", "vit_small_patch16_224", {"patch_size": 8}),
        ("vit_base_patch16", "vit_base_patch16_224", {}), ("vit_base_patch8", "vit_base_patch16_224", {"patch_size": 8})):
    ARCHS.register(_name)((_timm, _kw))


def is_vit(arch: str) -> bool:
    return arch.startswith("vit")


def create_backbone(arch: str, in_chans: int, img_size: int = 224) -> nn.Module:
    """A randomly initialised backbone for ``in_chans`` bands (``img_size`` matters for ViTs only).

    The timm model carries ``eossl_arch`` so checkpoints can describe themselves.
    """
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    timm_name, extra = ARCHS.get(arch)
    kwargs = dict(pretrained=False, in_chans=in_chans, num_classes=0, **extra)
    if is_vit(arch):
        patch = extra.get("patch_size", 16)
        if img_size % patch:
            raise ValueError(f"{arch}: image size {img_size} is not a multiple of the patch size {patch}")
        kwargs["img_size"] = img_size
    model = timm.create_model(timm_name, **kwargs)
    model.eossl_arch = arch
    return model


def stem_key(arch: str) -> str:
    """State-dict key of the first convolution, whose input channels are the bands."""
    return "patch_embed.proj.weight" if is_vit(arch) else "conv1.weight"


def feature_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet: last feature map (B, D, h, w); ViT: patch tokens without prefix tokens (B, L, D)."""
    out = model.forward_features(x)
    if out.ndim == 3:  # ViT: drop the class (and register) tokens
        return out[:, getattr(model, "num_prefix_tokens", 1):]
    return out
