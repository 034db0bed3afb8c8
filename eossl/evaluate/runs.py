"""What ``eossl evaluate`` and ``eossl finetune`` do in a run directory (the commands only parse and call these).

evaluate: ``config.yaml``, ``metrics.json`` (every row x k, per seed and mean / 95% CI; with weights also the
paired differences pretrained minus each baseline), ``few_label_curve.png``, ``confusion_matrix.png`` (the
headline row at the largest k), ``table.txt`` (both tables).
finetune: ``config.yaml``, ``model/`` (classifier.safetensors + classifier.json, for ``eossl predict``),
``metrics.json`` (hold-out metrics), ``confusion_matrix.png``, ``logs/metrics.csv`` (loss and LR per step).

Both commands put ``warnings`` into ``metrics.json`` (also logged): splits or results that make the numbers
degenerate (:mod:`eossl.evaluate.sanity`); a split that leaves a class out of training raises instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from eossl.catalog.sensors import load_sensor
from eossl.config import to_dict
from eossl.evaluate.config import EvaluateConfig, FinetuneConfig, resolve_device, with_resolved_weights
from eossl.evaluate.context import TaskContext, TaskNotes
from eossl.evaluate.fewshot import few_label_splits, k_label
from eossl.evaluate.finetuning import predict_chips
from eossl.evaluate.metrics import classification_metrics, summarise
from eossl.evaluate.sanity import (
    MIN_SEEDS_FOR_CI,
    accuracy_warnings,
    check_splits,
    class_presence,
    emit,
    require_training_classes,
    result_warnings,
)
from eossl.models.classifier import ClassifierInfo, save_classifier
from eossl.models.weights import backbone_for, read_weights_info
from eossl.report.figures import save_confusion_matrix, save_few_label_curve
from eossl.report.rows import Headline, PairedDifference, ResultRow, SeedScores
from eossl.runs import environment, write_json, write_text
from eossl.train.supervised import finetune_classifier

log = logging.getLogger(__name__)

__all__ = ["Evaluation", "paired_differences", "paired_table", "results_table", "run_evaluate", "run_finetune"]

FROZEN_PROTOCOLS = ("linear", "mean + linear", "frozen + decoder")   # each task's frozen-feature protocol


@dataclass(frozen=True)
class Evaluation:
    """What :func:`run_evaluate` wrote: the task's rows and notes, and ``metrics`` (``metrics.json``)."""

    rows: list[ResultRow]
    notes: TaskNotes
    metrics: dict

    @property
    def seconds(self) -> float:
        return self.metrics["seconds"]


