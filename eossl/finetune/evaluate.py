"""Few-label probe report: band-statistics baseline, random-init backbone and (optionally) exported pretrained
weights, all probed on identical splits of the same labelled chips.

>>> report = probe_report(load_eurosat(), weights="runs/x/export", pool="multi")
>>> print(report.table()); json.dumps(report.as_dict())

Normalisation: the random-init backbone uses the sensor catalog statistics (``Sensor.norm_stats``); pretrained
weights use the statistics stored in their ``weights.json`` (for a band the stem was adapted to, those of the
source band whose kernel it took).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eossl.catalog.sensors import load_sensor
from eossl.data.radiometry import check_radiometry
from eossl.finetune.baselines import band_statistics
from eossl.finetune.features import extract_features
from eossl.finetune.probe import ProbeResult, few_shot_probe
from eossl.finetune.samples import LabelledChips
from eossl.finetune.sanity import check_splits, class_presence, emit, result_warnings
from eossl.models.backbones import create_backbone, is_vit
from eossl.train.export import load_backbone, read_weights_info

log = logging.getLogger(__name__)

__all__ = ["ReportRow", "ProbeReport", "probe_report"]


@dataclass
class ReportRow:
    name: str
    dim: int
    normalization: str
    result: ProbeResult

    def as_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim, "normalization": self.normalization, **self.result.as_dict()}


@dataclass
class ProbeReport:
    rows: list[ReportRow]
    settings: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)     # degenerate draws or results (eossl.finetune.sanity)

    def as_dict(self) -> dict:
        return {"settings": self.settings, "data": self.data, "results": [r.as_dict() for r in self.rows],
                "warnings": self.warnings}

    def table(self) -> str:
        s, d = self.settings, self.data
        width = max(len(r.name) for r in self.rows)
        lines = [f"{d['n']} chips, {len(d['classes'])} classes, {len(d['bands'])} bands; {s['per_class']}/class, "
                 f"{s['draws']} draws, seed {s['seed']} (splits {self.rows[0].result.split_digest})",
                 f"{'features':<{width}}  {'dim':>5}  accuracy (95% CI)"]
        for r in self.rows:
            note = f"  [{r.result.n_not_converged} fits hit max_iter]" if r.result.n_not_converged else ""
            lines.append(f"{r.name:<{width}}  {r.dim:>5}  {r.result}{note}")
        lines += [f"warning [{w['code']}]: {w['message']}" for w in self.warnings]
        return "\n".join(lines)


def probe_report(chips: LabelledChips, *, weights: str | Path | None = None, arch: str | None = None,
                 random_init: bool = True, pool: str | None = None, per_class: int = 10, draws: int = 20, seed: int = 0,
                 C: float = 1.0, max_iter: int = 2000, batch_size: int = 64, device: str = "cpu",
                 random_inits: int = 1) -> ProbeReport:
    """Probe band statistics, ``random_inits`` random-init ``arch`` models (init seeds ``seed``, ``seed + 1``, ...)
    if ``random_init``, and the exported ``weights`` if given, with :func:`few_shot_probe` on the same splits.
    ``arch`` defaults to the weights' architecture (resnet18 without weights); with weights it must match them.
    Several random inits show how much of a difference the init alone makes (often more than the split CI).
    ``pool`` (every backbone row uses the same): None means the weights' recorded ``feature_pool`` (else "last")."""
    info = read_weights_info(weights) if weights is not None else None
    if pool is None:
        pool = info.feature_pool if info is not None else "last"
    if info is not None and arch is not None and arch != info.arch:
        raise ValueError(f"arch {arch!r} differs from the weights' architecture {info.arch!r}; the random-init "
                         f"baseline must use the same architecture (leave arch unset)")
    arch = info.arch if info is not None else (arch or "resnet18")
    img_size = _img_size(chips, arch)
    if info is not None and is_vit(arch) and info.img_size != img_size:
        raise ValueError(f"{weights}: a {arch} trained on {info.img_size} px images cannot take {img_size} px chips "
                         f"(position embeddings differ); use chips of {info.img_size} px")
    if (random_init or info is not None) and not chips.sensor:
        raise ValueError("the chips name no sensor (LabelledChips.sensor), so their band wavelengths and "
                         "normalisation are unknown; load them with load_class_folders(..., sensor=...)")
    if chips.sensor:
        check_radiometry(chips.images, chips.mask, chips.bands, chips.sensor, "the probe's chips")
    probe = dict(per_class=per_class, draws=draws, seed=seed, C=C, max_iter=max_iter, classes=chips.classes)
    extract = dict(pool=pool, batch_size=batch_size, device=device)
    rows = []

    stats = band_statistics(chips.images, chips.mask)
    rows.append(ReportRow("band statistics", stats.shape[1], "none", few_shot_probe(stats, chips.labels, **probe)))
    log.info("%s: %s", rows[-1].name, rows[-1].result)

    if random_inits < 1:
        raise ValueError(f"random_inits must be >= 1, got {random_inits}")
    for init_seed in range(seed, seed + random_inits) if random_init else ():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = create_backbone(arch, len(chips.bands), img_size=img_size)
        mean, std = load_sensor(chips.sensor).norm_stats(chips.bands)
        feats = extract_features(model, chips.images, mean, std, **extract)
        name = f"random-init {arch} ({pool})" + (f", init seed {init_seed}" if random_inits > 1 else "")
        rows.append(ReportRow(name, feats.shape[1], f"sensor catalog ({chips.sensor})",
                              few_shot_probe(feats, chips.labels, **probe)))
        log.info("%s: %s", rows[-1].name, rows[-1].result)

    if info is not None:
        wavelengths = load_sensor(chips.sensor).wavelengths(chips.bands)
        model = load_backbone(weights, bands=list(zip(chips.bands, wavelengths)), img_size=img_size,
                              pool="last")
        mean, std = _weights_normalization(model, chips.bands)
        feats = extract_features(model, chips.images, mean, std, **extract)
        rows.append(ReportRow(f"pretrained {arch} {info.ssl_method} ({pool})", feats.shape[1], "weights.json",
                              few_shot_probe(feats, chips.labels, **probe)))
        log.info("%s: %s", rows[-1].name, rows[-1].result)

    assert len({r.result.split_digest for r in rows}) == 1, "every row must be probed on the same splits"
    settings = dict(pool=pool, arch=arch, random_inits=random_inits if random_init else 0,
                    weights=str(weights) if weights is not None else None, per_class=per_class,
                    draws=draws, seed=seed, C=C, max_iter=max_iter)
    data = dict(n=len(chips), classes=chips.classes, bands=chips.bands, sensor=chips.sensor,
                class_counts=np.bincount(chips.labels, minlength=len(chips.classes)).tolist())
    return ProbeReport(rows=rows, settings=settings, data=data, warnings=_probe_warnings(chips, rows))


