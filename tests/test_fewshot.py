"""Few-label protocols (splits, probe, kNN, fine-tuning with layer-wise LR decay), evaluation runs and the
`eossl finetune` / `eossl evaluate` commands."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from eossl.catalog.sensors import load_sensor
from eossl.cli import main
from eossl.config import ConfigError
from eossl.data.labelled.folders import LabelledChips, load_eurosat
from eossl.data.normalization import Normalization
from eossl.evaluate import patches as evaluation
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.fewshot import few_label_splits, knn_predict, linear_probe
from eossl.evaluate.finetuning import predict_chips
from eossl.evaluate.patches import evaluate_chips
from eossl.evaluate.runs import paired_differences
from eossl.models.backbones import create_backbone
from eossl.models.classifier import load_classifier
from eossl.models.weights import WeightsInfo, export_backbone
from eossl.report.rows import ResultRow
from eossl.train.supervised import FinetuneSettings, _param_groups, finetune_classifier, layer_depths

S2 = load_sensor("sentinel2-l1c")
BANDS = ["B02", "B03", "B04", "B08"]


def _toy_chips(per_class: int = 12, size: int = 32, seed: int = 0) -> LabelledChips:
    """3 classes told apart by which band is bright (plus noise): learnable from spectra."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.normal(0.1, 0.02, (labels.size, 4, size, size)).astype(np.float32)
    for i, y in enumerate(labels):
        images[i, y] += 0.15
    return LabelledChips(images=images, mask=np.ones((labels.size, size, size), bool), labels=labels,
                         classes=["a", "b", "c"], bands=BANDS, paths=[f"chip{i}" for i in range(labels.size)],
                         sensor="sentinel2-l1c")


def _export(tmp_path, bands, arch="resnet18", img=32, seed=0):
    torch.manual_seed(seed)
    model = create_backbone(arch, len(bands), img)
    mean, std = S2.norm_stats(bands)
    info = WeightsInfo(arch=arch, in_chans=len(bands), bands=list(bands), wavelengths_nm=S2.wavelengths(bands),
                       gsd_m=10.0, normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=0, img_size=img)
    return export_backbone(model, info, tmp_path / f"w-{arch}-{len(bands)}")


# ------------------------------------------------------------------------------------------- splits


def test_splits_are_stratified_nested_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), 20)
    splits = few_label_splits(labels, [1, 5, 10, "all"], seeds=3, test_fraction=0.3)
    for sp in splits:
        assert np.bincount(labels[sp.test]).tolist() == [6] * 4
        assert not set(sp.test) & set(sp.pool)
        for k in (1, 5, 10):
            assert np.bincount(labels[sp.train[str(k)]]).tolist() == [k] * 4
        assert set(sp.train["1"]) <= set(sp.train["5"]) <= set(sp.train["10"]) <= set(sp.train["all"])
        assert sp.train["all"].tolist() == sp.pool.tolist() and sp.pool.size == 56
    again = few_label_splits(labels, [1, 5, 10, "all"], seeds=3, test_fraction=0.3)
    assert all(a.test.tolist() == b.test.tolist() for a, b in zip(splits, again))
    assert splits[0].test.tolist() != splits[1].test.tolist()


def test_splits_name_a_class_with_fewer_samples_than_k():
    labels = np.array([0] * 20 + [1] * 6)
    with pytest.raises(ValueError, match=r"class 'rare' has only 4 training samples .* fewer than k = 5"):
        few_label_splits(labels, [5], seeds=1, classes=["common", "rare"])
    with pytest.raises(ValueError, match="positive integers"):
        few_label_splits(labels, [0], seeds=1)
    with pytest.raises(ValueError, match="test_fraction"):
        few_label_splits(labels, [1], seeds=1, test_fraction=1.0)


def test_knn_matches_a_plain_cosine_vote():
    rng = np.random.default_rng(0)
    tr, te = rng.normal(size=(30, 8)), rng.normal(size=(10, 8))
    ytr = rng.integers(0, 3, 30)
    pred = knn_predict(tr, ytr, te, n_neighbors=3)
    for i, q in enumerate(te):
        dist = 1 - tr @ q / (np.linalg.norm(tr, axis=1) * np.linalg.norm(q))
        near = np.argsort(dist)[:3]
        votes = np.zeros(3)
        np.add.at(votes, ytr[near], 1 / dist[near])
        assert pred[i] == votes.argmax()
    assert knn_predict(tr[:2], ytr[:2], te, n_neighbors=5).shape == (10,)     # k capped at the training size


