"""Degenerate evaluations (issue 12, kind 5): one-class or tiny test sides, classes absent from test, CIs from
fewer than 3 seeds are flagged in the log, metrics.json and the report; a split that leaves a class out of
training is refused."""

import json
import logging

import numpy as np
import pytest
import torch

from eossl.config import load_config
from eossl.data.labelled.folders import LabelledChips
from eossl.data.labelled.rasters import SegmentationChips
from eossl.evaluate import sanity
from eossl.evaluate.config import EvaluateConfig, FinetuneConfig, LabelledDataConfig
from eossl.evaluate.context import TaskContext
from eossl.evaluate.patches import evaluate_chips
from eossl.evaluate.runs import run_evaluate, run_finetune
from eossl.evaluate.sanity import check_splits, class_presence, result_warnings
from eossl.evaluate.splits import window_block_split
from eossl.evaluate.tasks import segment
from eossl.pipeline.report import write_report

BANDS = ["B02", "B03", "B04", "B08"]
CHIP = 16
BLOCK = 100.0


def _codes(warnings: list[dict]) -> set[str]:
    return {w["code"] for w in warnings}


def _by_code(warnings: list[dict], code: str) -> dict:
    (w,) = [w for w in warnings if w["code"] == code]
    return w


# ------------------------------------------------------------------------------------------- the checks alone


def test_one_class_test_side_and_classes_absent_from_test_are_flagged():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    presence = class_presence(labels, 3)
    train = np.r_[0:5, 10:20, 20:30]
    test = np.r_[5:10]                                        # only class 0 on the test side
    w = check_splits(presence, [(7, train, test)], ["a", "b", "c"], unit="chips", hint="change test_fraction")
    one = _by_code(w, "one_class_test")
    assert one["seeds"] == [7] and "'a'" in one["message"]
    absent = [x for x in w if x["code"] == "class_absent_from_test"]
    assert sorted(x["classes"][0] for x in absent) == ["b", "c"]
    assert all(x["seeds"] == [7] and "test_fraction" in x["message"] for x in absent)
    assert _by_code(w, "small_test_split")["n_test"] == 5
    # a healthy split: 3 classes, 10 test chips each -> no warning at all
    labels = np.repeat(np.arange(3), 40)
    test = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(3)])
    train = np.setdiff1d(np.arange(labels.size), test)
    assert check_splits(class_presence(labels, 3), [(0, train, test)], ["a", "b", "c"], unit="chips",
                        hint="-") == []


def test_windows_hold_every_class_among_their_labelled_pixels():
    labels = -np.ones((3, 4, 4), dtype=np.int64)
    labels[0, 0, 0], labels[0, 3, 3], labels[1] = 2, 0, 1       # window 2: nothing labelled
    assert class_presence(labels, 3).tolist() == [[True, False, True], [False, True, False], [False, False, False]]


def test_a_split_leaving_a_class_out_of_training_is_refused_with_the_class_named():
    labels = np.array([0] * 6 + [1] * 6 + [2] * 3)
    train, test = np.r_[0:4, 6:10], np.r_[4:6, 10:15]          # every 'c' chip in test
    with pytest.raises(ValueError, match=r"class 'c': 0 training chips, 3 test, 3 in all.*fields\.block_size_m"):
        check_splits(class_presence(labels, 3), [(0, train, test)], ["a", "b", "c"], unit="chips",
                     hint="use a smaller fields.block_size_m")


