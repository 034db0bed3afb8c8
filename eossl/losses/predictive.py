"""Joint-embedding prediction: I-JEPA's context and target blocks on the patch grid, and its loss.

I-JEPA: Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture",
CVPR 2023.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["jepa_blocks", "jepa_loss"]


def _block(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], size: tuple[int, int] | None,
           g: torch.Generator) -> tuple[torch.Tensor, tuple[int, int]]:
    """Row-major patch indices of one rectangle on an h x w grid (its size drawn from scale/ratio unless given)."""
    if size is None:
        s = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=g))
        r = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * float(torch.rand((), generator=g)))
        size = (min(h, max(1, round(math.sqrt(s * h * w / r)))), min(w, max(1, round(math.sqrt(s * h * w * r)))))
    bh, bw = size
    top = int(torch.randint(h - bh + 1, (), generator=g))
    left = int(torch.randint(w - bw + 1, (), generator=g))
    rows = torch.arange(top, top + bh)[:, None]
    return (rows * w + torch.arange(left, left + bw)[None, :]).reshape(-1), size


def jepa_blocks(grid: tuple[int, int], generator: torch.Generator, n_targets: int = 4,
                target_scale: tuple[float, float] = (0.15, 0.2), target_ratio: tuple[float, float] = (0.75, 1.5),
                context_scale: tuple[float, float] = (0.85, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA's masks on an (h, w) patch grid: ``(context (Nc,), targets (n_targets, Nt))`` row-major patch
    indices. The target blocks share one size (area ``target_scale`` of the grid, aspect ``target_ratio``) at
    their own positions; the context is a square-ish block (``context_scale``) without any target patch, and
    never empty (a grid too small to leave one gets the patches no target covers, or an error)."""
    h, w = grid
    if h < 1 or w < 1 or n_targets < 1:
        raise ValueError(f"need a grid of at least 1 x 1 patches and n_targets >= 1, got {grid} and {n_targets}")
    first, size = _block(h, w, target_scale, target_ratio, None, generator)
    targets = torch.stack([first] + [_block(h, w, target_scale, target_ratio, size, generator)[0]
                                     for _ in range(n_targets - 1)])
    covered = torch.zeros(h * w, dtype=torch.bool)
    covered[targets.reshape(-1)] = True
    context, _ = _block(h, w, context_scale, (1.0, 1.0), None, generator)
    context = context[~covered[context]]
    if context.numel() == 0:
        context = torch.nonzero(~covered).reshape(-1)
    if context.numel() == 0:
        raise ValueError(f"{n_targets} target blocks cover the whole {h} x {w} patch grid: ask for fewer or smaller "
                         f"target blocks (method.params, see eossl.methods.jepa.IJEPA) or use larger chips")
    return context, targets


def jepa_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 distance between predicted and target patch representations (B, N, D), the targets layer-normed
    over D and detached (the target encoder is an EMA), as in the official code."""
    if predictions.shape != targets.shape or predictions.ndim != 3:
        raise ValueError(f"predictions and targets must both be (B, N, D), got {tuple(predictions.shape)} and "
                         f"{tuple(targets.shape)}")
    t = targets.detach().float()
    return F.smooth_l1_loss(predictions.float(), F.layer_norm(t, t.shape[-1:]))
