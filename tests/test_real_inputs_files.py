"""Issue 12, kinds 7, 6 (quality masks) and 1 (physical range of chips), on small rasters written here.

* truncated / corrupt / 300-byte files stop `catalog build` with one message naming the file and the fix
  (``--quick`` skips the block read, never the header check);
* a file that breaks after indexing fails inside a data-loader worker as one line naming the file and the band;
* SCL and QA_PIXEL masks beside the bands make cloud, shadow, cirrus and no-data pixels invalid;
* chips far too small (scaled twice), raw DN, or implausible temperatures are refused before use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import TINY_CRS, TINY_ORIGIN, tiny_pretrain_config, write_geotiff
from rasterio.transform import from_origin
from torch.utils.data import DataLoader

from eossl.catalog import quality
from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import open_index
from eossl.cli import main
from eossl.data.chips.dataset import ChipDataset, collate
from eossl.data.chips.samplers import GridWindowSampler
from eossl.data.radiometry import check_radiometry
from eossl.data.reader import ChipReader
from eossl.data.sources import ReadError

STEM = "T33UUP_20200615T101031"
COG_SIZE = 512               # px at 10 m, 256 px tiles: 2 x 2 full-resolution blocks plus an overview


def _cog_scene(root: Path, bands=("B02", "B03", "B04"), seed: int = 0) -> dict[str, Path]:
    """One tiled, deflate-compressed COG per band (values 1..9999, no nodata), ``{band: path}``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for band in bands:
        path = root / f"{STEM}_{band}.tif"
        with rasterio.open(path, "w", driver="COG", width=COG_SIZE, height=COG_SIZE, count=1, dtype="uint16",
                           crs=TINY_CRS, transform=from_origin(*TINY_ORIGIN, 10, 10), blocksize=256,
                           compress="deflate") as ds:
            ds.write(rng.integers(1, 10000, (1, COG_SIZE, COG_SIZE)).astype("uint16"))
        paths[band] = path
    return paths


