"""Similarity and contrastive losses.

SimSiam: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
BYOL: Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.
MoCo v2: Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020 (InfoNCE with a queue).
MoCo v3: Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021.
SimCLR: Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020 (NT-Xent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must both be (B, D) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{names}: empty batch")


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean of ``-cos(p_i, z_i)`` with ``z`` detached (the stop-gradient of SimSiam/BYOL). (B, D), (B, D) -> ()."""
    _check_pair(p, z, "p and z")
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetric SimSiam loss: ``(D(p1, z2) + D(p2, z1)) / 2``; in [-1, 1], -1 when predictions match."""
    return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetrised loss ``L + L~``: the mean squared distance between L2-normalised online predictions and
    the other view's target projections, ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, with the targets detached.
    In [0, 8]; 0 when every prediction points along its target."""
    return 4 + 2 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor | None = None,
             temperature: float = 0.2, positive_offset: int = 0) -> torch.Tensor:
    """InfoNCE with L2-normalised embeddings, mean over the queries.

    ``q`` (B, D) queries, ``k`` (Bk, D) keys. Without ``negatives`` (in-batch) the positive of query i is key
    ``positive_offset + i`` and every other key is a negative; with keys gathered from all devices
    (:func:`eossl.distributed.gather_with_grad`) pass ``positive_offset = rank * B``. With ``negatives`` (N, D)
    (a MoCo queue, treated as constants) query i is scored against its own key ``k[i]`` and the N negatives.
    ``k`` is used as given (detach it for a momentum encoder).
    """
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"q and k must be (B, D) and (Bk, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if q.shape[0] < 1:
        raise ValueError("info_nce: empty batch of queries")
    if positive_offset < 0:
        raise ValueError(f"positive_offset must be >= 0, got {positive_offset}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    b = q.shape[0]
    if negatives is None:
        if k.shape[0] < positive_offset + b:
            raise ValueError(f"in-batch InfoNCE: keys {positive_offset}..{positive_offset + b - 1} are the "
                             f"positives, but only {k.shape[0]} keys were given")
        logits = q @ k.T / temperature
        target = torch.arange(b, device=q.device) + positive_offset
    else:
        if k.shape[0] != b:
            raise ValueError(f"with a queue, k must hold one positive key per query ({k.shape[0]} != {b})")
        if negatives.ndim != 2 or negatives.shape[1] != q.shape[1]:
            raise ValueError(f"negatives must be (N, {q.shape[1]}), got {tuple(negatives.shape)}")
        neg = F.normalize(negatives.detach(), dim=1)
        pos = (q * k).sum(dim=1, keepdim=True)
        logits = torch.cat([pos, q @ neg.T], dim=1) / temperature
        target = torch.zeros(b, dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def moco_v3_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
                 temperature: float = 0.2, positive_offset: int = 0) -> torch.Tensor:
    """Symmetric in-batch InfoNCE of MoCo v3: ``2T * (CE(q1, k2) + CE(q2, k1))``, as in the paper's code.

    ``q1, q2``: predictions of the online encoder for views 1 and 2; ``k1, k2``: momentum keys (detached here),
    possibly gathered from every device (then ``positive_offset = rank * B``).
    """
    _check_pair(q1, q2, "q1 and q2")
    return 2 * temperature * (info_nce(q1, k2.detach(), temperature=temperature, positive_offset=positive_offset)
                              + info_nce(q2, k1.detach(), temperature=temperature, positive_offset=positive_offset))


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent, mean over the 2B anchors: each embedding of ``z1``/``z2`` (B, D) is scored by cosine
    similarity / ``temperature`` against the other 2B - 1; its positive is the other view of the same sample.

    Symmetric in the two views. Pass batches gathered from every device
    (:func:`eossl.distributed.gather_with_grad`): every rank then computes the full-batch loss. A batch of one
    sample has no negatives and gives 0.
    """
    _check_pair(z1, z2, "z1 and z2")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    self_pairs = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    logits = z @ z.T / temperature
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)).masked_fill(self_pairs, float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, target)
