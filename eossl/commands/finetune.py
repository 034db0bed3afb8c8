"""``eossl finetune``: fine-tune exported weights, or train from scratch, on labelled chips and save the classifier;
with a ``task: stack`` config (the stack evaluation's), fit the crop-type map's model on a stack's labelled parcels
instead (:mod:`eossl.predict.stack_fit`). A pipeline's finetune stage runs the same :func:`run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eossl.commands import print_config
from eossl.commands.evaluate import config_and_run_dir, labelled_flags, labelled_stage_config

NAME = "finetune"
HELP = "fine-tune weights on labelled chips and save a classifier for `eossl predict`"
DESCRIPTION = ("Fine-tune a backbone + linear head on k labelled chips per class (default: all of the training "
               "pool) with AdamW, cosine schedule and layer-wise LR decay, score a stratified hold-out, and save "
               "the classifier (model/) for `eossl predict`. Without --config: the built-in EuroSAT-MS sample. "
               "With a `task: stack` config (the stack evaluation's): fit its headline row on every labelled "
               "parcel pixel of the stack (--set fit_on=split --set split_seed=S --set k=K: on one evaluation "
               "split's training pixels) and save it (model/) for `eossl predict --stack`.")
PRODUCES = frozenset({"model", "run"})
ACCEPTS = frozenset({"weights"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    labelled_flags(p, NAME, "fine-tuning", "--set k=10 --set finetune.epochs=50", "; none: from scratch")


def cli(args: argparse.Namespace) -> int:
    from eossl.pipeline.stages import RunContext
    from eossl.runs import marks_failure

    cfg, run_dir = config_and_run_dir(args, _config_class(args.config, args.set))
    if run_dir is None:
        return print_config(cfg)
    with marks_failure(run_dir):
        run(cfg, run_dir, RunContext(progress=not args.no_progress))
    return 0


def _config_class(path, sets: list[str]):
    """StackFitConfig for a ``task: stack`` config (the crop-type map's model), else FinetuneConfig (chips)."""
    from eossl.config import config_data

    if config_data(path, None, sets).get("task") == "stack":
        from eossl.predict.config import StackFitConfig

        return StackFitConfig
    from eossl.evaluate.config import FinetuneConfig

    return FinetuneConfig


def stage_config(stage, path, sets: list[str], ref: dict, artifacts: dict):
    return labelled_stage_config(_config_class(path, sets), path, sets, ref)


def run(cfg, run_dir: Path, ctx) -> dict[str, str]:
    """Fine-tune ``cfg`` into ``run_dir``: the classifier in RUN_DIR/model, the hold-out scores in metrics.json;
    a StackFitConfig: the map model in RUN_DIR/model (with fit.json)."""
    from eossl.predict.config import StackFitConfig

    if isinstance(cfg, StackFitConfig):
        return _fit_stack(cfg, run_dir, ctx)
    from eossl.evaluate.runs import run_finetune

    out = run_finetune(cfg, run_dir, progress=ctx.progress)
    m = out["metrics"]
    ctx.echo(f"done in {out['seconds']} s: hold-out ({out['n_test']} chips) overall accuracy "
             f"{100 * m['overall_accuracy']:.1f}%, macro-F1 {100 * m['macro_f1']:.1f}%, kappa {m['kappa']:.3f}; "
             f"classifier in {out['model']} (for eossl predict), metrics in {Path(run_dir) / 'metrics.json'}")
    return {"run": str(run_dir), "model": str(Path(run_dir) / "model")}


def _fit_stack(cfg, run_dir: Path, ctx) -> dict[str, str]:
    from eossl.evaluate.config import resolve_device
    from eossl.predict.stack_fit import fit_map_model

    rec = fit_map_model(cfg, run_dir, resolve_device(cfg.device))
    split = rec.get("split")
    where = (f"the training pixels of seed {split['seed']}, k={split['k']} (its test parcels: macro-F1 "
             f"{100 * split['scores']['macro_f1']:.1f}%)" if split else "every labelled parcel pixel")
    ctx.echo(f"done in {rec['seconds']} s: {rec['model']} / {rec['protocol']} fitted on {rec['n_train']} px of "
             f"{rec['stack']['name']} ({where}); map model in {rec['model_dir']} (for eossl predict --stack)")
    return {"run": str(run_dir), "model": rec["model_dir"]}
