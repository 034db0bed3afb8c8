"""Methods without a momentum encoder: SimSiam, SimCLR, SwAV, Barlow Twins, VICReg.

SimSiam: Chen & He, CVPR 2021. SimCLR: Chen et al., ICML 2020. SwAV: Caron et al., NeurIPS 2020. Barlow Twins:
Zbontar et al., ICML 2021. VICReg: Bardes et al., ICLR 2022.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eossl.distributed import gather_with_grad
from eossl.losses import barlow_twins_loss, nt_xent_loss, simsiam_loss, sinkhorn, swav_loss, vicreg_loss
from eossl.methods.base import METHODS, Method
from eossl.models.heads import mlp


def _gathered_projections(method: Method, views):
    """Backbone features of view 1, and both views' projections gathered from every device (batch statistics
    of the redundancy-reduction losses and SimCLR's negatives then cover the global batch)."""
    method.check_views(views)
    f1, f2 = method.embed(method.backbone, views[0]["image"]), method.embed(method.backbone, views[1]["image"])
    return f1, gather_with_grad(method.projector(f1)), gather_with_grad(method.projector(f2))


@METHODS.register("simsiam")
class SimSiam(Method):
    def __init__(self, backbone, arch, proj_dim: int = 2048, pred_hidden: int = 512, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, proj_dim, proj_dim, layers=3, last_bn=True)
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim, layers=2)

    def loss(self, views):
        self.check_views(views)
        f1, f2 = self.embed(self.backbone, views[0]["image"]), self.embed(self.backbone, views[1]["image"])
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return {"loss": simsiam_loss(p1, p2, z1, z2), "embedding": f1}


@METHODS.register("simclr")
class SimCLR(Method):
    """2-layer projection head (hidden 2048, BN + ReLU, output 128) and NT-Xent at temperature 0.1, as the paper's
    code; the negatives are every other sample of the batch gathered from all devices."""

    def __init__(self, backbone, arch, proj_dim: int = 128, hidden: int = 2048, temperature: float = 0.1,
                 pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, hidden, proj_dim, layers=2)
        self.temperature = temperature

    def loss(self, views):
        f1, z1, z2 = _gathered_projections(self, views)
        return {"loss": nt_xent_loss(z1, z2, self.temperature), "embedding": f1}


@METHODS.register("swav")
class SwAV(Method):
    """Projection (2-layer MLP, output 128, L2-normalised) scored against ``n_prototypes`` unit-norm prototypes;
    the codes of the two global views (Sinkhorn-Knopp over the batch of every device, optionally with a queue of
    ``queue_size`` earlier projections per view) are predicted from every other view, local views included.
    ``freeze_prototypes_steps``: the prototypes get no gradient for that many first steps, as in the paper. The
    queue, its fill and the step count are in the checkpoint."""

    def __init__(self, backbone, arch, proj_dim: int = 128, hidden: int = 2048, n_prototypes: int = 3000,
                 temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 queue_size: int = 0, freeze_prototypes_steps: int = 0, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, hidden, proj_dim, layers=2)
        self.prototypes = nn.Linear(proj_dim, n_prototypes, bias=False)
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, sinkhorn_iterations
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.register_buffer("queue", torch.zeros(2, queue_size, proj_dim))
        self.register_buffer("queued", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def loss(self, views):
        self.check_views(views)
        f1 = self.embed(self.backbone, views[0]["image"])
        z = [F.normalize(self.projector(f), dim=1)
             for f in [f1, *(self.embed(self.backbone, v["image"]) for v in views[1:])]]
        w = F.normalize(self.prototypes.weight, dim=1)
        w = w.detach() if int(self.steps) < self.freeze_prototypes_steps else w
        scores = [zi @ w.T for zi in z]
        full = self.queue.shape[1] > 0 and int(self.queued) >= self.queue.shape[1]
        codes = []
        for i in range(2):
            s = scores[i].detach()
            s = torch.cat([s, self.queue[i] @ w.detach().T]) if full else s
            codes.append(sinkhorn(s, self.epsilon, self.iterations)[:scores[i].shape[0]])
        loss = swav_loss(scores, codes, self.temperature)
        if self.training:
            self._enqueue([zi.detach() for zi in z[:2]])
            self.steps += 1
        return {"loss": loss, "embedding": f1}

    @torch.no_grad()
    def _enqueue(self, z: list[torch.Tensor]) -> None:
        if self.queue.shape[1] == 0:
            return
        for i, zi in enumerate(z):      # newest first, oldest dropped
            self.queue[i] = torch.cat([zi.to(self.queue.dtype), self.queue[i]])[:self.queue.shape[1]]
        self.queued += z[0].shape[0]


@METHODS.register("barlow")
class BarlowTwins(Method):
    def __init__(self, backbone, arch, proj_dim: int = 2048, lambd: float = 5e-3, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, proj_dim, proj_dim, layers=3)
        self.lambd = lambd

    def loss(self, views):
        f1, z1, z2 = _gathered_projections(self, views)
        return {"loss": barlow_twins_loss(z1, z2, self.lambd), "embedding": f1}


@METHODS.register("vicreg")
class VICReg(Method):
    def __init__(self, backbone, arch, proj_dim: int = 2048, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                 cov_coeff: float = 1.0, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, proj_dim, proj_dim, layers=3)
        self.coeffs = (sim_coeff, std_coeff, cov_coeff)

    def loss(self, views):
        f1, z1, z2 = _gathered_projections(self, views)
        return {"loss": vicreg_loss(z1, z2, *self.coeffs), "embedding": f1}
