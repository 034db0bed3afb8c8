"""bf16 autocast against float32 (the baseline) for one SSL training step on this CPU.

Times forward + backward of the default method (VICReg on a ResNet-18, loss on every stage's mean and std)
on two views of a batch of 13-band chips, in float32 and under ``torch.autocast("cpu", torch.bfloat16)``,
alternating the two in the same process, and prints seconds per step of each, their ratio, and whether this
CPU computes bf16 natively (oneDNN: AVX512-BF16 or AMX), which is what ``trainer.precision: auto`` decides on.

    .venv/bin/python benchmarks/bench_precision.py [--batch-size 128] [--crop 32] [--steps 3] [--threads 2]

Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=32, help="view size in pixels (the default recipe's crops)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per precision (after one warm-up step each)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from eossl.methods import build_method
    from eossl.models.backbones import create_backbone
    from eossl.train.module import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method = build_method("vicreg", create_backbone("resnet18", 13), "resnet18", pool="multi_std")
    views = [{"image": torch.randn(args.batch_size, 13, args.crop, args.crop),
              "mask": torch.ones(args.batch_size, args.crop, args.crop, dtype=torch.bool)} for _ in range(2)]

    def step(bf16: bool) -> float:
        method.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = method.loss(views)["loss"]
        loss.float().backward()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"float32 (baseline)": [], "bf16 autocast": []}
    for bf16 in (False, True):
        step(bf16)  # warm-up: kernel selection, allocator
    for _ in range(args.steps):
        for name, bf16 in (("float32 (baseline)", False), ("bf16 autocast", True)):
            times[name].append(step(bf16))
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, "
          f"torch {torch.__version__}, {args.threads} threads; VICReg/ResNet-18, 2 views of "
          f"{args.batch_size} x 13 x {args.crop} x {args.crop}, forward + backward, median of {args.steps}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"  {name:20s} {t:8.2f} s/step  (min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    print(f"  bf16 / float32: {med['bf16 autocast'] / med['float32 (baseline)']:.1f}x the time")


if __name__ == "__main__":
    main()
