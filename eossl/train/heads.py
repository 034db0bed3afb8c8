"""Supervised fits of the temporal heads over a field's per-date features (:mod:`eossl.models.field_heads`):
full batch, AdamW, seeded; the crop task (:mod:`eossl.evaluate.crops`) scores what they return.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eossl.models.field_heads import TemporalAttention, feature_stats, ltae_inputs

__all__ = ["fit_attention", "fit_ltae"]


def fit_attention(feats: np.ndarray, date_valid: np.ndarray, labels: np.ndarray, positions: np.ndarray,
                  n_classes: int, *, seed: int = 0, epochs: int = 150, lr: float = 1e-2,
                  weight_decay: float = 1e-2) -> TemporalAttention:
    """Train a :class:`TemporalAttention` on (N, T, D) training features with AdamW, full batch, seeded.

    Standardisation statistics come from the valid training dates. Deterministic on CPU for a given seed.
    """
    x = torch.as_tensor(feats, dtype=torch.float32)
    valid = torch.as_tensor(date_valid, dtype=torch.bool)
    y = torch.as_tensor(labels, dtype=torch.int64)
    pos = torch.as_tensor(positions, dtype=torch.int64)
    mean, std = feature_stats(x, valid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TemporalAttention(x.shape[-1], n_classes, max(12, int(pos.max()) + 1), mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, valid, pos), y)
        if not torch.isfinite(loss):
            raise ValueError(f"temporal attention: non-finite loss {loss.item()}; check the features")
        loss.backward()
        opt.step()
    return model.eval()


def fit_ltae(feats: np.ndarray, date_valid: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int = 0,
             epochs: int = 150, lr: float = 1e-3, weight_decay: float = 1e-2) -> nn.Module:
    """Train torchgeo's L-TAE (:func:`eossl.models.temporal.ltae_head`) plus a linear layer on (N, T, D)
    per-date training features, AdamW, full batch, seeded; standardised with the valid training dates'
    statistics, missing dates filled (:func:`~eossl.models.field_heads.ltae_inputs`). Returns the model in eval mode with ``mean``/``std``."""
    from eossl.models.temporal import ltae_head

    x = torch.as_tensor(feats, dtype=torch.float32)
    valid = torch.as_tensor(date_valid, dtype=torch.bool)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if x.shape[0] < 2:
        raise ValueError("L-TAE needs at least 2 training fields (its MLP has batch normalisation)")
    mean, std = feature_stats(x, valid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ltae_head(x.shape[-1], n_classes, steps=x.shape[1])
        inputs = ltae_inputs(x, valid, mean, std)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        model.train()
        for _ in range(epochs):          # dropout draws come from the forked, seeded generator
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), y)
            if not torch.isfinite(loss):
                raise ValueError(f"L-TAE: non-finite loss {loss.item()}; check the features")
            loss.backward()
            opt.step()
    model.register_buffer("mean", mean)
    model.register_buffer("std", std)
    return model.eval()
