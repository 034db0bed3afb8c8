"""I-JEPA on a timm ViT (Assran et al., CVPR 2023): predict the target encoder's representations of several
patch blocks from a context block, in representation space, with a narrow predictor.

The context encoder (the backbone being trained) sees only the context patches; the EMA target encoder sees every
patch; the predictor (``predictor_depth`` transformer blocks of width ``predictor_dim``) gets the context tokens
and one mask token per target patch at its position, once per target block. The blocks are drawn once per batch
(the official code draws them per image) from ``seed``, the rank and a step counter kept in the checkpoint.
"""

from __future__ import annotations

import copy

import torch
from timm.models.vision_transformer import Block
from torch import nn

from eossl.losses.predictive import jepa_blocks, jepa_loss
from eossl.methods.base import METHODS, Method


@METHODS.register("ijepa")
class IJEPA(Method):
    n_views = 1
    vit_only = True
    any_view_size = False
    uses_ema = True

    def __init__(self, backbone, arch, predictor_dim: int = 192, predictor_depth: int = 4, predictor_heads: int = 4,
                 n_targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                 target_ratio: tuple[float, float] = (0.75, 1.5), context_scale: tuple[float, float] = (0.85, 1.0),
                 seed: int = 0, pool: str = "last"):
        super().__init__(backbone, arch)  # `pool` is accepted and unused: the loss is on patch representations
        self.grid = tuple(int(g) for g in backbone.patch_embed.grid_size)
        self.masks = dict(n_targets=n_targets, target_scale=tuple(target_scale), target_ratio=tuple(target_ratio),
                          context_scale=tuple(context_scale))
        self.seed = seed
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        n = self.grid[0] * self.grid[1]
        self.predictor_embed = nn.Linear(self.feat_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        self.predictor_pos = nn.Parameter(torch.zeros(1, n, predictor_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.predictor_pos, std=0.02)
        self.predictor = nn.Sequential(*[Block(predictor_dim, predictor_heads) for _ in range(predictor_depth)])
        self.predictor_norm = nn.LayerNorm(predictor_dim)
        self.predictor_proj = nn.Linear(predictor_dim, self.feat_dim)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    def ema_pairs(self):
        return [(self.backbone, self.target_backbone)]

    def _patch_tokens(self, vit, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """The ViT's patch representations (B, N, D) after its final norm, of the patches ``keep`` (all: None)."""
        tokens = vit.patch_embed(x) + vit.pos_embed[:, vit.num_prefix_tokens:]
        if keep is not None:
            tokens = tokens[:, keep.to(x.device)]
        prefix = (vit.cls_token + vit.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return vit.norm(vit.blocks(vit.norm_pre(torch.cat([prefix, tokens], dim=1))))[:, vit.num_prefix_tokens:]

    def loss(self, views):
        self.check_views(views)
        x = views[0]["image"]
        context, targets = jepa_blocks(self.grid, self.draw_generator(self.seed), **self.masks)
        with torch.no_grad():
            full = self._patch_tokens(self.target_backbone, x, None)
        ctx = self._patch_tokens(self.backbone, x, context)                                     # (B, Nc, D)
        b, m, nt = x.shape[0], targets.shape[0], targets.shape[1]
        dev = x.device
        pos = self.predictor_pos.expand(b, -1, -1)
        query = self.predictor_embed(ctx) + pos[:, context.to(dev)]
        masks = self.mask_token + self.predictor_pos[0, targets.to(dev)]                         # (M, Nt, P)
        tokens = torch.cat([query.repeat_interleave(m, dim=0), masks.repeat(b, 1, 1)], dim=1)   # (B*M, Nc+Nt, P)
        pred = self.predictor_proj(self.predictor_norm(self.predictor(tokens))[:, -nt:])       # (B*M, Nt, D)
        target = full[:, targets.reshape(-1).to(dev)].reshape(b * m, nt, -1)
        return {"loss": jepa_loss(pred, target), "embedding": ctx.mean(dim=1)}
