"""View generation speed: one batched call vs the same ops per sample, and its share of an SSL training step.

Makes 2 views ("strong" preset, the one VICReg uses) of 13-band 64x64 Sentinel-2 chips read from the built-in
sample scene, and prints:

* images/s of one ``ViewGenerator`` call on the whole batch against the same ``ViewGenerator`` called on each
  sample as a batch of 1 in a Python loop (what a per-sample transform in a CPU DataLoader does), and the
  ratio (target, issue "augmentations": at least 10x on this CPU);
* where the batched call spends its time, op by op;
* the augmentation share of one ResNet-18 SSL training step: view generation + forward of both views + loss +
  backward + optimiser step (target: under 15%).

    .venv/bin/python benchmarks/bench_augment.py [--batch-size 256] [--step-batch-sizes 256 64] [--repeats 5]

What the figures mean:

* an "image" is one input sample; each yields 2 views (2 x 13 x 64 x 64 values), in both pipelines;
* the per-sample loop only calls the generator; stacking its outputs into a batch (a DataLoader's collate)
  is not timed, which flatters the loop a little;
* warm-up calls are not timed; batched and loop runs are interleaved and the median of ``--repeats`` is
  reported; torch uses its default thread count (printed);
* the SSL step uses timm's ResNet-18 (``in_chans=13, num_classes=0``), a 512-2048-2048 projector and a VICReg
  loss written inline here (Bardes et al. 2022; the real methods come later), SGD with momentum. It runs with
  contiguous (NCHW) and ``channels_last`` tensors; the share is taken within each step (views / whole step).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing eossl

import kornia  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from eossl.augment.views import ViewGenerator, preset  # noqa: E402
from eossl.catalog.build import IndexOptions, build_index  # noqa: E402
from eossl.catalog.sensors import load_sensor  # noqa: E402
from eossl.data.chips.dataset import ChipDataset, Collate  # noqa: E402
from eossl.data.chips.samplers import RandomWindowSampler  # noqa: E402
from eossl.data.reader import ChipReader  # noqa: E402
from eossl.gdal_env import configure_gdal  # noqa: E402
from eossl.runtime import configure_allocator  # noqa: E402
from eossl.sample_data import builtin_s2_root  # noqa: E402

SENSOR, SIZE, GSD, PRESET = "sentinel2-l1c", 64, 10.0, "vicreg"
RATIO_TARGET, SHARE_TARGET = 10.0, 0.15


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=256, help="chips per batch for the throughput runs")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per pipeline; median reported")
    p.add_argument("--step-batch-sizes", type=int, nargs="*", default=[256, 64],
                   help="batch sizes for the SSL training step (none: skip it)")
    p.add_argument("--step-repeats", type=int, default=3,
                   help="timed training steps per batch size and layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--default-allocator", action="store_true",
                   help="keep glibc's default malloc thresholds (the eossl command raises them at start-up)")
    args = p.parse_args(argv)
    if min(args.batch_size, args.repeats, args.step_repeats, *args.step_batch_sizes) < 1:
        p.error("batch sizes and repeats must be >= 1")
    return args


def read_chips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` random 64x64 chips of the built-in scene: image (n, 13, 64, 64) reflectance, mask (n, 64, 64)."""
    options = IndexOptions(exclude=("preview.jp2",))  # the scene's RGB quicklook is not a band
    index = build_index([builtin_s2_root()], SENSOR, options, progress=False)
    reader = ChipReader(index)
    sampler = RandomWindowSampler(index, size=SIZE, num_samples=n, gsd=GSD, seed=seed)
    dataset = ChipDataset(reader)
    batch = Collate(reader.bands)([dataset[w] for w in sampler])
    return batch["image"], batch["mask"], batch["bands"]


def make_generator(bands: list[str], seed: int) -> ViewGenerator:
    sensor = load_sensor(SENSOR)
    mean, std = sensor.norm_stats(bands)
    return ViewGenerator(preset(PRESET), bands, sensor.wavelengths(bands), mean, std, chip_size=SIZE,
                         seed=seed)


def check_views(views: list[dict], b: int, c: int) -> None:
    if len(views) != 2 or any(tuple(v["image"].shape) != (b, c, SIZE, SIZE) for v in views):
        raise RuntimeError(f"expected 2 views of shape {(b, c, SIZE, SIZE)}, got "
                           f"{[tuple(v['image'].shape) for v in views]}")


def time_batched(gen: ViewGenerator, image: torch.Tensor, mask: torch.Tensor) -> float:
    t0 = time.perf_counter()
    views = gen(image, mask)
    dt = time.perf_counter() - t0
    check_views(views, *image.shape[:2])
    return dt


def time_loop(gen: ViewGenerator, image: torch.Tensor, mask: torch.Tensor) -> float:
    """The same generator on each sample as a batch of 1 (a per-sample DataLoader transform)."""
    t0 = time.perf_counter()
    for i in range(image.shape[0]):
        views = gen(image[i:i + 1], mask[i:i + 1])
    dt = time.perf_counter() - t0
    check_views(views, 1, image.shape[1])
    return dt


