"""The one generic LightningModule for SSL pretraining.

It owns what every method shares: views made on the device after transfer (``ViewGenerator``), optimiser with
parameter groups, base-LR scaling by effective batch size, cosine schedule with warmup, the EMA update of target
encoders with its momentum schedule, bf16 autocast on GPU, collapse monitors, and a guard that stops on a
non-finite loss naming the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch

from eossl.augment.views import ViewGenerator
from eossl.methods.base import Method
from eossl.train.monitors import effective_rank, embedding_std
from eossl.train.optim import build_optimizer, cosine_with_warmup, ema_momentum, ema_update, scaled_lr

__all__ = ["OptimConfig", "SSLModule", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw", "lars"] = "sgd"
    base_lr: float = 0.05          # per 256 samples of effective batch
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_steps: int = 10
    total_steps: int = 100
    ema_base: float = 0.99


class SSLModule(L.LightningModule):
    """``method`` (backbone + heads + loss) trained on views made by ``views`` from reflectance batches."""

    def __init__(self, method: Method, views: ViewGenerator, optim: OptimConfig, batch_size: int):
        super().__init__()
        self.method = method
        self.views = views
        self.optim_cfg = optim
        self.batch_size = batch_size
        self.lr = None  # computed once in configure_optimizers, from the effective batch size

    def effective_batch(self) -> int:
        world = self.trainer.world_size if self._trainer is not None else 1
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return self.batch_size * world * accumulate

    def configure_optimizers(self):
        cfg = self.optim_cfg
        self.lr = scaled_lr(cfg.base_lr, self.effective_batch())
        opt = build_optimizer(self.method, cfg.name, self.lr, cfg.weight_decay, cfg.momentum)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: cosine_with_warmup(step, cfg.total_steps, min(cfg.warmup_steps, cfg.total_steps)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        views = self.views(batch["image"], batch["mask"], batch.get("image2"), batch.get("mask2"))
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = self.method.loss(views)
        else:
            out = self.method.loss(views)
        loss = out["loss"].float()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                                     f"lower the learning rate or check the input normalisation")
        z = out["embedding"].detach()
        self.log_dict({"loss": loss.detach(), "embedding_std": embedding_std(z), "effective_rank": effective_rank(z),
                       "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}, prog_bar=True, on_step=True,
                      batch_size=batch["image"].shape[0])
        self.log_dict({"effective_batch": float(self.effective_batch()), "peak_lr": float(self.lr)}, on_step=True,
                      batch_size=batch["image"].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if not self.method.uses_ema:
            return
        m = ema_momentum(self.global_step, self.optim_cfg.total_steps, self.optim_cfg.ema_base)
        for online, target in self.method.ema_pairs():
            ema_update(target, online, m)
        self.log("ema_momentum", m, on_step=True)
