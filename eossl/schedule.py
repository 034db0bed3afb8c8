"""The one learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter, "SGDR", ICLR 2017; warmup
as in Goyal et al., 2017).

It lives in the core layer, below ``evaluate`` and ``train``, because every optimiser loop uses it: SSL
pretraining (:mod:`eossl.train.module`), pixel time-series pretraining (:mod:`eossl.train.series_pretrain`) and
full fine-tuning (:mod:`eossl.train.supervised`). Plain ``math``, no torch,
so importing it costs nothing. :mod:`eossl.train.optim` re-exports it.
"""

from __future__ import annotations

import math

__all__ = ["cosine_with_warmup"]


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warmup, then cosine to ``final_fraction``."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {total_steps}, "
                         f"{warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
