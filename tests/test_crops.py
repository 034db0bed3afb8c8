"""Crop classification from field polygons: field time series (fields), spatial-block splits (splits), per-date
features and their aggregation (temporal), and the few-label comparison (crops), on seeded GeoTIFFs written here
and on the real WorldCereal datacube with fields drawn on it."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import xarray as xr
from rasterio.features import rasterize
from rasterio.transform import from_origin
from scipy.ndimage import binary_erosion
from shapely.geometry import Point, box

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.sensors import load_sensor
from eossl.data.labelled.fields import load_fields
from eossl.data.normalization import Normalization
from eossl.evaluate import crops
from eossl.evaluate.crops import backbone_for_series, crops_table, evaluate_crops, field_rcf
from eossl.evaluate.splits import block_ids, check_block_split, few_label_subset, spatial_block_split
from eossl.evaluate.temporal import (
    date_positions,
    field_band_statistics,
    field_features,
    mean_over_dates,
    predict_attention,
)
from eossl.models.backbones import create_backbone
from eossl.models.field_heads import TemporalAttention
from eossl.models.weights import WeightsInfo, export_backbone
from eossl.train.heads import fit_attention

torch.set_num_threads(1)

CRS = "EPSG:32633"
X0, Y0 = 399960.0, 5800020.0          # top-left corner of the synthetic scenes
SIZE = 128                            # px at 10 m
BANDS = ["B02", "B03", "B04", "B08"]
DATES = ["20210415T100031", "20210615T100031", "20210815T100031"]
CLASSES = ["grass", "maize", "wheat"]
# per class and date: reflectance of B02, B03, B04, B08 (wheat green early and harvested late, maize late, grass flat)
PROFILES = {"wheat": [(0.04, 0.07, 0.04, 0.40), (0.05, 0.08, 0.06, 0.30), (0.10, 0.13, 0.16, 0.20)],
            "maize": [(0.09, 0.11, 0.14, 0.20), (0.05, 0.08, 0.05, 0.35), (0.03, 0.07, 0.03, 0.48)],
            "grass": [(0.05, 0.08, 0.06, 0.30), (0.05, 0.08, 0.06, 0.31), (0.05, 0.08, 0.06, 0.30)]}
SOIL = (0.08, 0.10, 0.12, 0.18)


@dataclass
class Scenes:
    root: Path
    fields: gpd.GeoDataFrame      # field_id, crop, geometry (EPSG:32633)
    labels: dict[str, Path]       # format -> label file
    cloudy: str                   # id of the field under the nodata strip of the last date
    tiny: str                     # id of the field smaller than a pixel


def _field_polygons(rng) -> gpd.GeoDataFrame:
    """A 5 x 5 grid of 150 m squares (edges a quarter pixel off the grid), seeded classes, plus a tiny field."""
    rows = []
    crops = rng.permutation(np.resize(CLASSES, 25))
    for k in range(25):
        x = X0 + 40 + (k % 5) * 240 + 2.5
        y = Y0 - 40 - (k // 5) * 240 - 2.5
        rows.append((f"f{k:02d}", crops[k], box(x, y - 150, x + 150, y)))
    rows.append(("tiny", "wheat", box(X0 + 222, Y0 - 218, X0 + 226, Y0 - 214)))
    return gpd.GeoDataFrame({"field_id": [r[0] for r in rows], "crop": [r[1] for r in rows]},
                            geometry=[r[2] for r in rows], crs=CRS)


def _write_scenes(root: Path, fields: gpd.GeoDataFrame, rng) -> str:
    """One 4-band GeoTIFF per date; returns the id of the field hidden by nodata on the last date."""
    transform = from_origin(X0, Y0, 10, 10)
    which = rasterize([(g, k + 1) for k, g in enumerate(fields.geometry)], out_shape=(SIZE, SIZE),
                      transform=transform, dtype="int32")                 # 0 = soil, k + 1 = field k
    cloudy = fields["field_id"].iloc[0]
    for t, date in enumerate(DATES):
        refl = np.empty((4, SIZE, SIZE))
        refl[:] = np.asarray(SOIL)[:, None, None]
        for k, crop in enumerate(fields["crop"]):
            offset = rng.normal(0, 0.01, size=4)                           # field-to-field variation
            refl[:, which == k + 1] = (np.asarray(PROFILES[crop][t]) + offset)[:, None]
        refl += rng.normal(0, 0.005, size=refl.shape)
        dn = np.clip(refl * 10000, 1, 9999).astype(np.uint16)
        if t == len(DATES) - 1:
            dn[:, :20, :20] = 0                                            # nodata over the first field
        with rasterio.open(root / f"S2_{date}_stack.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=4,
                           dtype="uint16", crs=CRS, transform=transform, nodata=0) as ds:
            ds.write(dn)
            for i, band in enumerate(BANDS, start=1):
                ds.set_band_description(i, band)
    return cloudy


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Scenes:
    root = tmp_path_factory.mktemp("crops")
    (root / "scenes").mkdir()
    rng = np.random.default_rng(11)
    fields = _field_polygons(rng)
    cloudy = _write_scenes(root / "scenes", fields, rng)
    labels = {"gpkg": root / "fields.gpkg", "geojson": root / "fields.geojson", "parquet": root / "fields.parquet",
              "shp": root / "fields.shp"}
    fields.to_file(labels["gpkg"], driver="GPKG")
    fields.to_crs("EPSG:4326").to_file(labels["geojson"], driver="GeoJSON")    # reprojected on load
    fields.to_parquet(labels["parquet"])
    fields.to_file(labels["shp"])
    return Scenes(root / "scenes", fields, labels, cloudy, "tiny")


@pytest.fixture(scope="module")
def index(scenes):
    return build_index([str(scenes.root)], "sentinel2-l2a", progress=False)


@pytest.fixture(scope="module")
def series(index, scenes):
    return load_fields(index, scenes.labels["gpkg"], "crop", id_column="field_id", chip_size=32)


# ============================================================================================ fields


def test_series_shapes_dates_and_masks(series, scenes):
    n = len(scenes.fields)
    assert series.images.shape == (n, 3, 4, 32, 32) and series.images.dtype == np.float32
    assert series.valid.shape == (n, 3, 32, 32) and series.field_mask.shape == (n, 32, 32)
    assert series.bands == BANDS and series.classes == CLASSES and series.crs == CRS and series.gsd == 10.0
    assert [f"{d:%Y-%m-%d}" for d in series.dates] == ["2021-04-15", "2021-06-15", "2021-08-15"]
    assert series.field_ids == list(scenes.fields["field_id"])
    assert [CLASSES[v] for v in series.labels] == list(scenes.fields["crop"])
    big = series.field_ids.index("f07")
    assert series.field_mask[big].sum() == 15 * 15                        # 150 m square, pixel centres inside
    rows, cols = np.nonzero(series.field_mask[big])
    assert (rows.min() + rows.max()) / 2 == pytest.approx(15.5, abs=1) and (cols.min() + cols.max()) / 2 == \
        pytest.approx(15.5, abs=1)                                        # chip centred on the field
    assert series.field_mask[series.field_ids.index(scenes.tiny)].sum() == 1   # sub-pixel field: one pixel
    x, y = scenes.fields.geometry.iloc[big].centroid.coords[0]
    np.testing.assert_allclose(series.centroids[big], (x, y))


def test_field_pixels_follow_the_class_profile(series, scenes):
    """The mean reflectance over each field's mask, per date, is its class profile (up to the seeded noise)."""
    for i, crop in enumerate(scenes.fields["crop"]):
        for t in range(3):
            if not series.date_valid[i, t]:
                continue
            m = series.field_mask[i] & series.valid[i, t]
            got = series.images[i, t][:, m].mean(axis=1)
            np.testing.assert_allclose(got, PROFILES[crop][t], atol=0.04, err_msg=f"{series.field_ids[i]} {t}")


