"""Predictions of a fine-tuned patch classifier (trained by :func:`eossl.train.supervised.finetune_classifier`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eossl.data.normalization import Normalization

__all__ = ["predict_chips"]


def predict_chips(model: nn.Module, images: np.ndarray, norm: Normalization, batch_size: int = 64,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """(N, C, H, W) reflectance -> (N, K) float32 class probabilities of a patch classifier (eval mode)."""
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = norm.apply(images[start:start + batch_size]).to(device)
            out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