def _probe_warnings(chips: LabelledChips, rows: list[ReportRow]) -> list[dict]:
    """Warnings about the draws (each tests on every chip outside its training chips) and the rows' CIs."""
    n = len(chips)
    first = rows[0].result
    splits = [(first.seed + draw, train, np.setdiff1d(np.arange(n), train))     # draw d: default_rng(seed + d)
              for draw, train in enumerate(first.train_indices)]
    results = [{"model": r.name, "protocol": "linear", "k": str(r.result.per_class),
                "overall_accuracy": r.result.as_dict() | {"n": r.result.draws}} for r in rows]
    return emit(check_splits(class_presence(chips.labels, len(chips.classes)), splits, chips.classes, unit="chips",
                             hint="add chips of the classes named or lower probe_report(per_class=...)",
                             small_hint="lower probe_report(per_class=...)") +
                result_warnings(results, seeds_hint="use 3 or more draws (eossl demo --draws 20)"))


def _img_size(chips: LabelledChips, arch: str) -> int:
    h, w = chips.images.shape[-2:]
    if is_vit(arch) and h != w:
        raise ValueError(f"{arch} needs square chips, got {h}x{w}; crop the chips to a square")
    return int(h)


def _weights_normalization(model, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """weights.json mean/std for ``bands`` (input order); an adapted band takes its source band's statistics."""
    info = model.weights_info
    source = {m.target: m.source for m in model.band_matches} if model.band_matches else {b: b for b in info.bands}
    index = [info.bands.index(source[b]) for b in bands]
    mean = np.asarray(info.normalization["mean"], dtype=np.float32)[index]
    std = np.asarray(info.normalization["std"], dtype=np.float32)[index]
    return mean, std


def backbone_for_bands(weights: str | Path, bands: list[str], sensor: str, img_size: int,
                       images: np.ndarray | None = None, valid: np.ndarray | None = None):
    """Exported weights ready for data with ``bands`` of ``sensor``: ``(model, mean (C,), std (C,))``. The stem is
    adapted by band name and wavelength when the bands differ from the weights' (an error names a band with no
    counterpart); mean/std come from ``weights.json`` (an adapted band takes its source band's). With ``images``
    ((..., C, H, W) reflectance, ``valid`` (..., H, W)) the data is checked against that normalisation
    (:func:`check_normalization`) and against the physical range of ``sensor``'s bands
    (:func:`~eossl.data.radiometry.check_radiometry`). The model is the plain timm backbone (pooled as "last"; feature maps,
    fine-tuning and :func:`~eossl.finetune.features.extract_features` in any pool)."""
    wavelengths = load_sensor(sensor).wavelengths(bands)
    model = load_backbone(weights, bands=list(zip(bands, wavelengths)), img_size=img_size, pool="last")
    mean, std = _weights_normalization(model, bands)
    if images is not None:
        check_normalization(images, valid, bands, mean, std, f"data for {weights}")
        check_radiometry(images, valid, bands, sensor, f"data for {weights}")
    return model, mean, std


def check_normalization(images: np.ndarray, valid: np.ndarray | None, bands: list[str], mean, std, what: str,
                        warn_at: float = 3.0, fail_at: float = 50.0) -> np.ndarray:
    """Compare the data's per-band mean with the normalisation the model expects; returns |z| per band.

    ``images``: (..., C, H, W) with ``valid`` (..., H, W). A band whose mean lies more than ``warn_at`` standard
    deviations from ``mean`` is logged; beyond ``fail_at`` the values are in other units (DN instead of
    reflectance, a wrong scale) and a ValueError names the bands."""
    c = images.shape[-3]
    x = np.moveaxis(np.asarray(images), -3, 0).reshape(c, -1)
    if valid is not None:
        x = x[:, np.asarray(valid).reshape(-1)]
    if x.shape[1] == 0:
        raise ValueError(f"{what}: no valid pixel to check the normalisation on")
    data_mean = x.mean(axis=1, dtype=np.float64)
    z = np.abs(data_mean - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    far = [f"{b} (mean {m:.4g}, expected {mu:.4g} ± {sd:.3g})"
           for b, m, mu, sd, zz in zip(bands, data_mean, mean, std, z) if zz > warn_at]
    if far and z.max() > fail_at:
        raise ValueError(f"{what}: the data's values are far outside the normalisation the model expects: "
                         f"{', '.join(far)}. Are they in the reader's units (reflectance = DN x scale + offset)? "
                         f"Check the sensor's scale/offset or the file's band order")
    if far:
        log.warning("%s: band means more than %g std from the model's normalisation: %s", what, warn_at,
                    ", ".join(far))
    return z