def test_cis_from_two_seeds_too_wide_cis_and_zero_accuracy_are_flagged():
    def row(model, values, ci):
        return {"model": model, "protocol": "linear", "k": "5",
                "overall_accuracy": {"mean": float(np.mean(values)), "ci95": ci, "n": len(values)}}

    w = result_warnings([row("pretrained", [0.6, 0.9], 1.9), row("band statistics", [0.0, 0.0], 0.0)],
                        seeds_hint="set seeds to 5 (--set seeds=5)")
    few = _by_code(w, "few_seeds")
    assert few["n_seeds"] == 2 and "--set seeds=5" in few["message"] and "12.7" in few["message"]
    assert _by_code(w, "wide_ci")["rows"] == ["pretrained / linear k=5"]
    assert _by_code(w, "zero_accuracy")["rows"] == ["band statistics / linear k=5"]
    # 3 seeds, a tight CI and a real accuracy: nothing to flag
    assert result_warnings([row("pretrained", [0.8, 0.82, 0.81], 0.02)]) == []
    one = _by_code(result_warnings([row("pretrained", [0.8], None)]), "few_seeds")
    assert "no confidence interval" in one["message"]
    # chance: 1 / the number of classes with test support in the pooled confusion matrix (here 3 of 4)
    top = {**row("random-init", [0.3, 0.32, 0.31], 0.02), "metrics_all_seeds": {
        "confusion_matrix": [[3, 1, 1, 0], [2, 2, 1, 0], [1, 1, 3, 0], [0, 0, 0, 0]]}}
    chance = _by_code(result_warnings([top, row("pretrained", [0.8, 0.82, 0.81], 0.02)]), "accuracy_at_chance")
    assert chance["rows"] == ["random-init / linear k=5"] and "1/3" in chance["message"]


# ------------------------------------------------------------------------------------------- real code paths


def _toy_chips(per_class: int = 12, classes=("a", "b", "c")) -> LabelledChips:
    """3 classes told apart by which band is bright; ``classes`` may name more classes than have chips."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.normal(0.1, 0.02, (labels.size, 4, CHIP, CHIP)).astype(np.float32)
    for i, y in enumerate(labels):
        images[i, y] += 0.15
    return LabelledChips(images=images, mask=np.ones((labels.size, CHIP, CHIP), bool), labels=labels,
                         classes=list(classes), bands=BANDS, paths=[f"chip{i}" for i in range(labels.size)],
                         sensor="sentinel2-l1c")


def test_patch_evaluation_flags_a_class_without_chips_and_a_small_test_side():
    chips = _toy_chips(classes=("a", "b", "c", "d"))          # 'd' has no chip
    s = EvaluateConfig(ks=[2], seeds=3, protocols=["linear"], baselines=["band_statistics"])
    rows, notes = evaluate_chips(chips, s, progress=False)
    assert _by_code(notes.warnings, "class_without_samples")["classes"] == ["d"]
    assert _by_code(notes.warnings, "small_test_split")["n_test"] == 12          # 4 test chips x 3 classes
    assert set(_by_code(notes.warnings, "few_test_samples_per_class")["classes"]) == {"a", "b", "c"}
    json.dumps(notes.to_dict(rows))


def _segment_chips(one_class_block: bool) -> SegmentationChips:
    """12 windows of 16 px at 1 m in 3 blocks of 100 m (4 windows each). Blocks 0 and 1 hold classes a, b, c
    (a band of rows each; c only in block 1 when not ``one_class_block``); block 2 holds class a only."""
    n = 12
    labels = np.zeros((n, CHIP, CHIP), dtype=np.int64)
    for i in range(8):
        labels[i, 5:10], labels[i, 10:] = 1, 2
    if not one_class_block:
        labels[:4][labels[:4] == 2] = 1                     # block 0: a and b only; c lives in block 1 alone
    images = np.full((n, 4, CHIP, CHIP), 0.1, dtype=np.float32)
    for c in range(3):
        images[:, c][labels == c] += 0.2
    images += np.random.default_rng(0).normal(0, 0.01, images.shape).astype(np.float32)
    bounds = [(b * BLOCK + 20.0 * j, 0.0, b * BLOCK + 20.0 * j + CHIP, float(CHIP)) for b in range(3)
              for j in range(4)]
    return SegmentationChips(images=images, valid=np.ones((n, CHIP, CHIP), bool), labels=labels,
                             classes=["a", "b", "c"], bands=BANDS, sensor="sentinel2-l2a", bounds=bounds,
                             crs=["EPSG:32633"] * n, acquisitions=["s"] * n,
                             label_values={0: "a", 1: "b", 2: "c"}, gsd=1.0)


def _seed_testing(chips: SegmentationChips, block: int, count: int) -> int:
    """The first seed s such that seeds s .. s + count - 1 all put exactly ``block``'s windows on the test side."""
    windows = list(range(4 * block, 4 * block + 4))
    for s in range(200):
        if all(window_block_split(chips.bounds, BLOCK, 0.3, sd, crs=chips.crs)[1].tolist() == windows
               for sd in range(s, s + count)):
            return s
    raise AssertionError("no such seed")


