"""Which optimiser settings move every backbone stage? Per-stage weight movement after a few steps.

Trains the built-in default (VICReg / ResNet-18, native views) for ``--steps`` steps on cached chips of the
built-in scene with each optimiser setting below, from the same initialisation and batches, and prints the relative
change ``||w - w0|| / ||w0||`` of every stage and the gradient norm each stage received at the first step. The
baseline row is the old default (LARS, trust coefficient 0.001, zero-initialised last BN of each residual block).

    .venv/bin/python benchmarks/movement_check.py [--steps 30] [--batch-size 64] [--chips 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eossl.catalog.build import IndexOptions, build_index  # noqa: E402
from eossl.data.chips.config import SamplerConfig, make_sampler  # noqa: E402
from eossl.data.reader import ChipReader  # noqa: E402
from eossl.methods import build_method  # noqa: E402
from eossl.models.backbones import create_backbone  # noqa: E402
from eossl.sample_data import builtin_s2_root  # noqa: E402
from eossl.train.config import PretrainConfig  # noqa: E402
from eossl.train.movement import grad_norms, relative_change  # noqa: E402
from eossl.train.optim import build_optimizer, cosine_with_warmup, scaled_lr  # noqa: E402
from eossl.train.pretrain import CorpusInfo, build_views  # noqa: E402

SETTINGS = [  # name, optimiser, base LR (per 256), LR scaling, trust coefficient, zero_init_last
    ("old default: LARS eta 0.001, zero-init BN", "lars", 0.3, "linear", 0.001, True),
    ("LARS eta 0.001", "lars", 0.3, "linear", 0.001, False),
    ("LARS eta 0.001, sqrt scaling", "lars", 0.3, "sqrt", 0.001, False),
    ("LARS eta 0.01 (default)", "lars", 0.3, "linear", 0.01, False),
    ("LARS eta 0.02", "lars", 0.3, "linear", 0.02, False),
    ("SGD (base LR 0.1)", "sgd", 0.1, "linear", 0.001, False),
    ("AdamW (base LR 2e-3)", "adamw", 2e-3, "linear", 0.001, False),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chips", type=int, default=512)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    index = build_index([builtin_s2_root()], "sentinel2-l1c", IndexOptions(exclude=("preview.*",)))
    reader = ChipReader(index, None, "bilinear")
    sampler = make_sampler(index, SamplerConfig(kind="random", chip_size=64, num_samples=args.chips), rank=0, world_size=1)
    chips = [reader.read(w.acquisitions[0], bounds=w.bounds, crs=w.crs, gsd=w.gsd) for w in sampler]
    images = torch.stack([torch.as_tensor(c.image) for c in chips])
    masks = torch.stack([torch.as_tensor(c.mask) for c in chips])
    mean, std = index.sensor().norm_stats(reader.bands)
    info = CorpusInfo(bands=list(reader.bands), wavelengths_nm=list(index.sensor().wavelengths(reader.bands)),
                      gsd_m=10.0, mean=list(mean), std=list(std), chip_size=64, sensor="sentinel2-l1c",
                      description="", index="", cache=None)
    cfg = PretrainConfig()
    print(f"{args.steps} steps of batch {args.batch_size}, VICReg / ResNet-18, native views; relative weight change "
          f"per stage, and the gradient norm per stage at step 0")
    for name, opt_name, base_lr, rule, eta, zero_init in SETTINGS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = create_backbone("resnet18", len(info.bands), 32)
            if zero_init:   # timm's default: the last BN of every residual block starts at zero
                for m in backbone.modules():
                    if hasattr(m, "zero_init_last"):
                        m.zero_init_last()
            method = build_method("vicreg", backbone, "resnet18", pool="multi_std")
        init = {k: v.clone() for k, v in backbone.state_dict().items()}
        views = build_views(cfg.views, "vicreg", info, seed=0)
        lr = scaled_lr(base_lr, args.batch_size, rule=rule)
        opt = build_optimizer(method, opt_name, lr, 1e-4, 0.9, trust_coefficient=eta)
        g = torch.Generator().manual_seed(0)
        t0, first = time.perf_counter(), None
        for step in range(args.steps):
            for group in opt.param_groups:
                group["lr"] = lr * cosine_with_warmup(step, args.steps, min(5, args.steps))
            idx = torch.randint(0, images.shape[0], (args.batch_size,), generator=g)
            views.reseed(step)
            loss = method.loss(views(images[idx], masks[idx]))["loss"]
            opt.zero_grad()
            loss.backward()
            if first is None:
                first = grad_norms(backbone)
            opt.step()
        moved = relative_change(backbone, init)
        print(f"{name:<44} peak LR {lr:.4g}  move " + " ".join(f"{k} {v:.4f}" for k, v in moved.items())
              + "  | grad@0 " + " ".join(f"{k} {v:.2g}" for k, v in first.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
