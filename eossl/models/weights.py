"""Portable weights: ``backbone.safetensors`` + ``weights.json`` describing bands, normalisation and provenance.

``weights.json`` holds at least ``arch``, ``in_chans``, ``bands`` (input order), ``wavelengths_nm``, ``gsd_m``,
``normalization`` ({"mean": [...], "std": [...]} per band, reflectance units as the reader produces them),
``ssl_method``, ``pretrain_data``, ``epochs``, ``eossl_version`` and ``img_size``, plus ``feature_pool`` (the pool of
:mod:`eossl.models.pooling` that frozen features should use; "last" when weights.json predates it) and
``feature_pool_source`` (the online-probe figures that chose it, ``{"chosen_by": "user"}``, or null). The
safetensors keys are those of ``timm.create_model(arch_timm_name, in_chans=..., num_classes=0)``, so a plain timm
model loads them (strict), whatever the feature pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from eossl.data.normalization import Normalization
from eossl.models.adapt import BandMatch, adapt_stem_weight
from eossl.models.backbones import ARCHS, create_backbone, stem_key
from eossl.models.cards import write_model_card
from eossl.models.info import INFO_FILE, LoadedWeights, WeightsInfo, read_info, read_weights_info
from eossl.models.pooling import POOLS, PooledBackbone, pool_dim
from eossl.models.shipped import resolve_shipped
from eossl.models.temporal import SERIES_ARCH, load_series_encoder
from eossl.registry import Registry
from eossl.runs import atomic_write

__all__ = ["INFO_FILE", "WEIGHTS_FILE", "WEIGHTS_LOADERS", "LoadedWeights", "WeightsInfo", "WeightsLoader",
           "adapted_normalization", "backbone_for", "export_backbone", "load_backbone", "load_weights", "read_info",
           "read_weights_info", "weights_kind"]

WEIGHTS_FILE = "backbone.safetensors"


def export_backbone(model: nn.Module, info: WeightsInfo, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out/backbone.safetensors``, ``out/weights.json``, the model card ``out/README.md`` and the STAC MLM
    item ``out/item.json`` (:mod:`eossl.models.cards`), each atomically. A :class:`PooledBackbone` is
    saved as its timm backbone; ``info.feature_pool`` must be a pool the model supports."""
    out = Path(out)
    if (out / INFO_FILE).exists() and not overwrite:
        raise ValueError(f"{out} already holds exported weights; choose another directory")
    if isinstance(model, PooledBackbone):
        model = model.backbone
    dim = pool_dim(model, info.feature_pool)  # a pool the architecture does not have is an error listing those it has
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    key = stem_key(info.arch)
    if key not in state or state[key].shape[1] != info.in_chans:
        raise ValueError(f"the model's stem {key} does not take {info.in_chans} bands; is arch {info.arch!r} right?")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"arch": info.arch}))
    atomic_write(out / INFO_FILE, lambda p: p.write_text(json.dumps(asdict(info), indent=2)))
    write_model_card(out, info, WEIGHTS_FILE, dim, sum(p.numel() for p in model.parameters()))
    return out


@dataclass(frozen=True)
class WeightsLoader:
    """One kind of exported weights: the ``arch`` values of ``weights.json`` it reads (``archs()``, a callable so a
    registry filled later, such as :data:`~eossl.models.backbones.ARCHS`, is read when asked) and ``load(path, info,
    bands, max_nm, img_size, pool) -> LoadedWeights`` (the arguments of :func:`load_weights`)."""

    archs: Callable[[], list[str]]
    load: Callable[..., LoadedWeights]


# kind of weights -> loader; load_weights picks the entry whose archs hold weights.json's arch
WEIGHTS_LOADERS: Registry[WeightsLoader] = Registry("kind of weights")


def weights_kind(arch: str) -> str:
    """The :data:`WEIGHTS_LOADERS` entry that reads weights of ``arch``; an unknown arch is an error listing every
    kind with its archs."""
    kinds = [k for k in WEIGHTS_LOADERS.names() if arch in WEIGHTS_LOADERS.get(k).archs()]
    if len(kinds) != 1:
        known = "; ".join(f"{k}: {', '.join(WEIGHTS_LOADERS.get(k).archs())}" for k in WEIGHTS_LOADERS.names())
        what = "no loader reads" if not kinds else f"several loaders ({', '.join(kinds)}) claim"
        raise ValueError(f"{what} weights of arch {arch!r}; known kinds of weights and their archs: {known}")
    return kinds[0]


