"""Contract: one training step of every method on every backbone family, 4 and 13 bands, on CPU."""

from __future__ import annotations

import pytest
import torch

from eossl.methods import METHODS, build_method
from eossl.models.backbones import create_backbone
from eossl.train.optim import build_optimizer, ema_update

ARCHS = ["resnet18", "vit_tiny_patch8"]


def _views(bands: int, b: int = 4, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(b, bands, size, size, generator=g),
             "mask": torch.ones(b, size, size, dtype=torch.bool)} for _ in range(2)]


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bands", [4, 13])
def test_one_training_step_changes_parameters_with_a_finite_loss(name, arch, bands):
    torch.manual_seed(0)
    small = {"simsiam": dict(proj_dim=64, pred_hidden=32), "simclr": dict(proj_dim=32, hidden=64), "byol": dict(proj_dim=32, hidden=64), "rotation": {},
             "dino": dict(out_dim=32, hidden=32, bottleneck=16),
             "swav": dict(proj_dim=16, hidden=32, n_prototypes=8),
             "ijepa": dict(predictor_dim=32, predictor_depth=1, predictor_heads=2),
             "jigsaw": dict(n_permutations=10, hidden=32), "barlow": dict(proj_dim=64),
             "vicreg": dict(proj_dim=64), "moco_v2": dict(proj_dim=32, hidden=64, queue_size=16),
             "moco_v3": dict(proj_dim=32, hidden=64), "mae": dict(decoder_dim=32, decoder_depth=1)}[name]
    if METHODS.get(name).vit_only and not arch.startswith("vit"):
        with pytest.raises(ValueError, match="needs a ViT backbone"):
            build_method(name, create_backbone(arch, bands), arch, **small)
        return
    method = build_method(name, create_backbone(arch, bands, img_size=32), arch, **small).train()
    opt = build_optimizer(method, "sgd", lr=0.05, weight_decay=1e-4)
    before = {k: v.detach().clone() for k, v in method.named_parameters() if v.requires_grad}
    targets_before = [p.detach().clone() for _, t in method.ema_pairs() for p in t.parameters()]
    out = method.loss(_views(bands))
    assert torch.isfinite(out["loss"]) and out["embedding"].shape == (4, method.feat_dim)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    params = {k: v for k, v in method.named_parameters() if v.requires_grad}
    changed = {k for k, v in params.items() if not torch.equal(v, before[k])}
    with_grad = {k for k, v in params.items() if v.grad is not None and v.grad.abs().sum() > 0}
    # timm zero-initialises the last BN of each residual block, so that block's convs get no gradient at step 1
    assert with_grad <= changed and len(with_grad) >= 0.4 * len(params)
    stem = "backbone.conv1.weight" if arch.startswith("resnet") else "backbone.patch_embed.proj.weight"
    assert stem in changed
    assert all(k in changed for k in params if not k.startswith("backbone.") and k in with_grad)
    assert any(not k.startswith("backbone.") for k in changed)  # the heads train too
    if method.uses_ema:
        assert all(not p.requires_grad for _, t in method.ema_pairs() for p in t.parameters())
        for online, target in method.ema_pairs():
            ema_update(target, online, 0.9)
        after = [p for _, t in method.ema_pairs() for p in t.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(after, targets_before))


def test_unknown_method_and_too_few_views():
    with pytest.raises(ValueError, match="unknown SSL method 'swaw'; known: barlow"):
        build_method("swaw", create_backbone("resnet18", 4), "resnet18")
    method = build_method("vicreg", create_backbone("resnet18", 4), "resnet18", proj_dim=16)
    with pytest.raises(ValueError, match="needs 2 views, got 1"):
        method.loss(_views(4)[:1])


def test_mae_hides_the_requested_share_of_patches():
    torch.manual_seed(0)
    method = build_method("mae", create_backbone("vit_tiny_patch8", 13, img_size=32), "vit_tiny_patch8",
                          mask_ratio=0.75, decoder_dim=32, decoder_depth=1)
    x = torch.randn(2, 13, 32, 32)
    tokens, mask, restore = method.encode(x)
    assert tokens.shape == (2, 1 + 4, 192) and mask.sum(1).tolist() == [12.0, 12.0]
    out = method.loss([{"image": x, "mask": torch.ones(2, 32, 32, dtype=torch.bool)}])
    assert torch.isfinite(out["loss"]) and out["embedding"].shape == (2, 192)
    with pytest.raises(ValueError, match="no masked patch holds a valid pixel"):
        method.loss([{"image": x, "mask": torch.zeros(2, 32, 32, dtype=torch.bool)}])
    with pytest.raises(ValueError, match="built for 13 bands"):
        method.encode(torch.randn(2, 4, 32, 32))