def _segment_config(seed: int, seeds: int) -> EvaluateConfig:
    return load_config(EvaluateConfig, None, overrides=[
        "task=segment", "segmentation.scenes.index=unused.parquet", "segmentation.label_raster=unused.tif",
        f"segmentation.block_size_m={BLOCK}", f"seed={seed}", f"seeds={seeds}", "ks=[all]", "test_fraction=0.3",
        "baselines=[band_statistics]", "device=cpu"])


def test_segment_evaluation_warnings_reach_the_log_metrics_json_and_the_report(tmp_path, monkeypatch, caplog):
    torch.set_num_threads(1)
    chips = _segment_chips(one_class_block=True)
    monkeypatch.setattr(segment, "load_segment_chips", lambda s: chips)
    seed = _seed_testing(chips, block=2, count=2)              # both seeds test on block 2: class a only
    run = tmp_path / "evaluate-1"
    run.mkdir()
    with caplog.at_level(logging.WARNING, logger="eossl.evaluate.sanity"):
        run_evaluate(_segment_config(seed, 2), run, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    w = metrics["warnings"]
    assert {"one_class_test", "class_absent_from_test", "small_test_split", "few_seeds"} <= _codes(w)
    assert _by_code(w, "one_class_test")["seeds"] == [seed, seed + 1]
    assert sorted(x["classes"][0] for x in w if x["code"] == "class_absent_from_test") == ["b", "c"]
    assert _by_code(w, "small_test_split")["n_test"] == 4
    assert "segmentation.block_size_m" in _by_code(w, "one_class_test")["message"]
    logged = [r.getMessage() for r in caplog.records]
    assert all(any(x["message"] in m for m in logged) for x in w)

    state = {"name": "t", "stages": {"ev": {"command": "evaluate", "status": "done", "run_dir": str(run)}}}
    md = write_report(tmp_path / "report", tmp_path, state).read_text()
    assert f"**Warnings ({len(w)})" in md
    assert all(f"> - {x['code']}: {x['message']}" in md for x in w)
    page = (tmp_path / "report" / "report.html").read_text()
    assert '<div class="warnings">' in page and "one_class_test" in page


def test_segment_split_leaving_a_class_out_of_training_is_refused(monkeypatch):
    chips = _segment_chips(one_class_block=False)              # class c only in block 1
    monkeypatch.setattr(segment, "load_segment_chips", lambda s: chips)
    seed = _seed_testing(chips, block=1, count=1)
    cfg = _segment_config(seed, 1)
    with pytest.raises(ValueError, match=rf"split of seed {seed} leaves 1 class\(es\) out of training "
                                         r"\(class 'c': 0 training windows, 4 test, 4 in all\).*"
                                         r"segmentation\.block_size_m"):
        segment.run(cfg, TaskContext(progress=False))


def test_finetune_writes_its_warnings_into_metrics_json_and_the_report(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(LabelledDataConfig, "load", lambda self: _toy_chips())
    cfg = load_config(FinetuneConfig, None, overrides=["finetune.epochs=1", "finetune.min_steps=1", "device=cpu"])
    run = tmp_path / "finetune-1"
    run.mkdir()
    out = run_finetune(cfg, run, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["warnings"] == out["warnings"]
    assert _by_code(metrics["warnings"], "small_test_split")["n_test"] == 12
    state = {"name": "t", "stages": {"ft": {"command": "finetune", "status": "done", "run_dir": str(run)}}}
    md = write_report(tmp_path / "report", tmp_path, state).read_text()
    assert "small_test_split:" in md and "**Warnings (" in md


def test_thresholds_are_named_constants():
    assert (sanity.MIN_TEST_PER_CLASS, sanity.MIN_TEST_TOTAL, sanity.MIN_SEEDS_FOR_CI) == (5, 30, 3)
    assert sanity.MAX_CI95_HALF_WIDTH == 0.25
