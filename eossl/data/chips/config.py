"""Typed configs for samplers and data modules, and the factory that turns them into objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from eossl.config import field

if TYPE_CHECKING:
    from eossl.catalog.index import SceneIndex
    from eossl.data.chips.samplers import SamplerBase

__all__ = ["SamplerConfig", "DataConfig", "make_sampler"]

SamplerKind = Literal["random", "grid", "seasonal_pair", "labels"]


@dataclass
class SamplerConfig:
    """Which windows to read. Keys that do not apply to ``kind`` are ignored by it."""

    RENAMED = {"size": "chip_size"}   # names of 0.1.0, still read (eossl.config)

    kind: SamplerKind = "random"
    chip_size: int = field(64, ge=1, help="chip side in pixels (the window read from the rasters)")
    gsd: float | None = field(None, gt=0, help="target ground sampling distance in metres (scenes in a geographic "
                                               "CRS are read on their local UTM grid); default: the finest")
    num_samples: int = field(1024, ge=1, help="random / seasonal_pair: windows per epoch")
    stride: int | None = field(None, ge=1, help="grid: step in pixels (default: chip_size)")
    min_valid_fraction: float = field(0.5, ge=0.0, le=1.0)
    seed: int = 0
    time_range: list[str | None] | None = None
    roi: str | None = field(None, help="WKT polygon")
    roi_crs: str = "EPSG:4326"
    min_days: int = field(60, ge=0, help="seasonal_pair: minimum days between the two dates")
    different_season: bool = True
    fallback: Literal["skip", "same"] = "skip"
    labels: str | None = field(None, help="labels: a vector file geopandas reads")
    label_column: str | None = None
    label_crs: str | None = field(None, help="labels: CRS of the label coordinates when the file declares none "
                                             "(e.g. EPSG:32633; EPSG:4326 for lon/lat)")
    id_column: str | None = None
    classes: list[str] | None = None
    per_label: Literal["all", "first"] = "all"
    on_outside: Literal["error", "skip"] = "error"


@dataclass
class DataConfig:
    """Where chips come from and how they are batched."""

    index: str
    root: str | None = None
    bands: list[str] | None = None
    resampling: Literal["nearest", "bilinear", "average"] = "bilinear"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    cache: str | None = field(None, help="directory of a chip cache written by `eossl cache`")
    batch_size: int = field(64, ge=1)
    num_workers: int = field(0, ge=0)
    pin_memory: bool = True


def make_sampler(index: SceneIndex, cfg: SamplerConfig, rank: int | None = None,
                 world_size: int | None = None) -> SamplerBase:
    """Build the sampler ``cfg.kind`` describes."""
    from eossl.data.chips.samplers import GridWindowSampler, RandomWindowSampler

    common = dict(roi=cfg.roi, roi_crs=cfg.roi_crs, seed=cfg.seed, rank=rank, world_size=world_size,
                  time_range=tuple(cfg.time_range) if cfg.time_range else None,
                  min_valid_fraction=cfg.min_valid_fraction)
    if cfg.kind == "random":
        return RandomWindowSampler(index, cfg.chip_size, cfg.num_samples, cfg.gsd, **common)
    if cfg.kind == "grid":
        return GridWindowSampler(index, cfg.chip_size, cfg.stride, cfg.gsd, **common)
    if cfg.kind == "seasonal_pair":
        from eossl.data.chips.pairs import SeasonalPairSampler

        return SeasonalPairSampler(index, cfg.chip_size, cfg.num_samples, cfg.gsd, min_days=cfg.min_days,
                                   different_season=cfg.different_season, fallback=cfg.fallback, **common)
    from eossl.data.labelled.points import LabelWindowSampler

    if not cfg.labels or not cfg.label_column:
        raise ValueError("sampler.kind 'labels' needs sampler.labels (a vector file) and sampler.label_column")
    return LabelWindowSampler(index, cfg.chip_size, cfg.labels, cfg.label_column, cfg.gsd, classes=cfg.classes,
                              id_column=cfg.id_column, per_label=cfg.per_label, on_outside=cfg.on_outside,
                              label_crs=cfg.label_crs, crs_key="corpus.sampler.label_crs", **common)