def test_linear_probe_separates_separable_features():
    labels = np.repeat(np.arange(3), 10)
    feats = np.eye(3)[labels] + np.random.default_rng(0).normal(0, 0.05, (30, 3))
    assert (linear_probe(feats[::2], labels[::2], feats[1::2]) == labels[1::2]).all()


# ------------------------------------------------------------------------------------------- fine-tuning


@pytest.mark.parametrize("arch, top", [("resnet18", 5), ("vit_tiny_patch16", 14)])
def test_layer_depths_and_layer_decay(arch, top):
    torch.manual_seed(0)
    from eossl.models.classifier import Classifier
    model = Classifier(create_backbone(arch, 4, 32), 3)
    depths, n = layer_depths(model.backbone)
    assert n == top and min(depths.values()) == 0 and max(depths.values()) == top - 1
    groups = _param_groups(model, FinetuneSettings(lr=1.0, layer_decay=0.5))
    head_ids = {id(p) for p in model.head.parameters()}
    for g in groups:
        if any(id(p) in head_ids for p in g["params"]):
            assert g["lr"] == 1.0
        assert g["weight_decay"] == 0.0 or all(p.ndim > 1 for p in g["params"])
    assert min(g["lr"] for g in groups) == pytest.approx(0.5 ** top)


def test_finetune_learns_is_seeded_and_freezing_keeps_the_backbone():
    torch.set_num_threads(1)
    chips = _toy_chips()
    norm = Normalization(tuple(BANDS), np.full(4, 0.15, np.float32), np.full(4, 0.1, np.float32))
    train, test = np.arange(0, 36, 2), np.arange(1, 36, 2)
    s = FinetuneSettings(epochs=6, min_steps=12, batch_size=8, lr=3e-3)

    def run(seed, **kw):
        torch.manual_seed(100)
        return finetune_classifier(create_backbone("resnet18", 4, 32), chips.images, chips.labels, train, 3,
                                   norm, FinetuneSettings(**{**s.__dict__, **kw}), seed=seed)

    a, b = run(0), run(0)
    pa = predict_chips(a, chips.images[test], norm)
    assert np.array_equal(pa, predict_chips(b, chips.images[test], norm))
    # chance is 1/3; 14-15 of the 18 test chips come out right depending on the CPU's kernels (AVX2 / AVX512)
    assert (pa.argmax(1) == chips.labels[test]).mean() >= 2 / 3
    torch.manual_seed(100)
    before = {k: v.clone() for k, v in create_backbone("resnet18", 4, 32).state_dict().items()}
    frozen = run(0, freeze_backbone=True)
    assert all(torch.equal(before[k], v) for k, v in frozen.backbone.state_dict().items())


