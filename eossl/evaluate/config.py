"""Typed configs of ``eossl evaluate`` and ``eossl finetune`` (strict: unknown keys, wrong types and out-of-range
values fail at load time with their dotted path). Defaults = the built-in EuroSAT-MS sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from eossl.config import ConfigError, field, load_config
from eossl.data.labelled.config import LabelledDataConfig, ScenesConfig
from eossl.models.pool_names import POOLS
from eossl.train.finetune_settings import FinetuneSettings

__all__ = ["EvaluateConfig", "FinetuneConfig", "LabelledDataConfig", "ScenesConfig"]

PROTOCOLS = ("linear", "knn", "finetune")
BASELINES = ("random_init", "band_statistics", "rcf", "fusion", "scratch")


@dataclass
class FieldsConfig:
    """Crop classification: field polygons over the acquisitions of ``scenes``."""

    scenes: ScenesConfig
    labels: str = field(help="field polygons: GeoPackage, GeoParquet, GeoJSON or Shapefile")
    class_column: str = field(help="the column holding each field's class")
    label_crs: str | None = field(None, help="CRS of the field polygons when the file declares none")
    id_column: str | None = None
    classes: list[str] | None = field(None, help="class names in label order; null: the sorted values found")
    chip_size: int = field(32, ge=8, help="chip side (px) around each field")
    gsd: float | None = field(None, gt=0, help="chip GSD in metres; null: the data's")
    bands: list[str] | None = None
    min_valid: float = field(0.5, ge=0, le=1, help="share of a field's pixels valid for a date to count")
    block_size_m: float = field(2000.0, gt=0, help="side of the spatial blocks that split train and test fields")
    aggregation: list[Literal["mean", "attention", "ltae"]] = field(
        default_factory=lambda: ["mean", "attention"],
        help="over the dates of a field's per-date features: mean (then logistic regression), attention (a learned "
             "query) or ltae (torchgeo's L-TAE, Garnot & Landrieu 2020; missing dates filled with the field mean)")
    pool: Literal["mean", "meanstd"] = "mean"
    level: int | None = field(1, ge=0, help="ResNet stage (0 stem .. 4) / ViT block pooled over the field; "
                                             "null: the last map (too coarse for fields much smaller than a chip)")
    attention_epochs: int = field(150, ge=1)


@dataclass
class SegmentationConfig:
    """Land-cover segmentation: a label raster over the acquisitions of ``scenes``."""

    scenes: ScenesConfig
    label_raster: str = field(help="integer label raster (any CRS / resolution; nearest resampling)")
    classes: dict[int, str] | None = field(None, help="label value -> class name; null: the values present")
    label_nodata: float | None = field(None, help="label value meaning unlabelled, if the file declares none")
    label_crs: str | None = field(None, help="CRS of the label raster when the file declares none")
    chip_size: int = field(64, ge=16, help="chip side in px (image and label windows)")
    stride: int | None = field(None, ge=1, help="window stride in px; null: chip_size (no overlap)")
    gsd: float | None = field(None, gt=0, help="chip GSD in metres; null: the scenes' finest")
    bands: list[str] | None = None
    min_labelled: float = field(0.05, ge=0, le=1, help="drop windows with fewer labelled pixels than this share")
    block_size_m: float = field(1000.0, gt=0, help="side of the spatial blocks that split train and test windows")
    epochs: int = field(20, ge=1)
    lr: float = field(1e-3, gt=0)
    batch_size: int = field(16, ge=2)


@dataclass
class SeriesConfig:
    """Per-sample time series (``task: series``): a table (eossl.data.series.tables), wide or long."""

    table: str = field(help="Parquet or CSV: one row per sample (wide: columns like OPTICAL-B02-ts0-10m or "
                            "B02_t0) or per sample and date (long: give time_column and id_column)")
    label_column: str = field(help="the column holding each sample's class")
    sensor: str = field("sentinel2-l2a", help="sensor of the band columns (names, units, wavelengths)")
    id_column: str | None = field(None, help="the column naming each sample (long tables: required)")
    time_column: str | None = field(None, help="long tables: the date column")
    bands: list[str] | None = field(None, help="bands to use, in this order; null: every band the table has")
    nodata: float | None = field(None, help="fill value of the table (default: the sensor's, and 65535)")
    start_column: str = field("start_date", help="wide tables: the date of step 0")
    step: Literal["month", "10d", "day"] = field("month", help="wide tables: the time between steps")
    composite: Literal["month"] | None = field(None, help="long tables: average the dates of each month")
    classes: list[str] | None = field(None, help="class names in label order; null: the sorted values found")
    block_column: str | None = field(None, help="a column of spatial blocks for the splits (e.g. h3_l3_cell); "
                                                "null: a block_size_m grid over lon/lat")
    block_size_m: float = field(10000.0, gt=0, help="side of the square blocks (equal-area grid) of the splits")
    min_per_class: int = field(20, ge=2, help="classes with fewer samples are left out (reported)")
    baselines: list[Literal["raw_series", "random_forest", "phenology", "random_init", "fusion"]] = field(
        default_factory=lambda: ["raw_series", "random_forest", "phenology", "random_init", "fusion"],
        help="rows beside the encoder's (eossl.evaluate.series_eval): the raw series with logistic regression and "
             "with a random forest, temporal band statistics + NDVI phenology, the encoder randomly initialised, "
             "the raw series fused with the pretrained and with the random-init features (with weights only)")
    encoder: dict = field(default_factory=lambda: {"dim": 128, "depth": 2, "heads": 8},
                          help="the pixel time-series encoder of the random-init row (eossl.models.temporal)")

    def load(self):
        from eossl.data.series.tables import read_series_table

        return read_series_table(self.table, self.sensor, label_column=self.label_column, id_column=self.id_column,
                                 time_column=self.time_column, bands=self.bands, nodata=self.nodata,
                                 start_column=self.start_column, step=self.step, composite=self.composite,
                                 classes=self.classes, block_column=self.block_column)


STACK_ROWS = ("pretrained", "raw", "random_forest", "phenology", "random_init", "fusion_pretrained",
              "fusion_random_init", "pca", "rocket", "image_pretrained", "image_sequence", "image_stack_norm",
              "image_random_init")


@dataclass
class StackEntryConfig:
    """One labelled scene stack of ``task: stack``."""

    path: str = field(help="folder of the stack's NetCDF/Zarr or GeoTIFF files, or one datacube file")
    labels: str | None = field(None, help="label raster (NetCDF/Zarr variable or GeoTIFF) on the stack's grid; "
                                          "null: the one label file in the stack's folder")
    variable: str | None = field(None, help="the label file's variable (e.g. CT); null: its one integer variable")
    legend: str | None = field(None, help="CSV of label code -> class name; null: the one .csv/.tsv in the "
                                          "label file's folder, if any (else the codes name the classes)")
    code_column: str | None = field(None, help="the legend's column of label codes; null: found by content")
    name_column: str | None = field(None, help="the legend's column of class names; null: found by content")
    sensor: str | None = field(None, help="sensor of the stack (data_catalog/sensors); null: inferred from the files "
                                          "(an SCL layer or product attributes)")
    name: str | None = field(None, help="the stack's name in tables; null: its folder's name")
    label_crs: str | None = field(None, help="CRS of a label file that declares none (e.g. EPSG:32631); a label "
                                             "file that declares one must agree")


@dataclass
class StackTaskConfig:
    """Few-label crop types on labelled scene stacks, scored across parcels (eossl.evaluate.tasks.stack); ks,
    seeds, seed and C are the evaluation's."""

    stacks: list[StackEntryConfig] = field(help="the stacks; every figure is given per stack and pooled")
    period: str = field("10D", help="composite period: month or <n>D")
    bands: list[str] | None = field(None, help="bands to read, in this order; null: every band of the stack")
    include_s1: bool = field(False, help="add Sentinel-1 VV/VH as channels")
    min_parcel_pixels: int = field(20, ge=1, help="smaller 8-connected regions of one label are not parcels")
    buffer: int = field(2, ge=0, help="pixels between training pixels and test parcels")
    rows: list[Literal[STACK_ROWS]] = field(default_factory=lambda: list(STACK_ROWS),
                                            help="rows to score (rows needing weights are skipped without them)")
    headline: Literal[STACK_ROWS] | None = field(None, help="the headline row, named before scoring; null: "
                                                            "fusion_pretrained with weights, else raw")
    C_grid: list[float] | None = field(None, help="choose C per fit from these by cross-validation on the "
                                                  "training pixels; null: the evaluation's C")
    pca_components: int = field(32, ge=1)
    pca_whiten: bool = True
    rocket_features: int = field(2000, ge=84, help="MiniRocket features (rounded to a multiple of 84)")
    rocket_max_pixels: int = field(16384, ge=100, help="pixels whose kernel outputs set the biases")
    trees: int = field(300, ge=1, help="trees of the random-forest row")
    encoder: dict = field(default_factory=lambda: {"dim": 128, "depth": 2, "heads": 8},
                          help="the random-init encoder's arguments without weights (with weights: theirs)")
    resamples: int = field(1000, ge=10, help="bootstrap resamples of the test parcels")
    image_weights: str | None = field(None, help="exported image backbone (eossl pretrain) for the image rows: "
                                                 "each period's chip around a pixel, aggregated over time; null: "
                                                 "no image rows")
    image_chip: int = field(16, ge=8, help="chip around each pixel read by the image backbone, px")
    image_components: int = field(16, ge=1, help="principal axes per period of the image_sequence row")