def test_nodata_date_is_flagged_and_the_field_kept(series, scenes):
    i = series.field_ids.index(scenes.cloudy)
    assert series.date_valid[i].tolist() == [True, True, False]
    assert not (series.valid[i, 2] & series.field_mask[i]).any()
    assert (series.images[i, 2][:, ~series.valid[i, 2]] == 0).all()
    others = [k for k in range(len(series)) if k != i]
    assert series.date_valid[others].all()


@pytest.mark.parametrize("fmt", ["geojson", "parquet", "shp"])
def test_every_label_format_loads_the_same_fields(index, scenes, series, fmt):
    other = load_fields(index, scenes.labels[fmt], "crop", id_column="field_id", chip_size=32)
    assert other.field_ids == series.field_ids and other.classes == series.classes
    np.testing.assert_array_equal(other.labels, series.labels)
    np.testing.assert_array_equal(other.field_mask, series.field_mask)     # GeoJSON: EPSG:4326, reprojected
    np.testing.assert_array_equal(other.images, series.images)
    np.testing.assert_allclose(other.centroids, series.centroids, atol=1e-3)


def test_fields_outside_the_scenes_are_dropped_or_refused(index, scenes, tmp_path, caplog):
    far = scenes.fields.iloc[:2].copy()
    far["field_id"] = ["away1", "away2"]
    far["geometry"] = far.geometry.translate(50_000, 0)
    some = pd.concat([scenes.fields, far], ignore_index=True)
    some.to_file(tmp_path / "some.gpkg")
    with caplog.at_level(logging.WARNING, logger="eossl.data.labelled.fields"):
        loaded = load_fields(index, tmp_path / "some.gpkg", "crop", id_column="field_id", chip_size=16)
    assert "away1" not in loaded.field_ids and len(loaded) == len(scenes.fields)
    assert "dropped 2 of 28 fields outside every acquisition" in caplog.text and "away2" in caplog.text
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(ValueError, match=r"far\.gpkg: all 2 fields lie outside every acquisition .*'away1'"):
        load_fields(index, tmp_path / "far.gpkg", "crop", id_column="field_id")


