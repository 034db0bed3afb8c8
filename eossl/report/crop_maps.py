"""Quick looks of a crop-type map of a scene stack: the map beside the reference labels in the same colours (and
its confidence), and the per-class F1 on the test parcels as a bar chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from eossl.report.figures import save_figure  # noqa: E402

__all__ = ["code_rgba", "save_crop_map_figure", "save_per_class_f1"]

OTHER = (170, 170, 170, 255)      # a label code the map has no class for (a fragment class): grey


def code_rgba(codes: np.ndarray, class_codes: list[int], colors: list[list[int]], empty: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8: each class code in its colour, other codes grey, ``empty`` pixels transparent."""
    rgba = np.zeros((*codes.shape, 4), np.uint8)
    rgba[...] = OTHER
    order = np.argsort(class_codes)
    known = np.asarray(class_codes)[order]
    pos = np.minimum(np.searchsorted(known, codes), len(known) - 1)
    hit = known[pos] == codes
    palette = np.array([[*colors[i], 255] for i in order], np.uint8)
    rgba[hit] = palette[pos[hit]]
    rgba[empty] = 0
    return rgba


def save_crop_map_figure(out: str | Path, codes: np.ndarray, nodata: int, class_codes: list[int], names: list[str],
                         colors: list[list[int]], reference: np.ndarray | None = None, reference_nodata: int = 0,
                         confidence: np.ndarray | None = None, title: str = "") -> Path:
    """The map (H, W codes), beside it the ``reference`` labels (same colours; unlabelled transparent) and the
    ``confidence`` (max probability) when given; one legend of the classes."""
    panels = [("predicted crop type", code_rgba(codes, class_codes, colors, codes == nodata))]
    if reference is not None:
        panels.append(("reference labels", code_rgba(reference, class_codes, colors, reference == reference_nodata)))
    fig, axes = plt.subplots(1, len(panels) + (confidence is not None), squeeze=False,
                             figsize=(4.2 * (len(panels) + (confidence is not None)) + 2.2, 4.6))
    axes = axes[0]
    for ax, (name, rgba) in zip(axes, panels):
        ax.imshow(rgba, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if confidence is not None:
        im = axes[-1].imshow(confidence, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        axes[-1].set_title("confidence (max probability)", fontsize=9)
        axes[-1].set_axis_off()
        fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.04)
    handles = [Patch(color=np.array(c) / 255, label=f"{n} ({k})") for k, n, c in zip(class_codes, names, colors)]
    if reference is not None and (~np.isin(reference, [*class_codes, reference_nodata])).any():
        handles.append(Patch(color=np.array(OTHER[:3]) / 255, label="other label (no parcel: not mapped)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def save_per_class_f1(out: str | Path, per_class: dict[str, float], title: str = "") -> Path:
    """Horizontal bars of F1 per class (0..1)."""
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(6, 0.9 + 0.35 * len(names)))
    ax.barh(range(len(names)), [per_class[n] for n in names], color="#4c72b0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 on the test parcels")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, out)
