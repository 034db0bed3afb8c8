"""Parameter groups, LARS against its formula, learning-rate scaling and schedules, EMA."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from eossl.train.optim import (
    LARS,
    build_optimizer,
    cosine_with_warmup,
    ema_momentum,
    ema_update,
    param_groups,
    scaled_lr,
)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))


def test_no_weight_decay_on_biases_and_norms():
    groups = param_groups(_model(), 0.05)
    assert all(p.ndim > 1 for p in groups[0]["params"]) and len(groups[0]["params"]) == 2
    assert all(p.ndim == 1 for p in groups[1]["params"]) and len(groups[1]["params"]) == 4
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0


def test_lars_step_matches_the_formula():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}],
               lr=0.5, momentum=0.9, eta=0.01)
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([2.0])
    opt.step()
    d = torch.tensor([[1.0, 0.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])
    trust = 0.01 * 5.0 / d.norm()
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * d)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.5 * 2.0]))  # excluded: plain SGD
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([2.0])
    b_before = b.detach().clone()
    opt.step()
    assert torch.allclose(b.detach(), b_before - 0.5 * (0.9 * 2.0 + 2.0))  # momentum buffer


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_build_optimizer_trains(name):
    model = _model()
    opt = build_optimizer(model, name, lr=0.01, weight_decay=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 4, 8, 8)).sum().backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; allowed"):
        build_optimizer(model, "adam", lr=0.01, weight_decay=0)


def test_lr_scaling_and_schedule():
    assert scaled_lr(0.05, 512) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        scaled_lr(0.05, 0)
    values = [cosine_with_warmup(s, 100, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] < 0.001
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert cosine_with_warmup(55, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert cosine_with_warmup(99, 100, 0, final_fraction=0.1) > 0.1
    with pytest.raises(ValueError):
        cosine_with_warmup(0, 10, 20)


def test_ema_momentum_schedule_and_update():
    assert ema_momentum(0, 100, 0.99) == pytest.approx(0.99) and ema_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert ema_momentum(50, 100, 0.99) == pytest.approx(0.995)
    online = _model()
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    old = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, o, p in zip(target.parameters(), old, online.parameters()):
        assert torch.allclose(t, 0.9 * o + 0.1 * p)
