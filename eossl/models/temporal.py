"""Temporal encoders: a small pixel time-series transformer, and torchgeo's L-TAE as a head over per-date features.

:class:`PixelSeriesEncoder` (Presto-sized by default: 2 layers, 128-d, about 0.4 M parameters) reads a series of
any length and any band set: each step's bands are embedded through kernels generated from the bands' centre
wavelengths (as the wavelength-aware image stems: a band it never saw gets the kernel of its wavelength), a step
with some bands missing is embedded from the valid ones, a step with none is masked out of attention, and the
time is encoded from the day of year (sin/cos over 365.25 days) plus the step order; a step without valid bands is
a mask token that the other steps do not attend to. ``forward`` returns pooled
(B, D) features (mean over valid steps, concatenated with the class token); ``forward_tokens`` the per-step
tokens; :meth:`PixelSeriesEncoder.reconstruct` predicts every band at every step from tokens (for masked
autoencoding, see :func:`eossl.losses.masked.masked_series_loss`). Its arguments are typed in
:class:`eossl.models.config.SeriesEncoderConfig`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

if TYPE_CHECKING:
    from eossl.models.info import LoadedWeights, WeightsInfo

__all__ = ["PixelSeriesEncoder", "wavelength_features", "ltae_head", "SERIES_ARCH",
           "ENCODER_FILE", "export_series_encoder", "load_series_encoder", "encoder_kwargs", "series_normalization"]

SERIES_ARCH = "pixel_transformer"          # weights.json arch of an exported PixelSeriesEncoder
ENCODER_FILE = "encoder.safetensors"


def wavelength_features(wavelengths_nm: torch.Tensor, n: int = 16) -> torch.Tensor:
    """(C,) centre wavelengths -> (C, 2n) Fourier features of log-wavelength (400 nm .. 15 µm spread evenly)."""
    x = torch.log(wavelengths_nm.float().clamp(min=100.0) / 400.0) / math.log(15000.0 / 400.0)   # ~0..1
    freqs = (2.0 ** torch.arange(n, device=x.device, dtype=x.dtype)) * math.pi / 8
    angles = x[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _time_features(doy: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) day of year (NaN unknown) -> (B, T, 4): sin/cos of the season, sin/cos of the step position."""
    known = torch.isfinite(doy)
    angle = torch.where(known, doy, torch.zeros_like(doy)) * (2 * math.pi / 365.25)
    season = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1) * known[..., None]
    pos = torch.arange(steps, device=doy.device, dtype=doy.dtype)[None].expand_as(doy) * (2 * math.pi / 64)
    return torch.cat([season, torch.sin(pos)[..., None], torch.cos(pos)[..., None]], dim=-1)


