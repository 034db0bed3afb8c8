"""The typed, strict configurations of ``eossl predict`` (image class maps, :class:`PredictConfig`; crop-type maps of
a scene stack, :class:`StackMapConfig`) and of the crop-type map's model (:class:`StackFitConfig`: the stack
evaluation's config, ``task: stack``, plus what the model is fitted on; ``eossl finetune`` reads it, so one file
serves the evaluation and the map); defaults live here (and nowhere else).

Load with :func:`eossl.config.load_config`: a YAML file (optional), then command-line flags, then ``--set key=value``
overrides, in that order of precedence (later wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eossl.config import ConfigError, field
from eossl.evaluate.config import STACK_ROWS, EvaluateConfig

__all__ = ["PredictConfig", "StackFitConfig", "StackMapConfig"]


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


@dataclass
class StackFitConfig(EvaluateConfig):
    """The stack evaluation's config (``task: stack``) and what the map model is fitted on."""

    fit_on: Literal["all", "split"] = field("all", help="all: every pixel of every parcel (fragments below "
                                                        "stack.min_parcel_pixels excluded); split: the training "
                                                        "pixels of one evaluation split (split_seed, k), so the "
                                                        "map can be checked against the evaluation")
    split_seed: int | None = field(None, help="fit_on split: the evaluation seed (seed .. seed + seeds - 1); "
                                              "null: seed")
    k: int | Literal["all"] | None = field(None, help="fit_on split: labelled pixels per class, one of ks; null: "
                                                      "the largest of ks")
    row: Literal[STACK_ROWS] | None = field(None, help="the row fitted; null: the stack task's headline row")
    map_stack: str | None = field(None, help="the stack (its name in stack.stacks) the model is fitted on; null: "
                                             "the only one")

    def __post_init__(self):
        super().__post_init__()
        if self.task != "stack":
            raise ConfigError(f"task: a crop-map model is fitted with task 'stack', got {self.task!r}")
        if self.k is not None and self.k not in self.ks:
            raise ConfigError(f"k: {self.k!r} is not one of ks {self.ks}: the map is checked against a split the "
                              f"evaluation scores")

    def split(self) -> tuple[int, str]:
        """(seed, k) of the split fitted on under ``fit_on: split``."""
        seed = self.seed if self.split_seed is None else self.split_seed
        if not self.seed <= seed < self.seed + self.seeds:
            raise ConfigError(f"split_seed: {seed} is not an evaluation seed ({self.seed} .. "
                              f"{self.seed + self.seeds - 1})")
        ints = [k for k in self.ks if k != "all"]
        k = self.k if self.k is not None else ("all" if "all" in self.ks else max(ints))
        return seed, str(k)


@dataclass
class StackMapConfig:
    """A crop-type map of a whole scene stack from a fitted StackModel."""

    model: str = field(help="the map model's folder (stack_model.json), e.g. RUN/model of `eossl finetune`")
    stack: str = field(help="the stack: a folder of NetCDF/Zarr or GeoTIFF scenes, or one datacube file")
    out: str = field(help="the crop-type map (.tif, Cloud-Optimised GeoTIFF); the confidence goes to "
                          "<out stem>_confidence.tif")
    labels: str | None = field(None, help="reference labels drawn beside the map (quick looks); null: the model's "
                                          "own labels when the stack is the one it was fitted on")
    overwrite: bool = field(False, help="replace existing outputs (otherwise an existing output is an error)")
    chunk: int = field(262144, ge=1, help="pixels predicted at once (bounds memory)")
    device: str = field("cpu", help="torch device of the encoder rows")
