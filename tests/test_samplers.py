"""Samplers: determinism, DDP shards, grid coverage, validity rejection, ROI/time filters, pairs, labels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from shapely.geometry import Point, box
from torch.utils.data import DataLoader

from eossl.catalog.build import IndexOptions, build_index
from eossl.data.chips.dataset import ChipDataset, Collate
from eossl.data.chips.pairs import SeasonalPairSampler, season_of
from eossl.data.chips.samplers import GridWindowSampler, RandomWindowSampler
from eossl.data.labelled.points import LabelWindowSampler
from eossl.data.reader import ChipReader
from eossl.data.windows import valid_fraction


def _write_half_nodata_scene(root, date="20200615T101031", crs="EPSG:32633", size=200):
    """Four 10 m bands, left half nodata (0), one file per band."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    transform = from_origin(500000, 5600000, 10, 10)
    for band in ("B02", "B03", "B04", "B08"):
        data = rng.integers(100, 5000, (size, size), dtype=np.uint16)
        data[:, : size // 2] = 0
        with rasterio.open(root / f"T33UUP_{date}_{band}.tif", "w", driver="GTiff", width=size, height=size,
                           count=1, dtype="uint16", crs=crs, transform=transform) as dst:
            dst.write(data, 1)
    return root


@pytest.fixture(scope="module")
def half_index(tmp_path_factory):
    root = _write_half_nodata_scene(tmp_path_factory.mktemp("half") / "scene")
    return build_index([str(root)], "sentinel2-l2a", progress=False)


def test_same_seed_same_windows_and_epochs_differ(s2_index):
    a = RandomWindowSampler(s2_index, 64, num_samples=50, seed=3)
    b = RandomWindowSampler(s2_index, 64, num_samples=50, seed=3)
    c = RandomWindowSampler(s2_index, 64, num_samples=50, seed=4)
    assert list(a) == list(b)
    assert list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


def test_windows_snap_to_pixel_grid_and_have_the_requested_size(s2_index):
    bx0, _, _, by1 = s2_index.bounds(0)
    for w in RandomWindowSampler(s2_index, 48, num_samples=40, seed=0):
        assert w.bounds[2] - w.bounds[0] == pytest.approx(480)
        assert w.bounds[3] - w.bounds[1] == pytest.approx(480)
        assert (w.bounds[0] - bx0) / 10 == pytest.approx(round((w.bounds[0] - bx0) / 10), abs=1e-6)
        assert (by1 - w.bounds[3]) / 10 == pytest.approx(round((by1 - w.bounds[3]) / 10), abs=1e-6)
        assert box(*s2_index.bounds(0)).contains(box(*w.bounds))


def test_ddp_shards_are_disjoint_and_cover_the_epoch(s2_index):
    full = RandomWindowSampler(s2_index, 32, num_samples=101, seed=1, rank=0, world_size=1)
    shards = [list(RandomWindowSampler(s2_index, 32, num_samples=101, seed=1, rank=r, world_size=2))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50  # drop_last: equal shard sizes for DDP
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(list(full)[:100])
    with pytest.raises(ValueError, match="rank 2"):
        RandomWindowSampler(s2_index, 32, num_samples=4, rank=2, world_size=2)


def test_same_chips_with_0_and_2_workers(s2_index):
    sampler = RandomWindowSampler(s2_index, 64, num_samples=24, seed=11)
    reader = ChipReader(s2_index)
    batches = []
    for workers in (0, 2):
        loader = DataLoader(ChipDataset(reader), batch_size=8, sampler=sampler, num_workers=workers,
                            collate_fn=Collate(reader.bands))
        batches.append(torch.cat([b["image"] for b in loader]))
    assert batches[0].shape == (24, 13, 64, 64)
    assert torch.equal(batches[0], batches[1])


def test_random_rejects_windows_below_valid_fraction(half_index):
    reader = ChipReader(half_index)
    sampler = RandomWindowSampler(half_index, 32, num_samples=60, seed=0, min_valid_fraction=0.9)
    fractions = []
    for w in sampler:
        assert valid_fraction(half_index, 0, w.bounds) >= 0.9
        fractions.append(reader.read(0, w.bounds, size=32).mask.mean())
    # the coarse mask is exact here (200 px < mask size), so the real fraction holds too
    assert min(fractions) >= 0.9
    everything = RandomWindowSampler(half_index, 32, num_samples=200, seed=0, min_valid_fraction=0.0)
    assert min(valid_fraction(half_index, 0, w.bounds) for w in everything) < 0.5


def test_random_sampler_gives_a_clear_error_when_nothing_is_valid_enough(half_index):
    with pytest.raises(ValueError, match="min_valid_fraction"):
        RandomWindowSampler(half_index, 150, num_samples=3, min_valid_fraction=0.95, max_tries=20).global_windows()


def test_grid_covers_the_valid_extent_with_stride(half_index):
    grid = GridWindowSampler(half_index, 40, stride=40)
    windows = list(grid)
    x0, y0, x1, y1 = half_index.bounds(0)
    # the left half is nodata: windows only from x >= middle (minus one window that straddles it)
    assert min(w.bounds[0] for w in windows) >= x0 + 1000 - 400
    assert max(w.bounds[2] for w in windows) == pytest.approx(x1)
    assert min(w.bounds[1] for w in windows) == pytest.approx(y0)
    assert max(w.bounds[3] for w in windows) == pytest.approx(y1)
    cover = np.zeros((200, 200), dtype=bool)
    for w in windows:
        c, r = int(round((w.bounds[0] - x0) / 10)), int(round((y1 - w.bounds[3]) / 10))
        cover[r:r + 40, c:c + 40] = True
    assert cover[:, 100:].all()
    overlapping = GridWindowSampler(half_index, 40, stride=20)
    assert len(overlapping) > len(grid)
    assert len({w.bounds for w in windows}) == len(windows)


def test_roi_and_time_range_filters(half_index, s2_index):
    x0, y0, x1, y1 = s2_index.bounds(0)
    roi_native = box(x0 + 2000, y0 + 2000, x0 + 6000, y0 + 6000)
    roi_4326 = gpd.GeoSeries([roi_native], crs=s2_index.crs(0)).to_crs("EPSG:4326").iloc[0]
    sampler = RandomWindowSampler(s2_index, 32, num_samples=40, seed=0, roi=roi_4326.wkt)
    for w in sampler:
        centre = Point((w.bounds[0] + w.bounds[2]) / 2, (w.bounds[1] + w.bounds[3]) / 2)
        assert roi_native.buffer(20).contains(centre)
    with pytest.raises(ValueError, match="no acquisition"):
        RandomWindowSampler(half_index, 32, num_samples=4, time_range=("2021-01-01", "2021-12-31"))
    with pytest.raises(ValueError, match="datetime"):
        RandomWindowSampler(s2_index, 32, num_samples=4, time_range=("2021-01-01", None))
    far = box(0, 0, 1, 1).wkt
    with pytest.raises(ValueError):
        RandomWindowSampler(s2_index, 32, num_samples=4, roi=far)


@pytest.fixture(scope="module")
def cube_index(worldcereal_nc):
    return build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)


def test_seasonal_pairs_on_the_worldcereal_cube(cube_index):
    sampler = SeasonalPairSampler(cube_index, 32, num_samples=40, seed=0, min_days=90)
    empty = {i for i in range(len(cube_index)) if cube_index.frame["valid_fraction"].iloc[i] == 0}
    assert len(empty) == 2  # December and January are entirely nodata
    lat = 50.6
    for w in sampler:
        a, b = w.acquisitions
        assert a != b and not ({a, b} & empty)
        ta, tb = cube_index.datetime(a), cube_index.datetime(b)
        assert ta < tb and (tb - ta).days >= 90
        assert season_of(ta.month, lat) != season_of(tb.month, lat)
    assert list(sampler) == list(SeasonalPairSampler(cube_index, 32, num_samples=40, seed=0, min_days=90))
    reader = ChipReader(cube_index)
    sample = ChipDataset(reader)[next(iter(sampler))]
    assert sample["image"].shape == sample["image2"].shape == (9, 32, 32)
    assert sample["time"] < sample["time2"]
    assert not torch.equal(sample["image"], sample["image2"])


def test_seasonal_pair_fallback_for_a_single_date(tmp_path):
    root = _write_half_nodata_scene(tmp_path / "one")
    index = build_index([str(root)], "sentinel2-l2a", progress=False)
    assert index.datetime(0) == pd.Timestamp("2020-06-15T10:10:31", tz="UTC")
    with pytest.raises(ValueError, match="fallback='same'"):
        SeasonalPairSampler(index, 16, num_samples=5, fallback="skip")
    same = list(SeasonalPairSampler(index, 16, num_samples=5, fallback="same"))
    assert all(w.acquisitions == (0, 0) for w in same)


def test_seasonal_pairs_need_datetimes(s2_index):
    with pytest.raises(ValueError, match="datetimes"):
        SeasonalPairSampler(s2_index, 16, num_samples=5, fallback="same")


def _labels_file(tmp_path, index, n=6, crs="EPSG:4326", driver="GeoJSON", outside=0):
    x0, y0, x1, y1 = index.bounds(0)
    rng = np.random.default_rng(0)
    xs = rng.uniform(x0 + 1000, x1 - 1000, n)
    ys = rng.uniform(y0 + 1000, y1 - 1000, n)
    pts = [Point(x, y) for x, y in zip(xs, ys)] + [Point(x0 - 50000, y0 - 50000)] * outside
    frame = gpd.GeoDataFrame({"crop": (["maize", "wheat"] * n)[: n + outside],
                              "field_id": [f"f{i}" for i in range(n + outside)]},
                             geometry=pts, crs=index.crs(0)).to_crs(crs)
    path = tmp_path / ("labels.geojson" if driver == "GeoJSON" else "labels.gpkg")
    frame.to_file(path, driver=driver)
    return path, list(zip(xs, ys))


def test_label_windows_are_centred_on_labels_and_carry_them(s2_index, tmp_path):
    path, points = _labels_file(tmp_path, s2_index)
    sampler = LabelWindowSampler(s2_index, 32, path, "crop", id_column="field_id")
    windows = list(sampler)
    assert [w.label_id for w in windows] == [f"f{i}" for i in range(6)]
    assert sampler.classes == ["maize", "wheat"]
    for w, (x, y) in zip(windows, points):
        assert abs((w.bounds[0] + w.bounds[2]) / 2 - x) <= 10 and abs((w.bounds[1] + w.bounds[3]) / 2 - y) <= 10
        assert sampler.classes[w.label] == w.label_name
    batch = ChipDataset(ChipReader(s2_index))[windows[0]]
    assert batch["label"] == windows[0].label


def test_label_sampler_errors(s2_index, tmp_path):
    path, _ = _labels_file(tmp_path, s2_index, driver="GPKG", outside=2)
    with pytest.raises(ValueError, match="no label column 'class'.*crop"):
        LabelWindowSampler(s2_index, 32, path, "class")
    with pytest.raises(ValueError, match="2 of 8 label geometries lie outside"):
        list(LabelWindowSampler(s2_index, 32, path, "crop"))
    kept = list(LabelWindowSampler(s2_index, 32, path, "crop", on_outside="skip"))
    assert len(kept) == 6
    with pytest.raises(FileNotFoundError, match="label file not found"):
        LabelWindowSampler(s2_index, 32, tmp_path / "missing.gpkg", "crop")
