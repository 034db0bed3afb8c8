"""Multi-band backbones built with timm: ``in_chans = number of bands``, no classifier head, no hub weights.

Architectures: ResNet-18/50 and ViT-Tiny/Small/Base with patch 8 or 16 at any image size. ``backbone(x)``
maps a normalised (B, C, H, W) batch to pooled (B, D) features; :func:`feature_maps` gives the last feature map
(ResNet, (B, D, h, w)) or the patch tokens (ViT, (B, L, D)) for methods and decoders that need them.
"""

from __future__ import annotations

import timm
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl.registry import Registry

__all__ = ["ARCHS", "create_backbone", "stem_key", "feature_maps", "is_vit", "multi_level", "multi_level_dim"]

RESNET_STAGES = [1, 2, 3, 4]   # forward_intermediates indices: 0 is the stem, 1..4 are layer1..layer4
VIT_LAST_BLOCKS = 4

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


def patch_size(arch: str) -> int:
    """A registered ViT's patch side in pixels (timm's default 16 unless the registry entry sets it)."""
    return int(ARCHS.get(arch)[1].get("patch_size", 16))


def create_backbone(arch: str, in_chans: int, img_size: int = 224) -> nn.Module:
    """A randomly initialised backbone for ``in_chans`` bands (``img_size`` matters for ViTs only). ResNets are
    built with every residual branch active (timm's ``zero_init_last=False``).

    The timm model carries ``eossl_arch`` so checkpoints can describe themselves.
    """
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    timm_name, extra = ARCHS.get(arch)
    kwargs = dict(pretrained=False, in_chans=in_chans, num_classes=0, **extra)
    if not is_vit(arch):
        # timm zero-initialises the last BN of every residual block (Goyal et al., 2017): every residual branch
        # then starts as zero and passes no gradient to its convolutions, so under SSL's small steps they barely
        # train (BENCHMARKS.md, 'the backbone did not move'). Active branches from the start.
        kwargs["zero_init_last"] = False
    if is_vit(arch):
        patch = patch_size(arch)
        if img_size % patch:
            raise ValueError(f"{arch}: image size {img_size} is not a multiple of the patch size {patch}")
        kwargs["img_size"] = img_size
    model = timm.create_model(timm_name, **kwargs)
    model.eossl_arch = arch
    return model


def accept_any_input_size(model: nn.Module) -> int:
    """Let every timm ViT in ``model`` take inputs of any size that is a multiple of its patch (multi-crop: local
    views smaller than the global ones), as timm's ``dynamic_img_size``: the position embeddings are resampled
    (bicubic) to each input's patch grid on the fly; inputs of the built size are unchanged (no resampling). The
    parameters and state dict are the same, so exported weights load into a plain model. Returns the patch size."""
    from timm.layers import Format

    patch = 0
    for m in model.modules():
        if isinstance(m, VisionTransformer):
            patch = int(m.patch_embed.patch_size[0])
            if not m.dynamic_img_size:
                m.dynamic_img_size = True
                m.patch_embed.strict_img_size = False
                m.patch_embed.flatten = False                 # (B, H, W, D) until the position embedding is added
                m.patch_embed.output_fmt = Format.NHWC
    return patch


def stem_key(arch: str) -> str:
    """State-dict key of the first convolution, whose input channels are the bands."""
    return "patch_embed.proj.weight" if is_vit(arch) else "conv1.weight"


def feature_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet: last feature map (B, D, h, w); ViT: patch tokens without prefix tokens (B, L, D)."""
    out = model.forward_features(x)
    if out.ndim == 3:  # ViT: drop the class (and register) tokens
        return out[:, getattr(model, "num_prefix_tokens", 1):]
    return out


def multi_level(model: nn.Module, x: torch.Tensor, std: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, D): global averages of several depths, concatenated. ResNet: layer1..layer4
    (64+128+256+512 = 960 for resnet18); ViT: the mean patch token of each of the last 4 blocks, after the final
    norm (4 x 192 = 768 for ViT-Tiny). ``std``: each average followed by the standard deviation (D doubles)."""
    if isinstance(model, VisionTransformer):
        tokens = model.forward_intermediates(x, indices=VIT_LAST_BLOCKS, norm=True, output_fmt="NLC",
                                             intermediates_only=True)   # patch tokens only, (B, L, D) each
        flat = [t.transpose(1, 2) for t in tokens]                      # (B, D, L)
    elif isinstance(model, ResNet):
        maps = model.forward_intermediates(x, indices=RESNET_STAGES, intermediates_only=True)
        flat = [m.flatten(2) for m in maps]                             # (B, D, h*w)
    else:
        raise ValueError(f"multi-level pooling supports timm ResNet and VisionTransformer backbones, not "
                         f"{type(model).__name__}")
    pooled = [torch.cat([f.mean(dim=2), f.std(dim=2, correction=0)], dim=1) if std else f.mean(dim=2) for f in flat]
    return torch.cat(pooled, dim=1)


def multi_level_dim(model: nn.Module) -> int:
    """Width of :func:`multi_level`'s output."""
    if isinstance(model, VisionTransformer):
        return VIT_LAST_BLOCKS * int(model.num_features)
    if isinstance(model, ResNet):
        return sum(int(model.feature_info[i]["num_chs"]) for i in RESNET_STAGES)
    raise ValueError(f"multi-level pooling supports timm ResNet and VisionTransformer backbones, not "
                     f"{type(model).__name__}")
