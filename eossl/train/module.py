"""The one generic LightningModule for SSL pretraining.

It owns what every method shares: views made on the device after transfer (``ViewGenerator``), optimiser with
parameter groups, base-LR scaling by effective batch size, cosine schedule with warmup, the EMA update of target
encoders with its momentum schedule, bf16 autocast (by default on GPUs and on CPUs with native bf16), collapse monitors, and a
guard that stops on a non-finite loss naming the step.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from eossl.augment.views import ViewGenerator
from eossl.methods.base import Method
from eossl.train.config import OptimConfig
from eossl.train.guard import NonFiniteLossError, check_finite_loss
from eossl.train.monitors import effective_rank, embedding_std
from eossl.train.optim import build_optimizer, cosine_with_warmup, ema_momentum, ema_update, scaled_lr

__all__ = ["OptimConfig", "SSLModule", "NonFiniteLossError", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16")
log = logging.getLogger(__name__)


def step_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    """The seed of one training step's randomness (views, masking): a function of where the step is, so a
    resumed run draws exactly what an uninterrupted one would."""
    return (((seed * 1_000_003 + epoch) * 1_000_033 + batch_idx) * 1009 + rank) % (2**63 - 1)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (oneDNN reports AVX512-BF16 or AMX support)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


class SSLModule(L.LightningModule):
    """``method`` (backbone + heads + loss) trained on views made by ``views`` from reflectance batches.

    ``total_steps`` sets the length of the cosine schedule and the EMA momentum schedule (optimiser steps);
    None takes the trainer's estimate from its epochs or max_steps, the data and the number of devices.
    Each step reseeds the views and torch's global generator from ``(seed, epoch, batch, rank)``.

    ``precision``: ``"auto"`` runs the method under bf16 autocast on CUDA and on CPUs with native bf16
    (AMX/AVX512-BF16, where a ResNet step is about 1.4x faster), in float32 elsewhere; ``"bf16"`` autocasts on any
    device (on a CPU without native bf16 it is emulated and about 25x slower: a warning says so); ``"fp32"`` never
    autocasts. Views, losses and parameters stay float32 either way. Under bf16 the views are handed to the
    method in channels_last layout, which convolution kernels prefer.
    """

    def __init__(self, method: Method, views: ViewGenerator, optim: OptimConfig, batch_size: int,
                 total_steps: int | None = None, seed: int = 0, precision: str = "auto"):
        super().__init__()
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.autocast_precision = precision
        self.method = method
        self.views = views
        self.optim_cfg = optim
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.seed = seed
        self.lr = None  # computed once in configure_optimizers, from the effective batch size

    def on_fit_start(self) -> None:
        if self.autocast_precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("trainer.precision=bf16 on a CPU without native bf16 (AVX512-BF16 or AMX; this one has %s): "
                        "bf16 is emulated there and a ResNet step is about 25x slower than float32 "
                        "(BENCHMARKS.md); set trainer.precision=auto to use bf16 only where it is fast",
                        torch.backends.cpu.get_cpu_capability())
        if self.uses_bf16():   # convolution weights too, so kernels need no layout conversion per call
            self.method.to(memory_format=torch.channels_last)

    def uses_bf16(self) -> bool:
        if self.autocast_precision != "auto":
            return self.autocast_precision == "bf16"
        return self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_native_bf16())

    def effective_batch(self) -> int:
        world = self.trainer.world_size if self._trainer is not None else 1
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return self.batch_size * world * accumulate

    def configure_optimizers(self):
        cfg = self.optim_cfg
        if self.total_steps is None:
            self.total_steps = int(self.trainer.estimated_stepping_batches)
        self.lr = scaled_lr(cfg.base_lr, self.effective_batch(), rule=cfg.lr_scaling)
        opt = build_optimizer(self.method, cfg.name, self.lr, cfg.weight_decay, cfg.momentum,
                              trust_coefficient=cfg.trust_coefficient)
        total, warmup = self.total_steps, min(cfg.warmup_steps, self.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_with_warmup(step, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["eossl"] = {"peak_lr": self.lr, "total_steps": self.total_steps,
                               "effective_batch": self.effective_batch()}

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        seed = step_seed(self.seed, self.current_epoch, batch_idx, self.global_rank)
        self.views.reseed(seed)
        torch.manual_seed(seed)  # methods' own randomness (MAE masking) and dropout

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        views = self.views(batch["image"], batch["mask"], batch.get("image2"), batch.get("mask2"))
        if self.uses_bf16():
            views = [_channels_last(v) for v in views]
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self.method.loss(views)
        else:
            out = self.method.loss(views)
        loss = out["loss"].float()
        check_finite_loss(loss, self.global_step, self.current_epoch)
        n = batch["image"].shape[0]
        self.log_dict({"loss": loss.detach(), "lr": self.trainer.optimizers[0].param_groups[0]["lr"]},
                      prog_bar=True, on_step=True, batch_size=n)
        if self.global_step % self.trainer.log_every_n_steps == 0:  # monitors (an SVD) only when they are written
            z = out["embedding"].detach()
            self.log_dict({"embedding_std": embedding_std(z), "effective_rank": effective_rank(z),
                           "effective_batch": float(self.effective_batch()), "peak_lr": float(self.lr)},
                          prog_bar=False, on_step=True, batch_size=n)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the EMA update of target networks (before any checkpoint of this step)."""
        super().optimizer_step(*args, **kwargs)
        if not self.method.uses_ema:
            return
        m = ema_momentum(self.global_step, self.total_steps, self.optim_cfg.ema_base)
        for online, target in self.method.ema_pairs():
            ema_update(target, online, m)
        self.log("ema_momentum", m, on_step=True)


def _channels_last(view):
    """A view (a tensor, or a dict/tuple holding the image) with its 4-D image tensors in channels_last layout."""
    if isinstance(view, torch.Tensor):
        return view.contiguous(memory_format=torch.channels_last) if view.ndim == 4 else view
    if isinstance(view, dict):
        return {k: _channels_last(v) for k, v in view.items()}
    if isinstance(view, (list, tuple)):
        return type(view)(_channels_last(v) for v in view)
    return view
