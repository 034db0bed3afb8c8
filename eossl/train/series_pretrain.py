"""Temporal pretraining of pixel time series (``eossl pretrain-series``): masked autoencoding and/or invariance
between two views of each pixel.

The corpus is unlabeled pixel series sampled from indexed scenes and datacubes, the rows of a series table (its
labels unused; ``exclude_ids`` keeps test samples out) and/or every pixel of scene stacks
(:mod:`eossl.train.series_corpus`). ``objective`` picks the loss (:mod:`eossl.train.series_objective`); the
default, ``masked``, hides values from the encoder in three ways, drawn per
sample with a seeded generator: random time steps (``step_ratio``), one contiguous block of steps
(``block_steps``, with probability ``block_prob``) and random single values (``band_ratio``, bands hidden at one
step). The encoder (:class:`~eossl.models.temporal.PixelSeriesEncoder`) reads the rest, reconstructs every band at
every step, and the loss is the MSE on the hidden values that are valid
(:func:`eossl.losses.masked.masked_series_loss`). ``contrastive`` scores VICReg or NT-Xent between two views (random
subsets of dates, a temporal shift, a spectral gain) of each pixel. The learning rate follows the shared warmup + cosine schedule
(:func:`eossl.schedule.cosine_with_warmup`) and a non-finite loss stops the run naming the step
(:func:`eossl.train.guard.check_finite_loss`), as in image pretraining. ``encoder`` and ``mask`` are typed
(:class:`~eossl.models.config.SeriesEncoderConfig`, :class:`~eossl.train.config.SeriesMaskConfig`).

The run directory holds ``config.yaml``, ``corpus.json`` (what was pretrained on), ``metrics.csv`` (loss per
epoch), ``weights/`` (``encoder.safetensors`` + ``weights.json``, arch ``pixel_transformer``, the bands,
wavelengths, normalisation and the time convention) and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from eossl.catalog.sensors import load_sensor
from eossl.config import to_dict
from eossl.data.normalization import Normalization
from eossl.data.series.channels import PSEUDO_WAVELENGTHS_NM, channel_normalization, channel_wavelengths
from eossl.data.series.tables import SeriesSamples
from eossl.models.config import SeriesEncoderConfig
from eossl.models.temporal import (
    SERIES_ARCH,
    PixelSeriesEncoder,
    encoder_kwargs,
    export_series_encoder,
    load_series_encoder,
)
from eossl.models.weights import WeightsInfo
from eossl.runs import write_json, write_text
from eossl.schedule import cosine_with_warmup
from eossl.train.guard import check_finite_loss
from eossl.train.series_corpus import series_corpus
from eossl.train.series_objective import SeriesObjective, hide_mask

log = logging.getLogger(__name__)

__all__ = ["hide_mask", "series_corpus", "schedule_steps", "pretrain_series", "load_series_encoder"]

TIME_CONVENTION = "day of year of each step (NaN unknown), steps in time order; any number of steps"


def _provenance(corpus: dict, init=None) -> list:
    """What the weights were pretrained on: this run's corpus, after what the ``init`` weights (their
    :class:`~eossl.models.info.WeightsInfo`, written by this module: JSON ``pretrain_data``) had seen."""
    parts = list(corpus["parts"])
    if init is None:
        return parts
    return [{"kind": "continued from", "from": corpus["init"], "pretrained on": json.loads(init.pretrain_data)},
            *parts]


def _tensors(s: SeriesSamples, norm: Normalization):
    return norm.apply_series(s.values, s.valid), torch.from_numpy(s.valid), torch.from_numpy(s.day_of_year())


def _encoder(cfg, sensor, samples: SeriesSamples, wavelengths: list[float], corpus: dict):
    """(encoder, its SeriesEncoderConfig, Normalization, the ``cfg.init`` weights' WeightsInfo or None): continued
    from ``cfg.init`` (its arguments and statistics) or built from ``cfg.encoder`` under the global seed (the
    sensor catalog's statistics; the corpus's for VV/VH: :func:`~eossl.data.series.channels.channel_normalization`)."""
    bands = samples.bands
    if not cfg.init:
        encoder = PixelSeriesEncoder(wavelengths, **cfg.encoder.kwargs())
        return encoder, cfg.encoder, channel_normalization(sensor, bands, samples.values, samples.valid), None
    loaded = load_series_encoder(cfg.init, wavelengths)
    corpus["init"] = str(cfg.init)
    log.info("continuing from %s (pretrained on %s)", cfg.init, loaded.info.pretrain_data)
    return (loaded.model, SeriesEncoderConfig(**encoder_kwargs(loaded.info)),
            channel_normalization(sensor, bands, samples.values, samples.valid, Normalization.of_weights(loaded.info)),
            loaded.info)


def schedule_steps(n: int, batch_size: int, epochs: int) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warmup steps) of series pretraining on ``n`` series: warmup is a tenth of
    the run, at most two epochs."""
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = steps_per_epoch * epochs
    return steps_per_epoch, total, min(total // 10, steps_per_epoch * 2)


def _train(encoder: PixelSeriesEncoder, objective: SeriesObjective, data: tuple, cfg, progress: bool) -> list[dict]:
    """AdamW on the ``objective`` (:class:`~eossl.train.series_objective.SeriesObjective`; the encoder's and the
    objective's parameters) under the shared warmup + cosine schedule (:func:`eossl.schedule.cosine_with_warmup`)
    and the non-finite guard; one row per epoch (the loss, its parts when it has several, the learning rate)."""
    x, valid, doy = data
    params = [*encoder.parameters(), *objective.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch, total, warmup = schedule_steps(len(x), cfg.batch_size, cfg.epochs)
    log.info("series pretraining (%s): %d steps (%d per epoch), warmup %d, peak lr %g", cfg.objective, total,
             steps_per_epoch, warmup, cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, total, warmup))
    g = torch.Generator().manual_seed(cfg.seed)
    rows, step = [], 0
    bar = tqdm(total=total, desc="series pretraining", unit="step", disable=not progress)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=g)
        losses, parts = [], []
        encoder.train()
        objective.train()
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss, logged = objective(encoder, x[idx], valid[idx], doy[idx], g)
            check_finite_loss(loss, step, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            parts.append(logged)
            bar.update(1)
        extra = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
        rows.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0],
                     **extra})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
    bar.close()
    return rows


