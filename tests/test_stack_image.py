"""Image backbones on a labelled stack (issue 25, point 6): each period's chip around a pixel through a frozen image
backbone, aggregated over time, scored by the stack task on the same splits as the series rows."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from parcel_stack_data import write_parcel_stack

from eossl.catalog.sensors import load_sensor
from eossl.evaluate import stack_image as si
from eossl.evaluate.stack_inputs import load_labelled_stack
from eossl.evaluate.stack_model import StackModel
from eossl.models.backbones import create_backbone
from eossl.models.weights import WeightsInfo, export_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = write_parcel_stack(tmp_path_factory.mktemp("stack") / "parcels", n_dates=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_labelled_stack(folder, variable="CT", period="month")


@pytest.fixture(scope="module")
def l1c_weights(tmp_path_factory):
    """resnet18 weights on all 13 Sentinel-2 L1C bands (random init, exported as `eossl export` writes them)."""
    s2 = load_sensor("sentinel2-l1c")
    bands = s2.band_names
    mean, std = s2.norm_stats(bands)
    info = WeightsInfo(arch="resnet18", in_chans=len(bands), bands=bands, wavelengths_nm=s2.wavelengths(bands),
                       gsd_m=10.0, normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="vicreg",
                       pretrain_data="test", epochs=1, img_size=32, feature_pool="multi",
                       extra={"sensor": "sentinel2-l1c"})
    torch.manual_seed(0)
    return export_backbone(create_backbone("resnet18", len(bands), 32), info, tmp_path_factory.mktemp("w") / "w")


def _model(kind, stack, weights, **image):
    c = stack.comp
    return StackModel.build(kind, classes=stack.names, codes=stack.codes, bands=list(c.bands), sensor=c.sensor,
                            steps=len(c.starts), image_weights=weights, image={"chip": 8, **image},
                            settings={"image": {"components": 3, "max_pixels": 200}})


def _train(stack, n=6):
    s = stack.samples
    idx = np.concatenate([np.flatnonzero(s.labels == i)[:n] for i in range(len(stack.codes))])
    return idx


def test_a_pixels_features_are_its_chips_through_the_backbone_averaged_over_time(stack, l1c_weights):
    model = _model("image", stack, l1c_weights).prepare(stack.samples, comps=[stack.comp])
    chips = model.image
    comp, pix = stack.comp, np.array([0, 25, 24 * 24 - 1])           # a corner, an inner pixel, the last corner
    feats = model.transform(stack.samples.subset(pix), comp=comp, pixels=pix)
    vals = comp.values[:, [list(comp.bands).index(b) for b in chips.bands]]
    p, c, h, w = vals.shape
    norm = chips.norm
    for row, flat in enumerate(pix):
        r, q = divmod(int(flat), w)
        per = []
        for t in range(p):                        # a plain loop: window rows r-4..r+3, edge-replicated
            win = np.empty((c, 8, 8), np.float32)
            for i in range(8):
                for j in range(8):
                    win[:, i, j] = vals[t, :, min(max(r - 4 + i, 0), h - 1), min(max(q - 4 + j, 0), w - 1)]
            x = (win - np.asarray(norm.mean, np.float32)[:, None, None]) / np.asarray(norm.std, np.float32)[:, None,
                                                                                                            None]
            with torch.no_grad():
                per.append(chips.model(torch.from_numpy(x)[None]).numpy()[0])
        per = np.stack(per)
        assert np.allclose(feats[row], np.concatenate([per.mean(0), per.std(0)]), atol=1e-4)


def test_image_rows_read_the_optical_bands_with_the_weights_statistics_and_state_the_product_level(stack,
                                                                                                  l1c_weights):
    model = _model("image", stack, l1c_weights).prepare(stack.samples, comps=[stack.comp])
    chips = model.image
    assert chips.bands == list(stack.comp.bands)                     # every L2A band has an L1C counterpart
    l1c = load_sensor("sentinel2-l1c")
    assert np.allclose(chips.norm.mean, l1c.norm_stats(chips.bands)[0])
    product = chips.describe()["product"]
    assert product["pretrained_on"] == "sentinel2-l1c" and product["applied_to"] == "sentinel2-l2a"
    assert not product["same"] and "processing levels differ" in product["note"]
    assert set(product["band_mean_z"]) == set(chips.bands)
    own = _model("image", stack, l1c_weights, norm="stack").prepare(stack.samples, comps=[stack.comp])
    i = own.image.bands.index("B08")
    seen = stack.comp.values[:, list(stack.comp.bands).index("B08")]
    assert own.image.norm.mean[i] == pytest.approx(seen.mean(), rel=1e-4)
    z = abs(seen.mean() - l1c.norm_stats(["B08"])[0][0]) / l1c.norm_stats(["B08"])[1][0]
    assert product["band_mean_z"]["B08"] == pytest.approx(z, abs=2e-3)


@pytest.mark.parametrize("kind,extra", [("image", {}), ("image_sequence", {}), ("image", {"random_init": True})])
def test_a_saved_image_model_predicts_the_same_in_blocks_as_on_every_pixel(stack, l1c_weights, kind, extra,
                                                                           tmp_path):
    s = stack.samples
    model = _model(kind, stack, l1c_weights, **extra).prepare(s, comps=[stack.comp])
    feats = model.transform(s, comp=stack.comp)
    if kind == "image_sequence":
        assert feats.shape == (len(s), len(stack.comp.starts) * 3)
    train = _train(stack)
    model.fit_features(feats[train], s.labels[train])
    proba = model.proba_from_features(feats)
    loaded = StackModel.load(model.save(tmp_path / "m"))
    assert np.allclose(loaded.predict_proba(s, comp=stack.comp), proba, atol=1e-5)
    block = np.arange(100, 180)
    assert np.allclose(model.predict_proba(s.subset(block), comp=stack.comp, pixels=block), proba[block], atol=1e-5)
    with pytest.raises(ValueError, match="composite"):
        model.transform(s)


def test_random_init_changes_the_features_and_series_weights_are_refused(stack, l1c_weights, tmp_path):
    s = stack.samples
    pre = _model("image", stack, l1c_weights).prepare(s, comps=[stack.comp]).transform(s, comp=stack.comp)
    rnd = _model("image", stack, l1c_weights, random_init=True).prepare(s, comps=[stack.comp])
    assert rnd.image.info["source"].startswith("random-init")
    assert not np.allclose(rnd.transform(s, comp=stack.comp), pre)
    with pytest.raises(ValueError, match="needs image weights"):
        _model("image", stack, None)
    with pytest.raises(ValueError, match="at least 8"):
        si.make_image_chips(list(stack.comp.bands), stack.comp.sensor, l1c_weights, chip=4)


def test_the_stack_task_scores_image_rows_on_the_same_splits_and_warns_of_the_product_level(stack, l1c_weights,
                                                                                         tmp_path):
    from eossl.config import load_config
    from eossl.evaluate.config import EvaluateConfig
    from eossl.evaluate.runs import run_evaluate

    folder = stack.samples.source
    cfg = load_config(EvaluateConfig, None, overrides=[
        "task=stack", "seeds=2", "device=cpu", "ks=[3]", f"stack.stacks=[{{path: {folder}, variable: CT}}]",
        "stack.period=month", "stack.rows=[raw, image_pretrained, image_sequence, image_random_init]",
        f"stack.image_weights={l1c_weights}", "stack.image_chip=8", "stack.image_components=3", "stack.resamples=50"])
    run = tmp_path / "run"
    run.mkdir()
    run_evaluate(cfg, run, progress=False)
    m = json.loads((run / "metrics.json").read_text())
    models = {r["model"] for r in m["results"]}
    assert any("mean+std over time" in x and "resnet18 vicreg (sentinel2-l1c)" in x for x in models)
    assert any("per-period PCA" in x for x in models) and any("random init, mean+std" in x for x in models)
    assert any(w["code"] == "image_product_level" and "sentinel2-l1c" in w["message"] for w in m["warnings"])
    described = m["data"]["image_backbones"]["parcels"]
    assert all(d["product"]["applied_to"] == "sentinel2-l2a" for d in described.values())
    splits = m["splits"]["parcels"]
    assert len(splits) == 2 and all(sp["n_test"] > 0 for sp in splits)