def test_lp_ft_starts_from_the_probe_and_early_stopping_keeps_the_best_epoch():
    from eossl.train.logreg import fit_logreg_standardised
    from eossl.train.supervised import _features, validation_split

    torch.set_num_threads(1)
    chips = _toy_chips()
    norm = Normalization(tuple(BANDS), np.full(4, 0.15, np.float32), np.full(4, 0.1, np.float32))
    train = np.arange(0, 36, 2)
    x = norm.apply(chips.images[train])
    y = chips.labels[train]
    # the probe folded into the head: its logits' softmax equals the logistic regression's probabilities
    torch.manual_seed(100)
    model = finetune_classifier(create_backbone("resnet18", 4, 32), chips.images, chips.labels, train, 3, norm,
                                FinetuneSettings(epochs=1, min_steps=1, lr=1e-12, warmup_fraction=0.0,
                                                 linear_probe_first=True, probe_C_grid=[0.5]), seed=0)
    assert model.recipe["probe_C"] == 0.5
    torch.manual_seed(100)
    feats = _features(type(model)(create_backbone("resnet18", 4, 32), 3), x, "cpu")
    fit = fit_logreg_standardised(feats, y, C=0.5)
    from sklearn.linear_model import LogisticRegression
    ref = LogisticRegression(C=0.5, max_iter=2000).fit((feats - fit.center) / fit.scale, y)
    w, b = fit.logits(3)
    mine = torch.softmax(torch.as_tensor(feats @ w.T + b), 1).numpy()
    assert np.allclose(mine, ref.predict_proba((feats - fit.center) / fit.scale), atol=1e-6)
    # early stopping: a validation split of the training chips only, per class, seeded
    fit_pos, val_pos = validation_split(y, 0.25, seed=3)
    assert len(np.intersect1d(fit_pos, val_pos)) == 0 and len(fit_pos) + len(val_pos) == len(y)
    assert set(np.unique(y[val_pos])) == {0, 1, 2}
    assert np.array_equal(val_pos, validation_split(y, 0.25, seed=3)[1])
    torch.manual_seed(100)
    es = finetune_classifier(create_backbone("resnet18", 4, 32), chips.images, chips.labels, train, 3, norm,
                             FinetuneSettings(epochs=12, min_steps=1, batch_size=8, lr=3e-3, val_fraction=0.25,
                                              patience=2), seed=0)
    r = es.recipe
    assert r["val_chips"] == len(val_pos) == 6 and r["fit_chips"] == 12
    assert 1 <= r["best_epoch"] <= r["epochs_run"] <= 12
    assert r["epochs_run"] == 12 or r["epochs_run"] - r["best_epoch"] == 2     # stopped after `patience` epochs


def test_frozen_early_stages_keep_their_weights_and_batchnorm_statistics():
    torch.set_num_threads(1)
    chips = _toy_chips()
    norm = Normalization(tuple(BANDS), np.full(4, 0.15, np.float32), np.full(4, 0.1, np.float32))
    torch.manual_seed(100)
    before = {k: v.clone() for k, v in create_backbone("resnet18", 4, 32).state_dict().items()}
    torch.manual_seed(100)
    m = finetune_classifier(create_backbone("resnet18", 4, 32), chips.images, chips.labels, np.arange(0, 36, 2), 3,
                            norm, FinetuneSettings(epochs=2, min_steps=4, batch_size=8, frozen_depth=1), seed=0)
    after = m.backbone.state_dict()
    early = [k for k in before if k.startswith(("conv1", "bn1", "layer1."))]
    late = [k for k in before if k.startswith("layer4.") and k.endswith("weight")]
    assert early and all(torch.equal(before[k], after[k]) for k in early)       # running stats included
    assert any(not torch.equal(before[k], after[k]) for k in late)


def test_the_frozen_probe_can_choose_C_by_cross_validation_on_its_training_chips(monkeypatch):
    from eossl.train.logreg import choose_C

    torch.set_num_threads(1)
    chips = _toy_chips()
    seen = []

    def spy(x, y, grid, seed):
        seen.append((len(y), grid, seed))
        return choose_C(x, y, grid, seed)

    monkeypatch.setattr(evaluation, "choose_C", spy)
    s = EvaluateConfig(ks=[6], seeds=2, protocols=["linear"], baselines=["band_statistics"], C_grid=[1e-4, 1.0])
    results, notes = evaluate_chips(chips, s, progress=False)
    assert notes.settings["C_grid"] == [1e-4, 1.0]
    assert seen == [(18, [1e-4, 1.0], 0), (18, [1e-4, 1.0], 1)]          # the 6 x 3 training chips of each seed
    assert results[0].score("overall_accuracy").mean >= 0.9
    # a class with a single training chip leaves no fold: the first C of the grid
    x = np.random.default_rng(0).normal(size=(11, 3))
    assert choose_C(x, np.r_[np.zeros(10, int), 1], [3.0, 1.0], 0) == 3.0


# ------------------------------------------------------------------------------------------- evaluation


