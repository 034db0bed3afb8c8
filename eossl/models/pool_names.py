"""The names of the feature pools (:mod:`eossl.models.pooling` implements them), importable without torch: configs
validate against them at load time and ``--help`` texts list them."""

from __future__ import annotations

__all__ = ["POOLS"]

POOLS = ("last", "multi", *(f"stats{k}" for k in range(13)))   # statsK: K up to 12 (ViT blocks)
