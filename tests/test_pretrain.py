"""`eossl pretrain` / `eossl export`: run directory, atomic checkpoints, exact kill-and-resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_pretrain_config as _config

import eossl
from eossl.cli import main
from eossl.config import ConfigError, load_config, to_dict
from eossl.data.chips.resumable import ResumableLoader, SkippableSampler
from eossl.train.checkpoint import AtomicCheckpointIO
from eossl.train.config import PretrainConfig
from eossl.train.pretrain import pretrain


def _backbone_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("method.")}


def test_run_directory_checkpoint_logs_and_export(tiny_s2_scene, tmp_path):
    run = tmp_path / "run"
    summary = pretrain(_config(tiny_s2_scene, max_steps=3), run)
    assert summary["global_step"] == 3 and summary["total_steps"] == 3
    assert summary["peak_lr"] == pytest.approx(0.3 * 8 / 256)
    for name in ("config.yaml", "data.json", "index.parquet", "cache/manifest.json", "checkpoints/last.ckpt",
                 "summary.json", "metrics.json", "environment.json", "weights/backbone.safetensors",
                 "weights/weights.json"):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.tmp*")), "no temporary files are left behind"
    env = json.loads((run / "environment.json").read_text())
    assert env["device"] == "cpu" and env["seed"] == 0 and env["torch"] == torch.__version__
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 3
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert {"loss", "embedding_std", "effective_rank", "lr", "peak_lr"} <= set(metrics[0].split(","))
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == to_dict(_config(tiny_s2_scene, max_steps=3))
    info = json.loads((run / "weights" / "weights.json").read_text())
    assert info["bands"] == tiny_s2_scene.bands and info["in_chans"] == 13 and info["ssl_method"] == "vicreg"
    assert info["extra"]["global_step"] == 3 and len(info["normalization"]["mean"]) == 13
    # the exported backbone is the checkpoint's, and `eossl export` writes the same
    model = eossl.load_backbone(run / "weights", pool="last")
    ckpt = _backbone_state(run / "checkpoints" / "last.ckpt")
    assert torch.equal(model.conv1.weight, ckpt["method.backbone.conv1.weight"])
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    again = eossl.load_backbone(tmp_path / "exported")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


_KILLER = textwrap.dedent("""
    import os, sys, yaml
    import lightning as L
    from eossl.config import from_dict
    from eossl.train.config import PretrainConfig
    from eossl.train.pretrain import pretrain

    class Kill(L.Callback):  # a hard kill: no cleanup, no final checkpoint
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(sys.argv[3]):
                os._exit(9)

    cfg = from_dict(PretrainConfig, yaml.safe_load(open(sys.argv[1])))
    pretrain(cfg, sys.argv[2], callbacks=[Kill()])
