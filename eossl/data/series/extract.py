"""``eossl extract``: time series at points or polygons from indexed scenes and datacubes, as a long table.

For every geometry and every acquisition of the place it lies in (a stack, :func:`eossl.data.pixel_series.stacks_of`)
the pixels are read on the stack's grid through the index's readers (scaling, nodata, cloud masks; geometries near
each other share one read per acquisition, :data:`TILE_PX`): a point gives
the pixel that contains it (``mode: pixel``), a polygon the mean of the valid pixels whose centres fall inside it
(``mode: mean``; a polygon smaller than a pixel takes the pixel of its representative point). The table has one
row per geometry and date: ``sample_id``, the label, ``date``, ``lon`` / ``lat`` (the geometry's representative
point), one column per band (NaN where no pixel was valid), ``n_pixels`` and ``valid_pixels``. It is the long
layout of :func:`eossl.data.series.read_series_table` (``id_column: sample_id``, ``time_column: date``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from shapely.geometry import box
from tqdm.auto import tqdm

from eossl.catalog.index import SceneIndex
from eossl.data.reader import ChipReader
from eossl.data.series.pixels import stacks_of

log = logging.getLogger(__name__)

__all__ = ["extract_series", "grid_points", "run_extract", "write_table"]

TILE_PX = 256       # geometries whose windows start in one tile of this many pixels are read together


def grid_points(index: SceneIndex, spacing_m: float):
    """Points every ``spacing_m`` (a multiple of the pixel size is best) over the footprint of each place of the
    index (a stack of acquisitions sharing a grid), at pixel centres, as a GeoDataFrame in EPSG:4326 with a
    ``sample_id`` column (``grid-<stack>-<row>-<col>``): unlabeled series to extract for pretraining or mapping."""
    import geopandas as gpd
    from shapely.geometry import Point

    if spacing_m <= 0:
        raise ValueError(f"grid spacing must be > 0 m, got {spacing_m}")
    frames = []
    for s, stack in enumerate(stacks_of(index)):
        crs, res = index.crs(stack[0]), min(index.res(i) for i in stack)
        left, bottom, right, top = index.bounds(stack[0])
        xs = np.arange(left + res / 2, right, spacing_m)
        ys = np.arange(top - res / 2, bottom, -spacing_m)
        xs = np.floor((xs - left) / res) * res + left + res / 2             # on pixel centres
        ys = top - np.floor((top - ys) / res) * res - res / 2
        pts = [Point(x, y) for y in ys for x in xs]
        names = [f"grid-{s}-{r}-{c}" for r in range(ys.size) for c in range(xs.size)]
        frames.append(gpd.GeoDataFrame({"sample_id": names}, geometry=pts, crs=crs).to_crs("EPSG:4326"))
    if not frames:
        raise ValueError("the index has no acquisitions to put a grid on")
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")


def extract_series(index: SceneIndex, labels, *, label_column: str | None = None, id_column: str | None = None,
                   bands: list[str] | None = None, label_crs: str | None = None, progress: bool = True
                   ) -> pd.DataFrame:
    """The long table described in the module doc. ``labels``: a vector file (any format geopandas reads, CSV with
    lon/lat or x/y) or a GeoDataFrame."""
    import geopandas as gpd

    from eossl.data.labelled.points import _read_frame, _with_crs

    if isinstance(labels, gpd.GeoDataFrame):
        frame, where = labels, "labels"
    else:
        where = str(labels)
        if not Path(labels).exists():
            raise FileNotFoundError(f"label file not found: {labels}")
        frame = _with_crs(_read_frame(Path(labels)), Path(labels), label_crs)
    for name, col in (("label_column", label_column), ("id_column", id_column)):
        if col is not None and col not in frame.columns:
            raise ValueError(f"{where}: no column {col!r} ({name}); columns are "
                             f"{[c for c in frame.columns if c != frame.geometry.name]}")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"{where}: no geometries")
    ids = frame[id_column].astype(str).tolist() if id_column else [str(i) for i in range(len(frame))]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: {id_column!r} repeats ids; give a column with one id per geometry")
    reader = ChipReader(index, bands=bands, resampling="nearest", allow_empty=True)
    out_bands = list(reader.bands)
    rep = frame.geometry.representative_point()
    lonlat = gpd.GeoSeries(rep, crs=frame.crs).to_crs("EPSG:4326")
    rows, found = [], np.zeros(len(frame), dtype=bool)
    stacks = stacks_of(index)
    bar = tqdm(total=len(stacks) * len(frame), desc="extracting series", unit="geom", disable=not progress)
    for stack in stacks:
        crs = index.crs(stack[0])
        res = min(index.res(i) for i in stack)
        area = box(*index.bounds(stack[0]))
        for i in stack[1:]:
            area = area.union(box(*index.bounds(i)))
        local = frame.geometry.to_crs(crs)
        # geometries near each other are read together: one window per tile of TILE_PX pixels (keyed by the
        # geometry's top-left corner) and acquisition, instead of one read per geometry and acquisition
        tiles: dict[tuple[int, int], list] = {}
        for g, geom in enumerate(local):
            if geom.intersects(area):
                window, inside = _pixels(geom, res)
                key = (int(window[0] // (TILE_PX * res)), int(window[3] // (TILE_PX * res)))
                tiles.setdefault(key, []).append((g, window, inside))
            else:
                bar.update(1)
        for members in tiles.values():
            ux0, uy0 = min(m[1][0] for m in members), min(m[1][1] for m in members)
            ux1, uy1 = max(m[1][2] for m in members), max(m[1][3] for m in members)
            for i in stack:
                chip = reader.read(i, (ux0, uy0, ux1, uy1), gsd=res)
                for g, window, inside in members:
                    c0, r0 = int(round((window[0] - ux0) / res)), int(round((uy1 - window[3]) / res))
                    h, w = inside.shape
                    use = inside & chip.mask[r0:r0 + h, c0:c0 + w]
                    valid = int(use.sum())
                    row = {"sample_id": ids[g], "date": index.datetime(i), "lon": lonlat.iloc[g].x,
                           "lat": lonlat.iloc[g].y, "n_pixels": int(inside.sum()), "valid_pixels": valid,
                           "acquisition": index.ids[i]}
                    if label_column:
                        row[label_column] = frame[label_column].iloc[g]
                    means = chip.image[:, r0:r0 + h, c0:c0 + w][:, use].mean(axis=1) if valid else \
                        np.full(len(out_bands), np.nan)
                    row.update({b: float(v) for b, v in zip(out_bands, means)})
                    rows.append(row)
            for g, _, _ in members:
                found[g] = True
            bar.update(len(members))
    bar.close()
    reader.close()
    if not rows:
        raise ValueError(f"no geometry of {where} falls on the index's acquisitions; check the label CRS "
                         f"(label_crs) and that the index covers them")
    if not found.all():
        log.warning("%d of %d geometries lie outside every acquisition: %s", int((~found).sum()), len(frame),
                    ", ".join(np.array(ids)[~found][:5]))
    table = pd.DataFrame(rows)
    table["date"] = pd.to_datetime(table["date"], utc=True).dt.tz_localize(None)
    return table.sort_values(["sample_id", "date"]).reset_index(drop=True)


def _pixels(geom, res: float) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """(window bounds on the res grid, (h, w) bool of the pixels the geometry takes)."""
    minx, miny, maxx, maxy = geom.bounds
    x0 = np.floor(minx / res) * res
    y1 = np.ceil(maxy / res) * res
    x1 = max(np.ceil(maxx / res) * res, x0 + res)
    y0 = min(np.floor(miny / res) * res, y1 - res)
    w, h = int(round((x1 - x0) / res)), int(round((y1 - y0) / res))
    inside = np.zeros((h, w), dtype=bool)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        inside = ~geometry_mask([geom], (h, w), from_origin(x0, y1, res, res), all_touched=False)
    if not inside.any():        # a point, a line or a polygon smaller than a pixel: the pixel of its point
        p = geom.representative_point()
        col = min(w - 1, int((p.x - x0) // res))
        row = min(h - 1, int((y1 - p.y) // res))
        inside[row, col] = True
    return (x0, y0, x1, y1), inside


def write_table(table: pd.DataFrame, out: str | Path, overwrite: bool = False) -> Path:
    """Parquet (or CSV by suffix), atomically; an existing file is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        table.to_csv(tmp, index=False)
    else:
        table.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def run_extract(cfg, out: str | Path, overwrite: bool = False, progress: bool = True) -> tuple[Path, pd.DataFrame]:
    """``cfg`` (:class:`~eossl.data.series.config.ExtractConfig`) -> the table written to ``out``."""
    from eossl.catalog.build import IndexOptions, build_index
    from eossl.catalog.index import open_index

    index = open_index(cfg.index) if cfg.index else build_index(list(cfg.roots), cfg.sensor,
                                                                IndexOptions(nodata=cfg.nodata), progress=progress)
    labels = cfg.labels if cfg.grid_m is None else grid_points(index, cfg.grid_m)
    table = extract_series(index, labels, label_column=cfg.label_column,
                           id_column="sample_id" if cfg.grid_m is not None else cfg.id_column, bands=cfg.bands,
                           label_crs=cfg.label_crs, progress=progress)
    return write_table(table, out, overwrite=overwrite), table

