"""Class maps: sliding-window prediction to COGs from GeoTIFFs and indexes, against per-chip predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import MeanBands
from rasterio.transform import from_origin

from eossl import cli
from eossl.catalog.build import build_index
from eossl.cli import main
from eossl.models.backbones import create_backbone
from eossl.models.classifier import Classifier, ClassifierInfo, save_classifier
from eossl.predict import cog as cog_mod
from eossl.predict import maps as predict_mod
from eossl.predict.maps import NODATA, PROB_SCALE, predict_map

BANDS = ["B02", "B03", "B04", "B08"]
CRS = "EPSG:32633"
ORIGIN = (399960.0, 5800020.0)
SIZE = 96        # raster side, px
WIN = 32         # classifier window, px
MEAN, STD = 0.5, 0.3
NODATA_BLOCK = (slice(0, 5), slice(0, 7))   # every band 0 here
ONE_BAND_HOLE = (1, 60, 60)                 # band 1 only is 0 at (60, 60): the pixel is invalid too


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_stack(path: Path, data: np.ndarray, descriptions=tuple(BANDS), nodata=0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(data),
                       dtype=data.dtype.name, crs=CRS, transform=from_origin(*ORIGIN, 10, 10), nodata=nodata) as ds:
        ds.write(data)
        if descriptions:
            ds.descriptions = tuple(descriptions)
    return path


@pytest.fixture
def stack(tmp_path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(0).integers(1, 10000, size=(len(BANDS), SIZE, SIZE), dtype="uint16")
    data[data == 5000] = 5001      # no pixel exactly at the threshold of the known classifiers
    data[(slice(None), *NODATA_BLOCK)] = 0
    data[ONE_BAND_HOLE] = 0
    return write_stack(tmp_path / "stack.tif", data), data


def valid_of(data: np.ndarray) -> np.ndarray:
    return (data != 0).all(axis=0)


def normalised(dn: np.ndarray) -> np.ndarray:
    """DN (C, H, W) -> the classifier's input, as the reader + normalisation compute it (sentinel2-l1c 1e-4)."""
    x = (dn.astype(np.float32) * np.float32(1e-4) - np.float32(MEAN)) / np.float32(STD)
    x[:, ~valid_of(dn)] = 0.0
    return x


def make_info(task: str, classes=("water", "field", "forest"), bands=BANDS, gsd=10.0) -> ClassifierInfo:
    return ClassifierInfo(arch="resnet18", task=task, bands=list(bands), wavelengths_nm=[500.0] * len(bands),
                          gsd_m=gsd, normalization={"mean": [MEAN] * len(bands), "std": [STD] * len(bands)},
                          classes=list(classes), img_size=WIN, sensor="sentinel2-l1c")


def random_classifier(task: str) -> Classifier:
    torch.manual_seed(0)
    model = Classifier(create_backbone("resnet18", len(BANDS), WIN), 3, task).eval()
    model.info = make_info(task)
    return model


def threshold_classifier(task: str, band: int = 3, bands=BANDS, gsd=10.0) -> Classifier:
    """Class 1 where normalised ``band`` > 0 (reflectance above MEAN), else 0: per pixel (segment) or window mean."""
    model = Classifier(MeanBands(len(bands)), 2, task)
    with torch.no_grad():
        if task == "patch":
            model.head.weight.zero_()
            model.head.weight[0, band], model.head.weight[1, band] = -10.0, 10.0
            model.head.bias.zero_()
        else:  # hidden 0 = relu(x_b), hidden 1 = relu(-x_b) (eval BN ~ identity); logits: class 1 = x_b, 0 = -x_b
            conv = model.head.lateral[0].weight
            conv.zero_()
            conv[0, band], conv[1, band] = 1.0, -1.0
            model.head.cls.weight.zero_()
            model.head.cls.weight[0, 0], model.head.cls.weight[0, 1] = -1.0, 1.0
            model.head.cls.weight[1, 0], model.head.cls.weight[1, 1] = 1.0, -1.0
            model.head.cls.bias.zero_()
    model.info = make_info(task, classes=("low", "high"), bands=bands, gsd=gsd)
    return model.eval()


def read_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


# ------------------------------------------------------------------------------------------------ helpers


