"""How a classifier is fine-tuned: the ``finetune`` section of the evaluate and finetune configs, as plain data
(no torch here, so the configs load and ``--help`` answers without it; :mod:`eossl.train.supervised` trains)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from eossl.config import field

if TYPE_CHECKING:
    import torch

__all__ = ["FinetuneSettings"]


@dataclass
class FinetuneSettings:
    """How a classifier is fine-tuned (the ``finetune`` section of the evaluate and finetune configs)."""

    epochs: int = field(30, ge=1)
    min_steps: int = field(60, ge=1, help="at least this many optimiser steps however few the labels")
    batch_size: int = field(32, ge=2)
    lr: float = field(1e-3, gt=0, help="AdamW peak LR of the head; layers get lr * layer_decay ** (L - depth)")
    weight_decay: float = field(0.05, ge=0)
    layer_decay: float | None = field(0.75, gt=0, le=1, help="layer-wise LR decay; null: off")
    warmup_fraction: float = field(0.1, ge=0, lt=1)
    freeze_backbone: bool = False
    frozen_depth: int = field(-1, ge=-1, help="backbone parameters at this depth or shallower stay frozen, their "
                                              "BatchNorm statistics too (ResNet: 0 stem, 1-4 layer1-4; ViT: 0 "
                                              "embeddings, i + 1 block i); -1: none")
    linear_probe_first: bool = field(False, help="LP-FT: start the head from a logistic regression on the frozen "
                                                 "features of the training chips (C from probe_C_grid by "
                                                 "cross-validation on them), then fine-tune")
    probe_C_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0],
                                      help="C values of linear_probe_first's logistic regression")
    val_fraction: float = field(0.0, ge=0, lt=1, help="early stopping: hold out this fraction of each class's "
                                                      "training chips (classes with 2 or more) as a validation "
                                                      "split, keep the weights of the best epoch; 0: off")
    patience: int = field(5, ge=1, help="early stopping: epochs without a better validation score before stopping")
    precision: Literal["auto", "fp32", "bf16"] = field("auto", help="auto: bf16 autocast on GPU, float32 on CPU")

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"fine-tuning needs epochs >= 1, batch_size >= 1 and lr > 0, got {self}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1] or null, got {self.layer_decay}")

    def bf16(self, device: str | torch.device) -> bool:
        """Whether to autocast to bf16 on ``device``: asked for, or ``auto`` on a CUDA device."""
        return self.precision == "bf16" or (self.precision == "auto" and str(device).startswith("cuda"))
