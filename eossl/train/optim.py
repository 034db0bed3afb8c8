"""Optimisers, parameter groups and schedules for SSL pretraining.

* parameter groups: no weight decay (and no LARS adaptation) on biases and normalisation parameters (1-D);
* LARS: You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017 (as used by Barlow
  Twins / VICReg / BYOL), SGD with momentum on a layer-wise trust ratio;
* learning rate: ``base_lr * effective_batch / 256`` (Goyal et al., 2017), cosine decay after linear warmup
  (:func:`eossl.schedule.cosine_with_warmup`, re-exported here);
* EMA momentum for target encoders: cosine increase from ``base`` to 1 (BYOL, MoCo v3).

Why these are written here rather than taken from lightly (installed with torchgeo): lightly's ``LARS`` (from
Lightning Bolts) divides by ``||g|| + wd * ||w||`` instead of the paper's ``||g + wd * w||`` and turns the layer
adaptation off for every group whose weight decay is 0, so ``optim.weight_decay: 0`` would silently make LARS
plain SGD; here the adaptation is a per-group flag (``lars_exclude``) and the trust ratio is the paper's.
lightly's ``cosine_schedule`` reaches its end value at ``max_steps - 1`` (a Lightning epoch-end special case),
one step early for a step-based schedule with warmup. The parameter groups split by dimensionality
(ndim <= 1: biases, every normalisation layer's affine parameters and learned scalars, whatever the module class),
where ``lightly.models.utils.get_weight_decay_parameters`` needs a list of norm-layer classes.
``tests/test_optim.py`` checks each against a written-out formula.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from eossl.schedule import cosine_with_warmup  # the one schedule, shared with evaluate/ (core layer)

__all__ = ["param_groups", "LARS", "build_optimizer", "scaled_lr", "cosine_with_warmup", "ema_momentum",
           "ema_update"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and norm parameters (ndim <= 1) without, and excluded from LARS."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio ``eta * ||w|| / ||g + wd * w||`` (groups with
    ``lars_exclude`` use plain SGD with momentum)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if not group["lars_exclude"]:
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    d = d.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, name: Literal["sgd", "adamw", "lars"], lr: float, weight_decay: float,
                    momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.95),
                    trust_coefficient: float = 0.001) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD([{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups], lr=lr,
                               momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW([{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups], lr=lr,
                                 betas=betas)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=trust_coefficient)
    raise ValueError(f"unknown optimizer {name!r}; allowed: sgd, adamw, lars")


def scaled_lr(base_lr: float, effective_batch: int, reference: int = 256,
              rule: Literal["linear", "sqrt"] = "linear") -> float:
    """Linear scaling rule ``base_lr * effective_batch / reference`` (Goyal et al., 2017), or square-root scaling
    ``base_lr * sqrt(effective_batch / reference)`` (SimCLR, Chen et al., 2020: better for small batches)."""
    if effective_batch < 1:
        raise ValueError(f"effective batch size must be >= 1, got {effective_batch}")
    if rule == "linear":
        return base_lr * effective_batch / reference
    if rule == "sqrt":
        return base_lr * math.sqrt(effective_batch / reference)
    raise ValueError(f"unknown LR scaling rule {rule!r}; allowed: linear, sqrt")


def ema_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """Target-encoder momentum rising from ``base`` at step 0 to 1 at the end (cosine)."""
    if not 0 <= base <= 1:
        raise ValueError(f"base momentum must be in [0, 1], got {base}")
    progress = min(1.0, step / max(1, total_steps))
    return 1 - (1 - base) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)