def test_window_starts_cover_the_axis():
    assert predict_mod.window_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert predict_mod.window_starts(100, 32, 32) == [0, 32, 64, 68]  # last one flush with the end
    assert predict_mod.window_starts(20, 32, 16) == [0]
    assert predict_mod.window_starts(32, 32, 16) == [0]


def test_blend_weights_positive_and_peaked():
    w = predict_mod.blend_weights(8)
    assert w.shape == (8, 8) and w.dtype == np.float32
    assert w.min() == pytest.approx(1 / 64) and (w > 0).all()
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    assert w[3:5, 3:5].min() == w.max()


# ------------------------------------------------------------------------------------------------ maps


def test_segment_map_is_exact_and_georeferenced(stack, tmp_path):
    path, data = stack
    out = predict_map(threshold_classifier("segment"), path, tmp_path / "map.tif", overlap=0.5, tile=40,
                      batch_size=5, progress=False)
    valid = valid_of(data)
    expected = np.where(valid, (normalised(data)[3] > 0).astype(np.uint8), NODATA)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == CRS and ds.transform == from_origin(*ORIGIN, 10, 10)
        assert (ds.width, ds.height, ds.count, ds.dtypes[0], ds.nodata) == (SIZE, SIZE, 1, "uint8", NODATA)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.colormap(1)[0] == (31, 119, 180, 255) and ds.colormap(1)[NODATA][3] == 0
        assert ds.tags()["classes"] == '["low", "high"]' and ds.descriptions == ("class",)
        np.testing.assert_array_equal(ds.read(1), expected)
    assert not valid[NODATA_BLOCK].any() and not valid[ONE_BAND_HOLE[1:]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "stack.tif"]  # no temporary files left


def test_patch_map_spreads_the_window_class(stack, tmp_path):
    path, data = stack
    model = threshold_classifier("patch")
    classes = read_map(predict_map(model, path, tmp_path / "map.tif", overlap=0.0, progress=False))
    x = normalised(data)
    for r in range(0, SIZE, WIN):
        for c in range(0, SIZE, WIN):
            window = x[None, :, r:r + WIN, c:c + WIN]
            expected = int(model(torch.from_numpy(window)).argmax())
            assert expected == int(window[0, 3].mean() > 0)
            got = classes[r:r + WIN, c:c + WIN]
            assert (got[valid_of(data[:, r:r + WIN, c:c + WIN])] == expected).all()


@pytest.mark.parametrize("task", ["patch", "segment"])
def test_saved_classifier_agrees_with_per_chip_predictions(stack, tmp_path, task):
    path, data = stack
    model_dir = save_classifier(random_classifier(task), make_info(task), tmp_path / "model")
    classes = read_map(predict_map(str(model_dir), path, tmp_path / "map.tif", overlap=0.0, tile=64,
                                   progress=False))
    loaded = random_classifier(task)
    x = normalised(data)
    checked = 0
    for r in range(0, SIZE, WIN):
        for c in range(0, SIZE, WIN):
            if not valid_of(data[:, r:r + WIN, c:c + WIN]).all():
                continue  # windows holding nodata are compared by the exact tests above
            with torch.no_grad():
                logits = loaded(torch.from_numpy(x[None, :, r:r + WIN, c:c + WIN]))
            expected = logits.argmax(dim=1)[0].numpy()
            np.testing.assert_array_equal(classes[r:r + WIN, c:c + WIN], np.broadcast_to(expected, (WIN, WIN)))
            checked += 1
    assert checked == 7
    assert (classes[NODATA_BLOCK] == NODATA).all() and classes[ONE_BAND_HOLE[1:]] == NODATA


def test_probabilities_output_and_determinism(stack, tmp_path):
    path, data = stack
    model = random_classifier("segment")
    out = predict_map(model, path, tmp_path / "a.tif", probabilities=True, tile=48, progress=False)
    predict_map(model, path, tmp_path / "b.tif", probabilities=True, tile=48, progress=False)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    probs_path = tmp_path / "a_probabilities.tif"
    assert probs_path.read_bytes() == (tmp_path / "b_probabilities.tif").read_bytes()
    classes = read_map(out)
    valid = valid_of(data)
    with rasterio.open(probs_path) as ds:
        assert (ds.count, ds.dtypes[0], ds.nodata) == (3, "uint8", NODATA)
        assert ds.descriptions == ("water", "field", "forest")
        assert ds.scales == pytest.approx((1 / PROB_SCALE,) * 3)
        assert ds.crs.to_string() == CRS and ds.transform == from_origin(*ORIGIN, 10, 10)
        probs = ds.read()
    assert (probs[:, ~valid] == NODATA).all() and (probs[:, valid] <= PROB_SCALE).all()
    total = probs[:, valid].astype(int).sum(axis=0)
    assert np.abs(total - PROB_SCALE).max() <= 2           # rounding of 3 bands
    top = np.sort(probs[:, valid], axis=0)
    clear = top[-1] > top[-2]                              # where rounding left no tie
    assert (probs[:, valid].argmax(axis=0)[clear] == classes[valid][clear]).all()


