"""A picture of what pretraining sees: chips of an index, their views under a view spec, as a PNG grid (true and
false colour) with a JSON sidecar (``eossl views`` and the pipeline report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.augment.views import ViewGenerator, ViewSpec
from eossl.config import to_dict
from eossl.data.chips.config import SamplerConfig, make_sampler
from eossl.data.chips.dataset import ChipDataset, Collate
from eossl.data.reader import ChipReader
from eossl.report.plots import composite_bands, save_view_grid
from eossl.runs import write_json

__all__ = ["write_view_grid"]


def write_view_grid(out: Path, index, spec: ViewSpec, *, bands: list[str] | None = None, chips: int = 6,
                    chip_size: int = 64, seed: int = 0, pairs: bool = False, title: str = "") -> dict:
    """Sample ``chips`` windows of ``index``, make their views and write the PNG grid plus a JSON sidecar."""
    reader = ChipReader(index, bands)
    sampler = make_sampler(index, SamplerConfig(kind="seasonal_pair" if pairs else "random", chip_size=chip_size,
                                                num_samples=chips, seed=seed), rank=0, world_size=1)
    dataset = ChipDataset(reader)
    batch = Collate(reader.bands)([dataset[w] for w in sampler])
    sensor = index.sensor(0)
    mean, std = sensor.norm_stats(reader.bands)
    gen = ViewGenerator(spec, reader.bands, sensor.wavelengths(reader.bands), mean, std, chip_size, seed=seed)
    views = gen(batch["image"], batch["mask"], batch.get("image2"), batch.get("mask2"))
    view_arrays = [(v["image"] * gen.std + gen.mean).numpy() for v in views]  # back to reflectance for display
    save_view_grid(out, batch["image"].numpy(), batch["mask"].numpy(), view_arrays,
                   [v["mask"].numpy() for v in views], composite_bands(sensor, reader.bands), title=title)
    meta = {"spec": to_dict(spec), "seed": seed, "bands": reader.bands, "index": index.path, "pairs": pairs,
            "chips": int(len(sampler)), "view_std": [float(np.std(v)) for v in view_arrays]}
    write_json(out.with_suffix(".json"), meta)
    return meta
