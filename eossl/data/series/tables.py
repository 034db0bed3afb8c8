"""Per-sample time series (pixels or field means) from tables: what crop-type models learn from.

:class:`SeriesSamples` holds ``values`` (N, T, C) in the sensor's physical units (reflectance), ``valid`` (N, T, C),
``times`` (N, T) ``datetime64[D]`` (NaT for a step a sample lacks), labels, sample ids and, when the table has
them, lon/lat (spatial splits) and a block column (e.g. an H3 cell).

Two table layouts (Parquet or CSV; :func:`read_series_table` tells them apart by their columns):

* **wide**: one row per sample, one column per band and time step. The default column pattern reads the
  WorldCereal naming (``OPTICAL-B02-ts0-10m``: band ``B02``, step 0) and ``B02_t3`` / ``B02-ts3``; step ``i`` is
  ``start + i`` periods (``start_column``, default ``start_date``, and ``step``: ``month`` | ``10d`` | ``day``);
* **long**: one row per sample and date (``id_column``, ``time_column``), one column per band named by the sensor
  (``B02``, ``B8A``, aliases accepted). Samples are aligned on dates, not on row order: the steps are the sorted
  distinct dates (``composite: month`` first bins dates to months, averaging valid values), a date a sample lacks
  is masked.

Values equal to ``nodata`` (default: the sensor's, and 65535 for uint16 tables), NaN and non-finite are masked.
Stored values are turned into physical ones with the sensor's scale and offset when the table holds DN, which is
decided from the values (reflectance x 10000 vs reflectance) as for images, and checked.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eossl.catalog.sensors import Sensor, load_sensor

log = logging.getLogger(__name__)

__all__ = ["SeriesSamples", "read_series_table", "WIDE_PATTERN"]

# band token, then -ts<step> / _t<step> / -t<step> (WorldCereal: OPTICAL-B02-ts0-10m)
WIDE_PATTERN = r"(?:^|[-_])(?P<band>B\d{1,2}A?)[-_]t(?:s)?(?P<step>\d+)(?:[-_]|$)"
_PERIODS = {"month": "MS", "10d": "10D", "day": "D"}
_TABLE_NODATA = 65535.0


@dataclass
class SeriesSamples:
    """Time series of N samples over T steps and C bands (see module doc)."""

    values: np.ndarray                  # (N, T, C) float32 physical values, 0 where invalid
    valid: np.ndarray                   # (N, T, C) bool
    times: np.ndarray                   # (N, T) datetime64[D], NaT where the step is missing
    bands: list[str]
    sensor: str
    labels: np.ndarray                  # (N,) int64 into classes; -1 = unlabelled
    classes: list[str]
    ids: list[str]
    lonlat: np.ndarray | None = None    # (N, 2) degrees
    blocks: np.ndarray | None = None    # (N,) spatial block labels from the table (e.g. an H3 cell), or None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        n, t, c = self.values.shape
        if self.valid.shape != (n, t, c) or self.times.shape != (n, t) or self.labels.shape != (n,):
            raise ValueError(f"inconsistent series: values {self.values.shape}, valid {self.valid.shape}, times "
                             f"{self.times.shape}, labels {self.labels.shape}")
        if len(self.bands) != c or len(self.ids) != n:
            raise ValueError(f"{c} bands in values but {len(self.bands)} names; {n} samples but {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.labels)

    def day_of_year(self) -> np.ndarray:
        """(N, T) float32 day of year (1..366) of each step, NaN where the time is unknown."""
        t = pd.DatetimeIndex(self.times.reshape(-1))
        return np.asarray(t.day_of_year, dtype=np.float32).reshape(self.times.shape)

    def subset(self, idx) -> SeriesSamples:
        idx = np.asarray(idx)
        return SeriesSamples(self.values[idx], self.valid[idx], self.times[idx], list(self.bands), self.sensor,
                             self.labels[idx], list(self.classes), [self.ids[i] for i in idx],
                             None if self.lonlat is None else self.lonlat[idx],
                             None if self.blocks is None else self.blocks[idx], self.source, list(self.notes))


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"series table not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq", ".geoparquet"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{path}: a series table is Parquet or CSV (.parquet, .csv), not {suffix or 'no suffix'}")


def read_series_table(path: str | Path, sensor: str | Sensor = "sentinel2-l2a", *, label_column: str | None = None,
                      id_column: str | None = None, time_column: str | None = None, bands: list[str] | None = None,
                      nodata: float | None = None, start_column: str = "start_date", step: str = "month",
                      column_pattern: str = WIDE_PATTERN, composite: str | None = None,
                      classes: list[str] | None = None, block_column: str | None = None,
                      min_valid_steps: int = 1) -> SeriesSamples:
    """A series table as :class:`SeriesSamples` (see the module doc). ``label_column`` None: unlabelled samples
    (labels -1), for pretraining. ``time_column`` given: the long layout, else the wide one. ``classes`` fixes the
    label order (names not in it are an error); default the sorted label values. Samples with fewer than
    ``min_valid_steps`` steps holding any valid band are dropped (logged)."""
    s = load_sensor(sensor)
    frame = _read_table(path)
    where = str(path)
    for name, col in (("label_column", label_column), ("id_column", id_column), ("time_column", time_column),
                      ("block_column", block_column)):
        if col is not None and col not in frame.columns:
            raise ValueError(f"{where}: no column {col!r} ({name}); its columns are "
                             f"{', '.join(map(str, frame.columns[:30]))}{' ...' if len(frame.columns) > 30 else ''}")
    if time_column is not None:
        if id_column is None:
            raise ValueError(f"{where}: a long table (time_column {time_column!r}) needs id_column: the column "
                             f"naming each sample")
        stored, times, rows, band_names, dtype = _long(frame, s, where, id_column, time_column, bands, composite)
    else:
        stored, times, rows, band_names, dtype = _wide(frame, s, where, bands, start_column, step, column_pattern)
    values, valid, notes = _physical(stored, band_names, s, where, nodata, dtype)
    keep = valid.any(axis=2).sum(axis=1) >= min_valid_steps
    if not keep.all():
        log.info("%s: %d sample(s) with fewer than %d valid step(s) left out", where, int((~keep).sum()),
                 min_valid_steps)
        notes.append(f"{int((~keep).sum())} samples with fewer than {min_valid_steps} valid steps left out")
    meta = frame.loc[rows].reset_index(drop=True)
    labels, class_names = _labels(meta, label_column, classes, where)
    ids = [str(v) for v in (meta[id_column] if id_column else meta.index)]
    lonlat = _lonlat(meta)
    blocks = meta[block_column].astype(str).to_numpy() if block_column else None
    out = SeriesSamples(values, valid, times, band_names, s.name, labels, class_names, ids, lonlat, blocks,
                        where, notes)
    return out.subset(np.flatnonzero(keep)) if not keep.all() else out


def _wide(frame, s: Sensor, where, bands, start_column, step, pattern):
    rx = re.compile(pattern)
    cols: dict[tuple[str, int], str] = {}
    unknown = set()
    for col in frame.columns:
        m = rx.search(str(col))
        if not m:
            continue
        band = s.match(m.group("band"))
        if band is None:
            unknown.add(m.group("band"))
            continue
        key = (band, int(m.group("step")))
        if key in cols:
            raise ValueError(f"{where}: columns {cols[key]!r} and {col!r} both hold band {band} at step {key[1]}")
        cols[key] = col
    if not cols:
        raise ValueError(f"{where}: no column names a {s.name} band and a time step (looked for "
                         f"{pattern!r}, e.g. OPTICAL-B02-ts0-10m or B02_t0); for one row per sample and date give "
                         f"time_column and id_column (the long layout)")
    found = sorted({b for b, _ in cols}, key=s.band_names.index)
    band_names = s.resolve_many(bands) if bands is not None else found
    missing = [b for b in band_names if b not in found]
    if missing:
        raise ValueError(f"{where}: no columns for band(s) {', '.join(missing)}; the table has {', '.join(found)}")
    if unknown:
        log.info("%s: columns of bands %s are not %s bands and are ignored", where, sorted(unknown), s.name)
    steps = sorted({t for _, t in cols})
    n, t, c = len(frame), steps[-1] + 1, len(band_names)
    stored = np.full((n, t, c), np.nan, dtype=np.float64)
    dtypes = set()
    for (band, k), col in cols.items():
        if band in band_names:
            stored[:, k, band_names.index(band)] = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            dtypes.add(str(frame[col].dtype))
    if step not in _PERIODS:
        raise ValueError(f"step: {step!r}; choose one of {', '.join(_PERIODS)}")
    if start_column in frame.columns:
        start = pd.to_datetime(frame[start_column], errors="coerce")
        if start.isna().any():
            raise ValueError(f"{where}: column {start_column!r} has {int(start.isna().sum())} value(s) that are not "
                             f"dates")
        offsets = {"month": lambda i: pd.DateOffset(months=i), "10d": lambda i: pd.Timedelta(days=10 * i),
                   "day": lambda i: pd.Timedelta(days=i)}[step]
        times = np.stack([(start + offsets(i)).to_numpy("datetime64[D]") for i in range(t)], axis=1)
    else:
        log.warning("%s: no %r column: the steps' dates are unknown (the encoder sees step order only)", where,
                    start_column)
        times = np.full((n, t), np.datetime64("NaT"), dtype="datetime64[D]")
    return stored, times, frame.index, band_names, dtypes.pop() if len(dtypes) == 1 else "mixed"


def _long(frame, s: Sensor, where, id_column, time_column, bands, composite):
    band_cols = {}
    for col in frame.columns:
        band = s.match(str(col)) if col not in (id_column, time_column) else None
        if band is not None:
            if band in band_cols:
                raise ValueError(f"{where}: columns {band_cols[band]!r} and {col!r} both name band {band}")
            band_cols[band] = col
    if not band_cols:
        raise ValueError(f"{where}: no column is named after a {s.name} band ({', '.join(s.band_names)}); name the "
                         f"band columns B02, B03, ...")
    found = sorted(band_cols, key=s.band_names.index)
    band_names = s.resolve_many(bands) if bands is not None else found
    missing = [b for b in band_names if b not in band_cols]
    if missing:
        raise ValueError(f"{where}: no column for band(s) {', '.join(missing)}; the table has {', '.join(found)}")
    when = pd.to_datetime(frame[time_column], errors="coerce", utc=True).dt.tz_localize(None)
    if when.isna().any():
        bad = frame.loc[when.isna(), time_column].head(3).tolist()
        raise ValueError(f"{where}: {int(when.isna().sum())} value(s) of {time_column!r} are not dates, e.g. {bad}")
    if composite not in (None, "month"):
        raise ValueError(f"composite: {composite!r}; choose null or month")
    day = when.dt.to_period("M").dt.to_timestamp() if composite == "month" else when.dt.normalize()
    data = frame[[band_cols[b] for b in band_names]].apply(pd.to_numeric, errors="coerce")
    data.columns = band_names
    data["_id"], data["_t"] = frame[id_column].astype(str).to_numpy(), day.to_numpy()
    dupes = data.duplicated(["_id", "_t"]).sum()
    if dupes and composite is None:
        raise ValueError(f"{where}: {int(dupes)} rows repeat a sample and date ({id_column}, {time_column}); give "
                         f"composite: month to average them by month")
    dates = np.sort(data["_t"].unique())
    if len(dates) > 120:
        raise ValueError(f"{where}: {len(dates)} distinct dates across the samples; give composite: month to bin "
                         f"them")
    order = pd.Index(pd.unique(data["_id"]))
    sample = order.get_indexer(data["_id"])
    step = np.searchsorted(dates, data["_t"].to_numpy())
    n, t, c = len(order), len(dates), len(band_names)
    total = np.zeros((n, t, c))
    count = np.zeros((n, t, c))
    vals = data[band_names].to_numpy(np.float64)
    ok = np.isfinite(vals)
    np.add.at(total, (sample, step), np.where(ok, vals, 0.0))
    np.add.at(count, (sample, step), ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        stored = np.where(count > 0, total / count, np.nan)
    present = np.zeros((n, t), dtype=bool)
    present[sample, step] = True
    times = np.where(present, dates.astype("datetime64[D]")[None], np.datetime64("NaT"))
    ids = frame[id_column].astype(str)
    first_row = {sid: idx for idx, sid in zip(frame.index[::-1], ids.to_numpy()[::-1])}   # each sample's first row
    rows = pd.Index([first_row[sid] for sid in order])
    dtypes = {str(frame[band_cols[b]].dtype) for b in band_names}
    return stored, times.astype("datetime64[D]"), rows, band_names, dtypes.pop() if len(dtypes) == 1 else "mixed"


def _physical(stored: np.ndarray, bands: list[str], s: Sensor, where: str, nodata: float | None, dtype: str):
    """(values, valid, notes): nodata masked, DN scaled to physical units when the values are DN."""
    valid = np.isfinite(stored)
    fills = {nodata} if nodata is not None else set()
    if nodata is None:
        fills |= {s.band(b).nodata for b in bands if s.band(b).nodata is not None} - {0.0}
        if dtype in ("uint16", "mixed") or (valid.any() and np.nanmax(stored) == _TABLE_NODATA):
            fills.add(_TABLE_NODATA)
    for f in fills:
        valid &= stored != f
    notes = []
    scale = np.array([s.band(b).scale for b in bands])
    offset = np.array([s.band(b).offset for b in bands])
    refl = [i for i, b in enumerate(bands) if s.band(b).unit == "reflectance"]
    med = float(np.median(stored[..., refl][valid[..., refl]])) if refl and valid[..., refl].any() else np.nan
    # reflectance medians lie in 0.01..1; as DN (x 10000 for the built-in scales) in 100..10000
    if np.isfinite(med) and med > 5.0:
        values = stored * scale + offset
        notes.append(f"values are {s.name} DN (median {med:.4g}): scale {scale[0]:g} and offset {offset[0]:g} applied")
    elif np.isfinite(med) and med > 2.0:
        raise ValueError(f"{where}: reflectance band values have a median of {med:.4g}, neither reflectance "
                         f"(0..1) nor {s.name} DN (hundreds to thousands): check the table's units and the sensor")
    else:
        values = stored.copy()
        notes.append(f"values are already physical (median {med:.4g}): no scaling")
    if refl and valid[..., refl].any():
        p99 = float(np.percentile(values[..., refl][valid[..., refl]], 99))
        if p99 > 2.5:
            raise ValueError(f"{where}: after scaling, the 99th percentile of the reflectance bands is {p99:.3g} "
                             f"(> 2.5): the nodata value may not be masked (pass nodata) or the units are wrong")
    values = np.where(valid, values, 0.0).astype(np.float32)
    log.info("%s: %s", where, notes[-1])
    return values, valid, notes


def _labels(meta: pd.DataFrame, label_column: str | None, classes: list[str] | None, where: str):
    if label_column is None:
        return np.full(len(meta), -1, dtype=np.int64), list(classes or [])
    raw = meta[label_column]
    if raw.isna().any():
        raise ValueError(f"{where}: {int(raw.isna().sum())} sample(s) have no {label_column!r}; drop them or give "
                         f"them a class")
    text = raw.astype(str)
    names = list(classes) if classes is not None else sorted(text.unique())
    unknown = sorted(set(text) - set(names))
    if unknown:
        raise ValueError(f"{where}: {label_column!r} holds {unknown[:10]}, not in classes {names}")
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[v] for v in text], dtype=np.int64), names


def _lonlat(meta: pd.DataFrame) -> np.ndarray | None:
    for lon, lat in (("lon", "lat"), ("longitude", "latitude"), ("x", "y")):
        if lon in meta.columns and lat in meta.columns:
            xy = meta[[lon, lat]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            if np.isfinite(xy).all() and (np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all():
                return xy
    if "geometry" in meta.columns:
        try:
            import geopandas as gpd

            geo = gpd.GeoSeries(meta["geometry"])
            if geo.crs is not None:
                geo = geo.to_crs("EPSG:4326")
            c = geo.representative_point()
            return np.stack([c.x.to_numpy(), c.y.to_numpy()], axis=1)
        except (TypeError, ValueError, AttributeError):
            return None
    return None
