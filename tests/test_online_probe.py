"""The online probe of `eossl pretrain`: which steps it scores, baselines scored once, the stop rule, resume, the
history file, validation, and that the probe does not change what training computes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from eossl.config import ConfigError, load_config
from eossl.data.labelled.config import LabelledDataConfig
from eossl.data.normalization import Normalization
from eossl.evaluate.features import extract_features, extract_pools
from eossl.evaluate.online_probe import ProbeRunner, online_probe
from eossl.evaluate.probe_chips import load_probe_chips, select_bands
from eossl.models.backbones import create_backbone
from eossl.models.pooling import model_pools
from eossl.pipeline.report import _pretrain as report_section
from eossl.report.figures import save_probe_curves
from eossl.train.config import PretrainConfig
from eossl.train.pretrain import pretrain as _pretrain
from eossl.train.probe_history import beats_baselines, best_pool, load_history, new_history, probe_verdict

S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def _write_chips(root, classes=3, per_class=5, size=32, bands=S2):
    """Class folders of ``size`` px chips with band descriptions; class c is brighter by 800 DN per class."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        for i in range(per_class):
            data = (1500 + 800 * c + rng.normal(0, 300, size=(len(bands), size, size))).clip(1, 9999)
            path = root / f"class{c}" / f"chip{i}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16",
                               crs="EPSG:32633", transform=from_origin(400000, 5800000, 10, 10)) as ds:
                ds.write(data.astype("uint16"))
                for b, name in enumerate(bands, start=1):
                    ds.set_band_description(b, name)
    return root


def _config(scene, probe_root, *extra) -> PretrainConfig:
    """VICReg / ResNet-18 on 32 px chips of the tiny scene (2 batches of 8 per epoch); the probe on the tiny class
    folders every 2 steps, k = 2 and 3, 2 draws, two pools."""
    return load_config(PretrainConfig, None, overrides=[
        f"corpus.roots=[{scene}]", "corpus.sampler.chip_size=32", "corpus.sampler.num_samples=16", "corpus.batch_size=8",
        "corpus.num_workers=0", "method.params={proj_dim: 16}", "optim.warmup_steps=1", "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=2", f"probe.data={probe_root}",
        "probe.ks=[2, 3]", "probe.draws=2", "probe.pools=[last, stats0]", "probe.every_n_steps=2", *extra])


def pretrain(cfg: PretrainConfig, run_dir, **kw) -> dict:
    """Pretraining with the online probe ``cfg`` asks for, handed over as `eossl pretrain` does."""
    return _pretrain(cfg, run_dir, probe=online_probe(cfg), **kw)


def _backbone(run) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("method.backbone.")}


def _score(mean: float) -> dict:
    return {"mean": mean, "ci95": 0.02}


def _history(best_means: list[float], baselines=(0.60, 0.62)) -> dict:
    """A synthetic history at k = 10: evaluations at steps 0, 10, 20, ... whose best pool has ``best_means``."""
    h = new_history({"ks": [5, 10]})
    h["baselines"] = {"k10": {"band statistics": _score(baselines[0]), "RCF": _score(baselines[1])},
                      "k5": {"band statistics": _score(0.9)}}   # the rule reads the largest k only
    h["evaluations"] = [{"step": 10 * i, "minutes": 0.5 * i, "k5": {"stats1": _score(0.1)},
                         "k10": {"last": _score(0.3), "stats1": _score(m)}} for i, m in enumerate(best_means)]
    return h


def test_stop_rule_on_synthetic_histories():
    # beats the strongest baseline (0.62) by more than 1 point on 2 consecutive evaluations: stops at the 2nd
    assert beats_baselines(_history([0.5, 0.64, 0.65, 0.66]), margin=1.0, patience=2)["step"] == 20
    assert beats_baselines(_history([0.5, 0.64, 0.65]), margin=1.0, patience=3) is None        # one too few
    assert beats_baselines(_history([0.5, 0.64, 0.60, 0.64, 0.65]), margin=1.0, patience=2)["step"] == 40
    # beating only the weaker baseline, or the strongest by less than the margin, never stops
    assert beats_baselines(_history([0.5, 0.61, 0.61, 0.61]), margin=0.0, patience=1) is None
    assert beats_baselines(_history([0.5, 0.625, 0.625, 0.625]), margin=1.0, patience=1) is None
    assert beats_baselines(_history([0.5, 0.625, 0.625]), margin=0.0, patience=2)["step"] == 20
    # step 0 (the random initialisation) never counts
    assert beats_baselines(_history([0.9, 0.9]), margin=1.0, patience=2) is None
    with pytest.raises(ValueError, match="at least one baseline at k10"):
        beats_baselines({**_history([0.5]), "baselines": {}}, margin=1.0, patience=1)


