"""Online probe: does the backbone being pretrained beat what needs no training? Scored while it trains.

At step 0 (before training: the random initialisation of this very run), every ``probe.every_n_steps``
optimiser steps and at the end of training, frozen features of labelled chips (default: the built-in EuroSAT-MS
sample) are scored by a few-label linear probe (:func:`eossl.evaluate.fewshot.few_shot_probe`) in every candidate
pool at every k, on splits fixed by ``probe.seed`` (the same in every evaluation and for every baseline). The
baselines (per-band statistics, random convolutional features, the same architecture randomly initialised) are
scored once, on the same splits. Images are standardised with the corpus normalisation (``data.json``), as the
backbone sees them in training; the probe uses the corpus bands, selected from the chips by name.

The backbone (``pl_module.method.backbone``) runs in eval mode under no_grad and is put back in train mode; the
probe draws nothing from torch's global generator, so training is the same with and without it. Scores go to
the Lightning loggers (``probe/k10/stats1``, ``probe/k10/baseline/band_statistics``, ...) and to
``RUN_DIR/probe/history.json`` (:mod:`eossl.train.probe_history`), kept across ``--resume``.

The probe is evaluation during training, so it lives here and pretraining does not import it: the caller
(``eossl pretrain``'s ``run``) builds it with :func:`online_probe` and hands it to
:func:`eossl.train.pretrain.pretrain`, which adds the callback to its trainer.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from pathlib import Path

import lightning as L
import torch

from eossl.config import to_dict
from eossl.data.labelled.folders import LabelledChips
from eossl.data.normalization import Normalization
from eossl.evaluate.baselines import band_statistics, rcf_features
from eossl.evaluate.features import candidate_pools, extract_pools
from eossl.evaluate.fewshot import ProbeResult, few_shot_probe
from eossl.evaluate.probe_chips import load_probe_chips, select_bands
from eossl.models.backbones import create_backbone
from eossl.runs import write_json
from eossl.train.config import PretrainConfig, ProbeConfig
from eossl.train.probe_history import (
    HISTORY_FILE,
    beats_baselines,
    best_pool,
    kkey,
    load_history,
    stop_reason,
)

__all__ = ["ProbeRunner", "OnlineProbe", "make_online_probe", "ProbeSetup", "online_probe"]

log = logging.getLogger(__name__)
BASELINE_NAMES = {"band_statistics": "band statistics", "rcf": "RCF", "random_init": "random init"}


def _score(result: ProbeResult) -> dict:
    return {"mean": round(result.mean, 5), "ci95": None if math.isnan(result.ci95) else round(result.ci95, 5)}


class ProbeRunner:
    """Few-label probe scores of ``chips`` ((N, C, H, W) reflectance in the corpus bands) standardised with
    ``norm`` (the corpus :class:`~eossl.data.normalization.Normalization`): of a backbone in ``pools`` (:meth:`evaluate`) and of the baselines (:meth:`baselines`),
    at every k of ``ks`` over ``draws`` splits fixed by ``seed``."""

    def __init__(self, chips: LabelledChips, norm: Normalization, arch: str, img_size: int,
                 pools: list[str], ks: list[int], draws: int, seed: int = 0, batch_size: int = 64):
        self.chips, self.norm = chips, norm
        self.arch, self.img_size, self.pools = arch, img_size, list(pools)
        self.ks, self.draws, self.seed, self.batch_size = sorted(ks), draws, seed, batch_size

    def _probe(self, features, k: int) -> dict:
        return _score(few_shot_probe(features, self.chips.labels, per_class=k, draws=self.draws, seed=self.seed,
                                     classes=self.chips.classes))

    def evaluate(self, backbone: torch.nn.Module, device: str | torch.device = "cpu") -> dict[str, dict]:
        """``{"k10": {pool: {"mean", "ci95"}}}`` of ``backbone``'s frozen features (one forward pass per batch)."""
        feats = extract_pools(backbone, self.chips.images, self.norm, self.pools, self.batch_size, device)
        return {kkey(k): {p: self._probe(f, k) for p, f in feats.items()} for k in self.ks}

    def baselines(self, which: list[str], device: str | torch.device = "cpu") -> dict[str, dict]:
        """``{"k10": {"band statistics" | "RCF" | "random init (pool)": {"mean", "ci95"}}}`` for ``which`` of
        ``band_statistics``, ``rcf`` (filters drawn from each draw's training chips), ``random_init`` (``arch``
        initialised with seed ``seed``)."""
        c = self.chips
        out: dict[str, dict] = {kkey(k): {} for k in self.ks}
        if "band_statistics" in which:
            stats = band_statistics(c.images, c.mask)
            for k in self.ks:
                out[kkey(k)][BASELINE_NAMES["band_statistics"]] = self._probe(stats, k)
        if "rcf" in which:
            def rcf(train):
                return rcf_features(c.images, c.images[train], self.norm, seed=self.seed)
            for k in self.ks:
                out[kkey(k)][BASELINE_NAMES["rcf"]] = self._probe(rcf, k)
        if "random_init" in which:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = create_backbone(self.arch, len(c.bands), self.img_size)
            feats = extract_pools(model, c.images, self.norm, self.pools, self.batch_size, device)
            for k in self.ks:
                for p, f in feats.items():
                    out[kkey(k)][f"{BASELINE_NAMES['random_init']} ({p})"] = self._probe(f, k)
        return out

    def settings(self) -> dict:
        c = self.chips
        return {"classes": c.classes, "n_chips": len(c), "bands": c.bands, "sensor": c.sensor, "arch": self.arch,
                "img_size": self.img_size, "pools": self.pools, "ks": self.ks, "draws": self.draws,
                "seed": self.seed, "normalization": "corpus (data.json mean/std)"}


