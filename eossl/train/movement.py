"""Is the backbone training at all? Per-stage weight movement and gradient norms.

A pretraining run whose backbone stays where its random initialisation put it can still show a falling loss:
the heads and the batch-norm statistics adapt while the convolutions do not. The monitor makes that visible:

* ``move/<stage>``: ``||w - w0|| / ||w0||`` over the stage's weight tensors (ndim >= 2: convolution kernels,
  linear layers, embeddings), ``w0`` being the weights at step 0 of the run (saved once, so a resumed run still
  measures from its initialisation);
* ``grad/<stage>``: the norm of the stage's gradient before the optimiser step (gradient flow to every stage).

Stages: ResNet ``conv1`` (stem), ``layer1``..``layer4``; ViT ``patch_embed``, ``blocks.0``..``blocks.N``, ``norm``;
any other model: its top-level children.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from eossl.runs import atomic_write

__all__ = ["stage_of", "stage_weights", "relative_change", "grad_norms", "WeightMovement", "INIT_FILE",
           "slow_stages"]

log = logging.getLogger(__name__)
INIT_FILE = "init_backbone.safetensors"
_SPLIT = ("blocks", "stages")   # sequences of blocks whose members are stages of their own


def stage_of(name: str) -> str:
    """The stage a parameter belongs to: ``layer3.1.conv2.weight`` -> ``layer3``, ``blocks.4.mlp...`` ->
    ``blocks.4``, ``bn1.weight`` -> ``conv1`` (the stem's norm belongs to the stem)."""
    parts = name.split(".")
    if parts[0] in _SPLIT and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
    return "conv1" if parts[0] == "bn1" else parts[0]


def stage_weights(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{stage: {name: weight}}`` for the weight tensors (ndim >= 2) of ``model`` (a module, or a state dict of
    one), in model order."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    named = model.named_parameters() if isinstance(model, nn.Module) else model.items()
    for name, p in named:
        if p.ndim >= 2:
            out.setdefault(stage_of(name), {})[name] = p
    return out


@torch.no_grad()
def relative_change(model: nn.Module | Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``{stage: ||w - w0|| / ||w0||}`` of ``model`` (a module or its state dict) against ``init`` (a state dict
    holding at least the weight tensors)."""
    out = {}
    for stage, params in stage_weights(model).items():
        diff = ref = 0.0
        for name, p in params.items():
            if name not in init:
                raise KeyError(f"the initial weights have no {name!r}; were they saved from another model?")
            w0 = init[name].to(device=p.device, dtype=torch.float32)
            diff += float((p.detach().float() - w0).pow(2).sum())
            ref += float(w0.pow(2).sum())
        out[stage] = (diff ** 0.5) / max(ref ** 0.5, 1e-12)
    return out


@torch.no_grad()
def grad_norms(model: nn.Module) -> dict[str, float]:
    """``{stage: ||grad||}`` over the stage's weight tensors; 0 for a stage whose gradients are all missing."""
    out = {}
    for stage, params in stage_weights(model).items():
        sq = [p.grad.detach().float().pow(2).sum() for p in params.values() if p.grad is not None]
        out[stage] = float(torch.stack(sq).sum().sqrt()) if sq else 0.0
    return out


def slow_stages(movement: dict[str, float], threshold: float) -> list[str]:
    """The stages that moved less than ``threshold`` (relative change)."""
    return [s for s, v in movement.items() if v < threshold]


class WeightMovement(L.Callback):
    """Logs ``move/<stage>`` and ``grad/<stage>`` of ``pl_module.method.backbone`` every ``every`` steps.

    The initial weights are written to ``init_path`` when the run starts (before a checkpoint is restored, so a
    resumed run finds the file of its first attempt and keeps measuring from the true initialisation).
    """

    def __init__(self, init_path: str | Path, every: int):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.init_path = Path(init_path)
        self.every = every
        self._init: dict[str, torch.Tensor] | None = None
        self.last: dict[str, float] = {}

    @staticmethod
    def _backbone(pl_module) -> nn.Module:
        return pl_module.method.backbone

    def setup(self, trainer, pl_module, stage: str) -> None:
        # rank 0 decides and tells the others: a rank that looked after rank 0 had written the file would skip the
        # barrier rank 0 waits at, and the ranks would deadlock in different collectives
        missing = trainer.strategy.broadcast(not self.init_path.is_file(), src=0)
        if missing:
            if trainer.global_rank == 0:
                state = {k: v.detach().float().cpu().contiguous()
                         for k, v in self._backbone(pl_module).state_dict().items() if v.ndim >= 2}
                self.init_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.init_path, lambda tmp: save_file(state, str(tmp)))
            trainer.strategy.barrier("eossl-init-weights")
        self._init = load_file(str(self.init_path))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        """On the steps the collapse monitors are logged: this step's gradients, and the movement of the weights
        the step starts from (after ``global_step`` updates)."""
        if trainer.global_step % self.every == 0:
            backbone = self._backbone(pl_module)
            self.last = relative_change(backbone, self._init)
            pl_module.log_dict({**{f"grad/{k}": v for k, v in grad_norms(backbone).items()},
                                **{f"move/{k}": v for k, v in self.last.items()}}, on_step=True, on_epoch=False)
