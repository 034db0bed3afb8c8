"""Image SSL backbones on a composited scene stack: the chip around each pixel on every period, embedded by a frozen
image backbone and aggregated over time (issue 25, point 6): the feature kinds ``image`` and ``image_sequence`` of
:class:`~eossl.evaluate.stack_model.StackModel`.

>>> chips = make_image_chips(comp.bands, comp.sensor, weights="eossl:resnet18-s2-l1c-vicreg-quality", chip=16)
>>> chips.prepare([comp])                                # statistics of the stack, when normalised by them
>>> x = image_features(chips, comp, np.arange(h * w), "image", {})       # (H*W, 2 D): mean and std over time

Per pixel and period: the ``chip`` x ``chip`` window of the composite centred on the pixel (its row and column at
``chip // 2``; the image edge-replicated beyond the stack), standardised per band, through the backbone in its
feature pool (the weights' recorded ``feature_pool``) to a D-vector. Over the P periods:

* ``image``: the mean and the standard deviation of the P vectors (2 D): what a land-cover chip looks like over the
  season and how much it changes;
* ``image_sequence``: each period's vector projected on ``components`` principal axes fitted (no labels) on the
  period vectors of every pixel of the stack(s) (a random sample of ``max_pixels`` pixels), concatenated in time
  order (P x components): the time profile a crop type is told by.

Bands follow the contract of every image backbone: the stem adapted by band name and wavelength
(:func:`eossl.models.weights.load_weights`), statistics from ``weights.json`` (``norm="weights"``) or from the
stack's own valid values (``norm="stack"``). Sentinel-1 channels have no image counterpart and are not read. Weights
pretrained on another processing level (Sentinel-2 L1C top-of-atmosphere chips) applied to this stack (L2A surface
reflectance) are said in ``describe()['product']`` with the distance of each band's mean from the weights'
statistics, in their standard deviations (:meth:`~eossl.data.normalization.Normalization.check`).

A pixel's features depend only on the composite around it and the fitted state, never on which other pixels are
computed with it, so the evaluation (every pixel at once) and the map (pixel blocks) agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from eossl.data.normalization import Normalization

log = logging.getLogger(__name__)

__all__ = ["IMAGE_KINDS", "ImageChips", "fit_image_state", "image_features", "make_image_chips", "optical_bands"]

IMAGE_KINDS = ("image", "image_sequence")
_CHIPS_PER_FORWARD = 1024


@dataclass
class ImageChips:
    """A frozen image backbone reading ``chip`` x ``chip`` windows of ``bands`` of a composite (see module doc).

    ``model`` maps normalised (B, C, chip, chip) to (B, D); ``weights_norm`` holds the weights' statistics of
    ``bands`` and ``norm`` those the chips are standardised by (``weights_norm``, or with ``norm_from == "stack"``
    the stack's, set by :meth:`prepare`); ``info`` describes the weights (arch, pool, source, the sensor they were
    pretrained on)."""

    model: object
    bands: list[str]
    chip: int
    norm_from: str
    weights_norm: Normalization
    norm: Normalization | None = None
    info: dict = field(default_factory=dict)
    device: str = "cpu"
    product: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.model.num_features)

    def prepare(self, comps: list) -> ImageChips:
        """The stack's statistics (``norm_from == "stack"``: mean / std of each band's valid composite values of
        ``comps``) and the product-level record (:meth:`describe`)."""
        means, stds = _stack_stats(comps, self.bands)
        self.norm = Normalization(tuple(self.bands), means, stds) if self.norm_from == "stack" else self.weights_norm
        self.product = _product_record(self, means, comps[0].sensor)
        return self

    def describe(self) -> dict:
        return {**self.info, "bands": list(self.bands), "chip": self.chip, "norm_from": self.norm_from,
                "product": self.product}


def optical_bands(bands: list[str], sensor) -> list[str]:
    """The bands of ``bands`` an image backbone can read: those with a wavelength in ``sensor`` (not VV/VH)."""
    from eossl.data.series.channels import PSEUDO_WAVELENGTHS_NM

    return [b for b in bands if b not in PSEUDO_WAVELENGTHS_NM and sensor.match(b) is not None]


def make_image_chips(bands: list[str], sensor: str, weights, *, chip: int = 16, norm_from: str = "weights",
                     random_init: bool = False, seed: int = 0, device: str = "cpu") -> ImageChips:
    """The backbone of exported image ``weights`` (a directory, or a name :func:`~eossl.evaluate.config.
    resolve_weights` knows) for the optical ``bands`` of a stack of ``sensor``; ``random_init``: the same
    architecture and feature pool randomly initialised under ``seed`` (its statistics those of the weights, so the
    two rows differ only by pretraining)."""
    import torch

    from eossl.catalog.sensors import load_sensor
    from eossl.models.pooling import PooledBackbone
    from eossl.models.weights import adapted_normalization, load_weights, weights_kind

    if norm_from not in ("weights", "stack"):
        raise ValueError(f"image norm {norm_from!r}: choose weights (the weights' statistics) or stack (the "
                         f"stack's own)")
    if chip < 8:
        raise ValueError(f"image chip {chip} px: give at least 8 (stack.image_chip)")
    s = load_sensor(sensor)
    use = optical_bands(list(bands), s)
    if not use:
        raise ValueError(f"the stack has no optical band an image backbone can read ({bands}); image rows need "
                         f"Sentinel-2 / Landsat bands")
    from eossl.models.info import read_weights_info

    winfo = read_weights_info(weights)
    if weights_kind(winfo.arch) != "image":
        raise ValueError(f"stack.image_weights {weights} hold a {winfo.arch} model, not an image backbone: give "
                         f"weights from `eossl pretrain` (series weights go to weights=)")
    loaded = load_weights(weights, bands=list(zip(use, s.wavelengths(use))), img_size=chip)
    model = loaded.model
    info = {"arch": winfo.arch, "pool": model.pool, "ssl_method": winfo.ssl_method,
            "pretrained_on": winfo.extra.get("sensor", "not recorded"), "source": f"pretrained {weights}"}
    if random_init:
        from eossl.models.backbones import create_backbone

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = PooledBackbone(create_backbone(winfo.arch, len(use), img_size=chip), model.pool)
        info = {**info, "source": f"random-init {winfo.arch} (seed {seed}), the statistics of {weights}",
                "ssl_method": "none"}
    return ImageChips(model=model.eval().to(device), bands=use, chip=int(chip), norm_from=norm_from,
                      weights_norm=adapted_normalization(loaded, use, s), info=info, device=device)


# ---------------------------------------------------------------------------------------------------- features


def _band_values(comp, bands: list[str]) -> np.ndarray:
    """(P, C', H, W) composite values of ``bands``."""
    idx = [list(comp.bands).index(b) for b in bands]
    return comp.values[:, idx]


def _never(comp, bands: list[str]) -> np.ndarray:
    """(C', H, W): the band never had a valid observation at the pixel."""
    idx = [list(comp.bands).index(b) for b in bands]
    return comp.never_valid[idx]


def _stack_stats(comps: list, bands: list[str]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each band's composite values over every period and pixel of ``comps`` where
    the band was ever valid (a band with fewer than two distinct values is an error naming it)."""
    means, stds = [], []
    for b in bands:
        seen = np.concatenate([_band_values(c, [b])[:, 0][:, ~_never(c, [b])[0]].ravel() for c in comps])
        if seen.size < 2 or not seen.std() > 0:
            raise ValueError(f"band {b}: fewer than two distinct valid values in the stack, so no statistics to "
                             f"normalise it by; leave the image_stack_norm row out of stack.rows")
        means.append(float(seen.mean(dtype=np.float64)))
        stds.append(float(seen.std(dtype=np.float64)))
    return means, stds


def _product_record(chips: ImageChips, means: list[float], sensor: str) -> dict:
    """What the weights were pretrained on against what they read, with each band's |z|: the stack's mean from
    the weights' statistics, in their standard deviations."""
    trained = chips.info.get("pretrained_on", "not recorded")
    ref = chips.weights_norm
    rec = {"pretrained_on": trained, "applied_to": sensor, "same": trained == sensor,
           "band_mean_z": {b: round(abs(m - float(ref.mean[i])) / float(ref.std[i]), 3)
                           for i, (b, m) in enumerate(zip(chips.bands, means))}}
    if not rec["same"]:
        rec["note"] = (f"weights pretrained on {trained} applied to {sensor}: the processing levels differ "
                       f"(e.g. top-of-atmosphere L1C vs surface-reflectance L2A); band_mean_z is how far each "
                       f"band's mean lies from the weights' statistics")
    return rec


def _window_index(chip: int) -> np.ndarray:
    return np.arange(chip) - chip // 2


def period_embeddings(chips: ImageChips, comp, pixels: np.ndarray) -> np.ndarray:
    """(n, P, D) float32: the backbone's vector of each period's chip around each of the flat ``pixels``."""

    return _embed(chips, _standardised(chips, comp), pixels)


def _standardised(chips: ImageChips, comp):
    """(P, C, H, W) float32 tensor: the composite's bands of ``chips`` standardised, once per composite."""
    if chips.norm is None:
        raise ValueError("the image rows' statistics are not fitted: prepare the model on every pixel first")
    return chips.norm.apply(_band_values(comp, chips.bands))


def _embed(chips: ImageChips, x, pixels: np.ndarray) -> np.ndarray:
    """(n, P, D) vectors of the chips of standardised ``x`` (P, C, H, W) around the flat ``pixels``."""
    import torch

    p, c, h, w = x.shape
    rows, cols = np.divmod(np.asarray(pixels, dtype=np.int64), w)
    off = _window_index(chips.chip)
    out = np.empty((len(rows), p, chips.dim), np.float32)
    block = max(1, _CHIPS_PER_FORWARD // p)
    model = chips.model.to(chips.device).eval()
    with torch.no_grad():
        for a in range(0, len(rows), block):
            r = np.clip(rows[a:a + block, None] + off[None], 0, h - 1)          # (b, chip) edge-replicated
            q = np.clip(cols[a:a + block, None] + off[None], 0, w - 1)
            win = x[:, :, torch.from_numpy(r)[:, :, None], torch.from_numpy(q)[:, None, :]]   # (P, C, b, k, k)
            batch = win.permute(2, 0, 1, 3, 4).reshape(-1, c, chips.chip, chips.chip)
            emb = model(batch.to(chips.device)).float().cpu().numpy()
            out[a:a + len(r)] = emb.reshape(len(r), p, -1)
    return out


def fit_image_state(chips: ImageChips, comps: list, kind: str, components: int = 16, max_pixels: int = 2048,
                    seed: int = 0) -> dict:
    """The unsupervised state of ``kind`` from every pixel of ``comps`` (``image_sequence``: the principal axes of
    the period vectors of a seeded sample of ``max_pixels`` pixels)."""
    if kind == "image":
        return {}
    if kind != "image_sequence":
        raise ValueError(f"unknown image feature kind {kind!r}; known: {', '.join(IMAGE_KINDS)}")
    from sklearn.decomposition import PCA

    sizes = [c.values.shape[2] * c.values.shape[3] for c in comps]
    rng = np.random.default_rng(seed)
    take = rng.choice(sum(sizes), size=min(max_pixels, sum(sizes)), replace=False)
    vecs = []
    start = 0
    for comp, n in zip(comps, sizes):
        mine = np.sort(take[(take >= start) & (take < start + n)]) - start
        if len(mine):
            e = period_embeddings(chips, comp, mine)
            vecs.append(e.reshape(-1, e.shape[-1]))
        start += n
    z = np.concatenate(vecs)
    d = int(min(components, *z.shape))
    pca = PCA(n_components=d, svd_solver="covariance_eigh").fit(z)
    return {"image_mean": pca.mean_.astype(np.float32), "image_components": pca.components_.astype(np.float32)}


def image_features(chips: ImageChips, comp, pixels: np.ndarray, kind: str, state: dict) -> np.ndarray:
    """(n, F) features of kind ``kind`` of the flat ``pixels`` of ``comp`` (see the module doc)."""
    out = []
    x = _standardised(chips, comp)                        # once, not per block of pixels
    step = max(1, 4 * _CHIPS_PER_FORWARD // max(1, comp.values.shape[0]))
    for a in range(0, len(pixels), step):
        e = _embed(chips, x, pixels[a:a + step])                                # (b, P, D)
        if kind == "image":
            out.append(np.concatenate([e.mean(axis=1), e.std(axis=1)], axis=1))
        else:
            proj = (e - state["image_mean"]) @ state["image_components"].T         # (b, P, d)
            out.append(proj.reshape(len(e), -1).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