def _metric(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


class OnlineProbe(L.Callback):
    """Runs ``runner`` on ``pl_module.method.backbone`` at step 0, every ``every_n_steps`` and at the end; scores
    the ``baselines`` once; keeps ``history_path``; with ``stop_when="beats_baselines"`` stops training by the
    rule of :func:`eossl.train.probe_history.beats_baselines` (``margin`` points, ``patience`` evaluations).
    ``runner`` is None on ranks > 0, which only take part in the stop decision. ``settings``: what else the
    history records (data, interval, stop rule); a history with other settings is not continued."""

    def __init__(self, runner: ProbeRunner | None, history_path: str | Path, every_n_steps: int,
                 baselines: list[str], stop_when: str | None = None, margin: float = 1.0, patience: int = 2,
                 settings: dict | None = None):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.runner, self.path, self.every = runner, Path(history_path), every_n_steps
        self.baseline_kinds, self.stop_when, self.margin, self.patience = list(baselines), stop_when, margin, patience
        self.settings = {**(runner.settings() if runner else {}), **(settings or {}), "every_n_steps": every_n_steps,
                         "baselines": self.baseline_kinds, "stop_when": stop_when, "margin": margin,
                         "patience": patience}
        self.history: dict | None = None
        self._t0, self._train_s0, self._probe_s0, self._probe_s, self._last = 0.0, 0.0, 0.0, 0.0, -1

    # training time without the probe's, carried across resumes in the checkpoint
    def _train_seconds(self, now: float | None = None) -> float:
        return self._train_s0 + ((now or time.perf_counter()) - self._t0) - self._probe_s

    @property
    def attempt_seconds(self) -> float:
        """Seconds this attempt spent probing (evaluations and baselines)."""
        return self._probe_s

    def state_dict(self) -> dict:
        return {"train_seconds": self._train_seconds(), "probe_seconds": self._probe_s0 + self._probe_s}

    def load_state_dict(self, state_dict: dict) -> None:
        self._train_s0 = float(state_dict.get("train_seconds", 0.0))
        self._probe_s0 = float(state_dict.get("probe_seconds", 0.0))

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._probe_s, self._last = time.perf_counter(), 0.0, trainer.global_step
        if trainer.global_rank != 0 or self.runner is None:
            return
        step = trainer.global_step
        self.history = load_history(self.path, self.settings, max_step=step)
        if set(self.history["baselines"]) != {kkey(k) for k in self.runner.ks}:
            t = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                self.history["baselines"] = self.runner.baselines(self.baseline_kinds, pl_module.device)
            self.history["baselines_seconds"] = round(time.perf_counter() - t, 2)
            self._probe_s += time.perf_counter() - t
            self._log(trainer, {f"probe/{k}/baseline/{_metric(name)}": s["mean"]
                                for k, rows in self.history["baselines"].items() for name, s in rows.items()}, step)
            log.info("online probe baselines (%.0f s): %s", self.history["baselines_seconds"],
                     self._describe(self.history["baselines"][kkey(self.runner.ks[-1])]))
        if step % self.every == 0 and not any(e["step"] == step for e in self.history["evaluations"]):
            self._evaluate(trainer, pl_module)          # step 0: the random initialisation of this run
        else:
            self._write()                               # a resumed history without its dropped evaluations

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._last or step % self.every:
            return
        self._last = step
        stop = False
        if self.runner is not None and trainer.global_rank == 0:
            self._evaluate(trainer, pl_module)
            stop = self._should_stop()
        if self.stop_when is not None:
            stop = trainer.strategy.broadcast(stop, src=0)   # every rank evaluates the same steps
            if stop:
                trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.runner is not None and trainer.global_rank == 0 and trainer.global_step != self._last:
            self._last = trainer.global_step
            self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer, pl_module) -> None:
        t = time.perf_counter()
        with torch.random.fork_rng(devices=[]):              # the probe leaves training's random streams alone
            scores = self.runner.evaluate(pl_module.method.backbone, pl_module.device)
        seconds = time.perf_counter() - t
        entry = {"step": trainer.global_step, "minutes": round(self._train_seconds(t) / 60, 3),
                 "seconds": round(seconds, 2), **scores}
        self._probe_s += seconds
        self.history["evaluations"].append(entry)
        self.history["best_pool"] = best_pool(self.history)
        self._write()
        metrics = {f"probe/{k}/{pool}": s["mean"] for k, rows in scores.items() for pool, s in rows.items()}
        self._log(trainer, {**metrics, "probe/seconds": seconds, "probe/train_minutes": entry["minutes"]},
                  trainer.global_step)
        log.info("online probe, step %d (%.1f min of training, probe %.0f s), k=%d: %s", entry["step"],
                 entry["minutes"], seconds, self.runner.ks[-1], self._describe(scores[kkey(self.runner.ks[-1])]))

    def _should_stop(self) -> bool:
        if self.stop_when != "beats_baselines" or self.history["stopped"]:
            return False
        hit = beats_baselines(self.history, self.margin, self.patience)
        if hit is None:
            return False
        reason = stop_reason(self.history, self.margin, self.patience)
        self.history["stopped"] = {"step": hit["step"], "minutes": hit["minutes"], "reason": reason}
        self._write()
        log.info("stopping at step %d (%.1f min): %s", hit["step"], hit["minutes"], reason)
        return True

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.history)

    @staticmethod
    def _log(trainer, metrics: dict, step: int) -> None:
        for logger in trainer.loggers:     # straight to the loggers: these hooks may not call pl_module.log
            logger.log_metrics(metrics, step=step)

    @staticmethod
    def _describe(rows: dict) -> str:
        return ", ".join(f"{name} {100 * s['mean']:.1f}%" for name, s in sorted(rows.items(),
                                                                                 key=lambda r: -r[1]["mean"]))


