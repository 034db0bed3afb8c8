"""Redundancy-reduction losses.

Barlow Twins: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021.
VICReg: Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization", ICLR 2022.

Both use statistics over the batch: under DDP pass embeddings gathered from every device (with gradients),
see :func:`eossl.distributed.gather_with_grad`, so the loss equals the single-process loss on the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eossl.losses.contrastive import _check_pair


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` the cross-correlation of the batch-
    standardised embeddings (biased std, as batch norm without affine). (B, D), (B, D) -> (); B >= 2."""
    _check_pair(z1, z2, "z1 and z2")
    if z1.shape[0] < 2:
        raise ValueError("Barlow Twins needs a batch of at least 2 to standardise over the batch")
    n = z1.shape[0]
    a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    b = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    c = a.T @ b / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = _off_diagonal(c).pow(2).sum()
    return on + lambd * off


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4
                 ) -> dict[str, torch.Tensor]:
    """The three VICReg terms: invariance (MSE), variance (hinge on the std), covariance (off-diagonal^2 / D)."""
    _check_pair(z1, z2, "z1 and z2")
    if z1.shape[0] < 2:
        raise ValueError("VICReg needs a batch of at least 2 for its variance and covariance terms")
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    var, cov = z1.new_zeros(()), z1.new_zeros(())
    for z in (z1, z2):
        zc = z - z.mean(0)
        std = torch.sqrt(zc.var(0) + eps)
        var = var + F.relu(gamma - std).mean() / 2
        c = zc.T @ zc / (n - 1)
        cov = cov + _off_diagonal(c).pow(2).sum() / d
    return {"invariance": inv, "variance": var, "covariance": cov}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0) -> torch.Tensor:
    """``sim * invariance + std * variance + cov * covariance``, the coefficients of the paper. (B, D) x2 -> ()."""
    t = vicreg_terms(z1, z2)
    return sim_coeff * t["invariance"] + std_coeff * t["variance"] + cov_coeff * t["covariance"]
