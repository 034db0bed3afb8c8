"""Projection and prediction heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, last_bn: bool = False) -> nn.Sequential:
    """``layers`` Linear layers with BatchNorm + ReLU between them (and an affine-free BN at the end if asked)."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)


class DINOHead(nn.Module):
    """DINO's head: a 3-layer MLP (GELU, ``hidden`` wide) to a ``bottleneck`` embedding, L2-normalised, then a
    linear layer whose rows have unit norm (the paper's weight-normalised last layer with its norm fixed) to
    ``out_dim`` logits. (B, in_dim) -> (B, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.mlp(x), dim=-1), F.normalize(self.last.weight, dim=1))
