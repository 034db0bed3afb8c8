"""Ground geometry of indexed scenes: resolutions in metres and the metric grid windows are cut on.

The index stores ``res`` in the units of each acquisition's CRS: metres for UTM, degrees for EPSG:4326, feet for
some state planes. Everything that sizes windows or outputs in metres goes through here:

>>> scene_gsd_m(index, 0)          # 9.35 for 0.0001 degree pixels at 45 N (7.9 m E-W x 11.1 m N-S, geodesic)
>>> working_crs(index, 0)          # "EPSG:32633": the local UTM zone (a metric CRS is kept as it is)
>>> check_output_size("class map of X", (1, 10980, 10980), 1, crs="EPSG:32633", gsd_m=10, max_gb=20)

A scene in a geographic CRS (or a projected CRS not in metres) is worked on in the UTM zone of its footprint's
centre; the :class:`~eossl.data.reader.ChipReader` warps its pixels onto that grid.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

from pyproj import CRS, Geod

__all__ = ["crs_is_metric", "ground_res_m", "scene_gsd_m", "utm_crs_for", "working_crs", "working_bounds",
           "check_output_size"]

log = logging.getLogger(__name__)
_GEOD = Geod(ellps="WGS84")
_LOGGED: set[tuple[str, str]] = set()


@lru_cache(maxsize=256)
def _crs(crs: str) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except Exception as err:  # pyproj raises CRSError for text it cannot parse
        raise ValueError(f"{crs!r} is not a CRS that PROJ understands: {err}") from err


def crs_is_metric(crs: str) -> bool:
    """True for a projected CRS whose axes are in metres (UTM, LAEA, Web Mercator...)."""
    c = _crs(str(crs))
    if not c.is_projected:
        return False
    unit = c.axis_info[0].unit_name.lower() if c.axis_info else ""
    return unit in ("metre", "meter", "m")


def _unit_factor(c: CRS) -> float:
    """Metres per CRS unit of a projected CRS (1 for metres, 0.3048 for feet...)."""
    info = c.axis_info[0] if c.axis_info else None
    factor = getattr(info, "unit_conversion_factor", None)
    return float(factor) if factor else 1.0


def ground_res_m(crs: str, res: float, bounds: tuple[float, float, float, float]) -> float:
    """The ground size in metres of a ``res`` pixel of ``crs`` at the centre of ``bounds`` (in ``crs``).

    Geographic CRS: geodesic (WGS84) lengths of one pixel east-west and north-south at the centre, combined as
    the side of a square of the same area (``sqrt(dx * dy)``). Projected CRS: ``res`` times the unit's metres.
    """
    c = _crs(str(crs))
    if c.is_geographic:
        lon = (bounds[0] + bounds[2]) / 2
        lat = (bounds[1] + bounds[3]) / 2
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"bounds {tuple(bounds)} are not longitudes/latitudes although the CRS {crs} is "
                             f"geographic: the file's CRS is wrong; fix its georeferencing (gdal_edit.py -a_srs)")
        half = res / 2
        _, _, dx = _GEOD.inv(lon - half, lat, lon + half, lat)
        _, _, dy = _GEOD.inv(lon, max(lat - half, -90.0), lon, min(lat + half, 90.0))
        return float(math.sqrt(abs(dx) * abs(dy)))
    return float(res) * _unit_factor(c)


def scene_gsd_m(index, i: int) -> float:
    """Ground resolution in metres of row ``i`` of a :class:`~eossl.catalog.index.SceneIndex`."""
    return ground_res_m(index.crs(i), index.res(i), index.bounds(i))


def _centre_lonlat(crs: str, bounds) -> tuple[float, float]:
    from rasterio.warp import transform

    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    if _crs(str(crs)).is_geographic:
        return cx, cy
    xs, ys = transform(str(crs), "EPSG:4326", [cx], [cy])
    return xs[0], ys[0]


def utm_crs_for(lon: float, lat: float) -> str:
    """``EPSG:326NN`` (north) / ``EPSG:327NN`` (south): the WGS84 UTM zone holding (lon, lat)."""
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat:.2f} is outside the UTM zones (80 S .. 84 N); reproject the scene to a "
                         f"polar projection in metres first (e.g. gdalwarp -t_srs EPSG:3413 or EPSG:3031)")
    zone = min(60, int(math.floor((lon + 180.0) / 6.0)) + 1)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def working_crs(index, i: int) -> str:
    """The metric CRS windows of row ``i`` are cut in: its own CRS when projected in metres, else its local UTM.

    The first time a row is moved to UTM, an INFO line says so ("scene X is in EPSG:4326; working in EPSG:326NN").
    """
    crs = index.crs(i)
    if crs_is_metric(crs):
        return crs
    target = utm_crs_for(*_centre_lonlat(crs, index.bounds(i)))
    key = (index.ids[i], target)
    if key not in _LOGGED:
        _LOGGED.add(key)
        unit = "degrees" if _crs(crs).is_geographic else "non-metre units"
        log.info("scene %s is in %s (%s); working in %s at a GSD in metres (pixels warped by the reader)",
                 index.ids[i], crs, unit, target)
    return target


def working_bounds(index, i: int, crs: str) -> tuple[float, float, float, float]:
    """Row ``i``'s footprint bounds in ``crs`` (its native bounds when ``crs`` is its own)."""
    if crs == index.crs(i):
        return index.bounds(i)
    from rasterio.warp import transform_bounds

    return tuple(float(v) for v in transform_bounds(index.crs(i), crs, *index.bounds(i), densify_pts=21))


def check_output_size(what: str, shape: tuple[int, ...], itemsize: int, *, crs: str, gsd_m: float,
                      max_gb: float, hint: str, note: str = "") -> int:
    """Bytes of an array/file of ``shape`` x ``itemsize``; ValueError above ``max_gb`` (GB = 1e9 bytes).

    The error names ``what`` (the scene and output), the shape, CRS and GSD, and ``hint`` (the key or flag that
    shrinks the output or raises the limit).
    """
    size = math.prod(int(s) for s in shape) * int(itemsize)
    if size > max_gb * 1e9:
        shape_text = " x ".join(str(int(s)) for s in shape)
        raise ValueError(f"{what} would be {shape_text} px ({_human(size)}) at {gsd_m:g} m in {crs}{note}; that "
                         f"is above the limit of {max_gb:g} GB: {hint}")
    return size


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"
