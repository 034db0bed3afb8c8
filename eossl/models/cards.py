"""A model card (``README.md``) for exported weights: what the backbone expects, how it was trained, how its
feature pool was chosen, and how to load it with eossl or plain timm. Written by every export beside
``weights.json``; everything in it comes from that file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CARD_FILE", "model_card", "write_model_card"]

CARD_FILE = "README.md"


def _pct(score: dict | None) -> str:
    if not score:
        return "-"
    ci = score.get("ci95")
    return f"{100 * score['mean']:.1f}" + (f" ± {100 * ci:.1f}" if ci else "")


def _probe_section(info) -> list[str]:
    source = info.feature_pool_source or {}
    if source.get("chosen_by") != "online probe":
        how = "set by the user at export" if source.get("chosen_by") == "user" else "the default (no online probe)"
        return [f"Frozen features: pool `{info.feature_pool}`, {how}."]
    k = source.get("k", "")
    lines = [f"Frozen features: pool `{info.feature_pool}`, the best pool of the run's online probe (few-label "
             f"linear probe at {k} labelled chips per class, step {source.get('step')}, from "
             f"`{source.get('history')}`). Accuracy % (95% CI over the probe's draws) at that evaluation:", "",
             "| features | accuracy % |", "|---|---:|"]
    lines += [f"| this backbone, pool `{pool}` | {_pct(score)} |" for pool, score in (source.get("pools") or {}).items()]
    lines += [f"| baseline: {name} | {_pct(score)} |" for name, score in (source.get("baselines") or {}).items()]
    return lines


def model_card(info) -> str:
    """Markdown for a :class:`~eossl.models.weights.WeightsInfo` (the data licence: ``extra["data_licence"]``)."""
    extra = info.extra or {}
    licence = extra.get("data_licence")
    mean, std = info.normalization["mean"], info.normalization["std"]
    sensor = extra.get("sensor", "not recorded")
    cfg = extra.get("config") or {}
    optim, corpus = cfg.get("optim") or {}, cfg.get("corpus") or {}
    lines = [f"# {info.arch}, {info.ssl_method}, {info.in_chans} bands", "",
             f"A backbone pretrained with eossl {info.eossl_version} (`{info.ssl_method}`) on: {info.pretrain_data}.",
             "", "## Input", "",
             f"{info.in_chans} bands in this order, {info.img_size} px chips at {info.gsd_m:g} m, sensor `{sensor}`. "
             "Values are reflectance (the sensor's DN x scale + offset), standardised per band as "
             "`(x - mean) / std`; invalid pixels are set to 0 after standardising.", "",
             "| # | band | wavelength (nm) | mean | std |", "|---:|---|---:|---:|---:|"]
    lines += [f"| {i} | {b} | {w:g} | {m:.6g} | {s:.6g} |"
              for i, (b, w, m, s) in enumerate(zip(info.bands, info.wavelengths_nm, mean, std))]
    lines += ["", "## Training", "",
              f"- method: `{info.ssl_method}`; epochs completed: {info.epochs}; optimiser steps: "
              f"{extra.get('global_step', 'not recorded')}",
              f"- batch: {corpus.get('batch_size', 'not recorded')} per device; optimiser: "
              f"{optim.get('name', 'not recorded')}, base LR {optim.get('base_lr', '?')} per 256 samples",
              f"- licence of the pretraining data: {licence or 'not recorded (set it with `eossl export --data-licence`)'}",
              "", "## Features", "", *_probe_section(info), "", "## Load it", "", "With eossl (the recorded pool, "
              "stem adapted to other bands by name and wavelength when `bands=` is given):", "", "```python",
              "from eossl.models.weights import load_backbone", "", 'model = load_backbone("THIS_FOLDER")'
              "            # (B, C, H, W) standardised -> (B, D) features", "```", "",
              "With plain timm (the pooled last stage):", "", "```python", "import timm",
              "from safetensors.torch import load_file", "",
              f'model = timm.create_model("{info.arch}", in_chans={info.in_chans}, num_classes=0'
              + (f", img_size={info.img_size})" if info.arch.startswith("vit") else ")"),
              'model.load_state_dict(load_file("THIS_FOLDER/backbone.safetensors"))', "```", ""]
    return "\n".join(lines)


def write_model_card(out: str | Path, info) -> Path:
    """Write ``out/README.md`` atomically."""
    from eossl.runs import atomic_write

    path = Path(out) / CARD_FILE
    atomic_write(path, lambda p: p.write_text(model_card(info)))
    return path
