"""The crop-type map of a whole scene stack from a fitted :class:`~eossl.evaluate.stack_model.StackModel`
(issue 25, point 5).

>>> res = predict_stack_map("runs/cropmodel/model", "flanders2018/", "map.tif")
>>> res.codes.shape, res.confidence.shape                 # (H, W) legend codes, (H, W) max probability

Every pixel of the stack goes through the one path the evaluation scores: :func:`open_stack` with the model's
bands, :func:`composite` with its period, :func:`stack_samples` for every pixel, ``model.predict_proba``. Pixels
never valid (no valid observation of any band on any date) are nodata.

Outputs, each written to a hidden temporary file beside it and renamed into place (an existing output is an
error unless ``overwrite``):

* ``out``: a one-band Cloud-Optimised GeoTIFF on the stack's (= the labels') grid: the class's legend code
  (uint16, or int32 for codes beyond it), a colour table, tags ``classes`` (names), ``codes``, ``colors``,
  ``class_names`` (code -> name), ``model``, ``stack``; nodata 0 (the unlabelled code), or the dtype's maximum
  when 0 is a class;
* ``<out stem>_confidence.tif``: a separate float32 COG, the maximum class probability in [0, 1], NaN nodata
  (a separate file, so the class map stays a single palette band that GIS tools colour as it is).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from eossl import __version__
from eossl.data.series.composite import composite
from eossl.data.series.stack import open_stack
from eossl.data.series.stack_samples import stack_samples
from eossl.evaluate.stack_model import StackModel
from eossl.models.classifier import default_colors
from eossl.predict.cog import temp_name, to_cog

__all__ = ["StackMap", "confidence_path", "class_colors", "predict_stack_map", "write_stack_map"]


@dataclass
class StackMap:
    """A predicted map: ``codes`` (H, W) legend codes (``nodata`` where never valid), ``confidence`` (H, W) max
    probability (NaN there), the model's ``classes``/``class_codes``, and the files written."""

    codes: np.ndarray
    confidence: np.ndarray
    nodata: int
    classes: list[str]
    class_codes: list[int]
    grid: object
    out: Path | None = None
    confidence_out: Path | None = None


def confidence_path(out: str | Path) -> Path:
    """Where the confidence of crop-type map ``out`` goes: ``<out stem>_confidence.tif``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_confidence{out.suffix}")


def class_colors(n: int) -> list[list[int]]:
    """The colour (RGB) of each of ``n`` classes in class order: the map's colour table and the figures'."""
    return default_colors(n)


def _check_outputs(out: Path, overwrite: bool) -> list[Path]:
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"output {out} must be a .tif file (a Cloud-Optimised GeoTIFF is written)")
    outs = [out, confidence_path(out)]
    if not overwrite:
        for path in outs:
            if path.exists():
                raise ValueError(f"{path} exists; choose another --out, or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return outs


def predict_stack_map(model_dir: str | Path, stack: str | Path, out: str | Path | None = None, *,
                      overwrite: bool = False, chunk: int = 262144, device: str = "cpu") -> StackMap:
    """Map every pixel of ``stack`` with the model saved in ``model_dir``; with ``out``, write the COGs."""
    if out is not None:
        _check_outputs(Path(out), overwrite)             # before minutes of work, not after
    model = StackModel.load(model_dir, device=device)
    comp = composite(open_stack(stack, sensor=model.sensor, bands=model.bands), period=model.period)
    samples = stack_samples(comp, source=str(stack))
    n = len(samples)
    proba_max = np.empty(n, np.float32)
    best = np.empty(n, np.int64)
    for i in range(0, n, chunk):       # one chunk for any stack the evaluation holds in memory
        part = samples if (i == 0 and chunk >= n) else samples.subset(np.arange(i, min(n, i + chunk)))
        p = model.predict_proba(part, comp=comp, pixels=np.arange(i, i + len(part)))
        best[i:i + len(p)], proba_max[i:i + len(p)] = p.argmax(axis=1), p.max(axis=1)
    h, w = comp.grid.height, comp.grid.width
    never = comp.never_valid.all(axis=0)
    nodata = 0 if 0 not in model.codes else int(np.iinfo(_dtype(model.codes)).max)
    codes = np.where(never, nodata, np.asarray(model.codes)[best].reshape(h, w))
    conf = np.where(never, np.nan, proba_max.reshape(h, w)).astype(np.float32)
    res = StackMap(codes=codes, confidence=conf, nodata=nodata, classes=list(model.classes),
                   class_codes=list(model.codes), grid=comp.grid)
    if out is not None:
        tags = {"model": str(model_dir), "stack": str(stack), "features": model.features,
                "classifier": model.classifier, "period": model.period, "bands": json.dumps(model.bands)}
        write_stack_map(res, Path(out), tags, overwrite)
    return res


def _dtype(codes) -> str:
    return "uint16" if max(codes) < np.iinfo(np.uint16).max and min(codes) >= 0 else "int32"


def write_stack_map(res: StackMap, out: Path, tags: dict, overwrite: bool = False) -> StackMap:
    """Write ``res`` to ``out`` and its confidence beside it (see the module doc)."""
    outs = _check_outputs(out, overwrite)
    colors = class_colors(len(res.class_codes))
    dtype = _dtype(res.class_codes)
    meta = {"classes": json.dumps(res.classes), "codes": json.dumps(res.class_codes),
            "colors": json.dumps(colors), "class_names": json.dumps(dict(zip(map(str, res.class_codes), res.classes))),
            "nodata": f"{res.nodata}: no valid observation on any date", "eossl_version": __version__, **tags}
    cmap = {int(c): (*rgb, 255) for c, rgb in zip(res.class_codes, colors)}
    if dtype == "uint16":
        cmap[res.nodata] = (0, 0, 0, 0)
    _write(res.codes.astype(dtype), dtype, res.nodata, res.grid, outs[0], meta, "crop type (legend code)",
           cmap if dtype == "uint16" else None, "nearest")
    _write(res.confidence, "float32", float("nan"), res.grid, outs[1],
           {**meta, "band": "maximum class probability"}, "confidence", None, "average")
    res.out, res.confidence_out = outs
    return res


def _write(arr: np.ndarray, dtype: str, nodata, grid, out: Path, tags: dict, description: str, cmap,
           resampling: str) -> None:
    """One band to a part file, then a COG, renamed onto ``out`` (GTiff palettes exist for 8/16-bit bands)."""
    part = Path(temp_name(out, "part.tif"))
    try:
        with rasterio.open(part, "w", driver="GTiff", width=grid.width, height=grid.height, count=1, dtype=dtype,
                           crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True, blockxsize=256,
                           blockysize=256, compress="deflate") as ds:
            ds.write(arr, 1)
            ds.update_tags(**tags)
            ds.set_band_description(1, description)
            if cmap is not None:
                ds.write_colormap(1, cmap)
        tmp = to_cog(part, out, resampling)
        os.replace(tmp, out)
    finally:
        part.unlink(missing_ok=True)
