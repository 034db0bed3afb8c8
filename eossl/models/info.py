"""``weights.json``: what exported weights are (:class:`WeightsInfo`), read back with a clear error, and what
loading them gives (:class:`LoadedWeights`). Image backbones (:mod:`eossl.models.weights`) and time-series
encoders (:mod:`eossl.models.temporal`) share both."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eossl import __version__
from eossl.models.adapt import UNMATCHED, BandMatch
from eossl.models.pooling import POOLS

if TYPE_CHECKING:
    from torch import nn

__all__ = ["INFO_FILE", "LoadedWeights", "WeightsInfo", "read_info", "read_weights_info"]

INFO_FILE = "weights.json"


@dataclass
class WeightsInfo:
    arch: str
    in_chans: int
    bands: list[str]
    wavelengths_nm: list[float]
    gsd_m: float
    normalization: dict[str, list[float]]
    ssl_method: str
    pretrain_data: str
    epochs: int
    img_size: int = 224
    feature_pool: str = "last"
    feature_pool_source: dict | None = None
    unmatched: str = "error"     # stem policy for data bands with no counterpart (eossl.models.adapt.UNMATCHED)
    eossl_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.in_chans
        lengths = {"bands": len(self.bands), "wavelengths_nm": len(self.wavelengths_nm),
                   "normalization.mean": len(self.normalization.get("mean", [])),
                   "normalization.std": len(self.normalization.get("std", []))}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"weights info: in_chans is {n} but {', '.join(f'{k} has {v}' for k, v in bad.items())}")
        if self.unmatched not in UNMATCHED:
            raise ValueError(f"weights info: unmatched {self.unmatched!r}; choose one of {', '.join(UNMATCHED)}")
        if self.feature_pool not in POOLS:
            raise ValueError(f"weights info: unknown feature_pool {self.feature_pool!r}; choose one of "
                             f"{', '.join(POOLS)}")


@dataclass(frozen=True)
class LoadedWeights:
    """What a loader of exported weights returns (:data:`eossl.models.weights.WEIGHTS_LOADERS`): the rebuilt
    ``model``, the ``info`` of its ``weights.json``, and ``band_matches``, how each target band's stem kernel was
    made (:class:`~eossl.models.adapt.BandMatch`, input order; empty when the weights' own bands were kept or the
    model generates its kernels from wavelengths). Nothing is pinned onto the model itself."""

    model: nn.Module
    info: WeightsInfo
    band_matches: tuple[BandMatch, ...] = ()


def read_info(cls, path: str | Path, file: str, required: tuple[str, ...], hint: str):
    """A self-describing model's info (``cls``: a dataclass) from ``path`` (its folder or the JSON ``file``);
    a missing file or key is an error naming it (``hint``: how to make one). Unknown keys are ignored."""
    path = Path(path)
    info_file = path / file if path.is_dir() else path
    if not info_file.is_file():
        raise FileNotFoundError(f"no {file} in {path}; {hint}")
    data = json.loads(info_file.read_text())
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{info_file}: missing keys {missing}")
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def read_weights_info(path: str | Path) -> WeightsInfo:
    """``weights.json`` of a weights folder, or of shipped weights ``eossl:<name>`` (:mod:`eossl.models.shipped`)."""
    from eossl.models.shipped import resolve_shipped

    path = resolve_shipped(path)
    return read_info(WeightsInfo, path, INFO_FILE, ("arch", "in_chans", "bands", "wavelengths_nm", "gsd_m",
                                                    "normalization", "ssl_method", "pretrain_data", "epochs"),
                     "export weights with `eossl export`")
