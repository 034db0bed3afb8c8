"""Collapse monitors for SSL embeddings (no gradient)."""

from __future__ import annotations

import torch
from lightly.utils.debug import std_of_l2_normalized


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings (B, D).

    About ``1/sqrt(D)`` for well-spread embeddings, 0 when they collapse to one point (SimSiam paper, Fig. 2);
    lightly's ``std_of_l2_normalized`` on float32 (bf16 embeddings under autocast).
    """
    if z.shape[0] < 2:      # lightly's measure is NaN for one sample; 0 keeps the logs finite
        return z.new_zeros(())
    return std_of_l2_normalized(z.float())


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """exp(entropy) of the normalised singular values of the centred embeddings (Roy & Vetterli, 2007): between
    1 (collapsed to a line) and min(B, D)."""
    if z.shape[0] < 2:
        return z.new_ones(())
    s = torch.linalg.svdvals(z.float() - z.float().mean(0))
    p = s / s.sum().clamp_min(eps)
    return torch.exp(-(p * torch.log(p.clamp_min(eps))).sum())
