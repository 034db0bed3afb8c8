"""Self-distillation: DINO's cross-entropy between a centred, sharpened teacher and the student, and its centre.

DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eossl.distributed import all_reduce_mean

__all__ = ["dino_loss", "dino_center"]


def _stack(outputs: list[torch.Tensor], what: str) -> torch.Tensor:
    if not outputs or any(o.ndim != 2 or o.shape != outputs[0].shape for o in outputs):
        raise ValueError(f"{what} must be a non-empty list of (B, K) tensors of one shape, got "
                         f"{[tuple(o.shape) for o in outputs]}")
    x = torch.stack(outputs)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def dino_loss(teacher: list[torch.Tensor], student: list[torch.Tensor], center: torch.Tensor,
              teacher_temp: float = 0.04, student_temp: float = 0.1) -> torch.Tensor:
    """``-softmax((t_i - center) / teacher_temp) . log_softmax(s_j / student_temp)`` summed over the K outputs and
    averaged over the batch and every pair of teacher view i and student view j != i (a view is not its own
    target); teacher views are the first ones of the student's list. Teacher outputs (detached here) and student
    outputs are lists of (B, K) logits, one per view; ``center`` is (1, K) or (K,)."""
    t = _stack(teacher, "teacher outputs").detach()
    s = _stack(student, "student outputs")
    if t.shape[1:] != s.shape[1:] or center.shape[-1] != t.shape[-1]:
        raise ValueError(f"teacher {tuple(t.shape[1:])}, student {tuple(s.shape[1:])} and centre "
                         f"{tuple(center.shape)} must agree on (B, K)")
    if teacher_temp <= 0 or student_temp <= 0:
        raise ValueError(f"temperatures must be > 0, got teacher {teacher_temp} and student {student_temp}")
    targets = F.softmax((t - center.detach().to(t.dtype)) / teacher_temp, dim=-1)
    per_pair = -torch.einsum("tbk,sbk->ts", targets, F.log_softmax(s / student_temp, dim=-1))
    keep = ~torch.eye(len(t), len(s), dtype=torch.bool, device=per_pair.device)
    if not keep.any():
        raise ValueError("DINO needs at least two views: a view is never its own target")
    return per_pair[keep].sum() / (keep.sum() * t.shape[1])


@torch.no_grad()
def dino_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """The next centre: ``momentum * center + (1 - momentum) * mean`` of the teacher outputs over views and the
    batch, averaged over every device (equal batches per device give the single-process mean)."""
    batch = all_reduce_mean(_stack(teacher, "teacher outputs").mean(dim=(0, 1)))
    return (center.to(batch.dtype) * momentum + batch * (1 - momentum)).to(center.dtype)
