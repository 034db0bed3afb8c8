"""Issue 12, catalog side: radiometric scale chosen from the file (kind 1), files of another platform and band
descriptions (kind 2), STAC sidecars by any name and never-empty acquisition ids (kind 6). Tiny rasters written here."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import numpy as np
import pytest

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.scan import BandOrderConflict
from eossl.catalog.sensors import load_sensor
from eossl.cli import main
from eossl.data.reader import ChipReader

BOUNDS = (399960.0, 5799380.0, 400600.0, 5800020.0)     # the 64x64 stack at 10 m written by tiny_stack_factory
L7_DESCRIBED = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7", "QA_PIXEL"]
L7_ID = "LE07_L2SP_042034_20110616_20200822_02_T1"


def _l7_stack(seed: int = 0) -> np.ndarray:
    """(8, 64, 64) uint16 Landsat 7 C2L2 DN: SR bands 0..0.35 reflectance, ST_B6 ~ 280-300 K, QA_PIXEL codes."""
    rng = np.random.default_rng(seed)
    sr = rng.integers(7273, 20000, size=(6, 64, 64))
    st = rng.integers(38300, 44200, size=(1, 64, 64))
    qa = rng.choice([21824, 22280, 1], size=(1, 64, 64))
    return np.concatenate([sr[:5], st, sr[5:], qa]).astype(np.uint16)


def _chip(index, bands):
    return ChipReader(index, bands=bands, resampling="nearest").read(0, BOUNDS).image


# ====================================================================== kind 1: radiometric scale


def test_float_reflectance_with_a_dn_sensor_is_stored_with_scale_1(tiny_stack_factory, tmp_path, caplog):
    # float32 TOA reflectance 0..0.6 exported from an L1C product (DN / 10000), indexed as sentinel2-l1c (uint16 DN,
    # scale 1e-4): used to be scaled a second time into 1e-5
    data = np.random.default_rng(0).uniform(0.01, 0.6, (4, 64, 64)).astype(np.float32)
    path = tmp_path / "refl" / "S2A_L1C_export_20200615.tif"
    tiny_stack_factory(path, ["B02", "B03", "B04", "B08"], descriptions=["B02", "B03", "B04", "B08"], data=data)
    with caplog.at_level(logging.INFO, logger="eossl.catalog"):
        index = build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    assets = index.assets(0)
    assert {b: (a.scale, a.offset) for b, a in assets.items()} == {b: (1.0, 0.0) for b in ["B02", "B03", "B04", "B08"]}
    np.testing.assert_array_equal(_chip(index, ["B04", "B02"]), data[[2, 0]])
    assert "already reflectance" in caplog.text and "scale 1, offset 0" in caplog.text


def test_float_dn_values_keep_the_sensor_scale(tiny_stack_factory, tmp_path, caplog):
    dn = np.random.default_rng(1).integers(100, 5000, (3, 64, 64)).astype(np.float32)
    path = tmp_path / "dn" / "patch.tif"
    tiny_stack_factory(path, ["B02", "B03", "B04"], descriptions=["B02", "B03", "B04"], data=dn)
    with caplog.at_level(logging.INFO, logger="eossl.catalog"):
        index = build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    assert all(a.scale is None and a.offset is None for a in index.assets(0).values())
    np.testing.assert_allclose(_chip(index, ["B03"])[0], dn[1] * np.float32(1e-4), rtol=1e-6)
    assert "holds DN" in caplog.text


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_narrower_integer_dtype_is_a_named_error(tiny_stack_factory, tmp_path, dtype):
    data = np.random.default_rng(2).integers(1, 100, (2, 64, 64)).astype(dtype)
    path = tmp_path / "odd" / "rendered.tif"
    tiny_stack_factory(path, ["B02", "B03"], descriptions=["B02", "B03"], data=data)
    with pytest.raises(ValueError) as err:
        build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    msg = str(err.value)
    assert str(path.resolve()) in msg and "band B02" in msg and f"stored as {dtype}" in msg
    assert "declares uint16" in msg and "--exclude" in msg


def test_impossible_values_and_wider_integers(tiny_stack_factory, tmp_path):
    # uint16 values 30000..65000 are 3..6.5 "reflectance" with scale 1e-4: an undeclared fill or another product
    bright = tmp_path / "bright" / "scene.tif"
    tiny_stack_factory(bright, ["B02", "B03"], descriptions=["B02", "B03"],
                       data=np.random.default_rng(3).integers(30000, 65000, (2, 64, 64)).astype(np.uint16))
    with pytest.raises(ValueError, match=r"scene\.tif: band B02: uint16 values .* impossible for reflectance"
                                         r".*--sensor sentinel2-l1c.*--nodata"):
        build_index([str(bright.parent)], "sentinel2-l1c", progress=False)
    # int16 holding the same DN (a common export type) is read with the sensor scale
    wide = tmp_path / "wide" / "scene.tif"
    dn = np.random.default_rng(4).integers(1, 10000, (2, 64, 64)).astype(np.int16)
    tiny_stack_factory(wide, ["B02", "B03"], descriptions=["B02", "B03"], data=dn)
    index = build_index([str(wide.parent)], "sentinel2-l1c", progress=False)
    assert index.assets(0)["B02"].scale is None
    np.testing.assert_allclose(_chip(index, ["B02"])[0], dn[0] * np.float32(1e-4), rtol=1e-6)


# ====================================================================== kind 2: platform, descriptions, skip


def test_landsat_tm_and_etm_sensors_describe_their_bands():
    tm, etm = load_sensor("landsat5-c2l2"), load_sensor("landsat7-c2l2")
    for s in (tm, etm):
        assert s.band_names == ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7"]
        st = s.band("B6")
        assert (st.unit, st.scale, st.offset) == ("kelvin", pytest.approx(0.00341802), 149.0)
        assert (s.band("red").scale, s.band("red").offset) == (pytest.approx(2.75e-5), -0.2)
        assert s.band("swir22").wavelength_nm == 2215.0 and s.level == "L2"
    assert tm.platform == "Landsat 4/5" and etm.platform == "Landsat 7"
    assert (tm.band("nir").wavelength_nm, tm.band("ST_B6").gsd_m, etm.band("ST_B6").gsd_m) == (830.0, 120, 60)


def test_landsat_files_with_a_sentinel2_sensor_are_a_named_error(tiny_stack_factory, tmp_path):
    folder = tmp_path / "lt05"
    stem = "LT05_L2SP_042034_20110616_20200822_02_T1"
    for k, band in enumerate(["SR_B1", "SR_B2", "SR_B3"]):
        tiny_stack_factory(folder / f"{stem}_{band}.TIF", [band], seed=k,
                           data=np.full((1, 64, 64), 9000 + k, np.uint16))
    with pytest.raises(ValueError) as err:
        build_index([str(folder)], "sentinel2-l2a", progress=False)
    msg = str(err.value)
    assert f"{stem}_SR_B" in msg and "says Landsat 5 L2" in msg and "--sensor landsat5-c2l2" in msg
    index = build_index([str(folder)], "landsat5-c2l2", progress=False)        # the right sensor: indexed
    assert list(index.assets(0)) == ["SR_B1", "SR_B2", "SR_B3"]
    assert index.datetime(0) == datetime(2011, 6, 16, tzinfo=UTC)
    # a Landsat 7 stack given to the Landsat 8 sensor; and a platform found only in the tags
    l7 = tmp_path / "le07" / f"{L7_ID}_stack.tif"
    tiny_stack_factory(l7, L7_DESCRIBED, descriptions=L7_DESCRIBED, data=_l7_stack())
    with pytest.raises(ValueError, match=r"says Landsat 7 L2, but --sensor landsat8-c2l2 .*--sensor landsat7-c2l2"):
        build_index([str(l7.parent)], "landsat8-c2l2", progress=False)
    tagged = tmp_path / "tagged" / "scene.tif"
    tiny_stack_factory(tagged, ["B02", "B03"], descriptions=["B02", "B03"], tags={"SPACECRAFT_ID": "LANDSAT_7"})
    with pytest.raises(ValueError, match=r"tag SPACECRAFT_ID='LANDSAT_7' says Landsat 7.*--sensor landsat7-c2l2"):
        build_index([str(tagged.parent)], "sentinel2-l1c", progress=False)


def test_landsat7_stack_is_read_in_its_description_order(tiny_stack_factory, tmp_path):
    # USGS order puts thermal ST_B6 before SR_B7, and a QA_PIXEL layer last: the descriptions say so, the
    # sensor's stack order (used for files without descriptions) would not matter here
    path = tmp_path / "le07" / f"{L7_ID}_stack.tif"
    data = tiny_stack_factory(path, L7_DESCRIBED, descriptions=L7_DESCRIBED, data=_l7_stack())
    index = build_index([str(path.parent)], "landsat7-c2l2", progress=False)
    assets = index.assets(0)
    assert {b: a.band_index for b, a in assets.items()} == {
        "SR_B1": 1, "SR_B2": 2, "SR_B3": 3, "SR_B4": 4, "SR_B5": 5, "ST_B6": 6, "SR_B7": 7}
    assert index.datetime(0) == datetime(2011, 6, 16, tzinfo=UTC)
    chip = _chip(index, ["swir22", "lwir11"])
    np.testing.assert_array_equal(chip[0], data[6].astype(np.float32) * np.float32(2.75e-5) + np.float32(-0.2))
    np.testing.assert_array_equal(chip[1], data[5].astype(np.float32) * np.float32(0.00341802) + np.float32(149.0))


def test_descriptions_conflicting_with_band_order_are_an_error(tiny_stack_factory, tmp_path):
    path = tmp_path / "le07" / f"{L7_ID}_stack.tif"
    tiny_stack_factory(path, L7_DESCRIBED, descriptions=L7_DESCRIBED, data=_l7_stack())
    landsat8_like = ["B1", "B2", "B3", "B4", "B5", "B7", "B6", "QA:skip"]      # thermal and SWIR2 swapped
    with pytest.raises(BandOrderConflict, match=r"stack\.tif: band 6 is described as 'ST_B6' but --band-order "
                                                r"puts SR_B7 there"):
        build_index([str(path.parent)], "landsat7-c2l2", IndexOptions(band_order=landsat8_like), progress=False)
    with pytest.raises(BandOrderConflict, match=r"band 8 is described as 'QA_PIXEL' but --band-order puts SR_B7"):
        build_index([str(path.parent)], "landsat7-c2l2",
                    IndexOptions(band_order=["B1", "B2", "B3", "B4", "B5", "B6", "skip", "B7"]), progress=False)
    agreeing = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "QA:skip"]
    index = build_index([str(path.parent)], "landsat7-c2l2", IndexOptions(band_order=agreeing), progress=False)
    assert index.assets(0)["ST_B6"].band_index == 6 and index.assets(0)["SR_B7"].band_index == 7


def test_band_order_can_skip_bands(tiny_stack_factory, tmp_path):
    path = tmp_path / "plain" / f"{L7_ID}_stack.tif"
    tiny_stack_factory(path, L7_DESCRIBED, data=_l7_stack())              # no descriptions
    out = tmp_path / "idx.parquet"
    assert main(["catalog", "build", str(path.parent), "--sensor", "landsat7-c2l2", "--out", str(out),
                 "--band-order", "B1,B2,B3,B4,B5,B6,B7,QA:skip"]) == 0
    index = build_index([str(path.parent)], "landsat7-c2l2",
                        IndexOptions(band_order=["B1", "skip", "B3", "B4", "B5", "B6", "B7", "skip"]), progress=False)
    assert {b: a.band_index for b, a in index.assets(0).items()} == {
        "SR_B1": 1, "SR_B3": 3, "SR_B4": 4, "SR_B5": 5, "ST_B6": 6, "SR_B7": 7}
    with pytest.raises(ValueError, match=r"8 bands, but the band order for landsat7-c2l2 has 7 .*NAME:skip"):
        build_index([str(path.parent)], "landsat7-c2l2",
                    IndexOptions(band_order=["B1", "B2", "B3", "B4", "B5", "B6", "B7"]), progress=False)
    with pytest.raises(ValueError, match=r"'QA:drop': the only suffix is ':skip'"):
        build_index([str(path.parent)], "landsat7-c2l2",
                    IndexOptions(band_order=["B1", "B2", "B3", "B4", "B5", "B6", "B7", "QA:drop"]), progress=False)
    with pytest.raises(ValueError, match=r"sensor 'landsat7-c2l2' has no band 'B8'"):
        build_index([str(path.parent)], "landsat7-c2l2",
                    IndexOptions(band_order=["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"]), progress=False)


# ====================================================================== kind 6: sidecars, acquisition ids


def _stac_item(hrefs: list[str], when: str, platform: str | None = None) -> dict:
    props = {"datetime": when} | ({"platform": platform} if platform else {})
    return {"type": "Feature", "stac_version": "1.0.0", "id": "x", "properties": props, "geometry": None,
            "assets": {f"a{k}": {"href": h} for k, h in enumerate(hrefs)}}


def test_stac_item_by_any_name_is_matched_by_asset_href(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{band}", bands=["B02", "B05"])
    root = scene.root
    # another item in the same folder, about other files: must not be used
    (root / "aaa_other.json").write_text(json.dumps(_stac_item(["./elsewhere_B02.tif"], "2001-01-01T00:00:00Z")))
    (root / "S2B_33UUP_20200615_0_L2A.json").write_text(json.dumps(_stac_item(
        ["./scene_B02.tif", "scene_B05.tif"], "2017-01-02T03:04:05Z", platform="sentinel-2b")))
    index = build_index([str(root)], "sentinel2-l1c", IndexOptions(datetime_sources=["sidecar"]), progress=False)
    assert index.datetime(0) == datetime(2017, 1, 2, 3, 4, 5, tzinfo=UTC)
    # an absolute href, and a URL whose file name is the downloaded file's, are matched too
    (root / "S2B_33UUP_20200615_0_L2A.json").unlink()
    (root / "item-abs.json").write_text(json.dumps(_stac_item([str((root / "scene_B02.tif").resolve())],
                                                              "2018-03-04T00:00:00Z")))
    index = build_index([str(root)], "sentinel2-l1c", IndexOptions(datetime_sources=["sidecar"]), progress=False)
    assert index.datetime(0) == datetime(2018, 3, 4, tzinfo=UTC)
    (root / "item-abs.json").unlink()
    (root / "item-url.json").write_text(json.dumps(_stac_item(["https://example.com/x/scene_B05.tif"],
                                                              "2019-05-06T00:00:00Z")))
    index = build_index([str(root)], "sentinel2-l1c", IndexOptions(datetime_sources=["sidecar"]), progress=False)
    assert index.datetime(0) == datetime(2019, 5, 6, tzinfo=UTC)
    # the item's platform is checked against the sensor
    (root / "item-url.json").write_text(json.dumps(_stac_item(["./scene_B02.tif"], "2019-05-06T00:00:00Z",
                                                              platform="landsat-5")))
    with pytest.raises(ValueError, match=r"sidecar 'item-url\.json' platform 'landsat-5' says Landsat 5.*"
                                         r"--sensor landsat5-c2l2"):
        build_index([str(root)], "sentinel2-l1c", progress=False)


def test_acquisition_id_is_never_empty(tiny_scene_factory, tmp_path, caplog):
    # band files named only by their band, directly in the root: the id is the folder's name, never ''
    scene = tiny_scene_factory(tmp_path / "T33UUP_2020", name="{band}", bands=["B02", "B05"])
    with caplog.at_level(logging.INFO, logger="eossl.catalog"):
        index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.ids == ["T33UUP_2020"]
    assert "acquisition ''" not in caplog.text
    stack = tmp_path / "one" / "B02.tif"
    stack.parent.mkdir()
    (scene.root / "B02.tif").rename(stack)
    index = build_index([str(stack)], "sentinel2-l1c", progress=False)        # a single file given as the root
    assert index.ids == ["one"] and index.ids[0]


def test_an_unreadable_remote_href_points_at_the_network_not_at_exclude():
    from eossl.catalog.integrity import exclude_hint, unreadable

    remote = unreadable("https://example.org/S2A_T31UFS_B04.tif", "HTTP response code: 503")
    assert "network" in remote and "AWS_NO_SIGN_REQUEST" in remote and "--exclude" not in remote
    local = unreadable("/data/S2A_T31UFS_B04.tif", "short read")
    assert "--exclude 'S2A_T31UFS_B04.tif'" in local and "re-download" in local
    assert "--exclude" in exclude_hint("/data/x.tif") and "--exclude" not in exclude_hint("s3://bucket/x.tif")
