"""Issue 12, kinds 3 and 4: geographic CRSs are never taken for metres, outputs are sized before they are made,
and label files without a CRS are an error unless ``label_crs`` says what they are in.

The EPSG:4326 scene is a UTM "truth" raster (100 m blocks, EPSG:32633 near 15 E, 45 N) warped to 0.0001 degree
pixels; what is read back on the local UTM grid must match the truth.
"""

from __future__ import annotations

import logging
import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from conftest import MeanBands
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import Point

from eossl.catalog.build import IndexOptions, build_index
from eossl.config import from_dict, load_config
from eossl.data.chips.config import SamplerConfig
from eossl.data.chips.samplers import GridWindowSampler
from eossl.data.labelled.points import LabelWindowSampler, read_labels
from eossl.data.labelled.rasters import load_segmentation_chips
from eossl.data.reader import ChipReader
from eossl.evaluate.config import FieldsConfig, LabelledDataConfig, SegmentationConfig
from eossl.geo import ground_res_m, scene_gsd_m, utm_crs_for, working_crs
from eossl.models.classifier import Classifier, ClassifierInfo
from eossl.predict.config import PredictConfig
from eossl.predict.maps import predict_map, prediction_grid

BANDS = ["B02", "B03", "B04", "B08"]
UTM = "EPSG:32633"
UTM_ORIGIN = (500000.0, 5000000.0)   # top-left; about 15.0 E, 45.1 N
N = 60                               # truth raster side, px at 10 m
DEG = 0.0001                         # pixel of the EPSG:4326 scene