def load_weights(path: str | Path, bands: list[tuple[str, float]] | None = None, max_nm: float = 60.0,
                 img_size: int | None = None, pool: str | None = None) -> LoadedWeights:
    """Rebuild the exported weights at ``path`` with the :data:`WEIGHTS_LOADERS` entry of their recorded ``arch``
    (:func:`weights_kind`): ``image`` for the timm backbones, ``series`` for the pixel time-series encoder. The
    record holds the ``model``, its ``weights.json`` (``info``) and how its stem was adapted (``band_matches``).

    ``image`` (:func:`_load_image_backbone`): with ``bands`` ([(name, wavelength_nm), ...] of the target data, in
    input order) the stem is adapted by band name and wavelength (see :mod:`eossl.models.adapt`); data bands with no
    counterpart follow the weights' ``unmatched`` policy (weights.json; "error" unless set by ``eossl import``).
    The model maps a normalised (B, C, H, W) batch to (B, D) features. Its type depends on ``pool`` only, never on
    what the file records:

    * ``pool=None`` (default): a :class:`~eossl.models.pooling.PooledBackbone` in the weights' recorded
      ``feature_pool`` ("last" for weights.json files that predate it): the features the weights are best used
      with. ``.backbone`` is the timm model, ``.pool`` the pool, ``.num_features`` the width D.
    * ``pool="last"``: the plain timm model (``timm.create_model(..., num_classes=0)``), whose own forward is the
      "last" pool. Fine-tuning, decoders and anything that needs feature maps use this.
    * any other pool of :data:`~eossl.models.pooling.POOLS`: a PooledBackbone in that pool.

    Loading is strict: a missing or unexpected key is an error; so is a pool the architecture does not have.

    ``series`` (arch ``pixel_transformer``, ``eossl pretrain-series``): a
    :class:`~eossl.models.temporal.PixelSeriesEncoder`, which maps ``(x (B, T, C), valid, doy)`` to (B, D);
    ``bands`` re-targets it by wavelength, and ``pool``/``img_size`` do not apply.
    """
    if pool is not None and pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)} (or None: the weights' "
                         f"recorded feature_pool)")
    path = Path(resolve_shipped(path))              # eossl:<name>: the shipped folder, checksums verified
    info = read_weights_info(path)
    loader = WEIGHTS_LOADERS.get(weights_kind(info.arch))
    return loader.load(path, info, bands, max_nm, img_size, pool)


def load_backbone(path: str | Path, bands: list[tuple[str, float]] | None = None, max_nm: float = 60.0,
                  img_size: int | None = None, pool: str | None = None) -> nn.Module:
    """The model of :func:`load_weights` (same arguments), for callers that need nothing else: the public
    ``eossl.load_backbone`` and the model cards. Code that needs the weights' info or band matches calls
    :func:`load_weights`."""
    return load_weights(path, bands=bands, max_nm=max_nm, img_size=img_size, pool=pool).model


def _load_image_backbone(path: Path, info: WeightsInfo, bands, max_nm: float, img_size: int | None,
                         pool: str | None) -> LoadedWeights:
    """A timm backbone of :data:`~eossl.models.backbones.ARCHS` (see :func:`load_weights`)."""
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path / WEIGHTS_FILE} is missing next to {INFO_FILE}")
    state = load_file(str(path / WEIGHTS_FILE))
    matches: list[BandMatch] = []
    in_chans = info.in_chans
    if bands is not None and [n for n, _ in bands] != info.bands:
        key = stem_key(info.arch)
        source = list(zip(info.bands, info.wavelengths_nm))
        state[key], matches = adapt_stem_weight(state[key], source, list(bands), max_nm, info.unmatched)
        in_chans = len(bands)
    model = create_backbone(info.arch, in_chans, img_size or info.img_size)
    _resize_pos_embed(state, model)
    model.load_state_dict(state, strict=True)
    pooled = model if pool == "last" else PooledBackbone(model, pool or info.feature_pool)
    return LoadedWeights(pooled, info, tuple(matches))