def test_evaluation_rows_share_splits_and_pretrained_equals_random_with_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    chips = _toy_chips()
    weights = _export(tmp_path, BANDS, seed=0)       # the random-init row's weights (seed 0) exported
    s = EvaluateConfig(ks=[2, "all"], seeds=2, protocols=["linear", "knn"],
                           baselines=["random_init", "band_statistics"])
    results, notes = evaluate_chips(chips, replace(s, weights=weights), cache_dir=tmp_path / "cache", progress=False)
    rows = {r.key: r for r in results}
    assert set(rows) == {(m, p, k) for m, p in [("pretrained resnet18 test", "linear"),
                                                ("pretrained resnet18 test", "knn"), ("random-init resnet18", "linear"),
                                                ("random-init resnet18", "knn"), ("band statistics", "linear")]
                         for k in ("2", "all")}
    for p in ("linear", "knn"):    # same weights, same normalisation, same splits -> identical scores
        assert rows[("pretrained resnet18 test", p, "2")].per_seed == rows[("random-init resnet18", p, "2")].per_seed
    assert rows[("band statistics", "linear", "all")].score("overall_accuracy").mean >= 0.9
    assert all(r.per_seed[0].n_train == (6 if r.k == "2" else 24) for r in results)
    assert rows[("band statistics", "linear", "all")].metrics_all_seeds is not None
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    json.dumps(notes.to_dict(results))


def test_several_weights_are_scored_on_the_same_splits_and_paired_with_the_first(tmp_path):
    torch.set_num_threads(1)
    chips = _toy_chips()
    a = _export(tmp_path / "a", BANDS, seed=0)
    b = _export(tmp_path / "b", BANDS, seed=0)           # identical weights in another folder
    c = _export(tmp_path / "c", BANDS, seed=5)
    s = EvaluateConfig(ks=[2], seeds=2, protocols=["linear"], baselines=["random_init"], weights=str(a),
                       compare_weights=[str(b), str(c)])
    results, notes = evaluate_chips(chips, s, progress=False)
    rows = {r.model: r for r in results}
    # three folders named w-resnet18-4: the rows name the weights by path
    first, same, other = f"pretrained resnet18 test ({a})", f"resnet18 test ({b})", f"resnet18 test ({c})"
    assert set(rows) == {first, same, other, "random-init resnet18"}
    assert rows[first].per_seed == rows[same].per_seed                  # same weights, same splits
    assert [p.seed for p in rows[other].per_seed] == [0, 1]
    pairs = {(p.pretrained[0], p.baseline[0]): p for p in paired_differences(results)}
    assert {(first, same), (first, other)} <= set(pairs)
    assert pairs[(first, same)].score("overall_accuracy").mean == 0
    assert notes.settings["compare_weights"] == [str(b), str(c)]
    with pytest.raises(ConfigError, match="compare_weights"):
        EvaluateConfig(compare_weights=[str(b)])


def test_evaluate_cli_takes_several_weights(tmp_path):
    from eossl.evaluate.config import config_with_weights

    a, b = _export(tmp_path / "a", BANDS), _export(tmp_path / "b", BANDS)
    cfg = config_with_weights(EvaluateConfig, None, [], [str(a), str(b)])
    assert cfg.weights == str(a) and cfg.compare_weights == [str(b)]
    with pytest.raises(FileNotFoundError, match="no weights.json"):
        config_with_weights(EvaluateConfig, None, [], [str(a), str(tmp_path)])


