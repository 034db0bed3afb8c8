"""Backbones (timm, any band count, no hub weights) and band-aware stem adaptation."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

from eossl.catalog.sensors import load_sensor
from eossl.models.adapt import adapt_stem_weight, match_bands
from eossl.models.backbones import ARCHS, create_backbone, feature_maps, stem_key


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("bands", [4, 13])
def test_every_backbone_maps_bands_to_pooled_features(arch, bands):
    torch.manual_seed(0)
    model = create_backbone(arch, bands, img_size=32).eval()
    x = torch.randn(2, bands, 32, 32)
    with torch.no_grad():
        pooled, maps = model(x), feature_maps(model, x)
    assert pooled.shape == (2, model.num_features) and torch.isfinite(pooled).all()
    assert model.state_dict()[stem_key(arch)].shape[1] == bands
    if arch.startswith("vit"):
        patch = 8 if arch.endswith("8") else 16
        assert maps.shape == (2, (32 // patch) ** 2, model.num_features)
    else:
        assert maps.shape[:2] == (2, model.num_features) and maps.ndim == 4


def test_backbone_errors():
    with pytest.raises(ValueError, match="unknown backbone architecture 'resnet34'; known: resnet18"):
        create_backbone("resnet34", 4)
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        create_backbone("vit_tiny_patch16", 4, img_size=40)
    with pytest.raises(ValueError, match="in_chans"):
        create_backbone("resnet18", 0)


def test_weights_load_into_a_plain_timm_model():
    model = create_backbone("resnet18", 13)
    plain = timm.create_model("resnet18", pretrained=False, in_chans=13, num_classes=0)
    plain.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 13, 32, 32)
    assert torch.allclose(model.eval()(x), plain.eval()(x))


def _bands(sensor: str, names: list[str] | None = None) -> list[tuple[str, float]]:
    s = load_sensor(sensor)
    names = names or s.band_names
    return [(n, s.band(n).wavelength_nm) for n in names]


def test_l1c_13_bands_to_l2a_12_bands_by_name(caplog):
    source, target = _bands("sentinel2-l1c"), _bands("sentinel2-l2a")
    weight = torch.randn(8, 13, 3, 3)
    with caplog.at_level(logging.INFO, logger="eossl.models.adapt"):
        new, matches = adapt_stem_weight(weight, source, target)
    assert new.shape == (8, 12, 3, 3)
    assert all(m.how == "name" and m.source == m.target for m in matches)
    for i, (name, _) in enumerate(target):
        j = [n for n, _ in source].index(name)
        assert torch.allclose(new[:, i], weight[:, j] * 13 / 12)
    assert "band B8A <- pretrained B8A (same name)" in caplog.text


def test_rgb_checkpoint_to_multispectral_uses_nearest_wavelength_within_limit():
    rgb = [("red", 665.0), ("green", 560.0), ("blue", 490.0)]
    target = _bands("sentinel2-l2a", ["B02", "B03", "B04", "B05"])
    weight = torch.randn(4, 3, 3, 3)
    new, matches = adapt_stem_weight(weight, rgb, target)
    assert [m.source for m in matches] == ["blue", "green", "red", "red"]
    assert matches[3].how == "wavelength" and matches[3].distance_nm == pytest.approx(abs(704.1 - 665), abs=1)
    assert torch.allclose(new[:, 0], weight[:, 2] * 3 / 4)  # B02 <- blue, never the red kernel
    with pytest.raises(ValueError, match=r"no counterpart in the pretrained weights.*B11 \(1614 nm; nearest red.*--unmatched mean"):
        adapt_stem_weight(weight, rgb, _bands("sentinel2-l2a", ["B04", "B11"]))


def test_adaptation_errors():
    with pytest.raises(ValueError, match="no bands"):
        match_bands([], [("B02", 490.0)])
    with pytest.raises(ValueError, match="one input channel per source band"):
        adapt_stem_weight(torch.randn(4, 2, 3, 3), [("red", 665.0)], [("B04", 665.0)])