def test_best_pool_and_a_resumed_history(tmp_path):
    h = _history([0.5, 0.64, 0.70])
    assert best_pool(h) == {"pool": "stats1", "k": 10, "mean": 0.70, "step": 20}
    h["best_pool"] = best_pool(h)
    h["stopped"] = {"step": 20, "minutes": 1.0, "reason": "x"}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(h))
    resumed = load_history(path, h["settings"], max_step=10)          # the checkpoint was at step 10
    assert [e["step"] for e in resumed["evaluations"]] == [0, 10]
    assert resumed["best_pool"] == {"pool": "stats1", "k": 10, "mean": 0.64, "step": 10}
    assert resumed["stopped"] is None and resumed["baselines"] == h["baselines"]
    fresh = load_history(path, {"ks": [3]}, max_step=10)              # other settings: not continued
    assert fresh["evaluations"] == [] and fresh["baselines"] == {}


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16"])
def test_extract_pools_equals_extract_features_pool_by_pool(arch):
    torch.manual_seed(0)
    model = create_backbone(arch, 4, 32).train()
    x = np.random.default_rng(0).random((5, 4, 32, 32)).astype(np.float32)
    pools = model_pools(model)
    norm = Normalization(("B02", "B03", "B04", "B08"), [0.5] * 4, [0.2] * 4)
    got = extract_pools(model, x, norm, pools, batch_size=3)
    assert model.training, "train mode is restored"
    for pool in pools:
        np.testing.assert_allclose(got[pool], extract_features(model, x, norm, pool, batch_size=3),
                                   rtol=1e-5, atol=1e-6, err_msg=pool)


def test_probe_run_scores_the_interval_logs_and_leaves_training_unchanged(tiny_s2_scene, tmp_path, caplog):
    caplog.set_level("INFO", logger="eossl")
    chips = _write_chips(tmp_path / "chips")
    from eossl.commands.pretrain import run as pretrain_command
    from eossl.pipeline.stages import RunContext

    run = tmp_path / "run"
    # as `eossl pretrain` and the pipeline run it: the command builds the probe and hands it to train/
    pretrain_command(_config(tiny_s2_scene, chips, "trainer.max_steps=5"), run, RunContext(echo=lambda *a: None))
    summary = json.loads((run / "summary.json").read_text())
    history = json.loads((run / "probe" / "history.json").read_text())
    # step 0 (before training), every 2 steps, and the end
    assert [e["step"] for e in history["evaluations"]] == [0, 2, 4, 5]
    minutes = [e["minutes"] for e in history["evaluations"]]
    assert minutes[0] < 0.5 and minutes == sorted(minutes) and all(e["seconds"] > 0 for e in history["evaluations"])
    for e in history["evaluations"]:
        assert set(e) == {"step", "minutes", "seconds", "k2", "k3"} and set(e["k3"]) == {"last", "stats0"}
        assert all(0 <= s["mean"] <= 1 for s in e["k3"].values())
    # baselines: once, at every k, on the same splits, as the reference lines of the history
    names = {"band statistics", "RCF", "random init (last)", "random init (stats0)"}
    assert set(history["baselines"]) == {"k2", "k3"} and set(history["baselines"]["k3"]) == names
    assert history["settings"]["bands"] == tiny_s2_scene.bands and history["settings"]["n_chips"] == 15
    last = history["evaluations"][-1]["k3"]
    pool = max(last, key=lambda p: last[p]["mean"])
    assert history["best_pool"] == {"pool": pool, "k": 3, "mean": last[pool]["mean"], "step": 5}
    assert history["stopped"] is None and summary["stopped"] is None
    assert summary["probe"]["best_pool"] == history["best_pool"] and summary["probe"]["evaluations"] == 4
    assert json.loads((run / "weights" / "weights.json").read_text())["feature_pool"] == pool
    # the verdict: in summary.json and as the run's last log line
    verdict = probe_verdict(history)
    assert summary["probe_verdict"] == verdict.to_dict() and len(summary["probe_verdict"]["comparisons"]) == 4
    assert [r.getMessage() for r in caplog.records if r.name.startswith("eossl")][-1] == verdict.sentence()
    # the loggers: every pool at every k per evaluation, the baselines once
    import pandas as pd

    log = pd.read_csv(run / "logs" / "version_0" / "metrics.csv")
    assert log.dropna(subset=["probe/k3/stats0"])["step"].tolist() == [0, 2, 4, 5]
    assert log["probe/k2/baseline/band_statistics"].notna().sum() == 1
    assert log["probe/k3/baseline/random_init_stats0"].notna().sum() == 1 and "loss" in log.columns
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    # the same config without the probe trains to the same weights: the probe draws nothing from training
    off = tmp_path / "off"
    summary_off = pretrain(_config(tiny_s2_scene, chips, "trainer.max_steps=5", "probe.data=null"), off)
    assert not (off / "probe").exists() and summary_off["probe"] is None
    a, b = _backbone(run), _backbone(off)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_when_beats_baselines_stops_training_and_says_when(tiny_s2_scene, tmp_path, monkeypatch):
    """Baselines at 0% accuracy: every evaluation after step 0 beats them, so with patience 2 and an evaluation
    every step training stops at step 2 of 6; the summary and the history say so."""
    def weak(self, which, device="cpu"):
        return {f"k{k}": {"band statistics": {"mean": 0.0, "ci95": 0.0}} for k in self.ks}

    monkeypatch.setattr(ProbeRunner, "baselines", weak)
    run = tmp_path / "run"
    summary = pretrain(_config(tiny_s2_scene, _write_chips(tmp_path / "chips"), "trainer.max_steps=6",
                               "trainer.stop_when=beats_baselines", "probe.every_n_steps=1", "probe.patience=2",
                               "probe.margin=5"), run)
    assert summary["global_step"] == 2
    history = json.loads((run / "probe" / "history.json").read_text())
    assert [e["step"] for e in history["evaluations"]] == [0, 1, 2]
    stopped = summary["stopped"]
    assert stopped["step"] == 2 and stopped["minutes"] == history["evaluations"][-1]["minutes"]
    assert "beat every baseline" in stopped["reason"] and history["stopped"] == stopped


