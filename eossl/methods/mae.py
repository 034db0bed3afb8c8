"""Masked autoencoder on a timm ViT (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

The encoder sees a random ``1 - mask_ratio`` of the patch tokens (plus the class token); a light decoder
reconstructs every patch of every band (``patch * patch * C`` values, C read from the input); the loss is the
per-patch normalised pixel MSE on hidden patches, over valid pixels only (:func:`eossl.losses.mae_loss`).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from eossl.losses import mae_loss
from eossl.methods.base import METHODS, Method


@METHODS.register("mae")
class MAE(Method):
    n_views = 1
    vit_only = True
    any_view_size = False

    def __init__(self, backbone, arch, mask_ratio: float = 0.75, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, norm_pix: bool = True, pool: str = "last"):
        super().__init__(backbone, arch)  # `pool` is accepted and unused: the MAE loss is on pixels
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        pe = backbone.patch_embed
        self.patch = int(pe.patch_size[0])
        self.in_chans = int(pe.proj.in_channels)
        self.num_patches = int(pe.num_patches)
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        self.decoder_embed = nn.Linear(self.feat_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, self.num_patches, decoder_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)
        self.decoder = nn.Sequential(*[Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * self.in_chans)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder on a random subset of patches: (tokens (B, 1 + keep, D), mask (B, L) 1 = hidden, restore (B, L))."""
        vit = self.backbone
        if x.shape[1] != self.in_chans:
            raise ValueError(f"MAE was built for {self.in_chans} bands, got a batch with {x.shape[1]}")
        tokens = vit.patch_embed(x)
        prefix = vit.num_prefix_tokens
        tokens = tokens + vit.pos_embed[:, prefix:]
        b, length, d = tokens.shape
        keep = max(1, int(round(length * (1 - self.mask_ratio))))
        order = torch.rand(b, length, device=x.device).argsort(dim=1)
        restore = order.argsort(dim=1)
        kept = tokens.gather(1, order[:, :keep, None].expand(-1, -1, d))
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(b, -1, -1)
        out = vit.norm(vit.blocks(vit.norm_pre(torch.cat([cls, kept], dim=1))))
        mask = torch.ones(b, length, device=x.device)
        mask[:, :keep] = 0
        return out, mask.gather(1, restore), restore

    def loss(self, views):
        self.check_views(views)
        x, valid = views[0]["image"], views[0].get("mask")
        latent, mask, restore = self.encode(x)
        dec = self.decoder_embed(latent[:, 1:])
        b, keep, d = dec.shape
        dec = torch.cat([dec, self.mask_token.expand(b, self.num_patches - keep, -1)], dim=1)
        dec = dec.gather(1, restore[:, :, None].expand(-1, -1, d)) + self.decoder_pos
        pred = self.decoder_pred(self.decoder_norm(self.decoder(dec)))
        loss = mae_loss(pred, x, mask, self.patch, valid=valid, norm_pix=self.norm_pix)
        return {"loss": loss, "embedding": latent[:, 0]}
