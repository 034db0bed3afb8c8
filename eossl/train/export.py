"""Portable weights: ``backbone.safetensors`` + ``weights.json`` describing bands, normalisation and provenance.

``weights.json`` holds at least ``arch``, ``in_chans``, ``bands`` (input order), ``wavelengths_nm``, ``gsd_m``,
``normalization`` ({"mean": [...], "std": [...]} per band, reflectance units as the reader produces them),
``ssl_method``, ``pretrain_data``, ``epochs``, ``eossl_version`` and ``img_size``, plus ``feature_pool`` (the pool of
:mod:`eossl.models.pooling` that frozen features should use; "last" when weights.json predates it) and
``feature_pool_source`` (the online-probe figures that chose it, ``{"chosen_by": "user"}``, or null). The
safetensors keys are those of ``timm.create_model(arch_timm_name, in_chans=..., num_classes=0)``, so a plain timm
model loads them (strict), whatever the feature pool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from eossl import __version__
from eossl.models.adapt import BandMatch, adapt_stem_weight
from eossl.models.backbones import create_backbone, stem_key
from eossl.models.pooling import POOLS, PooledBackbone, pool_dim
from eossl.runs import atomic_write

log = logging.getLogger(__name__)

__all__ = ["WeightsInfo", "export_backbone", "export_run", "probe_feature_pool", "read_weights_info",
           "load_backbone"]

WEIGHTS_FILE = "backbone.safetensors"
INFO_FILE = "weights.json"
PROBE_HISTORY = "probe/history.json"     # written into a pretraining run by its online probe


@dataclass
class WeightsInfo:
    arch: str
    in_chans: int
    bands: list[str]
    wavelengths_nm: list[float]
    gsd_m: float
    normalization: dict[str, list[float]]
    ssl_method: str
    pretrain_data: str
    epochs: int
    img_size: int = 224
    feature_pool: str = "last"
    feature_pool_source: dict | None = None
    eossl_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.in_chans
        lengths = {"bands": len(self.bands), "wavelengths_nm": len(self.wavelengths_nm),
                   "normalization.mean": len(self.normalization.get("mean", [])),
                   "normalization.std": len(self.normalization.get("std", []))}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"weights info: in_chans is {n} but {', '.join(f'{k} has {v}' for k, v in bad.items())}")
        if self.feature_pool not in POOLS:
            raise ValueError(f"weights info: unknown feature_pool {self.feature_pool!r}; choose one of "
                             f"{', '.join(POOLS)}")


def export_backbone(model: nn.Module, info: WeightsInfo, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out/backbone.safetensors`` and ``out/weights.json`` (each atomically). A :class:`PooledBackbone` is
    saved as its timm backbone; ``info.feature_pool`` must be a pool the model supports."""
    out = Path(out)
    if (out / INFO_FILE).exists() and not overwrite:
        raise ValueError(f"{out} already holds exported weights; choose another directory")
    if isinstance(model, PooledBackbone):
        model = model.backbone
    pool_dim(model, info.feature_pool)      # a pool the architecture does not have is an error listing those it has
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    key = stem_key(info.arch)
    if key not in state or state[key].shape[1] != info.in_chans:
        raise ValueError(f"the model's stem {key} does not take {info.in_chans} bands; is arch {info.arch!r} right?")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"arch": info.arch}))
    atomic_write(out / INFO_FILE, lambda p: p.write_text(json.dumps(asdict(info), indent=2)))
    return out


def read_weights_info(path: str | Path) -> WeightsInfo:
    path = Path(path)
    info_file = path / INFO_FILE if path.is_dir() else path
    if not info_file.is_file():
        raise FileNotFoundError(f"no {INFO_FILE} in {path}; export weights with `eossl export`")
    data = json.loads(info_file.read_text())
    missing = [k for k in ("arch", "in_chans", "bands", "wavelengths_nm", "gsd_m", "normalization", "ssl_method",
                           "pretrain_data", "epochs") if k not in data]
    if missing:
        raise ValueError(f"{info_file}: missing keys {missing}")
    known = set(WeightsInfo.__dataclass_fields__)
    return WeightsInfo(**{k: v for k, v in data.items() if k in known})


def load_backbone(path: str | Path, bands: list[tuple[str, float]] | None = None, max_nm: float = 60.0,
                  img_size: int | None = None, pool: str | None = None) -> nn.Module:
    """Rebuild the exported backbone; with ``bands`` ([(name, wavelength_nm), ...] of the target data, in input
    order) the stem is adapted by band name and wavelength (see :mod:`eossl.models.adapt`).

    The returned module maps a normalised (B, C, H, W) batch to (B, D) features and carries ``weights_info`` and
    ``band_matches``. Its type depends on ``pool`` only, never on what the file records:

    * ``pool=None`` (default): a :class:`~eossl.models.pooling.PooledBackbone` in the weights' recorded
      ``feature_pool`` ("last" for weights.json files that predate it): the features the weights are best used
      with. ``.backbone`` is the timm model, ``.pool`` the pool, ``.num_features`` the width D.
    * ``pool="last"``: the plain timm model (``timm.create_model(..., num_classes=0)``), whose own forward is the
      "last" pool. Fine-tuning, decoders and anything that needs feature maps use this.
    * any other pool of :data:`~eossl.models.pooling.POOLS`: a PooledBackbone in that pool.

    Loading is strict: a missing or unexpected key is an error; so is a pool the architecture does not have.
    """
    if pool is not None and pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)} (or None: the weights' "
                         f"recorded feature_pool)")
    path = Path(path)
    info = read_weights_info(path)
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path / WEIGHTS_FILE} is missing next to {INFO_FILE}")
    state = load_file(str(path / WEIGHTS_FILE))
    matches: list[BandMatch] = []
    in_chans = info.in_chans
    if bands is not None and [n for n, _ in bands] != info.bands:
        key = stem_key(info.arch)
        source = list(zip(info.bands, info.wavelengths_nm))
        state[key], matches = adapt_stem_weight(state[key], source, list(bands), max_nm)
        in_chans = len(bands)
    model = create_backbone(info.arch, in_chans, img_size or info.img_size)
    model.load_state_dict(state, strict=True)
    model.weights_info = info
    model.band_matches = matches
    return model if pool == "last" else PooledBackbone(model, pool or info.feature_pool)


