"""The stack task's parts: parcel splits, the bootstrap over test parcels, MiniRocket features, the StackModel
(PCA on all pixels, save/load, one code path, absent classes), on a small synthetic stack (tests/parcel_stack_data)
and the shared Flanders stacks where cheap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from parcel_stack_data import LAYOUT, label_codes, write_parcel_stack
from stack_data import SHARED

from eossl.data.labelled.parcels import buffer_mask, find_parcels
from eossl.evaluate.metrics import metrics_from_confusion
from eossl.evaluate.minirocket import KERNEL_WEIGHTS, fit_minirocket, minirocket_features
from eossl.evaluate.parcel_scores import Scope, bootstrap_weights, seed_counts, weighted_scores
from eossl.evaluate.parcel_splits import parcel_splits
from eossl.evaluate.stack_features import band_means, raw_features
from eossl.evaluate.stack_inputs import load_labelled_stack
from eossl.evaluate.stack_model import AbsentClassWarning, StackModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # small fits: one thread is faster


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = write_parcel_stack(tmp_path_factory.mktemp("stack") / "parcels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_labelled_stack(folder, variable="CT", period="month")


# ------------------------------------------------------------------------------------------ splits


def _check_split(sp, parcels, multi, single, buffer=2):
    ids = parcels.ids
    test_ids = set(np.unique(sp.test_parcels).tolist())
    assert {int(parcels.codes[i - 1]) for i in test_ids} == set(multi) and len(test_ids) == len(multi)
    near = buffer_mask(ids, test_ids, buffer).ravel()
    assert not near[sp.train].any()                                    # no training pixel in or near a test parcel
    assert not np.isin(ids.ravel()[sp.train], list(test_ids)).any()
    assert (ids.ravel()[sp.train] > 0).all()                           # parcels only: no fragment, no unlabelled
    assert np.array_equal(sp.train_labels, parcels.codes[ids.ravel()[sp.train] - 1])
    assert set(np.unique(label_codes().ravel()[sp.test]).tolist()) == set(multi)
    singles = ids.ravel()[sp.single]
    assert set(parcels.codes[singles - 1].tolist()) <= set(single)     # single-parcel pixels scored apart
    trained = np.zeros(ids.size, bool)
    trained[sp.train] = True
    near_train = buffer_mask(np.where(trained.reshape(ids.shape), 1, 0), [1], buffer).ravel()
    assert not near_train[sp.single].any()


def test_parcel_splits_keep_training_pixels_away_from_test_parcels():
    codes = label_codes()
    parcels = find_parcels(codes, codes > 0, 20)
    assert parcels.per_class() == {c: len(s) for c, s in LAYOUT.items()}      # the 2 x 2 sliver is no parcel
    splits = parcel_splits(parcels, [3, 10, "all"], seeds=6, seed=4)
    assert [(sp.seed, sp.k) for sp in splits[:3]] == [(4, "3"), (4, "10"), (4, "all")]
    for sp in splits:
        _check_split(sp, parcels, multi=[11, 12, 13], single=[14])
    for code in (11, 12, 13):                                           # every parcel of a class is tested in turn
        tested = {int(p) for sp in splits for p in np.unique(sp.test_parcels) if parcels.codes[p - 1] == code}
        assert tested == set(parcels.of_class(code))
    by = {(sp.seed, sp.k): sp for sp in splits}
    assert set(by[(4, "3")].train) <= set(by[(4, "10")].train)         # nested in k
    again = parcel_splits(parcels, [3, 10, "all"], seeds=6, seed=4)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test) for a, b in zip(splits, again))
    other = parcel_splits(parcels, [3], seeds=1, seed=5)[0]
    assert not np.array_equal(other.train, by[(4, "3")].train)


def test_a_class_with_fewer_eligible_pixels_than_k_uses_them_all_and_says_so():
    codes = label_codes()
    parcels = find_parcels(codes, codes > 0, 20)
    sp = parcel_splits(parcels, [40], seeds=1)[0]
    assert sp.short and all(n < 40 for n in sp.short.values())
    for code, n in sp.short.items():
        assert (sp.train_labels == code).sum() == n


def test_parcel_splits_refuse_labels_without_a_class_of_two_parcels():
    codes = np.zeros((12, 12), np.int64)
    codes[:5, :5], codes[6:11, 6:11] = 1, 2
    with pytest.raises(ValueError, match="no class has two or more parcels"):
        parcel_splits(find_parcels(codes, codes > 0, 20), [5], seeds=1)


# ------------------------------------------------------------------------------------------ bootstrap


def _plain_scores(scope, seeds, w):
    """The bootstrap statistic written out with loops: per seed a weighted confusion matrix (pixel weight = its
    parcel's multiplicity); per class the mean of the seeds' F1, each seed weighted by its parcel's
    multiplicity; OA the mean over seeds weighted by the mean multiplicity of the seed's parcels."""
    k = len(scope.codes)
    f1s = {m: [] for m in range(len(scope.multi))}
    oas = []
    for y, p, g in seeds:
        cm = np.zeros((k, k))
        for a, b, q in zip(y, p, g):
            cm[list(scope.codes).index(a), list(scope.codes).index(b)] += w[q]
        for m, code in enumerate(scope.multi):
            i = list(scope.codes).index(code)
            tp, fn, fp = cm[i, i], cm[i].sum() - cm[i, i], cm[:, i].sum() - cm[i, i]
            sw = sum(w[q] for q in set(g) if scope.parcel_class[q] == m)
            f1s[m].append((sw, 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0))
        parcels = sorted(set(g))
        oas.append((np.mean([w[q] for q in parcels]), np.trace(cm) / cm.sum() if cm.sum() else 0.0))
    per_class = [sum(s * f for s, f in v) / sum(s for s, _ in v) for v in f1s.values()]
    return np.mean(per_class), sum(s * a for s, a in oas) / sum(s for s, _ in oas)


def test_the_bootstrap_statistic_matches_a_plain_loop_and_the_seed_average():
    rng = np.random.default_rng(0)
    scope = Scope("t", codes=np.array([1, 2, 3]), multi=np.array([1, 2]), parcel_class=np.array([0, 0, 0, 1, 1]),
                  strata=np.array([0, 0, 0, 1, 1]))
    seeds = []
    for s in range(4):                                     # seed s tests parcel s % 3 of class 1, 3 + s % 2 of 2
        g = np.repeat([s % 3, 3 + s % 2], [6 + s, 5])
        y = np.where(g < 3, 1, 2)
        seeds.append((y, np.where(rng.random(len(y)) < 0.7, y, rng.choice([1, 2, 3], len(y))), g))
    counts = np.stack([seed_counts(scope, y, p, g) for y, p, g in seeds])
    weights = bootstrap_weights(scope.strata, 30, seed=1)
    assert np.array_equal(weights[:, :3].sum(1), np.full(30, 3.0)) and np.array_equal(weights[:, 3:].sum(1),
                                                                                       np.full(30, 2.0))
    got = weighted_scores(scope, counts, weights)
    for b in range(30):
        macro, oa = _plain_scores(scope, seeds, weights[b])
        assert got["macro_f1"][b] == pytest.approx(macro) and got["overall_accuracy"][b] == pytest.approx(oa)
    point = weighted_scores(scope, counts)
    plain = [metrics_from_confusion(c.sum(0).astype(int), ["a", "b", "c"]) for c in counts]
    assert point["macro_f1"][0] == pytest.approx(np.mean([m["macro_f1"] for m in plain]))
    assert point["overall_accuracy"][0] == pytest.approx(np.mean([m["overall_accuracy"] for m in plain]))
    assert point["kappa"][0] == pytest.approx(np.mean([m["kappa"] for m in plain]))


# ------------------------------------------------------------------------------------------ features


def test_minirocket_features_are_seeded_per_pixel_and_match_a_plain_convolution():
    x = np.random.default_rng(0).normal(size=(50, 30, 3)).astype(np.float32)
    state = fit_minirocket(x, n_features=300, seed=0)
    f = minirocket_features(x, state)
    assert f.shape == (50, len(state["dilations"]) * 84 * state["biases"].shape[-1]) and 0 <= f.min() <= f.max() <= 1
    assert np.array_equal(f, minirocket_features(x, fit_minirocket(x, n_features=300, seed=0)))
    assert not np.array_equal(f, minirocket_features(x, fit_minirocket(x, n_features=300, seed=1)))
    assert np.array_equal(minirocket_features(x[7:9], state), f[7:9])
    i, m, d = len(state["dilations"]) - 1, 5, int(state["dilations"][-1])
    series = x[3] @ state["masks"][i, m]                                     # the kernel's channels summed
    conv = [sum(KERNEL_WEIGHTS[m, j] * (series[t + (j - 4) * d] if 0 <= t + (j - 4) * d < 30 else 0.0)
                for j in range(9)) for t in range(30)]
    scored = range(30) if state["padded"][i, m] else range(4 * d, 30 - 4 * d)
    q = state["biases"].shape[-1]
    want = [np.mean([conv[t] > b for t in scored]) for b in state["biases"][i, m]]
    col = (i * 84 + m) * q
    assert f[3, col:col + q] == pytest.approx(want)


def test_pca_is_fitted_on_every_pixel(stack):
    from sklearn.decomposition import PCA

    s = stack.samples
    model = _model("pca", stack).prepare(s)
    x = raw_features(s, band_means(s))
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    ref = PCA(n_components=8, svd_solver="full").fit(z)
    assert np.allclose(model.state["variance"], ref.explained_variance_, rtol=1e-3)
    assert np.allclose(np.abs(model.state["components"][:2]), np.abs(ref.components_[:2]), atol=1e-3)
    few = _model("pca", stack).prepare(s.subset(np.flatnonzero(s.labels >= 0)[:40]))
    assert not np.allclose(np.abs(few.state["components"]), np.abs(model.state["components"]), atol=1e-3)
    assert model.transform(s).shape == (len(s), 8)


# ------------------------------------------------------------------------------------------ the model


def _model(kind, stack, classifier="linear", weights=None):
    c = stack.comp
    return StackModel.build(kind, classes=stack.names, codes=stack.codes, bands=list(c.bands), sensor=c.sensor,
                            steps=len(c.starts), classifier=classifier, weights=weights, settings={
                                "pca": {"components": 8}, "rocket": {"n_features": 168}, "trees": 20},
                            encoder_kwargs={"dim": 16, "depth": 1, "heads": 2})


def _train(stack, n=8):
    s = stack.samples
    idx = np.concatenate([np.flatnonzero(s.labels == i)[:n] for i in range(len(stack.codes))])
    return s.subset(idx)


@pytest.mark.parametrize("kind,classifier", [("raw", "linear"), ("raw", "random_forest"), ("pca", "linear"),
                                             ("rocket", "linear"), ("phenology", "linear"), ("encoder", "linear"),
                                             ("fusion", "linear")])
def test_a_saved_model_predicts_the_same_and_pixels_do_not_depend_on_their_batch(stack, kind, classifier, tmp_path):
    s = stack.samples
    model = _model(kind, stack, classifier).prepare(s).fit(_train(stack))
    proba = model.predict_proba(s)
    assert proba.shape == (len(s), len(stack.codes)) and np.allclose(proba.sum(1), 1)
    loaded = StackModel.load(model.save(tmp_path / "m"))
    assert np.array_equal(loaded.predict_proba(s), proba)
    some = np.flatnonzero(s.labels >= 0)[::7]
    assert np.allclose(model.predict_proba(s.subset(some)), proba[some], atol=1e-6)   # the map's = the evaluation's
    assert np.allclose(model.proba_from_features(model.transform(s)[some]), proba[some], atol=1e-6)


@pytest.mark.parametrize("classifier", ["linear", "random_forest"])
def test_the_numpy_classifiers_equal_scikit_learn(stack, classifier):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    s, train = stack.samples, _train(stack)
    model = _model("raw", stack, classifier).prepare(s).fit(train)
    xt, x = model.transform(train), model.transform(s)
    if classifier == "linear":
        sc = StandardScaler().fit(xt)
        ref = LogisticRegression(max_iter=2000).fit(sc.transform(xt), train.labels).predict_proba(sc.transform(x))
    else:
        ref = RandomForestClassifier(20, random_state=0, n_jobs=1).fit(xt, train.labels).predict_proba(x)
    assert np.allclose(model.predict_proba(s), ref, atol=1e-5)      # float32 features, float64 here


def test_C_chosen_by_cross_validation_on_the_training_pixels_is_one_of_the_grid(stack):
    model = _model("raw", stack)
    model.C_grid = [0.001, 10.0]
    model.prepare(stack.samples).fit(_train(stack))
    assert float(model.head["C"]) in (0.001, 10.0)


def test_a_class_absent_from_the_training_side_is_an_error_or_a_named_warning(stack):
    train = _train(stack)
    train = train.subset(np.flatnonzero(train.labels != 1))
    model = _model("raw", stack).prepare(stack.samples)
    with pytest.raises(ValueError, match=f"no training pixel of class\\(es\\) {stack.names[1]}"):
        model.fit(train)
    with pytest.warns(AbsentClassWarning, match=stack.names[1]):
        model.fit(train, allow_absent=True)
    assert (model.predict_proba(stack.samples)[:, 1] == 0).all()


def test_a_pretrained_encoder_is_copied_into_the_saved_model(stack, tmp_path):
    from eossl.catalog.sensors import load_sensor
    from eossl.models.temporal import SERIES_ARCH, PixelSeriesEncoder, export_series_encoder
    from eossl.models.weights import WeightsInfo

    bands = list(stack.comp.bands)
    s2 = load_sensor("sentinel2-l2a")
    mean, std = s2.norm_stats(bands)
    info = WeightsInfo(arch=SERIES_ARCH, in_chans=len(bands), bands=bands, wavelengths_nm=s2.wavelengths(bands),
                       gsd_m=10.0, normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=1, extra={"temporal": {"dim": 16, "depth": 1, "heads": 2}})
    torch.manual_seed(3)
    weights = export_series_encoder(PixelSeriesEncoder(info.wavelengths_nm, dim=16, depth=1, heads=2), info,
                                    tmp_path / "w")
    model = _model("fusion", stack, weights=weights).prepare(stack.samples).fit(_train(stack))
    assert model.encoder_info["source"].startswith("pretrained")
    saved = model.save(tmp_path / "m")
    (weights / "encoder.safetensors").unlink()                       # the saved model holds its own copy
    assert np.array_equal(StackModel.load(saved).predict_proba(stack.samples), model.predict_proba(stack.samples))


def test_sentinel1_channels_get_pseudo_wavelengths_and_statistics_of_the_stack(tmp_path):
    from eossl.catalog.sensors import load_sensor
    from eossl.data.series.channels import PSEUDO_WAVELENGTHS_NM
    from eossl.models.temporal import SERIES_ARCH, PixelSeriesEncoder, export_series_encoder
    from eossl.models.weights import WeightsInfo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ls = load_labelled_stack(write_parcel_stack(tmp_path / "s1", with_s1=True), variable="CT", period="month",
                                 include_s1=True)
    bands = list(ls.comp.bands)
    assert set(bands[-2:]) == {"VV", "VH"}
    s = ls.samples
    # random init: optical bands from the sensor catalog, VV/VH from the stack's valid values
    model = _model("fusion", ls).prepare(s).fit(_train(ls))
    assert model.encoder_info["wavelengths_nm"][-2:] == [PSEUDO_WAVELENGTHS_NM[b] for b in bands[-2:]]
    for b in ("VV", "VH"):
        i = bands.index(b)
        seen = s.values[..., i][s.valid[..., i]]
        assert model.encoder_norm.mean[i] == pytest.approx(seen.mean(), rel=1e-5)
        assert model.encoder_norm.std[i] == pytest.approx(seen.std(), rel=1e-4)
    s2 = load_sensor("sentinel2-l2a")
    assert np.allclose(model.encoder_norm.mean[:-2], s2.norm_stats(bands[:-2])[0])
    loaded = StackModel.load(model.save(tmp_path / "m"))
    assert np.array_equal(loaded.predict_proba(s), model.predict_proba(s))
    # weights pretrained with S1: their own statistics for every band, VV/VH included
    optical = bands[:-2]
    mean = [*s2.norm_stats(optical)[0].tolist(), -11.0, -18.0]
    std = [*s2.norm_stats(optical)[1].tolist(), 3.0, 4.0]
    waves = [*s2.wavelengths(optical), *(PSEUDO_WAVELENGTHS_NM[b] for b in bands[-2:])]
    info = WeightsInfo(arch=SERIES_ARCH, in_chans=len(bands), bands=bands, wavelengths_nm=waves, gsd_m=10.0,
                       normalization={"mean": mean, "std": std}, ssl_method="test", pretrain_data="test", epochs=1,
                       extra={"temporal": {"dim": 16, "depth": 1, "heads": 2}})
    weights = export_series_encoder(PixelSeriesEncoder(waves, dim=16, depth=1, heads=2), info, tmp_path / "w")
    pre = _model("encoder", ls, weights=weights).prepare(s).fit(_train(ls))
    assert np.allclose(pre.encoder_norm.mean, mean) and np.allclose(pre.encoder_norm.std, std)


@pytest.mark.skipif(not (SHARED / "worldcereal_lpis_flanders2019").is_dir(), reason="shared stacks not present")
def test_the_shared_2019_stack_has_the_parcels_of_the_issue():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ls = load_labelled_stack(SHARED / "worldcereal_lpis_flanders2019", variable="CT", period="month")
    assert len(ls.parcels) == 15 and ls.parcels.per_class()[1110] == 4 and ls.names[ls.codes.index(1200)] == "Maize"
    for sp in parcel_splits(ls.parcels, [50], seeds=4):
        _check_split_real(sp, ls.parcels)


def _check_split_real(sp, parcels):
    near = buffer_mask(parcels.ids, np.unique(sp.test_parcels), 2).ravel()
    assert not near[sp.train].any() and (parcels.ids.ravel()[sp.train] > 0).all()
