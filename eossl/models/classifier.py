"""A fine-tuned classifier (backbone + head) that describes itself, so ``eossl predict`` can rebuild it.

Saved as a directory holding ``classifier.safetensors`` (every parameter and buffer, keys ``backbone.*`` and
``head.*``) and ``classifier.json`` (:class:`ClassifierInfo`: architecture, bands, wavelengths, GSD,
normalisation, classes, colours, task, head). Both files are written atomically.

>>> clf = Classifier(create_backbone("resnet18", 13, 64), n_classes=10, task="patch")
>>> save_classifier(clf, info, "runs/ft/model");  clf2 = load_classifier("runs/ft/model")
>>> logits = clf2((x - mean) / std)       # patch: (B, K); segment: (B, K, H, W)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from eossl import __version__
from eossl.models.backbones import RESNET_STAGES, create_backbone, feature_maps, is_vit
from eossl.models.weights import read_info
from eossl.runs import atomic_write, write_text

__all__ = ["TASKS", "Classifier", "ClassifierInfo", "SegmentationDecoder", "default_colors", "load_classifier",
           "save_classifier"]

TASKS = ("patch", "segment")
MODEL_FILE = "classifier.safetensors"
INFO_FILE = "classifier.json"

# A qualitative palette (RGB 0-255) for class maps; classes beyond it cycle.
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
            (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148)]


def default_colors(n: int) -> list[list[int]]:
    return [list(_PALETTE[i % len(_PALETTE)]) for i in range(n)]


@dataclass
class ClassifierInfo:
    """What a classifier expects and predicts. ``normalization`` is per band, in the units the reader produces
    (reflectance); inputs are ``(x - mean) / std`` in ``bands`` order. ``img_size``: the chip size it was trained
    on (a ViT needs exactly it; a ResNet takes any size)."""

    arch: str
    task: Literal["patch", "segment"]
    bands: list[str]
    wavelengths_nm: list[float]
    gsd_m: float
    normalization: dict[str, list[float]]
    classes: list[str]
    img_size: int
    sensor: str = ""
    colors: list[list[int]] = field(default_factory=list)
    source_weights: str = ""
    protocol: str = ""
    eossl_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        n = len(self.bands)
        bad = {k: len(v) for k, v in (("wavelengths_nm", self.wavelengths_nm),
                                      ("normalization.mean", self.normalization.get("mean", [])),
                                      ("normalization.std", self.normalization.get("std", []))) if len(v) != n}
        if bad:
            raise ValueError(f"classifier info: {n} bands but " + ", ".join(f"{k} has {v}" for k, v in bad.items()))
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.classes}")
        if not self.colors:
            self.colors = default_colors(len(self.classes))
        if len(self.colors) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.colors)} colours")


class SegmentationDecoder(nn.Module):
    """A light feature-pyramid decoder: each input map gets a 1x1 projection to ``hidden`` channels, all are
    upsampled to the finest map and summed, then BN + ReLU, a 1x1 classifier and bilinear upsampling to the
    input size. ResNet: layer1..layer4 (strides 4..32), so boundaries are resolved at 1/4 of the input; ViT: the
    last block's patch tokens as a grid (stride = patch size). [(B, D_i, h_i, w_i)] -> (B, K, H, W).

    Written here rather than taken from segmentation_models_pytorch, which is installed: its FPNDecoder (0.6) needs
    four maps at strides 4-32 and refuses a ViT's single token grid ("encoder depth ... cannot be less than 3"),
    and on ResNet-18 it has 1.87 M parameters (3x3 conv blocks, 256 pyramid channels) against 0.12 M here, 15x
    more to fit from a few labelled chips on a CPU. Saved classifiers hold these keys (head.lateral/fuse/cls)."""

    def __init__(self, in_dims: list[int], n_classes: int, hidden: int = 128):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(d, hidden, 1, bias=False) for d in in_dims)
        self.fuse = nn.Sequential(nn.BatchNorm2d(hidden), nn.ReLU(True))
        self.cls = nn.Conv2d(hidden, n_classes, 1)

    def forward(self, fmaps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        target = fmaps[0].shape[-2:]
        fused = sum(nn.functional.interpolate(lat(f), size=target, mode="bilinear", align_corners=False)
                    if f.shape[-2:] != target else lat(f) for lat, f in zip(self.lateral, fmaps))
        return nn.functional.interpolate(self.cls(self.fuse(fused)), size=size, mode="bilinear", align_corners=False)


def _pyramid_dims(backbone: nn.Module) -> list[int]:
    if isinstance(backbone, ResNet):
        return [int(backbone.feature_info[i]["num_chs"]) for i in RESNET_STAGES]
    return [int(backbone.num_features)]


def _pyramid(backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """ResNet: layer1..layer4 maps; ViT: the last block's patch tokens (after the final norm) as a grid; any other
    backbone: its ``forward_features`` map (B, D, h, w)."""
    if isinstance(backbone, ResNet):
        return backbone.forward_intermediates(x, indices=RESNET_STAGES, intermediates_only=True)
    if not isinstance(backbone, VisionTransformer):
        return [backbone.forward_features(x)]
    tokens = feature_maps(backbone, x)                               # (B, L, D)
    gh, gw = backbone.patch_embed.grid_size
    return [tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)]


class Classifier(nn.Module):
    """``backbone`` (a timm model with ``num_classes=0``) + a head.

    ``task="patch"``: a linear layer on the pooled features, (B, C, H, W) -> (B, K).
    ``task="segment"``: :class:`SegmentationDecoder` on the backbone's feature pyramid, (B, C, H, W) -> (B, K, H, W).
    """

    def __init__(self, backbone: nn.Module, n_classes: int, task: str = "patch"):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.backbone = backbone
        self.task = task
        if task == "patch":
            self.head = nn.Linear(backbone.num_features, n_classes)
        else:
            self.head = SegmentationDecoder(_pyramid_dims(backbone), n_classes)

    @property
    def n_classes(self) -> int:
        return self.head.out_features if self.task == "patch" else self.head.cls.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "patch":
            return self.head(self.backbone(x))
        return self.head(_pyramid(self.backbone, x), tuple(x.shape[-2:]))


def save_classifier(model: Classifier, info: ClassifierInfo, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out/classifier.safetensors`` and ``out/classifier.json`` (each atomically)."""
    out = Path(out)
    if (out / INFO_FILE).exists() and not overwrite:
        raise ValueError(f"{out} already holds a classifier; choose another directory")
    if model.task != info.task or model.n_classes != len(info.classes):
        raise ValueError(f"the model ({model.task}, {model.n_classes} classes) does not match its info "
                         f"({info.task}, {len(info.classes)} classes)")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out / MODEL_FILE, lambda tmp: save_file(state, str(tmp), metadata={"arch": info.arch,
                                                                                  "task": info.task}))
    write_text(out / INFO_FILE, json.dumps(asdict(info), indent=2))
    return out


def read_classifier_info(path: str | Path) -> ClassifierInfo:
    return read_info(ClassifierInfo, path, INFO_FILE, ("arch", "task", "bands", "wavelengths_nm", "gsd_m",
                                                       "normalization", "classes", "img_size"),
                     "train a classifier with `eossl finetune` first")


def load_classifier(path: str | Path) -> Classifier:
    """Rebuild a saved classifier in eval mode; it carries ``info`` (:class:`ClassifierInfo`)."""
    path = Path(path)
    info = read_classifier_info(path)
    if not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{path / MODEL_FILE} is missing next to {INFO_FILE}")
    backbone = create_backbone(info.arch, len(info.bands), info.img_size if is_vit(info.arch) else 224)
    model = Classifier(backbone, len(info.classes), info.task)
    model.load_state_dict(load_file(str(path / MODEL_FILE)), strict=True)
    model.info = info
    return model.eval()
