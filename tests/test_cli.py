"""End-to-end command line: catalog build/show, sensors, cache, views, the lazy parser, --help of every command
without torch, and errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from eossl.cli import build_parser, main
from eossl.commands import modules
from eossl.data.chips.cache import CachedChipDataset

COMMANDS = modules()


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys; from eossl.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout
    assert out.stdout.strip().endswith("NO-TORCH")
    version = subprocess.run([sys.executable, "-m", "eossl", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("eossl ")


def test_every_command_has_a_full_parser_with_its_registered_help():
    parser = build_parser("*")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert helps == {name: mod.HELP for name, mod in COMMANDS.items()}
    for name, p in sub.choices.items():     # a full parser: its own options and the module's cli
        assert p.get_default("func") is COMMANDS[name].cli, name


_HELP = ("import sys\nfrom eossl.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n"
         "    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")


@pytest.mark.parametrize("command", [*COMMANDS, "catalog build"])
def test_help_of_every_command_starts_without_torch(command):
    """The command modules and the config modules import types only: --help loads no torch (the time and memory
    it takes are measured by benchmarks/bench_cli_startup.py)."""
    out = subprocess.run([sys.executable, "-c", _HELP, *command.split()], capture_output=True, text=True, check=True)
    assert "usage: eossl" in out.stdout and out.stdout.strip().endswith("NO-TORCH"), out.stdout[-500:]


@pytest.mark.parametrize("module", ["eossl.train.config", "eossl.evaluate.config", "eossl.data.chips.config",
                                    "eossl.data.series.config", "eossl.data.labelled.config",
                                    "eossl.predict.config", "eossl.catalog.config", "eossl.pipeline.spec"])
def test_config_modules_import_no_heavy_library(module):
    code = (f"import sys, {module}\n"
            "print(sorted(m for m in ('torch', 'lightning', 'timm', 'kornia') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_catalog_build_show_and_cache(s2_root, tmp_path, capsys):
    out = tmp_path / "idx.parquet"
    assert main(["catalog", "build", s2_root, "--sensor", "sentinel2-l1c", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "acquisitions: 1" in text and "EPSG:32618" in text and out.exists()
    assert main(["catalog", "build", s2_root, "--sensor", "sentinel2-l1c", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["catalog", "show", str(out)]) == 0
    assert "13" in capsys.readouterr().out
    assert main(["cache", "--index", str(out), "--set", "sampler.num_samples=20", "--set", "sampler.chip_size=16",
                 "--out", str(tmp_path / "c"), "--dry-run"]) == 0
    assert "num_samples: 20" in capsys.readouterr().out and not (tmp_path / "c").exists()
    assert main(["cache", "--index", str(out), "--set", "sampler.num_samples=20", "--set", "sampler.chip_size=16",
                 "--set", "bands=[B04,B03,B02]", "--out", str(tmp_path / "c")]) == 0
    assert len(CachedChipDataset(tmp_path / "c")) == 20


@pytest.mark.parametrize("argv, message", [
    (["catalog", "build", "/nonexistent/folder", "--sensor", "sentinel2-l1c", "--out", "x.parquet"],
     "catalog root does not exist: /nonexistent/folder"),
    (["catalog", "build", ".", "--sensor", "sentinel9", "--out", "x.parquet"], "unknown sensor 'sentinel9'"),
    (["catalog", "show", "/nonexistent/index.parquet"], "scene index not found"),
    (["sensors", "modis"], "known sensors: hls-l30"),
    (["cache", "--index", "i.parquet", "--set", "sampler.sise=3", "--out", "c"], "sampler.sise: unknown key"),
])
def test_errors_are_one_clear_line_with_exit_code_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sensors_table(capsys):
    assert main(["sensors", "sentinel2-l1c"]) == 0
    text = capsys.readouterr().out
    assert "B8A" in text and "864.7" in text and "nir08" in text


def test_views_png_is_a_real_image_and_never_overwritten(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    out = tmp_path / "views.png"
    assert main(["views", "--out", str(out), "-n", "2", "--chip-size", "32", "--seed", "3"]) == 0
    image = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    assert image.shape[0] > 200 and image.shape[1] > 600  # 2 rows x 6 panels
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["chips"] == 2 and len(meta["bands"]) == 13 and meta["spec"]["n_views"] == 2
    assert main(["views", "--out", str(out), "-n", "2"]) == 2
    assert "never overwritten" in capsys.readouterr().err


def test_views_config_errors(tmp_path, capsys):
    bad = tmp_path / "views.yaml"
    bad.write_text("ops:\n  - name: hue_jitter\n")
    assert main(["views", "--config", str(bad), "--out", str(tmp_path / "v.png")]) == 2
    err = capsys.readouterr().err
    assert "views.ops[0].name" in err and "band_dropout" in err
    assert main(["views", "--set", "n_views=two", "--dry-run"]) == 2
    assert "views.n_views" in capsys.readouterr().err
    assert main(["views", "--preset", "mae", "--dry-run"]) == 0
    assert "resized_crop" in capsys.readouterr().out


def test_a_method_parameter_typo_fails_at_load_time_before_any_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["pretrain", "--runs", str(runs), "--set", "method.params.proj_dmi=5"]
    assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "method.params.proj_dmi: unknown parameter of vicreg; allowed: proj_dim, sim_coeff" in err
    assert main(argv) == 2 and not runs.exists()          # without --dry-run too: nothing written
    assert main(["pretrain", "--set", "method.name=simsiam", "--set", "method.params={pred_hidden: 64}",
                 "--dry-run"]) == 0
    assert "pred_hidden: 64" in capsys.readouterr().out


def test_pretrain_tells_a_series_config_from_the_parsed_config(capsys):
    from eossl.train.config import PretrainConfig, SeriesPretrainConfig, pretraining_config

    assert isinstance(pretraining_config(None, ["corpus.sampler.kind=grid"]), PretrainConfig)
    series = pretraining_config(None, ["corpus.sampler.kind=pixel_series", "corpus.sampler.n_pixels=60"])
    assert isinstance(series, SeriesPretrainConfig) and series.corpus.sampler.n_pixels == 60
    assert main(["pretrain", "--set", "corpus.sampler.kind=pixel_series", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "temporal pretraining" in out and "n_pixels: 20000" in out


def test_a_bbox_west_of_greenwich_is_read_as_a_value_not_an_option():
    from eossl.cli import _join_negative_lists, build_parser

    argv = _join_negative_lists(["catalog", "search", "https://example.org/stac", "--bbox",
                                 "-11.5,24.5,-11.4,24.6", "--collection", "sentinel-2-l2a", "--out", "i.parquet"])
    args = build_parser("catalog").parse_args(argv)
    assert args.bbox == "-11.5,24.5,-11.4,24.6" and args.collection == ["sentinel-2-l2a"]
    assert _join_negative_lists(["run", "--set", "seed=-1", "--x", "-3"]) == ["run", "--set", "seed=-1", "--x", "-3"]


def test_a_misspelt_torchgeo_dataset_is_caught_by_dry_run_and_leaves_no_run_directory(tmp_path, capsys):
    code = main(["evaluate", "--set", "data.torchgeo=EuroSat", "--set", f"data.root={tmp_path}",
                 "--runs", str(tmp_path / "runs"), "--dry-run"])
    err = capsys.readouterr().err
    assert code != 0 and "did you mean EuroSAT?" in err
    assert not (tmp_path / "runs").exists()
