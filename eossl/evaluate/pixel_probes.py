"""Per-pixel logistic-regression baselines of the segmentation task: band values, RCF response maps, and band
values fused with a frozen backbone's last feature map, each trained on labelled pixels of the training windows and
scored on every labelled pixel of the test windows."""

from __future__ import annotations

import math

import numpy as np
import torch

from eossl.data.labelled.rasters import SegmentationChips
from eossl.data.normalization import Normalization
from eossl.evaluate.baselines import RCF_FEATURES, rcf_maps, rcf_model
from eossl.evaluate.fewshot import fit_logreg
from eossl.evaluate.metrics import classification_metrics, iou_from_confusion
from eossl.models.backbones import feature_maps

__all__ = ["pixel_probes"]


def pixel_probes(chips: SegmentationChips, splits, baselines: list[str], backbones, device: str) -> list:
    """(name, fit(train, test, seed) -> metrics) of the per-pixel logistic-regression rows: band values
    (``band_statistics``); RCF response maps (``rcf``: 3 px filters drawn from each seed's training windows,
    zero-padded so every pixel has its 512 values); band values + a frozen backbone's last feature map upsampled
    bilinearly to the pixels (``fusion``: random-init and pretrained, ``backbones`` = [(name, (model, Normalization))])."""
    out = []
    if "band_statistics" in baselines:
        out.append(("band values per pixel", lambda tr, te, sd: _pixel_probe(chips, tr, te, sd, _band_values(chips))))
    if "rcf" in baselines:
        pools, models = {sd: train for sd, train, _ in splits}, {}

        def rcf(tr, te, sd):
            if sd not in models:
                models[sd] = rcf_model(chips.images, _catalog(chips), seed=sd, source_mask=chips.valid,
                                       source_index=pools[sd])
            return _pixel_probe(chips, tr, te, sd, _rcf_values(chips, models[sd], device))
        out.append((f"RCF {RCF_FEATURES} per pixel", rcf))
    if "fusion" in baselines:
        out += [(f"band values + {name}", lambda tr, te, sd, b=b: _pixel_probe(chips, tr, te, sd,
                                                                            _fused_values(chips, *b, device)))
                for name, b in backbones]
    return out


def _catalog(chips: SegmentationChips) -> Normalization:
    return Normalization.of_sensor(chips.sensor, chips.bands)


def _band_values(chips: SegmentationChips):
    return lambda idx: chips.images[idx]


def _rcf_values(chips: SegmentationChips, model, device: str):
    """chip indices -> (n, 512, H, W) RCF response maps, each position centred on its pixel."""
    norm = _catalog(chips)
    model = model.to(device)

    def maps(idx):
        with torch.no_grad():
            x = norm.apply(chips.images[idx], chips.valid[idx]).to(device)
            return rcf_maps(model, x, same_size=True).cpu().numpy()
    return maps


def _fused_values(chips: SegmentationChips, backbone, norm: Normalization, device: str):
    """chip indices -> (n, C + D, H, W): band values, then the backbone's last map upsampled to the pixels."""
    backbone = backbone.to(device).eval()
    h, w = chips.images.shape[-2:]

    def maps(idx):
        with torch.no_grad():
            f = feature_maps(backbone, norm.apply(chips.images[idx], chips.valid[idx]).to(device))
            if f.ndim == 3:                                      # ViT patch tokens (B, L, D) -> (B, D, g, g)
                b, length, d = f.shape
                g = math.isqrt(length)
                if g * g != length:
                    raise ValueError(f"cannot lay {length} patch tokens onto a square grid")
                f = f.transpose(1, 2).reshape(b, d, g, g)
            f = torch.nn.functional.interpolate(f.float(), size=(h, w), mode="bilinear", align_corners=False)
        return np.concatenate([chips.images[idx], f.cpu().numpy()], axis=1)
    return maps


def _pixel_probe(chips: SegmentationChips, train, test, seed: int, maps, max_pixels: int = 20000,
                 batch: int = 16, budget: int = 2 ** 26) -> dict:
    """Logistic regression on per-pixel features ``maps(idx)`` -> (n, F, H, W) of chips ``idx``: trained on up to
    ``max_pixels`` labelled pixels of the ``train`` chips (seeded draw), scored on every labelled pixel of the
    ``test`` chips. :func:`fit_logreg` returns predictions only, so test chips beyond ``budget`` feature values
    are predicted in chunks, each refitting the same (deterministic) model."""
    hw = chips.labels.shape[1] * chips.labels.shape[2]
    labelled = (chips.labels[train] >= 0) & chips.valid[train]
    keep = np.random.default_rng(seed).permutation(np.flatnonzero(labelled.ravel()))[:max_pixels]
    chip, pix = np.divmod(keep, hw)
    x = None
    for lo in range(0, len(train), batch):
        sel = np.flatnonzero((chip >= lo) & (chip < lo + batch))
        if sel.size:
            f = maps(train[lo:lo + batch])
            x = np.empty((keep.size, f.shape[1]), np.float32) if x is None else x
            x[sel] = f.reshape(f.shape[0], f.shape[1], hw)[chip[sel] - lo, :, pix[sel]]
    y = chips.labels[train].ravel()[keep]
    step = max(1, budget // (x.shape[1] * hw))
    truth, pred = [], []
    for lo in range(0, len(test), step):
        idx = test[lo:lo + step]
        lab = chips.labels[idx].ravel() >= 0
        f = np.concatenate([maps(idx[i:i + batch]) for i in range(0, len(idx), batch)])
        pred.append(fit_logreg(x, y, np.moveaxis(f, 1, -1).reshape(-1, x.shape[1])[lab])[0])
        truth.append(chips.labels[idx].ravel()[lab])
    m = classification_metrics(np.concatenate(truth), np.concatenate(pred), chips.classes)
    m["mean_iou"] = iou_from_confusion(m["confusion_matrix"])[1]
    return m
