"""Series pretraining on scene stacks: every pixel of each stack as the corpus (the stack_samples series, padded
across stacks), the contrastive objectives, continuing from other weights, Sentinel-1 channels, strict keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stack_data import make_raw, write_wc_folder

from eossl.config import ConfigError, load_config
from eossl.data.series.composite import composite
from eossl.data.series.stack import open_stack
from eossl.data.series.stack_samples import stack_samples
from eossl.models.temporal import load_series_encoder
from eossl.train.config import SeriesPretrainConfig, SeriesViewsConfig, pretraining_config
from eossl.train.series_corpus import series_corpus
from eossl.train.series_pretrain import pretrain_series

SMALL = ["encoder={dim: 16, depth: 1, heads: 2}", "batch_size=32", "lr=0.003"]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Two 8 x 8 px WorldCereal-style stacks with different numbers of dates (so of 10-day periods), S1 beside."""
    root = tmp_path_factory.mktemp("stacks")
    write_wc_folder(root / "a", make_raw(n_dates=4, seed=0), with_s1=True)
    write_wc_folder(root / "b", make_raw(n_dates=7, seed=1), with_s1=True)
    return root / "a", root / "b"


def _cfg(stacks, *more):
    return load_config(SeriesPretrainConfig, None, overrides=[f"corpus.stacks=[{stacks[0]}, {stacks[1]}]", *more])


def test_stack_corpus_holds_every_pixel_as_stack_samples_gives_it(stacks):
    samples, corpus = series_corpus(_cfg(stacks))
    expect = [stack_samples(composite(open_stack(p), "10D")) for p in stacks]
    assert len(samples) == sum(s.values.shape[0] for s in expect) == 2 * 64
    steps = max(s.values.shape[1] for s in expect)
    assert expect[0].values.shape[1] < steps and samples.values.shape[1] == steps       # padded to the longest
    at = 0
    for s in expect:
        n, p = s.values.shape[:2]
        np.testing.assert_array_equal(samples.values[at:at + n, :p], s.values)
        np.testing.assert_array_equal(samples.valid[at:at + n, :p], s.valid)
        np.testing.assert_array_equal(samples.times[at:at + n, :p], s.times)
        assert not samples.valid[at:at + n, p:].any() and np.isnat(samples.times[at:at + n, p:]).all()
        at += n
    assert (samples.labels == -1).all() and len(set(samples.ids)) == len(samples)
    assert [d["kind"] for d in corpus["parts"]] == ["stack pixels"] * 2
    assert corpus["parts"][1]["n"] == 64 and corpus["parts"][1]["height"] == 8 and corpus["n"] == 128
    monthly, _ = series_corpus(_cfg(stacks, "corpus.period=month"))
    assert monthly.values.shape[1] < steps


def test_a_stack_config_is_a_series_config_for_eossl_pretrain(stacks):
    cfg = pretraining_config(None, [f"corpus.stacks=[{stacks[0]}]"])
    assert isinstance(cfg, SeriesPretrainConfig) and cfg.objective == "masked" and cfg.corpus.period == "10D"


@pytest.mark.parametrize("override, message", [
    ("corpus.stack=[x]", r"^corpus.stack: unknown key"),
    ("views.kep=[0.5, 0.9]", r"^views.kep: unknown key; allowed keys: keep, shift_days, jitter$"),
    ("contrastive.los=vicreg", r"^contrastive.los: unknown key"),
    ("objective=contrast", r"^objective: got 'contrast' \(str\); allowed: 'masked', 'contrastive', 'masked\+contrastive'$"),
    ("contrastive.loss=barlow", r"^contrastive.loss: "),
    ("views.keep=[0.9, 0.5]", r"^views.keep: expected \[low, high\]"),
    ("views.jitter=1.5", r"^views.jitter: 1.5 is out of range"),
    ("corpus.period=10X", r"^corpus.period: got '10X'"),
])
def test_wrong_keys_and_values_fail_at_load_naming_the_dotted_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SeriesPretrainConfig, None, overrides=[override])


def test_views_config_defaults():
    assert SeriesViewsConfig().keep == [0.5, 0.9]
    assert load_config(SeriesPretrainConfig, None).contrastive.loss == "vicreg"


@pytest.mark.parametrize("objective, loss", [("contrastive", "vicreg"), ("contrastive", "nt_xent"),
                                             ("masked+contrastive", "vicreg")])
