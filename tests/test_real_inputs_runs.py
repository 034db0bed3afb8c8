"""Issue 12, kind 8: names checked at load time, failed runs marked, the README's predict example, the sensor a
dry run shows, and a sensor YAML passed by path found again from the index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from eossl.catalog.build import build_index
from eossl.catalog.index import open_index
from eossl.catalog.sensors import _builtin_dir
from eossl.cli import main
from eossl.config import ConfigError, load_config
from eossl.runs import FAILED_FILE, marks_failure
from eossl.train.config import PretrainConfig


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("model.arch", "resnet99", "model.arch: unknown architecture 'resnet99'; known: resnet18"),
    ("method.name", "simclrr", "method.name: unknown SSL method 'simclrr'; known: barlow"),
])
def test_unknown_method_or_arch_stops_at_load_time_and_under_dry_run(key, value, expected, capsys):
    with pytest.raises(ConfigError, match=expected):
        load_config(PretrainConfig, None, overrides=[f"{key}={value}"])
    assert main(["pretrain", "--set", f"{key}={value}", "--dry-run"]) == 2
    assert expected in capsys.readouterr().err


def test_marks_failure_writes_a_marker_and_a_later_success_removes_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"")              # the run had started producing
    with pytest.raises(RuntimeError, match="boom"), marks_failure(run, "continue with: eossl pretrain --resume R"):
        raise RuntimeError("boom")
    record = json.loads((run / FAILED_FILE).read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom"
    assert record["resume"] == "continue with: eossl pretrain --resume R"
    with pytest.raises(KeyboardInterrupt), marks_failure(run):
        raise KeyboardInterrupt
    assert json.loads((run / FAILED_FILE).read_text())["status"] == "interrupted"
    with marks_failure(run):
        pass
    assert not (run / FAILED_FILE).exists()


def test_an_input_error_found_while_starting_leaves_no_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    missing = tmp_path / "no-such-folder"
    code = main(["pretrain", "--runs", str(runs), "--set", f"corpus.roots=[{missing}]", "--set", "probe.data=null"])
    assert code == 2 and "catalog root does not exist" in capsys.readouterr().err
    assert list(runs.iterdir()) == []                 # nothing but its config was written: no FAILED run left
    # a run that had written something keeps its directory, marked
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("x: 1\n")
    (run / "checkpoints").mkdir()
    with pytest.raises(ValueError), marks_failure(run, "continue with: eossl pretrain --resume R"):
        raise ValueError("late")
    assert json.loads((run / FAILED_FILE).read_text())["error"] == "ValueError: late"


def test_predict_takes_a_row_position_and_creates_the_output_folder(tiny_s2_scene, tmp_path):
    from eossl.predict.cog import check_output
    from eossl.predict.maps import _position

    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    assert _position(index, "0") == 0 == _position(index, 0)        # `--acquisition 0` as the README writes it
    assert _position(index, index.ids[0]) == 0
    with pytest.raises(ValueError, match="acquisition position 5 is out of range"):
        _position(index, "5")
    out = tmp_path / "maps" / "deeper" / "landcover.tif"
    assert check_output(out, probabilities=True) == [out, out.with_name("landcover_probabilities.tif")]
    assert out.parent.is_dir()
    out.write_bytes(b"x")
    with pytest.raises(ValueError, match="exists; choose another --out"):
        check_output(out, probabilities=False)


def test_dry_run_shows_the_index_sensor_and_a_conflicting_one_is_an_error(tiny_s2_scene, tmp_path, capsys):
    path = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False).save(tmp_path / "i.parquet")
    assert main(["pretrain", "--dry-run", "--set", f"corpus.index={path}"]) == 0
    assert "sensor: sentinel2-l1c" in capsys.readouterr().out
    assert main(["pretrain", "--dry-run", "--set", f"corpus.index={path}", "--set",
                 "corpus.sensor=sentinel2-l2a"]) == 2
    err = capsys.readouterr().err
    assert "corpus.sensor is 'sentinel2-l2a' but the index" in err and "holds sentinel2-l1c" in err


def test_a_sensor_yaml_passed_by_path_is_found_again_from_the_index(tiny_s2_scene, tmp_path, monkeypatch):
    text = (_builtin_dir() / "sentinel2_l1c.yaml").read_text()
    own = tmp_path / "sensors" / "my_s2.yaml"
    own.parent.mkdir()
    own.write_text(text.replace("name: sentinel2-l1c", "name: my-s2", 1))
    monkeypatch.delenv("EOSSL_CATALOG_PATH", raising=False)
    path = build_index([str(tiny_s2_scene.root)], str(own), progress=False).save(tmp_path / "i.parquet")
    shutil.rmtree(own.parent)                       # the YAML is gone: the index still knows the sensor
    index = open_index(path)
    sensor = index.sensor(0)
    assert sensor.name == "my-s2" and sensor.band_names[:3] == ["B01", "B02", "B03"]
    assert sensor.norm_stats(["B04"])[1][0] > 0
    # what evaluate / finetune / predict do with the chips' sensor name finds it too (issue 27 point 4)
    from eossl.catalog.sensors import load_sensor
    from eossl.data.normalization import Normalization

    assert load_sensor("my-s2").band_names == sensor.band_names
    assert Normalization.of_sensor("my-s2", ["B04"]).std[0] == pytest.approx(sensor.norm_stats(["B04"])[1][0])
    with pytest.raises(ValueError, match="unknown sensor 'other-s2'"):
        load_sensor("other-s2")


def test_an_index_without_a_stored_definition_names_the_fix(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    frame = index.frame.drop(columns=["sensor_definition"]).assign(sensor="gone-sensor")
    path = Path(tmp_path / "old.parquet")
    frame.to_parquet(path, index=False)
    with pytest.raises(ValueError, match="rebuild it with `eossl catalog build --sensor PATH.yaml`"):
        open_index(path).sensor(0)


def test_class_folders_of_float_reflectance_are_not_scaled_twice(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from eossl.data.labelled.folders import load_class_folders

    rng = np.random.default_rng(0)
    dn = rng.integers(200, 4000, size=(2, 2, 13, 16, 16)).astype(np.uint16)   # class, chip, band, y, x
    for kind, dtype, data in (("dn", "uint16", dn), ("reflectance", "float32", dn.astype(np.float32) / 1e4)):
        for c, name in enumerate(("Forest", "River")):
            for k in range(2):
                path = tmp_path / kind / name / f"{name}_{k}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=13, dtype=dtype,
                                   crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10)) as ds:
                    ds.write(data[c, k])
    order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
    from_dn = load_class_folders(tmp_path / "dn", band_order=order)
    from_float = load_class_folders(tmp_path / "reflectance", band_order=order)
    assert 0.02 <= float(np.median(from_float.images)) <= 0.4          # reflectance, not 1e-5
    np.testing.assert_allclose(from_float.images, from_dn.images, rtol=1e-6)
    for name in ("Forest", "River"):
        for k in range(2):
            with rasterio.open(tmp_path / "reflectance" / name / f"{name}_{k}.tif", "r+") as ds:
                ds.write(np.full((13, 16, 16), 1e-6, np.float32))      # neither reflectance nor DN
    with pytest.raises(ValueError, match="class folders under"):
        load_class_folders(tmp_path / "reflectance", band_order=order)
