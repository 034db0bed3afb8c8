"""The feature kinds of a :class:`~eossl.evaluate.stack_model.StackModel`: one small function each, from
:class:`~eossl.data.series.tables.SeriesSamples` of a composited stack to an (N, D) array.

Every kind is ``fit_<kind>(all_samples, ...) -> state`` (a dict of arrays, fitted once on every pixel of the
stack(s), without labels) and ``<kind>_features(samples, state, ...) -> (N, D)``. A pixel's features depend on
that pixel and the state only, never on the other pixels of the batch, so the evaluation (the test pixels) and the
map (every pixel) get identical features for a pixel.

* ``raw``: the series with gaps filled by linear interpolation over the steps (nearest at the ends), a band never
  valid in a pixel by that band's mean over all pixels; flattened (T * C). Standardised by the classifier, as the
  raw-series row of ``task: series``;
* ``pca``: ``raw`` standardised with all-pixel statistics, projected on its principal components fitted on all
  pixels, and whitened (unit variance per component);
* ``rocket``: MiniRocket PPV features (:mod:`eossl.evaluate.minirocket`) of the gap-filled series standardised per
  band with all-pixel statistics; kernels and biases fitted on all pixels;
* ``phenology``: :func:`eossl.evaluate.series_eval.phenology_features` (band statistics over the valid steps, NDVI
  phenology), a band never valid in a pixel first set to its all-pixel mean;
* ``encoder``: :func:`eossl.evaluate.series_eval.encoder_features` (pooled frozen features of a
  :class:`~eossl.models.temporal.PixelSeriesEncoder`);
* ``fusion``: ``raw`` and ``encoder`` side by side.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eossl.data.normalization import Normalization
from eossl.data.series.composite import fill_gaps
from eossl.data.series.tables import SeriesSamples
from eossl.evaluate.minirocket import fit_minirocket, minirocket_features
from eossl.evaluate.series_eval import encoder_features, phenology_features

__all__ = ["FEATURE_KINDS", "band_means", "filled_series", "fit_pca", "fit_rocket", "pca_features", "raw_features",
           "rocket_features", "phenology_stack_features", "joined"]

FEATURE_KINDS = ("raw", "pca", "rocket", "phenology", "encoder", "fusion")
_COLUMNS = 65536       # series columns gap-filled per block


def joined(samples: SeriesSamples | list[SeriesSamples]) -> SeriesSamples:
    """One SeriesSamples from several of identical bands and steps (e.g. the pixels of two stacks)."""
    if isinstance(samples, SeriesSamples):
        return samples
    first = samples[0]
    shapes = {s.values.shape[1:] for s in samples}
    if len(shapes) != 1 or any(s.bands != first.bands for s in samples):
        raise ValueError(f"cannot pool series of different steps x bands {sorted(shapes)} or bands; fit one model "
                         f"per stack (or composite the stacks on one time grid)")
    cat = np.concatenate
    return SeriesSamples(cat([s.values for s in samples]), cat([s.valid for s in samples]),
                         cat([s.times for s in samples]), list(first.bands), first.sensor,
                         cat([s.labels for s in samples]), list(first.classes), [i for s in samples for i in s.ids])


def band_means(s: SeriesSamples) -> np.ndarray:
    """(C,) mean of each band's valid values over every pixel and step (0 for a band never valid)."""
    count = s.valid.sum(axis=(0, 1))
    total = np.where(s.valid, s.values, 0).sum(axis=(0, 1), dtype=np.float64)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def filled_series(s: SeriesSamples, fill: np.ndarray) -> np.ndarray:
    """(N, T, C) float32: gaps filled linearly over the steps (nearest at the ends); a pixel's band never valid
    gets ``fill`` (C,). Vectorised (:func:`eossl.data.series.composite.fill_gaps`)."""
    n, t, c = s.values.shape
    flat = s.values.transpose(1, 0, 2).reshape(t, n * c)
    has = s.valid.transpose(1, 0, 2).reshape(t, n * c)
    out = np.empty_like(flat, dtype=np.float32)
    steps = np.arange(t, dtype=np.float64)
    for a in range(0, n * c, _COLUMNS):
        out[:, a:a + _COLUMNS] = fill_gaps(flat[:, a:a + _COLUMNS], has[:, a:a + _COLUMNS], steps)
    out = out.reshape(t, n, c).transpose(1, 0, 2)
    never = ~s.valid.any(axis=1)                                                   # (N, C)
    return np.where(never[:, None, :], np.asarray(fill, np.float32)[None, None], out)


