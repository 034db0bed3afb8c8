"""The crop-type map of a scene stack (issue 25, point 5): its model is the stack evaluation's row fitted as the
evaluation fits it, the map is an integer COG with a colour table, legend codes and class names, its confidence
lies in [0, 1], outputs are never overwritten by accident, and the map read back from disk scores on a split's
test parcels exactly what the evaluation reports for that row, seed and k (tests/parcel_stack_data.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import yaml
from parcel_stack_data import LAYOUT, label_codes, write_parcel_stack

from eossl.config import load_config
from eossl.evaluate.config import EvaluateConfig
from eossl.predict.config import StackFitConfig, StackMapConfig
from eossl.predict.stack_fit import fit_map_model
from eossl.predict.stack_map import class_colors, confidence_path, predict_stack_map
from eossl.predict.stack_run import map_stack, score_written_map

SETTINGS = {"task": "stack", "ks": [5, 10], "seeds": 2,
            "stack": {"stacks": [], "period": "month", "rows": ["raw", "pca"], "pca_components": 8,
                      "resamples": 20}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # small fits: one thread is faster


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cropmap")
    folder = write_parcel_stack(root / "parcels")
    data = json.loads(json.dumps(SETTINGS))
    data["stack"]["stacks"] = [{"path": str(folder), "variable": "CT"}]
    (root / "eval.yaml").write_text(yaml.safe_dump(data))
    return root, folder


@pytest.fixture(scope="module")
def evaluation(setup):
    from eossl.evaluate.runs import run_evaluate

    root, _ = setup
    (root / "evaluate").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_evaluate(load_config(EvaluateConfig, root / "eval.yaml"), root / "evaluate", progress=False)
    return json.loads((root / "evaluate" / "metrics.json").read_text())


def _fit(root, name, *sets):
    cfg = load_config(StackFitConfig, root / "eval.yaml", overrides=list(sets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_map_model(cfg, root / name)


@pytest.fixture(scope="module")
def full_model(setup):
    root, folder = setup
    return _fit(root, "fit_all")


def _per_seed(metrics: dict, model: str, k: str, seed: int) -> dict:
    row = next(r for r in metrics["results"] if r["model"] == model and r["k"] == k)
    return next(s for s in row["per_seed"] if s["seed"] == seed)


@pytest.mark.parametrize("row,seed,k", [("raw", 0, "5"), ("pca", 1, "10")])
def test_the_maps_scores_on_the_test_parcels_equal_the_evaluations(setup, evaluation, row, seed, k, tmp_path):
    root, folder = setup
    rec = _fit(root, f"fit_{row}_{seed}_{k}", "fit_on=split", f"split_seed={seed}", f"k={k}", f"row={row}")
    assert rec["row"] == row and rec["split"]["seed"] == seed and rec["split"]["k"] == k
    outputs = map_stack(StackMapConfig(model=rec["model_dir"], stack=str(folder), out="map.tif"), tmp_path,
                        quick_look=False)
    got = score_written_map(outputs["map"], json.loads((root / f"fit_{row}_{seed}_{k}" / "model" / "fit.json")
                                                       .read_text()))
    want = _per_seed(evaluation, rec["model"], k, seed)
    for score in ("macro_f1", "overall_accuracy", "kappa"):
        assert got[score] == want[score], score                          # one code path: exactly equal
    assert json.loads((tmp_path / "map_scores.json").read_text())["macro_f1"] == want["macro_f1"]
    assert 0 < want["macro_f1"] < 1 or row == "pca"                       # not a trivially perfect split


def test_the_map_model_is_the_headline_row_fitted_on_every_parcel_pixel(full_model, evaluation):
    head = evaluation["settings"]["headline_row"]
    assert (full_model["model"], full_model["protocol"]) == (head["model"], head["protocol"])
    parcels = sum(len(slots) for slots in LAYOUT.values()) * 25             # 5 x 5 px parcels; the sliver is none
    assert full_model["n_train"] == parcels and full_model["codes"] == sorted(LAYOUT)


def test_the_map_is_an_integer_cog_with_legend_codes_colours_names_and_a_confidence(setup, full_model, tmp_path):
    _, folder = setup
    out = tmp_path / "map.tif"
    res = predict_stack_map(full_model["model_dir"], folder, out)
    codes = sorted(LAYOUT)
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint16" and ds.count == 1 and (ds.width, ds.height) == label_codes().shape[::-1]
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" or ds.profile.get("tiled")
        cmap, tags, arr = ds.colormap(1), ds.tags(), ds.read(1)
        assert ds.nodata == 0
    assert set(np.unique(arr).tolist()) <= set(codes) and np.array_equal(arr, res.codes)
    assert json.loads(tags["codes"]) == codes
    assert json.loads(tags["classes"]) == ["early crop", "late crop", "grass", "beet"]
    assert [list(cmap[c][:3]) for c in codes] == class_colors(len(codes))
    with rasterio.open(confidence_path(out)) as ds:
        conf = ds.read(1)
        assert ds.dtypes[0] == "float32"
    assert np.nanmin(conf) >= 1 / len(codes) - 1e-6 and np.nanmax(conf) <= 1
    assert not list(tmp_path.glob(".*"))                                   # no temporary file left behind


def test_an_existing_map_is_not_overwritten_without_overwrite(setup, full_model, tmp_path):
    _, folder = setup
    out = tmp_path / "map.tif"
    predict_stack_map(full_model["model_dir"], folder, out)
    before = out.read_bytes()
    confidence_path(out).unlink()
    with pytest.raises(ValueError, match="exists; choose another --out, or pass --overwrite"):
        predict_stack_map(full_model["model_dir"], folder, out)
    assert out.read_bytes() == before and not confidence_path(out).exists()
    predict_stack_map(full_model["model_dir"], folder, out, overwrite=True)
    assert confidence_path(out).exists()


def test_the_cli_fits_a_map_model_and_maps_the_stack(setup, tmp_path, monkeypatch):
    from eossl.cli import main

    root, folder = setup
    monkeypatch.chdir(tmp_path)
    assert main(["finetune", "--config", str(root / "eval.yaml"), "--set", "stack.rows=[raw]", "--runs", "runs",
                 "--no-progress"]) == 0
    model = next((tmp_path / "runs").glob("finetune-*/model"))
    assert main(["predict", "--model", str(model), "--stack", str(folder), "--out", "m/map.tif"]) == 0
    assert (tmp_path / "m" / "map.tif").is_file() and (tmp_path / "m" / "map_preview.png").is_file()
    assert main(["predict", "--model", str(model), "--stack", str(folder), "--out", "m/map.tif"]) != 0
    assert main(["predict", "--model", str(model), "--stack", str(folder), "--out", "m/map.tif", "--overwrite"]) == 0


def _blank_corner(folder, out):
    """A copy of the stack whose top-left 2 x 2 px (one 20 m pixel) hold the fill value in every band and date."""
    import shutil

    import xarray as xr

    shutil.copytree(folder, out)
    for name, n in (("S2_L2A_10m_p.nc", 2), ("S2_L2A_20m_p.nc", 1)):
        ds = xr.open_dataset(out / name, decode_cf=False, engine="h5netcdf").load()
        ds.close()
        for v in ds.data_vars:
            if ds[v].ndim == 3 and v != "SCL":
                ds[v].values[:, :n, :n] = 0
        ds.to_netcdf(out / "new.nc", engine="h5netcdf")
        (out / "new.nc").replace(out / name)
    return out


def test_pixels_never_valid_are_nodata(setup, full_model, tmp_path):
    _, folder = setup
    res = predict_stack_map(full_model["model_dir"], _blank_corner(folder, tmp_path / "holes"), tmp_path / "m.tif")
    assert (res.codes[:2, :2] == res.nodata).all() and np.isnan(res.confidence[:2, :2]).all()
    assert (res.codes[2:] != res.nodata).all() and not np.isnan(res.confidence[2:]).any()
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert (ds.read(1, masked=True).mask[:2, :2]).all()
