"""Online clustering: SwAV's Sinkhorn-Knopp codes and its swapped-prediction loss.

SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eossl.distributed import all_reduce_sum, world_size

__all__ = ["sinkhorn", "swav_loss"]


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """(B, K) prototype scores -> (B, K) soft codes (each row sums to 1) that spread the batch of every device
    evenly over the K prototypes: ``iterations`` Sinkhorn-Knopp steps on ``exp(scores / epsilon)``, the
    prototype sums reduced over devices (equal batches per device give the single-process codes of the whole
    batch). No gradient."""
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError(f"scores must be (B, K) with B >= 1, got {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1, got {epsilon} and {iterations}")
    q = torch.exp(scores.to(torch.promote_types(scores.dtype, torch.float32)) / epsilon).T    # (K, B)
    k, b = q.shape[0], q.shape[1] * world_size()
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))       # every prototype gets 1 / K of the mass
        q /= k
        q /= q.sum(dim=0, keepdim=True)                       # every sample gets 1 / B
        q /= b
    return (q * b).T


def swav_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """Swapped prediction: the codes of view i (``codes[i]``, for the first ``len(codes)`` views) are predicted from
    the scores of every other view v, ``-sum_k q_ik log softmax(s_v / temperature)_k`` averaged over the batch,
    over the other views, then over the coded views. ``scores``: (B, K) per view; codes are used as constants."""
    if not codes or len(scores) < 2 or len(codes) > len(scores):
        raise ValueError(f"SwAV needs at least two views and codes for some of them, got {len(scores)} views and "
                         f"{len(codes)} codes")
    if any(s.shape != scores[0].shape for s in [*scores, *codes]) or scores[0].ndim != 2:
        raise ValueError(f"scores and codes must all be (B, K) of one shape, got "
                         f"{[tuple(s.shape) for s in [*scores, *codes]]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p = [F.log_softmax(s.to(torch.promote_types(s.dtype, torch.float32)) / temperature, dim=1) for s in scores]
    total = 0.0
    for i, q in enumerate(codes):
        q = q.detach().to(log_p[0].dtype)
        total = total + sum(-(q * log_p[v]).sum(dim=1).mean() for v in range(len(scores)) if v != i) / (len(scores) - 1)
    return total / len(codes)