def test_label_file_errors(index, scenes, tmp_path):
    with pytest.raises(ValueError, match=r"no label column 'crop_type'; columns are \['field_id', 'crop'\]"):
        load_fields(index, scenes.labels["gpkg"], "crop_type")
    with pytest.raises(FileNotFoundError, match=r"label file not found: .*absent\.gpkg"):
        load_fields(index, tmp_path / "absent.gpkg", "crop")
    points = scenes.fields.iloc[:3].copy()
    points["geometry"] = [Point(p.x, p.y) for p in points.geometry.centroid]
    points.to_file(tmp_path / "points.gpkg")
    with pytest.raises(ValueError, match=r"points\.gpkg: 3 geometries are not polygons, e.g. \[\('f00', 'Point'\)"):
        load_fields(index, tmp_path / "points.gpkg", "crop", id_column="field_id")
    scenes.fields.iloc[:0].to_file(tmp_path / "empty.gpkg")
    with pytest.raises(ValueError, match=r"label file .*empty\.gpkg holds no features"):
        load_fields(index, tmp_path / "empty.gpkg", "crop")
    (tmp_path / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(ValueError, match=r"empty\.geojson holds no features"):
        load_fields(index, tmp_path / "empty.geojson", "crop")
    with pytest.raises(ValueError, match=r"no id column 'fid'"):
        load_fields(index, scenes.labels["gpkg"], "crop", id_column="fid")
    with pytest.raises(ValueError, match=r"field ids repeat in column 'crop'"):
        load_fields(index, scenes.labels["gpkg"], "crop", id_column="crop")


def _copy_tif(src: Path, dst: Path, window=None, crs: str | None = None) -> None:
    """Copy a scene, optionally a pixel window of it (same grid) or reprojected to ``crs`` (nearest)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src) as ds:
        profile, data, descriptions = ds.profile.copy(), ds.read(window=window), ds.descriptions
        transform = ds.window_transform(window) if window is not None else ds.transform
        if crs is not None:
            transform, w, h = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds)
            out = np.zeros((ds.count, h, w), dtype=data.dtype)
            reproject(data, out, src_transform=ds.transform, src_crs=ds.crs, dst_transform=transform, dst_crs=crs,
                      src_nodata=0, dst_nodata=0, resampling=Resampling.nearest)
            data = out
            profile["crs"] = crs
    profile.update(width=data.shape[2], height=data.shape[1], transform=transform)
    with rasterio.open(dst, "w", **profile) as out_ds:
        out_ds.write(data)
        for i, d in enumerate(descriptions, start=1):
            out_ds.set_band_description(i, d)


def test_tiles_of_one_date_are_mosaicked_and_other_crs_warped(scenes, series, tmp_path):
    from rasterio.windows import Window

    files = sorted(scenes.root.glob("*.tif"))
    (tmp_path / "tiles").mkdir()
    west, east = Window(0, 0, 64, SIZE), Window(64, 0, 64, SIZE)
    _copy_tif(files[0], tmp_path / "tiles" / f"S2_{DATES[0]}_west.tif", west)
    _copy_tif(files[0], tmp_path / "tiles" / f"S2_{DATES[0]}_east.tif", east)
    _copy_tif(files[1], tmp_path / "tiles" / files[1].name, crs="EPSG:32632")   # one date in another UTM zone
    _copy_tif(files[2], tmp_path / "tiles" / files[2].name)
    index = build_index([str(tmp_path / "tiles")], "sentinel2-l2a", progress=False)
    assert len(index) == 4
    tiled = load_fields(index, scenes.labels["gpkg"], "crop", id_column="field_id", chip_size=32)
    assert tiled.crs == CRS and len(tiled.dates) == 3 and tiled.field_ids == series.field_ids
    np.testing.assert_array_equal(tiled.images[:, [0, 2]], series.images[:, [0, 2]])   # mosaic = the whole scene
    np.testing.assert_array_equal(tiled.valid[:, [0, 2]], series.valid[:, [0, 2]])
    # the warped date: away from field edges, the values are the field's (nearest-neighbour in both warps)
    core = np.stack([binary_erosion(m, iterations=2) for m in series.field_mask])
    for i in range(len(series)):
        if core[i].sum() > 20:
            got = tiled.images[i, 1][:, core[i]].mean(axis=1)
            np.testing.assert_allclose(got, series.images[i, 1][:, core[i]].mean(axis=1), atol=0.01)
    assert tiled.date_valid.sum() == series.date_valid.sum()


# ============================================================================================ splits


def _clustered_centroids(block: float, per_block: int = 4, grid: int = 5, seed: int = 0):
    """Fields in the middle half of each block of a grid x grid layout; labels cycle through 3 classes."""
    rng = np.random.default_rng(seed)
    centres = [((i + 0.5) * block, (j + 0.5) * block) for i in range(grid) for j in range(grid)]
    xy = np.array([c + rng.uniform(-block / 4, block / 4, size=2) for c in centres for _ in range(per_block)])
    return xy + 500_000.0, np.arange(len(xy)) % 3


def test_spatial_block_split_keeps_blocks_apart():
    xy, labels = _clustered_centroids(1000.0)
    train, test = spatial_block_split(xy, 1000.0, test_fraction=0.3, seed=3, labels=labels)
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).tolist() == list(range(len(xy)))
    cells = {tuple(c) for c in np.floor(xy / 1000.0).astype(int)[train]}  # blocks recomputed independently
    assert not cells & {tuple(c) for c in np.floor(xy / 1000.0).astype(int)[test]}
    info = check_block_split(xy, train, test, 1000.0)
    # fields sit within a quarter block of their block centre: fields of different blocks are >= 500 m apart
    assert info["min_distance_m"] >= 500.0
    assert info["n_blocks_train"] + info["n_blocks_test"] == 25
    assert 0.2 <= len(test) / len(xy) <= 0.4
    assert set(labels[test]) == set(labels[train]) == {0, 1, 2}            # stratified where feasible


def test_spatial_block_split_is_deterministic_and_seed_dependent():
    xy, labels = _clustered_centroids(1000.0)
    a = spatial_block_split(xy, 1000.0, seed=1, labels=labels)
    b = spatial_block_split(xy, 1000.0, seed=1, labels=labels)
    c = spatial_block_split(xy, 1000.0, seed=2, labels=labels)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    np.testing.assert_array_equal(block_ids(xy[:4], 1000.0), [0, 0, 0, 0])  # one block's four fields


def test_check_block_split_detects_a_shared_block():
    xy, _ = _clustered_centroids(1000.0)
    with pytest.raises(ValueError, match=r"1 block\(s\) of 1000.0 m hold both train and test fields"):
        check_block_split(xy, [0, 1, 4], [2, 3], 1000.0)                   # fields 0..3 share a block
    with pytest.raises(ValueError, match=r"fields \[1\] are in both train and test"):
        check_block_split(xy, [0, 1], [1, 5], 1000.0)


def test_few_label_subset():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    train = np.array([0, 1, 3, 4, 6, 7, 8])
    few = few_label_subset(train, labels, 2, seed=0)
    assert np.bincount(labels[few]).tolist() == [2, 2, 2] and set(few) <= set(train)
    np.testing.assert_array_equal(few, few_label_subset(train, labels, 2, seed=0))
    assert few_label_subset(train, labels, "all", 0).tolist() == train.tolist()
    assert few_label_subset(train, labels, None, 0).tolist() == train.tolist()
    with pytest.raises(ValueError, match=r"too few training fields for k = 3 per class: class 'maize' has 2;"):
        few_label_subset([0, 1, 2, 3, 4, 6, 7, 8], labels, 3, 0, classes=["grass", "maize", "wheat"])
    with pytest.raises(ValueError, match=r"k = 3 per class: class 'grass' has 2, class 'maize' has 2;"):
        few_label_subset(train, labels, 3, 0, classes=["grass", "maize", "wheat"])
    with pytest.raises(ValueError, match=r"k must be a positive integer, None or 'all', got 0"):
        few_label_subset(train, labels, 0, 0)


def test_split_errors():
    xy, labels = _clustered_centroids(1000.0)
    with pytest.raises(ValueError, match=r"fall in 1 block\(s\) of 100000 m; .* use a smaller block_size_m"):
        spatial_block_split(xy, 100_000, labels=labels)
    with pytest.raises(ValueError, match=r"block_size_m must be > 0"):
        spatial_block_split(xy, 0)
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
        spatial_block_split(xy, 1000.0, test_fraction=1.0)
    with pytest.raises(ValueError, match=r"centroids must be \(N, 2\)"):
        spatial_block_split(xy[:, 0], 1000.0)


# ============================================================================================ temporal


class _Mapper(torch.nn.Module):
    """A stand-in backbone whose feature map is the input averaged over 4 x 4 cells (ResNet-like, (B, C, h, w))
    or laid out as tokens behind one class token (ViT-like, (B, 1 + L, C))."""

    def __init__(self, tokens: bool):
        super().__init__()
        self.tokens = tokens
        self.num_prefix_tokens = 1

    def forward_features(self, x):
        m = torch.nn.functional.avg_pool2d(x, 4)
        if not self.tokens:
            return m
        t = m.flatten(2).transpose(1, 2)
        return torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)


@pytest.mark.parametrize("tokens", [False, True])
def test_field_features_average_the_cells_under_the_field(series, scenes, tokens):
    feats, valid = field_features(_Mapper(tokens), series, Normalization(tuple(BANDS), np.zeros(4), np.ones(4)))
    assert feats.shape == (len(series), 3, 4) and valid.dtype == bool
    i = series.field_ids.index("f07")
    cells = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(series.field_mask[i], dtype=torch.float32)[None],
                                                    8)[0].numpy() >= 0.5                # 8 x 8 map
    for t in range(3):
        expected = torch.nn.functional.avg_pool2d(torch.as_tensor(series.images[i, t]), 4).numpy()[:, cells]
        np.testing.assert_allclose(feats[i, t], expected.mean(axis=1), rtol=1e-5)
    tiny = series.field_ids.index(scenes.tiny)                           # under half a cell: its one cell
    r, c = np.argwhere(series.field_mask[tiny])[0]
    cell = torch.nn.functional.avg_pool2d(torch.as_tensor(series.images[tiny, 0]), 4).numpy()[:, r // 4, c // 4]
    np.testing.assert_allclose(feats[tiny, 0], cell, rtol=1e-5)
    assert (feats[~series.date_valid] == 0).all()


def test_band_statistics_per_field_and_date(series):
    concat = field_band_statistics(series, percentiles=(50,))
    assert concat.shape == (len(series), 3 * 4 * 3)
    i = series.field_ids.index("f07")
    m = series.field_mask[i]
    b08 = series.images[i, 1, 3][m]
    per_date = concat[i].reshape(3, 4, 3)                                 # dates, bands, (mean, std, p50)
    np.testing.assert_allclose(per_date[1, 3], [b08.mean(), b08.std(), np.median(b08)], rtol=1e-5)
    averaged = field_band_statistics(series, percentiles=(50,), over_dates="mean")
    np.testing.assert_allclose(averaged[i], per_date.reshape(3, -1).mean(axis=0), rtol=1e-6)


def test_attention_ignores_invalid_dates_and_reads_the_order():
    """Two classes with the same values in swapped date order: their means are equal, attention tells them apart."""
    rng = np.random.default_rng(0)
    n, d = 40, 6
    a, b = rng.normal(0, 1, size=(n, d)), rng.normal(3, 1, size=(n, d))
    y = np.arange(n) % 2
    feats = np.where(y[:, None, None] == 0, np.stack([a, b], 1), np.stack([b, a], 1)).astype(np.float32)
    feats = np.concatenate([feats, rng.normal(size=(n, 1, d)).astype(np.float32)], axis=1)   # a 3rd, invalid date
    valid = np.ones((n, 3), dtype=bool)
    valid[:, 2] = False
    pos = date_positions([pd.Timestamp("2021-04-01"), pd.Timestamp("2021-07-01"), pd.Timestamp("2021-09-01")])
    assert pos.tolist() == [3, 6, 8]
    np.testing.assert_allclose(mean_over_dates(feats, valid)[y == 0].mean(0), mean_over_dates(feats, valid)[y == 1]
                               .mean(0), atol=0.5)
    model = fit_attention(feats[:30], valid[:30], y[:30], pos, 2, seed=0, epochs=150)
    assert (predict_attention(model, feats[30:], valid[30:], pos) == y[30:]).mean() >= 0.9
    again = fit_attention(feats[:30], valid[:30], y[:30], pos, 2, seed=0, epochs=150)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
    noisy = feats.copy()
    noisy[:, 2] = 1e3                                                     # the invalid date changes: no effect
    with torch.no_grad():
        w = model.weights(torch.as_tensor(noisy), torch.as_tensor(valid), torch.as_tensor(pos))
    assert torch.all(w[:, 2] == 0) and torch.allclose(w.sum(1), torch.ones(n))
    np.testing.assert_array_equal(predict_attention(model, noisy, valid, pos), predict_attention(model, feats, valid,
                                                                                                  pos))
    none_valid = TemporalAttention(d, 2).weights(torch.zeros(1, 3, d), torch.zeros(1, 3, dtype=torch.bool),
                                                 torch.arange(3))
    assert torch.allclose(none_valid, torch.full((1, 3), 1 / 3))         # no NaN for a field without dates


def test_ltae_learns_a_date_signal_fills_missing_dates_and_is_seeded():
    """torchgeo's L-TAE as the parcel head: the classes differ at one date only, a missing date is filled (so its
    values do not matter), the same parameters come from the same seed."""
    from eossl.evaluate.temporal import predict_ltae
    from eossl.train.heads import fit_ltae

    rng = np.random.default_rng(0)
    n, d, tr = 200, 6, 150
    y = np.arange(n) % 2
    feats = rng.normal(size=(n, 3, d)).astype(np.float32)
    feats[:, 1, :2] += 3.0 * y[:, None]            # the signal: 2 features at date 1 (L-TAE layer-normalises each
    #                                                  date over its features, so a shift of all of them would vanish)
    valid = np.ones((n, 3), dtype=bool)
    valid[:, 2] = False
    model = fit_ltae(feats[:tr], valid[:tr], y[:tr], 2, seed=0, epochs=100)
    assert (predict_ltae(model, feats[tr:], valid[tr:]) == y[tr:]).mean() >= 0.8          # chance: 0.5
    again = fit_ltae(feats[:tr], valid[:tr], y[:tr], 2, seed=0, epochs=100)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
    noisy = feats.copy()
    noisy[:, 2] = 1e3
    np.testing.assert_array_equal(predict_ltae(model, noisy, valid), predict_ltae(model, feats, valid))
    with pytest.raises(ValueError, match="at least 2"):
        fit_ltae(feats[:1], valid[:1], y[:1], 2)


# ============================================================================================ end to end


def _export(model, bands, out: Path, sensor="sentinel2-l2a") -> Path:
    s = load_sensor(sensor)
    mean, std = s.norm_stats(bands)
    info = WeightsInfo(arch="resnet18", in_chans=len(bands), bands=list(bands), wavelengths_nm=s.wavelengths(bands),
                       gsd_m=10.0, normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="none", epochs=0, img_size=32)
    return export_backbone(model, info, out)


def test_evaluate_crops_end_to_end(series):
    result = evaluate_crops(series, ks=(1, "all"), seeds=3, block_size_m=480.0, attention_epochs=100,
                            aggregation=("mean", "attention", "ltae"))
    print("\n" + crops_table(result))
    assert set(result["methods"]) == {"band statistics + logreg", "random-init resnet18 + mean/logreg",
                                      "random-init resnet18 + attention", "random-init resnet18 + ltae"}
    for m in result["methods"].values():
        for k in ("1", "all"):
            oa = m["by_k"][k]["overall_accuracy"]
            assert oa["n"] == 3 and len(oa["values"]) == 3 and oa["ci95"] is not None
            assert 0.0 <= m["by_k"][k]["macro_f1"]["mean"] <= 1.0
    # the classes differ in spectrum and profile: band statistics of every field are enough
    assert result["methods"]["band statistics + logreg"]["by_k"]["all"]["overall_accuracy"]["mean"] >= 0.8
    assert all(s["n_blocks_train"] > 0 and s["n_blocks_test"] > 0 for s in result["splits"])
    assert result["data"]["n_fields"] == len(series) and result["skipped_k"] == {}
    assert all(m["by_k"][k]["n_not_converged"] == 0 for m in result["methods"].values() for k in ("1", "all"))
    assert json.loads(json.dumps(result))["settings"]["ks"] == ["1", "all"]


def test_pretrained_weights_take_their_bands_by_name(series, tmp_path):
    torch.manual_seed(1)
    model = create_backbone("resnet18", 4, img_size=32)
    order = ["B08", "B04", "B02", "B03"]
    loaded, used, norm = backbone_for_series(series, _export(model, order, tmp_path / "w"))
    assert loaded.info.arch == "resnet18" and used.bands == order and loaded.band_matches == ()
    np.testing.assert_array_equal(used.images, series.images[:, :, [3, 2, 0, 1]])
    assert norm.bands == tuple(order)
    np.testing.assert_allclose(norm.mean, load_sensor("sentinel2-l2a").norm_stats(order)[0])
    # weights with a band the data lacks (B11): the stem is adapted to the data's four bands, by name
    five = create_backbone("resnet18", 5, img_size=32)
    loaded, used, _ = backbone_for_series(series, _export(five, BANDS + ["B11"], tmp_path / "w5"))
    assert used.bands == BANDS and [m.source for m in loaded.band_matches] == BANDS
    np.testing.assert_allclose(loaded.model.conv1.weight.detach(), five.conv1.weight.detach()[:, :4] * 5 / 4)
    # field series scaled twice (reflectance x 1e-4) are refused before any feature is computed
    with pytest.raises(ValueError, match="scaled twice"):
        backbone_for_series(replace(series, images=series.images * np.float32(1e-4)), tmp_path / "w")
    # SWIR-only weights: no data band is within reach of a pretrained band
    swir = _export(create_backbone("resnet18", 2, 32), ["B11", "B12"], tmp_path / "swir")
    with pytest.raises(ValueError, match=r"no counterpart in the pretrained weights within 60 nm: B02 \(492 nm; nearest"):
        evaluate_crops(series, weights=swir, ks=("all",), seeds=1, block_size_m=480.0)


def test_pretrained_weights_equal_to_the_random_init_score_the_same(series, tmp_path):
    """The weights and random-init paths give identical scores for identical weights and normalisation."""
    torch.manual_seed(0)
    weights = _export(create_backbone("resnet18", 4, img_size=32), BANDS, tmp_path / "w")   # seed-0 random init
    result = evaluate_crops(series, weights=weights, ks=(2, "all"), seeds=2, block_size_m=480.0, level=1,
                            band_stats=False)
    pre = result["methods"]["pretrained resnet18 test + attention"]["by_k"]
    rnd = result["methods"]["random-init resnet18 + attention"]["by_k"]
    assert pre == rnd and result["settings"]["level"] == 1
    # stage-1 maps pooled over the field resolve it: every field of the test blocks is classified right
    assert rnd["all"]["overall_accuracy"]["mean"] == 1.0


def test_evaluate_crops_skips_infeasible_k(series):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_crops(series, ks=(1, 50), seeds=1, block_size_m=480.0, aggregation=("mean",),
                                random_init=False)
    assert list(result["methods"]["band statistics + logreg"]["by_k"]) == ["1"]
    assert "too few training fields for k = 50" in result["skipped_k"]["50"]
    with pytest.raises(ValueError, match=r"unknown aggregation \['median'\]"):
        evaluate_crops(series, aggregation=("median",))
    with pytest.raises(ValueError, match=r"ks must hold positive integers, 'all' or None; got \[0, 'all'\]"):
        evaluate_crops(series, ks=(0, "all"))


def test_rcf_and_fusion_rows_of_fields(series, tmp_path, monkeypatch):
    """RCF filters come from the valid dates of each seed's training fields; fusion = statistics + features."""
    calls = []
    real = crops.rcf_model

    def spy(source, norm, **kw):
        calls.append((kw["seed"], np.asarray(kw["source_index"]).copy()))
        return real(source, norm, **kw)

    monkeypatch.setattr(crops, "rcf_model", spy)
    torch.manual_seed(0)
    weights = _export(create_backbone("resnet18", 4, img_size=32), BANDS, tmp_path / "w")
    result = evaluate_crops(series, weights=weights, ks=(2, "all"), seeds=2, block_size_m=480.0, level=1,
                            aggregation=("mean",), random_init=False, rcf=True, fusion=True)
    m = result["methods"]
    assert set(m) == {"band statistics + logreg", "pretrained resnet18 test + mean/logreg", "RCF 512 + logreg",
                      "band stats + random-init resnet18 + logreg", "band stats + pretrained resnet18 test + logreg"}
    t = len(series.dates)
    assert [seed for seed, _ in calls] == [0, 1]
    for seed, rows in calls:
        train, test = spatial_block_split(series.centroids, 480.0, 0.3, seed, series.labels)
        fields, dates = np.divmod(rows, t)
        assert set(fields) == set(train.tolist()) and not set(fields) & set(test.tolist())
        assert series.date_valid[fields, dates].all()
    stats, pre = m["band statistics + logreg"]["dim"], m["pretrained resnet18 test + mean/logreg"]["dim"]
    assert m["RCF 512 + logreg"]["dim"] == 512 and pre == 64                     # resnet18 stage 1
    assert m["band stats + pretrained resnet18 test + logreg"]["dim"] == stats + pre
    assert m["band stats + random-init resnet18 + logreg"]["dim"] == stats + pre
    assert m["RCF 512 + logreg"]["by_k"]["all"]["overall_accuracy"]["mean"] >= 0.8   # the spectra differ
    assert result["settings"]["baselines"] == {"random_init": False, "band_statistics": True, "rcf": True,
                                               "fusion": True}
    # deterministic for a seed, another seed draws other filters
    train = calls[0][1] // t
    a = field_rcf(series, np.unique(train), 0)
    assert a.shape == (len(series), 512)
    np.testing.assert_array_equal(a, field_rcf(series, np.unique(train), 0))
    assert not np.allclose(a, field_rcf(series, np.unique(train), 1))