""")


@pytest.mark.parametrize("method", ["vicreg", "moco_v2", "byol", "dino"])  # EMA targets, queue, DINO centre
def test_killed_run_resumes_to_the_same_parameters(method, tiny_s2_scene, tmp_path):
    """4 batches per epoch, checkpoints every 3 steps. Killed at step 7 (last checkpoint at step 6, in the middle
    of the second epoch), resumed with `eossl pretrain --resume`: the parameters after 8 steps equal those of an
    uninterrupted run with the same seed."""
    # every phase on the same number of threads: CPU reductions split by thread count differ in the last bits, and
    # LARS steps (trust coefficient 0.01) amplify that past the tolerance; another test may have changed torch's
    # thread count in this process
    threads = torch.get_num_threads()
    try:
        _kill_and_resume(method, _config(tiny_s2_scene, max_steps=8, checkpoint_every_n_steps=3, threads=2), tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(method: str, cfg: PretrainConfig, tmp_path: Path) -> None:
    cfg.method.name = method
    cfg.method.params = {"vicreg": {"proj_dim": 32}, "moco_v2": {"proj_dim": 16, "hidden": 32, "queue_size": 64},
                         "byol": {"proj_dim": 16, "hidden": 32},
                         "dino": {"out_dim": 16, "hidden": 32, "bottleneck": 8, "warmup_teacher_steps": 5}}[method]
    pretrain(cfg, tmp_path / "straight")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(to_dict(cfg)))
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(cfg_file), str(killed), "7"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr[-2000:]
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6 and ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 1
    assert not (killed / "summary.json").exists()
    assert main(["pretrain", "--resume", str(killed)]) == 0
    a = _backbone_state(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    b = _backbone_state(killed / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # and the resumed run really trained after the checkpoint (not a copy of step 6)
    assert not torch.equal(b["method.backbone.conv1.weight"],
                           ckpt["state_dict"]["method.backbone.conv1.weight"])
    assert json.loads((killed / "summary.json").read_text())["global_step"] == 8
    assert (killed / "logs" / "version_1").is_dir(), "the resumed attempt logs into a new version"


def test_loader_skips_the_trained_batches_of_the_saved_epoch():
    class Base(torch.utils.data.Sampler):
        epoch = 0

        def set_epoch(self, e):
            self.epoch = e

        def __iter__(self):
            return iter(range(self.epoch * 100, self.epoch * 100 + 10))

        def __len__(self):
            return 10

    loader = ResumableLoader(list(range(1000)), batch_size=3, sampler=SkippableSampler(Base()))
    loader.load_state_dict({"epoch": 1, "batches_done": 2, "batch_size": 3})
    loader.sampler.set_epoch(1)
    assert [b.tolist() for b in loader] == [[106, 107, 108], [109]]
    assert [b.tolist() for b in loader][0] == [100, 101, 102], "the skip applies once"
    with pytest.raises(ValueError, match="batch size 4"):
        loader.load_state_dict({"epoch": 1, "batches_done": 2, "batch_size": 4})


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_bad_input(tiny_s2_scene, tmp_path, capsys):
    # export of a run without a checkpoint
    run = tmp_path / "empty-run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(PretrainConfig())))
    (run / "data.json").write_text(json.dumps({"bands": ["B02"]}))
    assert main(["export", str(run), "--out", str(tmp_path / "w")]) == 2
    assert "no checkpoint to export" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "w")]) == 2
    assert "not a pretraining run directory" in capsys.readouterr().err
    # a new run never reuses a non-empty directory
    with pytest.raises(ValueError, match="not empty.*--resume"):
        pretrain(_config(tiny_s2_scene, max_steps=1), run)
    # config errors name the key
    with pytest.raises(ConfigError, match="trainer.epoch: unknown key"):
        load_config(PretrainConfig, None, overrides=["trainer.epoch=3"])
    with pytest.raises(ConfigError, match="corpus.batch_size"):
        load_config(PretrainConfig, None, overrides=["corpus.batch_size=1"])
    assert main(["pretrain", "--resume", str(run), "--set", "trainer.epochs=2"]) == 2
    assert "drop --config/--set" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="method.params.bogus: unknown parameter of vicreg; allowed: proj_dim"):
        pretrain(load_config(PretrainConfig, None, overrides=[f"corpus.roots=[{tiny_s2_scene}]", "corpus.sampler.chip_size=32",
                                             "corpus.sampler.num_samples=8", "corpus.num_workers=0",
                                             "trainer.progress_bar=false", "method.params={bogus: 1}",
                                             "probe.data=null"]),
                 tmp_path / "bogus")


def test_band_count_of_data_and_backbone_must_agree():
    from eossl.methods import build_method
    from eossl.models.backbones import create_backbone

    method = build_method("vicreg", create_backbone("resnet18", 13), "resnet18", proj_dim=16)
    views = [{"image": torch.zeros(2, 4, 32, 32), "mask": torch.ones(2, 32, 32, dtype=torch.bool)}] * 2
    with pytest.raises(ValueError, match="the data has 4 bands but the resnet18 backbone takes 13"):
        method.loss(views)


def test_cli_pretrain_under_lightning_ddp_with_two_cpu_processes(tiny_s2_scene, tmp_path):
    """`eossl pretrain` with strategy ddp on 2 CPU processes (gloo): Lightning re-runs the command for rank 1,
    which joins rank 0's run directory; the effective batch and the scaled LR cover both processes."""
    run = tmp_path / "ddp-run"
    args = [f"corpus.roots=[{tiny_s2_scene}]", "corpus.sampler.chip_size=32", "corpus.sampler.num_samples=32",
            "corpus.batch_size=4", "corpus.num_workers=0", "method.params={proj_dim: 32}", "trainer.max_steps=3",
            "trainer.progress_bar=false", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
            "trainer.threads=1", "probe.data=null"]
    cmd = [sys.executable, "-m", "eossl", "pretrain", "--run-dir", str(run)] + [a for s in args for a in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["effective_batch"] == 8
    assert summary["peak_lr"] == pytest.approx(0.3 * 8 / 256)
    assert summary["global_step"] == 3 and summary["total_steps"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pretrain-")] == [], "no stray run dirs"
    assert (run / "weights" / "weights.json").is_file()


def test_a_completed_run_removes_its_chip_cache_when_asked_and_a_resume_rebuilds_it(tiny_s2_scene, tmp_path):
    from dataclasses import replace

    cfg = _config(tiny_s2_scene, max_steps=2)
    kept = pretrain(cfg, tmp_path / "kept")
    assert kept["cache"]["kept"] and kept["cache"]["gb"] > 0 and (tmp_path / "kept" / "cache" / "manifest.json").is_file()
    cfg = replace(cfg, corpus=replace(cfg.corpus, keep_cache=False))
    run = tmp_path / "dropped"
    summary = pretrain(cfg, run)
    assert summary["cache"]["kept"] is False and summary["cache"]["gb"] == kept["cache"]["gb"]
    assert not (run / "cache").exists() and (run / "weights" / "weights.json").is_file()
    longer = replace(cfg, trainer=replace(cfg.trainer, max_steps=4))
    again = pretrain(longer, run, resume=True)       # extending the run rebuilds the same chips from the seed
    assert again["global_step"] == 4 and again["cache"]["gb"] == kept["cache"]["gb"]


@pytest.mark.filterwarnings("error::FutureWarning")   # shipped files use no renamed key
def test_shipped_configs_load_strictly_and_default_yaml_is_the_default():
    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "pretrain").glob("*.yaml"))
    assert configs, "configs/pretrain/ holds the documented recipes"
    for path in configs:
        load_config(PretrainConfig, path)
    default = [p for p in configs if p.name == "default.yaml"][0]
    assert load_config(PretrainConfig, default) == PretrainConfig()


