"""Land-cover segmentation on label-raster chips (:mod:`eossl.data.labelled.rasters`): prediction and metrics of a
model trained by :func:`eossl.train.segmentation.train_segmentation`.

>>> train, test = window_block_split(chips.bounds, block_size_m=2560, test_fraction=0.2, crs=chips.crs)
>>> model = train_segmentation(backbone, chips, train, norm=norm, epochs=20, lr=1e-3, batch_size=16)
>>> evaluate_segmentation(model, chips, test, norm)["mean_iou"]

``norm``: the :class:`~eossl.data.normalization.Normalization` of the chips' bands (reflectance units).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eossl.data.labelled.rasters import SegmentationChips, load_segmentation_chips
from eossl.data.normalization import Normalization
from eossl.evaluate.config import SegmentationConfig
from eossl.evaluate.metrics import classification_metrics, iou_from_confusion
from eossl.models.weights import backbone_for
from eossl.train.segmentation import chip_indices

__all__ = ["SEGMENT_SPLIT_HINT", "evaluate_segmentation", "k_subset", "load_segment_chips", "predict_segmentation",
           "segment_backbone"]

SEGMENT_SPLIT_HINT = ("use a smaller segmentation.block_size_m or test_fraction, or another seed, so that both sides "
                      "hold every class")


def load_segment_chips(s: SegmentationConfig) -> SegmentationChips:
    """The label-raster chips of a ``segmentation:`` config."""
    return load_segmentation_chips(s.scenes.open(), s.label_raster, chip_size=s.chip_size, gsd=s.gsd, bands=s.bands,
                                   classes=s.classes, label_nodata=s.label_nodata, stride=s.stride,
                                   min_labelled=s.min_labelled, label_crs=s.label_crs,
                                   crs_key="segmentation.label_crs")


def segment_backbone(chips: SegmentationChips, weights, arch: str, seed: int):
    """(backbone, Normalization): exported weights adapted to the chips' bands, or a random ``arch`` (seeded)."""
    size = int(chips.images.shape[-1])
    return backbone_for(chips.bands, chips.sensor, size, weights=weights, arch=arch, seed=seed,
                        images=chips.images, valid=chips.valid)


def k_subset(train, k, seed: int) -> np.ndarray:
    """Sorted ``k`` training windows drawn from ``train`` with ``np.random.default_rng(seed)`` (``"all"``: all)."""
    train = np.asarray(train)
    return np.sort(train if k == "all" else np.random.default_rng(seed).permutation(train)[:int(k)])


@torch.no_grad()
def predict_segmentation(model: nn.Module, images: np.ndarray, valid: np.ndarray, norm: Normalization,
                         batch_size: int = 16) -> np.ndarray:
    """(N, C, H, W) reflectance + (N, H, W) valid -> (N, H, W) int64 class indices (model in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    x = norm.apply(images, valid)
    out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def evaluate_segmentation(model: nn.Module, chips: SegmentationChips, test_idx, norm: Normalization,
                          batch_size: int = 16) -> dict:
    """Per-pixel metrics over chips ``test_idx``, ignored (-1) pixels excluded: those of
    :func:`classification_metrics` plus ``iou`` per class (in ``per_class``), ``mean_iou`` (over classes present
    in the labels, like macro-F1) and ``n_ignored``. JSON-ready."""
    idx = chip_indices(test_idx, len(chips), "test_idx")
    pred = predict_segmentation(model, chips.images[idx], chips.valid[idx], norm, batch_size)
    y = chips.labels[idx]
    metrics = classification_metrics(y.ravel(), np.where(y >= 0, pred, 0).ravel(), chips.classes)
    iou, metrics["mean_iou"] = iou_from_confusion(metrics["confusion_matrix"])
    for k, name in enumerate(chips.classes):
        metrics["per_class"][name]["iou"] = None if math.isnan(iou[k]) else float(iou[k])
    metrics["n_ignored"] = int((y < 0).sum())
    return metrics
