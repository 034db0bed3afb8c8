"""Supervised training of a classifier: full fine-tuning of a backbone + linear head on few labelled chips, with
optional layer-wise LR decay (evaluation's ``finetune`` protocol and ``eossl finetune`` call it; the same routine
from a randomly initialised backbone is the "supervised from scratch" baseline).

The LR follows the one warmup + cosine schedule (:func:`eossl.schedule.cosine_with_warmup`, over
``max(epochs * steps per epoch, min_steps)`` optimiser steps, warmup ``warmup_fraction`` of them).

Layer-wise LR decay (BEiT, Bao et al. 2022): depth ``d`` of ``L`` gets ``lr * layer_decay ** (L - d)``; the head
has depth ``L`` (full LR). ResNet depths: stem 0, layer1..layer4 = 1..4. ViT: embeddings 0, block i = i + 1,
final norm = L. No weight decay on norms and biases.

The recipe's other parts (:class:`~eossl.train.finetune_settings.FinetuneSettings`):

* ``linear_probe_first`` (LP-FT, Kumar et al. 2022): the head starts as the logistic regression of the frozen
  features of the training chips (its C chosen by cross-validation on them, :func:`eossl.train.logreg.choose_C`),
  so fine-tuning begins from a good head instead of distorting the features to fit a random one;
* ``frozen_depth``: the stem and early stages stay as pretrained (parameters and BatchNorm statistics);
* ``val_fraction``: early stopping on a validation split drawn from the training chips only (stratified, seeded);
  after each epoch the validation accuracy (then loss) is compared, the best epoch's weights are kept and training
  stops after ``patience`` epochs without improvement;
* augmentation: random rot90 and flips per chip, exact on pixels, so the ground sampling distance is kept.
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
from eossl.train.logreg import fit_logreg_standardised

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


def _freeze(model: Classifier, s: FinetuneSettings) -> list[nn.Module]:
    """Freeze the backbone (``freeze_backbone``) or its parameters of depth <= ``frozen_depth``; the modules whose
    BatchNorm statistics must stay as they are (kept in eval mode while training)."""
    if s.freeze_backbone:
        model.backbone.requires_grad_(False)
        return [model.backbone]
    if s.frozen_depth < 0:
        return []
    depths, _ = layer_depths(model.backbone)
    for name, p in model.backbone.named_parameters():
        if depths[name] <= s.frozen_depth:
            p.requires_grad_(False)
    return [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and all(not p.requires_grad for p in m.parameters(recurse=False))]


def _features(model: Classifier, x: torch.Tensor, device, batch: int = 128) -> np.ndarray:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = [model.backbone(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    model.train(was)
    return torch.cat(out).numpy()


def _probe_head(model: Classifier, x: torch.Tensor, y: np.ndarray, s: FinetuneSettings, seed: int, device) -> float:
    """LP-FT's start: the head set to the logistic regression of the frozen training features; returns its C."""
    fit = fit_logreg_standardised(_features(model, x, device), y, C_grid=s.probe_C_grid, seed=seed)
    w, b = fit.logits(model.n_classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(w, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(b, dtype=model.head.bias.dtype))
    return fit.C


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) positions into ``labels``: ``round(fraction * n)`` (at least 1) of each class with 2 or
    more samples held out, seeded; classes with one sample stay in the fitting side."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) >= 2:
            val.extend(rng.choice(idx, size=min(len(idx) - 1, max(1, round(fraction * len(idx)))), replace=False))
    val = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), val), val


def _val_score(model: Classifier, x: torch.Tensor, y: torch.Tensor, device) -> tuple[float, float]:
    """(accuracy, -loss) on the validation chips: larger is better, compared in that order."""
    was = model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 128].to(device)).float().cpu() for i in range(0, len(x), 128)])
    model.train(was)
    return float((logits.argmax(1) == y).float().mean()), -float(nn.functional.cross_entropy(logits, y))


