"""The generic SSL LightningModule: a short fit on CPU, EMA updates, monitors, and the non-finite guard."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from eossl.augment.views import ViewGenerator, preset
from eossl.catalog.sensors import load_sensor
from eossl.methods import build_method
from eossl.models.backbones import create_backbone
from eossl.train.config import OptimConfig
from eossl.train.module import NonFiniteLossError, SSLModule
from eossl.train.monitors import effective_rank, embedding_std

BANDS = ["B02", "B03", "B04", "B08"]


def _module(name="vicreg", lr=0.05, **kw):
    s = load_sensor("sentinel2-l2a")
    mean, std = s.norm_stats(BANDS)
    views = ViewGenerator(preset("light"), BANDS, s.wavelengths(BANDS), mean, std, chip_size=32, seed=0)
    method = build_method(name, create_backbone("resnet18", 4), "resnet18", **kw)
    return SSLModule(method, views, OptimConfig(name="sgd", base_lr=lr, warmup_steps=1), batch_size=8, total_steps=4)


def _loader(n=32, scale=0.3):
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.rand(4, 32, 32, generator=g) * scale, "mask": torch.ones(32, 32, dtype=torch.bool)}
            for _ in range(n)]
    return DataLoader(data, batch_size=8)


def _trainer(tmp_path, steps=4):
    return L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


@pytest.mark.parametrize("name", ["vicreg", "moco_v3"])
def test_fit_runs_steps_updates_weights_and_targets(name, tmp_path):
    torch.manual_seed(0)
    kw = {"proj_dim": 32} if name == "vicreg" else {"proj_dim": 16, "hidden": 32}
    module = _module(name, **kw)
    stem_before = module.method.backbone.conv1.weight.detach().clone()
    targets_before = [p.detach().clone() for _, t in module.method.ema_pairs() for p in t.parameters()]
    trainer = _trainer(tmp_path)
    trainer.fit(module, _loader())
    assert trainer.global_step == 4
    assert not torch.equal(stem_before, module.method.backbone.conv1.weight)
    assert module.lr == pytest.approx(0.05 * 8 / 256)
    logged = trainer.callback_metrics
    assert torch.isfinite(logged["loss"]) and 0 < float(logged["embedding_std"]) <= 1
    assert float(logged["effective_rank"]) >= 1
    if module.method.uses_ema:
        after = [p for _, t in module.method.ema_pairs() for p in t.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(after, targets_before))


def test_non_finite_loss_stops_with_the_step(tmp_path):
    module = _module("vicreg", lr=1e12, proj_dim=16)
    with pytest.raises(NonFiniteLossError, match="at step [0-9]+"):
        _trainer(tmp_path, steps=50).fit(module, _loader(n=400, scale=1e6))


def test_collapse_monitors():
    z = torch.randn(64, 16)
    assert embedding_std(torch.ones(8, 16)) == 0
    assert float(embedding_std(z)) == pytest.approx(1 / 16 ** 0.5, rel=0.2)
    assert float(effective_rank(z)) > 10
    collapsed = torch.randn(64, 1) @ torch.randn(1, 16)
    assert float(effective_rank(collapsed)) < 1.5


def test_bf16_autocast_on_cpu_trains_in_channels_last_and_exports(tmp_path):
    from eossl.models.weights import WeightsInfo, export_backbone, load_backbone

    torch.manual_seed(0)
    module = _module("vicreg", proj_dim=32)
    module.autocast_precision = "bf16"
    assert module.uses_bf16()
    stem_before = module.method.backbone.conv1.weight.detach().clone()
    trainer = _trainer(tmp_path)
    trainer.fit(module, _loader())
    stem = module.method.backbone.conv1.weight
    assert trainer.global_step == 4 and torch.isfinite(trainer.callback_metrics["loss"])
    assert stem.dtype == torch.float32 and not torch.equal(stem_before, stem)       # parameters stay float32
    assert stem.is_contiguous(memory_format=torch.channels_last)
    s = load_sensor("sentinel2-l2a")
    mean, std = s.norm_stats(BANDS)
    info = WeightsInfo(arch="resnet18", in_chans=4, bands=BANDS, wavelengths_nm=s.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="test", epochs=1, img_size=32)
    export_backbone(module.method.backbone, info, tmp_path / "w")
    assert torch.equal(load_backbone(tmp_path / "w", pool="last").conv1.weight, stem.detach().contiguous())


def test_precision_auto_follows_native_cpu_bf16_and_unknown_values_fail(monkeypatch, caplog):
    import eossl.train.module as module_mod

    module = _module("vicreg", proj_dim=32)
    for native in (False, True):
        monkeypatch.setattr(module_mod, "cpu_has_native_bf16", lambda native=native: native)
        assert module.uses_bf16() is native          # auto: bf16 only where the CPU computes it natively
    monkeypatch.setattr(module_mod, "cpu_has_native_bf16", lambda: False)
    module.autocast_precision = "bf16"               # asked for explicitly: kept, with a warning naming the fix
    assert module.uses_bf16()
    with caplog.at_level("WARNING", logger="eossl.train.module"):
        module.on_fit_start()
    assert "trainer.precision=auto" in caplog.text and "emulated" in caplog.text
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        SSLModule(module.method, module.views, OptimConfig(), batch_size=8, precision="16")
