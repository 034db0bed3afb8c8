"""ChipDataModule: batch contents, live vs cache, workers, DDP shards, config errors."""

from __future__ import annotations

import pytest
import torch

from eossl.config import ConfigError, from_dict
from eossl.data.chips.cache import write_cache
from eossl.data.chips.config import DataConfig, SamplerConfig, make_sampler
from eossl.data.chips.datamodule import ChipDataModule, ShuffledIndexSampler
from eossl.data.reader import ChipReader


def _cfg(s2_index, **kw):
    sampler = SamplerConfig(kind="random", chip_size=32, num_samples=40, seed=2)
    return DataConfig(index=s2_index.path, bands=["B02", "B03", "B04", "B08"], sampler=sampler, batch_size=16,
                      **kw)


def test_live_batches_carry_image_mask_bands_time_bounds(s2_index):
    dm = ChipDataModule(_cfg(s2_index), index=s2_index)
    batches = list(dm.train_dataloader())
    assert [b["image"].shape[0] for b in batches] == [16, 16, 8]
    b = batches[0]
    assert b["image"].shape == (16, 4, 32, 32) and b["image"].dtype == torch.float32
    assert b["mask"].shape == (16, 32, 32) and b["mask"].dtype == torch.bool
    assert b["bands"] == ["B02", "B03", "B04", "B08"]
    assert b["bounds"].shape == (16, 4) and b["bounds"].dtype == torch.float64
    assert len(b["time"]) == 16 and len(b["crs"]) == 16 and b["label"].tolist() == [-1] * 16
    assert 0.0 < float(b["image"][b["mask"].unsqueeze(1).expand_as(b["image"])].mean()) < 1.0


def test_workers_do_not_change_batches(s2_index):
    a = list(ChipDataModule(_cfg(s2_index), index=s2_index).train_dataloader())
    b = list(ChipDataModule(_cfg(s2_index, num_workers=2), index=s2_index).train_dataloader())
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))


def test_cached_datamodule_reads_every_chip_once_per_epoch(s2_index, tmp_path):
    cfg = _cfg(s2_index)
    reader = ChipReader(s2_index, cfg.bands)
    write_cache(tmp_path / "c", s2_index, make_sampler(s2_index, cfg.sampler, 0, 1), reader, progress=False)
    cfg.cache = str(tmp_path / "c")
    dm = ChipDataModule(cfg, index=s2_index)
    loader = dm.train_dataloader()
    bounds = torch.cat([b["bounds"] for b in loader])
    assert bounds.shape[0] == 40 and len({tuple(r) for r in bounds.tolist()}) == 40
    live = torch.cat([b["bounds"] for b in ChipDataModule(_cfg(s2_index), index=s2_index).train_dataloader()])
    assert sorted(map(tuple, bounds.tolist())) == sorted(map(tuple, live.tolist()))
    first = [b["bounds"] for b in loader]
    loader.sampler.set_epoch(1)
    assert not torch.equal(torch.cat(first), torch.cat([b["bounds"] for b in loader]))  # reshuffled per epoch


def test_shuffled_index_sampler_shards():
    shards = [list(ShuffledIndexSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5 and sorted(shards[0] + shards[1]) == list(range(10))
    assert list(ShuffledIndexSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("data, message", [
    ({"index": "x", "sampler": {"kind": "randm"}}, "sampler.kind: got 'randm'.*'random'"),
    ({"index": "x", "sampler": {"chip_size": 0}}, r"sampler.chip_size: 0 is out of range; allowed: >= 1"),
    ({"index": "x", "sampler": {"size": 32, "chip_size": 32}}, r"sampler.size: renamed chip_size, and both are given"),
    ({"index": "x", "batch_sise": 3}, "batch_sise: unknown key; allowed keys: index"),
    ({"index": "x", "sampler": {"min_valid_fraction": 1.5}}, "sampler.min_valid_fraction: 1.5 is out of range"),
    ({"bands": ["B02"]}, "index: missing required field"),
    ({"index": "x", "num_workers": "two"}, "num_workers: got 'two'.*expected an integer"),
])
def test_data_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, data)


def test_label_sampler_config_needs_labels(s2_index):
    with pytest.raises(ValueError, match="sampler.labels"):
        make_sampler(s2_index, SamplerConfig(kind="labels"))


def test_renamed_sampler_size_still_reads_with_a_warning():
    """``sampler.size`` (before 0.2) is read as ``sampler.chip_size``: in a mapping, in a partial mapping over the
    defaults (a pretrain config's corpus.sampler) and in a --set override; the warning names both keys."""
    from eossl.config import load_config
    from eossl.train.config import PretrainConfig

    with pytest.warns(FutureWarning, match=r"sampler.size is renamed sampler.chip_size"):
        assert from_dict(DataConfig, {"index": "x", "sampler": {"size": 48}}).sampler.chip_size == 48
    with pytest.warns(FutureWarning, match=r"corpus.sampler.size is renamed corpus.sampler.chip_size"):
        cfg = load_config(PretrainConfig, None, overrides=["corpus.sampler.size=40"])
    assert cfg.corpus.sampler.chip_size == 40 and cfg.corpus.sampler.num_samples == PretrainConfig().corpus.sampler.num_samples