@dataclass
class EvaluateConfig:
    task: Literal["patch", "crop", "segment", "series", "stack"] = field(
        "patch", help="patch: labelled chips (data); crop: field polygons (fields); segment: a label raster "
                      "(segmentation); series: per-sample time series from a table (series); stack: labelled "
                      "scene stacks, scored across parcels (stack)")
    data: LabelledDataConfig = field(default_factory=LabelledDataConfig)
    fields: FieldsConfig | None = None
    segmentation: SegmentationConfig | None = None
    series: SeriesConfig | None = None
    stack: StackTaskConfig | None = None
    weights: str | None = field(None, help="exported weights directory (weights.json + backbone.safetensors), or "
                                           "torchgeo:<WeightsEnum name>; null: baselines only")
    weights_file: str | None = field(None, help="local file of torchgeo:NAME weights (no download)")
    compare_weights: list[str] = field(default_factory=list,
                                       help="more weights scored beside weights on the same splits (task: patch; "
                                            "eossl:NAME, torchgeo:NAME or directories): rows per protocol each and "
                                            "paired differences weights minus each (`--weights A B C`)")
    arch: str = field("resnet18", help="architecture of the baselines when no weights are given")
    pool: Literal[POOLS] | None = field(None, help="frozen features for the linear probe and kNN (the random-init "
                                                   "row too); null: the weights' recorded feature_pool, else last")
    protocols: list[Literal[PROTOCOLS]] = field(default_factory=lambda: list(PROTOCOLS))
    baselines: list[Literal[BASELINES]] = field(
        default_factory=lambda: list(BASELINES),
        help="rows beside the pretrained ones, on the same splits: random_init (same arch, frozen), band_statistics, "
             "rcf (random convolutional features, filters from each seed's training split), fusion (band "
             "statistics + pretrained / random-init features), scratch (fine-tuned from a random init)")
    ks: list[int | Literal["all"]] = field(default_factory=lambda: [5, 10, "all"],
                                           help="labelled samples per class; 'all' = the whole training pool")
    seeds: int = field(5, ge=1, help="repeats (splits and inits), reported as mean and 95% CI")
    seed: int = 0
    test_fraction: float = field(0.3, gt=0, lt=1, help="stratified hold-out per seed")
    C: float = field(1.0, gt=0, help="inverse L2 strength of the logistic-regression probe")
    C_grid: list[float] | None = field(None, help="task patch: choose the linear probe's C per fit from these by "
                                                  "stratified cross-validation on its training chips only; null: C")
    knn_neighbors: int = field(5, ge=1)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    device: str = field("auto", help="auto: cuda if available, else mps, else cpu")

    def __post_init__(self):
        if any(isinstance(k, int) and k < 1 for k in self.ks) or not self.ks:
            raise ConfigError(f"ks: expected positive integers or 'all', got {self.ks}")
        bad = [p for p in self.protocols if p not in PROTOCOLS] + [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ConfigError(f"unknown protocol/baseline {bad}; protocols: {', '.join(PROTOCOLS)}; baselines: "
                              f"{', '.join(BASELINES)}")
        if self.compare_weights and (self.weights is None or self.task != "patch"):
            raise ConfigError("compare_weights: several weights are compared on task: patch, beside weights (the "
                              "first of --weights A B C)")
        _check_task(self)

    def resolved_pool(self) -> str:
        """``pool``, or when null the feature_pool recorded in the weights' weights.json ("last" without weights)."""
        if self.pool is not None:
            return self.pool
        if self.weights is None:
            return "last"
        from eossl.models.weights import read_weights_info

        return read_weights_info(self.weights).feature_pool


@dataclass
class FinetuneConfig:
    task: Literal["patch", "segment"] = field("patch", help="patch: labelled chips (data); segment: a label "
                                                            "raster (segmentation)")
    data: LabelledDataConfig = field(default_factory=LabelledDataConfig)
    segmentation: SegmentationConfig | None = None
    weights: str | None = field(None, help="exported weights directory, or torchgeo:<WeightsEnum name>; null: "
                                           "train from scratch")
    weights_file: str | None = field(None, help="local file of torchgeo:NAME weights (no download)")
    arch: str = field("resnet18", help="architecture when training from scratch (no weights)")
    k: int | Literal["all"] = field("all", help="labelled samples per class for training")
    test_fraction: float = field(0.3, gt=0, lt=1, help="stratified hold-out scored in metrics.json")
    seed: int = 0
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    device: str = "auto"

    def __post_init__(self):
        _check_task(self)


def _check_task(cfg) -> None:
    section = {"crop": "fields", "segment": "segmentation", "series": "series", "stack": "stack"}.get(cfg.task)
    if section is not None and getattr(cfg, section, None) is None:
        raise ConfigError(f"task {cfg.task!r} needs a {section}: section (see configs/evaluate/ for an example)")


def with_resolved_weights(cfg):
    """``cfg`` with ``weights`` a weights directory: ``eossl:NAME`` the shipped folder (checksums verified),
    ``torchgeo:NAME`` imported (once, cached; from ``weights_file`` when given, see :mod:`eossl.models.published`)."""
    from eossl.models.shipped import is_shipped

    if getattr(cfg, "compare_weights", None):
        from eossl.models.published import resolve_weights

        cfg = replace(cfg, compare_weights=[resolve_weights(w) for w in cfg.compare_weights])
    if cfg.weights is None or not (str(cfg.weights).startswith("torchgeo:") or is_shipped(cfg.weights)):
        if cfg.weights_file is not None:
            raise ConfigError(f"weights_file ({cfg.weights_file}) is the local file of published weights: give "
                              f"weights: torchgeo:NAME (--weights torchgeo:NAME) with it")
        return cfg
    from eossl.models.published import resolve_weights

    return replace(cfg, weights=resolve_weights(cfg.weights, cfg.weights_file), weights_file=None)


def config_with_weights(cls, path: str | Path | None, overrides: list[str], weights: str | list[str] | None,
                        weights_file: str | None = None, resolve: bool = True):
    """:func:`~eossl.config.load_config` with the ``--weights`` / ``--weights-file`` flags as overrides (several
    weights: the first is ``weights``, the others ``compare_weights``), published weights imported (unless
    ``resolve`` is False, e.g. for --dry-run) and the weights directories checked."""
    import json

    many = [weights] if isinstance(weights, str) else list(weights or [])
    extra = ([f"weights={many[0]}"] if many else []) + ([f"weights_file={weights_file}"] if weights_file else [])
    if len(many) > 1:
        extra.append(f"compare_weights={json.dumps(many[1:])}")
    cfg = load_config(cls, path, overrides=list(overrides) + extra)
    if not resolve:
        return cfg
    cfg = with_resolved_weights(cfg)
    for w in [cfg.weights, *getattr(cfg, "compare_weights", [])]:
        if w is not None and not (Path(w) / "weights.json").is_file():
            raise FileNotFoundError(f"weights: no weights.json in {w}; export a run with `eossl export`")
    return cfg


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
