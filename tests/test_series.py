"""Time series: table readers (wide and long), the pixel time-series encoder and the masked series loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.data.series.tables import read_series_table
from eossl.losses.masked import masked_series_loss
from eossl.models.temporal import PixelSeriesEncoder, ltae_head

S2_L2A_WL = {"B02": 492.4, "B03": 559.8, "B04": 664.6, "B05": 704.1, "B06": 740.5, "B07": 782.8, "B08": 832.8,
             "B8A": 864.7, "B09": 945.1, "B11": 1613.7, "B12": 2202.4, "B01": 442.7, "B10": 1373.5}


def _wide_frame(n=6, steps=12, bands=("B02", "B04", "B08", "B8A"), seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": ["maize", "sorghum"] * (n // 2),
                          "start_date": "2016-12-01", "lon": np.linspace(30, 31, n), "lat": np.linspace(4, 5, n)})
    dn = rng.integers(300, 4000, size=(n, steps, len(bands))).astype("uint16")
    for c, b in enumerate(bands):
        res = "10m" if b in ("B02", "B04", "B08") else "20m"
        for t in range(steps):
            frame[f"OPTICAL-{b}-ts{t}-{res}"] = dn[:, t, c]
    frame["SAR-VV-ts0-20m"] = 1          # other columns are ignored
    return frame, dn


def test_wide_worldcereal_naming_nodata_and_dn_scaling(tmp_path):
    frame, dn = _wide_frame()
    frame.loc[2, "OPTICAL-B04-ts5-10m"] = 65535                         # nodata
    frame.loc[3, [c for c in frame.columns if "-ts0-" in c and c.startswith("OPTICAL")]] = 65535   # a missing month
    path = tmp_path / "points.parquet"
    frame.to_parquet(path)
    s = read_series_table(path, "sentinel2-l2a", label_column="label", id_column="sample_id")
    assert s.values.shape == (6, 12, 4) and s.bands == ["B02", "B04", "B08", "B8A"]
    assert s.classes == ["maize", "sorghum"] and s.labels.tolist() == [0, 1] * 3
    assert not s.valid[2, 5, 1] and s.valid[2, 5, 0] and not s.valid[3, 0].any()
    np.testing.assert_allclose(s.values[0, 4, 2], dn[0, 4, 2] * 1e-4, rtol=1e-6)       # DN -> reflectance
    assert s.values[2, 5, 1] == 0.0
    assert str(s.times[0, 0]) == "2016-12-01" and str(s.times[0, 11]) == "2017-11-01"
    assert s.day_of_year()[0, 1] == 1.0
    np.testing.assert_allclose(s.lonlat[:, 0], np.linspace(30, 31, 6))
    assert "DN" in s.notes[0]


def test_long_table_aligns_on_dates_and_masks_missing(tmp_path):
    rows = []
    dates = ["2021-04-01", "2021-05-01", "2021-06-01"]
    for sid, label, skip in (("a", "wheat", None), ("b", "maize", "2021-05-01"), ("c", "wheat", None)):
        for d in dates[::-1]:                                           # rows in reverse date order
            if d == skip:
                continue
            rows.append({"id": sid, "crop": label, "date": d, "B04": 0.05 + 0.01 * dates.index(d),
                         "B08": 0.3, "B11": np.nan if (sid, d) == ("c", "2021-06-01") else 0.2, "cloud": 3})
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    s = read_series_table(path, "sentinel2-l2a", label_column="crop", id_column="id", time_column="date")
    assert s.ids == ["a", "b", "c"] and s.bands == ["B04", "B08", "B11"] and s.values.shape == (3, 3, 3)
    np.testing.assert_allclose(s.values[0, :, 0], [0.05, 0.06, 0.07], rtol=1e-6)      # sorted by date
    assert not s.valid[1, 1].any() and np.isnat(s.times[1, 1]) and s.valid[1, 2].all()
    assert not s.valid[2, 2, 2] and s.valid[2, 2, :2].all()
    assert "already physical" in s.notes[0]


def test_long_table_monthly_composite_averages(tmp_path):
    frame = pd.DataFrame({"id": ["a"] * 3, "t": ["2021-05-03", "2021-05-20", "2021-06-02"], "B04": [0.1, 0.3, 0.2]})
    path = tmp_path / "long.parquet"
    frame.to_parquet(path)
    pd.DataFrame({"id": ["a", "a"], "t": ["2021-05-03", "2021-05-03"], "B04": [0.1, 0.2]}).to_parquet(
        tmp_path / "dupe.parquet")
    with pytest.raises(ValueError, match="rows repeat a sample and date .* give composite: month"):
        read_series_table(tmp_path / "dupe.parquet", id_column="id", time_column="t")
    s = read_series_table(path, id_column="id", time_column="t", composite="month")
    np.testing.assert_allclose(s.values[0, :, 0], [0.2, 0.2], rtol=1e-6)
    assert s.labels.tolist() == [-1]


def test_bad_tables_are_named(tmp_path):
    frame, _ = _wide_frame()
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    with pytest.raises(ValueError, match=r"no column 'crop' \(label_column\)"):
        read_series_table(path, label_column="crop")
    with pytest.raises(ValueError, match="no columns for band\\(s\\) B11"):
        read_series_table(path, bands=["B04", "B11"])
    odd = frame.copy()
    for c in [c for c in frame.columns if c.startswith("OPTICAL")]:
        odd[c] = odd[c].astype("float64") / 2000.0 + 3.0                  # neither reflectance nor DN
    odd.to_parquet(tmp_path / "odd.parquet")
    with pytest.raises(ValueError, match="neither reflectance .* nor sentinel2-l2a DN"):
        read_series_table(tmp_path / "odd.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(ValueError, match="no column names a sentinel2-l2a band and a time step"):
        read_series_table(tmp_path / "none.parquet")


# ------------------------------------------------------------------------------------------ the encoder


@pytest.mark.parametrize("steps,bands", [(1, ["B02", "B03", "B04", "B08"]), (7, list(S2_L2A_WL)[:10]),
                                         (24, list(S2_L2A_WL))])
def test_encoder_any_length_and_band_set_with_masks(steps, bands):
    torch.manual_seed(0)
    enc = PixelSeriesEncoder([S2_L2A_WL[b] for b in bands], dim=32, depth=2, heads=4).eval()
    x = torch.randn(3, steps, len(bands))
    valid = torch.rand(3, steps, len(bands)) > 0.3
    valid[0] = True
    doy = torch.linspace(1, 360, steps).repeat(3, 1)
    doy[1, 0] = float("nan")
    out = enc(x, valid, doy)
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    # masked values do not matter
    x2 = torch.where(valid, x, torch.randn_like(x) * 100)
    torch.testing.assert_close(enc(x2, valid, doy), out)
    # a step with no valid band does not change the output of the others (it is out of attention)
    if steps > 1:
        v3 = valid.clone()
        v3[0, -1] = False
        x3 = x.clone()
        x3[0, -1] = 50.0
        a = enc(x3, v3, doy)[0]
        b = enc(x[:, :-1], valid[:, :-1].clone().index_put_((torch.tensor([0]),), v3[0, :-1]), doy[:, :-1])[0]
        torch.testing.assert_close(a[:32], b[:32], atol=1e-5, rtol=1e-4)


def test_encoder_is_presto_sized_and_reconstructs_every_band():
    enc = PixelSeriesEncoder([S2_L2A_WL[b] for b in ("B02", "B03", "B04", "B08", "B11", "B12")])
    n = sum(p.numel() for p in enc.parameters())
    assert 2e5 < n < 8e5, n
    tokens, _ = enc.forward_tokens(torch.randn(2, 12, 6), torch.ones(2, 12, 6, dtype=torch.bool),
                                   torch.arange(12.0).repeat(2, 1) * 30)
    assert enc.reconstruct(tokens[:, 1:]).shape == (2, 12, 6)


def test_encoder_rejects_wrong_shapes():
    enc = PixelSeriesEncoder([492.4, 664.6], dim=16, heads=2)
    with pytest.raises(ValueError, match="C = 2 bands"):
        enc(torch.randn(1, 3, 4), torch.ones(1, 3, 4, dtype=torch.bool), torch.zeros(1, 3))


def test_masked_series_loss_matches_a_plain_loop():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(4, 5, 3, generator=g), torch.randn(4, 5, 3, generator=g)
    valid = torch.rand(4, 5, 3, generator=g) > 0.2
    hidden = torch.rand(4, 5, 3, generator=g) > 0.5
    total, n = 0.0, 0
    for b in range(4):
        for t in range(5):
            for c in range(3):
                if valid[b, t, c] and hidden[b, t, c]:
                    total += float(pred[b, t, c] - target[b, t, c]) ** 2
                    n += 1
    assert masked_series_loss(pred, target, valid, hidden).item() == pytest.approx(total / n, rel=1e-5)
    assert masked_series_loss(pred, target, valid, torch.zeros_like(hidden)).item() == 0.0


def test_ltae_head_from_torchgeo():
    head = ltae_head(in_channels=64, n_classes=5, steps=12)
    assert head(torch.randn(3, 12, 64)).shape == (3, 5)
    head.train()                                # trains: torchgeo's in-place ReLU + dropout pair is made out of place
    head(torch.randn(4, 12, 64)).sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------ evaluation


def _crop_table(tmp_path, n_per=30, seed=0):
    """Two crops whose NDVI peaks in different months (plus a rare class), on points spread over ~100 km."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls, peak, n in (("early", 3, n_per), ("late", 8, n_per), ("rare", 5, 4)):
        for i in range(n):
            lon, lat = 30 + rng.uniform(0, 1), 4 + rng.uniform(0, 1)
            row = {"sample_id": f"{cls}{i}", "crop": cls, "start_date": "2017-01-01", "lon": lon, "lat": lat}
            for t in range(12):
                green = np.exp(-0.5 * ((t - peak) / 1.5) ** 2)
                row[f"B04_t{t}"] = int(800 - 500 * green + rng.normal(0, 60))
                row[f"B08_t{t}"] = int(2000 + 2500 * green + rng.normal(0, 150))
                row[f"B11_t{t}"] = int(1800 + rng.normal(0, 100))
            rows.append(row)
    path = tmp_path / "crops.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_series_splits_never_share_a_block(tmp_path):
    from eossl.evaluate.series_eval import _blocks, _keep_classes, series_splits

    s, _ = _keep_classes(read_series_table(_crop_table(tmp_path), label_column="crop", id_column="sample_id"), 10)
    splits, how = series_splits(s, [5, "all"], seeds=4, seed=0, test_fraction=0.3, block_size_m=10000.0)
    blocks, _ = _blocks(s, 10000.0)
    assert "10 km grid" in how
    for sp in splits:
        assert not set(blocks[sp["test"]]) & set(blocks[sp["pool"]])
        assert set(sp["train"]["5"]) <= set(sp["pool"]) and not set(sp["train"]["all"]) & set(sp["test"])