class OpTimer:
    """Wall time spent in each op's ``forward`` (image path: parameters + transform on the gated samples)."""

    def __init__(self, gen: ViewGenerator):
        self.ops = list(gen.reflectance_ops) + (list(gen.sequential.children()) if gen.sequential else [])
        self.times = {self.name(op): 0.0 for op in self.ops}
        self._t0 = 0.0
        self.handles = []
        for op in self.ops:
            self.handles.append(op.register_forward_pre_hook(self._start))
            self.handles.append(op.register_forward_hook(self._stop))

    @staticmethod
    def name(op: nn.Module) -> str:
        return f"{type(op).__name__} (p={getattr(op, 'p_apply', op.p):g})"

    def _start(self, module, args):
        self._t0 = time.perf_counter()

    def _stop(self, module, args, output):
        self.times[self.name(module)] += time.perf_counter() - self._t0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def op_breakdown(gen: ViewGenerator, image, mask, runs: int = 3) -> tuple[dict[str, float], float, tuple]:
    """Median seconds per batched call spent in each op (both views), the median call time, and per call the
    system CPU seconds and minor page faults of the process (fresh memory being mapped in)."""
    timer = OpTimer(gen)
    per_op: dict[str, list[float]] = {k: [] for k in timer.times}
    totals = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        for _ in range(runs):
            timer.times = dict.fromkeys(timer.times, 0.0)
            totals.append(time_batched(gen, image, mask))
            for k, v in timer.times.items():
                per_op[k].append(v)
    finally:
        timer.remove()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    kernel = ((r1.ru_stime - r0.ru_stime) / runs, (r1.ru_minflt - r0.ru_minflt) / runs)
    return {k: statistics.median(v) for k, v in per_op.items()}, statistics.median(totals), kernel


