"""Class maps from a fine-tuned classifier: sliding windows over a scene -> a Cloud-Optimised GeoTIFF.

>>> predict_map(load_classifier("runs/ft/model"), "index.parquet", "map.tif", acquisition="T33UUP_...")
>>> predict_map(clf, "stack.tif", "map.tif", band_order=["B02", "B03", "B04", "B08"], probabilities=True)

The source is read with the :class:`~eossl.data.reader.ChipReader` in the classifier's bands, at its GSD, on the
acquisition's CRS grid (a single GeoTIFF is indexed in memory by the catalog first, so DN become reflectance
exactly as in training). Windows of ``info.img_size`` px with ``overlap`` are normalised, classified and their
softmax probabilities blended per pixel with a separable tent weight (``1/size`` at a window's edge, ~1 at its
centre); a patch classifier's probability is spread over its whole window. The raster is processed in tiles
(each read with a halo of one window), so memory stays bounded on a full Sentinel-2 tile; windows that cross a
tile seam are computed once per tile they touch.

Outputs (both written to a temporary file in the output folder, then renamed; existing files are never replaced):

* ``out``: uint8 class indices, nodata 255 (invalid input, or no window), colour table from ``info.colors``,
  tags ``classes`` / ``colors`` (JSON) and the model description;
* ``<out stem>_probabilities.tif`` (``probabilities=True``): one uint8 band per class, ``round(p * 254)``
  (band scale 1/254, so ``rasterio``'s ``ds.scales`` / GDAL unscaling give p), nodata 255, band descriptions =
  class names. uint8 rather than float32: a quarter of the size, and 1/254 is finer than a softmax is calibrated.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from tqdm.auto import tqdm

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import SceneIndex, open_index
from eossl.catalog.sensors import load_sensor
from eossl.data.normalization import Normalization
from eossl.data.radiometry import check_chips, spread
from eossl.data.reader import ChipReader
from eossl.gdal_env import configure_gdal, is_remote, open_raster
from eossl.geo import check_output_size, scene_gsd_m, working_bounds, working_crs
from eossl.models.classifier import load_classifier
from eossl.predict.cog import (
    NODATA,
    PROB_SCALE,
    check_output,
    part_file,
    probabilities_path,
    tags,
    to_cog,
)

__all__ = ["NODATA", "PROB_SCALE", "Grid", "predict_map", "predict_from_config", "open_source", "prediction_grid", "window_starts",
           "blend_weights", "probabilities_path"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Grid:
    """The output pixel grid: north-up, square ``gsd`` pixels, top-left corner ``(x0, y0)`` in ``crs``."""

    crs: str
    x0: float
    y0: float
    gsd: float
    height: int
    width: int

    @property
    def transform(self):
        return from_origin(self.x0, self.y0, self.gsd, self.gsd)

    def bounds(self, r0: int, r1: int, c0: int, c1: int) -> tuple[float, float, float, float]:
        """Bounds of pixel rows ``r0:r1`` and columns ``c0:c1`` (may lie outside the grid)."""
        g = self.gsd
        return (self.x0 + c0 * g, self.y0 - r1 * g, self.x0 + c1 * g, self.y0 - r0 * g)


def window_starts(n: int, size: int, stride: int) -> list[int]:
    """Window offsets along an axis of ``n`` px: every ``stride``, the last flush with the end (``[0]`` if n <= size)."""
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def blend_weights(size: int) -> np.ndarray:
    """(size, size) float32 separable tent: 1/size at the window edge, ~1 at the centre (never 0)."""
    t = (np.arange(size) + 0.5) / size
    w = 1.0 - np.abs(2.0 * t - 1.0)
    return np.outer(w, w).astype(np.float32)


# ------------------------------------------------------------------------------------------------ sources


def open_source(source, info, *, acquisition: int | str | None = None, band_order: list[str] | None = None,
                sensor: str | None = None, nodata: float | None = None) -> tuple[SceneIndex, int, str]:
    """``(index, row, label)`` for a SceneIndex, an index ``.parquet`` path, or a multi-band GeoTIFF path.

    A GeoTIFF's band order is ``band_order`` (every band of the file, in order; ``NAME:skip`` for a layer that is not a
    band, e.g. ``QA:skip``) or else its band descriptions; its DN
    are converted with ``sensor`` (default: the classifier's). Raises ValueError naming missing bands.
    """
    is_index = isinstance(source, SceneIndex) or str(source).endswith(".parquet")
    if is_index:
        if band_order is not None or sensor is not None:
            raise ValueError("band_order/sensor describe a GeoTIFF source; an index already knows its bands and "
                             "sensor (drop --band-order/--sensor)")
        index = source if isinstance(source, SceneIndex) else open_index(source)
        i = _position(index, acquisition)
        files = sorted({a.path for a in index.assets(i).values()})
        more = f", ... ({len(files)} files)" if len(files) > 3 else ""
        label = f"acquisition {index.ids[i]!r} of {index.path or 'the index'} ({', '.join(files[:3])}{more})"
        hint = "predict from an acquisition holding every band, or with a classifier trained on these bands"
    else:
        if acquisition is not None:
            raise ValueError(f"acquisition= applies to an index source, not to the file {source}")
        index, i, label = _index_file(str(source), info, band_order, sensor, nodata), 0, str(source)
        hint = "check the file's band order (band_order / --band-order) or use a file holding every band"
    _check_bands(index, i, info, label, hint)
    if info.sensor and info.sensor != index.sensor(i).name:
        log.warning("the classifier was trained on %s data but %s is %s data (read in that sensor's units)",
                    info.sensor, label, index.sensor(i).name)
    return index, i, label


def _position(index: SceneIndex, acquisition: int | str | None) -> int:
    if acquisition is None:
        if len(index) != 1:
            raise ValueError(f"{index.path or 'the index'} holds {len(index)} acquisitions; choose one with "
                             f"--acquisition ID (e.g. {', '.join(index.ids[:3])})")
        return 0
    if isinstance(acquisition, int):
        if not 0 <= acquisition < len(index):
            raise ValueError(f"acquisition position {acquisition} is out of range: {index.path or 'the index'} "
                             f"has {len(index)} rows")
        return acquisition
    if acquisition not in index.ids and acquisition.strip().isdigit():
        # `--acquisition 0` from the command line: a row position when no acquisition has that id
        return _position(index, int(acquisition))
    return index.position(acquisition)


def _index_file(path: str, info, band_order: list[str] | None, sensor: str | None, nodata: float | None) -> SceneIndex:
    """Index one raster file in memory with the catalog (band order, nodata and scaling as `eossl catalog`)."""
    name = sensor or info.sensor
    if not name:
        raise ValueError(f"the classifier names no sensor, so the DN of {path} cannot be converted to its "
                         f"reflectance units; pass the file's sensor (sensor= / --sensor, e.g. sentinel2-l2a)")
    spec = load_sensor(name)
    if not is_remote(path) and not Path(path).is_file():
        raise FileNotFoundError(f"input raster not found: {path}")
    with open_raster(path) as ds:
        count, descriptions = ds.count, ds.descriptions
    if band_order is not None:
        if len(band_order) != count:
            raise ValueError(f"{path} has {count} band(s) but band_order lists {len(band_order)} "
                             f"({', '.join(band_order)}); "
                             f"list every band of the file, in file order")
        from eossl.catalog.stacks import parse_band_order

        order = parse_band_order(band_order, spec)      # NAME:skip leaves a QA or thermal layer out
        listed = list(band_order)
    else:
        described = [spec.match(d) if d else None for d in descriptions]
        if not all(described) or len(set(described)) != count:
            raise ValueError(f"{path}: the band descriptions {list(descriptions)} do not name distinct {spec.name} "
                             f"bands; give the file's band order with band_order / --band-order (e.g. --band-order "
                             f"{','.join(info.bands)})")
        order = listed = described
    options = IndexOptions(band_order=listed if count > 1 else None, datetime_sources=[], nodata=nodata,
                           strict=True)
    index = build_index([path], spec, options, progress=False)
    got = {b: a.band_index for b, a in index.assets(0).items()}
    if len(index) != 1 or got != {b: k + 1 for k, b in enumerate(order) if b is not None}:
        raise ValueError(f"{path}: indexed as bands {got}, expected {order}; for a single-band file the file name "
                         f"or description must name the band (or index it with `eossl catalog build`)")
    return index


def _check_bands(index: SceneIndex, i: int, info, label: str, hint: str) -> None:
    sensor, assets = index.sensor(i), index.assets(i)
    missing = [b for b in info.bands if sensor.match(b) not in assets]
    if missing:
        raise ValueError(f"{label} lacks band(s) {', '.join(missing)} that the classifier needs (it reads "
                         f"{', '.join(info.bands)}; the data has {', '.join(assets)}); {hint}")


def prediction_grid(index: SceneIndex, i: int, gsd: float, bounds=None, bounds_crs: str | None = None) -> Grid:
    """The grid at ``gsd`` metres over the acquisition's footprint, or over ``bounds`` snapped to the footprint's grid.

    The grid is in the acquisition's CRS when that is projected in metres; a scene in a geographic CRS (or in feet)
    is predicted on its local UTM zone (:func:`eossl.geo.working_crs`, logged), the reader warping its pixels.
    ``bounds`` are in ``bounds_crs`` (default: the acquisition's own CRS).
    """
    crs = working_crs(index, i)
    fp = working_bounds(index, i, crs)
    if bounds is None:
        return Grid(crs, fp[0], fp[3], gsd, math.ceil((fp[3] - fp[1]) / gsd - 1e-6),
                    math.ceil((fp[2] - fp[0]) / gsd - 1e-6))
    given_crs = bounds_crs or index.crs(i)
    bx0, by0, bx1, by1 = (transform_bounds(given_crs, crs, *bounds, densify_pts=21) if given_crs != crs
                          else bounds)
    if bx1 <= bx0 or by1 <= by0:
        raise ValueError(f"bounds {tuple(bounds)} are empty: need minx < maxx and miny < maxy")
    if bx1 <= fp[0] or bx0 >= fp[2] or by1 <= fp[1] or by0 >= fp[3]:
        raise ValueError(f"bounds {tuple(bounds)} ({bounds_crs or crs}) do not overlap acquisition "
                         f"{index.ids[i]!r}, whose footprint is {fp} ({crs})")
    c0, c1 = math.floor((bx0 - fp[0]) / gsd + 1e-6), math.ceil((bx1 - fp[0]) / gsd - 1e-6)
    r0, r1 = math.floor((fp[3] - by1) / gsd + 1e-6), math.ceil((fp[3] - by0) / gsd - 1e-6)
    return Grid(crs, fp[0] + c0 * gsd, fp[3] - r0 * gsd, gsd, r1 - r0, c1 - c0)


# ------------------------------------------------------------------------------------------------ windows


@dataclass
class _Plan:
    """Everything the tile loop needs: model, reader, grid, windows, normalisation."""

    model: torch.nn.Module
    reader: ChipReader
    row: int
    grid: Grid
    size: int
    stride: int
    task: str
    n_classes: int
    starts: tuple[list[int], list[int]]
    weights: np.ndarray
    norm: Normalization
    batch_size: int
    device: torch.device


def _tiles(plan: _Plan, tile: int):
    """``(r0, r1, c0, c1, row_starts, col_starts)``: tiles and the windows that touch them."""
    g, size = plan.grid, plan.size
    for r0 in range(0, g.height, tile):
        r1 = min(r0 + tile, g.height)
        rs = [s for s in plan.starts[0] if s < r1 and s + size > r0]
        for c0 in range(0, g.width, tile):
            c1 = min(c0 + tile, g.width)
            yield r0, r1, c0, c1, rs, [s for s in plan.starts[1] if s < c1 and s + size > c0]


def _predict_tile(plan: _Plan, r0, r1, c0, c1, rs, cs) -> tuple[np.ndarray, np.ndarray]:
    """Blended probabilities (K, h, w) float32 of one tile and its validity (h, w)."""
    size = plan.size
    rr0, cc0 = rs[0], cs[0]
    chip = plan.reader.read(plan.row, plan.grid.bounds(rr0, rs[-1] + size, cc0, cs[-1] + size),
                            crs=plan.grid.crs, gsd=plan.grid.gsd)
    mask = chip.mask
    valid = mask[r0 - rr0:r1 - rr0, c0 - cc0:c1 - cc0].copy()
    acc = np.zeros((plan.n_classes, r1 - r0, c1 - c0), dtype=np.float32)
    wsum = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    if not valid.any():
        return acc, valid
    image = plan.norm.apply(chip.image, mask).numpy()  # invalid pixels look like the band mean to the model
    boxes = []  # (window offset, part of the window inside the tile)
    for r in rs:
        for c in cs:
            ir0, ir1, ic0, ic1 = max(r, r0), min(r + size, r1), max(c, c0), min(c + size, c1)
            if valid[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0].any():
                boxes.append(((r, c), (ir0, ir1, ic0, ic1)))
    for k in range(0, len(boxes), plan.batch_size):
        batch = boxes[k:k + plan.batch_size]
        x = np.stack([image[:, r - rr0:r - rr0 + size, c - cc0:c - cc0 + size] for (r, c), _ in batch])
        probs = _window_probs(plan, x)
        for ((r, c), (ir0, ir1, ic0, ic1)), p in zip(batch, probs):
            w = plan.weights[ir0 - r:ir1 - r, ic0 - c:ic1 - c]
            part = p[:, None, None] if plan.task == "patch" else p[:, ir0 - r:ir1 - r, ic0 - c:ic1 - c]
            acc[:, ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] += part * w
            wsum[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] += w
    valid &= wsum > 0
    np.divide(acc, wsum, out=acc, where=valid)
    return acc, valid


def _window_probs(plan: _Plan, x: np.ndarray) -> np.ndarray:
    """(B, C, S, S) normalised windows -> softmax probabilities, (B, K) or (B, K, S, S) float32."""
    with torch.inference_mode():
        logits = plan.model(torch.from_numpy(np.ascontiguousarray(x)).to(plan.device))
    b, k, s = len(x), plan.n_classes, plan.size
    expected = (b, k) if plan.task == "patch" else (b, k, s, s)
    if tuple(logits.shape) != expected:
        raise ValueError(f"the {plan.task} classifier returned logits of shape {tuple(logits.shape)} for input "
                         f"{tuple(x.shape)}; expected {expected}")
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


# ------------------------------------------------------------------------------------------------ public


def predict_map(classifier, source, out: str | Path, *, acquisition: int | str | None = None,
                band_order: list[str] | None = None, sensor: str | None = None, nodata: float | None = None,
                bounds=None, bounds_crs: str | None = None, overlap: float = 0.5, batch_size: int = 16,
                probabilities: bool = False, device: str = "cpu", tile: int = 1024, resampling: str = "bilinear",
                progress: bool = True, max_output_gb: float = 20.0) -> Path:
    """Write the class map of ``source`` to the COG ``out`` (and ``<stem>_probabilities.tif``); returns ``out``.

    ``classifier``: a :class:`~eossl.models.classifier.Classifier` with ``.info`` (or its directory); it is
    moved to ``device`` and run in eval mode (its train/eval mode is restored afterwards).
    ``source``/``acquisition``/``band_order``/``sensor``/``nodata``: see :func:`open_source`. ``bounds``: (minx, miny,
    maxx, maxy) in ``bounds_crs`` (default: the acquisition's CRS), snapped outwards to the grid; default the whole
    footprint. ``tile``: tile side in px (rounded up to a multiple of the window stride). ``max_output_gb``: the
    class map (and probabilities) may not exceed this many GB (1e9 bytes) uncompressed; checked before any file
    or array is made (a 10 m map of a whole Sentinel-2 tile is 0.12 GB per band).
    Deterministic: the same inputs and arguments give identical files.
    """
    model = classifier if isinstance(classifier, torch.nn.Module) else load_classifier(classifier)
    info = getattr(model, "info", None)
    if info is None:
        raise ValueError("the classifier carries no .info; load it with eossl.models.classifier.load_classifier")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1 or tile < 1:
        raise ValueError(f"batch_size and tile must be >= 1, got {batch_size} and {tile}")
    if len(info.classes) > NODATA:
        raise ValueError(f"{len(info.classes)} classes do not fit a uint8 map with nodata {NODATA}")
    outs = check_output(Path(out), probabilities)
    index, row, label = open_source(source, info, acquisition=acquisition, band_order=band_order, sensor=sensor,
                                    nodata=nodata)
    configure_gdal()
    grid = prediction_grid(index, row, float(info.gsd_m), bounds, bounds_crs)
    _check_size(grid, index, row, label, len(info.classes) if probabilities else 0, max_output_gb)
    plan = _make_plan(model, index, row, grid, overlap, batch_size, device, resampling)
    _check_units(plan, index.sensor(row), label)
    tile = max(plan.stride, math.ceil(tile / plan.stride) * plan.stride)
    meta = tags(info, label, index.ids[row], overlap)
    parts: list[tuple[Path, object]] = []  # (part file, open dataset)
    done: list[Path] = []                  # converted COGs, renamed once both are complete
    was_training = model.training
    try:
        model.to(plan.device).eval()
        parts.append(part_file(outs[0], grid, 1, meta, ["class"], colors=info.colors))
        if probabilities:
            parts.append(part_file(outs[1], grid, len(info.classes), {**meta, "scale": f"p = value / {PROB_SCALE}"},
                                    info.classes, scale=1.0 / PROB_SCALE))
        _run_tiles(plan, tile, [ds for _, ds in parts], label=outs[0].name, progress=progress)
        for (part, ds), target, resampling_ in zip(parts, outs, ("MODE", "AVERAGE")):
            ds.close()
            done.append(to_cog(part, target, resampling_))
        check_output(outs[0], probabilities)  # nothing appeared meanwhile
        for tmp, target in zip(done, outs):
            os.replace(tmp, target)
    finally:
        model.train(was_training)
        plan.reader.close()
        for path, ds in parts:
            ds.close()
            path.unlink(missing_ok=True)
        for tmp in done:
            tmp.unlink(missing_ok=True)
    return outs[0]


def predict_from_config(cfg):
    """:func:`predict_map` with a :class:`~eossl.predict.config.PredictConfig`: ``(out path, classifier)``."""
    model = load_classifier(cfg.model)
    options = {k: v for k, v in vars(cfg).items() if k not in ("model", "input", "out")}   # predict_map's keywords
    return predict_map(model, cfg.input, cfg.out, **options), model


def _check_size(grid: Grid, index: SceneIndex, row: int, label: str, n_prob_bands: int, max_gb: float) -> None:
    """Stop before allocating when the class map (1 uint8 band) and probabilities exceed ``max_gb``."""
    native = index.crs(row)
    note = (f" (the scene is in {native} with {index.res(row):g}-unit pixels, {scene_gsd_m(index, row):.3g} m on "
            f"the ground)")
    what = f"the class map{' and probabilities' if n_prob_bands else ''} of {label}"
    check_output_size(what, (1 + n_prob_bands, grid.height, grid.width), 1, crs=grid.crs, gsd_m=grid.gsd,
                      max_gb=max_gb, note=note,
                      hint="predict a part with bounds (--set bounds=[minx,miny,maxx,maxy]) or raise the limit "
                           "(max_output_gb, e.g. --set max_output_gb=100)")


def _make_plan(model, index: SceneIndex, row: int, grid: Grid, overlap: float, batch_size: int, device: str,
               resampling: str) -> _Plan:
    info = model.info
    size = int(info.img_size)
    stride = max(1, round(size * (1 - overlap)))
    reader = ChipReader(index, [index.sensor(row).match(b) for b in info.bands], resampling=resampling,
                        allow_empty=True)
    return _Plan(model=model, reader=reader, row=row, grid=grid, size=size, stride=stride, task=info.task,
                 n_classes=len(info.classes), weights=blend_weights(size),
                 starts=(window_starts(grid.height, size, stride), window_starts(grid.width, size, stride)),
                 norm=Normalization.of_weights(info), batch_size=batch_size,
                 device=torch.device(device))


def _check_units(plan: _Plan, sensor, label: str, n: int = 3) -> None:
    """Read up to ``n`` x ``n`` windows spread over the grid and check their physical units before the full run."""
    size = plan.size
    chips = [plan.reader.read(plan.row, plan.grid.bounds(r, r + size, c, c + size), crs=plan.grid.crs,
                              gsd=plan.grid.gsd)
             for r in spread(plan.starts[0], n) for c in spread(plan.starts[1], n)]
    check_chips([c for c in chips if c.mask.any()], sensor, f"prediction input {label}")


def _run_tiles(plan: _Plan, tile: int, dsets: list, label: str, progress: bool) -> None:
    """Predict every tile and write it into the open part file(s): classes, then probabilities."""
    tiles = list(_tiles(plan, tile))
    bar = tqdm(total=sum(len(t[4]) * len(t[5]) for t in tiles), desc=f"predict {label}", unit="window",
               disable=not progress)
    with bar:
        for r0, r1, c0, c1, rs, cs in tiles:
            probs, valid = _predict_tile(plan, r0, r1, c0, c1, rs, cs)
            window = Window(c0, r0, c1 - c0, r1 - r0)
            dsets[0].write(np.where(valid, probs.argmax(axis=0), NODATA).astype(np.uint8), 1, window=window)
            if len(dsets) > 1:
                scaled = np.where(valid, np.rint(probs * PROB_SCALE), NODATA).astype(np.uint8)
                dsets[1].write(scaled, window=window)
            bar.update(len(rs) * len(cs))
