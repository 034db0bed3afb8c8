"""Published weights in: torchgeo:NAME and plain timm checkpoints, from local files with the published key layout
(nothing downloads)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
from conftest import tiny_pretrain_config

from eossl.cli import main
from eossl.evaluate.config import EvaluateConfig, config_with_weights
from eossl.models.published import import_checkpoint, import_torchgeo, resolve_weights, torchgeo_weight
from eossl.models.weights import backbone_for, load_backbone, load_weights, read_weights_info

S2_13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
NAME = "ResNet18_Weights.SENTINEL2_ALL_MOCO"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSSL_WEIGHTS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A file with the key layout of torchgeo's ResNet18 SENTINEL2_ALL_MOCO (timm resnet18, 13 channels, with an
    fc head as in many published checkpoints) and the timm model it came from."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", in_chans=13, num_classes=7).eval()
    path = tmp_path_factory.mktemp("published") / "resnet18_sentinel2_all_moco.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    model.reset_classifier(0)
    return path, model


def test_torchgeo_import_takes_bands_and_normalisation_from_metadata(tmp_path, published):
    path, model = published
    out = import_torchgeo(f"torchgeo:{NAME}", tmp_path / "w", weights_file=path)
    info = read_weights_info(out)
    meta = torchgeo_weight(NAME).meta
    assert info.arch == "resnet18" and info.in_chans == 13 == meta["in_chans"]
    assert info.bands == S2_13                      # B1..B12, B8a resolved through sentinel2-l1c's aliases
    # torchgeo: Normalize(mean=0, std=10000) on DN; L1C reflectance = DN / 10000 -> mean 0, std 1 in reflectance
    np.testing.assert_allclose(info.normalization["mean"], [0.0] * 13)
    np.testing.assert_allclose(info.normalization["std"], [1.0] * 13)
    assert info.extra["source"] == f"torchgeo:{NAME}" and info.extra["sensor"] == "sentinel2-l1c"
    assert info.ssl_method == "moco" and info.pretrain_data == "SSL4EO-S12"
    assert (out / "README.md").is_file() and json.loads((out / "item.json").read_text())["type"] == "Feature"
    # the same features as torchgeo's model on DN / 10000 (its transform) for the same scene
    dn = torch.randint(1, 10000, (2, 13, 64, 64)).float()
    ours = load_backbone(out, pool="last").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours((dn / 1e4 - 0.0) / 1.0), model(dn / 1e4))


def test_torchgeo_weights_through_evaluate_config_are_imported_once(tmp_path, published, cache):
    path, _ = published
    cfg = config_with_weights(EvaluateConfig, None, [], f"torchgeo:{NAME}", str(path))
    assert cfg.weights.startswith(str(cache)) and cfg.weights_file is None
    first = (cache.glob("torchgeo/*/weights.json").__next__()).stat().st_mtime_ns
    again = config_with_weights(EvaluateConfig, None, [], f"torchgeo:{NAME}", str(path))
    assert again.weights == cfg.weights
    assert next(cache.glob("torchgeo/*/weights.json")).stat().st_mtime_ns == first   # reused, not re-imported
    dry = config_with_weights(EvaluateConfig, None, [], f"torchgeo:{NAME}", str(path), resolve=False)
    assert dry.weights == f"torchgeo:{NAME}"


def test_torchgeo_weights_as_model_init_for_pretraining(tmp_path, published, cache, tiny_s2_scene):
    from eossl.train.pretrain import pretrain

    path, _ = published
    cfg = tiny_pretrain_config(tiny_s2_scene, max_steps=1)
    cfg = replace(cfg, model=replace(cfg.model, init=f"torchgeo:{NAME}", init_file=str(path)))
    summary = pretrain(cfg, tmp_path / "run")
    assert summary["global_step"] == 1
    assert next(cache.glob("torchgeo/*/weights.json")).is_file()


def test_unknown_torchgeo_name_lists_the_names(tmp_path, capsys):
    assert main(["import", "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCCO", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "torchgeo has no weights 'ResNet18_Weights.SENTINEL2_ALL_MOCCO'; did you mean" in err
    assert NAME in err and "ResNet50_Weights.SENTINEL2_ALL_DINO" in err


def test_offline_download_failure_names_weights_file(tmp_path, monkeypatch):
    weight = torchgeo_weight(NAME)

    def offline(self, *args, **kwargs):
        raise OSError("no route to host")
    monkeypatch.setattr(type(weight), "get_state_dict", offline)
    with pytest.raises(ValueError, match=r"cannot download torchgeo weights .*no route to host.*--weights-file PATH"):
        import_torchgeo(f"torchgeo:{NAME}", tmp_path / "w")


def test_ssl4eo_landsat_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="SSL4EO-L's 8-bit rescaled Landsat values"):
        import_torchgeo("torchgeo:ResNet18_Weights.LANDSAT_OLI_SR_MOCO", tmp_path / "w")


def test_weights_file_with_a_directory_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="only for published weights"):
        resolve_weights(str(tmp_path), str(tmp_path / "f.pth"))


# ------------------------------------------------------------------------------------------ RGB checkpoints


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = timm.create_model("resnet18", num_classes=1000)           # an ImageNet-like RGB classifier
    path = tmp_path_factory.mktemp("rgb") / "resnet18_rgb.pth"
    torch.save(model.state_dict(), path)
    return path


def test_rgb_checkpoint_on_13_bands_needs_a_policy(tmp_path, rgb_checkpoint, capsys):
    out = tmp_path / "rgb"
    assert main(["import", str(rgb_checkpoint), "--arch", "resnet18", "--sensor", "sentinel2-l1c",
                 "--out", str(out)]) == 0
    info = read_weights_info(out)
    assert info.bands == ["B04", "B03", "B02"] and info.unmatched == "error"
    assert "sentinel2-l1c catalog statistics" in info.extra["normalization_from"]
    with pytest.raises(ValueError, match=r"have no counterpart in the pretrained weights within 60 nm: B06 .*B07 .*"
                                         r"B08 .*B8A .*B09 .*B10 .*B11 .*B12 .*--unmatched mean"):
        backbone_for(S2_13, "sentinel2-l1c", 32, weights=out)


def test_rgb_checkpoint_with_mean_policy_adapts_and_logs_each_band(tmp_path, rgb_checkpoint, caplog):
    out = import_checkpoint(rgb_checkpoint, tmp_path / "rgb", arch="resnet18", sensor="sentinel2-l1c",
                            unmatched="mean")
    with caplog.at_level(logging.WARNING, logger="eossl.models.adapt"):
        model, norm = backbone_for(S2_13, "sentinel2-l1c", 32, weights=out)
    from eossl.catalog.sensors import load_sensor

    loaded = load_weights(out, bands=list(zip(S2_13, load_sensor("sentinel2-l1c").wavelengths(S2_13))), pool="last")
    torch.testing.assert_close(loaded.model.conv1.weight, model.conv1.weight)      # backbone_for's model, the same
    policy = [m.target for m in loaded.band_matches if m.how == "mean"]
    assert policy == ["B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    for band in policy:
        assert f"stem: band {band} has no pretrained counterpart" in caplog.text
    stem = model.conv1.weight.detach()
    rgb = torch.load(rgb_checkpoint)["conv1.weight"]
    torch.testing.assert_close(stem[:, S2_13.index("B08")], rgb.mean(dim=1) * 3 / 13)
    torch.testing.assert_close(stem[:, S2_13.index("B04")], rgb[:, 0] * 3 / 13)
    # normalisation: the weights' for matched bands, the sensor catalog's for policy bands
    from eossl.data.normalization import Normalization

    catalog = Normalization.of_sensor("sentinel2-l1c", ["B11"])
    assert norm.std[S2_13.index("B11")] == pytest.approx(float(catalog.std[0]))
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 13, 32, 32))).all()


def test_plain_checkpoint_with_wrong_arch_names_the_keys(tmp_path, rgb_checkpoint):
    with pytest.raises(ValueError, match=r"keys do not fit a timm ResNet .*missing.*is the architecture right"):
        import_checkpoint(rgb_checkpoint, tmp_path / "w", arch="resnet50", sensor="sentinel2-l1c")


def test_unmatched_policy_value_is_checked(tmp_path, rgb_checkpoint):
    with pytest.raises(ValueError, match="unmatched: 'random'; choose one of error, mean, zero"):
        import_checkpoint(rgb_checkpoint, tmp_path / "w", arch="resnet18", sensor="sentinel2-l1c", unmatched="random")
