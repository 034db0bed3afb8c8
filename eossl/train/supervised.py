"""Supervised training of a classifier: full fine-tuning of a backbone + linear head on few labelled chips, with
optional layer-wise LR decay (evaluation's ``finetune`` protocol and ``eossl finetune`` call it; the same routine
from a randomly initialised backbone is the "supervised from scratch" baseline).

The LR follows the one warmup + cosine schedule (:func:`eossl.schedule.cosine_with_warmup`, over
``max(epochs * steps per epoch, min_steps)`` optimiser steps, warmup ``warmup_fraction`` of them).

Layer-wise LR decay (BEiT, Bao et al. 2022): depth ``d`` of ``L`` gets ``lr * layer_decay ** (L - d)``; the head
has depth ``L`` (full LR). ResNet depths: stem 0, layer1..layer4 = 1..4. ViT: embeddings 0, block i = i + 1,
final norm = L. No weight decay on norms and biases.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from tqdm.auto import tqdm

from eossl.data.normalization import Normalization
from eossl.models.classifier import Classifier
from eossl.schedule import cosine_with_warmup
from eossl.train.finetune_settings import FinetuneSettings

__all__ = ["FinetuneSettings", "finetune_classifier", "layer_depths"]


def layer_depths(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every backbone parameter (name -> depth) and the number of depths ``L`` (the head's depth)."""
    depths = {}
    if isinstance(backbone, ResNet):
        for name, _ in backbone.named_parameters():
            depths[name] = int(name[len("layer")]) if name.startswith("layer") else 0
        return depths, 5
    if isinstance(backbone, VisionTransformer):
        n = len(backbone.blocks)
        for name, _ in backbone.named_parameters():
            depths[name] = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else (
                n + 1 if name.startswith(("norm", "fc_norm", "head")) else 0)
        return depths, n + 2
    return {name: 0 for name, _ in backbone.named_parameters()}, 1


def _param_groups(model: Classifier, s: FinetuneSettings) -> list[dict]:
    depths, top = layer_depths(model.backbone)
    groups: dict[tuple[float, float], list] = {}
    named = [(f"backbone.{n}", p, depths[n]) for n, p in model.backbone.named_parameters()]
    named += [(f"head.{n}", p, top) for n, p in model.head.named_parameters()]
    for name, p, depth in named:
        if not p.requires_grad:
            continue
        scale = 1.0 if s.layer_decay is None else s.layer_decay ** (top - depth)
        wd = 0.0 if p.ndim <= 1 or name.endswith(".bias") else s.weight_decay
        groups.setdefault((scale, wd), []).append(p)
    return [{"params": ps, "lr": s.lr * scale, "weight_decay": wd, "lr_scale": scale}
            for (scale, wd), ps in groups.items()]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random dihedral transform per sample (exact on pixels: rot90 and flips). (B, C, H, W) -> same."""
    out = torch.empty_like(x)
    ks = torch.randint(0, 4, (x.shape[0],), generator=gen)
    flips = torch.rand(x.shape[0], generator=gen) < 0.5
    for i in range(x.shape[0]):
        xi = torch.rot90(x[i], int(ks[i]), dims=(1, 2))
        out[i] = xi.flip(-1) if flips[i] else xi
    return out


def finetune_classifier(backbone: nn.Module, images: np.ndarray, labels: np.ndarray, train_idx, n_classes: int,
                        norm: Normalization, settings: FinetuneSettings | None = None, seed: int = 0,
                        device: str | torch.device = "cpu", progress: bool = False) -> Classifier:
    """Train ``Classifier(backbone, n_classes)`` on ``images[train_idx]`` ((N, C, H, W) reflectance, normalised
    here with ``norm``, a :class:`~eossl.data.normalization.Normalization` of the C bands) with cross-entropy; returns it in eval mode. Deterministic from ``seed``
    on CPU. The backbone module is trained in place (pass a copy to keep the original)."""
    s = settings or FinetuneSettings()
    train_idx = np.asarray(train_idx)
    if train_idx.size == 0:
        raise ValueError("no training chips to fine-tune on")
    torch.manual_seed(seed)
    model = Classifier(backbone, n_classes, "patch").to(device)
    if s.freeze_backbone:
        model.backbone.requires_grad_(False)
    x_all = norm.apply(images[train_idx])
    y_all = torch.as_tensor(np.asarray(labels)[train_idx], dtype=torch.long)
    opt = torch.optim.AdamW(_param_groups(model, s), lr=s.lr)
    steps_per_epoch = math.ceil(len(train_idx) / s.batch_size)
    total = max(s.epochs * steps_per_epoch, s.min_steps)
    warmup = int(s.warmup_fraction * total)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    if s.freeze_backbone:
        model.backbone.eval()      # frozen BN statistics too
    bar = tqdm(total=total, desc="fine-tune", unit="step", disable=not progress, leave=False)
    step, history = 0, []
    while step < total:
        order = torch.randperm(len(train_idx), generator=gen)
        for start in range(0, len(order), s.batch_size):
            if step >= total:
                break
            batch = order[start:start + s.batch_size]
            if batch.numel() < 2 and len(order) >= 2:   # BatchNorm needs 2 samples; fold a last single one away
                continue
            factor = cosine_with_warmup(step, total, warmup)
            for g in opt.param_groups:
                g["lr"] = s.lr * g["lr_scale"] * factor
            x = _augment(x_all[batch], gen).to(device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=s.bf16(device)):
                loss = nn.functional.cross_entropy(model(x).float(), y_all[batch].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss is {loss.item()} at step {step}; lower the LR")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append((step, float(loss.detach()), opt.param_groups[-1]["lr"]))
            step += 1
            bar.update(1)
    bar.close()
    model.history = history        # (step, loss, lr of the last parameter group) per optimiser step
    return model.eval()