def raw_features(s: SeriesSamples, fill: np.ndarray) -> np.ndarray:
    """(N, T * C) gap-filled series (see :func:`filled_series`)."""
    return filled_series(s, fill).reshape(len(s), -1)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per column of (N, D) ``x``; a constant column gets scale 1."""
    scale = x.std(axis=0)
    return x.mean(axis=0).astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)


def fit_pca(s: SeriesSamples, fill: np.ndarray, components: int = 32, whiten: bool = True, seed: int = 0) -> dict:
    """PCA of the standardised raw series of every pixel of ``s`` (no labels): ``center``, ``scale`` (D,),
    ``components`` (d, D), ``variance`` (d,), ``whiten``."""
    from sklearn.decomposition import PCA

    x = raw_features(s, fill)
    center, scale = _standardiser(x)
    z = (x - center) / scale
    d = int(min(components, *z.shape))
    pca = PCA(n_components=d, svd_solver="covariance_eigh").fit(z)     # exact; N >> D: one D x D eigh
    return {"center": center, "scale": scale, "pca_mean": pca.mean_.astype(np.float32),
            "components": pca.components_.astype(np.float32),
            "variance": np.maximum(pca.explained_variance_, 1e-12).astype(np.float32), "whiten": np.array(whiten)}


def pca_features(s: SeriesSamples, fill: np.ndarray, state: dict) -> np.ndarray:
    """(N, d) principal components of the raw series (whitened when fitted so)."""
    z = (raw_features(s, fill) - state["center"]) / state["scale"]
    out = (z - state["pca_mean"]) @ state["components"].T
    return out / np.sqrt(state["variance"]) if bool(state["whiten"]) else out


def _band_norm(s: SeriesSamples, fill: np.ndarray) -> Normalization:
    x = filled_series(s, fill)
    std = x.std(axis=(0, 1))
    return Normalization(tuple(s.bands), x.mean(axis=(0, 1)), np.where(std > 0, std, 1.0))


def fit_rocket(s: SeriesSamples, fill: np.ndarray, n_features: int = 2000, seed: int = 0,
               max_pixels: int = 16384) -> dict:
    """Per-band statistics of the gap-filled series of every pixel, and MiniRocket kernels and biases fitted on
    them (:func:`eossl.evaluate.minirocket.fit_minirocket`)."""
    norm = _band_norm(s, fill)
    x = norm.apply_series(filled_series(s, fill)).numpy()
    state = fit_minirocket(x, n_features=n_features, seed=seed, max_pixels=max_pixels)
    return {**state, "band_mean": norm.mean, "band_std": norm.std}


def rocket_features(s: SeriesSamples, fill: np.ndarray, state: dict) -> np.ndarray:
    """(N, F) PPV features of the standardised gap-filled series."""
    norm = Normalization(tuple(s.bands), state["band_mean"], state["band_std"])
    return minirocket_features(norm.apply_series(filled_series(s, fill)).numpy(), state)


def phenology_stack_features(s: SeriesSamples, fill: np.ndarray) -> np.ndarray:
    """(N, 6 C + 10) :func:`~eossl.evaluate.series_eval.phenology_features`; a band never valid in a pixel is set
    to ``fill`` at every step first (so a pixel's features do not depend on the others in the batch)."""
    never = ~s.valid.any(axis=1)                                                   # (N, C)
    if not never.any():
        return phenology_features(s)
    values = np.where(never[:, None, :], np.asarray(fill, np.float32)[None, None], s.values)
    return phenology_features(replace(s, values=values, valid=s.valid | never[:, None, :]))


def encoder_stack_features(s: SeriesSamples, encoder, norm: Normalization, device: str = "cpu") -> np.ndarray:
    """(N, 2 D) pooled frozen encoder features (:func:`~eossl.evaluate.series_eval.encoder_features`)."""
    return encoder_features(encoder, s, norm, device=device).astype(np.float32)