class SSLNet(nn.Module):
    """ResNet-18 backbone (timm, 13 input bands) + a 512-2048-2048 projector."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.backbone = timm.create_model("resnet18", in_chans=in_chans, num_classes=0)
        dim = self.backbone.num_features
        self.projector = nn.Sequential(nn.Linear(dim, 2048), nn.BatchNorm1d(2048), nn.ReLU(inplace=True),
                                       nn.Linear(2048, 2048))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0,
                cov: float = 1.0) -> torch.Tensor:
    """VICReg (Bardes et al., ICLR 2022): invariance + variance hinge + covariance, (B, D) embeddings."""
    b, d = z1.shape
    inv = F.mse_loss(z1, z2)
    z1, z2 = z1 - z1.mean(0), z2 - z2.mean(0)
    std1, std2 = torch.sqrt(z1.var(0) + 1e-4), torch.sqrt(z2.var(0) + 1e-4)
    variance = F.relu(1 - std1).mean() + F.relu(1 - std2).mean()
    c1, c2 = (z1.T @ z1) / (b - 1), (z2.T @ z2) / (b - 1)
    off = ~torch.eye(d, dtype=torch.bool, device=z1.device)
    covariance = c1[off].pow(2).sum() / d + c2[off].pow(2).sum() / d
    return sim * inv + var * variance + cov * covariance


def train_step(gen, net, opt, image, mask, channels_last: bool, step: int) -> tuple[float, float]:
    """One SSL step; returns (seconds making the views, seconds for the whole step)."""
    t0 = time.perf_counter()
    views = gen(image, mask)
    t1 = time.perf_counter()
    x1, x2 = views[0]["image"], views[1]["image"]
    if channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)
    loss = vicreg_loss(net(x1), net(x2))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()} at step {step}")
    return t1 - t0, time.perf_counter() - t0


def time_steps(gen, image, mask, b: int, args) -> dict[str, list[tuple[float, float]]]:
    """(views s, step s) per timed step, for contiguous and channels_last, after one warm-up step each."""
    results: dict[str, list[tuple[float, float]]] = {}
    for layout in ("contiguous", "channels_last"):
        torch.manual_seed(args.seed)
        net = SSLNet(image.shape[1]).train()
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        cl = layout == "channels_last"
        train_step(gen, net, opt, image[:b], mask[:b], cl, 0)  # warm-up (oneDNN primitive creation)
        results[layout] = [train_step(gen, net, opt, image[:b], mask[:b], cl, i + 1)
                           for i in range(args.step_repeats)]
    return results


def med_range(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


@dataclass
class Results:
    """Everything :func:`report` prints; times in seconds."""

    image: torch.Tensor
    mask: torch.Tensor
    bands: list[str]
    read_s: float
    batched: list[float]
    loop: list[float]
    per_op: dict[str, float]
    breakdown_s: float
    kernel: tuple[float, float]  # system CPU seconds and minor page faults per batched call
    steps: dict[int, dict[str, list[tuple[float, float]]]]
    load0: float
    total_s: float = 0.0


def run(args) -> None:
    configure_gdal()
    args.allocator = "glibc defaults" if args.default_allocator else (
        "eossl runtime (mallopt thresholds 1 GiB)" if configure_allocator() else "glibc defaults (mallopt unavailable)")
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    n_read = max(args.batch_size, *args.step_batch_sizes)
    image, mask, bands = read_chips(n_read, args.seed)
    read_s = time.perf_counter() - t_start
    gen = make_generator(bands, args.seed)
    x, m = image[:args.batch_size].contiguous(), mask[:args.batch_size].contiguous()

    time_batched(gen, x, m), time_loop(gen, x[:8], m[:8])  # warm-up
    batched, loop = [], []
    for _ in range(args.repeats):
        batched.append(time_batched(gen, x, m))
        loop.append(time_loop(gen, x, m))
    per_op, breakdown_s, kernel = op_breakdown(gen, x, m)
    steps = {b: time_steps(gen, image, mask, b, args) for b in args.step_batch_sizes}
    res = Results(x, m, bands, read_s, batched, loop, per_op, breakdown_s, kernel, steps, load0)
    res.total_s = time.perf_counter() - t_start
    report(args, res)


def report(args, res: Results) -> None:
    malloc = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    allocator = f"env MALLOC_MMAP_THRESHOLD_={malloc}" if malloc else args.allocator
    print(f"# eossl augmentation benchmark: {len(res.bands)}x{SIZE}x{SIZE} Sentinel-2 L1C chips, preset "
          f"{PRESET!r} (strong), 2 views per image")
    print(f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), "
          f"kornia {kornia.__version__}, timm {timm.__version__}, {os.cpu_count()} CPUs, "
          f"allocator: {allocator}, "
          f"1-min load average {res.load0:.2f} before the run, {os.getloadavg()[0]:.2f} after")
    print(f"{res.image.shape[0]} real chips from the built-in scene (read in {res.read_s:.1f} s; "
          f"valid pixels {res.mask.float().mean():.1%}, reflectance median {res.image.median():.3f}), "
          f"seed {args.seed}")
    print(f"median of {args.repeats} interleaved runs after warm-up (min-max in brackets); images/s counts "
          f"input samples, each giving 2 views\n")
    report_throughput(res)
    report_breakdown(res)
    if res.steps:
        report_steps(args, res.steps)
    print(f"\nwhole run {res.total_s:.0f} s")


def report_throughput(res: Results) -> None:
    b = res.image.shape[0]
    print("| pipeline | images/s | s per batch | vs per-sample loop | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| per-sample loop ({b} calls, batch of 1) | {med_range([b / t for t in res.loop], ',.0f')} | "
          f"{statistics.median(res.loop):.2f} | 1.0x |  |")
    ratio = statistics.median(res.loop) / statistics.median(res.batched)
    verdict = "met" if ratio >= RATIO_TARGET else "NOT met"
    print(f"| batched (1 call, batch {b}) | {med_range([b / t for t in res.batched], ',.0f')} | "
          f"{statistics.median(res.batched):.2f} | {ratio:.1f}x | >= {RATIO_TARGET:g}x: {verdict} |")


def report_breakdown(res: Results) -> None:
    total = res.breakdown_s
    print(f"\nwhere a batched call goes (batch {res.image.shape[0]}, both views, median of 3 calls of "
          f"{total:.2f} s; op = parameters + transform on the samples its gate selects; per call "
          f"the process also spent {res.kernel[0]:.2f} s of system CPU on {res.kernel[1]:,.0f} minor page "
          f"faults):\n")
    print("| part | s per call | share |")
    print("|---|---:|---:|")
    for name, t in res.per_op.items():
        print(f"| {name} | {t:.3f} | {t / total:.0%} |")
    rest = total - sum(res.per_op.values())
    print(f"| rest: NaN check, normalisation, masks through the geometric ops, container | {rest:.3f} | "
          f"{rest / total:.0%} |")


def report_steps(args, steps: dict[int, dict[str, list[tuple[float, float]]]]) -> None:
    print(f"\nSSL training step (ResNet-18 + projector + inline VICReg loss, SGD; views + 2 forwards + "
          f"loss + backward + step), median of {args.step_repeats} steps after 1 warm-up step:\n")
    print("| batch | layout | step s | views s | model s | augmentation share | target |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for bs, by_layout in steps.items():
        for layout, rows in by_layout.items():
            share = statistics.median([a / s for a, s in rows])
            views_s = statistics.median([a for a, _ in rows])
            model_s = statistics.median([s - a for a, s in rows])
            verdict = "met" if share < SHARE_TARGET else "NOT met"
            print(f"| {bs} | {layout} | {med_range([s for _, s in rows], '.2f')} | {views_s:.2f} | "
                  f"{model_s:.2f} | {share:.0%} | < {SHARE_TARGET:.0%}: {verdict} |")


if __name__ == "__main__":
    run(parse_args())
