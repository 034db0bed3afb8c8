"""``metrics.json`` of every evaluation task (patch, crop, series, segment, stack) validates against the committed schema
(eossl/report/metrics.schema.json), its rows read back into ResultRow and write the same JSON, and its headline names
one of its rows. Tiny in-memory data: a few seconds per task."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import torch
from parcel_stack_data import write_parcel_stack

from eossl.catalog.sensors import load_sensor
from eossl.config import load_config
from eossl.data.labelled.fields import FieldSeries
from eossl.data.labelled.folders import LabelledChips
from eossl.data.labelled.rasters import SegmentationChips
from eossl.evaluate.config import EvaluateConfig, LabelledDataConfig, ScenesConfig
from eossl.evaluate.runs import run_evaluate
from eossl.evaluate.tasks import TASKS
from eossl.evaluate.tasks import crop as crop_task
from eossl.evaluate.tasks import segment as segment_task
from eossl.models.backbones import create_backbone
from eossl.models.weights import WeightsInfo, export_backbone
from eossl.report.rows import SCHEMA_FILE, Headline, PairedDifference, ResultRow

jsonschema = pytest.importorskip("jsonschema")

BANDS = ["B02", "B03", "B04", "B08"]
SPECTRA = np.array([[0.04, 0.06, 0.04, 0.40], [0.09, 0.11, 0.14, 0.20], [0.05, 0.08, 0.06, 0.30]], np.float32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # small fits: one thread is faster


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """resnet18 weights for 4 Sentinel-2 L2A bands on 32 px chips (random init, exported)."""
    s2 = load_sensor("sentinel2-l2a")
    mean, std = s2.norm_stats(BANDS)
    torch.manual_seed(0)
    info = WeightsInfo(arch="resnet18", in_chans=4, bands=BANDS, wavelengths_nm=s2.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=0, img_size=32)
    return export_backbone(create_backbone("resnet18", 4, 32), info, tmp_path_factory.mktemp("w") / "w")


def _noisy(shape, labels, rng) -> np.ndarray:
    """Reflectance whose band profile follows each sample's class, plus noise; (N, C, ...) from ``shape``."""
    x = SPECTRA[labels].reshape(len(labels), len(BANDS), *([1] * (len(shape) - 2)))
    return (x + rng.normal(0, 0.01, shape)).clip(0.005, 0.8).astype(np.float32)


def _chips() -> LabelledChips:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    return LabelledChips(images=_noisy((30, 4, 32, 32), labels, rng), mask=np.ones((30, 32, 32), bool),
                         labels=labels, classes=["a", "b", "c"], bands=BANDS, paths=[f"c{i}" for i in range(30)],
                         sensor="sentinel2-l2a")


