"""The online probe's labelled chips: ``probe.data`` read through
:meth:`~eossl.data.labelled.config.LabelledDataConfig.load` (the built-in EuroSAT-MS sample without a root), checked
against the probe's pools and ks, resized for a ViT and restricted to the corpus bands (errors name the ``probe``
key to change)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from eossl.config import ConfigError
from eossl.data.labelled.folders import LabelledChips
from eossl.evaluate.features import candidate_pools
from eossl.models.backbones import create_backbone, is_vit
from eossl.models.pooling import check_pool
from eossl.train.config import ProbeConfig

__all__ = ["load_probe_chips", "select_bands"]

log = logging.getLogger(__name__)


def load_probe_chips(probe: ProbeConfig, arch: str, img_size: int) -> LabelledChips:
    """The labelled chips of ``probe.data`` (:meth:`~eossl.data.labelled.config.LabelledDataConfig.load`: the
    built-in EuroSAT-MS sample without a root), checked against the probe's pools and ks (errors name the key to
    change); for a ViT resized to its ``img_size``."""
    pools = probe.pools or candidate_pools(arch)
    with torch.device("meta"):                          # the architecture only, to check the pools against
        model = create_backbone(arch, 1, img_size if is_vit(arch) else 224)
    for pool in pools:
        try:
            check_pool(model, pool)
        except ValueError as err:
            raise ConfigError(f"probe.pools: {err}") from err
    data, name = probe.data, probe.data.describe()
    if data.root is not None and not Path(data.root).expanduser().is_dir():
        raise FileNotFoundError(f"probe.data: class-folder root {data.root} not found; give 'builtin', a folder "
                                f"with one sub-folder of chips per class, or null (no probe)")
    try:
        chips = data.load()
    except ValueError as err:
        if data.builtin:        # the built-in sample: not something probe.data can fix
            raise
        raise ValueError(f"probe.data: {err}") from err
    counts = np.bincount(chips.labels, minlength=len(chips.classes))
    short = [f"{c} ({n})" for c, n in zip(chips.classes, counts) if n <= max(probe.ks)]
    if short or len(chips.classes) < 2:
        raise ValueError(f"probe.data: {name} has too few chips for probe.ks = {probe.ks}: every class needs "
                         f"more than {max(probe.ks)} (k to train, at least one to test) and there must be 2 classes "
                         f"or more; short: {', '.join(short) or '-'}. Lower probe.ks or add chips")
    if is_vit(arch) and chips.images.shape[-2:] != (img_size, img_size):
        log.info("online probe: %s chips resized from %dx%d to the %s's %d px (bilinear)", name,
                 *chips.images.shape[-2:], arch, img_size)
        chips = _resized(chips, img_size)
    return chips


def _resized(chips: LabelledChips, size: int) -> LabelledChips:
    """A ViT's position embeddings fix its input size: chips resampled to ``size`` px (images bilinear, with
    antialiasing when shrinking; masks nearest)."""
    x = torch.nn.functional.interpolate(torch.as_tensor(chips.images), size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=size < chips.images.shape[-1])
    m = torch.nn.functional.interpolate(torch.as_tensor(chips.mask[:, None], dtype=torch.float32),
                                        size=(size, size), mode="nearest")[:, 0] > 0.5
    return dataclasses.replace(chips, images=x.numpy(), mask=m.numpy())


def select_bands(chips: LabelledChips, bands: list[str]) -> LabelledChips:
    """``chips`` restricted to ``bands`` (the corpus bands) in that order, selected by name."""
    missing = [b for b in bands if b not in chips.bands]
    if missing:
        raise ValueError(f"probe.data: the probe chips lack band(s) {', '.join(missing)} that the corpus trains on "
                         f"(the chips hold {', '.join(chips.bands)}); give probe chips with every corpus band, or "
                         f"probe.data=null to train without the probe")
    index = [chips.bands.index(b) for b in bands]
    return dataclasses.replace(chips, images=np.ascontiguousarray(chips.images[:, index]), bands=list(bands))
