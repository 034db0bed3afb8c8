"""Temporal pretraining: masked autoencoding of pixel time series (``eossl pretrain-series``).

The corpus is unlabeled pixel series sampled from indexed scenes and datacubes
(:func:`eossl.data.pixel_series.sample_pixel_series`) and/or the rows of a series table (its labels unused;
``exclude_ids`` keeps test samples out). Each batch hides values from the encoder in three ways, drawn per
sample with a seeded generator: random time steps (``step_ratio``), one contiguous block of steps
(``block_steps``, with probability ``block_prob``) and random single values (``band_ratio``, bands hidden at one
step). The encoder (:class:`~eossl.models.temporal.PixelSeriesEncoder`) reads the rest, reconstructs every band at
every step, and the loss is the MSE on the hidden values that are valid
(:func:`eossl.losses.masked.masked_series_loss`). The learning rate follows the shared warmup + cosine schedule
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
from eossl.data.series.tables import SeriesSamples
from eossl.losses.masked import masked_series_loss
from eossl.models.config import SeriesEncoderConfig
from eossl.models.temporal import (
    SERIES_ARCH,
    PixelSeriesEncoder,
    encoder_kwargs,
    export_series_encoder,
    load_series_encoder,
    series_normalization,
)
from eossl.models.weights import WeightsInfo
from eossl.runs import write_json, write_text
from eossl.schedule import cosine_with_warmup
from eossl.train.config import SeriesMaskConfig
from eossl.train.guard import check_finite_loss

log = logging.getLogger(__name__)

__all__ = ["hide_mask", "series_corpus", "schedule_steps", "pretrain_series", "load_series_encoder"]

TIME_CONVENTION = "day of year of each step (NaN unknown), steps in time order; any number of steps"


def hide_mask(valid: torch.Tensor, g: torch.Generator, step_ratio: float, band_ratio: float, block_prob: float,
              block_steps: int) -> torch.Tensor:
    """(B, T, C) bool: the values hidden from the encoder (see module doc); never every valid step of a sample."""
    b, t, c = valid.shape
    hidden = (torch.rand(b, t, 1, generator=g) < step_ratio).expand(b, t, c).clone()
    hidden |= torch.rand(b, t, c, generator=g) < band_ratio
    if block_steps > 0 and t > 1:
        starts = torch.randint(0, max(1, t - block_steps + 1), (b,), generator=g)
        use = torch.rand(b, generator=g) < block_prob
        steps = torch.arange(t)[None]
        block = (steps >= starts[:, None]) & (steps < starts[:, None] + block_steps) & use[:, None]
        hidden |= block[..., None]
    # keep at least one valid step visible per sample (else there is nothing to reconstruct from)
    visible = (valid & ~hidden).any(-1).any(-1)
    if not visible.all():
        first = valid.any(-1).float().argmax(-1)
        for i in torch.nonzero(~visible).flatten().tolist():
            hidden[i, first[i]] = False
    return hidden


def series_corpus(cfg) -> tuple[SeriesSamples, dict]:
    """The pretraining series of ``cfg.corpus`` and a description of them (for ``corpus.json``)."""
    from eossl.catalog.build import IndexOptions, build_index
    from eossl.catalog.index import open_index
    from eossl.data.series.pixels import sample_pixel_series
    from eossl.data.series.tables import read_series_table

    c = cfg.corpus
    parts, described = [], []
    if c.index or c.roots:
        index = open_index(c.index) if c.index else build_index(list(c.roots), c.sensor,
                                                                 IndexOptions(nodata=c.nodata), progress=False)
        s = sample_pixel_series(index, c.sampler.n_pixels, window=c.sampler.window, per_window=c.sampler.per_window,
                                min_valid_steps=c.min_valid_steps, bands=c.bands, seed=cfg.seed)
        parts.append(s)
        described.append({"kind": "pixel series", "from": c.index or list(c.roots), "n": len(s), "how": s.source})
    if c.table:
        s = read_series_table(c.table, c.sensor, id_column=c.id_column, time_column=c.time_column, bands=c.bands,
                              nodata=c.nodata, min_valid_steps=c.min_valid_steps)
        excluded = 0
        keep = list(range(len(s)))
        if c.exclude_ids:
            drop = set(map(str, c.exclude_ids))
            keep = [i for i, sid in enumerate(s.ids) if sid not in drop]
            excluded = len(s) - len(keep)
        rows = len(keep)
        s = s.subset(keep * c.table_repeats)
        parts.append(s)
        described.append({"kind": "table rows (labels unused)", "from": c.table, "n": len(s), "rows": rows,
                          "repeats": c.table_repeats, "excluded_ids": excluded})
    if not parts:
        raise ValueError("corpus: give roots or index (scenes / datacubes to sample pixel series from) and/or table")
    bands = parts[0].bands
    for p in parts[1:]:
        if p.bands != bands:
            raise ValueError(f"corpus: the table's bands {p.bands} differ from the scenes' {bands}; set "
                             f"corpus.bands to the bands both have")
    t = max(p.values.shape[1] for p in parts)

    def pad(a, fill):
        width = [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        return np.pad(a, width, constant_values=fill)
    merged = SeriesSamples(np.concatenate([pad(p.values, 0) for p in parts]),
                           np.concatenate([pad(p.valid, False) for p in parts]),
                           np.concatenate([pad(p.times, np.datetime64("NaT")) for p in parts]),
                           list(bands), parts[0].sensor, np.full(sum(len(p) for p in parts), -1, dtype=np.int64),
                           [], [i for p in parts for i in p.ids], source="; ".join(p.source for p in parts))
    return merged, {"parts": described, "n": len(merged), "steps": t, "bands": bands, "sensor": merged.sensor}


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


def _encoder(cfg, sensor, bands: list[str], wavelengths: list[float], corpus: dict):
    """(encoder, its SeriesEncoderConfig, Normalization): continued from ``cfg.init`` (its arguments and
    statistics) or built from ``cfg.encoder`` under the global seed (the sensor catalog's statistics)."""
    if not cfg.init:
        encoder = PixelSeriesEncoder(wavelengths, **cfg.encoder.kwargs())
        return encoder, cfg.encoder, Normalization.of_sensor(sensor, bands)
    encoder = load_series_encoder(cfg.init, wavelengths)
    corpus["init"] = str(cfg.init)
    log.info("continuing from %s (pretrained on %s)", cfg.init, encoder.weights_info.pretrain_data)
    return (encoder, SeriesEncoderConfig(**encoder_kwargs(encoder.weights_info)),
            series_normalization(encoder, sensor, bands))


def schedule_steps(n: int, batch_size: int, epochs: int) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warmup steps) of series pretraining on ``n`` series: warmup is a tenth of
    the run, at most two epochs."""
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = steps_per_epoch * epochs
    return steps_per_epoch, total, min(total // 10, steps_per_epoch * 2)


def _train(encoder: PixelSeriesEncoder, data: tuple, cfg, device: str, progress: bool) -> list[dict]:
    """AdamW on :func:`~eossl.losses.masked.masked_series_loss` under the shared warmup + cosine schedule
    (:func:`eossl.schedule.cosine_with_warmup`) and the non-finite guard; one row per epoch."""
    x, valid, doy = data
    opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch, total, warmup = schedule_steps(len(x), cfg.batch_size, cfg.epochs)
    log.info("series pretraining: %d steps (%d per epoch), warmup %d, peak lr %g", total, steps_per_epoch, warmup,
             cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, total, warmup))
    g = torch.Generator().manual_seed(cfg.seed)
    rows, step = [], 0
    bar = tqdm(total=total, desc="series pretraining", unit="step", disable=not progress)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=g)
        losses = []
        encoder.train()
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = _masked_loss(encoder, x[idx], valid[idx], doy[idx], g, cfg.mask, device)
            check_finite_loss(loss, step, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
        rows.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0]})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
    bar.close()
    return rows


def _masked_loss(encoder: PixelSeriesEncoder, xb, vb, db, g: torch.Generator, m: SeriesMaskConfig,
                 device: str) -> torch.Tensor:
    """One batch ((B, T, C) values, valid; (B, T) day of year): hide values with ``g``, encode the rest,
    reconstruct, and score the hidden valid values."""
    hidden = hide_mask(vb, g, m.step_ratio, m.band_ratio, m.block_prob, m.block_steps)
    seen = vb & ~hidden
    xb, vb, db, seen, hidden = (t.to(device) for t in (xb, vb, db, seen, hidden))
    tokens, _ = encoder.forward_tokens(torch.where(seen, xb, torch.zeros_like(xb)), seen, db)
    return masked_series_loss(encoder.reconstruct(tokens[:, 1:]), xb, vb, hidden)


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
    wavelengths = sensor.wavelengths(samples.bands)
    encoder, encoder_cfg, norm = _encoder(cfg, sensor, samples.bands, wavelengths, corpus)
    encoder = encoder.to(device)
    if cfg.init:
        write_json(run_dir / "corpus.json", corpus)
    start = time.time()
    rows = _train(encoder, _tensors(samples, norm), cfg, device, progress)
    seconds = time.time() - start
    write_text(run_dir / "metrics.csv", "epoch,step,loss,lr\n" + "".join(
        f"{r['epoch']},{r['step']},{r['loss']:.6f},{r['lr']:.6g}\n" for r in rows))
    info = WeightsInfo(arch=SERIES_ARCH, in_chans=len(samples.bands), bands=list(samples.bands),
                       wavelengths_nm=list(wavelengths), gsd_m=float(min(sensor.band(b).gsd_m for b in samples.bands)),
                       normalization=norm.to_dict(), ssl_method="series_mae",
                       pretrain_data=json.dumps(_provenance(corpus, encoder.weights_info if cfg.init else None)),
                       epochs=cfg.epochs,
                       extra={"temporal": {**encoder_cfg.kwargs(), "time": TIME_CONVENTION, "steps_seen": corpus["steps"]},
                              "sensor": sensor.name, "mask": asdict(cfg.mask)})
    weights = export_series_encoder(encoder, info, run_dir / "weights")
    step = rows[-1]["step"]
    summary = {"run_dir": str(run_dir), "weights": str(weights), "steps": step, "epochs": cfg.epochs,
               "seconds": round(seconds, 1), "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
               "corpus": corpus}
    write_json(run_dir / "summary.json", summary)
    log.info("series pretraining: %d steps in %.0f s, loss %.4f -> %.4f; weights in %s", step, seconds,
             rows[0]["loss"], rows[-1]["loss"], weights)
    return summary