def test_tiling_does_not_change_the_map(stack, tmp_path):
    path, _ = stack
    model = random_classifier("patch")
    small = predict_map(model, path, tmp_path / "small.tif", tile=16, batch_size=1, progress=False)
    large = predict_map(model, path, tmp_path / "large.tif", tile=4096, batch_size=1, progress=False)
    np.testing.assert_array_equal(read_map(small), read_map(large))


def test_fallback_without_cog_driver(stack, tmp_path, monkeypatch):
    path, _ = stack
    model = threshold_classifier("segment")
    cog = read_map(predict_map(model, path, tmp_path / "cog.tif", progress=False))
    monkeypatch.setattr(cog_mod, "has_cog_driver", lambda: False)
    out = predict_map(model, path, tmp_path / "gtiff.tif", progress=False)
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.colormap(1)[1] == (255, 127, 14, 255)
        np.testing.assert_array_equal(ds.read(1), cog)


# ------------------------------------------------------------------------------------------------ index source


def test_index_source_at_the_classifier_gsd_with_bounds(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "scene", nodata_border_m=60)
    index = build_index([str(scene)], "sentinel2-l1c", progress=False)
    # B8A and B11 are native 20 m bands: read at 20 m they are the file's pixels, so the map is exact
    model = threshold_classifier("segment", band=0, bands=["B8A", "B11"], gsd=20.0)
    out = predict_map(model, index, tmp_path / "full.tif", acquisition=index.ids[0], progress=False)
    dn = scene.array("B8A")
    valid = (dn != 0) & (scene.array("B11") != 0)
    expected = np.where(valid, dn.astype(np.float32) * np.float32(1e-4) > MEAN, NODATA).astype(np.uint8)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == scene.crs and (ds.width, ds.height) == (60, 60)
        assert ds.transform == from_origin(scene.bounds[0], scene.bounds[3], 20, 20)
        full = ds.read(1)
    np.testing.assert_array_equal(full, expected)
    assert (full[:, :3] == NODATA).all()
    x0, y0 = scene.bounds[0], scene.bounds[3]
    bounds = (x0 + 205, y0 - 1000, x0 + 1000, y0 - 205)   # snapped outwards to the 20 m grid: rows/cols 10..50
    assert predict_mod.prediction_grid(index, 0, 20.0, bounds).x0 == x0 + 200
    part = predict_map(model, index, tmp_path / "part.tif", acquisition=0, bounds=bounds, progress=False)
    with rasterio.open(part) as ds:
        assert ds.transform == from_origin(x0 + 200, y0 - 200, 20, 20) and ds.shape == (40, 40)
        np.testing.assert_array_equal(ds.read(1), expected[10:50, 10:50])


def test_index_source_errors(tiny_scene_factory, tmp_path):
    dates = ("20200615T101031", "20200715T101031")
    scene = tiny_scene_factory(tmp_path / "scene", bands=["B02", "B03", "B04"], dates=dates)
    index = build_index([str(scene)], "sentinel2-l1c", progress=False)
    model = threshold_classifier("segment")
    with pytest.raises(ValueError, match="holds 2 acquisitions; choose one with --acquisition"):
        predict_map(model, index, tmp_path / "x.tif", progress=False)
    with pytest.raises(ValueError, match=r"acquisition '.*20200715.*' of .* lacks band\(s\) B08"):
        predict_map(model, index, tmp_path / "x.tif", acquisition=index.ids[1], progress=False)
    with pytest.raises(KeyError, match="no acquisition 'nope'"):
        predict_map(model, index, tmp_path / "x.tif", acquisition="nope", progress=False)


# ------------------------------------------------------------------------------------------------ errors