def test_evaluate_series_rows_layout_and_phenology_signal(tmp_path):
    from eossl.evaluate.series_eval import evaluate_series

    s = read_series_table(_crop_table(tmp_path), label_column="crop", id_column="sample_id")
    results, notes = evaluate_series(s, ks=[5, "all"], seeds=3, min_per_class=10,
                                     encoder_kwargs={"dim": 32, "heads": 4}, progress=False)
    assert notes.data["dropped_classes"] == ["rare (4)"] and notes.data["classes"] == ["early", "late"]
    names = {(r.model.split(" (")[0], r.protocol) for r in results}
    assert names == {("random-init pixel transformer", "linear"), ("raw series", "linear"),
                     ("raw series", "random_forest"), ("temporal stats + phenology", "linear")}
    pheno = next(r for r in results if r.model.startswith("temporal") and r.k == "all")
    assert pheno.score("macro_f1").mean > 0.9 and pheno.score("macro_f1").n == 3   # the peak month tells them apart
    assert pheno.metrics_all_seeds is not None and notes.headline_score == "macro_f1"


def test_evaluate_series_fusion_rows_concatenate_the_raw_series_and_the_features(tmp_path):
    from eossl.catalog.sensors import load_sensor
    from eossl.data.normalization import Normalization
    from eossl.evaluate.fewshot import fit_logreg
    from eossl.evaluate.metrics import classification_metrics
    from eossl.evaluate.series_eval import (
        _keep_classes,
        encoder_features,
        evaluate_series,
        raw_series_features,
        series_splits,
    )

    s = read_series_table(_crop_table(tmp_path), label_column="crop", id_column="sample_id")
    kw = {"dim": 32, "heads": 4}
    torch.manual_seed(0)        # the "pretrained" encoder is the random-init row's own init: same features
    twin = PixelSeriesEncoder([float(w) for w in load_sensor(s.sensor).wavelengths(s.bands)], **kw)
    out, _ = evaluate_series(s, ks=[5], seeds=2, min_per_class=10, encoder_kwargs=kw, pretrained=twin,
                          pretrained_name="(twin)", baselines=["raw_series", "fusion"], progress=False)
    rows = {r.model.split(" (")[0] + (" (twin)" if "(twin)" in r.model else ""): r for r in out}
    assert set(rows) == {"pretrained (twin)", "raw series + pretrained (twin)", "raw series + random-init pixel "
                         "transformer", "raw series"}          # random_init not asked: its fused twin only
    fused, rand_fused = rows["raw series + pretrained (twin)"], rows["raw series + random-init pixel transformer"]
    assert [r.scores["macro_f1"] for r in fused.per_seed] == [r.scores["macro_f1"] for r in rand_fused.per_seed]
    # the fused row is one logistic regression on [raw | features], on the same splits as the other rows
    kept, _ = _keep_classes(s, 10)
    sp = series_splits(kept, [5], 1, 0, 0.3, 10000.0)[0][0]
    x = np.hstack([raw_series_features(kept), encoder_features(twin, kept, Normalization.of_sensor(kept.sensor,
                                                                                                kept.bands))])
    pred = fit_logreg(x[sp["train"]["5"]], kept.labels[sp["train"]["5"]], x[sp["test"]])[0]
    assert classification_metrics(kept.labels[sp["test"]], pred, kept.classes)["macro_f1"] == \
        fused.per_seed[0].scores["macro_f1"]


def test_series_task_through_the_cli(tmp_path, capsys):
    from eossl.cli import main

    path = _crop_table(tmp_path)
    assert main(["evaluate", "--set", "task=series", "--set", f"series.table={path}", "--set",
                 "series.label_column=crop", "--set", "series.id_column=sample_id", "--set", "series.min_per_class=10",
                 "--set", "seeds=2", "--set", "ks=[5]", "--set", "series.baselines=[raw_series, phenology]",
                 "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("evaluate-*")
    table = (run / "table.txt").read_text()
    assert table.startswith("macro f1 (95% CI)") and "raw series / linear" in table
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "series" and {r["model"] for r in metrics["results"]} == {
        "raw series", "temporal stats + phenology"}