def test_contrastive_objectives_train_on_a_stack_and_export_loadable_weights(stacks, tmp_path, objective, loss):
    cfg = _cfg(stacks, *SMALL, f"objective={objective}", f"contrastive.loss={loss}", "epochs=8",
               "contrastive={proj_hidden: 64, proj_dim: 64, loss: " + loss + "}")
    summary = pretrain_series(cfg, tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    head, rows = lines[0].split(","), [list(map(float, r.split(","))) for r in lines[1:]]
    assert head[:4] == ["epoch", "step", "loss", "lr"] and "contrastive" in head and "embedding_std" in head
    assert ("masked" in head) == (objective == "masked+contrastive")
    losses = [r[2] for r in rows]
    assert np.isfinite(losses).all() and summary["steps"] == 8 * 4
    assert np.mean(losses[-2:]) < np.mean(losses[:2])                   # decreasing-ish
    loaded = load_series_encoder(tmp_path / "run" / "weights")
    expected_method = {"contrastive": f"series_{loss}", "masked+contrastive": f"series_mae+{loss}"}[objective]
    assert loaded.info.ssl_method == expected_method and loaded.info.extra["objective"] == objective
    assert loaded.info.bands == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert not any(k.startswith("head") for k in loaded.model.state_dict())     # the projector is not exported
    out = loaded.model(torch.zeros(2, 3, 10), torch.ones(2, 3, 10, dtype=torch.bool), torch.tensor([[1.0, 50, 99]] * 2))
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_masked_objective_touches_no_view_or_projector_code(stacks, tmp_path, monkeypatch):
    from eossl.train import series_objective

    def boom(*a, **k):
        raise AssertionError("view / projector code ran in a masked-only run")
    monkeypatch.setattr(series_objective, "series_view", boom)
    monkeypatch.setattr(series_objective, "projector", boom)
    summary = pretrain_series(_cfg(stacks, *SMALL, "epochs=1"), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0] == "epoch,step,loss,lr"
    assert summary["objective"] == "masked"
    assert load_series_encoder(tmp_path / "run" / "weights").info.ssl_method == "series_mae"


def test_continuing_from_other_weights_on_the_stack_corpus(stacks, tmp_path):
    first = pretrain_series(load_config(SeriesPretrainConfig, None, overrides=[
        f"corpus.stacks=[{stacks[0]}]", *SMALL, "epochs=1"]), tmp_path / "a", progress=False)
    cfg = _cfg(stacks, f"init={first['weights']}", "objective=contrastive", "epochs=2", "batch_size=32",
               "contrastive={proj_hidden: 32, proj_dim: 32}")
    summary = pretrain_series(cfg, tmp_path / "b", progress=False)
    a = load_series_encoder(first["weights"])
    b = load_series_encoder(summary["weights"])
    assert b.model.dim == 16 and b.info.normalization == a.info.normalization
    provenance = json.loads(b.info.pretrain_data)
    assert provenance[0]["kind"] == "continued from" and provenance[0]["pretrained on"][0]["kind"] == "stack pixels"
    assert [p["kind"] for p in provenance[1:]] == ["stack pixels"] * 2


def test_sentinel1_channels_get_pseudo_wavelengths_and_corpus_statistics(stacks, tmp_path):
    from eossl.data.series.channels import PSEUDO_WAVELENGTHS_NM

    cfg = _cfg(stacks, *SMALL, "corpus.include_s1=true", "objective=masked+contrastive", "epochs=1",
               "contrastive={proj_hidden: 32, proj_dim: 32}")
    samples, _ = series_corpus(cfg)
    assert samples.bands[-2:] == ["VV", "VH"]
    summary = pretrain_series(cfg, tmp_path / "run", progress=False)
    info = load_series_encoder(summary["weights"]).info
    assert info.bands[-2:] == ["VV", "VH"] and info.wavelengths_nm[-2:] == [5.55e7, 1.11e8]
    assert info.extra["pseudo_wavelengths_nm"] == PSEUDO_WAVELENGTHS_NM
    vv = samples.values[..., -2][samples.valid[..., -2]]
    assert info.normalization["mean"][-2] == pytest.approx(float(vv.mean()), rel=1e-5)
    assert info.normalization["std"][-2] == pytest.approx(float(vv.std()), rel=1e-5)
    optical = load_series_encoder(pretrain_series(_cfg(stacks, *SMALL, "epochs=1"), tmp_path / "opt",
                                                  progress=False)["weights"]).info
    assert info.wavelengths_nm[:-2] == optical.wavelengths_nm                    # optical keys unchanged
    assert info.normalization["mean"][:-2] == optical.normalization["mean"]


def test_pseudo_wavelengths_cannot_collide_with_any_sensor_band():
    from eossl.catalog.sensors import list_sensors, load_sensor
    from eossl.data.series.channels import PSEUDO_WAVELENGTHS_NM, channel_wavelengths
    from eossl.models.temporal import wavelength_features

    longest = max(b.wavelength_nm for name in list_sensors() for b in load_sensor(name).bands)
    assert min(PSEUDO_WAVELENGTHS_NM.values()) > 1000 * longest
    keys = wavelength_features(torch.tensor([*PSEUDO_WAVELENGTHS_NM.values(), longest, 400.0]))
    assert torch.cdist(keys, keys).fill_diagonal_(float("inf")).min() > 0.5        # distinct embedding keys
    s2 = load_sensor("sentinel2-l2a")
    assert channel_wavelengths(s2, ["B04", "VV", "VH"]) == [s2.band("B04").wavelength_nm, 5.55e7, 1.11e8]