# ============================================================================================ WorldCereal


def _worldcereal_fields(nc: Path, index) -> gpd.GeoDataFrame:
    """An 8 x 8 grid of 80 m fields, labelled by their NDVI profile computed here from the raw cube: 'stable'
    (amplitude < 0.3 over Feb..Oct), else 'early' (peak by June) or 'late'."""
    with xr.open_dataset(nc, engine="h5netcdf") as ds:
        red = ds["S2-L2A-B04"].values.astype(float)
        nir = ds["S2-L2A-B08"].values.astype(float)
    ndvi = np.where((red == 65535) | (nir == 65535), np.nan, (nir - red) / (nir + red))[3:]   # Feb..Oct
    minx, _, _, maxy = index.bounds(0)
    rows = []
    for i in range(8):
        for j in range(8):
            r0, c0 = 4 + i * 12, 4 + j * 12                               # 8 x 8 px field in a 12 px cell
            profile = np.nanmean(ndvi[:, r0:r0 + 8, c0:c0 + 8], axis=(1, 2))
            amp, peak = profile.max() - profile.min(), int(profile.argmax())
            crop = "stable" if amp < 0.3 else ("early" if peak <= 4 else "late")
            geom = box(minx + c0 * 10 + 2.5, maxy - (r0 + 8) * 10 + 2.5, minx + (c0 + 8) * 10 - 2.5,
                       maxy - r0 * 10 - 2.5)
            rows.append((f"wc{i}{j}", crop, geom))
    return gpd.GeoDataFrame({"field_id": [r[0] for r in rows], "crop": [r[1] for r in rows]},
                            geometry=[r[2] for r in rows], crs=index.crs(0))


