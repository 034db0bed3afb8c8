"""Feature pools: widths, agreement with hooks on the timm model, PooledBackbone, candidate pools and errors."""

from __future__ import annotations

import pytest
import torch

from eossl.evaluate.features import POOLS, candidate_pools
from eossl.models.backbones import create_backbone, multi_level
from eossl.models.pooling import PooledBackbone, check_pool, model_pools, pool_dim, pool_features

RESNET18_WIDTHS = {"last": 512, "multi": 64 + 128 + 256 + 512, "stats0": 128, "stats1": 128, "stats2": 256,
                   "stats3": 512, "stats4": 1024}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return create_backbone("resnet18", 4).eval()


def test_candidate_pools_per_architecture():
    assert candidate_pools("resnet18") == list(RESNET18_WIDTHS)
    assert candidate_pools("resnet50") == list(RESNET18_WIDTHS)
    assert candidate_pools("vit_tiny_patch8") == ["last", "multi", "stats6", "stats12"]
    assert set(candidate_pools("vit_small_patch16")) <= set(POOLS)
    with pytest.raises(ValueError, match="unknown backbone architecture 'resnet19'; known: .*resnet18"):
        candidate_pools("resnet19")


@pytest.mark.parametrize("pool", list(RESNET18_WIDTHS))
def test_every_resnet18_pool_has_its_width_and_the_wrapper_agrees(resnet, pool):
    x = torch.randn(2, 4, 32, 32)
    wrapped = PooledBackbone(resnet, pool)
    with torch.no_grad():
        out = wrapped(x)
        direct = pool_features(resnet, x, pool)
    assert out.shape == (2, RESNET18_WIDTHS[pool]) == direct.shape
    assert wrapped.num_features == pool_dim(resnet, pool) == RESNET18_WIDTHS[pool]
    torch.testing.assert_close(out, direct)
    assert wrapped.backbone is resnet and wrapped.pool == pool and f"pool={pool!r}" in repr(wrapped)


def test_pools_are_what_they_say_on_the_timm_model(resnet):
    x = torch.randn(2, 4, 32, 32)
    maps = {}
    hooks = [getattr(resnet, n).register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o))
             for n in ("act1", "layer1", "layer4")]
    with torch.no_grad():
        last = resnet(x)
        for h in hooks:
            h.remove()
        torch.testing.assert_close(pool_features(resnet, x, "last"), last)
        torch.testing.assert_close(pool_features(resnet, x, "multi"), multi_level(resnet, x))
        torch.testing.assert_close(pool_features(resnet, x, "multi")[:, -512:], maps["layer4"].mean(dim=(2, 3)))
        for pool, name in (("stats0", "act1"), ("stats1", "layer1")):
            fmap = maps[name]
            expected = torch.cat([fmap.mean(dim=(2, 3)), fmap.std(dim=(2, 3), correction=0)], dim=1)
            torch.testing.assert_close(pool_features(resnet, x, pool), expected)


def test_vit_pools_match_their_widths():
    vit = create_backbone("vit_tiny_patch8", 3, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model_pools(vit) == ["last", "multi", *(f"stats{k}" for k in range(1, 13))]
    with torch.no_grad():
        for pool in candidate_pools("vit_tiny_patch8"):
            assert pool_features(vit, x, pool).shape == (2, pool_dim(vit, pool)), pool
    assert pool_dim(vit, "multi") == 4 * 192 and pool_dim(vit, "stats6") == 2 * 192


def test_wrapper_refuses_double_pooling(resnet):
    wrapped = PooledBackbone(resnet, "stats2")
    with pytest.raises(ValueError, match="already a PooledBackbone"):
        PooledBackbone(wrapped, "multi")
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pool_features(wrapped, x, "last"), wrapped(x))   # "last" = the model's output
    with pytest.raises(ValueError, match="already pools as 'stats2'"):
        pool_features(wrapped, x, "multi")
    assert {n for n, _ in wrapped.state_dict().items()} == {f"backbone.{k}" for k in resnet.state_dict()}


def test_unknown_and_unsupported_pools_list_the_allowed_ones(resnet):
    with pytest.raises(ValueError, match="unknown pool 'stem'; choose one of last, multi, stats0"):
        check_pool(resnet, "stem")
    with pytest.raises(ValueError, match="choose one of last, multi, stats0, stats1, stats2, stats3, stats4$"):
        PooledBackbone(resnet, "stats7")
    vit = create_backbone("vit_tiny_patch8", 3, img_size=32)
    with pytest.raises(ValueError, match="blocks 1..12; choose one of last, multi, stats1"):
        pool_dim(vit, "stats0")
    with pytest.raises(ValueError, match="supports timm ResNet and VisionTransformer backbones, not Linear"):
        pool_features(torch.nn.Linear(4, 2), torch.randn(1, 4), "multi")
    assert model_pools(torch.nn.Linear(4, 2)) == ["last"]