def test_rcf_rows_draw_filters_from_each_training_pool_and_fusion_rows_stack_the_features(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    chips = _toy_chips()
    calls = []
    real = evaluation.rcf_features

    def spy(images, source, norm, **kw):
        out = real(images, source, norm, **kw)
        calls.append({"seed": kw["seed"], "index": np.asarray(kw["source_index"]).copy(), "n": len(source),
                      "features": out})
        return out

    monkeypatch.setattr(evaluation, "rcf_features", spy)
    weights = _export(tmp_path, BANDS, seed=1)
    s = EvaluateConfig(ks=[2, "all"], seeds=2, protocols=["linear"],
                           baselines=["random_init", "band_statistics", "rcf", "fusion"])
    out, _ = evaluate_chips(chips, replace(s, weights=weights), progress=False)
    rows = {r.key: r for r in out}
    models = ["pretrained resnet18 test", "random-init resnet18", "band statistics", "RCF 512",
              "band stats + pretrained resnet18 test", "band stats + random-init resnet18"]
    assert set(rows) == {(m, "linear", k) for m in models for k in ("2", "all")}
    # the filters of seed s come from split s's training pool (every non-test chip), never from a test chip
    splits = few_label_splits(chips.labels, s.ks, s.seeds, s.test_fraction, s.seed, chips.classes)
    assert [c["seed"] for c in calls] == [sp.seed for sp in splits] == [0, 1]
    for call, sp in zip(calls, splits):
        assert call["n"] == len(chips) and call["index"].tolist() == sp.pool.tolist()
        assert not set(call["index"]) & set(sp.test.tolist())
    assert not np.allclose(calls[0]["features"], calls[1]["features"])    # another seed, other filters
    # fusion: band statistics (4 bands x 7) next to each model's frozen features (512 for resnet18)
    dim = {m: rows[(m, "linear", "2")].dim for m in models}
    assert dim["RCF 512"] == 512 and dim["band statistics"] == 28 and dim["pretrained resnet18 test"] == 512
    for m in ("pretrained resnet18 test", "random-init resnet18"):
        assert dim[f"band stats + {m}"] == dim["band statistics"] + dim[m]
    # same seed, same filters and numbers
    again, _ = evaluate_chips(chips, replace(s, weights=weights), progress=False)
    np.testing.assert_array_equal(calls[2]["features"], calls[0]["features"])
    assert [r for r in again if r.model == "RCF 512"] == [r for r in out if r.model == "RCF 512"]


def _row(model, protocol, k, values):
    return ResultRow.from_dict({"model": model, "protocol": protocol, "k": k,
                                "per_seed": [{"seed": i, "n_train": 10, "overall_accuracy": v, "kappa": v / 2}
                                             for i, v in enumerate(values)]})


def test_paired_differences_pair_seeds_and_pick_the_matching_pretrained_row():
    from scipy import stats

    pre = "pretrained resnet18 x"
    rows = [_row(pre, "mean + linear", "5", [0.8, 0.7, 0.9]), _row(pre, "attention", "5", [0.9, 0.9, 0.9]),
            _row("random-init resnet18", "attention", "5", [0.5, 0.6, 0.4]),
            _row("band statistics", "linear", "5", [0.6, 0.6, 0.8]),
            _row("band stats + pretrained resnet18 x", "linear", "5", [0.85, 0.75, 0.95]),
            _row("band stats + random-init resnet18", "linear", "5", [0.8, 0.7, 0.9])]
    pairs = {p.baseline: p for p in paired_differences(rows)}
    assert set(pairs) == {("random-init resnet18", "attention"), ("band statistics", "linear"),
                          ("band stats + random-init resnet18", "linear")}
    assert pairs[("random-init resnet18", "attention")].pretrained == (pre, "attention")
    stat = pairs[("band statistics", "linear")]          # no pretrained linear row: the frozen-feature protocol
    assert stat.pretrained == (pre, "mean + linear")
    np.testing.assert_allclose([r.scores["overall_accuracy"] for r in stat.per_seed], [0.2, 0.1, 0.1])
    d = np.array([0.2, 0.1, 0.1])
    assert stat.score("overall_accuracy").mean == pytest.approx(d.mean())
    assert stat.score("overall_accuracy").ci95 == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))
    assert stat.score("kappa").mean == pytest.approx(d.mean() / 2)
    assert stat.to_dict()["pretrained"] == {"model": pre, "protocol": "mean + linear"}
    fusion = pairs[("band stats + random-init resnet18", "linear")]
    assert fusion.pretrained[0] == "band stats + pretrained resnet18 x"
    assert fusion.score("overall_accuracy").mean == pytest.approx(0.05)
    assert paired_differences([r for r in rows if "pretrained" not in r.model]) == []
    tuned = [_row(pre, "finetune", "5", [0.9, 0.8, 0.95]), _row(pre, "linear", "5", [0.8, 0.8, 0.9]),
             _row("from scratch resnet18", "finetune", "5", [0.5, 0.6, 0.7])]
    pairs = {(p.pretrained, p.baseline): p for p in paired_differences(tuned)}
    assert set(pairs) == {((pre, "finetune"), ("from scratch resnet18", "finetune")),
                          ((pre, "finetune"), (pre, "linear"))}     # fine-tuning minus the frozen probe
    np.testing.assert_allclose([r.scores["overall_accuracy"] for r in pairs[((pre, "finetune"), (pre, "linear"))]
                                .per_seed], [0.1, 0.0, 0.05], atol=1e-12)