def _cut(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def _corrupt_last_block(path: Path) -> None:
    """Overwrite the middle of the bottom-right full-resolution tile with noise (file size unchanged)."""
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 100: offset + 5000] = np.random.default_rng(1).integers(0, 256, 4900, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _build(root: Path, sensor: str = "sentinel2-l2a", **options):
    return build_index([str(root)], sensor, IndexOptions(**options), progress=False)


# ------------------------------------------------------------------------------------- kind 7: catalog build


@pytest.mark.parametrize("quick", [False, True])
def test_truncated_cog_stops_catalog_build_naming_file_and_fix(tmp_path, quick):
    paths = _cog_scene(tmp_path / "s")
    _cut(paths["B03"], 0.7)
    with pytest.raises(ValueError) as err:
        _build(tmp_path / "s", quick=quick)      # the header check needs no pixel read: --quick finds it too
    msg = str(err.value)
    assert str(paths["B03"]) in msg and "truncated" in msg and "\n" not in msg
    assert f"--exclude '{STEM}_B03.tif'" in msg and "re-download" in msg
    # the hint works as written: the other bands index
    index = _build(tmp_path / "s", exclude=(f"{STEM}_B03.tif",))
    assert list(index.assets(0)) == ["B02", "B04"] and index.frame["valid_fraction"].iloc[0] == 1.0


def test_block_read_finds_corrupt_tiles_and_quick_skips_it(tmp_path):
    paths = _cog_scene(tmp_path / "s")
    _corrupt_last_block(paths["B04"])
    with pytest.raises(ValueError, match=r"B04\.tif: the file is unreadable: truncated or corrupt \(reading its "
                                         r"last block failed.*re-download.*--exclude"):
        _build(tmp_path / "s")
    # --quick reads no full-resolution block: the intact overview gives a clean coarse mask ...
    index = _build(tmp_path / "s", quick=True)
    assert index.frame["valid_fraction"].iloc[0] == 1.0
    # ... and the broken tile surfaces at read time, naming file, band and fix
    reader = ChipReader(index, bands=["B02", "B04"])
    corner = (TINY_ORIGIN[0] + 4000, TINY_ORIGIN[1] - 5120, TINY_ORIGIN[0] + 5120, TINY_ORIGIN[1] - 4000)
    with pytest.raises(ReadError) as err:
        reader.read(0, corner)
    msg = str(err.value)
    assert msg.startswith(f"{paths['B04']} (band B04 of acquisition '{STEM}')") and "re-download" in msg
    reader.read(0, (TINY_ORIGIN[0], TINY_ORIGIN[1] - 640, TINY_ORIGIN[0] + 640, TINY_ORIGIN[1]))  # intact tile


@pytest.mark.parametrize("quick", [False, True])
def test_300_byte_file_is_unreadable_not_missing_a_crs(tmp_path, tiny_scene_factory, quick):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02", "B03"])
    _cut(scene.file("B03"), 300)          # a striped GeoTIFF cut here still opens, without georeferencing
    with pytest.raises(ValueError) as err:
        _build(scene.root, "sentinel2-l1c", quick=quick)
    msg = str(err.value)
    assert str(scene.file("B03").resolve()) in msg and "unreadable" in msg and "no CRS" not in msg
    assert "--exclude" in msg


def test_intact_file_without_crs_still_says_no_crs(tmp_path):
    write_geotiff(tmp_path / "s" / f"{STEM}_B02.tif", np.ones((32, 32), "uint16"), 10, crs=None)
    with pytest.raises(ValueError, match=r"the file has no CRS; assign one"):
        _build(tmp_path / "s", "sentinel2-l1c")


def test_several_unreadable_files_are_listed_together(tmp_path):
    paths = _cog_scene(tmp_path / "s")
    _cut(paths["B02"], 0.6)
    _cut(paths["B04"], 0.6)
    with pytest.raises(ValueError, match=r"^2 files are unreadable or truncated.*--exclude GLOB") as err:
        _build(tmp_path / "s")
    assert str(paths["B02"]) in str(err.value) and str(paths["B04"]) in str(err.value)


# ----------------------------------------------------------------------------- kind 7: data-loader workers


def _broken_after_indexing(tmp_path):
    paths = _cog_scene(tmp_path / "s")
    index = _build(tmp_path / "s")
    index.save(tmp_path / "index.parquet")
    _corrupt_last_block(paths["B04"])      # e.g. the file was overwritten by a failed copy after indexing
    return paths["B04"], tmp_path / "index.parquet"


def test_reader_error_in_a_worker_is_one_line_naming_file_and_band(tmp_path):
    path, index_path = _broken_after_indexing(tmp_path)
    index = open_index(index_path)
    reader = ChipReader(index, bands=["B02", "B04"])
    windows = list(GridWindowSampler(index, size=128, min_valid_fraction=0.0))
    loader = DataLoader(ChipDataset(reader), batch_size=4, sampler=windows, num_workers=1, collate_fn=collate)
    with pytest.raises(ReadError) as err:
        for _ in loader:
            pass
    msg = str(err.value)
    assert "\n" not in msg and "Caught" not in msg and "Traceback" not in msg
    assert msg.startswith(f"{path} (band B04 of acquisition '{STEM}'): the file is unreadable")
    assert "re-download" in msg and "--exclude" in msg
    assert any("DataLoader worker" in note and "ZIPDecode" in note for note in err.value.__notes__)  # for -v


def test_cli_prints_a_worker_read_error_as_one_line(tmp_path, capsys):
    path, index_path = _broken_after_indexing(tmp_path)
    code = main(["cache", "--index", str(index_path), "--out", str(tmp_path / "cache"), "--workers", "1",
                 "--set", "sampler.kind=grid", "--set", "sampler.chip_size=128"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    line = err[err.index("eossl cache: error: "):]   # after the (unfinished) progress bar
    assert "\n" not in line
    assert str(path) in line and "band B04" in line and "re-download" in line


# ----------------------------------------------------------------------------------- kind 6: quality masks


def test_usable_codes_of_each_mask_kind():
    scl = np.arange(12)
    assert quality.usable("scl", scl).tolist() == [c not in (0, 1, 3, 8, 9, 10) for c in range(12)]
    clear = 21824                              # Landsat 8 QA_PIXEL: clear, low cloud/shadow/snow/cirrus confidence
    qa = np.array([clear, clear | 1, clear | 2, clear | 4, clear | 8, clear | 16, clear | 32, clear | 128])
    assert quality.usable("qa_pixel", qa).tolist() == [True, False, False, False, False, False, True, True]
    fmask = np.array([0, 1, 2, 4, 8, 16, 32, 64, 255])  # HLS: cirrus, cloud, adjacent, shadow | snow, water, aerosol
    assert quality.usable("fmask", fmask).tolist() == [True, False, False, False, False, True, True, True, False]
    assert quality.kind_of_name("T33UUP_20200615T101031_SCL_20m") == ("scl", ["T33UUP", "20200615T101031"])
    assert quality.kind_of_name("HLS.S30.T18TUL.2020273T155621.v2.0.Fmask")[0] == "fmask"


def _scl_codes() -> np.ndarray:
    """60 x 60 SCL at 20 m: vegetation, cloud (high), shadow, snow, cirrus in 12-column stripes; top 6 rows no data."""
    codes = np.repeat(np.array([4, 9, 3, 11, 10], dtype="uint8"), 12)[None, :].repeat(60, axis=0)
    codes[:6] = 0
    return codes


def test_scl_beside_the_bands_marks_clouds_invalid(tmp_path, tiny_scene_factory):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02", "B03", "B04"])
    codes = _scl_codes()
    write_geotiff(scene.root / f"{STEM}_SCL_20m.tif", codes, 20)
    index = _build(scene.root)
    qa = index.quality_mask(0)
    assert qa.mask_kind == "scl" and qa.path.endswith(f"{STEM}_SCL_20m.tif")
    assert list(index.assets(0)) == ["B02", "B03", "B04"]                   # the mask is not a band
    usable = np.isin(codes, [4, 11]).repeat(2, axis=0).repeat(2, axis=1)  # onto the 10 m grid
    np.testing.assert_array_equal(index.valid_mask(0), usable)              # coarse mask: 120 x 120 at 10 m
    assert index.frame["valid_fraction"].iloc[0] == pytest.approx(usable.mean())
    chip = ChipReader(index, allow_empty=True).read(0, scene.bounds)
    np.testing.assert_array_equal(chip.mask, usable)
    assert not chip.image[:, ~usable].any() and chip.image[:, usable].all()


def test_no_cloud_mask_flag_ignores_the_scl(tmp_path, tiny_scene_factory):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02", "B03", "B04"])
    write_geotiff(scene.root / f"{STEM}_SCL_20m.tif", _scl_codes(), 20)
    out = tmp_path / "index.parquet"
    assert main(["catalog", "build", str(scene.root), "--sensor", "sentinel2-l2a", "--out", str(out),
                 "--quick", "--no-cloud-mask"]) == 0
    index = open_index(out)
    assert index.quality_mask(0) is None and index.frame["valid_fraction"].iloc[0] == 1.0
    assert ChipReader(index).read(0, scene.bounds).mask.all()


def test_landsat_qa_pixel_bits_mark_pixels_invalid(tmp_path, tiny_stack_factory):
    stem = "LC08_L2SP_042034_20170616_20200903_02_T1"
    clear = 21824
    flags = [clear, clear | 1, clear | 2, clear | 4, clear | 8, clear | 16, clear | 32, clear | 128]
    qa = np.repeat(np.array(flags, dtype="uint16"), 8)[None, None, :].repeat(64, axis=1)   # 8-column stripes
    for band in ("SR_B2", "SR_B3", "SR_B4"):
        tiny_stack_factory(tmp_path / "ls" / f"{stem}_{band}.TIF", [band], seed=1)
    tiny_stack_factory(tmp_path / "ls" / f"{stem}_QA_PIXEL.TIF", ["QA"], data=qa)
    index = _build(tmp_path / "ls", "landsat8-c2l2")
    assert index.quality_mask(0).mask_kind == "qa_pixel"
    chip = ChipReader(index, allow_empty=True).read(0, (399960.0, 5799380.0, 400600.0, 5800020.0))
    expected = np.repeat([True, False, False, False, False, False, True, True], 8)[None, :].repeat(64, axis=0)
    np.testing.assert_array_equal(chip.mask, expected)       # fill, dilated, cirrus, cloud, shadow out; snow, water in


# ----------------------------------------------------------------------------- kind 1: physical range of chips

S2A = ["B02", "B03", "B04", "B08", "B11"]


def _reflectance(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.02, 0.4, (n, len(S2A), 16, 16)).astype(np.float32)


def test_plausible_reflectance_passes():
    stats = check_radiometry(_reflectance(), None, S2A, "sentinel2-l2a", "chips")
    assert set(stats) == set(S2A) and all(0.15 < m < 0.26 for m, _ in stats.values())


def test_chips_scaled_twice_are_refused_naming_bands_and_cause():
    images = _reflectance() * 1e-4             # float reflectance scaled again by the DN scale
    valid = np.ones((8, 16, 16), bool)
    with pytest.raises(ValueError, match=r"^toy chips: reflectance medians B02 \(.*B11 .*scaled twice.*"
                                         r"scale 0\.0001.*--sensor"):
        check_radiometry(images, valid, S2A, "sentinel2-l2a", "toy chips")


def test_raw_dn_chips_are_refused():
    with pytest.raises(ValueError, match=r"look like raw DN: the sensor's scale 0\.0001 was not applied"):
        check_radiometry(_reflectance() * 1e4, None, S2A, "sentinel2-l2a", "chips")


def test_one_implausible_band_is_named():
    images = _reflectance()
    images[:, 3] = 30.0                                         # B08 holds something else (a QA or thermal band)
    with pytest.raises(ValueError, match=r"band\(s\) B08 \(30\) have medians above 1\.5.*--band-order"):
        check_radiometry(images, None, S2A, "sentinel2-l2a", "chips")
    images = _reflectance() - 0.3                                # an offset the data does not have
    with pytest.raises(ValueError, match=r"negative medians.*sentinel2-l2a-pb04"):
        check_radiometry(images, None, S2A, "sentinel2-l2a", "chips")


def test_thermal_band_outside_kelvin_range_is_refused():
    images = np.concatenate([_reflectance()[:, :1], np.full((8, 1, 16, 16), 0.3, np.float32)], axis=1)
    with pytest.raises(ValueError, match=r"thermal band\(s\) ST_B10 \(median 0\.3\) are not brightness temp"):
        check_radiometry(images, None, ["SR_B2", "ST_B10"], "landsat8-c2l2", "chips")
    images[:, 1] = 295.0
    check_radiometry(images, None, ["SR_B2", "ST_B10"], "landsat8-c2l2", "chips")


def test_invalid_pixels_are_left_out_of_the_statistics():
    images = _reflectance()
    valid = np.ones((8, 16, 16), bool)
    images[:, :, :12] = 0.0                                     # reader fills invalid pixels with 0
    valid[:, :12] = False
    check_radiometry(images, valid, S2A, "sentinel2-l2a", "chips")
    with pytest.raises(ValueError, match="scaled twice"):
        check_radiometry(images, None, S2A, "sentinel2-l2a", "chips")


def test_evaluation_refuses_chips_scaled_twice():
    from eossl.data.labelled.folders import LabelledChips
    from eossl.evaluate.config import EvaluateConfig
    from eossl.evaluate.patches import evaluate_chips

    labels = np.repeat(np.arange(2), 6)
    images = np.random.default_rng(0).uniform(0.02, 0.4, (12, 4, 16, 16)).astype(np.float32) * 1e-4
    chips = LabelledChips(images=images, mask=np.ones((12, 16, 16), bool), labels=labels, classes=["a", "b"],
                          bands=["B02", "B03", "B04", "B08"], paths=[f"c{i}" for i in range(12)],
                          sensor="sentinel2-l1c")
    with pytest.raises(ValueError, match=r"^evaluation chips: .*scaled twice"):
        evaluate_chips(chips, EvaluateConfig(ks=[2], seeds=1, baselines=["band_statistics"]),
                       progress=False)


def test_pretraining_refuses_chips_in_wrong_units(tmp_path, tiny_scene_factory):
    from eossl.train.pretrain import prepare_corpus

    scene = tiny_scene_factory(tmp_path / "s")
    sensor = tmp_path / "s2_scaled_twice.yaml"
    sensor.write_text("name: s2-scaled-twice\nextends: sentinel2-l1c\nscale: 1.0e-8\n")
    cfg = tiny_pretrain_config(scene.root)
    cfg.corpus.sensor = str(sensor)
    cfg.corpus.sampler.min_valid_fraction = 0.0
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match=r"^pretraining chips of .*: reflectance medians B01 .*B12 .*scaled twice"):
        prepare_corpus(cfg, tmp_path / "run")