class _Crash(Exception):
    pass


def test_resume_keeps_the_history_and_does_not_rescore_the_baselines(tiny_s2_scene, tmp_path, monkeypatch):
    """Crashed at step 3 (checkpoint at step 2, evaluations at 0..3): the resumed run keeps the evaluations up to
    step 2, scores again from step 3 on, and reuses the baselines."""
    import lightning as L

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                raise _Crash()

    chips = _write_chips(tmp_path / "chips")
    run = tmp_path / "run"
    with pytest.raises(_Crash):
        pretrain(_config(tiny_s2_scene, chips, "trainer.max_steps=5", "probe.every_n_steps=1"), run, callbacks=[Crash()])
    before = json.loads((run / "probe" / "history.json").read_text())
    assert [e["step"] for e in before["evaluations"]] == [0, 1, 2, 3]
    calls = []
    original = ProbeRunner.baselines
    monkeypatch.setattr(ProbeRunner, "baselines", lambda self, *a, **kw: calls.append(1) or original(self, *a, **kw))
    pretrain(_config(tiny_s2_scene, chips, "trainer.max_steps=5", "probe.every_n_steps=1"), run, resume=True)
    after = json.loads((run / "probe" / "history.json").read_text())
    assert calls == [] and after["baselines"] == before["baselines"]
    assert [e["step"] for e in after["evaluations"]] == [0, 1, 2, 3, 4, 5]
    assert after["evaluations"][:3] == before["evaluations"][:3]
    # training minutes continue from the checkpoint's, not from zero
    assert after["evaluations"][3]["minutes"] >= after["evaluations"][2]["minutes"]