def _truth() -> np.ndarray:
    """(4, N, N) uint16: 100 m blocks, B08 either 2000 or 8000 (reflectance 0.2 / 0.8), other bands 3000."""
    blocks = np.random.default_rng(0).choice([2000, 8000], size=(N // 10, N // 10))
    data = np.full((4, N, N), 3000, dtype="uint16")
    data[3] = np.kron(blocks, np.ones((10, 10), dtype=int)).astype("uint16")
    return data


def _write(path, data, crs, transform, nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(data),
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
        ds.descriptions = tuple(BANDS)
    return path


@pytest.fixture
def scenes(tmp_path):
    """(UTM truth file, EPSG:4326 file): the same ground, the second warped to 0.0001 degree pixels."""
    truth = _truth()
    (tmp_path / "utm").mkdir()
    utm_path = _write(tmp_path / "utm" / "truth.tif", truth, UTM, from_origin(*UTM_ORIGIN, 10, 10))
    with rasterio.open(utm_path) as ds:
        west, south, east, north = transform_bounds(UTM, "EPSG:4326", *ds.bounds)
    w, h = math.ceil((east - west) / DEG), math.ceil((north - south) / DEG)
    geo = np.zeros((4, h, w), dtype="uint16")
    transform = from_origin(west, north, DEG, DEG)
    for b in range(4):
        reproject(truth[b], geo[b], src_transform=from_origin(*UTM_ORIGIN, 10, 10), src_crs=UTM, src_nodata=0,
                  dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=0, resampling=Resampling.nearest)
    (tmp_path / "geo").mkdir()
    geo_path = _write(tmp_path / "geo" / "scene.tif", geo, "EPSG:4326", transform)
    return utm_path, geo_path


def _index(path):
    return build_index([str(path)], "sentinel2-l1c", IndexOptions(band_order=BANDS), progress=False)


# ------------------------------------------------------------------------------------------ GSD in metres


def test_gsd_of_a_geographic_scene_is_in_metres(scenes):
    utm_index, geo_index = _index(scenes[0]), _index(scenes[1])
    assert utm_index.res(0) == 10.0 and scene_gsd_m(utm_index, 0) == 10.0
    assert geo_index.res(0) == pytest.approx(DEG)          # the index keeps CRS units ...
    lat = (geo_index.bounds(0)[1] + geo_index.bounds(0)[3]) / 2
    dx = DEG * math.pi / 180 * 6378137.0 * math.cos(math.radians(lat))    # spherical, good to ~0.5 %
    dy = DEG * 111_132.0
    assert scene_gsd_m(geo_index, 0) == pytest.approx(math.sqrt(dx * dy), rel=0.02)   # ... metres come from here
    assert 8.0 < scene_gsd_m(geo_index, 0) < 11.0
    row = geo_index.summary().splitlines()[-2]                # `eossl catalog show`: the GSD column in metres
    assert f" {scene_gsd_m(geo_index, 0):7.4g} " in row and f"{DEG:g}" not in row
    feet = ground_res_m("EPSG:2263", 10.0, (980000, 190000, 990000, 200000))    # NY state plane, US survey feet
    assert feet == pytest.approx(3.048, rel=1e-5)
    with pytest.raises(ValueError, match="not longitudes/latitudes"):
        ground_res_m("EPSG:4326", 10.0, (500000, 5000000, 500600, 5000600))


def test_working_crs_is_the_local_utm_zone_and_logged(scenes, caplog):
    geo_index = _index(scenes[1])
    with caplog.at_level(logging.INFO, logger="eossl.geo"):
        assert working_crs(geo_index, 0) == UTM
    assert "is in EPSG:4326" in caplog.text and f"working in {UTM}" in caplog.text
    assert working_crs(_index(scenes[0]), 0) == UTM
    assert utm_crs_for(-70.5, -33.4) == "EPSG:32719"
    with pytest.raises(ValueError, match="outside the UTM zones.*polar projection"):
        utm_crs_for(10.0, 85.0)


def test_windows_on_a_geographic_scene_are_metric_and_line_up(scenes):
    utm_index, geo_index = _index(scenes[0]), _index(scenes[1])
    sampler = GridWindowSampler(geo_index, 16, gsd=10.0)
    windows = list(sampler)
    assert windows and all(w.crs == UTM for w in windows)
    assert all(w.bounds[2] - w.bounds[0] == pytest.approx(160.0) for w in windows)     # 16 px x 10 m, not degrees
    assert GridWindowSampler(geo_index, 16).gsd == pytest.approx(scene_gsd_m(geo_index, 0))   # default: metres
    geo_reader = ChipReader(geo_index, BANDS, resampling="nearest")
    utm_reader = ChipReader(utm_index, BANDS, resampling="nearest", allow_empty=True)
    agree = total = 0
    for w in windows:
        got = geo_reader.read(0, w.bounds, w.crs, w.gsd, w.size)
        want = utm_reader.read(0, w.bounds, w.crs, w.gsd, w.size)
        both = got.mask & want.mask
        agree += int((got.image[3][both] == want.image[3][both]).sum())
        total += int(both.sum())
    assert total > 1000 and agree / total > 0.9     # only pixels at block edges may differ (two resamplings)


# ------------------------------------------------------------------------------------------ prediction


def _threshold_classifier(gsd: float) -> Classifier:
    """Per pixel: class 1 where B08 reflectance > 0.5, else 0."""
    model = Classifier(MeanBands(4), 2, "segment")
    with torch.no_grad():
        conv = model.head.lateral[0].weight
        conv.zero_()
        conv[0, 3], conv[1, 3] = 1.0, -1.0
        model.head.cls.weight.zero_()
        model.head.cls.weight[0, 0], model.head.cls.weight[0, 1] = -1.0, 1.0
        model.head.cls.weight[1, 0], model.head.cls.weight[1, 1] = 1.0, -1.0
        model.head.cls.bias.zero_()
    model.info = ClassifierInfo(arch="resnet18", task="segment", bands=list(BANDS), wavelengths_nm=[500.0] * 4,
                                gsd_m=gsd, normalization={"mean": [0.5] * 4, "std": [0.3] * 4},
                                classes=["low", "high"], img_size=32, sensor="sentinel2-l1c")
    return model.eval()


def test_prediction_over_a_geographic_scene_is_on_utm_and_right(scenes, tmp_path):
    torch.set_num_threads(1)
    out = predict_map(_threshold_classifier(10.0), str(scenes[1]), tmp_path / "map.tif", band_order=BANDS,
                      resampling="nearest", progress=False)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == UTM and ds.res == (10.0, 10.0)
        assert ds.width < 100 and ds.height < 100          # ~620 m of ground at 10 m, not degrees / 10
        classes, transform = ds.read(1), ds.transform
    truth = _truth()[3] > 5000
    rows, cols = np.nonzero(classes != 255)
    xs, ys = rasterio.transform.xy(transform, rows, cols)
    tc = np.floor((np.asarray(xs) - UTM_ORIGIN[0]) / 10).astype(int)
    tr = np.floor((UTM_ORIGIN[1] - np.asarray(ys)) / 10).astype(int)
    inside = (tc >= 0) & (tc < N) & (tr >= 0) & (tr < N)
    assert inside.sum() > 0.8 * N * N
    hit = classes[rows[inside], cols[inside]] == truth[tr[inside], tc[inside]]
    assert hit.mean() > 0.9


def test_output_size_is_checked_before_anything_is_made(scenes, tmp_path):
    index = _index(scenes[1])
    huge = _threshold_classifier(0.001)        # a mm "classifier": ~620 000 px a side
    with pytest.raises(ValueError, match=r"class map of .*scene\.tif.* would be 1 x \d+ x \d+ px \(.*GB\) at "
                                         r"0\.001 m in EPSG:32633 \(the scene is in EPSG:4326.*above the limit of "
                                         r"20 GB.*max_output_gb") as err:
        predict_map(huge, index, tmp_path / "huge.tif", progress=False)
    assert "corrupt" not in str(err.value)
    assert list(tmp_path.glob("*huge*")) == [] and list(tmp_path.glob(".*")) == []
    with pytest.raises(ValueError, match=r"class map and probabilities .* above the limit of 1e-06 GB"):
        predict_map(_threshold_classifier(10.0), index, tmp_path / "small.tif", probabilities=True,
                    max_output_gb=1e-6, progress=False)
    grid = prediction_grid(index, 0, 10.0)
    assert grid.crs == UTM and grid.height < 100
    cfg = load_config(PredictConfig, None, {"model": "m", "input": "i", "out": "o.tif"}, ["max_output_gb=100"])
    assert cfg.max_output_gb == 100.0


# ------------------------------------------------------------------------------------------ label CRSs


def _points(index, n=5):
    x0, y0, x1, y1 = index.bounds(0)
    rng = np.random.default_rng(1)
    xs, ys = rng.uniform(x0 + 200, x1 - 200, n), rng.uniform(y0 + 200, y1 - 200, n)
    return [(float(x), float(y)) for x, y in zip(xs, ys)]


def _frame(points, crs):
    return gpd.GeoDataFrame({"cls": ["a", "b"] * (len(points) // 2) + ["a"] * (len(points) % 2)},
                            geometry=[Point(p) for p in points], crs=crs)


def _centred(windows, points, tol):
    for w, (x, y) in zip(windows, points):
        assert abs((w.bounds[0] + w.bounds[2]) / 2 - x) <= tol and abs((w.bounds[1] + w.bounds[3]) / 2 - y) <= tol


@pytest.mark.parametrize("driver", ["GPKG", "GeoJSON"])
def test_label_file_without_crs_is_an_error_naming_label_crs(tiny_s2_scene, tmp_path, driver):
    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    points = _points(index)
    path = tmp_path / ("labels.gpkg" if driver == "GPKG" else "labels.geojson")
    with pytest.warns(UserWarning):
        _frame(points, None).to_file(path, driver=driver)
    with pytest.raises(ValueError, match=rf"{path.name}: the label file declares no CRS.*`label_crs`"):
        LabelWindowSampler(index, 16, path, "cls")
    windows = list(LabelWindowSampler(index, 16, path, "cls", label_crs=UTM))
    assert len(windows) == len(points)
    _centred(windows, points, tol=10)


def test_point_tables_need_label_crs(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    points = _points(index)
    xy = tmp_path / "points.csv"
    xy.write_text("x,y,cls\n" + "".join(f"{x},{y},{c}\n" for (x, y), c in zip(points, "ababa")))
    with pytest.raises(ValueError, match=r"points\.csv: the label file declares no CRS.*`label_crs`"):
        read_labels(xy, "cls")
    _centred(list(LabelWindowSampler(index, 16, xy, "cls", label_crs=UTM)), points, tol=10)
    lonlat = tmp_path / "lonlat.csv"
    ll = _frame(points, UTM).to_crs("EPSG:4326").geometry
    lonlat.write_text("Lon,Lat,cls\n" + "".join(f"{p.x},{p.y},{c}\n" for p, c in zip(ll, "ababa")))
    _centred(list(LabelWindowSampler(index, 16, lonlat, "cls", label_crs="EPSG:4326")), points, tol=10)
    with pytest.raises(ValueError, match=r"points\.csv: coordinates .* not longitudes/latitudes"):
        read_labels(xy, "cls", label_crs="EPSG:4326")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,cls\n1,2,a\n")
    with pytest.raises(ValueError, match=r"bad\.csv: a point table needs coordinate columns"):
        read_labels(bad, "cls", label_crs=UTM)


def test_label_crs_must_agree_with_the_file(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    path = tmp_path / "labels.gpkg"
    _frame(_points(index), UTM).to_file(path, driver="GPKG")
    assert read_labels(path, "cls", label_crs=UTM)[0].crs.to_string() == UTM
    with pytest.raises(ValueError, match=r"declares the CRS EPSG:32633 but `label_crs` is EPSG:32632"):
        read_labels(path, "cls", label_crs="EPSG:32632")


def test_lonlat_labels_line_up_over_a_utm_scene(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    points = _points(index)
    path = tmp_path / "labels.geojson"
    _frame(points, UTM).to_crs("EPSG:4326").to_file(path, driver="GeoJSON")   # declares its CRS (CRS84)
    windows = list(LabelWindowSampler(index, 16, path, "cls"))
    assert all(w.crs == UTM for w in windows)
    _centred(windows, points, tol=10)


def test_utm_labels_over_a_geographic_scene(scenes, tmp_path):
    utm_index, geo_index = _index(scenes[0]), _index(scenes[1])
    points = _points(utm_index)
    path = tmp_path / "labels.gpkg"
    _frame(points, UTM).to_file(path, driver="GPKG")
    windows = list(LabelWindowSampler(geo_index, 8, path, "cls", gsd=10.0))
    assert len(windows) == len(points) and all(w.crs == UTM for w in windows)
    _centred(windows, points, tol=10)


def test_label_raster_without_crs(tiny_s2_scene, tmp_path):
    index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    labels = np.kron(np.array([[1, 2], [2, 1]]), np.ones((60, 60), dtype="uint8")).astype("uint8")
    path = tmp_path / "landcover.tif"
    with rasterio.open(path, "w", driver="GTiff", width=120, height=120, count=1, dtype="uint8",
                       transform=from_origin(399960.0, 5800020.0, 10, 10)) as ds:
        ds.write(labels, 1)
    with pytest.raises(ValueError, match=r"landcover\.tif: the label raster declares no CRS.*`label_crs`"):
        load_segmentation_chips(index, path, chip_size=32, bands=BANDS)
    chips = load_segmentation_chips(index, path, chip_size=32, bands=BANDS, label_crs=UTM)
    assert len(chips) == 16 and chips.crs[0] == UTM and chips.gsd == 10.0    # 4 x 4 windows of 32 px
    top_left = [k for k, b in enumerate(chips.bounds) if b[0] == 399960.0 and b[3] == 5800020.0]
    assert len(top_left) == 1 and (chips.labels[top_left[0]] == chips.classes.index("1")).all()


def test_label_crs_is_a_config_key_wherever_labels_are_configured():
    scenes = {"index": "i.parquet"}
    assert from_dict(SamplerConfig, {"kind": "labels", "label_crs": UTM}).label_crs == UTM
    assert from_dict(LabelledDataConfig, {"labels": "l.csv", "label_column": "c", "scenes": scenes,
                                          "label_crs": "EPSG:4326"}).label_crs == "EPSG:4326"
    assert from_dict(FieldsConfig, {"scenes": scenes, "labels": "f.gpkg", "class_column": "c",
                                    "label_crs": UTM}).label_crs == UTM
    assert from_dict(SegmentationConfig, {"scenes": scenes, "label_raster": "l.tif",
                                          "label_crs": UTM}).label_crs == UTM