def test_undescribed_file_needs_bands(stack, tmp_path):
    _, data = stack
    plain = write_stack(tmp_path / "plain.tif", data[[3, 2, 1, 0]], descriptions=None)
    model = threshold_classifier("segment")
    with pytest.raises(ValueError, match="do not name distinct sentinel2-l1c bands.*--band-order"):
        predict_map(model, plain, tmp_path / "x.tif", progress=False)
    with pytest.raises(ValueError, match="has 4 band.*lists 3"):
        predict_map(model, plain, tmp_path / "x.tif", band_order=["B08", "B04", "B03"], progress=False)
    reordered = predict_map(model, plain, tmp_path / "x.tif", band_order=["B08", "B04", "B03", "B02"], progress=False)
    np.testing.assert_array_equal(read_map(reordered), np.where(valid_of(data), normalised(data)[3] > 0, NODATA))


def test_a_layer_that_is_not_a_band_is_skipped_by_name(stack, tmp_path):
    _, data = stack
    qa = np.full((1, *data.shape[1:]), 21824, dtype=data.dtype)                  # a QA layer stacked first
    file = write_stack(tmp_path / "with_qa.tif", np.concatenate([qa, data[[3, 2, 1, 0]]]), descriptions=None)
    model = threshold_classifier("segment")
    out = predict_map(model, file, tmp_path / "x.tif", band_order=["QA:skip", "B08", "B04", "B03", "B02"],
                      progress=False)
    np.testing.assert_array_equal(read_map(out), np.where(valid_of(data), normalised(data)[3] > 0, NODATA))


def test_bad_inputs(stack, tmp_path):
    path, data = stack
    model = threshold_classifier("segment")
    three = write_stack(tmp_path / "rgb.tif", data[:3], descriptions=BANDS[:3])
    with pytest.raises(ValueError, match=rf"{three} lacks band\(s\) B08"):
        predict_map(model, three, tmp_path / "x.tif", progress=False)
    (tmp_path / "taken.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="taken.tif exists"):
        predict_map(model, path, tmp_path / "taken.tif", progress=False)
    (tmp_path / "p_probabilities.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="p_probabilities.tif exists"):
        predict_map(model, path, tmp_path / "p.tif", probabilities=True, progress=False)
    assert not (tmp_path / "p.tif").exists()
    with pytest.raises(FileNotFoundError, match="no classifier.json in"):
        predict_map(tmp_path / "no_model", path, tmp_path / "x.tif", progress=False)
    with pytest.raises(FileNotFoundError, match="input raster not found"):
        predict_map(model, tmp_path / "missing.tif", tmp_path / "x.tif", progress=False)
    with pytest.raises(ValueError, match="overlap must be in"):
        predict_map(model, path, tmp_path / "x.tif", overlap=1.0, progress=False)
    with pytest.raises(ValueError, match="do not overlap acquisition"):
        predict_map(model, path, tmp_path / "x.tif", bounds=(0, 0, 10, 10), progress=False)
    assert not (tmp_path / "x.tif").exists()


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_predict(stack, tmp_path, capsys):
    assert "predict" in cli.COMMANDS
    path, _ = stack
    model_dir = save_classifier(random_classifier("segment"), make_info("segment"), tmp_path / "model")
    out = tmp_path / "cli.tif"
    base = ["predict", "--model", str(model_dir), "--input", str(path), "--out", str(out)]
    assert main([*base, "--overlap", "0.25", "--set", "tile=64", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "overlap: 0.25" in text and "tile: 64" in text and not out.exists()
    assert main([*base, "--probabilities", "--no-progress", "--band-order", "B02,B03", "B04", "B08"]) == 0
    assert f"to {out}" in capsys.readouterr().out
    assert out.exists() and (tmp_path / "cli_probabilities.tif").exists()
    assert main(base) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "nope"), "--input", str(path), "--out",
                 str(tmp_path / "y.tif")]) == 2
    assert "no classifier.json" in capsys.readouterr().err
    assert main(["predict", "--input", str(path), "--out", str(tmp_path / "y.tif")]) == 2
    assert "model: missing required field" in capsys.readouterr().err
    assert main([*base, "--set", "overlap=1.5", "--dry-run"]) == 2
    assert "overlap: 1.5 is out of range" in capsys.readouterr().err
