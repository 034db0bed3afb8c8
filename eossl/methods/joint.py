"""Methods without a momentum encoder: SimSiam, SimCLR, Barlow Twins, VICReg.

SimSiam: Chen & He, CVPR 2021. SimCLR: Chen et al., ICML 2020. Barlow Twins: Zbontar et al., ICML 2021. VICReg:
Bardes et al., ICLR 2022.
"""

from __future__ import annotations

from eossl.distributed import gather_with_grad
from eossl.losses import barlow_twins_loss, nt_xent_loss, simsiam_loss, vicreg_loss
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
