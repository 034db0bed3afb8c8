"""Export a pretraining run's backbone as portable weights (:mod:`eossl.models.weights`), with the feature pool its
online probe chose."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eossl.models.backbones import create_backbone
from eossl.models.weights import WeightsInfo, export_backbone

log = logging.getLogger(__name__)

__all__ = ["export_run", "probe_feature_pool"]

PROBE_HISTORY = "probe/history.json"     # written into a pretraining run by its online probe
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
               overwrite: bool = False, feature_pool: str | None = None, data_licence: str | None = None) -> Path:
    """Export the backbone of a pretraining run (its ``last.ckpt``, or ``checkpoint``) to ``out``.

    ``feature_pool``: the pool recorded in weights.json (``feature_pool_source`` ``{"chosen_by": "user"}``);
    None: the online probe's best pool (:func:`probe_feature_pool`), "last" without a probe history.
    ``data_licence``: the pretraining data's licence, recorded in weights.json and the model card.
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
               "config": to_dict(cfg), "data_licence": data_licence},
        **_pool_fields(run_dir, feature_pool))
    log.info("feature pool %r (%s)", info.feature_pool,
             (info.feature_pool_source or {}).get("chosen_by", "default: no probe history"))
    return export_backbone(model, info, out, overwrite=overwrite)


def _pool_fields(run_dir: Path, feature_pool: str | None) -> dict:
    if feature_pool is not None:
        return {"feature_pool": feature_pool, "feature_pool_source": {"chosen_by": "user"}}
    pool, source = probe_feature_pool(run_dir)
    return {"feature_pool": pool, "feature_pool_source": source}