def finetune_classifier(backbone: nn.Module, images: np.ndarray, labels: np.ndarray, train_idx, n_classes: int,
                        norm: Normalization, settings: FinetuneSettings | None = None, seed: int = 0,
                        device: str | torch.device = "cpu", progress: bool = False) -> Classifier:
    """Train ``Classifier(backbone, n_classes)`` on ``images[train_idx]`` ((N, C, H, W) reflectance, normalised
    here with ``norm``, a :class:`~eossl.data.normalization.Normalization` of the C bands) with cross-entropy, by the
    recipe of ``settings`` (module doc); returns it in eval mode, with ``history`` (step, loss, LR) and ``recipe``
    (what was done: the probe's C, the epochs run and the epoch kept). Deterministic from ``seed`` on CPU. The
    backbone module is trained in place (pass a copy to keep the original)."""
    s = settings or FinetuneSettings()
    train_idx = np.asarray(train_idx)
    if train_idx.size == 0:
        raise ValueError("no training chips to fine-tune on")
    torch.manual_seed(seed)
    model = Classifier(backbone, n_classes, "patch").to(device)
    frozen_bn = _freeze(model, s)
    y_np = np.asarray(labels)[train_idx]
    fit_pos, val_pos = (validation_split(y_np, s.val_fraction, seed) if s.val_fraction > 0
                        else (np.arange(len(train_idx)), np.zeros(0, np.int64)))
    x_all = norm.apply(images[train_idx])
    y_all = torch.as_tensor(y_np, dtype=torch.long)
    x_val, y_val = x_all[torch.as_tensor(val_pos)], y_all[torch.as_tensor(val_pos)]
    x_fit, y_fit = x_all[torch.as_tensor(fit_pos)], y_all[torch.as_tensor(fit_pos)]
    recipe = {"fit_chips": int(len(fit_pos)), "val_chips": int(len(val_pos))}
    if s.linear_probe_first:
        recipe["probe_C"] = _probe_head(model, x_fit, y_fit.numpy(), s, seed, device)
    opt = torch.optim.AdamW(_param_groups(model, s), lr=s.lr)
    n = len(fit_pos)
    steps_per_epoch = math.ceil(n / s.batch_size)
    total = max(s.epochs * steps_per_epoch, s.min_steps)
    warmup = int(s.warmup_fraction * total)
    gen = torch.Generator().manual_seed(seed)

    def train_mode():
        model.train()
        for m in frozen_bn:
            m.eval()                # frozen BN statistics too

    train_mode()
    bar = tqdm(total=total, desc="fine-tune", unit="step", disable=not progress, leave=False)
    step, epoch, history = 0, 0, []
    best, best_state, best_epoch, stale = None, None, 0, 0
    while step < total:
        order = torch.randperm(n, generator=gen)
        for start in range(0, len(order), s.batch_size):
            if step >= total:
                break
            batch = order[start:start + s.batch_size]
            if batch.numel() < 2 and len(order) >= 2:   # BatchNorm needs 2 samples; fold a last single one away
                continue
            factor = cosine_with_warmup(step, total, warmup)
            for g in opt.param_groups:
                g["lr"] = s.lr * g["lr_scale"] * factor
            x = _augment(x_fit[batch], gen).to(device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=s.bf16(device)):
                loss = nn.functional.cross_entropy(model(x).float(), y_fit[batch].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss is {loss.item()} at step {step}; lower the LR")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append((step, float(loss.detach()), opt.param_groups[-1]["lr"]))
            step += 1
            bar.update(1)
        epoch += 1
        if len(val_pos):
            score = _val_score(model, x_val, y_val, device)
            train_mode()
            if best is None or score > best:
                best, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= s.patience:
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
        recipe.update(best_epoch=best_epoch, val_accuracy=best[0])
    recipe.update(epochs_run=epoch, steps=step)
    model.history = history        # (step, loss, lr of the last parameter group) per optimiser step
    model.recipe = recipe
    return model.eval()
