"""Segmentation from a label raster: chip/label alignment (same CRS, 20 m, EPSG:4326), ignored pixels, the
spatial block split, training (resnet18 / ViT, seeded, frozen backbone) and bad inputs.

The fixture scene is 4 bands x 192 x 192 px at 10 m (EPSG:32633) whose spectra follow a 3-class blob map drawn
at 20 m; a strip of the image is nodata and a corner of the label rasters is label nodata (0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from scipy.ndimage import gaussian_filter

from eossl.catalog.build import IndexOptions, build_index
from eossl.data.labelled.rasters import SegmentationChips, load_segmentation_chips
from eossl.data.normalization import Normalization
from eossl.evaluate.segmentation import evaluate_segmentation, predict_segmentation
from eossl.evaluate.splits import window_block_split
from eossl.models.backbones import create_backbone
from eossl.train.segmentation import train_segmentation

CRS, ORIGIN = "EPSG:32633", (399960.0, 5800020.0)   # top-left (west, north)
SIZE, RES = 192, 10.0
BANDS = ["B02", "B03", "B04", "B08"]
SPECTRA = np.array([[600, 500, 300, 200], [300, 600, 300, 3000], [900, 1100, 1300, 2200]])  # DN per class
INVALID = (slice(100, 120), slice(0, 40))        # image rows/cols that are nodata in every band
LABEL_NODATA = (slice(0, 30), slice(150, 192))   # label nodata (0) at 10 m; at 20 m: half of each
CHIP = 32


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models on 2 shared cores: threads only add overhead
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Index + label rasters; ``truth`` is the (192, 192) class map (0..2) at 10 m."""
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    coarse = np.argmax(gaussian_filter(rng.normal(size=(3, SIZE // 2, SIZE // 2)), sigma=(0, 10, 10)), axis=0)
    truth = coarse.repeat(2, 0).repeat(2, 1)
    image = SPECTRA[truth].transpose(2, 0, 1) + rng.normal(0, 150, size=(4, SIZE, SIZE))
    image = np.clip(image, 1, 9999).astype("uint16")
    image[:, INVALID[0], INVALID[1]] = 0
    write_geotiff(root / "scene" / "stack_20200615.tif", image, RES)
    label10 = (truth + 1).astype("uint8")
    label10[LABEL_NODATA] = 0
    label20 = label10[::2, ::2].copy()
    files = {"10m": write_geotiff(root / "label10.tif", label10, RES, nodata=0),
             "20m": write_geotiff(root / "label20.tif", label20, 2 * RES, nodata=0),
             "4326": _write_4326(root / "label4326.tif", label10)}
    index = build_index([str(root / "scene")], "sentinel2-l2a", IndexOptions(band_order=BANDS), progress=False)
    return {"root": root, "index": index, "truth": truth, "image": image, "label10": label10, **files}


def write_geotiff(path, data, res, origin=ORIGIN, crs=CRS, nodata=None, transform=None):
    """Write (H, W) or (C, H, W) ``data``; a north-up grid at ``res`` from ``origin`` unless ``transform``."""
    arr = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype.name, crs=crs, nodata=nodata,
                       transform=transform or from_origin(origin[0], origin[1], res, res)) as ds:
        ds.write(arr)
    return path


def _write_4326(path, label10):
    bounds = (ORIGIN[0], ORIGIN[1] - SIZE * RES, ORIGIN[0] + SIZE * RES, ORIGIN[1])
    transform, w, h = calculate_default_transform(CRS, "EPSG:4326", SIZE, SIZE, *bounds)
    out = np.zeros((h, w), dtype="uint8")
    reproject(label10, out, src_transform=from_origin(bounds[0], bounds[3], RES, RES), src_crs=CRS,
              src_nodata=0, dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=0, resampling=Resampling.nearest)
    return write_geotiff(path, out, None, crs="EPSG:4326", nodata=0, transform=transform)


@pytest.fixture(scope="module")
def chips(scene):
    return load_segmentation_chips(scene["index"], scene["10m"], chip_size=CHIP, min_labelled=0.05)


def _expected(scene, bounds, label):
    """Labels (class index, -1 ignore) the chip at ``bounds`` must hold, from the 10 m class map."""
    c0, r0 = round((bounds[0] - ORIGIN[0]) / RES), round((ORIGIN[1] - bounds[3]) / RES)
    win = (slice(r0, r0 + CHIP), slice(c0, c0 + CHIP))
    valid = scene["image"][0][win] > 0
    return np.where(valid & (label[win] > 0), label[win].astype(np.int64) - 1, -1)


def _stats(chips, idx) -> Normalization:
    px = chips.images[idx].transpose(1, 0, 2, 3)[:, chips.valid[idx]]
    return Normalization(tuple(chips.bands), px.mean(1), px.std(1))


def test_chips_and_labels_align_in_the_same_crs(scene, chips):
    assert chips.images.shape == (36, 4, CHIP, CHIP) and chips.images.dtype == np.float32
    assert chips.labels.shape == chips.valid.shape == (36, CHIP, CHIP) and chips.labels.dtype == np.int64
    assert chips.classes == ["1", "2", "3"] and chips.bands == BANDS and chips.sensor == "sentinel2-l2a"
    assert set(chips.crs) == {"EPSG:32633"} and chips.gsd == RES
    for i, b in enumerate(chips.bounds):
        np.testing.assert_array_equal(chips.labels[i], _expected(scene, b, scene["label10"]))
    # the labels correspond to the spectra: nearest class spectrum (reflectance) == label on every labelled pixel
    px = chips.images.transpose(0, 2, 3, 1)[chips.labels >= 0] * 1e4
    nearest = np.argmin(((px[:, None] - SPECTRA[None]) ** 2).sum(-1), axis=1)
    assert (nearest == chips.labels[chips.labels >= 0]).mean() > 0.99
    # both kinds of ignored pixel are there: label nodata, and labelled pixels where the image is invalid
    assert (chips.labels[~chips.valid] == -1).all() and (~chips.valid).any()
    assert ((chips.labels == -1) & chips.valid).sum() > 0


def test_labels_reprojected_from_20m_and_epsg4326(scene, chips):
    c20 = load_segmentation_chips(scene["index"], scene["20m"], chip_size=CHIP)
    assert c20.bounds == chips.bounds and set(c20.crs) == {"EPSG:32633"}
    label = np.where(scene["label10"] > 0, scene["truth"] + 1, 0)   # 20 m nodata covers the same pixels
    for i, b in enumerate(c20.bounds):
        np.testing.assert_array_equal(c20.labels[i], _expected(scene, b, label))
    c4326 = load_segmentation_chips(scene["index"], scene["4326"], chip_size=CHIP)
    assert set(c4326.crs) == {"EPSG:32633"} and len(c4326) >= 30
    expected = np.stack([_expected(scene, b, scene["label10"]) for b in c4326.bounds])
    both = (expected >= 0) & (c4326.labels >= 0)
    assert both.sum() > 0.85 * (expected >= 0).sum()
    assert (c4326.labels[both] == expected[both]).mean() > 0.95   # nearest twice: only edge pixels may move


def test_class_mapping_names_and_merges_values(scene, chips):
    c = load_segmentation_chips(scene["index"], scene["10m"], chip_size=CHIP, classes={3: "crop", 1: "water", 2: "crop"})
    assert c.classes == ["crop", "water"] and c.label_values == {3: "crop", 1: "water", 2: "crop"}
    expected = np.select([chips.labels == 0, chips.labels >= 1], [1, 0], -1)
    np.testing.assert_array_equal(c.labels, expected)


def test_min_labelled_drops_sparse_windows(scene, chips):
    dense = load_segmentation_chips(scene["index"], scene["10m"], chip_size=CHIP, min_labelled=0.9)
    assert 0 < len(dense) < len(chips)
    assert ((dense.labels >= 0).mean(axis=(1, 2)) >= 0.9).all()
    assert ((chips.labels >= 0).mean(axis=(1, 2)) < 0.9).sum() == len(chips) - len(dense)


def test_stride_and_label_nodata_options(scene, chips, tmp_path):
    overlapping = load_segmentation_chips(scene["index"], scene["10m"], chip_size=CHIP, stride=CHIP // 2)
    assert len(overlapping) > 2 * len(chips)
    for i, b in enumerate(overlapping.bounds):
        np.testing.assert_array_equal(overlapping.labels[i], _expected(scene, b, scene["label10"]))
    # a label file that declares no nodata: 0 is a class unless label_nodata says otherwise
    bare = write_geotiff(tmp_path / "bare.tif", scene["label10"], RES)
    assert load_segmentation_chips(scene["index"], bare, chip_size=CHIP).classes == ["0", "1", "2", "3"]
    again = load_segmentation_chips(scene["index"], bare, chip_size=CHIP, label_nodata=0)
    np.testing.assert_array_equal(again.labels, chips.labels)


class _Threshold(torch.nn.Module):
    """Predicts class 1 where the first (standardised) band is > 0, else class 0: (B, C, H, W) -> (B, 2, H, W)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.stack([-x[:, 0], x[:, 0]], dim=1) * self.w


def test_ignored_pixels_never_count_in_metrics():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 2, 8, 8)).astype(np.float32)
    truth = (images[:, 0] > 0).astype(np.int64)
    labels = truth.copy()
    wrong = rng.random(truth.shape) < 0.3
    labels[wrong] = 1 - truth[wrong]                  # the model is wrong exactly on these pixels ...
    labels[wrong] = -1                                # ... which are all ignored
    valid = np.ones((4, 8, 8), dtype=bool)
    chips = SegmentationChips(images=images, valid=valid, labels=labels, classes=["a", "b"], bands=["x", "y"],
                              sensor="", bounds=[(0, 0, 8, 8)] * 4, crs=["EPSG:32633"] * 4, acquisitions=["s"] * 4,
                              label_values={0: "a", 1: "b"}, gsd=1.0)
    norm = Normalization(("x", "y"), np.zeros(2), np.ones(2))
    m = evaluate_segmentation(_Threshold(), chips, [0, 1, 2, 3], norm)
    assert m["overall_accuracy"] == 1.0 and m["mean_iou"] == 1.0 and m["kappa"] == 1.0
    assert m["n"] == int((~wrong).sum()) and m["n_ignored"] == int(wrong.sum())
    assert m["per_class"]["a"]["iou"] == 1.0
    # counting those pixels with their true class would score the same model clearly lower
    scored = replace(chips, labels=np.where(wrong, 1 - truth, labels))
    assert evaluate_segmentation(_Threshold(), scored, [0, 1, 2, 3], norm)["overall_accuracy"] < 0.8
    # invalid image pixels are ignored through their -1 label, whatever the model predicts there
    pred = predict_segmentation(_Threshold(), images, valid, norm)
    np.testing.assert_array_equal(pred, truth)


def test_window_block_split_keeps_blocks_and_overlaps_apart():
    xs = np.arange(0, 1000, 50.0)                      # 100 m windows every 50 m: neighbours overlap
    bounds = [(x, y, x + 100, y + 100) for y in xs for x in xs]
    train, test = window_block_split(bounds, 250, test_fraction=0.25, seed=3)
    assert len(set(train) & set(test)) == 0 and 0.15 < len(test) / len(bounds) < 0.35
    b = np.asarray(bounds)
    for i in train:   # no train window overlaps a test window
        t = b[test]
        assert not ((b[i, 0] < t[:, 2]) & (t[:, 0] < b[i, 2]) & (b[i, 1] < t[:, 3]) & (t[:, 1] < b[i, 3])).any()
    again = window_block_split(bounds, 250, test_fraction=0.25, seed=3)
    assert all(np.array_equal(a, c) for a, c in zip((train, test), again))
    assert not np.array_equal(window_block_split(bounds, 250, 0.25, seed=4)[1], test)
    dup, _ = window_block_split(bounds + bounds, 250, 0.25, seed=3)   # same place, twice: same side
    assert set(dup[dup >= len(bounds)] - len(bounds)) == set(train)
    with pytest.raises(ValueError, match="need at least 2"):
        window_block_split(bounds, 10_000, 0.25)


def test_resnet18_beats_chance_on_held_out_blocks(chips):
    train, test = window_block_split(chips.bounds, 640, test_fraction=0.3, seed=0)
    norm = _stats(chips, train)
    torch.manual_seed(0)
    model = train_segmentation(create_backbone("resnet18", 4), chips, train, norm=norm, epochs=12,
                               lr=3e-3, batch_size=8, seed=0, progress=False)
    m = evaluate_segmentation(model, chips, test, norm)
    y = chips.labels[test]
    best_constant = np.bincount(y[y >= 0]).max() / (y >= 0).sum()   # the best single-class guess on the test set
    assert m["overall_accuracy"] > best_constant + 0.15, (m["overall_accuracy"], best_constant)
    assert m["mean_iou"] > 0.4 and len(model.history["loss"]) == 12
    assert model.history["loss"][-1] < model.history["loss"][0]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_from_the_seed(chips):
    norm = _stats(chips, np.arange(8))
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", 4)
    runs = []
    for k, seed in enumerate((5, 5, 6)):
        torch.manual_seed(100 + k)   # the global RNG state must not matter, only ``seed``
        runs.append(_state(train_segmentation(backbone, chips, np.arange(8), norm=norm, epochs=1, lr=1e-3,
                                              batch_size=4, seed=seed, progress=False)))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_freeze_backbone_leaves_it_unchanged(chips):
    norm = _stats(chips, np.arange(8))
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", 4)
    before = _state(backbone)
    frozen = train_segmentation(backbone, chips, np.arange(8), norm=norm, epochs=1, lr=1e-2,
                                batch_size=4, freeze_backbone=True, progress=False)
    after = frozen.backbone.state_dict()   # parameters and BatchNorm statistics
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the same run with a vanishing learning rate keeps the decoder's initial weights: the frozen run's differ
    still = train_segmentation(backbone, chips, np.arange(8), norm=norm, epochs=1, lr=1e-12, batch_size=4,
                               freeze_backbone=True, progress=False)
    start = dict(still.head.named_parameters())
    assert all(not torch.equal(start[k], v) for k, v in frozen.head.named_parameters())
    tuned = train_segmentation(backbone, chips, np.arange(8), norm=norm, epochs=1, lr=1e-2, batch_size=4,
                               progress=False)
    assert not all(torch.equal(before[k], v) for k, v in tuned.backbone.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())   # the caller's copy is kept


def test_vit_backbone_segments(chips):
    norm = _stats(chips, np.arange(8))
    model = train_segmentation(create_backbone("vit_tiny_patch8", 4, img_size=CHIP), chips, np.arange(8),
                               norm=norm, epochs=1, lr=1e-3, batch_size=4, progress=False)
    pred = predict_segmentation(model, chips.images[8:10], chips.valid[8:10], norm)
    assert pred.shape == (2, CHIP, CHIP) and set(np.unique(pred)) <= {0, 1, 2}
    m = evaluate_segmentation(model, chips, [8, 9, 10], norm)
    assert m["n"] == int((chips.labels[8:11] >= 0).sum()) and set(m["per_class"]) == {"1", "2", "3"}


def test_bad_inputs_raise_clear_errors(scene, chips, tmp_path):
    index = scene["index"]
    with pytest.raises(FileNotFoundError, match="label raster not found"):
        load_segmentation_chips(index, tmp_path / "missing.tif")
    far = write_geotiff(tmp_path / "far.tif", np.ones((20, 20), "uint8"), RES, origin=(600000.0, 5000000.0))
    with pytest.raises(ValueError, match=r"far\.tif.*outside every scene"):
        load_segmentation_chips(index, far)
    with pytest.raises(ValueError, match=r"label10\.tif: label values \[3\] are not in the classes"):
        load_segmentation_chips(index, scene["10m"], chip_size=CHIP, classes={1: "water", 2: "forest"})
    empty = write_geotiff(tmp_path / "empty.tif", np.zeros((SIZE, SIZE), "uint8"), RES, nodata=0)
    with pytest.raises(ValueError, match=r"empty\.tif: no labelled pixel"):
        load_segmentation_chips(index, empty, chip_size=CHIP)
    with pytest.raises(ValueError, match="the data has 4 bands but the normalisation 1 \\(B02\\)"):
        train_segmentation(create_backbone("resnet18", 4), chips, [0, 1], norm=Normalization(("B02",), [0.1], [0.1]),
                           epochs=1, lr=1e-3,
                           batch_size=2, progress=False)
    with pytest.raises(ValueError, match="test_idx must be"):
        evaluate_segmentation(None, chips, [len(chips)], Normalization(tuple(BANDS), np.zeros(4), np.ones(4)))


# ------------------------------------------------------------------------------------------- commands


def _seg_config(scene, path, **extra):
    import yaml

    cfg = {"task": "segment", "seed": 0, "segmentation": {
        "scenes": {"roots": [str(scene["root"] / "scene")], "band_order": BANDS},
        "label_raster": str(scene["10m"]), "classes": {1: "water", 2: "forest", 3: "crop"}, "chip_size": CHIP,
        "block_size_m": 640.0, "epochs": 2, "lr": 3e-3, "batch_size": 8}, **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_finetune_segment_then_predict_a_class_map(scene, tmp_path, capsys):
    from eossl.cli import main
    from eossl.models.classifier import load_classifier

    cfg = _seg_config(scene, tmp_path / "ft.yaml", test_fraction=0.3)
    runs = tmp_path / "runs"
    assert main(["finetune", "--config", str(cfg), "--runs", str(runs), "--no-progress"]) == 0
    (run,) = runs.glob("finetune-*")
    import json
    out = json.loads((run / "metrics.json").read_text())
    assert out["n_train"] > 0 and out["n_test"] > 0 and 0 <= out["metrics"]["mean_iou"] <= 1
    assert out["metrics"]["n"] + out["metrics"]["n_ignored"] == out["n_test"] * CHIP * CHIP
    assert (run / "logs" / "metrics.csv").read_text().splitlines()[0] == "epoch,loss"
    clf = load_classifier(run / "model")
    assert clf.info.task == "segment" and clf.info.classes == ["water", "forest", "crop"]
    assert clf.info.gsd_m == RES and clf.info.img_size == CHIP
    tif = next((scene["root"] / "scene").glob("*.tif"))
    out_map = tmp_path / "map.tif"
    assert main(["predict", "--model", str(run / "model"), "--input", str(tif), "--bands", *BANDS,
                 "--out", str(out_map), "--no-progress"]) == 0
    with rasterio.open(out_map) as ds, rasterio.open(tif) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.dtypes[0] == "uint8"
        classes = ds.read(1)
        assert (classes[INVALID[0], INVALID[1]] == 255).all() and set(np.unique(classes)) <= {0, 1, 2, 255}
    assert "wrote" in capsys.readouterr().out


def test_cli_evaluate_segment_rows_and_figures(scene, tmp_path):
    import json

    from PIL import Image

    from eossl.cli import main

    cfg = _seg_config(scene, tmp_path / "ev.yaml", ks=[4, "all"], seeds=2, test_fraction=0.3,
                      baselines=["random_init", "band_statistics", "scratch"])
    assert main(["evaluate", "--config", str(cfg), "--runs", str(tmp_path), "--no-progress"]) == 0
    (run,) = tmp_path.glob("evaluate-*")
    out = json.loads((run / "metrics.json").read_text())
    assert out["task"] == "segment"
    rows = {(r["model"], r["protocol"], r["k"]) for r in out["results"]}
    assert rows == {(m, p, k) for m, p in [("random-init resnet18", "frozen + decoder"),
                                           ("from scratch resnet18", "finetune"),
                                           ("band values per pixel", "linear")] for k in ("4", "all")}
    pixel = next(r for r in out["results"] if r["model"] == "band values per pixel" and r["k"] == "all")
    assert pixel["overall_accuracy"]["mean"] > 0.8                # the classes have distinct spectra
    assert all(r["per_seed"][0]["n_train"] == 4 for r in out["results"] if r["k"] == "4")
    for png in ("few_label_curve.png", "confusion_matrix.png"):
        img = np.asarray(Image.open(run / png).convert("L"))
        assert img.shape[0] > 100 and img.std() > 5


def test_per_pixel_rcf_and_fusion_rows(scene, chips, tmp_path, monkeypatch):
    """RCF maps per pixel (filters from each seed's training windows only) and band values + frozen features."""
    from eossl.catalog.sensors import load_sensor
    from eossl.config import load_config
    from eossl.evaluate import pixel_probes
    from eossl.evaluate.config import EvaluateConfig
    from eossl.evaluate.context import TaskContext
    from eossl.evaluate.tasks import segment
    from eossl.models.weights import WeightsInfo, export_backbone

    drawn, dims = [], []
    real_rcf, real_fit = pixel_probes.rcf_model, pixel_probes.fit_logreg

    def spy_rcf(source, norm, **kw):
        model = real_rcf(source, norm, **kw)
        drawn.append((kw["seed"], np.asarray(kw["source_index"]).copy(), model.weights.clone()))
        return model

    def spy_fit(x, y, test_x, *args):
        dims.append(x.shape[1])
        return real_fit(x, y, test_x, *args)

    monkeypatch.setattr(pixel_probes, "rcf_model", spy_rcf)
    monkeypatch.setattr(pixel_probes, "fit_logreg", spy_fit)
    monkeypatch.setattr(segment, "load_segment_chips", lambda s: chips)
    s2 = load_sensor("sentinel2-l2a")
    mean, std = s2.norm_stats(BANDS)
    torch.manual_seed(0)
    info = WeightsInfo(arch="resnet18", in_chans=4, bands=BANDS, wavelengths_nm=s2.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=0, img_size=CHIP)
    weights = export_backbone(create_backbone("resnet18", 4, CHIP), info, tmp_path / "w")
    cfg = load_config(EvaluateConfig, _seg_config(scene, tmp_path / "ev.yaml"), overrides=[
        "arch=resnet18", "ks=[4]", "seeds=2", "seed=0", "test_fraction=0.3", "device=cpu"])

    def run(weights, baselines):
        return segment.run(replace(cfg, weights=weights, baselines=baselines), TaskContext(progress=False))

    out = run(weights, ["rcf", "fusion"])
    rows = {r.model: r for r in out if r.protocol == "linear"}
    assert set(rows) == {"RCF 512 per pixel", "band values + random-init resnet18",
                         "band values + pretrained resnet18 test"}
    assert dims == [512] * 2 + [4 + 512] * 4                   # RCF maps; 4 band values + resnet18's 512 channels
    assert [seed for seed, _, _ in drawn] == [0, 1]
    for seed, index, _ in drawn:
        train, test = window_block_split(chips.bounds, 640.0, 0.3, seed, crs=chips.crs)
        assert index.tolist() == train.tolist() and not set(index.tolist()) & set(test.tolist())
    assert not torch.equal(drawn[0][2], drawn[1][2])           # each seed draws its own filters
    assert rows["RCF 512 per pixel"].score("overall_accuracy").mean > 0.7     # the classes have distinct spectra
    again = run(None, ["rcf"])                                  # same seeds: same filters, same numbers
    assert torch.equal(drawn[2][2], drawn[0][2])
    assert again == [rows["RCF 512 per pixel"]]