def make_online_probe(probe: ProbeConfig, stop_when: str | None, arch: str, img_size: int, norm: Normalization,
                      run_dir: str | Path, chips: LabelledChips | None) -> OnlineProbe:
    """The callback of a run: ``chips`` (from :func:`load_probe_chips`; None on ranks > 0) in the corpus bands
    (``norm.bands``) with the corpus statistics ``norm``."""
    runner = None
    if chips is not None:
        runner = ProbeRunner(select_bands(chips, list(norm.bands)), norm, arch, img_size,
                             probe.pools or candidate_pools(arch), probe.ks, probe.draws, probe.seed, probe.batch_size)
    return OnlineProbe(runner, Path(run_dir) / HISTORY_FILE, probe.every_n_steps, probe.baselines, stop_when,
                       probe.margin, probe.patience, settings={"data": _data_setting(probe.data)})


def _data_setting(data) -> str | dict:
    """``probe.data`` as the history's settings record it: as before probe.data was a LabelledDataConfig (the
    string ``builtin`` or the class-folder root, so that a resumed run continues its history), the whole
    config when it says more than that."""
    plain = dataclasses.replace(data, root=None, sensor="sentinel2-l1c", band_order=None)
    return data.describe() if plain == type(data)() else to_dict(data)


class ProbeSetup:
    """The online probe of pretraining ``cfg`` as :func:`eossl.train.pretrain.pretrain` takes it
    (:class:`eossl.train.probe_hook.ProbeHook`): :meth:`prepare` reads and checks the labelled chips (rank 0,
    before the run directory is written), :meth:`callback` builds the :class:`OnlineProbe` once the corpus
    normalisation is known (ranks > 0, without chips, only take part in the stop decision)."""

    def __init__(self, cfg: PretrainConfig):
        self.probe, self.stop_when, self.arch = cfg.probe, cfg.trainer.stop_when, cfg.model.arch
        self.img_size = cfg.views.crop_size or cfg.corpus.sampler.chip_size     # the size the backbone trains at
        self.chips: LabelledChips | None = None

    def prepare(self) -> None:
        self.chips = load_probe_chips(self.probe, self.arch, self.img_size)

    def callback(self, norm: Normalization, run_dir: str | Path) -> OnlineProbe:
        return make_online_probe(self.probe, self.stop_when, self.arch, self.img_size, norm, run_dir, self.chips)


def online_probe(cfg: PretrainConfig) -> ProbeSetup | None:
    """The online probe of pretraining ``cfg`` (None when ``probe.data`` is null), for
    ``pretrain(cfg, run_dir, probe=online_probe(cfg))``."""
    return ProbeSetup(cfg) if cfg.probe.enabled else None
