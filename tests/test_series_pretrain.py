"""Temporal pretraining: pixel series from a written datacube and scene stack (checked against direct reads), the
hiding masks, and masked autoencoding end to end with export and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from conftest import DEFAULT_DATE, SECOND_DATE, _write_scene
from pyproj import CRS

from eossl.catalog.build import build_index
from eossl.cli import main
from eossl.config import ConfigError, load_config
from eossl.data.series.pixels import sample_pixel_series, stacks_of
from eossl.models.temporal import load_series_encoder
from eossl.train.config import PretrainConfig, SeriesPretrainConfig
from eossl.train.series_pretrain import hide_mask, pretrain_series

X0, Y0, NY, NX, T = 500000.0, 4999800.0, 16, 20, 6
BANDS = ["B02", "B03", "B04", "B08"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """(time, band, y, x) uint16 cube, 6 months, one month entirely nodata, y descending (north-up)."""
    rng = np.random.default_rng(3)
    data = rng.integers(100, 6000, size=(T, len(BANDS), NY, NX), dtype=np.uint16)
    data[2] = 0
    x = X0 + 5 + 10 * np.arange(NX)
    y = (Y0 + 5 + 10 * np.arange(NY))[::-1]
    ds = xr.Dataset({"reflectance": (("time", "band", "y", "x"), data),
                     "spatial_ref": xr.DataArray(np.int32(0), attrs={"crs_wkt": CRS.from_epsg(32631).to_wkt()})},
                    coords={"time": pd.date_range("2021-03-01", periods=T, freq="MS"), "band": BANDS, "y": y, "x": x})
    path = tmp_path_factory.mktemp("cube") / "cube.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path, data, x, y


def test_pixel_series_from_a_datacube_equal_direct_reads(cube):
    path, data, x, y = cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    assert stacks_of(index) == [list(range(T))]
    s = sample_pixel_series(index, 50, window=8, per_window=10, min_valid_steps=3, seed=1, progress=False)
    assert s.values.shape == (50, T, 4) and s.bands == BANDS and (s.labels == -1).all()
    assert not s.valid[:, 2].any() and s.valid[:, [0, 1, 3, 4, 5]].all()
    assert str(s.times[0, 0]) == "2021-03-01" and str(s.times[0, 5]) == "2021-08-01"
    for i in range(0, 50, 7):
        crs, xy = s.ids[i].rsplit(":", 1)
        px, py = map(float, xy.split(","))
        col, row = int(np.argmin(abs(x - px))), int(np.argmin(abs(y - py)))
        assert abs(x[col] - px) < 1e-6 and abs(y[row] - py) < 1e-6 and crs == "EPSG:32631"
        np.testing.assert_allclose(s.values[i, 0], data[0, :, row, col] * 1e-4, rtol=1e-5)
        np.testing.assert_allclose(s.values[i, 5], data[5, :, row, col] * 1e-4, rtol=1e-5)


def test_pixel_series_from_a_scene_stack(tmp_path):
    import rasterio

    scene = _write_scene(tmp_path / "s2", dates=(DEFAULT_DATE, SECOND_DATE, "20200815T101031"),
                         bands=["B02", "B04", "B08"])
    index = build_index([str(scene)], "sentinel2-l1c", progress=False)
    s = sample_pixel_series(index, 20, window=4, per_window=5, min_valid_steps=2, seed=0, progress=False)
    assert s.values.shape == (20, 3, 3)
    px, py = map(float, s.ids[0].rsplit(":", 1)[1].split(","))
    for t, date in enumerate((DEFAULT_DATE, SECOND_DATE, "20200815T101031")):
        with rasterio.open(scene.file("B08", date)) as ds:
            row, col = ds.index(px, py)
            assert s.values[0, t, 2] == pytest.approx(float(ds.read(1)[row, col]) * 1e-4, rel=1e-5)


def test_hide_mask_draws_steps_blocks_and_values_but_leaves_something_visible():
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(200, 12, 5, dtype=torch.bool)
    valid[0, 1:] = False                                   # one valid step only: it must stay visible
    hidden = hide_mask(valid, g, step_ratio=0.3, band_ratio=0.15, block_prob=1.0, block_steps=3)
    assert (valid & ~hidden).any(-1).any(-1).all()
    assert not hidden[0, 0].all()
    whole_steps = hidden.all(-1).float().mean().item()
    assert 0.3 < whole_steps < 0.7                         # random steps plus a 3-step block in every sample
    partial = (hidden.any(-1) & ~hidden.all(-1)).float().mean().item()
    assert partial > 0.2                                   # single hidden values at other steps


def test_pretrain_series_end_to_end(cube, tmp_path):
    path, _, _, _ = cube
    cfg = load_config(SeriesPretrainConfig, None, overrides=[
        f"corpus.roots=[{path}]", "corpus.sampler.n_pixels=300", "corpus.sampler.window=8", "corpus.sampler.per_window=30",
        "encoder={dim: 32, depth: 1, heads: 4}", "epochs=6", "batch_size=64", "lr=0.003"])
    summary = pretrain_series(cfg, tmp_path / "run", progress=False)
    assert summary["last_loss"] < summary["first_loss"]
    corpus = json.loads((tmp_path / "run" / "corpus.json").read_text())
    assert corpus["n"] == 300 and corpus["parts"][0]["kind"] == "pixel series"
    loaded = load_series_encoder(tmp_path / "run" / "weights", [492.4, 664.6, 832.8])     # another band set
    assert loaded.info.arch == "pixel_transformer" and loaded.info.ssl_method == "series_mae"
    enc = loaded.model
    out = enc(torch.randn(2, 4, 3), torch.ones(2, 4, 3, dtype=torch.bool), torch.tensor([[60.0, 90, 120, 150]] * 2))
    assert out.shape == (2, 64)
    # the generic loader dispatches on the recorded arch, re-targeting by wavelength like load_series_encoder
    from eossl.models.weights import load_backbone

    generic = load_backbone(tmp_path / "run" / "weights", bands=[("B02", 492.4), ("B03", 559.8), ("B04", 664.6)])
    assert type(generic) is type(enc) and generic.wavelengths.tolist() == pytest.approx([492.4, 559.8, 664.6])
    x, v = torch.randn(2, 4, 3), torch.ones(2, 4, 3, dtype=torch.bool)
    doy = torch.tensor([[60.0, 90, 120, 150]] * 2)
    torch.testing.assert_close(generic.eval()(x, v, doy),
                               load_series_encoder(tmp_path / "run" / "weights", [492.4, 559.8, 664.6]).model.eval()(
                                   x, v, doy))
    with pytest.raises(ValueError, match="time-series encoder"):
        load_backbone(tmp_path / "run" / "weights", pool="stats0")


def test_masked_pretraining_reproduces_the_run_recorded_before_other_objectives(cube, tmp_path):
    """The default objective (masked) is unchanged by the objective switch: a fixed-seed run (dropout on, so a
    stray draw from torch's generator would show too) gives the losses and weights recorded before the contrastive
    objectives existed (bit-identical there; a small tolerance here for other CPUs' float kernels)."""
    from safetensors.torch import load_file

    path, _, _, _ = cube
    cfg = load_config(SeriesPretrainConfig, None, overrides=[
        f"corpus.roots=[{path}]", "corpus.sampler.n_pixels=200", "corpus.sampler.window=8",
        "corpus.sampler.per_window=30", "encoder={dim: 16, depth: 1, heads: 2, dropout: 0.1}", "epochs=2",
        "batch_size=32", "lr=0.003"])
    assert cfg.objective == "masked"
    summary = pretrain_series(cfg, tmp_path / "run", progress=False)
    assert summary["first_loss"] == pytest.approx(2.5605900968824113, rel=1e-4)
    assert summary["last_loss"] == pytest.approx(1.8380392789840698, rel=1e-4)
    state = load_file(str(tmp_path / "run" / "weights" / "encoder.safetensors"))
    recorded = {"cls": 0.08283069729804993, "time.weight": 2.2980000972747803, "kernel.0.weight": 2.3347957134246826}
    assert {k: float(state[k].norm()) for k in recorded} == pytest.approx(recorded, rel=1e-4)


def test_table_corpus_excludes_ids(tmp_path):
    from eossl.train.series_pretrain import series_corpus

    rows = [{"sample_id": f"s{i}", "start_date": "2021-01-01",
             **{f"{b}_t{t}": 500 + 10 * t for b in BANDS for t in range(4)}} for i in range(5)]
    table = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(table)
    cfg = load_config(SeriesPretrainConfig, None, overrides=[f"corpus.table={table}", "corpus.id_column=sample_id",
                                                             "corpus.exclude_ids=[s1, s3]"])
    samples, corpus = series_corpus(cfg)
    assert samples.ids == ["s0", "s2", "s4"] and corpus["parts"][0]["excluded_ids"] == 2
    cfg = load_config(SeriesPretrainConfig, None, overrides=[f"corpus.table={table}", "corpus.id_column=sample_id",
                                                             "corpus.exclude_ids=[s1, s3]", "corpus.table_repeats=3"])
    samples, corpus = series_corpus(cfg)
    assert samples.ids == ["s0", "s2", "s4"] * 3
    assert corpus["parts"][0]["rows"] == 3 and corpus["parts"][0]["n"] == 9


def test_continued_pretraining_starts_from_the_init_weights(cube, tmp_path):
    """``init``: the run starts from exported weights (same parameters at step 0, their encoder arguments and
    normalisation kept) and records both corpora in weights.json."""
    from eossl.models.weights import read_weights_info

    path, _, _, _ = cube
    base = [f"corpus.roots=[{path}]", "corpus.sampler.n_pixels=200", "corpus.sampler.window=8", "corpus.sampler.per_window=30",
            "batch_size=64"]
    pretrain_series(load_config(SeriesPretrainConfig, None, overrides=[
        *base, "encoder={dim: 32, depth: 1, heads: 4}", "epochs=3", "lr=0.003"]), tmp_path / "a", progress=False)
    first = load_series_encoder(tmp_path / "a" / "weights").model
    cfg = load_config(SeriesPretrainConfig, None, overrides=[*base, f"init={tmp_path / 'a' / 'weights'}", "epochs=2",
                                                             "lr=0.0003", "seed=1"])
    summary = pretrain_series(cfg, tmp_path / "b", progress=False)
    second = load_series_encoder(tmp_path / "b" / "weights").model
    assert second.dim == 32 and len(second.blocks.layers) == 1            # init's arguments, not the default 128
    a, b = first.state_dict(), second.state_dict()
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    assert moved and all(k in b for k in a)
    drift = max(float((a[k] - b[k]).norm() / a[k].norm().clamp(min=1e-8)) for k in moved)
    assert drift < 0.5                                                      # continued, not re-initialised
    info, before = read_weights_info(tmp_path / "b" / "weights"), read_weights_info(tmp_path / "a" / "weights")
    assert info.normalization == before.normalization
    provenance = json.loads(info.pretrain_data)
    assert provenance[0]["kind"] == "continued from" and provenance[0]["pretrained on"][0]["kind"] == "pixel series"
    assert summary["corpus"]["init"] == str(tmp_path / "a" / "weights")


def test_pretrained_series_weights_in_the_series_task(cube, tmp_path):
    path, _, _, _ = cube
    runs = tmp_path / "runs"
    assert main(["pretrain-series", "--set", f"corpus.roots=[{path}]", "--set", "corpus.sampler.n_pixels=100",
                 "--set", "corpus.sampler.window=8", "--set", "encoder={dim: 16, depth: 1, heads: 2}", "--set", "epochs=2",
                 "--runs", str(runs), "--no-progress"]) == 0
    (weights,) = runs.glob("pretrain-series-*/weights")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        row = {"sample_id": f"s{i}", "crop": ("a", "b")[i % 2], "start_date": "2021-03-01",
               "lon": 3 + rng.uniform(0, 1), "lat": 50 + rng.uniform(0, 1)}
        row.update({f"{b}_t{t}": int(rng.integers(300, 3000)) for b in BANDS for t in range(T)})
        rows.append(row)
    table = tmp_path / "pts.parquet"
    pd.DataFrame(rows).to_parquet(table)
    assert main(["evaluate", "--set", "task=series", "--set", f"series.table={table}", "--set",
                 "series.label_column=crop", "--set", "series.id_column=sample_id", "--set", "series.min_per_class=5",
                 "--set", "seeds=2", "--set", "ks=[3]", "--set", "series.baselines=[random_init]",
                 "--weights", str(weights), "--runs", str(runs), "--no-progress"]) == 0
    (run,) = runs.glob("evaluate-*")
    models = {r["model"] for r in json.loads((run / "metrics.json").read_text())["results"]}
    assert "pretrained pixel transformer series_mae" in models and any(m.startswith("random-init") for m in models)


def test_pretrain_with_a_pixel_series_sampler_runs_temporal_pretraining(cube, tmp_path, capsys):
    """`eossl pretrain` with corpus.sampler.kind: pixel_series (the series config) trains the series encoder."""
    path, _, _, _ = cube
    config = Path(__file__).resolve().parents[1] / "configs" / "pretrain_series" / "series_mae.yaml"
    runs = tmp_path / "runs"
    assert main(["pretrain", "--config", str(config), "--runs", str(runs), "--set", f"corpus.roots=[{path}]",
                 "--set", "corpus.nodata=null", "--set", "corpus.sampler.n_pixels=60", "--set",
                 "corpus.sampler.window=8", "--set", "encoder={dim: 16, depth: 1, heads: 2}", "--set", "epochs=1"]) == 0
    assert "temporal pretraining" in capsys.readouterr().out
    weights = next(runs.glob("pretrain-series-*")) / "weights"
    assert load_series_encoder(weights).info.ssl_method == "series_mae"
    with pytest.raises(ConfigError, match="corpus.sampler.kind"):        # the image pretraining does not take it
        load_config(PretrainConfig, None, overrides=["corpus.sampler.kind=pixel_series"])


def test_mask_config_is_checked():
    with pytest.raises(ConfigError, match=r"mask.step_ratio: 1.5 is out of range; allowed: < 1"):
        load_config(SeriesPretrainConfig, None, overrides=["mask={step_ratio: 1.5, band_ratio: 0.1, "
                                                           "block_prob: 0.5, block_steps: 3}"])
    with pytest.raises(ConfigError, match=r"mask.block_steps: -1 is out of range"):
        load_config(SeriesPretrainConfig, None, overrides=["mask.block_steps=-1"])


@pytest.mark.parametrize("override, key, allowed", [
    ("encoder={dim: 32, depht: 1}", "encoder.depht", "dim, depth, heads, mlp_ratio, dropout"),
    ("encoder.width=64", "encoder.width", "dim, depth, heads, mlp_ratio, dropout"),
    ("mask={step_ratio: 0.3, block_step: 2}", "mask.block_step", "step_ratio, band_ratio, block_prob, block_steps"),
])
def test_a_wrong_series_key_is_an_error_at_load_time(override, key, allowed, tmp_path):
    """The typed encoder / mask settings refuse an unknown key when the config loads, naming the dotted key and
    the allowed keys, from an override and from a YAML file alike."""
    with pytest.raises(ConfigError, match=rf"^{key}: unknown key; allowed keys: {allowed}$"):
        load_config(SeriesPretrainConfig, None, overrides=[override])
    section, sub = key.split(".")
    path = tmp_path / "bad.yaml"
    path.write_text(f"{section}: {{{sub}: 1}}\n")
    with pytest.raises(ConfigError, match=rf"^{key}: unknown key"):
        load_config(SeriesPretrainConfig, path)


def test_every_series_key_of_today_still_loads():
    """The keys the plain dicts took (the PixelSeriesEncoder arguments; the four masking values) load into the
    typed settings, partial mappings keep the defaults, and a dim that the heads do not divide is refused."""
    from eossl.models.config import SeriesEncoderConfig
    from eossl.models.temporal import PixelSeriesEncoder
    from eossl.train.config import SeriesMaskConfig

    cfg = load_config(SeriesPretrainConfig, None, overrides=[
        "encoder={dim: 32, depth: 1, heads: 4, mlp_ratio: 3.0, dropout: 0.1}",
        "mask={step_ratio: 0.2, band_ratio: 0.1, block_prob: 0.4, block_steps: 2}"])
    assert cfg.encoder == SeriesEncoderConfig(32, 1, 4, 3.0, 0.1)
    assert cfg.mask == SeriesMaskConfig(0.2, 0.1, 0.4, 2)
    cfg = load_config(SeriesPretrainConfig, None, overrides=["encoder={dim: 16, depth: 1, heads: 2}", "mask.block_steps=0"])
    assert cfg.encoder.mlp_ratio == 2.0 and cfg.mask == SeriesMaskConfig(block_steps=0)
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(PixelSeriesEncoder).parameters.items() if k != "wavelengths_nm"}
    assert SeriesEncoderConfig().kwargs() == defaults          # the config's defaults are the encoder's
    with pytest.raises(ConfigError, match="dim 100 must be a multiple of heads 8"):
        load_config(SeriesPretrainConfig, None, overrides=["encoder.dim=100"])


@pytest.fixture()
def series_table(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"sample_id": f"s{i}", "start_date": "2021-01-01",
             **{f"{b}_t{t}": int(rng.integers(300, 3000)) for b in BANDS for t in range(T)}} for i in range(40)]
    table = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(table)
    return [f"corpus.table={table}", "corpus.id_column=sample_id", "encoder={dim: 16, depth: 1, heads: 2}",
            "batch_size=8", "lr=0.003", "threads=1"]


