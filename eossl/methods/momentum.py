"""Methods with a momentum (EMA) target encoder: MoCo v2 (queue), MoCo v3 (in-batch, predictor), BYOL (no
negatives) and DINO (self-distillation, multi-crop). The EMA momentum follows the trainer's cosine schedule from
``optim.ema_base`` to 1.

MoCo v2: Chen et al., 2020. MoCo v3: Chen, Xie & He, ICCV 2021. BYOL: Grill et al., NeurIPS 2020. DINO: Caron et
al., ICCV 2021. Separate registry entries, not version flags.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from eossl.distributed import gather_with_grad, rank
from eossl.losses import byol_loss, dino_center, dino_loss, info_nce, moco_v3_loss
from eossl.methods.base import METHODS, Method
from eossl.models.heads import DINOHead, mlp


class _MomentumMethod(Method):
    uses_ema = True

    def _make_target(self):
        self.target_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def ema_pairs(self):
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.embed(self.target_backbone, x))


@METHODS.register("moco_v2")
class MoCoV2(_MomentumMethod):
    def __init__(self, backbone, arch, proj_dim: int = 128, hidden: int = 2048, queue_size: int = 4096,
                 temperature: float = 0.2, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, hidden, proj_dim, layers=2)
        self._make_target()
        self.temperature = temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather_with_grad(keys.detach())
        n, size = keys.shape[0], self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = F.normalize(keys.float(), dim=1).to(self.queue.dtype)   # keys are bf16 under autocast
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def loss(self, views):
        self.check_views(views)
        f1 = self.embed(self.backbone, views[0]["image"])
        q1, q2 = self.projector(f1), self.projector(self.embed(self.backbone, views[1]["image"]))
        k1, k2 = self._keys(views[0]["image"]), self._keys(views[1]["image"])
        queue = self.queue.clone()
        loss = 0.5 * (info_nce(q1, k2, queue, self.temperature) + info_nce(q2, k1, queue, self.temperature))
        if self.training:
            self._enqueue(torch.cat([k1, k2]))
        return {"loss": loss, "embedding": f1}


@METHODS.register("moco_v3")
class MoCoV3(_MomentumMethod):
    def __init__(self, backbone, arch, proj_dim: int = 256, hidden: int = 4096, temperature: float = 0.2, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, hidden, proj_dim, layers=3, last_bn=True)
        self.predictor = mlp(proj_dim, hidden, proj_dim, layers=2, last_bn=True)
        self._make_target()
        self.temperature = temperature

    def loss(self, views):
        self.check_views(views)
        f1 = self.embed(self.backbone, views[0]["image"])
        q1 = self.predictor(self.projector(f1))
        q2 = self.predictor(self.projector(self.embed(self.backbone, views[1]["image"])))
        k1 = gather_with_grad(self._keys(views[0]["image"]))
        k2 = gather_with_grad(self._keys(views[1]["image"]))
        loss = moco_v3_loss(q1, q2, k1, k2, self.temperature, positive_offset=rank() * q1.shape[0])
        return {"loss": loss, "embedding": f1}


@METHODS.register("byol")
class BYOL(_MomentumMethod):
    """Projector and predictor as in the paper (2-layer MLPs, hidden 4096, output 256); the online network
    predicts the target's projection of the other view; no negatives, so no gathering across devices."""

    def __init__(self, backbone, arch, proj_dim: int = 256, hidden: int = 4096, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = mlp(self.feat_dim, hidden, proj_dim, layers=2)
        self.predictor = mlp(proj_dim, hidden, proj_dim, layers=2)
        self._make_target()

    def loss(self, views):
        self.check_views(views)
        x1, x2 = views[0]["image"], views[1]["image"]
        f1 = self.embed(self.backbone, x1)
        p1 = self.predictor(self.projector(f1))
        p2 = self.predictor(self.projector(self.embed(self.backbone, x2)))
        return {"loss": byol_loss(p1, p2, self._keys(x1), self._keys(x2)), "embedding": f1}


@METHODS.register("dino")
class DINO(_MomentumMethod):
    """The student sees every view, the EMA teacher the global ones (those of the first view's size); the
    teacher's outputs are centred (a running mean over devices, ``center_momentum``) and sharpened with a
    temperature that warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over
    ``warmup_teacher_steps`` steps (a counter kept in the checkpoint, like the centre). Local views of another size
    need a ResNet: a ViT here takes one input size."""

    def __init__(self, backbone, arch, out_dim: int = 4096, hidden: int = 2048, bottleneck: int = 256,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_steps: int = 1000, center_momentum: float = 0.9, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.projector = DINOHead(self.feat_dim, out_dim, hidden, bottleneck)
        self._make_target()
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.temps = (warmup_teacher_temp, teacher_temp, student_temp)
        self.warmup_teacher_steps, self.center_momentum = warmup_teacher_steps, center_momentum

    def teacher_temperature(self) -> float:
        start, end, _ = self.temps
        done = min(1.0, int(self.steps) / self.warmup_teacher_steps) if self.warmup_teacher_steps > 0 else 1.0
        return start + (end - start) * done

    def loss(self, views):
        self.check_views(views)
        x = [v["image"] for v in views]
        f1 = self.embed(self.backbone, x[0])
        student = [self.projector(f1)] + [self.projector(self.embed(self.backbone, xi)) for xi in x[1:]]
        teacher = [self._keys(xi) for xi in x if xi.shape[-2:] == x[0].shape[-2:]]
        loss = dino_loss(teacher, student, self.center, self.teacher_temperature(), self.temps[2])
        if self.training:
            self.center.copy_(dino_center(self.center, teacher, self.center_momentum))
            self.steps += 1
        return {"loss": loss, "embedding": f1}
