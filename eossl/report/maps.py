"""Quick-look PNG of a predicted class map (the COG written by ``eossl predict``), with its legend."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402

from eossl.report.figures import save_figure  # noqa: E402

__all__ = ["save_class_map_preview"]


def save_class_map_preview(cog: str | Path, out: str | Path, max_side: int = 1024) -> Path:
    """Render the class map at most ``max_side`` px on its longest side (mode resampling, from the COG's
    overviews where they exist) in its colour table, nodata transparent, with a legend of the classes present."""
    with rasterio.open(cog) as ds:
        scale = max(1.0, max(ds.width, ds.height) / max_side)
        shape = (max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        classes = ds.read(1, out_shape=shape, resampling=Resampling.mode)
        nodata = ds.nodata
        colormap = ds.colormap(1)
        names = json.loads(ds.tags().get("classes", "[]"))
        crs, res = ds.crs, ds.res
    rgba = np.zeros((*classes.shape, 4), dtype=np.uint8)
    for value, color in colormap.items():
        if value != nodata:
            rgba[classes == value] = color
    present = [int(v) for v in np.unique(classes) if v != nodata]
    fig, ax = plt.subplots(figsize=(7, 7 * classes.shape[0] / max(classes.shape[1], 1) + 0.6))
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{Path(cog).name}: {len(present)} classes, {crs}, {res[0]:g} m pixels", fontsize=9)
    handles = [Patch(color=np.array(colormap[v][:3]) / 255, label=names[v] if v < len(names) else str(v))
               for v in present]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return save_figure(fig, out)