def _load_series_encoder(path: Path, info: WeightsInfo, bands, max_nm: float, img_size: int | None,
                         pool: str | None) -> LoadedWeights:
    """The pixel time-series encoder (see :func:`load_weights`); ``max_nm`` does not apply (its kernels are
    generated from any band's wavelength)."""
    if pool is not None or img_size is not None:
        raise ValueError(f"{path} holds a {SERIES_ARCH} time-series encoder: pool and img_size apply to image "
                         f"backbones only (it returns its class token and mean step token)")
    return load_series_encoder(path, None if bands is None else [float(w) for _, w in bands])


WEIGHTS_LOADERS.register("image")(WeightsLoader(ARCHS.names, _load_image_backbone))
WEIGHTS_LOADERS.register("series")(WeightsLoader(lambda: [SERIES_ARCH], _load_series_encoder))


def _resize_pos_embed(state: dict, model: nn.Module) -> None:
    """A ViT's position embeddings in ``state`` resampled (bicubic, timm's ``resample_abs_pos_embed``; the class
    token's kept) to ``model``'s patch grid when the weights were trained on another image size, e.g. 32 px
    crops evaluated on 64 px chips."""
    pos = state.get("pos_embed")
    target = getattr(model, "pos_embed", None)
    if pos is None or target is None or pos.shape == target.shape:
        return
    from timm.layers import resample_abs_pos_embed

    prefix = int(getattr(model, "num_prefix_tokens", 1))
    state["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(model.patch_embed.grid_size),
                                                num_prefix_tokens=prefix)


def adapted_normalization(loaded: LoadedWeights, bands: list[str], sensor) -> Normalization:
    """The statistics for ``bands`` of loaded weights: ``weights.json``'s, an adapted band taking those of the band
    its kernel came from, a band set by the ``unmatched`` policy (no pretrained counterpart) the sensor catalog's."""
    matches = {m.target: m for m in loaded.band_matches}
    policy = [b for b in bands if b in matches and not matches[b].source]
    known = [b for b in bands if b not in policy]
    stored = Normalization.of_weights(loaded.info).for_bands(
        known, {b: matches[b].source for b in known if b in matches})
    if not policy:
        return stored
    catalog = Normalization.of_sensor(sensor, policy)
    mean = [stored.mean[known.index(b)] if b in known else catalog.mean[policy.index(b)] for b in bands]
    std = [stored.std[known.index(b)] if b in known else catalog.std[policy.index(b)] for b in bands]
    return Normalization(tuple(bands), mean, std)


def backbone_for(bands: list[str], sensor: str, img_size: int, *, weights: str | Path | None = None,
                 arch: str | None = None, seed: int = 0, images=None, valid=None,
                 what: str | None = None) -> tuple[nn.Module, Normalization]:
    """A backbone for data with ``bands`` of ``sensor`` (input order) and its :class:`Normalization`.

    * ``weights`` given: the exported backbone, its stem adapted by band name and wavelength when the bands
      differ from the weights' (an error names a band with no counterpart); the statistics are those of
      ``weights.json`` (an adapted band takes its source band's). With ``images`` ((..., C, H, W) reflectance,
      ``valid`` (..., H, W)) the data is checked against that normalisation and against the physical range of
      ``sensor``'s bands (:func:`~eossl.data.radiometry.check_radiometry`); ``what`` names the data in errors.
    * ``weights`` None: ``arch`` randomly initialised under ``seed`` (the global RNG is left as it was) with the
      sensor catalog's statistics.

    The model is the plain timm backbone (pooled as "last"): feature maps, fine-tuning and
    :func:`~eossl.evaluate.features.extract_features` in any pool.
    """
    from eossl.catalog.sensors import load_sensor
    from eossl.data.radiometry import check_radiometry

    if weights is None:
        if arch is None:
            raise ValueError("backbone_for: give weights or an arch for a random-init backbone")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_backbone(arch, len(bands), img_size=img_size)
        return model, Normalization.of_sensor(sensor, bands)
    wavelengths = load_sensor(sensor).wavelengths(bands)
    loaded = load_weights(weights, bands=list(zip(bands, wavelengths)), img_size=img_size, pool="last")
    norm = adapted_normalization(loaded, list(bands), sensor)
    if images is not None:
        label = what or f"data for {weights}"
        norm.check(images, valid, label)
        check_radiometry(images, valid, list(bands), sensor, label)
    return loaded.model, norm
