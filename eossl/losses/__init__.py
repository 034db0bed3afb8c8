"""SSL losses as pure functions of tensors (no modules, configs or trainers)."""

from eossl.losses.clustering import sinkhorn, swav_loss
from eossl.losses.contrastive import (
    byol_loss,
    info_nce,
    moco_v3_loss,
    negative_cosine,
    nt_xent_loss,
    simsiam_loss,
)
from eossl.losses.distillation import dino_center, dino_loss
from eossl.losses.masked import mae_loss, masked_series_loss
from eossl.losses.predictive import jepa_blocks, jepa_loss
from eossl.losses.redundancy import barlow_twins_loss, vicreg_loss

__all__ = ["negative_cosine", "simsiam_loss", "byol_loss", "info_nce", "moco_v3_loss", "nt_xent_loss",
           "barlow_twins_loss", "vicreg_loss", "mae_loss", "masked_series_loss", "dino_loss", "dino_center",
           "sinkhorn", "swav_loss", "jepa_blocks", "jepa_loss"]
