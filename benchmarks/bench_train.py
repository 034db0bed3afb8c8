"""Training throughput: eossl's Lightning path against a bare PyTorch loop doing the same work.

Both paths train the same method (default VICReg on a ResNet-18) on the same cached chips of the built-in
Sentinel-2 scene, prepared once the way the default ``eossl pretrain`` does (``prepare_corpus``), and print:

* images/s of **Lightning**: ``SSLModule`` fitted by the Trainer ``eossl pretrain`` builds (``_trainer``: CSV
  and TensorBoard loggers, periodic + final ``last.ckpt`` through ``AtomicCheckpointIO``, ``LoaderProgress``;
  progress bar off), against the baseline **bare loop**: the same ``ChipDataModule`` loader, views and method
  built by the same functions from the same seeds, the same optimiser (``build_optimizer``: parameter groups,
  LARS by default), peak LR (``scaled_lr``) and schedule (``cosine_with_warmup``), the same per-step
  reseeding, views made on the device, loss, backward, step, EMA update when the method keeps a target;
  no logging, no monitors, no checkpoints;
* the Lightning overhead ``1 - lightning / bare`` (target: under 15%);
* where a step goes in each path (time between hooks), and the cost of Lightning's extras measured apart:
  the collapse monitors (``embedding_std``, ``effective_rank``; computed on logging steps only) and one
  checkpoint save;
* with ``--no-monitors``, a third path: Lightning with those two monitors replaced by constants (patched in
  ``eossl.train.module`` for that path only), to see how much of the overhead they are;
* with ``--probe``, the cost of the online probe (``probe.*`` of the config, measured apart: the timed paths
  never probe): seconds per evaluation (features of every pool + the few-label fits at every k) on the
  randomly initialised backbone, and of the baselines (scored once per run), against the Lightning path's
  seconds per step: ``evaluation / (probe.every_n_steps x seconds per step)`` is the share of training time
  the probe adds (target: under 10%), and the whole default run's evaluations + baselines against its steps.

    .venv/bin/python benchmarks/bench_train.py [--steps 30] [--warmup 3] [--batch-size 128] [--method vicreg]
        [--arch resnet18] [--repeats 3] [--chips 2048] [--threads 2] [--no-monitors] [--probe] [--set KEY=VALUE ...]
    .venv/bin/python benchmarks/bench_train.py --probe --steps 5 --warmup 1 --repeats 1 --chips 256   # quick

What the figures mean:

* an "image" is one chip of the batch (each gives the method's views); a run trains ``warmup + steps``
  optimiser steps and times the last ``steps``: from the end of the last warm-up step to the end of the last
  step, so data loading, hooks and logging in between count, start-up (model build, ``fit`` set-up, worker
  start) and the final checkpoint do not;
* all paths run in the same process with the same ``torch.set_num_threads``, in ``--repeats`` rounds of one
  run each (Lightning, bare[, no-monitors]; the first path rotates from round to round); the median images/s
  of each is reported (min-max in brackets), and the overhead within each round;
* the paths must compute the same thing: the per-step losses of the first run of each are compared (they
  come out identical on CPU);
* run it on an idle machine: with the cores shared, OpenMP threads spin and wait for each other, and small
  multi-threaded ops (the SVD of ``effective_rank`` above all) slow down by 100x or more, which inflates the
  Lightning figure (the 1-min load average before and after is printed);
* ``--set`` passes ``eossl pretrain`` config overrides to both (e.g. ``corpus.num_workers=0``,
  ``optim.name=sgd``); by default ``corpus.num_workers`` is the config's (auto: 0 when training from the cache).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing eossl

import lightning as L  # noqa: E402
import torch  # noqa: E402

import eossl.train.module  # noqa: E402
from eossl.config import load_config  # noqa: E402
from eossl.data.chips.datamodule import ChipDataModule  # noqa: E402
from eossl.evaluate.features import candidate_pools  # noqa: E402
from eossl.evaluate.online_probe import ProbeRunner  # noqa: E402
from eossl.evaluate.probe_chips import load_probe_chips, select_bands  # noqa: E402
from eossl.models.backbones import create_backbone  # noqa: E402
from eossl.runtime import configure_allocator  # noqa: E402
from eossl.train import optim  # noqa: E402
from eossl.train.config import PretrainConfig, ProbeConfig  # noqa: E402
from eossl.train.module import SSLModule, step_seed  # noqa: E402
from eossl.train.monitors import effective_rank, embedding_std  # noqa: E402
from eossl.train.pretrain import _method, _trainer, build_views, prepare_corpus  # noqa: E402

OVERHEAD_TARGET = 0.15
PROBE_TARGET = 0.10   # the online probe's share of training time at probe.every_n_steps
PHASES = ("data + between steps", "views + forward + loss", "backward", "optimiser step + LR schedule")
LABELS = {"bare": "bare PyTorch loop (baseline)", "lightning": "Lightning (eossl pretrain Trainer)",
          "no-monitors": "Lightning, monitors stubbed"}
PHASE_NOTES = ("fetch, EMA update, hooks, logger writes, periodic checkpoints",
               "and zero_grad; Lightning also hooks, monitors, self.log", "", "")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--method", default="vicreg")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--repeats", type=int, default=3, help="rounds of Lightning, bare (, no-monitors) runs")
    p.add_argument("--chips", type=int, default=2048, help="chips in the cache (windows per epoch)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads, the same in every path")
    p.add_argument("--no-monitors", action="store_true",
                   help="also run Lightning with SSLModule's collapse monitors stubbed (a third path)")
    p.add_argument("--probe", action="store_true",
                   help="also measure the online probe (probe.* of the config) against the seconds per step")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="eossl pretrain config override for every path; repeatable")
    args = p.parse_args(argv)
    if min(args.steps, args.warmup, args.repeats, args.chips, args.threads) < 1 or args.batch_size < 2:
        p.error("steps, warmup, repeats, chips and threads must be >= 1, batch size >= 2")
    return args


def make_config(args) -> PretrainConfig:
    """The default ``eossl pretrain`` config, sized for the benchmark; the bare loop mirrors one device."""
    cfg = load_config(PretrainConfig, None, overrides=[
        f"corpus.sampler.num_samples={args.chips}", f"corpus.batch_size={args.batch_size}",
        f"method.name={args.method}", f"model.arch={args.arch}", "trainer.progress_bar=false",
        f"trainer.max_steps={args.warmup + args.steps}", f"trainer.threads={args.threads}", *args.set,
        "probe.data=null", "trainer.stop_when=null"])   # the timed paths never probe: --probe measures it apart
    t = cfg.trainer
    if t.accumulate_grad_batches != 1 or t.num_nodes != 1 or t.devices not in ("auto", 1) or \
            t.accelerator not in ("auto", "cpu"):
        raise SystemExit("bench_train.py compares one CPU process without gradient accumulation; "
                         "drop those --set")
    return cfg


def probe_config(args) -> tuple[ProbeConfig, int]:
    """The online probe of the config being benchmarked (``--set probe.*``) and the number of optimiser steps of
    that config's full run (its max_steps, or epochs x chips // batch: 192 for the default)."""
    cfg = load_config(PretrainConfig, None, overrides=args.set)
    c = cfg.corpus
    return cfg.probe, cfg.trainer.max_steps or cfg.trainer.epochs * (c.sampler.num_samples // c.batch_size)


def probe_cost(probe: ProbeConfig, arch: str, info, img_size: int, repeats: int = 3) -> dict:
    """Seconds of the online probe as a run spends them: the baselines once, then per evaluation the features
    of every pool (one forward pass per batch) and the few-label fits at every k (median of ``repeats``)."""
    from eossl.evaluate.features import extract_pools

    chips = select_bands(load_probe_chips(probe, arch, img_size), info.bands)
    pools = probe.pools or candidate_pools(arch)
    runner = ProbeRunner(chips, info.normalization, arch, img_size, pools, probe.ks, probe.draws, probe.seed,
                         probe.batch_size)
    torch.manual_seed(0)
    backbone = create_backbone(arch, len(info.bands), img_size)
    t0 = time.perf_counter()
    runner.baselines(probe.baselines)
    out = {"baselines_s": time.perf_counter() - t0, "n_chips": len(chips), "pools": pools}
    evals, feats = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        extract_pools(backbone, chips.images, runner.norm, pools, probe.batch_size)
        feats.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        runner.evaluate(backbone)
        evals.append(time.perf_counter() - t0)
    return {**out, "evaluation_s": statistics.median(evals), "features_s": statistics.median(feats)}


@dataclass
class StepClock:
    """Time spent in each of ``PHASES`` over the steps after ``warmup``, and every step's loss."""

    warmup: int
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    losses: list[float] = field(default_factory=list)
    images: int = 0
    steps: int = 0
    _t: float | None = None
    _n: int = 0

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self._t is not None and len(self.losses) >= self.warmup:
            self.phases[phase] += now - self._t
        self._t = now

    def begin(self, n_images: int) -> None:
        """A batch was fetched (and transferred) and is about to be trained."""
        self.lap(PHASES[0])
        self._n = n_images

    def end(self, loss: torch.Tensor) -> None:
        """The optimiser (and LR scheduler) stepped; what follows belongs to the next step's first phase."""
        self.lap(PHASES[3])
        if len(self.losses) >= self.warmup:
            self.images += self._n
            self.steps += 1
        self.losses.append(float(loss))

    @property
    def seconds(self) -> float:
        return sum(self.phases.values())


class ClockCallback(L.Callback):
    """Feeds a :class:`StepClock` from Lightning's hooks (it runs before ModelCheckpoint and the module's own
    ``on_train_batch_end``, the EMA update: both fall into the next step's first phase, as in the bare
    loop)."""

    def __init__(self, clock: StepClock):
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.begin(batch["image"].shape[0])

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.clock.lap(PHASES[1])

    def on_after_backward(self, trainer, pl_module) -> None:
        self.clock.lap(PHASES[2])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.end(outputs["loss"].detach())


def build(cfg: PretrainConfig, info):
    """Views and method exactly as ``pretrain`` builds them (same global seed before, same order)."""
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    views = build_views(cfg.views, cfg.method.name, info, cfg.trainer.seed)
    return views, _method(cfg, info)


def lightning_run(cfg: PretrainConfig, data_cfg, info, run_dir: Path, warmup: int) -> tuple[StepClock, dict]:
    views, method = build(cfg, info)
    module = SSLModule(method, views, cfg.optim, batch_size=cfg.corpus.batch_size, total_steps=None,
                       seed=cfg.trainer.seed)
    clock = StepClock(warmup)
    trainer = _trainer(cfg, run_dir, [ClockCallback(clock)])
    trainer.fit(module, datamodule=ChipDataModule(data_cfg))
    t0 = time.perf_counter()
    trainer.save_checkpoint(run_dir / "bench.ckpt")  # one more save, through the same AtomicCheckpointIO
    extra = {"checkpoint_s": time.perf_counter() - t0, "peak_lr": module.lr,
             "total_steps": module.total_steps,
             "monitor_s": monitor_cost(method, views, data_cfg.batch_size, info.chip_size)}
    return clock, extra


def bare_optimiser(method, cfg: PretrainConfig, total: int):
    """What ``SSLModule.configure_optimizers`` builds, for one device without accumulation."""
    o = cfg.optim
    lr = optim.scaled_lr(o.base_lr, cfg.corpus.batch_size, rule=o.lr_scaling)
    opt = optim.build_optimizer(method, o.name, lr, o.weight_decay, o.momentum, trust_coefficient=o.trust_coefficient)
    warm = min(o.warmup_steps, total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: optim.cosine_with_warmup(step, total, warm))
    return opt, sched, lr


def bare_step(method, views, opt, batch: dict, seed: int, clock: StepClock) -> torch.Tensor:
    views.reseed(seed)
    torch.manual_seed(seed)
    v = views(batch["image"], batch["mask"], batch.get("image2"), batch.get("mask2"))
    loss = method.loss(v)["loss"]
    opt.zero_grad(set_to_none=True)
    clock.lap(PHASES[1])
    loss.backward()
    clock.lap(PHASES[2])
    opt.step()
    return loss.detach()


def bare_run(cfg: PretrainConfig, data_cfg, info, total: int, warmup: int) -> tuple[StepClock, dict]:
    views, method = build(cfg, info)
    views.train()
    method.train()
    opt, sched, lr = bare_optimiser(method, cfg, total)
    loader = ChipDataModule(data_cfg).train_dataloader()
    clock, step, epoch, seed = StepClock(warmup), 0, 0, cfg.trainer.seed
    while step < total:
        loader.sampler.set_epoch(epoch)
        for batch_idx, batch in enumerate(loader):
            clock.begin(batch["image"].shape[0])
            loss = bare_step(method, views, opt, batch, step_seed(seed, epoch, batch_idx, 0), clock)
            sched.step()
            clock.end(loss)
            step += 1
            if method.uses_ema:
                m = optim.ema_momentum(step, total, cfg.optim.ema_base)  # SSLModule: global_step after it
                for online, target in method.ema_pairs():
                    optim.ema_update(target, online, m)
            if step == total:
                break
        epoch += 1
    del loader  # stops the persistent workers
    return clock, {"peak_lr": lr, "total_steps": total}


def monitor_cost(method, views, batch_size: int, chip_size: int, runs: int = 5) -> float:
    """Median seconds of SSLModule's two collapse monitors on a (B, feat_dim) embedding of a real forward."""
    with torch.no_grad():
        x = torch.randn(batch_size, len(views.bands), chip_size, chip_size)
        z = method.backbone(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        embedding_std(z), effective_rank(z)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def monitors_stubbed():
    """SSLModule's collapse monitors replaced by constants (still logged): what computing them costs."""
    def zero(z: torch.Tensor) -> torch.Tensor:
        return z.new_zeros(())

    with mock.patch.object(eossl.train.module, "effective_rank", zero), \
            mock.patch.object(eossl.train.module, "embedding_std", zero):
        yield


def run_path(name: str, cfg: PretrainConfig, data_cfg, info, run_dir: Path, args) -> tuple[StepClock, dict]:
    if name == "bare":
        return bare_run(cfg, data_cfg, info, args.warmup + args.steps, args.warmup)
    with monitors_stubbed() if name == "no-monitors" else contextlib.nullcontext():
        return lightning_run(cfg, data_cfg, info, run_dir, args.warmup)


@dataclass
class Results:
    clocks: dict[str, list[StepClock]] = field(default_factory=dict)
    extra: dict[str, dict] = field(default_factory=dict)  # of each path's last run
    prepare_s: float = 0.0
    load0: float = 0.0
    probe: dict | None = None


def run(args) -> None:
    configure_allocator()  # as the eossl command does at start-up
    torch.set_num_threads(args.threads)
    quiet()
    cfg = make_config(args)
    res = Results(load0=os.getloadavg()[0])
    paths = ["lightning", "bare"] + (["no-monitors"] if args.no_monitors else [])
    with tempfile.TemporaryDirectory(prefix="eossl-bench-train-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        t0 = time.perf_counter()
        data_cfg, info = prepare_corpus(cfg, corpus)
        res.prepare_s = time.perf_counter() - t0
        for i in range(args.repeats):
            first = i % len(paths)  # rotate who goes first: a drift in machine speed hits every path alike
            for name in paths[first:] + paths[:first]:
                clock, res.extra[name] = run_path(name, cfg, data_cfg, info, Path(tmp) / f"{name}-{i}", args)
                res.clocks.setdefault(name, []).append(clock)
    if args.probe:
        probe, _ = probe_config(args)
        if probe.enabled:
            res.probe = probe_cost(probe, cfg.model.arch, info, cfg.views.crop_size or info.chip_size)
    report(args, cfg, info, res)


def quiet() -> None:
    """Lightning's start-up chatter (devices, loggers, worker counts) says nothing about speed."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")


def med_range(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def report(args, cfg: PretrainConfig, info, res: Results) -> None:
    from importlib.metadata import version

    lt, bt = res.extra["lightning"], res.extra["bare"]
    print(f"# eossl training-loop benchmark: Lightning (the eossl pretrain Trainer) vs a bare PyTorch loop, "
          f"{cfg.method.name} on {cfg.model.arch}")
    print(f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads in every path), lightning {version('lightning')}, "
          f"{os.cpu_count()} CPUs, 1-min load average "
          f"{res.load0:.2f} before the run, {os.getloadavg()[0]:.2f} after")
    print(f"{info.description}; {len(info.bands)} bands; cache prepared in {res.prepare_s:.1f} s; batch "
          f"{cfg.corpus.batch_size}, {cfg.corpus.workers()} loader workers, {cfg.optim.name} "
          f"(peak LR {lt['peak_lr']:g} / bare {bt['peak_lr']:g}, schedule over {lt['total_steps']} / "
          f"{bt['total_steps']} steps)")
    print(f"{args.steps} timed steps per run after {args.warmup} warm-up steps; {args.repeats} rounds of "
          f"{' / '.join(res.clocks)} (first path rotated each round); median images/s (min-max in brackets)")
    for name in res.clocks:
        if name != "bare":
            print(same_work(name, res.clocks[name][0].losses, res.clocks["bare"][0].losses))
    print()
    report_throughput(res)
    report_phases(res)
    report_extras(cfg, res)
    if args.probe:
        report_probe(args, res)


def same_work(name: str, a: list[float], b: list[float]) -> str:
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    scale = max(abs(x) for x in b)
    same = diff <= 1e-3 * scale
    verdict = "same computation" if same else "WARNING: the two paths do not compute the same thing"
    return (f"per-step losses of the first runs ({len(a)} steps, {b[0]:.4f} -> {b[-1]:.4f}): "
            f"max |{LABELS[name]} - bare| = {diff:.2g} ({verdict})")


def rates(clocks: list[StepClock]) -> list[float]:
    return [c.images / c.seconds for c in clocks]


def report_throughput(res: Results) -> None:
    base = statistics.median(rates(res.clocks["bare"]))
    print("| path | images/s | s per step | vs bare loop | Lightning overhead | target |")
    print("|---|---:|---:|---:|---:|---|")
    for name in ["bare"] + [n for n in res.clocks if n != "bare"]:
        clocks = res.clocks[name]
        ratio = statistics.median(rates(clocks)) / base
        overhead = "" if name == "bare" else f"{1 - ratio:.1%}"
        met = "met" if 1 - ratio < OVERHEAD_TARGET else "NOT met"
        target = f"< {OVERHEAD_TARGET:.0%}: {met}" if name == "lightning" else ""
        print(f"| {LABELS[name]} | {med_range(rates(clocks), ',.1f')} | "
              f"{statistics.median([c.seconds / c.steps for c in clocks]):.3f} | {ratio:.2f}x | {overhead} | "
              f"{target} |")
    for name in (n for n in res.clocks if n != "bare"):
        pairs = [1 - a / b for a, b in zip(rates(res.clocks[name]), rates(res.clocks["bare"]))]
        print(f"\n{LABELS[name]}: overhead against the bare run of each round: "
              + ", ".join(f"{p:.1%}" for p in pairs), end="")
    print()


def report_phases(res: Results) -> None:
    def per_step(clocks: list[StepClock], phase: str) -> float:
        return sum(c.phases[phase] for c in clocks) / sum(c.steps for c in clocks)

    names = ["bare"] + [n for n in res.clocks if n != "bare"]
    print("\nwhere a step goes (seconds per timed step, all runs pooled):\n")
    print("| phase | " + " | ".join(LABELS[n] for n in names) + " | Lightning - bare | includes |")
    print("|---|" + "---:|" * (len(names) + 1) + "---|")
    for phase, note in [*zip(PHASES, PHASE_NOTES), ("whole step", "")]:
        phases = PHASES if phase == "whole step" else (phase,)
        t = {n: sum(per_step(res.clocks[n], p) for p in phases) for n in names}
        print(f"| {phase} | " + " | ".join(f"{t[n]:.4f}" for n in names)
              + f" | {t['lightning'] - t['bare']:+.4f} | {note} |")


def report_extras(cfg: PretrainConfig, res: Results) -> None:
    lt = res.extra["lightning"]
    every = cfg.trainer.checkpoint_every_n_steps
    print(f"\nLightning's extras measured apart (last run): collapse monitors (embedding_std + "
          f"effective_rank on the (B, feat) embedding) {lt['monitor_s'] * 1e3:.1f} ms per step; "
          f"one checkpoint save (AtomicCheckpointIO, fsync) {lt['checkpoint_s']:.2f} s, every {every} "
          f"steps = {lt['checkpoint_s'] / every * 1e3:.1f} ms per step amortised (not in the timed window "
          f"unless a periodic save falls in it; the final save never is)")


def report_probe(args, res: Results) -> None:
    probe, total = probe_config(args)
    if res.probe is None:
        print("\nonline probe: off in this config (probe.data is null)")
        return
    r = res.probe
    step_s = statistics.median([c.seconds / c.steps for c in res.clocks["lightning"]])
    n = probe.every_n_steps
    share = r["evaluation_s"] / (n * step_s)
    evaluations = len(range(0, total, n)) + 1          # step 0, every n steps, and the end
    whole = evaluations * r["evaluation_s"] + r["baselines_s"]
    print(f"\nonline probe ({probe.data.describe()}: {r['n_chips']} chips, pools {', '.join(r['pools'])}, k = "
          f"{', '.join(map(str, probe.ks))}, {probe.draws} draws, baselines {', '.join(probe.baselines)}):")
    print("| probe cost | seconds |\n|---|---:|")
    print(f"| one evaluation (median of 3) | {r['evaluation_s']:.1f} |")
    print(f"| of which features of every pool (one forward pass per batch) | {r['features_s']:.1f} |")
    print(f"| baselines, once per run | {r['baselines_s']:.1f} |")
    met = "met" if share < PROBE_TARGET else "NOT met"
    print(f"\nat probe.every_n_steps = {n} and {step_s:.2f} s per step (Lightning, median): "
          f"{r['evaluation_s']:.1f} / ({n} x {step_s:.2f}) = {share:.1%} of training time "
          f"(target < {PROBE_TARGET:.0%}: {met}); the smallest interval under the target: "
          f"{math.ceil(r['evaluation_s'] / (PROBE_TARGET * step_s))} steps")
    print(f"whole run of {total} steps ({evaluations} evaluations + the baselines): {whole:.0f} s of probe against "
          f"{total * step_s:.0f} s of training = {whole / (total * step_s):.1%}")


if __name__ == "__main__":
    run(parse_args())
