"""What a method is: a backbone, its heads, whether it keeps an EMA target, and ``loss(views) -> dict``.

The generic training module owns optimiser, schedule, EMA updates (through :meth:`Method.ema_pairs`), logging
and checkpointing; a method only says how views become a loss.
"""

from __future__ import annotations

import abc
import inspect

import torch
from torch import nn

from eossl.models.backbones import accept_any_input_size, multi_level, multi_level_dim, stem_key
from eossl.registry import Registry

__all__ = ["Method", "METHODS", "build_method", "method_parameters"]

METHODS: Registry[type] = Registry("SSL method")


class Method(nn.Module, abc.ABC):
    """Base recipe. Subclasses set ``n_views``, ``uses_ema`` and implement :meth:`loss`."""

    n_views = 2
    uses_ema = False
    vit_only = False
    any_view_size = True      # False: the method addresses a fixed patch grid (MAE, I-JEPA), one view size only

    def __init__(self, backbone: nn.Module, arch: str, pool: str = "last"):
        super().__init__()
        if self.vit_only and not arch.startswith("vit"):
            raise ValueError(f"{type(self).__name__} needs a ViT backbone (vit_*), got {arch!r}")
        if pool not in ("last", "multi", "multi_std"):
            raise ValueError(f"pool must be 'last' (the backbone's pooled output), 'multi' (global averages of "
                             f"several depths) or 'multi_std' (their means and standard deviations), got {pool!r}")
        self.backbone = backbone
        self.arch = arch
        self._any_size_patch: int | None = None     # set when views of several sizes first reach a ViT
        self.pool = pool
        dims = {"last": int(backbone.num_features), "multi": multi_level_dim(backbone) if pool != "last" else 0}
        self.feat_dim = dims["last"] if pool == "last" else dims["multi"] * (2 if pool == "multi_std" else 1)
        self.in_chans = int(backbone.get_parameter(stem_key(arch)).shape[1])

    @abc.abstractmethod
    def loss(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, "embedding": (B, D) online features of view 1, ...}`` from a list of views."""

    def embed(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, feat_dim): what the heads see. ``pool="multi"`` puts the loss on early depths too."""
        return backbone(x) if self.pool == "last" else multi_level(backbone, x, std=self.pool == "multi_std")

    def draw_generator(self, seed: int) -> torch.Generator:
        """A CPU generator for this step's random draws, seeded from ``seed``, the rank and a step counter kept in
        the checkpoint (a long buffer ``draws`` the method registers; advanced in training mode), so a resumed
        run draws what the uninterrupted one would have."""
        from eossl.distributed import rank

        g = torch.Generator().manual_seed(hash((seed, rank(), int(self.draws))) % 2 ** 63)
        if self.training:
            self.draws += 1
        return g

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) modules the trainer updates with an EMA after each step."""
        return []

    def check_views(self, views: list[dict]) -> None:
        if len(views) < self.n_views:
            raise ValueError(f"{type(self).__name__} needs {self.n_views} views, got {len(views)}")
        sizes = sorted({tuple(v["image"].shape[-2:]) for v in views})
        if len(sizes) > 1 and self.arch.startswith("vit"):
            if not self.any_view_size:
                raise ValueError(f"{type(self).__name__} addresses a fixed patch grid and takes views of one size, "
                                 f"got {sizes}: set views.local_views=0")
            if self._any_size_patch is None:            # once: the online backbone and its EMA copies
                self._any_size_patch = accept_any_input_size(self)
            patch = self._any_size_patch
            odd = [s for s in sizes if s[0] % patch or s[1] % patch]
            if odd:
                raise ValueError(f"{type(self).__name__} on {self.arch}: view sizes {odd} are not multiples of the "
                                 f"patch size {patch}; set views.local_crop_size (and views.crop_size) to multiples "
                                 f"of {patch}")
        channels = views[0]["image"].shape[1]
        if channels != self.in_chans:
            raise ValueError(f"the data has {channels} bands but the {self.arch} backbone takes {self.in_chans}; "
                             f"build the backbone for the data's bands (or select bands with corpus.bands)")


def build_method(name: str, backbone: nn.Module, arch: str, **kwargs) -> Method:
    """The registered method ``name`` around ``backbone``; unknown names list the known ones."""
    return METHODS.get(name)(backbone, arch, **kwargs)


def method_parameters(name: str) -> list[str] | None:
    """The keyword arguments ``method.params`` may give the registered method ``name`` (its constructor's
    parameters after ``backbone`` and ``arch``); None when it takes any (``**kwargs``)."""
    params = list(inspect.signature(METHODS.get(name).__init__).parameters.values())[3:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
