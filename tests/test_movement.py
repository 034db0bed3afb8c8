"""The training-progress monitor: per-stage weight movement from initialisation and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_pretrain_config
from safetensors.torch import load_file

from eossl.methods import build_method
from eossl.models.backbones import create_backbone
from eossl.train.movement import INIT_FILE, grad_norms, relative_change, slow_stages, stage_of
from eossl.train.pretrain import pretrain


def test_stage_names():
    assert stage_of("conv1.weight") == "conv1" and stage_of("bn1.weight") == "conv1"
    assert stage_of("layer3.1.conv2.weight") == "layer3"
    assert stage_of("blocks.4.mlp.fc1.weight") == "blocks.4" and stage_of("patch_embed.proj.weight") == "patch_embed"


def test_relative_change_against_a_plain_formula():
    torch.manual_seed(0)
    model = create_backbone("resnet18", 4, 32)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    assert set(relative_change(model, init)) == {"conv1", "layer1", "layer2", "layer3", "layer4"}
    assert all(v == 0 for v in relative_change(model, init).values())
    with torch.no_grad():
        model.layer2[0].conv1.weight.mul_(1.5)   # one tensor of layer2 grows by half its norm
    moved = relative_change(model, init)
    layer2 = [k for k in init if k.startswith("layer2.") and init[k].ndim >= 2]
    expected = 0.5 * init["layer2.0.conv1.weight"].norm() / torch.sqrt(sum(init[k].pow(2).sum() for k in layer2))
    assert moved["layer2"] == pytest.approx(float(expected), rel=1e-5)
    assert moved["layer1"] == 0 and moved["layer3"] == 0
    assert slow_stages(moved, 0.01) == ["conv1", "layer1", "layer3", "layer4"]
    # a state dict works as well as the module
    assert relative_change(model.state_dict(), init)["layer2"] == pytest.approx(moved["layer2"])
    with pytest.raises(KeyError, match="initial weights have no"):
        relative_change(model, {"conv1.weight": init["conv1.weight"]})


def test_every_stage_receives_gradient_at_initialisation():
    """With timm's zero-initialised last BN of every block, the residual convolutions of layer1 got no gradient at
    all; create_backbone keeps every residual branch active."""
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", 13, 32)
    method = build_method("vicreg", backbone, "resnet18", proj_dim=32, pool="multi")
    x = torch.randn(8, 13, 32, 32)
    method.loss([{"image": x}, {"image": x + 0.1 * torch.randn_like(x)}])["loss"].backward()
    norms = grad_norms(backbone)
    assert set(norms) == {"conv1", "layer1", "layer2", "layer3", "layer4"}
    assert all(v > 0 and math.isfinite(v) for v in norms.values()), norms


def test_pretraining_logs_movement_and_warns_when_the_backbone_does_not_move(tiny_s2_scene, tmp_path):
    cfg = tiny_pretrain_config(tiny_s2_scene, max_steps=3, min_movement=0.5)
    run = tmp_path / "run"
    summary = pretrain(cfg, run)
    header = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for stage in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        assert f"move/{stage}" in header and f"grad/{stage}" in header
    movement = summary["backbone_movement"]
    assert set(movement) == {"conv1", "layer1", "layer2", "layer3", "layer4"}
    assert all(0 < v < 0.5 for v in movement.values()), movement
    assert len(summary["warnings"]) == 1 and "trainer.min_movement" in summary["warnings"][0]
    # the summary's movement is measured between the saved initialisation and the final checkpoint
    init = load_file(str(run / "checkpoints" / INIT_FILE))
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    final = {k[len("method.backbone."):]: v for k, v in state.items() if k.startswith("method.backbone.")}
    assert relative_change(final, init) == pytest.approx(movement, abs=1e-5)
    # resuming measures from the same initialisation, not from the checkpoint
    before = (run / "checkpoints" / INIT_FILE).read_bytes()
    pretrain(cfg, run, resume=True)
    assert (run / "checkpoints" / INIT_FILE).read_bytes() == before