def test_evaluation_errors(tmp_path):
    chips = _toy_chips(per_class=4)
    with pytest.raises(ValueError, match="fewer than k = 5"):
        evaluate_chips(chips, EvaluateConfig(ks=[5], seeds=1, baselines=["band_statistics"]), progress=False)
    far = _export(tmp_path, ["B09", "B10"])           # 945 and 1375 nm: nothing within 60 nm of the chips' bands
    with pytest.raises(ValueError, match="B09|B10|nm"):
        evaluate_chips(_toy_chips(), EvaluateConfig(ks=[2], seeds=1, weights=far), progress=False)
    with pytest.raises(ValueError, match="unknown protocol"):
        EvaluateConfig(protocols=["svm"])


def _png_ok(path) -> bool:
    img = np.asarray(Image.open(path).convert("L"))
    return img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 5


def test_cli_finetune_then_evaluate_on_the_builtin_sample(tmp_path, capsys):
    torch.set_num_threads(1)
    weights = _export(tmp_path, S2.band_names, img=64)
    runs = tmp_path / "runs"
    tiny = ["--set", "finetune.epochs=1", "--set", "finetune.min_steps=2", "--no-progress", "--runs", str(runs)]
    assert main(["finetune", "--weights", str(weights), "--set", "k=3", *tiny]) == 0
    (ft,) = runs.glob("finetune-*")
    metrics = json.loads((ft / "metrics.json").read_text())
    assert metrics["n_train"] == 30 and metrics["n_test"] == 60
    assert set(metrics["metrics"]) >= {"overall_accuracy", "macro_f1", "kappa", "per_class", "confusion_matrix"}
    clf = load_classifier(ft / "model")
    assert clf.info.classes == load_eurosat().classes and clf.info.source_weights == str(weights)
    assert _png_ok(ft / "confusion_matrix.png")
    log = (ft / "logs" / "metrics.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr" and len(log) == 1 + 2                # min_steps=2 optimiser steps

    assert main(["evaluate", "--weights", str(weights), "--set", "ks=[2,5]", "--set", "seeds=2",
                 "--set", "protocols=[linear,finetune]", *tiny]) == 0
    (ev,) = runs.glob("evaluate-*")
    out = json.loads((ev / "metrics.json").read_text())
    models = {(r["model"], r["protocol"]) for r in out["results"]}
    assert models == {("pretrained resnet18 test", "linear"), ("pretrained resnet18 test", "finetune"),
                      ("random-init resnet18", "linear"), ("band statistics", "linear"), ("RCF 512", "linear"),
                      ("band stats + pretrained resnet18 test", "linear"),
                      ("band stats + random-init resnet18", "linear"), ("from scratch resnet18", "finetune")}
    assert out["headline"] == {"model": "pretrained resnet18 test", "protocol": "linear", "k": "5"}
    assert _png_ok(ev / "few_label_curve.png") and _png_ok(ev / "confusion_matrix.png")
    pairs = {(p["baseline"]["model"], p["pretrained"]["protocol"], p["k"]) for p in out["paired_differences"]}
    assert ("RCF 512", "linear", "5") in pairs and ("from scratch resnet18", "finetune", "2") in pairs
    assert ("pretrained resnet18 test", "finetune", "2") in pairs          # fine-tuned minus the frozen probe
    assert len(pairs) == 6 * 2
    table = (ev / "table.txt").read_text()
    assert "band statistics / linear" in table and "RCF 512 / linear" in table
    assert "pretrained resnet18 test / linear - RCF 512 / linear" in table
    assert "done in" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["evaluate", "--weights", str(tmp_path / "missing"), "--runs", str(tmp_path)]) == 2
    assert "no weights.json" in capsys.readouterr().err
    assert main(["finetune", "--set", "k=50", "--runs", str(tmp_path)]) == 2
    assert "fewer than k = 50" in capsys.readouterr().err
    assert main(["evaluate", "--set", "finetune.layer_decay=2", "--dry-run"]) == 2
    assert "finetune.layer_decay" in capsys.readouterr().err


