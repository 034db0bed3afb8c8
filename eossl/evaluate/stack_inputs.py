"""A labelled scene stack ready for the stack task: every pixel's series, the labels on the stack's grid, the
parcels, and the classes a model is trained on (the label codes with at least one parcel).

>>> ls = load_labelled_stack("flanders2018/", variable="CT")     # labels and legend found in the folder
>>> ls.samples.values.shape, ls.codes, ls.names                   # (H*W, P, C), [1200, ...], ["Maize", ...]

Files are recognised by content, never by name: the label file is the one raster in the stack's folder that is
not an image file of the stack (a NetCDF/Zarr file without a time dimension, or a GeoTIFF the stack did not read);
the legend the one CSV/TSV beside the label file. Anything else ambiguous asks for the path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eossl.data.labelled.label_grid import CUBE_SUFFIXES, LabelGrid, load_label_grid
from eossl.data.labelled.parcels import Parcels, find_parcels
from eossl.data.series.composite import Composite, composite
from eossl.data.series.stack import SceneStack, open_stack
from eossl.data.series.stack_samples import stack_samples
from eossl.data.series.tables import SeriesSamples

log = logging.getLogger(__name__)

__all__ = ["load_stack_entry", "LabelledStack", "find_label_file", "find_legend", "load_labelled_stack"]

_RASTERS = (*CUBE_SUFFIXES, ".tif", ".tiff")


@dataclass
class LabelledStack:
    """``samples`` every pixel (row-major; ``labels`` index ``names``, -1 off the classes), ``codes``/``names``
    the classes (label codes with a parcel, sorted) and ``fragments`` the codes left out (no parcel)."""

    name: str
    comp: Composite
    samples: SeriesSamples
    labels: LabelGrid
    parcels: Parcels
    codes: list[int]
    names: list[str]
    fragments: list[int]


def _has_time(path: Path) -> bool:
    from eossl.data.series import stack_netcdf

    info = stack_netcdf.describe(path)
    try:
        return info.time_dim is not None
    finally:
        info.ds.close()


def find_label_file(folder: str | Path, stack: SceneStack) -> Path:
    """The one raster of ``folder`` that is not an image file of ``stack`` (FileNotFoundError / ValueError
    naming the candidates otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"the stack {folder} is a file: give labels= the label raster")
    read = {Path(s).resolve() for s in stack.sources}
    found = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in _RASTERS or p.name.startswith(".") or p.resolve() in read:
            continue
        if p.suffix.lower() in CUBE_SUFFIXES and _has_time(p):
            continue
        found.append(p)
    if len(found) != 1:
        raise (FileNotFoundError if not found else ValueError)(
            f"cannot tell the label file of the stack in {folder}: rasters that are not image files: "
            f"{[p.name for p in found] or 'none'}; give labels= the label raster (and variable= its variable)")
    return found[0]


def find_legend(label_file: str | Path) -> Path | None:
    """The one CSV/TSV beside ``label_file``, or None (several: None, logged)."""
    found = sorted(p for p in Path(label_file).parent.iterdir() if p.suffix.lower() in (".csv", ".tsv"))
    if len(found) > 1:
        log.warning("several legend files beside %s (%s): give legend=", label_file, [p.name for p in found])
    return found[0] if len(found) == 1 else None


def load_labelled_stack(path: str | Path, labels: str | Path | None = None, variable: str | None = None,
                        legend: str | Path | None = None, name: str | None = None, period: str = "10D",
                        bands: list[str] | None = None, include_s1: bool = False,
                        min_parcel_pixels: int = 20, sensor: str | None = None, code_column: str | None = None,
                        name_column: str | None = None, label_crs: str | None = None,
                        crs_key: str = "label_crs") -> LabelledStack:
    """Open, composite and label one stack (see the module doc)."""
    stack = open_stack(path, sensor=sensor, bands=bands, include_s1=include_s1)
    label_file = Path(labels) if labels is not None else find_label_file(path, stack)
    legend = legend if legend is not None else find_legend(label_file)
    grid = load_label_grid(label_file, stack, variable=variable, legend=legend, code_column=code_column,
                           name_column=name_column, label_crs=label_crs, crs_key=crs_key)
    comp = composite(stack, period=period)
    parcels = find_parcels(grid.codes, grid.labelled, min_parcel_pixels, exclude=grid.mixed)
    codes = sorted(int(c) for c in parcels.per_class())
    fragments = [c for c in grid.classes if c not in codes]
    names = [grid.names.get(c, str(c)) for c in codes]
    flat, known = grid.codes.ravel(), np.asarray(codes, dtype=np.int64)
    pos = np.minimum(np.searchsorted(known, flat), max(len(known) - 1, 0))
    ok = (parcels.ids.ravel() > 0) & (known[pos] == flat) if len(known) else np.zeros(flat.shape, bool)
    pixel_labels = np.where(ok, pos, -1).astype(np.int64)        # fragments and unlabelled pixels: -1
    samples = stack_samples(comp, labels=pixel_labels, classes=names, source=str(path))
    return LabelledStack(name=name or Path(path).name, comp=comp, samples=samples, labels=grid, parcels=parcels,
                         codes=codes, names=names, fragments=fragments)


def load_stack_entry(entry, st) -> LabelledStack:
    """One ``stack.stacks[]`` entry of a :class:`~eossl.evaluate.config.StackTaskConfig` ``st``, loaded as the
    stack task loads it (the map's fit loads its stack through this too)."""
    return load_labelled_stack(entry.path, entry.labels, entry.variable, entry.legend, entry.name, st.period,
                               st.bands, st.include_s1, st.min_parcel_pixels, sensor=entry.sensor,
                               code_column=entry.code_column, name_column=entry.name_column,
                               label_crs=entry.label_crs, crs_key="stack.stacks[].label_crs")
