"""``task: series``: few-label crop-type classification of per-sample time series
(:mod:`eossl.evaluate.series_eval`), with the pretrained pixel time-series encoder of ``cfg.weights`` if given."""

from __future__ import annotations

from eossl.data.normalization import Normalization
from eossl.data.series.tables import SeriesSamples
from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext
from eossl.evaluate.series_eval import evaluate_series
from eossl.report.rows import ResultRow

__all__ = ["pretrained_encoder", "run"]


def run(cfg: EvaluateConfig, ctx: TaskContext) -> list[ResultRow]:
    """Rows of :func:`evaluate_series` on the table of ``cfg.series``; the encoder's arguments are the weights'
    (with weights) or ``cfg.series.encoder`` (the random-init row without weights)."""
    samples = cfg.series.load()
    encoder, name, kwargs, norm = None, "", dict(cfg.series.encoder), None
    if cfg.weights is not None:
        encoder, name, kwargs, norm = pretrained_encoder(cfg.weights, samples)
    rows, notes = evaluate_series(samples, ks=cfg.ks, seeds=cfg.seeds, seed=cfg.seed, test_fraction=cfg.test_fraction,
                                  block_size_m=cfg.series.block_size_m, min_per_class=cfg.series.min_per_class,
                                  C=cfg.C, baselines=cfg.series.baselines, encoder_kwargs=kwargs, pretrained=encoder,
                                  pretrained_name=name, pretrained_norm=norm, device=ctx.device,
                                  progress=ctx.progress)
    ctx.record(notes)
    return rows


def pretrained_encoder(weights, samples: SeriesSamples) -> tuple[object, str, dict, Normalization]:
    """(encoder re-targeted to the samples' bands, its row name, its constructor arguments, the Normalization
    of the samples' bands: the weights' statistics where it has them, the sensor catalog's for the others)."""
    from eossl.catalog.sensors import load_sensor
    from eossl.models.temporal import encoder_kwargs, load_series_encoder, series_normalization

    sensor = load_sensor(samples.sensor)
    loaded = load_series_encoder(weights, sensor.wavelengths(samples.bands))
    return (loaded.model, f"pixel transformer {loaded.info.ssl_method}", encoder_kwargs(loaded.info),
            series_normalization(loaded.info, sensor, samples.bands))
