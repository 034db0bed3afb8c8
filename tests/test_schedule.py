"""The one warmup + cosine schedule (eossl.schedule) against the formulas that series pretraining and fine-tuning
wrote for themselves before they used it.

Exact equality in float64 is not possible for both: the old formulas computed the cosine's angle as
``pi * (step - warmup) / span`` and the shared one (unchanged, so image pretraining stays bit-identical) as
``pi * ((step - warmup) / span)``, which round differently in the last bit. What the optimisers apply is the
learning rate in float32 (torch casts a Python-float LR to the parameters' dtype), and that is the same at every
step; the training runs themselves are compared bit for bit in test_series_pretrain.py and below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eossl.schedule import cosine_with_warmup
from eossl.train.series_pretrain import schedule_steps


def old_series(step: int, total: int, warmup: int) -> float:
    """eossl/train/series_pretrain.py's ``lr_at`` before the move."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def old_finetune(step: int, total: int, warmup: int) -> float:
    """eossl/evaluate/finetuning.py's ``factor`` before the move."""
    return (step + 1) / max(warmup, 1) if step < warmup else \
        0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def _series_runs():
    for n in (1, 7, 40, 300, 1000, 5000, 20000):
        for batch in (8, 64, 256):
            for epochs in (1, 2, 6, 40):
                _, total, warmup = schedule_steps(n, batch, epochs)
                yield total, warmup, [1e-3, 3e-3, 3e-4]


def _finetune_runs():
    for n_train in (2, 10, 33, 150, 1000):
        for batch in (8, 32):
            for epochs, min_steps in ((1, 1), (3, 25), (30, 60)):
                total = max(epochs * math.ceil(n_train / batch), min_steps)
                for fraction in (0.0, 0.1, 0.25):
                    # the head's LR and layer-wise decayed ones (0.75 ** depth)
                    yield total, int(fraction * total), [1e-3 * 0.75 ** d for d in range(6)]


@pytest.mark.parametrize("old, runs", [(old_series, _series_runs), (old_finetune, _finetune_runs)],
                         ids=["series_pretrain", "finetuning"])
def test_the_shared_schedule_gives_the_old_learning_rates_step_by_step(old, runs):
    checked = 0
    for total, warmup, peaks in runs():
        for step in range(total + 1):           # LambdaLR evaluates one step past the last (the logged final LR)
            new, before = cosine_with_warmup(step, total, warmup), old(step, total, warmup)
            assert abs(new - before) <= 1e-15, (total, warmup, step)
            for peak in peaks:
                assert np.float32(peak * new) == np.float32(peak * before), (total, warmup, step, peak)
            checked += 1
    assert checked > 10_000


def test_finetuning_on_the_shared_schedule_trains_the_same_weights(monkeypatch):
    """Bit-identical classifier weights and losses with the shared schedule and with the old formula."""
    from eossl.data.normalization import Normalization
    from eossl.models.backbones import create_backbone
    from eossl.train import supervised as finetuning
    from eossl.train.supervised import FinetuneSettings, finetune_classifier

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 0.3, size=(24, 4, 16, 16)).astype(np.float32)
    labels = np.arange(24) % 3
    norm = Normalization(("B02", "B03", "B04", "B08"), [0.15] * 4, [0.1] * 4)
    settings = FinetuneSettings(epochs=2, min_steps=12, batch_size=8)

    def train():
        torch.manual_seed(0)
        model = finetune_classifier(create_backbone("resnet18", 4, 16), images, labels, np.arange(20), 3, norm,
                                    settings, seed=0)
        return model.state_dict(), [loss for _, loss, _ in model.history]

    new_state, new_losses = train()
    calls = []
    monkeypatch.setattr(finetuning, "cosine_with_warmup", lambda *a: calls.append(a) or old_finetune(*a))
    old_state, old_losses = train()
    assert len(calls) == 12                                 # the old formula ran at every step
    assert new_losses == old_losses and len(new_losses) == 12
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state)