def run_evaluate(cfg: EvaluateConfig, run_dir: str | Path, cache_dir: str | Path | None = None,
                 progress: bool = True) -> Evaluation:
    from eossl.evaluate.tasks import TASKS

    cfg = with_resolved_weights(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    start = time.time()
    ctx = TaskContext(device=device, progress=progress, cache_dir=None if cache_dir is None else Path(cache_dir))
    rows = TASKS.get(cfg.task)(cfg, ctx)
    notes = ctx.notes
    out = notes.to_dict(rows)
    out.update(task=cfg.task, environment=environment(device, cfg.seed), seconds=round(time.time() - start, 1))
    top = [r for r in rows if r.metrics_all_seeds is not None]
    classes = top[0].classes
    head = next((r for r in top if notes.headline.matches(r)), None) if notes.headline else None
    head = head or next((r for r in top if r.model.startswith("pretrained")), top[0])
    out["headline"] = Headline(head.model, head.protocol, head.k).to_dict()
    save_confusion_matrix(run_dir / "confusion_matrix.png", head.metrics_all_seeds["confusion_matrix"],
                          classes, title=f"{head.model} / {head.protocol}, k={head.k}, {cfg.seeds} seeds pooled")
    head_score = notes.headline_score
    save_few_label_curve(run_dir / "few_label_curve.png", rows, score=head_score,
                         title=f"{cfg.task}: {notes.what}, {len(classes)} classes; mean and 95% CI over {cfg.seeds} "
                               f"seeds" + (" (too few for a CI)" if cfg.seeds < MIN_SEEDS_FOR_CI else ""))
    pairs = notes.paired if notes.paired is not None else paired_differences(rows)
    out["paired_differences"] = [p.to_dict() for p in pairs]
    out["warnings"] = out["warnings"] + emit(result_warnings([r.to_dict() for r in rows],
                                                             seeds_hint="set seeds to 5 (--set seeds=5)"))
    write_json(run_dir / "metrics.json", out)
    paired = paired_table(pairs, head_score)
    tables = results_table(rows, head_score) + ("\n\n" + results_table(rows) if head_score != "overall_accuracy"
                                                else "")
    write_text(run_dir / "table.txt", tables + "\n" + (f"\n{paired}\n" if paired else ""))
    return Evaluation(rows=rows, notes=notes, metrics=out)


def results_table(rows: list[ResultRow], score: str = "overall_accuracy") -> str:
    """A plain-text table: one line per (model, protocol), one column per k (``score`` mean ± CI, in %)."""
    ks = list(dict.fromkeys(r.k for r in rows))
    keys = list(dict.fromkeys((r.model, r.protocol) for r in rows))
    width = max(len(f"{m} / {p}") for m, p in keys)
    title = f"{score.replace('_', ' ')} (95% CI)"
    by_key = {r.key: r for r in reversed(rows)}                       # the first row of a key, as before
    lines = [f"{title:<{width}}  " + "  ".join(f"{'k=' + k:>13}" for k in ks)]
    for m, p in keys:
        cells = []
        for k in ks:
            r = by_key.get((m, p, k))
            oa = r.score(score) if r else None
            cells.append(f"{'-':>13}" if oa is None else f"{100 * oa.mean:>6.1f} ± {100 * (oa.ci95 or 0):>4.1f}")
        lines.append(f"{m + ' / ' + p:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def paired_differences(rows: list[ResultRow]) -> list[PairedDifference]:
    """Pretrained minus each baseline row, seed by seed (identical splits): per k and score the per-seed
    differences, their mean and 95% CI (t-interval). A baseline is compared with the pretrained row of its
    protocol; a fusion row ``X + random-init ...`` with ``X + pretrained ...``; a baseline whose protocol the
    pretrained model was not scored with (band statistics, RCF of the crop and segment tasks) with the pretrained
    row of the task's frozen-feature protocol (:data:`FROZEN_PROTOCOLS`); with both, the pretrained fine-tuning row
    minus its frozen linear probe too. Empty without a pretrained row."""
    pretrained = next((r.model for r in rows if r.model.startswith("pretrained ")), None)
    if pretrained is None:
        return []
    by_key = {r.key: r for r in rows}
    protocols = [p for m, p, _ in by_key if m == pretrained]
    out = []
    for b in rows:
        if "pretrained " in b.model:
            continue
        if " + random-init " in b.model:
            ref = (b.model.split(" + random-init ")[0] + " + " + pretrained, b.protocol)
        elif b.protocol in protocols:
            ref = (pretrained, b.protocol)
        else:
            ref = (pretrained, next((p for p in FROZEN_PROTOCOLS if p in protocols), None))
        a = by_key.get((*ref, b.k))
        if a is not None:
            out.append(_paired(a, b))
    if "finetune" in protocols and "linear" in protocols:     # does fine-tuning beat the frozen probe?
        for k in dict.fromkeys(r.k for r in rows):
            a, b = by_key.get((pretrained, "finetune", k)), by_key.get((pretrained, "linear", k))
            if a is not None and b is not None:
                out.append(_paired(a, b))
    return out


def _paired(a: ResultRow, b: ResultRow) -> PairedDifference:
    """``a`` minus ``b`` seed by seed (the seeds both have)."""
    theirs = {r.seed: r.scores for r in b.per_seed}
    scores = list(a.per_seed[0].scores)
    per_seed = [SeedScores(seed=r.seed, scores={sc: r.scores[sc] - theirs[r.seed][sc] for sc in scores})
                for r in a.per_seed if r.seed in theirs]
    return PairedDifference((a.model, a.protocol), (b.model, b.protocol), b.k, per_seed, summarise(per_seed, scores))


def paired_table(pairs: list[PairedDifference], score: str = "overall_accuracy") -> str:
    """Text table of :func:`paired_differences`: ``score`` (the task's headline), pretrained minus baseline in
    points, per k."""
    if not pairs:
        return ""
    ks = list(dict.fromkeys(p.k for p in pairs))
    label = {}
    for p in pairs:
        label.setdefault(p.label, {})[p.k] = p
    width = max(len(n) for n in label)
    title = f"pretrained - baseline, {'OA' if score == 'overall_accuracy' else score.replace('_', '-')} points " \
            f"(paired, 95% CI)"
    lines = [f"{title:<{width}}  " +
             "  ".join(f"{'k=' + k:>13}" for k in ks)]
    for name, by_k in label.items():
        cells = [f"{'-':>13}" if k not in by_k else
                 f"{round(100 * by_k[k].score(score).mean, 1) + 0.0:>+6.1f} ± "   # + 0.0: no "-0.0"
                 f"{100 * (by_k[k].score(score).ci95 or 0):>4.1f}" for k in ks]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def run_finetune(cfg: FinetuneConfig, run_dir: str | Path, progress: bool = True) -> dict:
    """Fine-tune on ``k`` labels per class of the training pool, score the hold-out, save the classifier."""
    cfg = with_resolved_weights(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if cfg.task == "segment":
        return _finetune_segment(cfg, run_dir, device, progress)
    chips = cfg.data.load()
    if not chips.sensor:
        raise ValueError("the chips name no sensor; set data.sensor")
    sensor = load_sensor(chips.sensor)
    wavelengths = sensor.wavelengths(chips.bands)
    img = int(chips.images.shape[-1])
    if cfg.weights is not None:
        info = read_weights_info(cfg.weights)
        arch, source, gsd = info.arch, str(cfg.weights), info.gsd_m
    else:
        arch, source, gsd = cfg.arch, "", float(min(sensor.band(b).gsd_m for b in chips.bands))
    backbone, norm = backbone_for(chips.bands, chips.sensor, img, weights=cfg.weights, arch=cfg.arch, seed=cfg.seed,
                                  images=chips.images, valid=chips.mask)
    split = few_label_splits(chips.labels, [cfg.k], 1, cfg.test_fraction, cfg.seed, chips.classes)[0]
    train = split.train[k_label(cfg.k)]
    warnings = emit(check_splits(class_presence(chips.labels, len(chips.classes)), [(cfg.seed, train, split.test)],
                                 chips.classes, unit="chips",
                                 hint="add chips of the classes named or change test_fraction"))
    start = time.time()
    model = finetune_classifier(backbone, chips.images, chips.labels, train, len(chips.classes), norm,
                                cfg.finetune, seed=cfg.seed, device=device, progress=progress)
    seconds = round(time.time() - start, 1)
    pred = predict_chips(model, chips.images[split.test], norm, device=device).argmax(1)
    metrics = classification_metrics(chips.labels[split.test], pred, chips.classes)
    warnings += emit(_holdout_warnings(metrics))
    info = ClassifierInfo(arch=arch, task="patch", bands=list(chips.bands), wavelengths_nm=list(wavelengths),
                          gsd_m=gsd, normalization=norm.to_dict(),
                          classes=list(chips.classes), img_size=img, sensor=chips.sensor, source_weights=source,
                          protocol="finetune" + (" (frozen backbone)" if cfg.finetune.freeze_backbone else ""))
    save_classifier(model.cpu(), info, run_dir / "model")
    (run_dir / "logs").mkdir(exist_ok=True)
    write_text(run_dir / "logs" / "metrics.csv", "step,loss,lr\n" + "".join(f"{s},{loss:.6g},{lr:.6g}\n"
                                                                       for s, loss, lr in model.history))
    save_confusion_matrix(run_dir / "confusion_matrix.png", metrics["confusion_matrix"], chips.classes,
                          title=f"hold-out, {len(split.test)} chips")
    out = {"metrics": metrics, "n_train": int(train.size), "n_test": int(split.test.size),
           "train_indices": train.tolist(), "test_indices": split.test.tolist(), "seconds": seconds,
           "model": str(run_dir / "model"), "environment": environment(device, cfg.seed), "warnings": warnings}
    write_json(run_dir / "metrics.json", out)
    return out


def _holdout_warnings(metrics: dict) -> list[dict]:
    """Accuracy at 0 or at chance on the one hold-out of ``eossl finetune`` (it has no seeds, so no CI)."""
    n_classes = sum(1 for c in metrics["per_class"].values() if c["support"] > 0)
    return accuracy_warnings([("the hold-out", metrics["overall_accuracy"])], n_classes)


def _finetune_segment(cfg: FinetuneConfig, run_dir: Path, device: str, progress: bool) -> dict:
    """Train backbone + decoder on the training blocks, score the test blocks per pixel, save the classifier."""
    from eossl.evaluate.segmentation import (
        SEGMENT_SPLIT_HINT,
        evaluate_segmentation,
        k_subset,
        load_segment_chips,
        segment_backbone,
    )
    from eossl.evaluate.splits import window_block_split
    from eossl.train.segmentation import train_segmentation

    s = cfg.segmentation
    chips = load_segment_chips(s)
    backbone, norm = segment_backbone(chips, cfg.weights, cfg.arch, cfg.seed)
    train, test = window_block_split(chips.bounds, s.block_size_m, cfg.test_fraction, cfg.seed, crs=chips.crs)
    presence = class_presence(chips.labels, len(chips.classes))
    warnings = emit(check_splits(presence, [(cfg.seed, train, test)], chips.classes, unit="windows",
                                 hint=SEGMENT_SPLIT_HINT))
    train = k_subset(train, cfg.k, cfg.seed)
    require_training_classes(presence, train, test, chips.classes, unit="windows",
                             where=f"k = {cfg.k} training windows (seed {cfg.seed})",
                             hint="raise k (--set k=all trains on every training window) or set another seed")
    start = time.time()
    model = train_segmentation(backbone, chips, train, norm=norm, epochs=s.epochs, lr=s.lr,
                               batch_size=s.batch_size, freeze_backbone=cfg.finetune.freeze_backbone, seed=cfg.seed,
                               device=device, progress=progress)
    seconds = round(time.time() - start, 1)
    metrics = evaluate_segmentation(model, chips, test, norm)
    warnings += emit(_holdout_warnings(metrics))
    arch = read_weights_info(cfg.weights).arch if cfg.weights is not None else cfg.arch
    classifier_info = ClassifierInfo(
        arch=arch, task="segment", bands=list(chips.bands), wavelengths_nm=load_sensor(chips.sensor).wavelengths(
            chips.bands), gsd_m=float(chips.gsd), normalization=norm.to_dict(),
        classes=list(chips.classes), img_size=int(chips.images.shape[-1]), sensor=chips.sensor,
        source_weights=str(cfg.weights or ""), protocol="segmentation decoder" + (
            " (frozen backbone)" if cfg.finetune.freeze_backbone else ""),
        extra={"label_values": {str(k): v for k, v in chips.label_values.items()}})
    save_classifier(model.cpu(), classifier_info, run_dir / "model")
    (run_dir / "logs").mkdir(exist_ok=True)
    write_text(run_dir / "logs" / "metrics.csv", "epoch,loss\n" + "".join(
        f"{e},{loss:.6g}\n" for e, loss in enumerate(model.history["loss"])))
    save_confusion_matrix(run_dir / "confusion_matrix.png", metrics["confusion_matrix"], chips.classes,
                          title=f"test blocks, {len(test)} chips, per pixel")
    out = {"metrics": metrics, "n_train": int(len(train)), "n_test": int(len(test)), "seconds": seconds,
           "model": str(run_dir / "model"), "environment": environment(device, cfg.seed), "warnings": warnings}
    write_json(run_dir / "metrics.json", out)
    return out