def test_worldcereal_crops_end_to_end(worldcereal_nc, tmp_path):
    index = build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    fields = _worldcereal_fields(worldcereal_nc, index)
    fields.to_file(tmp_path / "wc_fields.gpkg")
    series = load_fields(index, tmp_path / "wc_fields.gpkg", "crop", id_column="field_id", chip_size=32)
    assert series.images.shape == (64, 12, 9, 32, 32) and series.classes == ["early", "late", "stable"]
    assert np.bincount(series.labels).tolist() == [19, 11, 34]
    months = [d.month for d in series.dates]
    assert months == [11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert not series.date_valid[:, 1:3].any() and series.date_valid[:, [0, *range(3, 12)]].all()
    assert (series.field_mask.sum(axis=(1, 2)) == 64).all()                # 8 x 8 px
    with xr.open_dataset(worldcereal_nc, engine="h5netcdf") as ds:        # pixels are the cube's, on its grid
        raw = ds["S2-L2A-B08"].isel(t=7, y=slice(4, 12), x=slice(4, 12)).values
    np.testing.assert_allclose(series.images[0, 7, series.bands.index("B08")][series.field_mask[0]],
                               raw.ravel() * 1e-4, rtol=1e-5)
    # stage-1 maps (stride 4) resolve the 8 px fields; the last map of a 32 px chip is one cell, the whole chip
    result = evaluate_crops(series, ks=(1, 5, "all"), seeds=3, block_size_m=240.0, attention_epochs=100, level=1)
    print("\n" + crops_table(result) + "\n" + crops_table(result, "macro_f1"))
    blocks = {i: tuple(b) for i, b in zip(series.field_ids, np.floor(series.centroids / 240.0).astype(int))}
    for split in result["splits"]:
        test_blocks = {blocks[i] for i in split["test_ids"]}
        assert not test_blocks & {b for i, b in blocks.items() if i not in split["test_ids"]}
        assert split["min_distance_m"] >= 120.0 - 1e-6 and split["n_test"] == len(split["test_ids"]) >= 10
    stats = result["methods"]["band statistics + logreg"]["by_k"]
    assert stats["all"]["overall_accuracy"]["mean"] > 0.7                  # classes come from the NDVI profile
    assert stats["all"]["overall_accuracy"]["mean"] > stats["1"]["overall_accuracy"]["mean"]
    for agg in ("mean/logreg", "attention"):                               # majority class: 34 / 64 = 53 %
        by_k = result["methods"][f"random-init resnet18 + {agg}"]["by_k"]
        assert by_k["all"]["overall_accuracy"]["mean"] > 0.65 and by_k["all"]["macro_f1"]["mean"] > 0.6


def test_cli_evaluate_crop_on_worldcereal_with_weights(worldcereal_nc, tmp_path):
    import yaml
    from PIL import Image

    from eossl.cli import main

    index = build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    _worldcereal_fields(worldcereal_nc, index).to_file(tmp_path / "fields.gpkg")
    bands = ["B02", "B03", "B04", "B08"]
    s2 = load_sensor("sentinel2-l2a")
    mean, std = s2.norm_stats(bands)
    torch.manual_seed(0)
    info = WeightsInfo(arch="resnet18", in_chans=4, bands=bands, wavelengths_nm=s2.wavelengths(bands), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=0, img_size=32)
    weights = export_backbone(create_backbone("resnet18", 4, 32), info, tmp_path / "w")
    cfg = {"task": "crop", "weights": str(weights), "ks": [1, "all"], "seeds": 2,
           "fields": {"scenes": {"roots": [str(worldcereal_nc)], "nodata": 65535},
                      "labels": str(tmp_path / "fields.gpkg"), "class_column": "crop", "id_column": "field_id",
                      "block_size_m": 240.0, "attention_epochs": 20}}
    (tmp_path / "crop.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", "--config", str(tmp_path / "crop.yaml"), "--runs", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("evaluate-*")
    out = json.loads((run / "metrics.json").read_text())
    rows = {(r["model"], r["protocol"]) for r in out["results"]}
    assert rows == {("band statistics", "linear"), ("random-init resnet18", "mean + linear"),
                    ("random-init resnet18", "attention"), ("pretrained resnet18 test", "mean + linear"),
                    ("pretrained resnet18 test", "attention"), ("RCF 512", "linear"),
                    ("band stats + random-init resnet18", "linear"),
                    ("band stats + pretrained resnet18 test", "linear")}
    pairs = {(p["baseline"]["model"], p["pretrained"]["protocol"]) for p in out["paired_differences"]}
    assert pairs == {("random-init resnet18", "mean + linear"), ("random-init resnet18", "attention"),
                     ("band statistics", "mean + linear"), ("RCF 512", "mean + linear"),
                     ("band stats + random-init resnet18", "linear")}
    assert out["headline"]["model"] == "pretrained resnet18 test" and out["data"]["n_fields"] == 64
    for split in out["splits"]:
        assert split["n_test"] == len(split["test_ids"]) > 0 and split["min_distance_m"] >= 120.0 - 1e-6
    top = next(r for r in out["results"] if r["model"] == "band statistics" and r["k"] == "all")
    assert sum(map(sum, top["metrics_all_seeds"]["confusion_matrix"])) == sum(s["n_test"] for s in out["splits"])
    for png in ("few_label_curve.png", "confusion_matrix.png"):
        assert np.asarray(Image.open(run / png).convert("L")).std() > 5
