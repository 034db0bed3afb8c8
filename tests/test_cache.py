"""Chip cache: equals live reads, atomic shards, resume after interruption, stale caches refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eossl.catalog.build import IndexOptions, build_index
from eossl.data.chips import cache as cache_mod
from eossl.data.chips.cache import CachedChipDataset, CacheError, write_cache
from eossl.data.chips.dataset import ChipDataset
from eossl.data.chips.pairs import SeasonalPairSampler
from eossl.data.chips.samplers import RandomWindowSampler
from eossl.data.reader import ChipReader


@pytest.fixture
def setup(s2_index):
    sampler = RandomWindowSampler(s2_index, 32, num_samples=50, seed=5)
    reader = ChipReader(s2_index, bands=["B04", "B03", "B02", "B8A", "B11"])
    return s2_index, sampler, reader


def test_cache_matches_live_reads(setup, tmp_path):
    index, sampler, reader = setup
    manifest = write_cache(tmp_path / "c", index, sampler, reader, shard_size=16, progress=False)
    assert manifest["complete"] and [s["count"] for s in manifest["shards"]] == [16, 16, 16, 2]
    cached = CachedChipDataset(tmp_path / "c", index, sampler, reader)
    live = ChipDataset(reader)
    assert len(cached) == 50 and cached.bands == ["B04", "B03", "B02", "B8A", "B11"]
    for i, window in enumerate(sampler.global_windows(0)):
        a, b = cached[i], live[window]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert torch.equal(a["bounds"], b["bounds"]) and a["acquisition"] == b["acquisition"]
    arr = np.load(tmp_path / "c" / "shard-00000" / "image.npy", mmap_mode="r")
    assert isinstance(arr, np.memmap) and arr.shape == (16, 5, 32, 32)
    assert not list((tmp_path / "c").glob(".*"))  # no temporary files left


def test_interrupted_cache_is_detected_and_resumed(setup, tmp_path, monkeypatch):
    index, sampler, reader = setup
    real = cache_mod._write_shard
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        write_cache(tmp_path / "c", index, sampler, reader, shard_size=16, progress=False)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    with pytest.raises(CacheError, match="incomplete.*resume"):
        CachedChipDataset(tmp_path / "c")
    first_mtime = (tmp_path / "c" / "shard-00000" / "image.npy").stat().st_mtime_ns
    monkeypatch.setattr(cache_mod, "_write_shard", real)
    write_cache(tmp_path / "c", index, sampler, reader, shard_size=16, progress=False)
    assert (tmp_path / "c" / "shard-00000" / "image.npy").stat().st_mtime_ns == first_mtime  # not rewritten
    write_cache(tmp_path / "whole", index, sampler, reader, shard_size=16, progress=False)
    resumed, whole = CachedChipDataset(tmp_path / "c"), CachedChipDataset(tmp_path / "whole")
    assert len(resumed) == len(whole) == 50
    assert all(torch.equal(resumed[i]["image"], whole[i]["image"]) for i in range(50))


def test_stale_cache_is_refused(setup, tmp_path, tiny_s2_scene):
    index, sampler, reader = setup
    write_cache(tmp_path / "c", index, sampler, reader, shard_size=64, progress=False)
    other_seed = RandomWindowSampler(index, 32, num_samples=50, seed=6)
    with pytest.raises(CacheError, match="different sampler"):
        write_cache(tmp_path / "c", index, other_seed, reader, progress=False)
    with pytest.raises(CacheError, match="different sampler"):
        CachedChipDataset(tmp_path / "c", index, other_seed, reader)
    with pytest.raises(CacheError, match="different bands"):
        write_cache(tmp_path / "c", index, sampler, ChipReader(index, bands=["B02"]), progress=False)
    other_index = build_index([str(tiny_s2_scene)], "sentinel2-l1c", progress=False)
    with pytest.raises(CacheError, match="another index"):
        CachedChipDataset(tmp_path / "c", other_index)
    with pytest.raises(CacheError, match="not a chip cache"):
        CachedChipDataset(tmp_path)


def test_pair_cache_and_float16(worldcereal_nc, tmp_path):
    index = build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    sampler = SeasonalPairSampler(index, 16, num_samples=10, seed=0)
    reader = ChipReader(index)
    write_cache(tmp_path / "p", index, sampler, reader, dtype="float16", progress=False)
    cached = CachedChipDataset(tmp_path / "p", index)
    live = ChipDataset(reader)[sampler.global_windows(0)[3]]
    item = cached[3]
    assert item["image2"].shape == (9, 16, 16) and item["time2"] == live["time2"]
    assert torch.allclose(item["image2"], live["image2"], atol=1e-3)
    assert np.load(tmp_path / "p" / "shard-00000" / "image.npy").dtype == np.float16
    with pytest.raises(ValueError, match="float32 or float16"):
        write_cache(tmp_path / "q", index, sampler, reader, dtype="int8", progress=False)


def test_batched_reads_equal_item_reads_with_and_without_workers(setup, tmp_path):
    from torch.utils.data import DataLoader

    from eossl.data.chips.dataset import Collate, collate

    index, sampler, reader = setup
    write_cache(tmp_path / "c", index, sampler, reader, shard_size=16, progress=False)
    ds = CachedChipDataset(tmp_path / "c")
    order = [33, 2, 17, 49, 0, 16, 15]  # across shards, unsorted
    batch = collate(ds.__getitems__(order), ds.bands)
    items = collate([ds[i] for i in order], ds.bands)
    assert batch.keys() == items.keys()
    for key, value in items.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(batch[key], value), key
        else:
            assert batch[key] == value, key
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=workers, collate_fn=Collate(ds.bands))
        images = torch.cat([b["image"] for b in loader])
        assert torch.equal(images, torch.stack([ds[i]["image"] for i in range(len(ds))]))
    with pytest.raises(IndexError):
        ds.__getitems__([50])
