"""Typed settings of the models built from configs (no torch import: a config module imports types only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from eossl.config import ConfigError, field

__all__ = ["SeriesEncoderConfig"]


@dataclass
class SeriesEncoderConfig:
    """The arguments of :class:`~eossl.models.temporal.PixelSeriesEncoder` (its defaults: Presto-sized, about
    0.4 M parameters). Exported weights record them in ``weights.json`` (``extra.temporal``)."""

    dim: int = field(128, ge=1, help="token width D (features are 2D: class token + mean of the step tokens)")
    depth: int = field(2, ge=1, help="transformer layers")
    heads: int = field(8, ge=1, help="attention heads (dim must be a multiple)")
    mlp_ratio: float = field(2.0, gt=0, help="feed-forward width / dim")
    dropout: float = field(0.0, ge=0, lt=1)

    def __post_init__(self):
        if self.dim % self.heads:
            raise ConfigError(f"encoder: dim {self.dim} must be a multiple of heads {self.heads}")

    def kwargs(self) -> dict:
        """Keyword arguments of ``PixelSeriesEncoder(wavelengths_nm, **kwargs)``."""
        return asdict(self)
