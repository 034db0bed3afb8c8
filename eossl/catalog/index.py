"""The scene index: a GeoParquet table with one row per acquisition.

Columns: ``id``, ``sensor``, ``kind`` (``raster`` | ``cube``), ``datetime`` (UTC, may be missing), ``root``,
``assets`` (JSON: band -> {path relative to root or URL, band index / variable, nodata}), ``crs``, ``res``
(finest band resolution, CRS units), ``minx miny maxx maxy`` (native CRS; where every band has data),
``footprint_native`` (WKT), ``valid_fraction``, ``mask`` + ``mask_shape`` (a coarse valid-pixel mask over the
bounds, used by samplers to reject mostly-empty windows without reading pixels) and ``geometry``
(footprint in EPSG:4326).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import box, shape

from eossl.catalog.sensors import Sensor, load_sensor, remember_definition, sensor_from_definition
from eossl.gdal_env import is_remote

__all__ = ["SceneIndex", "open_index", "INDEX_COLUMNS"]

SENSOR_DEFINITION = "sensor_definition"   # optional column: the sensor as built (JSON, sensors.sensor_definition)
# optional columns of indexes built from STAC: why the row's sensor was chosen, and the item it comes from
OPTIONAL_COLUMNS = [SENSOR_DEFINITION, "sensor_source", "stac_item"]
INDEX_COLUMNS = ["id", "sensor", "kind", "datetime", "root", "assets", "crs", "res", "minx", "miny", "maxx",
                 "maxy", "footprint_native", "valid_fraction", "mask", "mask_shape", "geometry"]


@dataclass
class Asset:
    """Where one band of one acquisition lives."""

    path: str            # absolute path or URL
    band_index: int      # 1-based band in the file (rasters)
    nodata: float | None
    var: str | None = None          # cubes: data variable
    band_sel: str | None = None     # cubes with a band dimension: the coordinate value
    time_index: int | None = None   # cubes: index along the time dimension
    scale: float | None = None      # overrides the sensor band's scale (e.g. a cube already in reflectance)
    offset: float | None = None
    mask_kind: str | None = None    # a cloud/quality mask (scl | qa_pixel | fmask, see catalog.quality), not a band


class SceneIndex:
    """An opened index. ``frame`` is the GeoDataFrame; rows are addressed by position or ``id``."""

    def __init__(self, frame: gpd.GeoDataFrame, path: str | None = None):
        missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path or 'index'}: not an eossl scene index (missing columns {missing}); "
                             f"build one with `eossl catalog build`")
        self.frame = frame.reset_index(drop=True)
        self.path = path
        self._assets_cache: dict[int, dict[str, Asset]] = {}
        self.sensor_names = sorted(set(self.frame["sensor"]))
        # per-row values as plain Python objects: samplers and readers look them up per window, and pandas
        # row access costs tens of microseconds each time
        f = self.frame
        self._ids = [str(v) for v in f["id"]]
        self._position = {}
        for k, v in enumerate(self._ids):
            self._position.setdefault(v, k)
        self._sensors = [str(v) for v in f["sensor"]]
        self._crs = [str(v) for v in f["crs"]]
        self._res = [float(v) for v in f["res"]]
        self._bounds = [tuple(float(v) for v in row) for row in f[["minx", "miny", "maxx", "maxy"]].to_numpy()]
        self._times = [None if pd.isna(v) else pd.Timestamp(v) for v in f["datetime"]]
        self._definitions: dict[str, str] = {}
        if SENSOR_DEFINITION in f.columns:
            for name, text in zip(self._sensors, f[SENSOR_DEFINITION], strict=True):
                if isinstance(text, str) and text:
                    self._definitions.setdefault(name, text)
            for name, text in self._definitions.items():
                remember_definition(name, text, f"index {self.path or ''}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        return self._ids

    def sensor(self, i: int = 0) -> Sensor:
        """The sensor of row ``i``: from the catalog by name, else from the definition stored in the index when
        it was built (a sensor YAML passed by path is found again without the file)."""
        name = self._sensors[i]
        try:
            return load_sensor(name)
        except ValueError as err:
            stored = self._definitions.get(name)
            if stored is None:
                raise ValueError(f"{err}; index {self.path or ''} names sensor {name!r} but does not store its "
                                 f"definition (built by an older eossl): rebuild it with `eossl catalog build "
                                 f"--sensor PATH.yaml`, or add the sensor's folder to EOSSL_CATALOG_PATH") from err
            return sensor_from_definition(json.loads(stored), f"index {self.path or ''}")

    def position(self, acq_id: str) -> int:
        if acq_id not in self._position:
            raise KeyError(f"no acquisition {acq_id!r} in index {self.path or ''}; "
                           f"it has {len(self)} rows, e.g. {', '.join(self._ids[:3])}")
        return self._position[acq_id]

    def assets(self, i: int) -> dict[str, Asset]:
        """Band name -> Asset with an absolute path, for row ``i`` (the quality mask, if any, excluded)."""
        return {b: a for b, a in self._all_assets(i).items() if not b.startswith("_")}

    def quality_mask(self, i: int) -> Asset | None:
        """The cloud/quality-mask asset of row ``i`` (``Asset.mask_kind`` says how to decode it), or None."""
        return self._all_assets(i).get("_mask")

    def _all_assets(self, i: int) -> dict[str, Asset]:
        if i not in self._assets_cache:
            row = self.frame.iloc[i]
            out = {}
            for band, a in json.loads(row["assets"]).items():
                path = a["path"]
                if not is_remote(path) and not Path(path).is_absolute():
                    path = str(Path(row["root"]) / path)
                out[band] = Asset(path=path, band_index=a.get("band_index", 1), nodata=a.get("nodata"),
                                  var=a.get("var"), band_sel=a.get("band_sel"), time_index=a.get("time_index"),
                                  scale=a.get("scale"), offset=a.get("offset"), mask_kind=a.get("kind"))
            self._assets_cache[i] = out
        return self._assets_cache[i]

    def bounds(self, i: int) -> tuple[float, float, float, float]:
        return self._bounds[i]

    def crs(self, i: int) -> str:
        return self._crs[i]

    def res(self, i: int) -> float:
        return self._res[i]

    def datetime(self, i: int) -> pd.Timestamp | None:
        return self._times[i]

    def valid_mask(self, i: int) -> np.ndarray:
        """The coarse (h, w) boolean valid mask over ``bounds(i)``, row 0 at the top (north)."""
        h, w = (int(v) for v in self.frame["mask_shape"].iloc[i].split(","))
        bits = np.frombuffer(self.frame["mask"].iloc[i], dtype=np.uint8)
        return np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)

    def content_hash(self) -> str:
        """Hash of what the index says (ids, sensors, assets, times, grids): stable across rewrites."""
        cols = ["id", "sensor", "kind", "datetime", "assets", "crs", "res", "minx", "miny", "maxx", "maxy"]
        payload = self.frame[cols].astype(str).to_json(orient="values")
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def select(self, time_range: tuple[str | None, str | None] | None = None, roi=None,
               roi_crs: str = "EPSG:4326") -> np.ndarray:
        """Positions of rows within an optional time range (inclusive ISO dates) and intersecting an ROI."""
        keep = np.ones(len(self), dtype=bool)
        if time_range is not None and any(time_range):
            times = pd.to_datetime(self.frame["datetime"], utc=True)
            if times.isna().any() and any(time_range):
                missing = self.frame["id"][times.isna()].tolist()[:3]
                raise ValueError(f"a time range was given but {int(times.isna().sum())} acquisitions have no "
                                 f"datetime (e.g. {missing}); rebuild the index with --datetime-pattern, "
                                 f"a sidecar, or --datetime")
            lo, hi = time_range
            if lo:
                keep &= (times >= pd.Timestamp(lo, tz="UTC")).to_numpy()
            if hi:
                end = pd.Timestamp(hi, tz="UTC")
                if len(str(hi)) <= 10:  # a date without time: the whole day is in the range
                    keep &= (times < end + pd.Timedelta(days=1)).to_numpy()
                else:
                    keep &= (times <= end).to_numpy()
        if roi is not None:
            roi_4326 = gpd.GeoSeries([roi], crs=roi_crs).to_crs("EPSG:4326").iloc[0]
            keep &= self.frame.geometry.intersects(roi_4326).to_numpy()
        return np.flatnonzero(keep)

    def check_roots(self) -> None:
        """Raise if a local root of the index does not exist here (index built elsewhere / data moved)."""
        for root in sorted(set(self.frame["root"])):
            if root and not is_remote(root) and not Path(root).is_dir():
                raise FileNotFoundError(
                    f"index {self.path or ''} was built from root {root}, which does not exist on this machine; "
                    f"pass the data's current location with --root (root= in Python) or rebuild the index "
                    f"with `eossl catalog build`")

    def save(self, out: str | Path) -> Path:
        """Write GeoParquet atomically (temporary file, then rename)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        self.frame.to_parquet(tmp, index=False)
        tmp.replace(out)
        self.path = str(out)
        return out

    def summary(self) -> str:
        from eossl.geo import ground_res_m

        f = self.frame
        lines = [f"index: {self.path or '(in memory)'}", f"acquisitions: {len(f)}",
                 f"sensors: {', '.join(self.sensor_names)}", f"kinds: {', '.join(sorted(set(f['kind'])))}"]
        if "sensor_source" in f.columns:   # STAC items: which sensor was chosen, and why
            for (name, why), n in f.groupby(["sensor", "sensor_source"]).size().items():
                lines.append(f"  {name}: {why} ({n} item{'s' if n > 1 else ''})")
        times = pd.to_datetime(f["datetime"], utc=True)
        if times.notna().any():
            lines.append(f"time range: {times.min():%Y-%m-%d} .. {times.max():%Y-%m-%d} "
                         f"({int(times.isna().sum())} without datetime)")
        else:
            lines.append("time range: no datetimes (rebuild with --datetime-pattern/--datetime for time filters)")
        lines.append(f"CRSs: {', '.join(sorted(set(f['crs'])))}")
        lines.append(f"resolutions (CRS units): {', '.join(f'{r:g}' for r in sorted(set(f['res'])))}")
        tb = f.total_bounds
        lines.append(f"extent (EPSG:4326): lon {tb[0]:.4f}..{tb[2]:.4f}, lat {tb[1]:.4f}..{tb[3]:.4f}")
        lines.append(f"valid fraction: min {f['valid_fraction'].min():.3f}, mean {f['valid_fraction'].mean():.3f}")
        lines.append("")
        head = f"{'id':40s} {'datetime':20s} {'bands':>5s} {'gsd (m)':>7s} {'size (px)':>12s} {'valid':>6s}"
        lines.append(head)
        for i in range(min(len(f), 20)):
            r = f.iloc[i]
            nb = len([b for b in json.loads(r["assets"]) if not b.startswith("_")])
            w = round((r["maxx"] - r["minx"]) / r["res"])
            h = round((r["maxy"] - r["miny"]) / r["res"])
            dt = "-" if pd.isna(r["datetime"]) else pd.Timestamp(r["datetime"]).strftime("%Y-%m-%d %H:%M")
            gsd = ground_res_m(r["crs"], float(r["res"]), (r["minx"], r["miny"], r["maxx"], r["maxy"]))
            lines.append(f"{str(r['id'])[-40:]:40s} {dt:20s} {nb:5d} {gsd:7.4g} {f'{w}x{h}':>12s} "
                         f"{r['valid_fraction']:6.3f}")
        if len(f) > 20:
            lines.append(f"... {len(f) - 20} more")
        lines.append(f"content hash: {self.content_hash()}")
        return "\n".join(lines)