def test_probe_config_and_data_errors_name_the_key(tiny_s2_scene, tmp_path):
    chips = _write_chips(tmp_path / "chips")
    with pytest.raises(FileNotFoundError, match="probe.data: class-folder root .*nowhere not found"):
        pretrain(_config(tiny_s2_scene, tmp_path / "nowhere"), tmp_path / "run")
    assert not (tmp_path / "run").exists(), "checked before the run directory is made"
    probe = _config(tiny_s2_scene, chips, "probe.ks=[5]").probe          # 5 chips per class: k = 5 leaves none
    with pytest.raises(ValueError, match=r"probe.data: .*probe.ks = \[5\].*class0 \(5\)"):
        load_probe_chips(probe, "resnet18", 32)
    loaded = load_probe_chips(_config(tiny_s2_scene, chips).probe, "resnet18", 32)
    with pytest.raises(ValueError, match="probe.data: the probe chips lack band\\(s\\) B13, B14"):
        select_bands(loaded, ["B02", "B13", "B14"])
    assert select_bands(loaded, ["B04", "B02"]).images.shape == (15, 2, 32, 32)
    with pytest.raises(ConfigError, match="probe.pools: pool 'stats7'.*ResNet"):
        load_probe_chips(_config(tiny_s2_scene, chips, "probe.pools=[stats7]").probe, "resnet18", 32)
    with pytest.raises(ConfigError, match="probe.pools: unknown pool"):
        load_config(PretrainConfig, None, overrides=["probe.pools=[avg]"])
    with pytest.raises(ConfigError, match="trainer.stop_when: beats_baselines needs the online probe"):
        load_config(PretrainConfig, None, overrides=["trainer.stop_when=beats_baselines", "probe.data=null"])
    with pytest.raises(ConfigError, match="probe.ks"):
        load_config(PretrainConfig, None, overrides=["probe.ks=[5, 5]"])
    assert load_config(PretrainConfig, None, overrides=["probe.data=none"]).probe.data is None
    assert PretrainConfig().probe.data == LabelledDataConfig() and PretrainConfig().trainer.stop_when is None
    with pytest.raises(ValueError, match="pretrain\\(\\) was given none: pass probe=.*or set probe.data=null"):
        _pretrain(_config(tiny_s2_scene, chips), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # a ViT takes chips of its own size: the probe chips are resized to it
    assert load_probe_chips(_config(tiny_s2_scene, chips, "probe.pools=[stats6]").probe, "vit_tiny_patch16",
                            64).images.shape == (15, 13, 64, 64)


def test_report_plots_the_probe(tmp_path):
    run = tmp_path / "run"
    h = _history([0.5, 0.64, 0.70])
    h["settings"].update(n_chips=200, data="builtin", draws=10, every_n_steps=10)
    h["best_pool"] = best_pool(h)
    h["stopped"] = {"step": 20, "minutes": 1.0, "reason": "beats_baselines: ..."}
    (run / "probe").mkdir(parents=True)
    (run / "probe" / "history.json").write_text(json.dumps(h))
    png = save_probe_curves(tmp_path / "probe.png", h)
    assert png.stat().st_size > 10_000
    blocks = report_section("pre", {"run_dir": str(run)}, tmp_path)
    text = next(b[1] for b in blocks if b[0] == "p" and b[1].startswith("Online probe"))
    assert "stats1 70.0%" in text and "RCF 62.0%" in text and "stopped at step 20" in text
    assert ("img", "pre_probe.png") == next(b for b in blocks if b[0] == "img")[:2]
    assert (tmp_path / "pre_probe.png").is_file() and not math.isnan(h["best_pool"]["mean"])


def test_probe_data_is_the_labelled_data_config_and_the_old_keys_still_load(tmp_path, recwarn):
    """``probe.data`` is the LabelledDataConfig of `eossl evaluate`; the keys of before still load: a string
    (builtin, a class-folder root, none) as a shorthand, probe.sensor / probe.band_order / probe.file_bands renamed
    into probe.data with a FutureWarning. The same chips load either way, and the history records the data as
    before (a resumed run continues its history)."""
    from eossl.evaluate.online_probe import _data_setting

    chips = _write_chips(tmp_path / "chips", bands=["B02", "B03", "B04"])

    def probe(*sets):
        return load_config(PretrainConfig, None, overrides=list(sets)).probe

    assert probe("probe.data=builtin").data == LabelledDataConfig() == probe().data
    assert probe("probe.data=null").data is None and probe("probe.data=none").data is None
    old = probe(f"probe.data={chips}", "probe.sensor=sentinel2-l2a", "probe.band_order=[B02, B03, B04]")
    new = probe(f"probe.data.root={chips}", "probe.data.sensor=sentinel2-l2a", "probe.data.band_order=[B02, B03, B04]")
    assert old == new and new.data == LabelledDataConfig(root=str(chips), sensor="sentinel2-l2a",
                                                         band_order=["B02", "B03", "B04"])
    assert {str(w.message).split(";")[0] for w in recwarn if w.category is FutureWarning} == {
        "config key probe.sensor is renamed probe.data.sensor",
        "config key probe.band_order is renamed probe.data.band_order"}
    with pytest.warns(FutureWarning, match="probe.file_bands is renamed probe.data.band_order"):
        assert probe(f"probe.data={chips}", "probe.file_bands=[B02, B03, B04]").data.band_order == ["B02", "B03", "B04"]
    with pytest.raises(ConfigError, match="probe.data.band_order: the built-in EuroSAT-MS sample knows its bands"):
        probe("probe.data.band_order=[B02]")
    # the same chips as the data loader of `eossl evaluate`, in the probe's checks
    a, b = load_probe_chips(dataclasses.replace(old, ks=[2]), "resnet18", 32), old.data.load()
    assert a.bands == b.bands == ["B02", "B03", "B04"] and np.array_equal(a.images, b.images)
    assert a.sensor == "sentinel2-l2a"
    assert _data_setting(old.data) == str(chips) and _data_setting(probe().data) == "builtin"
    assert _data_setting(LabelledDataConfig(root=str(chips), bands=["B02"]))["bands"] == ["B02"]
