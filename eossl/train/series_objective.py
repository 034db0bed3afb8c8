"""What series pretraining minimises per batch (``objective`` of :class:`~eossl.train.config.SeriesPretrainConfig`).

* ``masked``: masked autoencoding (Presto-style): hide values (:func:`hide_mask`), encode the rest, reconstruct
  every band at every step; MSE on the hidden valid values (:func:`eossl.losses.masked.masked_series_loss`).
* ``contrastive``: two views of each pixel (:func:`eossl.augment.series.series_view`: random subsets of its dates,
  a temporal shift, a per-band gain), the encoder's pooled features (B, 2D) through a projector
  (Linear-BN-ReLU-Linear, as VICReg's and SimCLR's), and VICReg (Bardes et al., ICLR 2022) or NT-Xent (SimCLR,
  Chen et al., ICML 2020) on the two projections (:mod:`eossl.losses`).
  VICReg is the default: a stack is a few fields, so a batch holds many pixels of the same field and crop, and
  NT-Xent would push them apart as negatives; VICReg has no negatives, and works at batch sizes a CPU affords.
* ``masked+contrastive``: ``masked + weight * contrastive`` (the masked term on the unaugmented batch).

The masked objective draws from the run's generator exactly as before this module existed and touches no view
or projector code, so masked-only runs are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eossl.augment.series import series_view
from eossl.losses.contrastive import nt_xent_loss
from eossl.losses.masked import masked_series_loss
from eossl.losses.redundancy import vicreg_loss

__all__ = ["hide_mask", "SeriesObjective"]


def hide_mask(valid: torch.Tensor, g: torch.Generator, step_ratio: float, band_ratio: float, block_prob: float,
              block_steps: int) -> torch.Tensor:
    """(B, T, C) bool: the values hidden from the encoder (see module doc); never every valid step of a sample."""
    b, t, c = valid.shape
    hidden = (torch.rand(b, t, 1, generator=g) < step_ratio).expand(b, t, c).clone()
    hidden |= torch.rand(b, t, c, generator=g) < band_ratio
    if block_steps > 0 and t > 1:
        starts = torch.randint(0, max(1, t - block_steps + 1), (b,), generator=g)
        use = torch.rand(b, generator=g) < block_prob
        steps = torch.arange(t)[None]
        block = (steps >= starts[:, None]) & (steps < starts[:, None] + block_steps) & use[:, None]
        hidden |= block[..., None]
    # keep at least one valid step visible per sample (else there is nothing to reconstruct from)
    visible = (valid & ~hidden).any(-1).any(-1)
    if not visible.all():
        first = valid.any(-1).float().argmax(-1)
        for i in torch.nonzero(~visible).flatten().tolist():
            hidden[i, first[i]] = False
    return hidden


def projector(in_dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


class SeriesObjective(nn.Module):
    """The loss of one batch: ``objective(encoder, x, valid, doy, g) -> (loss, parts)``; ``x`` (B, T, C) normalised
    values, ``valid`` (B, T, C) bool, ``doy`` (B, T) on the CPU (moved to ``device`` here); ``parts`` the float
    terms (and a collapse signal) for the log. Its parameters (the projector; none for ``masked``) train with the
    encoder's and are not exported."""

    def __init__(self, kind: str, mask, views, contrastive, feature_dim: int, mean=None, std=None,
                 device: str = "cpu"):
        super().__init__()
        if kind not in ("masked", "contrastive", "masked+contrastive"):
            raise ValueError(f"objective: unknown {kind!r}; allowed: masked, contrastive, masked+contrastive")
        self.kind, self.mask, self.views, self.contrastive, self.device = kind, mask, views, contrastive, device
        self.uses_views = kind != "masked"
        if self.uses_views:
            c = contrastive
            self.head = projector(feature_dim, c.proj_hidden, c.proj_dim)
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, encoder, x, valid, doy, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        if not self.uses_views:
            loss = self.masked(encoder, x, valid, doy, g)
            return loss, {}
        parts = {}
        loss = x.new_zeros((), device=self.device)
        if self.kind == "masked+contrastive":
            parts["masked"] = self.masked(encoder, x, valid, doy, g)
            loss = loss + parts["masked"]
        term, std = self.invariance(encoder, x, valid, doy, g)
        parts["contrastive"] = term
        loss = loss + (self.contrastive.weight if self.kind == "masked+contrastive" else 1.0) * term
        return loss, {**{k: float(v.detach()) for k, v in parts.items()}, "embedding_std": std}

    def masked(self, encoder, xb, vb, db, g: torch.Generator) -> torch.Tensor:
        """Hide values with ``g``, encode the rest, reconstruct, and score the hidden valid values."""
        m = self.mask
        hidden = hide_mask(vb, g, m.step_ratio, m.band_ratio, m.block_prob, m.block_steps)
        seen = vb & ~hidden
        xb, vb, db, seen, hidden = (t.to(self.device) for t in (xb, vb, db, seen, hidden))
        tokens, _ = encoder.forward_tokens(torch.where(seen, xb, torch.zeros_like(xb)), seen, db)
        return masked_series_loss(encoder.reconstruct(tokens[:, 1:]), xb, vb, hidden)

    def invariance(self, encoder, xb, vb, db, g: torch.Generator) -> tuple[torch.Tensor, float]:
        """(the loss between two views' projections, the mean std of the L2-normalised projections: near 0 when
        they collapse, about 1/sqrt(proj_dim) when spread)."""
        v = self.views
        both = [series_view(xb, vb, db, g, keep=tuple(v.keep), shift_days=v.shift_days, jitter=v.jitter,
                            mean=self.mean.cpu(), std=self.std.cpu()) for _ in range(2)]
        z1, z2 = (self.head(encoder(*(t.to(self.device) for t in view))) for view in both)
        c = self.contrastive
        if c.loss == "vicreg":
            loss = vicreg_loss(z1, z2, c.sim_coeff, c.std_coeff, c.cov_coeff)
        else:
            loss = nt_xent_loss(z1, z2, c.temperature)
        with torch.no_grad():
            std = float(F.normalize(z1, dim=1).std(0).mean())
        return loss, std