def test_series_pretraining_stops_on_a_non_finite_loss_naming_the_step(series_table, tmp_path, monkeypatch):
    """The guard of image pretraining (eossl.train.guard): a NaN loss at the 4th step raises with step 3."""
    from eossl.train import series_objective
    from eossl.train.guard import NonFiniteLossError

    calls, loss_fn = [], series_objective.masked_series_loss

    def poisoned(*args):
        calls.append(1)
        return loss_fn(*args) * (float("nan") if len(calls) == 4 else 1.0)

    monkeypatch.setattr(series_objective, "masked_series_loss", poisoned)
    cfg = load_config(SeriesPretrainConfig, None, overrides=[*series_table, "epochs=2"])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 \(epoch 0\)"):
        pretrain_series(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "weights").exists()


def test_the_shared_schedule_trains_the_same_weights_as_the_old_formula(series_table, tmp_path, monkeypatch):
    """Series pretraining on eossl.schedule.cosine_with_warmup gives bit-identical weights and the same metrics
    as with the schedule it wrote itself before (the old formula, restored here by monkeypatching)."""
    import math

    from eossl.train import series_pretrain

    cfg = load_config(SeriesPretrainConfig, None, overrides=[*series_table, "epochs=4"])
    pretrain_series(cfg, tmp_path / "new", progress=False)

    calls = []

    def old(step, total, warmup):           # series_pretrain.lr_at before the schedule moved
        calls.append(step)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    monkeypatch.setattr(series_pretrain, "cosine_with_warmup", old)
    pretrain_series(cfg, tmp_path / "old", progress=False)
    assert calls == list(range(4 * 5 + 1))                  # the old formula ran: 40 series / 8 per batch x 4 epochs
    for name in ("weights/encoder.safetensors", "metrics.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes(), name


def test_shipped_series_configs_load():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "pretrain_series").glob("*.yaml"))
    assert files
    for f in files:
        assert load_config(SeriesPretrainConfig, f).corpus.sampler.n_pixels > 0