def test_seasonal_pairs_from_a_datacube(worldcereal_nc, tmp_path):
    """Two dates of one place as the two views: MoCo v3 on the WorldCereal monthly cube."""
    cfg = load_config(PretrainConfig, None, overrides=[
        f"corpus.roots=[{worldcereal_nc}]", "corpus.sensor=sentinel2-l2a", "corpus.sampler.kind=seasonal_pair",
        "corpus.sampler.chip_size=32", "corpus.sampler.num_samples=16", "corpus.batch_size=8", "corpus.num_workers=0",
        "method.name=moco_v3", "method.params={proj_dim: 16, hidden: 32}", "trainer.max_steps=2",
        "trainer.progress_bar=false", "probe.data=null"])
    summary = pretrain(cfg, tmp_path / "run")
    assert summary["global_step"] == 2 and summary["method"] == "moco_v3"
    manifest = json.loads((tmp_path / "run" / "cache" / "manifest.json").read_text())
    assert manifest["pairs"] is True
    info = json.loads((tmp_path / "run" / "weights" / "weights.json").read_text())
    assert info["in_chans"] == len(info["bands"]) > 1 and "seasonal_pair" in info["pretrain_data"]


def test_mlflow_logger_records_params_and_metrics_in_a_local_store(tiny_s2_scene, tmp_path):
    from dataclasses import replace

    import mlflow  # in the dev extra

    cfg = _config(tiny_s2_scene, max_steps=2, log_every_n_steps=1)
    cfg = replace(cfg, trainer=replace(cfg.trainer, loggers=["csv", "tensorboard", "mlflow"]))
    run = tmp_path / "runs" / "pretrain-mlflow"
    pretrain(cfg, run)
    client = mlflow.MlflowClient(tracking_uri=f"file:{tmp_path / 'runs' / 'mlruns'}")
    experiment = client.get_experiment_by_name("eossl")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "pretrain-mlflow"
    assert found.data.params["method.name"] == "vicreg" and found.data.params["trainer.max_steps"] == "2"
    assert any(k.startswith("train/") or "loss" in k for k in found.data.metrics)


def test_loggers_must_keep_csv():
    with pytest.raises(ConfigError, match="trainer.loggers: \\['mlflow'\\] lacks csv"):
        load_config(PretrainConfig, None, overrides=["trainer.loggers=[mlflow]"])


def test_an_epoch_based_run_ends_with_one_last_checkpoint_and_lightning_prints_each_line_once(tiny_s2_scene,
                                                                                              tmp_path):
    import logging

    import lightning

    from eossl.train.pretrain import one_lightning_console

    run = tmp_path / "run"
    pretrain(_config(tiny_s2_scene, max_steps="null", epochs=2), run)
    assert sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)                   # an application that configured logging (the eossl CLI)
    try:
        logging.getLogger("lightning").addHandler(lightning._console)
        one_lightning_console()
        assert lightning._console not in logging.getLogger("lightning").handlers
    finally:
        root.removeHandler(handler)