BACKBONE_PREFIX = "method.backbone."


def probe_feature_pool(run_dir: str | Path) -> tuple[str, dict | None]:
    """``(feature_pool, feature_pool_source)`` chosen by the online probe of a pretraining run: the best pool of
    ``RUN_DIR/probe/history.json`` with the figures that chose it (the best_pool record, that evaluation's score of
    every pool and the baselines at the same k). ``("last", None)`` when the run has no probe history."""
    path = Path(run_dir) / PROBE_HISTORY
    if not path.is_file():
        return "last", None
    history = json.loads(path.read_text())
    best = history.get("best_pool")
    if not best:
        log.warning("%s names no best pool (no probe evaluation finished?): feature_pool 'last'", path)
        return "last", None
    hint = "; fix the file or choose the pool with `eossl export --feature-pool POOL`"
    if "pool" not in best or "k" not in best or "step" not in best:
        raise ValueError(f"{path}: best_pool {best} lacks pool, k or step{hint}")
    k = str(best["k"]) if str(best["k"]).startswith("k") else f"k{best['k']}"
    evaluation = next((e for e in history.get("evaluations", []) if e.get("step") == best["step"]), None)
    if evaluation is None or k not in evaluation:
        raise ValueError(f"{path}: no evaluation at step {best['step']} with {k} scores for the best pool{hint}")
    source = {"chosen_by": "online probe", "history": str(path), "best_pool": best, "k": k,
              "step": evaluation["step"], "minutes": evaluation.get("minutes"), "pools": evaluation[k],
              "baselines": history.get("baselines", {}).get(k, {})}
    return str(best["pool"]), source


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str | Path | None = None,
               overwrite: bool = False, feature_pool: str | None = None) -> Path:
    """Export the backbone of a pretraining run (its ``last.ckpt``, or ``checkpoint``) to ``out``.

    ``feature_pool``: the pool recorded in weights.json (``feature_pool_source`` ``{"chosen_by": "user"}``);
    None: the online probe's best pool (:func:`probe_feature_pool`), "last" without a probe history.
    """
    import torch

    from eossl.config import to_dict
    from eossl.train.checkpoint import CHECKPOINT_DIR, last_checkpoint
    from eossl.train.config import read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    data_file = run_dir / "data.json"
    if not data_file.is_file():
        raise FileNotFoundError(f"{data_file} is missing: the run stopped before its data was prepared")
    data = json.loads(data_file.read_text())
    ckpt = Path(checkpoint) if checkpoint else last_checkpoint(run_dir)
    if ckpt is None or not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint to export in {run_dir / CHECKPOINT_DIR} (a run saves one every "
                                f"{cfg.trainer.checkpoint_every_n_steps} steps and at the end); train it first or "
                                f"resume it with `eossl pretrain --resume {run_dir}`")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    weights = {k[len(BACKBONE_PREFIX):]: v for k, v in state["state_dict"].items() if k.startswith(BACKBONE_PREFIX)}
    img_size = cfg.views.crop_size or data["chip_size"]
    model = create_backbone(cfg.model.arch, len(data["bands"]), img_size)
    model.load_state_dict(weights, strict=True)
    info = WeightsInfo(
        arch=cfg.model.arch, in_chans=len(data["bands"]), bands=data["bands"], wavelengths_nm=data["wavelengths_nm"],
        gsd_m=data["gsd_m"], normalization={"mean": data["mean"], "std": data["std"]}, ssl_method=cfg.method.name,
        pretrain_data=data["description"], epochs=int(state["epoch"]), img_size=img_size,
        extra={"global_step": int(state["global_step"]), "checkpoint": str(ckpt), "sensor": data["sensor"],
               "config": to_dict(cfg)},
        **_pool_fields(run_dir, feature_pool))
    log.info("feature pool %r (%s)", info.feature_pool,
             (info.feature_pool_source or {}).get("chosen_by", "default: no probe history"))
    return export_backbone(model, info, out, overwrite=overwrite)


def _pool_fields(run_dir: Path, feature_pool: str | None) -> dict:
    if feature_pool is not None:
        return {"feature_pool": feature_pool, "feature_pool_source": {"chosen_by": "user"}}
    pool, source = probe_feature_pool(run_dir)
    return {"feature_pool": pool, "feature_pool_source": source}