def open_index(path: str | Path, root: str | dict[str, str] | None = None, check: bool = True) -> SceneIndex:
    """Open a GeoParquet index. ``root`` re-points the data (a new root, or {old_root: new_root})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene index not found: {path}; build one with `eossl catalog build`")
    try:
        frame = gpd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ValueError(f"cannot read scene index {path}: {err}; rebuild it with `eossl catalog build`") from err
    if root is not None:
        frame = frame.copy()
        roots = sorted(set(frame["root"]))
        if isinstance(root, dict):
            unknown = [k for k in root if k not in roots]
            if unknown:
                raise ValueError(f"{path}: root mapping names {unknown}, but the index roots are {roots}")
            frame["root"] = frame["root"].map(lambda r: str(root.get(r, r)))
        else:
            if len(roots) > 1:
                raise ValueError(f"{path}: the index has several roots {roots}; pass a mapping {{old: new}}")
            frame["root"] = str(Path(root).resolve()) if not is_remote(str(root)) else str(root)
    index = SceneIndex(frame, str(path))
    if check:
        index.check_roots()
    return index


def make_frame(rows: list[dict]) -> gpd.GeoDataFrame:
    """Build the index GeoDataFrame from row dicts (``geometry`` given as a GeoJSON-like mapping or shapely)."""
    if not rows:
        raise ValueError("no acquisitions to index")
    df = pd.DataFrame(rows)
    df["datetime"] = pd.to_datetime(df["datetime"], utc=True)
    geoms = [g if hasattr(g, "geom_type") else shape(g) for g in df.pop("geometry")]
    frame = gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:4326")
    columns = INDEX_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    return frame[columns].sort_values(["datetime", "id"], na_position="last").reset_index(drop=True)


MASK_SIZE = 256  # longest side of the coarse valid mask stored per acquisition


def mask_shape(bounds: tuple[float, float, float, float], res: float) -> tuple[int, int]:
    """Shape of the coarse mask: the pixel grid at ``res``, shrunk so its longest side is <= MASK_SIZE."""
    w = max(1, round((bounds[2] - bounds[0]) / res))
    h = max(1, round((bounds[3] - bounds[1]) / res))
    f = max(1.0, max(w, h) / MASK_SIZE)
    return max(1, round(h / f)), max(1, round(w / f))


def footprint_rows(bounds: tuple[float, float, float, float], crs: str) -> tuple[str, object]:
    """(native WKT, EPSG:4326 geometry) of a bounding box, densified so curved edges are kept."""
    from rasterio.warp import transform_geom

    native = box(*bounds)
    geo = transform_geom(crs, "EPSG:4326", native.segmentize(max(bounds[2] - bounds[0], 1) / 16))
    return native.wkt, shape(geo)

