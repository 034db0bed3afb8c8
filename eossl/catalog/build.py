"""``eossl catalog build``: scan folders of rasters (and datacubes) into a scene index."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from eossl.catalog import platforms, quality, scan, sidecar
from eossl.catalog.config import IndexOptions
from eossl.catalog.index import MASK_SIZE, SENSOR_DEFINITION, SceneIndex, make_frame
from eossl.catalog.rows import acquisition_row, add_quality_mask, header
from eossl.catalog.sensors import Sensor, load_sensor, sensor_definition
from eossl.catalog.stac import is_stac_source, stac_rows

log = logging.getLogger(__name__)

__all__ = ["IndexOptions", "build_index", "MASK_SIZE"]

CUBE_SUFFIXES = (".nc", ".nc4", ".zarr", ".h5")


def build_index(roots: list[str], sensor: str | Sensor | None, options: IndexOptions | None = None,
                progress: bool = True) -> SceneIndex:
    """Scan ``roots`` and return the index (call ``.save(path)`` to write it).

    Roots ending in ``.json`` / ``.geojson`` are STAC Items, ItemCollections or catalogs (see
    :mod:`eossl.catalog.stac`); for those alone ``sensor`` may be None (inferred per item).
    """
    options = options or IndexOptions()
    stac_roots = [str(r) for r in roots if is_stac_source(str(r))]
    rows: list[dict] = stac_rows(stac_roots, sensor, options, progress) if stac_roots else []
    roots = [r for r in roots if str(r) not in stac_roots]
    if sensor is None:
        if roots:
            raise ValueError(f"--sensor is needed for the roots that are not STAC JSON ({', '.join(map(str, roots))}); "
                             f"the sensor is inferred only from STAC items")
        return SceneIndex(make_frame(rows))
    sensor = load_sensor(sensor)
    cube_roots = [r for r in roots if str(r).rstrip("/").endswith(CUBE_SUFFIXES)]
    raster_roots = [r for r in roots if r not in cube_roots]
    if cube_roots:
        from eossl.catalog.cubes import scan_cube

        for r in cube_roots:
            rows.extend(scan_cube(r, sensor, nodata=options.nodata))
    if raster_roots:
        rows.extend(_raster_rows(raster_roots, sensor, options, progress))
    definition = json.dumps(sensor_definition(sensor))
    for row in rows:  # the exact sensor travels with the index (a YAML passed by path is found again)
        row.setdefault(SENSOR_DEFINITION, definition)
    if not rows:
        raise ValueError(f"no {sensor.name} rasters found under {', '.join(map(str, roots))} "
                         f"(looked for {', '.join(options.include or scan.DEFAULT_PATTERNS)})")
    return SceneIndex(make_frame(rows))


def _raster_rows(roots: list[str], sensor: Sensor, options: IndexOptions, progress: bool) -> list[dict]:
    found = scan.find_files(roots, tuple(options.include or scan.DEFAULT_PATTERNS), tuple(options.exclude))
    if not found:
        return []
    files, root_of = _headers(found, options.quick, progress)
    masks, files = quality.split_masks(files, sensor) if options.cloud_mask else ([], files)
    _check_platforms(files, sensor)
    acquisitions, skipped = scan.group_files(files, root_of, sensor, options.band_order)
    if skipped:
        if options.strict:
            raise ValueError("files that cannot be indexed:\n  " + "\n  ".join(skipped))
        log.warning("skipped %d file(s) that name no %s band:\n  %s", len(skipped), sensor.name,
                    "\n  ".join(skipped[:10]))
    if not acquisitions:
        raise ValueError(f"none of the {len(files)} files under {', '.join(roots)} could be assigned to a "
                         f"{sensor.name} band:\n  " + "\n  ".join(skipped[:10]))
    masks_of = quality.match_masks(acquisitions, masks, sensor) if options.cloud_mask else {}
    rows, logged = [], set()
    for acq in tqdm(acquisitions, desc="indexing acquisitions", unit="acq", disable=not progress):
        row = acquisition_row(acq, root_of, sensor, options, logged)
        if acq.key in masks_of:
            add_quality_mask(row, masks_of[acq.key])
        rows.append(row)
    return rows


def _headers(found: list[tuple[str, str]], quick: bool, progress: bool) -> tuple[list[scan.RasterFile],
                                                                                 dict[str, str]]:
    """Every file's header (and, unless ``quick``, one block); one error listing every unreadable file."""
    files, root_of, bad = [], {}, []
    desc = "reading headers" if quick else "reading headers and one block per file"
    for root, path in tqdm(found, desc=desc, unit="file", disable=not progress):
        try:
            files.append(header(path, quick))
        except ValueError as err:
            bad.append(str(err))
        root_of[path] = root
    if len(bad) == 1:
        raise ValueError(bad[0])
    if bad:
        raise ValueError(f"{len(bad)} files are unreadable or truncated; re-download them, or leave them out with "
                         f"`eossl catalog build --exclude GLOB`:\n  " + "\n  ".join(bad[:20])
                         + (f"\n  ... {len(bad) - 20} more" if len(bad) > 20 else ""))
    return files, root_of


def _check_platforms(files: list[scan.RasterFile], sensor: Sensor) -> None:
    """Every file's platform (name, tags, sidecar) must be the sensor's: a wrong --sensor is an error."""
    for f in files:
        side = sidecar.read_sidecar(f.path)
        source = f"sidecar {Path(side.source).name!r}" if side.source else "sidecar"
        platforms.check_platform(f.path, platforms.detect(f.path, f.tags, side.platform, source), sensor)