def _metrics_csv(rows: list[dict]) -> str:
    """epoch,step,loss,lr, then the objective's parts (none for masked)."""
    parts = [k for k in rows[0] if k not in ("epoch", "step", "loss", "lr")]
    head = ",".join(["epoch", "step", "loss", "lr", *parts]) + "\n"
    return head + "".join(f"{r['epoch']},{r['step']},{r['loss']:.6f},{r['lr']:.6g}"
                          + "".join(f",{r[k]:.6f}" for k in parts) + "\n" for r in rows)


def _ssl_method(cfg) -> str:
    """weights.json ``ssl_method``: series_mae (masked), series_vicreg / series_nt_xent, or series_mae+vicreg."""
    if cfg.objective == "masked":
        return "series_mae"
    loss = cfg.contrastive.loss
    return f"series_{loss}" if cfg.objective == "contrastive" else f"series_mae+{loss}"


def _weights_info(cfg, samples: SeriesSamples, sensor, wavelengths, norm, encoder_cfg, corpus, init_info):
    """The exported weights' description (bands, wavelengths or pseudo-wavelengths, statistics, provenance)."""
    optical = [b for b in samples.bands if b not in PSEUDO_WAVELENGTHS_NM]
    extra = {"temporal": {**encoder_cfg.kwargs(), "time": TIME_CONVENTION, "steps_seen": corpus["steps"]},
             "sensor": sensor.name, "mask": asdict(cfg.mask)}
    if cfg.objective != "masked":
        extra.update(objective=cfg.objective, views=asdict(cfg.views), contrastive=asdict(cfg.contrastive))
    pseudo = {b: PSEUDO_WAVELENGTHS_NM[b] for b in samples.bands if b in PSEUDO_WAVELENGTHS_NM}
    if pseudo:
        extra["pseudo_wavelengths_nm"] = pseudo
    return WeightsInfo(arch=SERIES_ARCH, in_chans=len(samples.bands), bands=list(samples.bands),
                       wavelengths_nm=list(wavelengths),
                       gsd_m=float(min(sensor.band(b).gsd_m for b in optical or sensor.band_names)),
                       normalization=norm.to_dict(), ssl_method=_ssl_method(cfg),
                       pretrain_data=json.dumps(_provenance(corpus, init_info)), epochs=cfg.epochs, extra=extra)


def pretrain_series(cfg, run_dir: str | Path, progress: bool = True) -> dict:
    """Train ``cfg`` (:class:`~eossl.train.config.SeriesPretrainConfig`) into ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    samples, corpus = series_corpus(cfg)
    write_json(run_dir / "corpus.json", corpus)
    sensor = load_sensor(samples.sensor)
    wavelengths = channel_wavelengths(sensor, samples.bands)
    encoder, encoder_cfg, norm, init_info = _encoder(cfg, sensor, samples, wavelengths, corpus)
    encoder = encoder.to(device)
    if cfg.init:
        write_json(run_dir / "corpus.json", corpus)
    # built after the encoder: a masked objective has no parameters and draws nothing from torch's generator
    objective = SeriesObjective(cfg.objective, cfg.mask, cfg.views, cfg.contrastive, encoder.num_features,
                                norm.mean, norm.std, device).to(device)
    start = time.time()
    rows = _train(encoder, objective, _tensors(samples, norm), cfg, progress)
    seconds = time.time() - start
    write_text(run_dir / "metrics.csv", _metrics_csv(rows))
    info = _weights_info(cfg, samples, sensor, wavelengths, norm, encoder_cfg, corpus, init_info)
    weights = export_series_encoder(encoder, info, run_dir / "weights")
    step = rows[-1]["step"]
    summary = {"run_dir": str(run_dir), "weights": str(weights), "steps": step, "epochs": cfg.epochs,
               "seconds": round(seconds, 1), "steps_per_second": round(step / max(seconds, 1e-9), 3),
               "objective": cfg.objective, "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
               "corpus": corpus}
    write_json(run_dir / "summary.json", summary)
    log.info("series pretraining: %d steps in %.0f s, loss %.4f -> %.4f; weights in %s", step, seconds,
             rows[0]["loss"], rows[-1]["loss"], weights)
    return summary