@pytest.mark.filterwarnings("error::FutureWarning")   # shipped files use no renamed key
def test_shipped_evaluate_finetune_predict_configs_load_and_eurosat_yaml_is_the_default():
    from pathlib import Path

    from eossl.config import load_config, to_dict
    from eossl.evaluate.config import EvaluateConfig, FinetuneConfig
    from eossl.predict.config import PredictConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    loaded = {}
    for sub, load in (("evaluate", lambda p: load_config(EvaluateConfig, p)),
                      ("finetune", lambda p: load_config(FinetuneConfig, p)), ("predict", lambda p: load_config(PredictConfig, p))):
        files = sorted((root / sub).glob("*.yaml"))
        assert files, f"configs/{sub}/ ships examples"
        loaded.update({f"{sub}/{f.name}": load(f) for f in files})
    assert to_dict(loaded["evaluate/eurosat.yaml"]) == to_dict(EvaluateConfig())
    assert {c.task for k, c in loaded.items() if k.startswith("evaluate/")} == {"patch", "crop", "segment", "series", "stack"}


def test_data_in_other_units_than_the_weights_is_refused(tmp_path, caplog):
    from eossl.data.normalization import Normalization

    chips = _toy_chips()
    weights = _export(tmp_path, BANDS)
    dn = LabelledChips(chips.images * 10000, chips.mask, chips.labels, chips.classes, chips.bands, chips.paths,
                       chips.sensor)
    with pytest.raises(ValueError, match=r"far outside the normalisation .* B02 .*reflectance = DN x scale"):
        evaluate_chips(dn, EvaluateConfig(ks=[2], seeds=1, weights=weights), progress=False)
    norm = Normalization(BANDS, np.zeros(4), np.ones(4))
    z = norm.check(np.full((2, 4, 3, 3), 0.5) + np.array([0, 0, 0, 5.0])[:, None, None], None, "toy")
    assert z.round(3).tolist() == [0.5, 0.5, 0.5, 5.5] and "B08 (mean 5.5" in caplog.text


def test_chips_from_label_points_over_an_indexed_scene(tiny_s2_scene, tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point

    from eossl.catalog.build import build_index
    from eossl.config import load_config
    from eossl.data.labelled.folders import load_label_chips
    from eossl.data.reader import ChipReader
    from eossl.evaluate.config import EvaluateConfig

    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    x0, y1 = 399960.0, 5800020.0
    pts = [Point(x0 + 200 + 100 * i, y1 - 300 - 80 * (i % 3)) for i in range(8)]
    gpd.GeoDataFrame({"lc": ["crop", "forest"] * 4}, geometry=pts, crs="EPSG:32633").to_file(tmp_path / "p.gpkg")
    chips = load_label_chips(index, tmp_path / "p.gpkg", "lc", size=16, gsd=10.0, bands=["B02", "B04", "B08"])
    assert chips.images.shape == (8, 3, 16, 16) and chips.classes == ["crop", "forest"]
    assert chips.labels.tolist() == [0, 1] * 4 and chips.sensor == "sentinel2-l1c"
    reader = ChipReader(index, bands=["B02", "B04", "B08"])          # the chip is the window around the point
    direct = reader.read(0, (x0 + 120, y1 - 380, x0 + 280, y1 - 220), gsd=10.0, size=16)
    np.testing.assert_array_equal(chips.images[0], direct.image)
    cfg = load_config(EvaluateConfig, None, overrides=[f"data={{labels: {tmp_path / 'p.gpkg'}, label_column: lc, "
                                              f"scenes: {{roots: [{tiny_s2_scene.root}], sensor: sentinel2-l1c}}, "
                                              f"chip_size: 16, bands: [B02, B04, B08]}}"])
    assert cfg.data.load().images.shape == (8, 3, 16, 16)
    with pytest.raises(ValueError, match="no label column 'landcover'"):
        load_label_chips(index, tmp_path / "p.gpkg", "landcover", size=16)
    with pytest.raises(Exception, match="need labels, label_column and scenes"):
        load_config(EvaluateConfig, None, overrides=[f"data={{labels: {tmp_path / 'p.gpkg'}}}"])
