"""Feature pools: how a backbone's feature maps become one (B, D) vector per image. One home for every pool.

* ``"last"``: the model's own pooled output ``model(x)`` (ResNet: global average of layer4; ViT: the class token
  after the final norm, as timm's ``global_pool="token"``).
* ``"multi"``: concatenated global averages of several depths (:func:`eossl.models.backbones.multi_level`).
  ResNet: layer1..layer4 (64+128+256+512 = 960 for resnet18). ViT: the mean patch token of each of the last 4
  blocks, after the final norm as DINO's linear evaluation does (4 x 192 = 768 for ViT-Tiny).
* ``"statsK"``: mean and (population) standard deviation over positions of one depth ``K`` (ResNet: 0 is the
  stem, 1..4 are layer1..layer4; ViT: block K, patch tokens after the final norm): first- and second-order
  statistics of local features. With few labels, early and middle depths of a ResNet carry the spectral
  information that land cover is told apart by (BENCHMARKS.md).

:class:`PooledBackbone` wraps a timm backbone so that ``forward`` is (B, C, H, W) -> (B, D) in one pool; exported
weights record the pool their online probe chose (``weights.json`` ``feature_pool``).
"""

from __future__ import annotations

import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl.models.backbones import RESNET_STAGES, VIT_LAST_BLOCKS, multi_level, multi_level_dim
from eossl.models.pool_names import POOLS

__all__ = ["POOLS", "model_pools", "check_pool", "pool_features", "pool_features_many", "pool_dim", "PooledBackbone"]


def model_pools(model: nn.Module) -> list[str]:
    """The pools ``model`` supports: ResNet ``last, multi, stats0..stats4``; ViT ``last, multi, stats1..statsN``
    (N blocks); any other module only ``last``."""
    if isinstance(model, ResNet):
        return ["last", "multi", *(f"stats{k}" for k in range(RESNET_STAGES[-1] + 1))]
    if isinstance(model, VisionTransformer):
        return ["last", "multi", *(f"stats{k}" for k in range(1, len(model.blocks) + 1))]
    return ["last"]


def check_pool(model: nn.Module, pool: str) -> None:
    """Raise ValueError, listing the allowed pools, unless ``model`` can be pooled as ``pool``."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
    if isinstance(model, PooledBackbone):
        if pool != "last":
            raise ValueError(f"this PooledBackbone already pools as {model.pool!r}; pool its .backbone as {pool!r} "
                             f"instead, or load the weights with pool={pool!r}")
        return
    allowed = model_pools(model)
    if pool in allowed:
        return
    if isinstance(model, VisionTransformer):
        raise ValueError(f"pool {pool!r}: the ViT has blocks 1..{len(model.blocks)}; choose one of "
                         f"{', '.join(allowed)}")
    if isinstance(model, ResNet):
        raise ValueError(f"pool {pool!r}: a ResNet has depths 0 (stem) .. 4 (layer4); choose one of "
                         f"{', '.join(allowed)}")
    raise ValueError(f"pool {pool!r} supports timm ResNet and VisionTransformer backbones, not "
                     f"{type(model).__name__}; use pool='last'")


def pool_features(model: nn.Module, x: torch.Tensor, pool: str) -> torch.Tensor:
    """Normalised (B, C, H, W) -> (B, D) features of ``model`` in ``pool`` (D = :func:`pool_dim`).

    ``"last"`` is ``model(x)``, so a :class:`PooledBackbone` pooled as ``"last"`` gives its own pool; any other
    pool needs the timm backbone itself (an error says so)."""
    check_pool(model, pool)
    if pool == "last":
        return model(x)
    if pool == "multi":
        return multi_level(model, x)
    return _statistics(model, x, int(pool[len("stats"):]))


def pool_dim(model: nn.Module, pool: str) -> int:
    """Width D of :func:`pool_features` for ``model`` in ``pool``, without running the model."""
    check_pool(model, pool)
    if pool == "last":
        return int(model.num_features)
    if pool == "multi":
        return multi_level_dim(model)
    depth = int(pool[len("stats"):])
    width = model.feature_info[depth]["num_chs"] if isinstance(model, ResNet) else model.num_features
    return 2 * int(width)


class PooledBackbone(nn.Module):
    """A timm backbone whose forward pools its features: normalised (B, C, H, W) -> (B, ``num_features``).

    ``backbone`` is the timm model (its state-dict keys are those of ``backbone.safetensors``); ``pool`` is the
    pool's name. What loaded weights are travels beside the model, in
    :class:`~eossl.models.info.LoadedWeights`, not on it.
    """

    def __init__(self, backbone: nn.Module, pool: str):
        super().__init__()
        if isinstance(backbone, PooledBackbone):
            raise ValueError(f"the backbone is already a PooledBackbone (pool {backbone.pool!r}); wrap its .backbone")
        self.num_features = pool_dim(backbone, pool)     # checks the pool first
        self.backbone = backbone
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_features(self.backbone, x, self.pool)

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}, num_features={self.num_features}"


def _statistics(model: nn.Module, x: torch.Tensor, depth: int) -> torch.Tensor:
    """(B, C, H, W) normalised -> (B, 2D): mean and std over positions of the features at ``depth``."""
    if isinstance(model, ResNet):
        (fmap,) = model.forward_intermediates(x, indices=[depth], intermediates_only=True)
        flat = fmap.flatten(2)                                    # (B, D, h*w)
    else:                                                         # a ViT (check_pool let nothing else through)
        (tokens,) = model.forward_intermediates(x, indices=[depth - 1], norm=True, output_fmt="NLC",
                                                intermediates_only=True)
        flat = tokens.transpose(1, 2)                             # (B, D, L)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, correction=0)], dim=1)


def pool_features_many(model: nn.Module, x: torch.Tensor, pools: list[str]) -> dict[str, torch.Tensor]:
    """Normalised (B, C, H, W) -> ``{pool: (B, D)}`` for timm ResNets and ViTs, from one ``forward_intermediates``
    call (equal to :func:`pool_features` per pool, several times cheaper): ``last`` = the model's head on the final
    features; ``multi`` = averages over positions of the stages (ResNet layer1..4) or the last blocks (ViT);
    ``statsK`` = mean and population std over positions at depth K (ResNet index K, ViT block K = index K - 1)."""
    vit = isinstance(model, VisionTransformer)
    multi = (list(range(len(model.blocks) - VIT_LAST_BLOCKS, len(model.blocks))) if vit else list(RESNET_STAGES))
    depth = {p: int(p[len("stats"):]) - (1 if vit else 0) for p in pools if p.startswith("stats")}
    need = sorted(set(depth.values()) | (set(multi) if "multi" in pools else set())) or [multi[-1]]
    if vit:
        final, tokens = model.forward_intermediates(x, indices=need, norm=True, output_fmt="NLC")
        flat = {i: t.transpose(1, 2) for i, t in zip(need, tokens)}          # (B, D, L) patch tokens
    else:
        final, maps = model.forward_intermediates(x, indices=need)
        flat = {i: m.flatten(2) for i, m in zip(need, maps)}                  # (B, D, h*w)
    out = {}
    for pool in pools:
        if pool == "last":
            out[pool] = model.forward_head(final)
        elif pool == "multi":
            out[pool] = torch.cat([flat[i].mean(dim=2) for i in multi], dim=1)
        else:
            f = flat[depth[pool]]
            out[pool] = torch.cat([f.mean(dim=2), f.std(dim=2, correction=0)], dim=1)
    return out
