"""Quick-look images of multispectral chips: true and false colour composites, and grids of SSL views."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.catalog.sensors import Sensor

__all__ = ["composite_bands", "stretch_limits", "to_rgb", "save_view_grid"]


def composite_bands(sensor: Sensor, bands: list[str]) -> dict[str, list[int]]:
    """Channel indices of the true colour (red, green, blue) and false colour (nir, red, green) composites.

    Bands are found by common name; a composite whose bands are missing falls back to the first three channels.
    """
    common = {}
    for i, b in enumerate(bands):
        name = sensor.band(b).common_name
        common.setdefault(name, i)
    fallback = [0, min(1, len(bands) - 1), min(2, len(bands) - 1)]
    out = {}
    for label, names in (("true colour", ("red", "green", "blue")), ("false colour", ("nir", "red", "green"))):
        idx = [common.get(n) for n in names]
        out[label] = fallback if any(i is None for i in idx) else idx
    return out


def stretch_limits(image: np.ndarray, mask: np.ndarray, channels: list[int],
                   min_range: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 2nd and 98th percentiles over valid pixels of ``image`` (C, H, W), widened to at least
    ``min_range`` (reflectance) so that a flat chip (open water) does not turn small changes into large ones."""
    lo, hi = [], []
    for c in channels:
        values = image[c][mask] if mask.any() else image[c].ravel()
        a, b = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
        if b - a < min_range:
            a, b = (a + b) / 2 - min_range / 2, (a + b) / 2 + min_range / 2
        lo.append(a)
        hi.append(b)
    return np.array(lo), np.array(hi)


def to_rgb(image: np.ndarray, mask: np.ndarray, channels: list[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(H, W, 3) float image in [0, 1]; invalid pixels grey."""
    rgb = np.stack([(image[c] - lo[k]) / (hi[k] - lo[k]) for k, c in enumerate(channels)], axis=-1)
    rgb = np.clip(rgb, 0, 1)
    rgb[~mask] = 0.5
    return rgb


def save_view_grid(path: str | Path, chips: np.ndarray, chip_masks: np.ndarray, views: list[np.ndarray],
                   view_masks: list[np.ndarray], composites: dict[str, list[int]], title: str = "") -> Path:
    """PNG grid: one row per chip; columns are the chip and each view, in true and false colour.

    ``chips`` (N, C, H, W) and ``views[k]`` (N, C, h, w) in the same units (reflectance): each row uses the chip's
    stretch for every column, so spectral changes made by the augmentations stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = chips.shape[0], (1 + len(views)) * len(composites)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n + 0.4), squeeze=False)
    for r in range(n):
        c = 0
        for label, channels in composites.items():
            lo, hi = stretch_limits(chips[r], chip_masks[r], channels)
            panels = [("chip", chips[r], chip_masks[r])] + [
                (f"view {k + 1}", v[r], m[r]) for k, (v, m) in enumerate(zip(views, view_masks))]
            for name, img, msk in panels:
                ax = axes[r, c]
                ax.imshow(to_rgb(img, msk, channels, lo, hi), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{name}\n{label}", fontsize=7)
                c += 1
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