def test_moco_v2_queue_advances():
    method = build_method("moco_v2", create_backbone("resnet18", 4), "resnet18", proj_dim=8, hidden=16,
                          queue_size=10).train()
    old = method.queue.clone()
    method.loss(_views(4, b=3))
    assert int(method.queue_ptr) == 6 and not torch.equal(method.queue[:6], old[:6])
    assert torch.equal(method.queue[6:], old[6:])


def test_dino_multi_crop_teacher_temperature_warm_up_and_centre():
    torch.manual_seed(0)
    method = build_method("dino", create_backbone("resnet18", 4), "resnet18", out_dim=16, hidden=32, bottleneck=8,
                          warmup_teacher_steps=4).train()
    views = _views(4) + _views(4, size=16, seed=1)          # 2 global (32 px) + 2 local (16 px) views
    assert method.teacher_temperature() == pytest.approx(0.04)
    out = method.loss(views)
    assert torch.isfinite(out["loss"]) and int(method.steps) == 1 and method.center.abs().sum() > 0
    assert method.teacher_temperature() == pytest.approx(0.04 + 0.03 / 4)
    for _ in range(5):
        method.loss(views)
    assert method.teacher_temperature() == pytest.approx(0.07)
    assert {"center", "steps"} <= set(method.state_dict()), "the centre and the step count resume"


@pytest.mark.parametrize("name,kwargs", [("dino", {"out_dim": 16, "hidden": 32, "bottleneck": 8}),
                                         ("swav", {"proj_dim": 8, "hidden": 16, "n_prototypes": 6})])
def test_multi_crop_on_a_vit_resamples_the_position_embeddings_per_view_size(name, kwargs):
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch8", 4, img_size=32)
    x = _views(4)[0]["image"]
    before = backbone(x).detach().clone()
    method = build_method(name, backbone, "vit_tiny_patch8", **kwargs).train()
    views = _views(4) + _views(4, size=16, seed=1)          # 2 global (32 px, 4x4 patches) + 2 local (16 px, 2x2)
    out = method.loss(views)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = {n: p.grad for n, p in method.backbone.named_parameters()}
    assert grads["pos_embed"] is not None and grads["pos_embed"].abs().sum() > 0
    assert all(g is not None for n, g in grads.items() if n.startswith("blocks.")), "every block trains"
    vits = [m for m in method.modules() if type(m).__name__ == "VisionTransformer"]
    assert len(vits) >= 1 and all(m.dynamic_img_size for m in vits), "the EMA teacher too"
    with torch.no_grad():       # at the built size nothing is resampled: the same features as before
        assert torch.allclose(method.backbone.eval()(x), before, atol=1e-6)
    with pytest.raises(ValueError, match="not multiples of the patch size 8; set views.local_crop_size"):
        method.loss(_views(4) + _views(4, size=12, seed=2))


def test_vit_multi_crop_settings_are_checked_when_the_config_loads():
    from eossl.config import ConfigError, load_config
    from eossl.train.config import PretrainConfig

    vit = ["model.arch=vit_tiny_patch8", "views.local_views=2"]
    assert load_config(PretrainConfig, None, overrides=[*vit, "method.name=dino", "views.local_crop_size=16"])
    with pytest.raises(ConfigError, match="views.local_crop_size = 12: multi-crop on vit_tiny_patch8 needs view "
                                          "sizes that are multiples of its 8 px patch"):
        load_config(PretrainConfig, None, overrides=[*vit, "method.name=dino", "views.local_crop_size=12"])
    with pytest.raises(ConfigError, match="mae addresses a fixed patch grid.*views.local_views=0"):
        load_config(PretrainConfig, None, overrides=[*vit, "method.name=mae"])


