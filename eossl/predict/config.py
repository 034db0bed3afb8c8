"""The typed, strict configuration of ``eossl predict``; defaults live here (and nowhere else).

Load with :func:`eossl.config.load_config`: a YAML file (optional), then command-line flags, then ``--set key=value``
overrides, in that order of precedence (later wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eossl.config import field

__all__ = ["PredictConfig"]


@dataclass
class PredictConfig:
    """What to predict, from which data, and how the sliding windows run."""

    RENAMED = {"bands": "band_order"}   # names of 0.1.0, still read (eossl.config)

    model: str = field(help="classifier directory (classifier.json + classifier.safetensors)")
    input: str = field(help="a scene index (.parquet, from `eossl catalog build`) or a multi-band GeoTIFF/COG")
    out: str = field(help="output class map (.tif, Cloud-Optimised GeoTIFF); never overwritten")
    acquisition: str | int | None = field(None, help="index input: acquisition id (a string) or row position "
                                                     "(an integer); needed when the index has several rows")
    band_order: list[str] | None = field(None, help="GeoTIFF input: every band of the file in file order (default: "
                                               "the file's band descriptions)")
    sensor: str | None = field(None, help="GeoTIFF input: sensor whose scale/offset turn DN into reflectance "
                                          "(default: the classifier's)")
    nodata: float | None = field(None, help="GeoTIFF input: nodata value if the file declares none "
                                            "(default: the sensor's)")
    bounds: tuple[float, float, float, float] | None = field(None, help="minx, miny, maxx, maxy (default: the "
                                                                         "whole footprint)")
    bounds_crs: str | None = field(None, help="CRS of bounds (default: the acquisition's)")
    overlap: float = field(0.5, ge=0.0, lt=1.0, help="fraction of a window shared with its neighbour")
    batch_size: int = field(16, ge=1, help="windows per forward pass")
    tile: int = field(1024, ge=16, help="tile side in px processed at once (bounds memory)")
    max_output_gb: float = field(20.0, gt=0, help="stop before writing a class map (plus probabilities) larger "
                                                  "than this, uncompressed, in GB (1e9 bytes)")
    probabilities: bool = field(False, help="also write <out stem>_probabilities.tif (uint8, p * 254)")
    device: str = field("cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps")
    resampling: Literal["nearest", "bilinear", "average"] = field("bilinear", help="for bands at another GSD")
    progress: bool = field(True, help="show a progress bar")