class PixelSeriesEncoder(nn.Module):
    """A transformer over per-step tokens of a pixel (or field-mean) time series; see the module doc.

    ``forward(x, valid, doy)``: ``x`` (B, T, C) normalised values, ``valid`` (B, T, C) bool, ``doy`` (B, T) day of
    year (NaN unknown); ``wavelengths_nm`` (C,) is given at construction (:meth:`set_bands` changes it)."""

    def __init__(self, wavelengths_nm, dim: int = 128, depth: int = 2, heads: int = 8, mlp_ratio: float = 2.0,
                 dropout: float = 0.0):
        super().__init__()
        self.dim = dim
        self.num_features = 2 * dim
        self.register_buffer("wavelengths", torch.as_tensor(list(wavelengths_nm), dtype=torch.float32),
                             persistent=False)
        self.kernel = nn.Sequential(nn.Linear(32, dim), nn.GELU(), nn.Linear(dim, dim))      # λ -> embedding kernel
        self.present = nn.Linear(32, dim)            # which bands were valid at a step (their wavelengths)
        self.time = nn.Linear(4, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.decode_kernel = nn.Sequential(nn.Linear(32, dim), nn.GELU(), nn.Linear(dim, dim + 1))  # λ -> readout
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def set_bands(self, wavelengths_nm) -> None:
        self.wavelengths = torch.as_tensor(list(wavelengths_nm), dtype=torch.float32, device=self.cls.device)

    def _check(self, x, valid, doy):
        if x.ndim != 3 or x.shape[-1] != self.wavelengths.numel():
            raise ValueError(f"series must be (B, T, C) with C = {self.wavelengths.numel()} bands, got "
                             f"{tuple(x.shape)}")
        if valid.shape != x.shape or doy.shape != x.shape[:2]:
            raise ValueError(f"valid {tuple(valid.shape)} must be {tuple(x.shape)} and doy {tuple(doy.shape)} "
                             f"must be {tuple(x.shape[:2])}")

    def embed(self, x: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, T, D), step_valid (B, T)): each step from its valid bands, plus its time."""
        self._check(x, valid, doy)
        feats = wavelength_features(self.wavelengths.to(x.device))                  # (C, 32)
        kernels = self.kernel(feats)                                                # (C, D)
        v = valid.to(x.dtype)
        n = v.sum(-1, keepdim=True)                                                 # (B, T, 1)
        scale = x.shape[-1] / n.clamp(min=1.0)                                       # as if every band were there
        tokens = torch.einsum("btc,cd->btd", x * v, kernels) * scale
        tokens = tokens + torch.einsum("btc,cd->btd", v, self.present(feats)) / x.shape[-1]
        step_valid = n[..., 0] > 0
        # a step without any valid band is a mask token: out of attention as a key, but its output is computed
        # (from the valid steps) so masked autoencoding can read every step back
        tokens = torch.where(step_valid[..., None], tokens, self.mask_token.to(tokens.dtype).expand_as(tokens))
        tokens = tokens + self.time(_time_features(doy.to(x.dtype), x.shape[1]))
        return tokens, step_valid

    def encode(self, tokens: torch.Tensor, step_valid: torch.Tensor) -> torch.Tensor:
        """Transformer over [cls, steps]; invalid steps are masked out of attention. (B, 1 + T, D)."""
        b = tokens.shape[0]
        seq = torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tokens.device), ~step_valid], dim=1)
        return self.norm(self.blocks(seq, src_key_padding_mask=pad))

    def forward_tokens(self, x, valid, doy) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, step_valid = self.embed(x, valid, doy)
        return self.encode(tokens, step_valid), step_valid

    def forward(self, x: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """(B, 2D): the class token and the mean of the valid steps' tokens."""
        out, step_valid = self.forward_tokens(x, valid, doy)
        w = step_valid.to(out.dtype)[..., None]
        mean = (out[:, 1:] * w).sum(1) / w.sum(1).clamp(min=1.0)
        return torch.cat([out[:, 0], mean], dim=-1)

    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D) step tokens -> (B, T, C) predicted values of every band (wavelength-generated readout)."""
        w = self.decode_kernel(wavelength_features(self.wavelengths.to(tokens.device)))   # (C, D + 1)
        return torch.einsum("btd,cd->btc", tokens, w[:, :-1]) + w[:, -1]


def ltae_head(in_channels: int, n_classes: int, steps: int, n_head: int = 16, d_k: int = 8,
              d_model: int = 256) -> nn.Module:
    """torchgeo's L-TAE (Garnot & Landrieu 2020) over per-date features (B, T = ``steps``, in_channels), then a
    linear layer to ``n_classes`` logits. torchgeo's L-TAE normalises over the whole sequence, so every input has
    exactly ``steps`` dates (fill a missing date, e.g. with the field's mean features)."""
    from torchgeo.models import LTAE

    if d_model % n_head:
        raise ValueError(f"d_model {d_model} must be a multiple of n_head {n_head}")
    ltae = LTAE(in_channels=in_channels, n_head=n_head, d_k=d_k, n_neurons=(d_model, 128), dropout=0.2,
                d_model=d_model, T=1000, len_max_seq=steps)
    # torchgeo 0.8's L-TAE applies an in-place dropout to the output of an in-place ReLU, which breaks backward in
    # training mode ("modified by an inplace operation"); the same layers out of place compute the same thing
    for m in ltae.modules():
        if isinstance(m, (nn.ReLU, nn.Dropout)):
            m.inplace = False
    return nn.Sequential(ltae, nn.Linear(128, n_classes))


def export_series_encoder(encoder: PixelSeriesEncoder, info, out: str | Path) -> Path:
    """``out/encoder.safetensors`` and ``out/weights.json`` (a :class:`~eossl.models.weights.WeightsInfo`), atomically."""
    from eossl.models.info import INFO_FILE
    from eossl.runs import atomic_write

    out = Path(out)
    if (out / INFO_FILE).exists():
        raise ValueError(f"{out} already holds exported weights; choose another directory")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    atomic_write(out / ENCODER_FILE, lambda p: save_file(state, str(p), metadata={"arch": SERIES_ARCH}))
    atomic_write(out / INFO_FILE, lambda p: p.write_text(json.dumps(asdict(info), indent=2)))
    return out


def load_series_encoder(path: str | Path, wavelengths_nm: list[float] | None = None) -> LoadedWeights:
    """The exported encoder (``.model``, a :class:`PixelSeriesEncoder`) with its ``weights.json`` (``.info``);
    ``wavelengths_nm`` re-targets it to another band set (its kernels are generated from wavelengths, so any bands
    work and ``.band_matches`` is empty)."""
    from eossl.models.info import LoadedWeights, read_weights_info

    info = read_weights_info(path)
    if info.arch != SERIES_ARCH:
        raise ValueError(f"{path} holds a {info.arch} image backbone, not a {SERIES_ARCH} time-series encoder "
                         f"(export one with `eossl pretrain-series`)")
    encoder = PixelSeriesEncoder(info.wavelengths_nm, **encoder_kwargs(info))
    encoder.load_state_dict(load_file(str(Path(path) / ENCODER_FILE)), strict=True)
    if wavelengths_nm is not None:
        encoder.set_bands(wavelengths_nm)
    return LoadedWeights(encoder, info)


def encoder_kwargs(info) -> dict:
    """The :class:`PixelSeriesEncoder` arguments recorded in exported weights' ``weights.json``."""
    return {k: v for k, v in info.extra.get("temporal", {}).items()
            if k in ("dim", "depth", "heads", "mlp_ratio", "dropout")}


def series_normalization(info: WeightsInfo, sensor, bands: list[str]):
    """Statistics for ``bands``: the encoder's (``info``, its ``weights.json``) for the bands it was pretrained on,
    the sensor catalog's for the others (the encoder reads any band set)."""
    from eossl.data.normalization import Normalization

    stored = dict(zip(info.bands, zip(info.normalization["mean"], info.normalization["std"])))
    catalog = Normalization.of_sensor(sensor, bands)
    pairs = [stored.get(b, (float(catalog.mean[i]), float(catalog.std[i]))) for i, b in enumerate(bands)]
    return Normalization(tuple(bands), [m for m, _ in pairs], [sd for _, sd in pairs])
