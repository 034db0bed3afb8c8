"""Feature baselines that need no training: per-band statistics of each chip, and random convolutional features.

A linear probe on these is the floor any learned representation must beat: on EuroSAT much of the class signal is
in the spectrum alone, and random convolutional features with filters drawn from the data (MOSAIKS) add texture.
RCF: :func:`rcf_model` draws the filters (torchgeo's ``RCF``), :func:`rcf_maps` gives their response maps before
pooling (per pixel, for segmentation), :func:`rcf_pooled` averages them over a chip or a field mask, and
:func:`rcf_features` does both for whole chips.
"""

from __future__ import annotations

import numpy as np
import torch

from eossl.data.normalization import Normalization

__all__ = ["band_statistics", "rcf_features", "rcf_model", "rcf_maps", "rcf_pooled", "RCF_FEATURES"]

RCF_FEATURES = 512   # MOSAIKS-style feature count of GEO-Bench's random-convolution baseline

_CHUNK = 256   # chips per vectorised step: bounds the (chunk, C, H*W) float64 temporary


def band_statistics(images: np.ndarray, mask: np.ndarray | None = None,
                    percentiles: tuple[float, ...] = (5, 25, 50, 75, 95)) -> np.ndarray:
    """(N, C, H, W) images, (N, H, W) valid mask -> (N, C * (2 + P)) float64 features.

    Per chip and band, over valid pixels: mean, std (ddof=0) and the ``percentiles`` (numpy's linear method),
    laid out band by band: ``[b0 mean, b0 std, b0 p5, ..., b1 mean, ...]``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    if mask is not None and mask.shape != (n, h, w):
        raise ValueError(f"mask must be (N, H, W) = {(n, h, w)}, got {mask.shape}")
    if any(not 0 <= p <= 100 for p in percentiles):
        raise ValueError(f"percentiles must lie in [0, 100], got {tuple(percentiles)}")
    if mask is not None:
        empty = np.flatnonzero(~mask.reshape(n, -1).any(axis=1))
        if empty.size:
            raise ValueError(f"chip(s) {empty[:10].tolist()}{' ...' if empty.size > 10 else ''} have no valid "
                             f"pixel; drop them before computing band statistics")
    out = np.empty((n, c, 2 + len(percentiles)), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        x = images[start:start + _CHUNK].reshape(-1, c, h * w).astype(np.float64)
        if mask is None or mask[start:start + _CHUNK].all():
            out[start:start + _CHUNK] = _stats(x, percentiles, np.mean, np.std, np.percentile)
        else:
            valid = mask[start:start + _CHUNK].reshape(-1, 1, h * w)
            x = np.where(valid, x, np.nan)
            out[start:start + _CHUNK] = _stats(x, percentiles, np.nanmean, np.nanstd, np.nanpercentile)
    return out.reshape(n, -1)


def _stats(x: np.ndarray, percentiles, mean, std, percentile) -> np.ndarray:
    """(B, C, P) -> (B, C, 2 + len(percentiles)) using the given (nan-aware or plain) reductions."""
    parts = [mean(x, axis=2)[..., None], std(x, axis=2)[..., None]]
    if len(percentiles):
        parts.append(np.moveaxis(percentile(x, list(percentiles), axis=2), 0, -1))
    return np.concatenate(parts, axis=2)


def rcf_features(images: np.ndarray, source: np.ndarray, norm: Normalization, features: int = RCF_FEATURES,
                 kernel_size: int = 3, bias: float = -1.0, seed: int = 0, batch_size: int = 64,
                 mask: np.ndarray | None = None, source_mask: np.ndarray | None = None,
                 source_index: np.ndarray | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    """Random convolutional features (MOSAIKS; Rolf et al., Nature Communications 2021) with torchgeo's ``RCF``.

    ``images`` (N, C, H, W) and ``source`` (M, C, H, W) are reflectance; both are standardised with ``norm`` (a
    :class:`~eossl.data.normalization.Normalization` of the C bands), invalid pixels (``mask`` / ``source_mask`` (N, H, W) False) set to 0, the band mean. The
    ``features // 2`` filters are ``kernel_size`` patches drawn from ``source`` (ZCA-whitened by torchgeo): pass
    unlabeled corpus chips or the training split, never test chips; ``source_index``: draw from these rows of
    ``source`` only (read when drawn, never copied). Each filter gives the mean of ``relu(conv + bias)`` and of
    its negative part: (N, features) float32. Deterministic for a ``seed``.
    """
    model = rcf_model(source, norm, features, kernel_size, bias, seed, source_mask, source_index)
    return rcf_pooled(model, images, norm, mask, batch_size=batch_size, device=device)


def rcf_model(source: np.ndarray, norm: Normalization, features: int = RCF_FEATURES, kernel_size: int = 3,
              bias: float = -1.0, seed: int = 0, source_mask: np.ndarray | None = None,
              source_index: np.ndarray | None = None):
    """torchgeo's empirical ``RCF`` with its ``features // 2`` filters drawn from ``source`` (M, C, H, W)
    reflectance, or its rows ``source_index`` (see :func:`rcf_features`); a chip is standardised only when
    torchgeo draws from it."""
    from torchgeo.models import RCF

    index = np.arange(len(source)) if source_index is None else np.asarray(source_index, dtype=np.int64)
    if source.ndim != 4 or index.size == 0:
        raise ValueError(f"source must be (M, C, H, W) with at least one chip to draw from, got {source.shape} "
                         f"and {index.size} rows")
    if features < 2 or features % 2:
        raise ValueError(f"features must be an even number >= 2, got {features}")
    if min(source.shape[-2:]) <= kernel_size:
        raise ValueError(f"source chips of {source.shape[-2:]} px are too small for {kernel_size} px filters")
    dataset = _Standardised(source, source_mask, index, norm)
    # torchgeo seeds its generator only for a non-zero seed; seed + 1 keeps seed 0 distinct from "unseeded"
    return RCF(in_channels=source.shape[1], features=features, kernel_size=kernel_size, bias=bias, seed=seed + 1,
               mode="empirical", dataset=dataset)


def rcf_maps(model, x: torch.Tensor, same_size: bool = False) -> torch.Tensor:
    """(B, C, H, W) standardised -> (B, F, H', W') response maps of ``model``'s filters before pooling: the
    positive parts of ``conv + bias`` then of its negation, in torchgeo's feature order, so their mean over
    positions is ``model(x)``. ``H' = H - k + 1`` (no padding, as torchgeo); ``same_size``: zero padding (the
    band mean) of ``k // 2`` px, H' = H for an odd ``k``, each position centred on its pixel."""
    y = _conv(model, x, model.weights.shape[-1] // 2 if same_size else 0)
    return torch.cat([y.clamp_min(0), y.clamp_max(0).neg()], dim=1)


def _conv(model, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """(B, C, H, W) -> (B, F / 2, H', W'): ``conv + bias`` with the RCF's filters (no activation)."""
    return torch.nn.functional.conv2d(x, model.weights, bias=model.biases, stride=1, padding=padding)


def rcf_pooled(model, images: np.ndarray, norm: Normalization, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None, batch_size: int = 64,
               device: str | torch.device = "cpu") -> np.ndarray:
    """(N, C, H, W) reflectance -> (N, F) float32 averages of :func:`rcf_maps` over positions.

    ``weights`` (N, H, W) in [0, 1] (e.g. a field mask): a position counts in proportion to the share of its
    ``k x k`` receptive field they cover; positions covered at least half count 1 and the rest 0, unless none
    is (a field thinner than a filter), then every touched position counts by its share. A chip without any
    weight gives zeros. Without ``weights``: the plain mean, torchgeo's ``model(x)``.
    """
    if images.ndim != 4 or images.shape[1] != model.weights.shape[1]:
        raise ValueError(f"images must be (N, C, H, W) with C = {model.weights.shape[1]}, got {images.shape}")
    k = model.weights.shape[-1]
    model = model.to(device)
    out = []
    for i in range(0, images.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        x = norm.apply(images[sl], None if mask is None else mask[sl]).to(device)
        with torch.no_grad():
            y = _conv(model, x).flatten(2)                                         # (B, F / 2, P)
            if weights is None:
                w = torch.full(y.shape[::2], 1.0 / y.shape[2], device=y.device)
            else:
                share = torch.nn.functional.avg_pool2d(torch.as_tensor(weights[sl], dtype=torch.float32)[:, None],
                                                       k, stride=1).flatten(1).to(device)   # (B, P)
                w = (share >= 0.5).float()
                thin = w.sum(dim=1) == 0
                w[thin] = share[thin]
                w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
            # the maps' average without building them: relu(-y) = relu(y) - y
            pos, lin = torch.einsum("bfp,bp->bf", y.clamp_min(0), w), torch.einsum("bfp,bp->bf", y, w)
            out.append(torch.cat([pos, pos - lin], dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


class _Standardised:
    """The dataset torchgeo's ``RCF`` draws filters from: rows ``index`` of ``images`` as ``{"image": (C, H, W)}``,
    standardised on access, so a large source is never copied whole."""

    def __init__(self, images: np.ndarray, mask: np.ndarray | None, index: np.ndarray, norm: Normalization):
        self.images, self.mask, self.index, self.norm = images, mask, index, norm

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        j = int(self.index[i])
        mask = None if self.mask is None else self.mask[j:j + 1]
        return {"image": self.norm.apply(self.images[j:j + 1], mask)[0]}