# ------------------------------------------------------------------------------------------ eossl extract


def test_extract_points_and_polygons_from_a_datacube(cube, tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point, box

    from eossl.data.series.extract import extract_series
    from eossl.data.series.tables import read_series_table

    path, data, x, y = cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    # a point inside pixel (row 3, col 4); a polygon covering pixel centres rows 5..7, cols 10..12
    pt = Point(x[4] + 2.0, y[3] - 3.0)
    poly = box(x[10] - 5, y[7] - 5, x[12] + 5, y[5] + 5)
    frame = gpd.GeoDataFrame({"fid": ["p", "q"], "crop": ["maize", "wheat"]}, geometry=[pt, poly], crs="EPSG:32631")
    table = extract_series(index, frame, label_column="crop", id_column="fid", progress=False)
    assert len(table) == 2 * T and set(table.columns) >= {"sample_id", "date", "crop", "lon", "lat", "B02", "B08"}
    p = table[table.sample_id == "p"].reset_index(drop=True)
    np.testing.assert_allclose(p.loc[0, BANDS].to_numpy(float), data[0, :, 3, 4] * 1e-4, rtol=1e-5)
    assert p.loc[2, BANDS].isna().all() and p.loc[2, "valid_pixels"] == 0         # the nodata month
    q = table[table.sample_id == "q"].reset_index(drop=True)
    assert q.loc[0, "n_pixels"] == 9
    expect = data[4, :, 5:8, 10:13].reshape(4, -1).mean(axis=1) * 1e-4
    np.testing.assert_allclose(q.loc[4, BANDS].to_numpy(float), expect, rtol=1e-5)
    out = tmp_path / "series.parquet"
    table.to_parquet(out)
    s = read_series_table(out, "sentinel2-l2a", label_column="crop", id_column="sample_id", time_column="date")
    assert s.ids == ["p", "q"] and s.values.shape == (2, T, 4) and not s.valid[:, 2].any()


def test_grid_points_sit_on_pixel_centres_and_extract_their_pixels(cube, monkeypatch):
    from eossl.data.series import extract
    from eossl.data.series.extract import extract_series, grid_points

    path, data, x, y = cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    pts = grid_points(index, 30.0)                 # every 3rd pixel: cols 0, 3, ..., 18 (7), rows 0, 3, ..., 15 (6)
    assert len(pts) == 7 * 6 and pts.crs.to_epsg() == 4326 and pts.sample_id.is_unique
    local = pts.to_crs("EPSG:32631").geometry
    assert np.allclose(sorted(set(np.round(local.x, 3))), x[::3]) and np.allclose(sorted(set(np.round(local.y, 3))),
                                                                                  sorted(y[::3]))
    table = extract_series(index, pts, id_column="sample_id", progress=False)
    one = table[table.sample_id == "grid-0-1-2"].reset_index(drop=True)          # row 3, col 6
    np.testing.assert_allclose(one.loc[0, BANDS].to_numpy(float), data[0, :, 3, 6] * 1e-4, rtol=1e-5)
    monkeypatch.setattr(extract, "TILE_PX", 4)             # many read tiles instead of one: the same table
    pd.testing.assert_frame_equal(extract_series(index, pts, id_column="sample_id", progress=False), table)
    assert len(grid_points(index, 1e6)) == 1                      # a spacing wider than the place: its first pixel
    with pytest.raises(ValueError, match="spacing must be > 0"):
        grid_points(index, 0.0)


def test_extract_cli_from_a_scene_stack(tmp_path, capsys):
    import geopandas as gpd
    import rasterio
    from shapely.geometry import Point

    scene = _write_scene(tmp_path / "s2", dates=(DEFAULT_DATE, SECOND_DATE), bands=["B04", "B08"])
    with rasterio.open(scene.file("B08")) as ds:
        px, py = ds.xy(7, 9)                       # centre of row 7, col 9 at 10 m
    labels = tmp_path / "pts.geojson"
    gpd.GeoDataFrame({"crop": ["a"]}, geometry=[Point(px, py)], crs=scene.crs).to_crs("EPSG:4326").to_file(labels)
    out = tmp_path / "out.csv"
    assert main(["extract", str(scene), "--sensor", "sentinel2-l1c", "--labels", str(labels), "--label-column",
                 "crop", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 2
    assert table.loc[0, "B08"] == pytest.approx(scene.array("B08")[7, 9] * 1e-4, rel=1e-5)
    assert table.loc[1, "B08"] == pytest.approx(scene.array("B08", SECOND_DATE)[7, 9] * 1e-4, rel=1e-5)
    assert main(["extract", str(scene), "--sensor", "sentinel2-l1c", "--labels", str(labels), "--out", str(out),
                 "--no-progress"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_crops_pipeline_pretrains_evaluates_and_reports(cube, tmp_path):
    """The shape of pipelines/crops.yaml (extract a grid -> pretrain-series on it -> evaluate series -> report) on
    small written data."""
    import yaml

    path, _, _, _ = cube
    rng = np.random.default_rng(1)
    rows = []
    for i in range(40):
        row = {"sample_id": f"s{i}", "crop": ("a", "b")[i % 2], "start_date": "2021-03-01",
               "lon": 3 + rng.uniform(0, 1), "lat": 50 + rng.uniform(0, 1)}
        row.update({f"{b}_t{t}": int(rng.integers(300, 3000)) + 800 * (i % 2) * (t == 3)
                    for b in BANDS for t in range(T)})
        rows.append(row)
    table = tmp_path / "pts.parquet"
    pd.DataFrame(rows).to_parquet(table)
    pipe = {"name": "crops-test", "stages": [
        {"name": "extract", "command": "extract", "set": [f"roots=[{path}]", "sensor=sentinel2-l2a", "grid_m=40"]},
        {"name": "pretrain", "command": "pretrain-series", "table": "extract",
         "set": ["encoder={dim: 16, depth: 1, heads: 2}", "epochs=2", "batch_size=8"]},
        {"name": "evaluate", "command": "evaluate", "weights": "pretrain",
         "set": ["task=series", f"series.table={table}", "series.label_column=crop", "series.id_column=sample_id",
                 "series.min_per_class=5", "seeds=2", "ks=[3, all]"]},
        {"name": "report", "command": "report"}]}
    spec = tmp_path / "crops.yaml"
    spec.write_text(yaml.safe_dump(pipe, sort_keys=False))
    assert main(["run", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    report = next((tmp_path / "runs").rglob("report.md")).read_text()
    assert "Extracted series (extract)" in report and "20 geometries x 6 dates" in report    # 4 x 5 grid points
    assert "Temporal pretraining (pretrain)" in report and "table rows (labels unused)" in report
    corpus = json.loads(next((tmp_path / "runs").rglob("corpus.json")).read_text())
    assert corpus["n"] == 20 and corpus["parts"][0]["from"].endswith("series.parquet")
    assert "pretrained pixel transformer series_mae" in report
    assert "precision  recall     F1  support" in report
    assert "pretrained - baseline, macro-f1 points (paired, 95% CI)" in report       # the series task's headline