def test_masked_methods_refuse_views_of_two_sizes():
    for name in ("mae", "ijepa"):
        method = build_method(name, create_backbone("vit_tiny_patch8", 4, img_size=32), "vit_tiny_patch8")
        with pytest.raises(ValueError, match="fixed patch grid.*views.local_views=0"):
            method.check_views(_views(4)[:1] + _views(4, size=16, seed=1)[:1])


def test_swav_queue_fills_then_joins_the_codes_and_prototypes_can_start_frozen():
    torch.manual_seed(0)
    method = build_method("swav", create_backbone("resnet18", 4), "resnet18", proj_dim=8, hidden=16,
                          n_prototypes=6, queue_size=8, freeze_prototypes_steps=1).train()
    views = _views(4) + _views(4, size=16, seed=2)                # 2 global + 2 local views
    out = method.loss(views)
    out["loss"].backward()
    assert method.prototypes.weight.grad is None, "frozen for the first step"
    assert int(method.queued) == 4 and method.queue[:, :4].abs().sum() > 0 and method.queue[:, 4:].abs().sum() == 0
    method.loss(views)["loss"].backward()
    assert method.prototypes.weight.grad.abs().sum() > 0
    assert int(method.queued) == 8, "the queue is full: the next codes are computed with it"
    assert torch.isfinite(method.loss(views)["loss"])
    assert {"queue", "queued", "steps"} <= set(method.state_dict())


def test_pretext_tasks_take_one_view_and_jigsaw_draws_resume_from_the_checkpoint():
    rot = build_method("rotation", create_backbone("resnet18", 4), "resnet18")
    assert torch.isfinite(rot.loss(_views(4)[:1])["loss"])
    with pytest.raises(ValueError, match="rotation prediction needs square chips"):
        rot.loss([{"image": torch.randn(2, 4, 32, 24), "mask": torch.ones(2, 32, 24, dtype=torch.bool)}])

    def jigsaw():
        torch.manual_seed(0)
        return build_method("jigsaw", create_backbone("resnet18", 4), "resnet18", n_permutations=10, hidden=16).train()

    a, b = jigsaw(), jigsaw()
    views = _views(4, b=6)[:1]
    first = a.loss(views)["loss"]
    assert torch.equal(first, b.loss(views)["loss"]) and int(a.draws) == 1
    second = a.loss(views)["loss"]
    assert not torch.equal(first, second), "a new step draws new tile orders"
    c = jigsaw()
    c.load_state_dict(b.state_dict())              # b has drawn once, as a checkpoint taken after step 1
    assert torch.equal(c.loss(views)["loss"], second)


@pytest.mark.parametrize("name", ["vicreg", "moco_v2"])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pool", ["multi", "multi_std"])
def test_multi_level_pool_puts_the_loss_on_early_depths(name, arch, pool):
    """pool='multi' / 'multi_std': the heads see the global averages (and stds) of several depths."""
    from eossl.models.backbones import multi_level, multi_level_dim

    torch.manual_seed(0)
    kw = dict(proj_dim=32) if name == "vicreg" else dict(proj_dim=16, hidden=32, queue_size=16)
    backbone = create_backbone(arch, 4, img_size=32)
    method = build_method(name, backbone, arch, pool=pool, **kw)
    width = 960 if arch == "resnet18" else 4 * 192
    assert multi_level_dim(backbone) == width and method.feat_dim == width * (2 if pool == "multi_std" else 1)
    x = _views(4)[0]["image"]
    embedded = method.embed(method.backbone, x)
    torch.testing.assert_close(embedded, multi_level(backbone, x, std=pool == "multi_std"))
    if pool == "multi_std" and arch == "resnet18":   # layer1's mean then its std over positions
        fmap = backbone.layer1(backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(x)))))
        torch.testing.assert_close(embedded[:, :128], torch.cat([fmap.mean((2, 3)), fmap.std((2, 3), correction=0)], 1))
    method.loss(_views(4))["loss"].backward()
    assert method.backbone.get_parameter(
        "conv1.weight" if arch == "resnet18" else "blocks.8.attn.qkv.weight").grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pool must be 'last'"):
        build_method(name, create_backbone(arch, 4, img_size=32), arch, pool="max", **kw)
