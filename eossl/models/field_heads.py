"""Heads over a field's per-date features (N, T, D), standardised with statistics of the training fields:
:class:`TemporalAttention` (a learned query attends over the valid dates, in the spirit of Garnot & Landrieu 2020,
"Lightweight Temporal Self-Attention for Classifying Satellite Images Time Series") and the inputs of torchgeo's
L-TAE (:func:`ltae_inputs`). :mod:`eossl.train.heads` fits them, :mod:`eossl.evaluate.temporal` predicts with them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TemporalAttention", "feature_stats", "ltae_inputs"]


def feature_stats(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D,) mean and standard deviation of (N, T, D) features over the valid training dates (every date when none
    is valid); a constant feature gets std 1."""
    seen = x[valid] if valid.any() else x.reshape(-1, x.shape[-1])
    std = seen.std(dim=0, correction=0) if seen.shape[0] > 1 else torch.ones(x.shape[-1])
    return seen.mean(dim=0), torch.where(std > 1e-6, std, torch.ones_like(std))


def _zscore(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A temporal head's standardisation of its (B, T, D) *features* with statistics of the training fields."""
    return (x - mean) / std


class TemporalAttention(nn.Module):
    """Attention pooling over dates, then a linear classifier: (B, T, D) features, (B, T) bool valid, (T,) or
    (B, T) positions -> (B, K) logits. Features are standardised with fixed ``mean``/``std`` buffers (D,)."""

    def __init__(self, dim: int, n_classes: int, n_positions: int = 12, mean=None, std=None):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.position = nn.Embedding(n_positions, dim)
        nn.init.normal_(self.position.weight, std=0.02)
        self.classifier = nn.Linear(dim, n_classes)
        self.register_buffer("mean", torch.zeros(dim) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(dim) if std is None else torch.as_tensor(std).float())

    def weights(self, x: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, T) attention weights: softmax over the valid dates only (uniform if a field has none)."""
        keys = _zscore(x, self.mean, self.std) + self.position(positions.expand(x.shape[:2]))
        scores = keys @ self.query / math.sqrt(x.shape[-1])                      # (B, T)
        scores = scores.masked_fill(~valid, float("-inf"))
        scores = torch.where(valid.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
        return scores.softmax(dim=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        z = _zscore(x, self.mean, self.std)
        pooled = torch.einsum("bt,btd->bd", self.weights(x, valid, positions), z)
        return self.classifier(pooled)


def ltae_inputs(x: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Standardised (B, T, D) features with every invalid date filled by the field's mean over its valid dates
    (0, the training mean, for a field with none): torchgeo's L-TAE attends over a fixed-length sequence."""
    z = _zscore(x, mean, std)
    w = valid.to(z.dtype)[..., None]
    field_mean = (z * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)
    return torch.where(valid[..., None], z, field_mean.expand_as(z))