def _fields() -> FieldSeries:
    """24 fields (8 per class) 500 m apart, 3 dates, 32 px chips whose centre 16 px is the field."""
    rng = np.random.default_rng(1)
    n, t = 24, 3
    labels = rng.permutation(np.repeat(np.arange(3), 8))
    images = np.stack([_noisy((n, 4, 32, 32), labels, rng) for _ in range(t)], axis=1)
    mask = np.zeros((n, 32, 32), bool)
    mask[:, 8:24, 8:24] = True
    centroids = np.array([(500.0 * (i % 6), 500.0 * (i // 6)) for i in range(n)])
    dates = [datetime(2021, m, 15, tzinfo=UTC) for m in (4, 6, 8)]
    return FieldSeries(images=images, valid=np.ones((n, t, 32, 32), bool), field_mask=mask, labels=labels,
                       classes=["grass", "maize", "wheat"], bands=BANDS, dates=dates,
                       field_ids=[f"f{i}" for i in range(n)], centroids=centroids, crs="EPSG:32633",
                       sensor="sentinel2-l2a", gsd=10.0, date_valid=np.ones((n, t), bool))


def _windows() -> SegmentationChips:
    """12 windows of 32 px in 3 blocks of 400 m, each holding the 3 classes as bands of rows."""
    rng = np.random.default_rng(2)
    labels = np.zeros((12, 32, 32), np.int64)
    labels[:, 11:22], labels[:, 22:] = 1, 2
    images = np.moveaxis(SPECTRA[labels], -1, 1) + rng.normal(0, 0.01, (12, 4, 32, 32)).astype(np.float32)
    bounds = [(400.0 * b + 40.0 * j, 0.0, 400.0 * b + 40.0 * j + 32.0, 32.0) for b in range(3) for j in range(4)]
    return SegmentationChips(images=images.astype(np.float32), valid=np.ones((12, 32, 32), bool), labels=labels,
                             classes=["water", "forest", "crop"], bands=BANDS, sensor="sentinel2-l2a",
                             bounds=bounds, crs=["EPSG:32633"] * 12, acquisitions=["s"] * 12,
                             label_values={1: "water", 2: "forest", 3: "crop"}, gsd=1.0)


def _series_table(path):
    """Two crops whose NDVI peaks in different months, on points spread over ~100 km."""
    rng = np.random.default_rng(3)
    rows = []
    for cls, peak in (("early", 3), ("late", 8)):
        for i in range(20):
            row = {"sample_id": f"{cls}{i}", "crop": cls, "start_date": "2017-01-01", "lon": 30 + rng.uniform(0, 1),
                   "lat": 4 + rng.uniform(0, 1)}
            for t in range(12):
                green = np.exp(-0.5 * ((t - peak) / 1.5) ** 2)
                row[f"B04_t{t}"] = int(800 - 500 * green + rng.normal(0, 60))
                row[f"B08_t{t}"] = int(2000 + 2500 * green + rng.normal(0, 150))
            rows.append(row)
    pd.DataFrame(rows).to_parquet(path)
    return path


def _config(task: str, tmp_path, weights) -> list[str]:
    common = ["seeds=2", "device=cpu", "test_fraction=0.3", f"task={task}"]
    if task == "patch":
        return [*common, f"weights={weights}", "ks=[2]", "protocols=[linear]",
                "baselines=[random_init,band_statistics]"]
    if task == "crop":
        return [*common, f"weights={weights}", "ks=[2]", "baselines=[band_statistics]",
                "fields.scenes.roots=[unused]", "fields.labels=unused.gpkg", "fields.class_column=crop",
                "fields.aggregation=[mean]", "fields.block_size_m=400.0"]
    if task == "segment":
        return [*common, f"weights={weights}", "ks=[all]", "baselines=[band_statistics]",
                "segmentation.scenes.index=unused.parquet", "segmentation.label_raster=unused.tif",
                "segmentation.chip_size=32", "segmentation.block_size_m=400.0", "segmentation.epochs=1",
                "segmentation.batch_size=4"]
    if task == "stack":           # no weights: the headline is the raw series; a 24 x 24 px stack with parcels
        folder = write_parcel_stack(tmp_path / "stack")
        return [*common, "ks=[3]", f"stack.stacks=[{{path: {folder}, variable: CT}}]", "stack.period=month",
                "stack.rows=[raw, pca, rocket]", "stack.pca_components=4", "stack.rocket_features=84",
                "stack.resamples=50"]
    return [*common, "ks=[5]", f"series.table={_series_table(tmp_path / 'series.parquet')}",
            "series.label_column=crop", "series.id_column=sample_id", "series.min_per_class=10",
            "series.baselines=[raw_series,phenology]"]


@pytest.fixture
def metrics(request, tmp_path, monkeypatch, weights) -> dict:
    """``metrics.json`` of ``eossl evaluate`` on the task named by the test's parameter, on tiny data."""
    task = request.param
    monkeypatch.setattr(LabelledDataConfig, "load", lambda self: _chips())
    monkeypatch.setattr(ScenesConfig, "open", lambda self: None)
    monkeypatch.setattr(crop_task, "load_fields", lambda *args, **kwargs: _fields())
    monkeypatch.setattr(segment_task, "load_segment_chips", lambda s: _windows())
    cfg = load_config(EvaluateConfig, None, overrides=_config(task, tmp_path, weights))
    run = tmp_path / "run"
    run.mkdir()
    run_evaluate(cfg, run, progress=False)
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("metrics", TASKS.names(), indirect=True)
def test_metrics_json_of_every_task_follows_the_schema(metrics, validator):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(metrics)]
    assert errors == []
    rows = [ResultRow.from_dict(r) for r in metrics["results"]]
    assert [r.to_dict() for r in rows] == metrics["results"]
    pairs = [PairedDifference.from_dict(p) for p in metrics["paired_differences"]]
    assert [p.to_dict() for p in pairs] == metrics["paired_differences"]
    head = Headline.from_dict(metrics["headline"])
    assert sum(head.matches(r) for r in rows) == 1
    if metrics["task"] == "stack":       # headline named before scoring; paired on the parcel bootstrap
        named = metrics["settings"]["headline_row"]
        assert (head.model, head.protocol) == (named["model"], named["protocol"])
        assert metrics["parcel_scores"]["paired"] and all(p["headline"] == named
                                                          for p in metrics["parcel_scores"]["paired"])
        boot = metrics["parcel_scores"]["paired"]           # the top-level pairs are the bootstrap ones
        assert len(pairs) == len(boot) and all(p.pretrained == (named["model"], named["protocol"]) for p in pairs)
        for p, b in zip(pairs, boot, strict=True):
            assert p.k == b["k"] and p.score("macro_f1").mean == pytest.approx(b["macro_f1"]["mean"])
            assert p.score("macro_f1").ci95 == pytest.approx((b["macro_f1"]["hi"] - b["macro_f1"]["lo"]) / 2)
    elif metrics["task"] != "series":    # the series task runs without weights here: no pretrained row to pair
        assert pairs and head.model.startswith("pretrained")


def test_the_schema_refuses_a_row_without_k_or_with_a_malformed_score(validator):
    row = {"model": "band statistics", "protocol": "linear", "k": "5",
           "per_seed": [{"seed": 0, "n_train": 15, "overall_accuracy": 0.8, "macro_f1": 0.7, "kappa": 0.6}],
           **{s: {"mean": v, "ci95": None, "n": 1} for s, v in (("overall_accuracy", 0.8), ("macro_f1", 0.7),
                                                                 ("kappa", 0.6))}}
    good = {"task": "patch", "data": {}, "results": [row], "warnings": [], "paired_differences": [],
            "headline": {"model": "band statistics", "protocol": "linear", "k": "5"}, "environment": {},
            "seconds": 1.0}
    assert list(validator.iter_errors(good)) == []
    no_k = {key: value for key, value in row.items() if key != "k"}
    errors = list(validator.iter_errors({**good, "results": [no_k]}))
    assert [e.message for e in errors] == ["'k' is a required property"]
    bad_score = {**row, "kappa": {"mean": 0.6}}
    assert list(validator.iter_errors({**good, "results": [bad_score]}))
    assert list(validator.iter_errors({**good, "results": [{**row, "k": 5}]}))      # k is a string
    with pytest.raises(ValueError, match="lacks k"):
        ResultRow.from_dict(no_k)
