"""The classic pretext tasks as methods: rotation prediction (4-way) and jigsaw puzzles (which tile order).

Both see one view per chip. Rotation prediction needs views without rotations or flips (its preset, ``upright``,
is ``strong`` without ``rot90_flip``): overhead imagery has no canonical orientation except what sun angle and
shadows give, so expect it to learn less than the joint-embedding methods on satellite data.
"""

from __future__ import annotations

import torch
from torch import nn

from eossl.losses.pretext import jigsaw_permutations, pretext_loss, rotations, shuffle_tiles
from eossl.methods.base import METHODS, Method
from eossl.models.heads import mlp


@METHODS.register("rotation")
class RotationPrediction(Method):
    """Every chip in its four 90-degree rotations; a linear head on the features names the rotation."""

    n_views = 1

    def __init__(self, backbone, arch, pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.head = nn.Linear(self.feat_dim, 4)

    def loss(self, views):
        self.check_views(views)
        x, labels = rotations(views[0]["image"])
        f = self.embed(self.backbone, x)
        return {"loss": pretext_loss(self.head(f), labels), "embedding": f[:views[0]["image"].shape[0]]}


@METHODS.register("jigsaw")
class Jigsaw(Method):
    """The chip's ``grid x grid`` tiles reordered by one of ``n_permutations`` fixed orders (seeded, far apart);
    an MLP head on the features names the order. The embedding is that of the shuffled chips. The order of each
    chip comes from ``seed``, the rank and a step counter kept in the checkpoint, so a resumed run draws the same."""

    n_views = 1

    def __init__(self, backbone, arch, n_permutations: int = 100, grid: int = 3, hidden: int = 512, seed: int = 0,
                 pool: str = "last"):
        super().__init__(backbone, arch, pool)
        self.register_buffer("permutations", jigsaw_permutations(n_permutations, grid, seed))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.head = mlp(self.feat_dim, hidden, n_permutations, layers=2)
        self.seed = seed

    def loss(self, views):
        self.check_views(views)
        x = views[0]["image"]
        index = torch.randint(len(self.permutations), (x.shape[0],), generator=self.draw_generator(self.seed))
        index = index.to(x.device)
        f = self.embed(self.backbone, shuffle_tiles(x, self.permutations, index))
        return {"loss": pretext_loss(self.head(f), index), "embedding": f}
