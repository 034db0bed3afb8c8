"""Few-label evaluation toolkit: labelled chips from class folders (built-in EuroSAT sample and tiny rasters),
band-statistics baseline, frozen-backbone features and the repeated few-shot linear probe."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
import rasterio
import torch
from scipy import stats

from eossl.catalog.sensors import load_sensor
from eossl.data.labelled.folders import EUROSAT_FILE_BANDS, LabelledChips, load_class_folders, load_eurosat
from eossl.data.normalization import Normalization
from eossl.evaluate.baselines import band_statistics, rcf_features, rcf_maps, rcf_model, rcf_pooled
from eossl.evaluate.features import extract_features
from eossl.evaluate.fewshot import few_shot_probe, few_shot_splits
from eossl.models.backbones import create_backbone
from eossl.models.weights import WeightsInfo, backbone_for, export_backbone
from eossl.sample_data import builtin_eurosat_root

S2 = load_sensor("sentinel2-l1c")


@pytest.fixture(scope="module")
def eurosat() -> LabelledChips:
    return load_eurosat()


def _subset(chips: LabelledChips, n_classes: int) -> LabelledChips:
    keep = chips.labels < n_classes
    return LabelledChips(chips.images[keep], chips.mask[keep], chips.labels[keep], chips.classes[:n_classes],
                         chips.bands, [p for p, k in zip(chips.paths, keep) if k], chips.sensor)


# ------------------------------------------------------------------------------------------- labelled chips


def test_builtin_eurosat_sample_loads_in_canonical_band_order(eurosat):
    root = builtin_eurosat_root()
    assert (root / "LICENSE").is_file() and (root / "SOURCE.md").is_file()
    assert "Patrick Helber" in (root / "LICENSE").read_text()
    assert eurosat.images.shape == (200, 13, 64, 64) and eurosat.images.dtype == np.float32
    assert eurosat.mask.shape == (200, 64, 64) and eurosat.mask.all()
    assert eurosat.labels.dtype == np.int64 and np.bincount(eurosat.labels).tolist() == [20] * 10
    assert eurosat.classes == sorted(eurosat.classes) and "SeaLake" in eurosat.classes
    assert eurosat.bands == S2.band_names and eurosat.bands.index("B8A") == eurosat.bands.index("B08") + 1
    i = 37
    assert eurosat.paths[i].split("/")[-2] == eurosat.classes[eurosat.labels[i]]
    with rasterio.open(eurosat.paths[i]) as ds:
        dn = ds.read()
    assert dn.shape[0] == 13
    # rasterio band 13 (dn[12]) is B8A, band 9 is B09 (water vapour), band 10 is B10 (cirrus)
    np.testing.assert_allclose(eurosat.images[i, eurosat.bands.index("B8A")], dn[12] * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(eurosat.images[i, eurosat.bands.index("B09")], dn[8] * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(eurosat.images[i, eurosat.bands.index("B10")], dn[9] * 1e-4, rtol=1e-6)
    # physical check of that order: TOA cirrus reflectance is far below water vapour everywhere in the sample
    band_means = eurosat.images.mean(axis=(0, 2, 3))
    assert band_means[eurosat.bands.index("B10")] < 0.1 * band_means[eurosat.bands.index("B09")]
    for k, band in enumerate(eurosat.bands):
        np.testing.assert_allclose(eurosat.images[i, k], dn[EUROSAT_FILE_BANDS.index(band)] * 1e-4, rtol=1e-6)


def _folders(root, factory, layout: dict[str, int], order=EUROSAT_FILE_BANDS, **kw):
    """Write ``layout[class]`` stacks per class folder; returns {path: data}."""
    written = {}
    for c, n in layout.items():
        for j in range(n):
            path = root / c / f"{c}_{j}.tif"
            written[path] = factory(path, list(order), seed=len(written), size=8, **kw)
    return written


def test_descriptions_aliases_band_subset_and_nodata(tmp_path, tiny_stack_factory):
    described = ["coastal", "blue", "green", "red", "B5", "B6", "B7", "nir", "B9", "cirrus", "swir16", "swir22",
                 "nir08"]
    written = _folders(tmp_path, tiny_stack_factory, {"b": 1, "a": 2}, descriptions=described)
    first = tmp_path / "a" / "a_0.tif"
    data = written[first].copy()
    data[:, 0, 0] = 0          # nodata in every band
    data[3, 1, 1] = 0          # nodata in one band (B04) only: the pixel is invalid
    tiny_stack_factory(first, list(EUROSAT_FILE_BANDS), descriptions=described, data=data)
    chips = load_class_folders(tmp_path, bands=["red", "B8A", "B02"])
    assert chips.classes == ["a", "b"] and chips.labels.tolist() == [0, 0, 1]
    assert chips.bands == ["B04", "B8A", "B02"]
    assert not chips.mask[0, 0, 0] and not chips.mask[0, 1, 1] and chips.mask[0].sum() == 62
    assert chips.images[0, :, 1, 1].tolist() == [0, 0, 0]
    expected = data[[3, 12, 1]].astype(np.float32) * np.float32(1e-4)
    np.testing.assert_allclose(np.where(chips.mask[0], chips.images[0], 0), np.where(chips.mask[0], expected, 0))
    default = load_class_folders(tmp_path)
    assert default.bands == S2.band_names


def test_loading_errors_name_the_problem(tmp_path, tiny_stack_factory):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_class_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_class_folders(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*cls holds no \.tif"):
        load_class_folders(tmp_path / "empty")

    root = tmp_path / "plain"
    _folders(root, tiny_stack_factory, {"a": 2, "b": 2})
    with pytest.raises(ValueError, match="no band descriptions.*pass band_order"):
        load_class_folders(root)
    with pytest.raises(ValueError, match=r"no band 'B99'.*B01, B02"):
        load_class_folders(root, band_order=[*EUROSAT_FILE_BANDS[:-1], "B99"])
    with pytest.raises(ValueError, match="has 13 bands but band_order names 12"):
        load_class_folders(root, band_order=list(EUROSAT_FILE_BANDS[:-1]))
    with pytest.raises(ValueError, match=r"no band 'B13'"):
        load_class_folders(root, band_order=list(EUROSAT_FILE_BANDS), bands=["B02", "B13"])

    described = tmp_path / "described"
    _folders(described, tiny_stack_factory, {"a": 2}, descriptions=list(EUROSAT_FILE_BANDS))
    tiny_stack_factory(described / "a" / "a_1.tif", list(EUROSAT_FILE_BANDS), size=8,
                       descriptions=[*EUROSAT_FILE_BANDS[:-1], "B99"])
    with pytest.raises(ValueError, match=r"a_1\.tif: band descriptions .*no band 'B99'"):
        load_class_folders(described)

    odd = root / "b" / "b_1.tif"
    tiny_stack_factory(odd, list(EUROSAT_FILE_BANDS), size=16)
    with pytest.raises(ValueError, match=rf"{re.escape(str(odd))}: shape .*\(13, 16, 16\)"):
        load_class_folders(root, band_order=list(EUROSAT_FILE_BANDS))
    tiny_stack_factory(odd, list(EUROSAT_FILE_BANDS[:12]), size=8)
    with pytest.raises(ValueError, match=rf"{re.escape(str(odd))}: shape .*\(12, 8, 8\)"):
        load_class_folders(root, band_order=list(EUROSAT_FILE_BANDS))


# ------------------------------------------------------------------------------------------- band statistics


def test_band_statistics_match_a_plain_loop():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 2, 5, 6)).astype(np.float32)
    mask = rng.random((3, 5, 6)) > 0.3
    mask[1] = True
    pct = (10, 50, 90)
    got = band_statistics(images, mask, percentiles=pct)
    assert got.shape == (3, 2 * (2 + len(pct)))
    for i in range(3):
        row = []
        for c in range(2):
            v = images[i, c][mask[i]].astype(np.float64)
            row += [v.mean(), v.std(), *np.percentile(v, pct)]
        np.testing.assert_allclose(got[i], row, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(band_statistics(images, None, pct), band_statistics(images, np.ones_like(mask), pct))


def test_band_statistics_refuse_an_all_invalid_chip():
    mask = np.ones((4, 3, 3), dtype=bool)
    mask[2] = False
    with pytest.raises(ValueError, match=r"chip\(s\) \[2\] have no valid pixel"):
        band_statistics(np.zeros((4, 1, 3, 3), np.float32), mask)


# ------------------------------------------------------------------------------------------- RCF

MEAN3, STD3 = np.full(3, 0.2, np.float32), np.full(3, 0.1, np.float32)
NORM3 = Normalization(("B02", "B03", "B04"), MEAN3, STD3)


def _rcf_images(n: int = 6, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 0.4, (n, 3, size, size)).astype(np.float32)


def test_rcf_pooling_matches_torchgeo_and_a_plain_loop_over_a_field():
    images = _rcf_images()
    model = rcf_model(images, NORM3, features=8, seed=3)
    x = torch.as_tensor((images - 0.2) / 0.1)
    np.testing.assert_allclose(rcf_pooled(model, images, NORM3), model(x).numpy(), rtol=1e-5, atol=1e-6)
    maps = rcf_maps(model, x)
    assert maps.shape == (6, 8, 10, 10)
    torch.testing.assert_close(rcf_maps(model, x, same_size=True)[..., 1:-1, 1:-1], maps)   # centred, padded
    weights = np.zeros((6, 12, 12))
    weights[:, 3:8, 2:9] = 1                                       # a field
    weights[5] = 0
    weights[5, 4, 4] = 1                                           # a one-pixel field: no 3 x 3 window half in it
    got = rcf_pooled(model, images, NORM3, weights=weights)
    for i in range(6):
        share = np.array([[weights[i, r:r + 3, c:c + 3].mean() for c in range(10)] for r in range(10)])
        w = (share >= 0.5).astype(float) if (share >= 0.5).any() else share
        np.testing.assert_allclose(got[i], (maps[i].numpy() * w).sum(axis=(1, 2)) / w.sum(), rtol=1e-5, atol=1e-6)
    # invalid pixels count as the band mean
    mask = np.random.default_rng(1).random((6, 12, 12)) > 0.2
    filled = np.where(mask[:, None], images, MEAN3[:, None, None])
    np.testing.assert_allclose(rcf_pooled(model, images, NORM3, mask), rcf_pooled(model, filled, NORM3),
                               rtol=1e-5, atol=1e-6)


def test_rcf_features_are_seeded_and_filters_come_only_from_the_source_rows():
    images = _rcf_images(8)
    a = rcf_features(images, images, NORM3, features=16, seed=0)
    assert a.shape == (8, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, rcf_features(images, images, NORM3, features=16, seed=0))
    assert not np.allclose(a, rcf_features(images, images, NORM3, features=16, seed=1))
    poisoned = images.copy()
    poisoned[4:] = np.nan                       # a filter drawn from these rows would make every filter NaN
    model = rcf_model(poisoned, NORM3, features=64, seed=0, source_index=np.arange(4))
    assert bool(torch.isfinite(model.weights).all())
    with pytest.raises(ValueError, match="at least one chip to draw from"):
        rcf_model(images, NORM3, source_index=np.array([], dtype=int))
    with pytest.raises(ValueError, match="even number"):
        rcf_features(images, images, NORM3, features=7)


# ------------------------------------------------------------------------------------------- probe


def _labels(k: int, n: int) -> np.ndarray:
    return np.repeat(np.arange(k), n)


def test_probe_separable_features_score_perfectly():
    labels = _labels(4, 30)
    rng = np.random.default_rng(1)
    features = 5 * np.eye(4)[labels] + 0.1 * rng.normal(size=(labels.size, 4))
    result = few_shot_probe(np.hstack([features, rng.normal(size=(labels.size, 6))]), labels, per_class=5, draws=4)
    assert result.mean > 0.99 and len(result.accuracies) == 4


def test_probe_random_features_score_chance():
    labels = _labels(5, 60)
    features = np.random.default_rng(2).normal(size=(labels.size, 16))
    result = few_shot_probe(features, labels, per_class=10, draws=20)
    assert abs(result.mean - 1 / 5) < 0.05


def test_splits_depend_only_on_labels_and_seed():
    labels = _labels(3, 15)
    rng = np.random.default_rng(3)
    a = few_shot_probe(rng.normal(size=(45, 4)), labels, per_class=4, draws=6, seed=7)
    b = few_shot_probe(rng.normal(size=(45, 9)), labels, per_class=4, draws=6, seed=7)
    assert a.train_indices == b.train_indices and a.split_digest == b.split_digest
    assert [s.tolist() for s in few_shot_splits(labels, 4, 6, seed=7)] == a.train_indices
    for train in a.train_indices:
        assert np.bincount(labels[train]).tolist() == [4, 4, 4]
    assert len({tuple(t) for t in a.train_indices}) == 6               # draws differ from each other
    assert few_shot_probe(rng.normal(size=(45, 4)), labels, per_class=4, draws=6, seed=8).split_digest != a.split_digest
    features = rng.normal(size=(45, 4))
    assert few_shot_probe(features, labels, 4, 6, seed=7).accuracies == few_shot_probe(features, labels, 4, 6,
                                                                                        seed=7).accuracies


def test_probe_ci_string_and_dict():
    labels = _labels(3, 20)
    features = np.random.default_rng(4).normal(size=(60, 3)) + labels[:, None]
    result = few_shot_probe(features, labels, per_class=5, draws=20)
    acc = np.array(result.accuracies)
    assert math.isclose(stats.t.ppf(0.975, 19), 2.093, abs_tol=1e-3)
    assert math.isclose(result.ci95, 2.0930240544 * acc.std(ddof=1) / math.sqrt(20), rel_tol=1e-6)
    assert math.isclose(result.mean, acc.mean())
    assert re.fullmatch(r"\d+\.\d% ± \d+\.\d \(95% CI, 20 draws, 5/class\)", str(result))
    d = json.loads(json.dumps(result.as_dict()))
    assert d["draws"] == 20 and d["per_class"] == 5 and len(d["accuracies"]) == 20 and d["ci95"] > 0
    single = few_shot_probe(features, labels, per_class=5, draws=1)
    assert math.isnan(single.ci95) and single.as_dict()["ci95"] is None and "n/a" in str(single)


def test_probe_errors_and_convergence_count():
    labels = np.array([0] * 12 + [1] * 5)
    with pytest.raises(ValueError, match=r"class 'rare' has 5 samples"):
        few_shot_probe(np.zeros((17, 2)), labels, per_class=5, classes=["common", "rare"])
    with pytest.raises(ValueError, match="features must be"):
        few_shot_probe(np.zeros((16, 2)), labels, per_class=2)
    labels = _labels(3, 10)
    features = np.random.default_rng(5).normal(size=(30, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the convergence warnings are counted, not shown
        result = few_shot_probe(features, labels, per_class=3, draws=3, max_iter=1)
    assert result.n_not_converged == 3


# ------------------------------------------------------------------------------------------- features


def test_last_pool_is_the_model_output_on_normalised_input():
    torch.manual_seed(0)
    model = create_backbone("resnet18", 13)
    images = np.random.default_rng(6).random((3, 13, 32, 32), dtype=np.float32)
    mean, std = S2.norm_stats(S2.band_names)
    norm = Normalization(tuple(S2.band_names), mean, std)
    feats = extract_features(model, images, norm, pool="last", batch_size=2)
    assert model.training   # the caller's mode is restored
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy((images - mean[:, None, None]) / std[:, None, None])).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"the data has 13 bands but the normalisation 12 \(B01, .*\); give one"):
        extract_features(model, images, norm.for_bands(S2.band_names[:12]))
    with pytest.raises(ValueError, match="unknown pool"):
        extract_features(model, images, norm, pool="stem")


def test_multi_pool_shapes_and_resnet_stages_match_hooks():
    images = np.random.default_rng(7).random((2, 13, 64, 64), dtype=np.float32)
    norm = Normalization(tuple(S2.band_names), np.full(13, 0.2, np.float32), np.full(13, 0.1, np.float32))
    torch.manual_seed(0)
    resnet = create_backbone("resnet18", 13)
    multi = extract_features(resnet, images, norm, pool="multi")
    assert multi.shape == (2, 64 + 128 + 256 + 512)
    pooled = []
    handle = resnet.layer1.register_forward_hook(lambda m, i, o: pooled.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        resnet.eval()(torch.from_numpy((images - 0.2) / 0.1))
    handle.remove()
    np.testing.assert_allclose(multi[:, :64], pooled[0].numpy(), rtol=1e-4, atol=1e-5)
    last = extract_features(resnet, images, norm, pool="last")
    np.testing.assert_allclose(multi[:, -512:], last, rtol=1e-4, atol=1e-5)   # layer4 pooled = model(x)
    vit = create_backbone("vit_tiny_patch8", 13, img_size=64)
    assert extract_features(vit, images, norm, pool="multi").shape == (2, 4 * 192)


def test_statistics_pool_is_mean_and_std_of_one_depth():
    images = np.random.default_rng(8).random((2, 13, 64, 64), dtype=np.float32)
    norm = Normalization(tuple(S2.band_names), np.full(13, 0.2, np.float32), np.full(13, 0.1, np.float32))
    torch.manual_seed(0)
    resnet = create_backbone("resnet18", 13)
    maps = {}
    hooks = [getattr(resnet, n).register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o))
             for n in ("act1", "layer2")]
    with torch.no_grad():
        resnet.eval()(torch.from_numpy((images - 0.2) / 0.1))
    for h in hooks:
        h.remove()
    for pool, name in (("stats0", "act1"), ("stats2", "layer2")):
        feats = extract_features(resnet, images, norm, pool=pool)
        fmap = maps[name]
        expected = torch.cat([fmap.mean(dim=(2, 3)), fmap.std(dim=(2, 3), correction=0)], dim=1).numpy()
        np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
    vit = create_backbone("vit_tiny_patch8", 13, img_size=64)
    assert extract_features(vit, images, norm, pool="stats3").shape == (2, 2 * 192)
    with pytest.raises(ValueError, match="blocks 1..12"):
        extract_features(vit, images, norm, pool="stats0")


# ------------------------------------------------------------------------------------------- report


def test_backbone_for_weights_reproduces_the_seeded_random_init_and_its_statistics(eurosat, tmp_path):
    chips = _subset(eurosat, 3)
    random_model, catalog = backbone_for(chips.bands, chips.sensor, 64, arch="resnet18", seed=0)
    state = torch.random.get_rng_state()
    again, _ = backbone_for(chips.bands, chips.sensor, 64, arch="resnet18", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)        # the global RNG is left as it was
    assert all(torch.equal(a, b) for a, b in zip(random_model.state_dict().values(), again.state_dict().values()))
    info = WeightsInfo(arch="resnet18", in_chans=13, bands=S2.band_names, wavelengths_nm=S2.wavelengths(S2.band_names),
                       gsd_m=10.0, normalization={"mean": catalog.mean.tolist(), "std": catalog.std.tolist()},
                       ssl_method="none", pretrain_data="test", epochs=0, img_size=64)
    export_backbone(random_model, info, tmp_path / "w")
    model, norm = backbone_for(chips.bands, chips.sensor, 64, weights=tmp_path / "w", images=chips.images,
                               valid=chips.mask)
    np.testing.assert_array_equal(norm.mean, catalog.mean)
    np.testing.assert_array_equal(norm.std, catalog.std)
    a = extract_features(model, chips.images, norm, pool="stats1")
    b = extract_features(random_model, chips.images, catalog, pool="stats1")
    np.testing.assert_array_equal(a, b)
    assert few_shot_probe(a, chips.labels, 5, 2).accuracies == few_shot_probe(b, chips.labels, 5, 2).accuracies
    # four of the bands: the stem is adapted by name and the statistics follow the bands, in the data's order
    four = ["B08", "B04", "B03", "B02"]
    idx = [chips.bands.index(b) for b in four]
    model4, norm4 = backbone_for(four, chips.sensor, 64, weights=tmp_path / "w", images=chips.images[:, idx])
    assert norm4.bands == tuple(four) and norm4.mean.tolist() == catalog.mean[idx].tolist()
    assert model4(torch.zeros(1, 4, 64, 64)).shape == (1, 512)
    with pytest.raises(ValueError, match="far outside the normalisation"):
        backbone_for(chips.bands, chips.sensor, 64, weights=tmp_path / "w", images=chips.images * 10000)
    with pytest.raises(ValueError, match="give weights or an arch"):
        backbone_for(chips.bands, chips.sensor, 64)
