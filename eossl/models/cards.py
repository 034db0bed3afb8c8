"""What exported weights say about themselves to people and catalogs, written by every export beside
``weights.json`` and made from it alone: a model card (``README.md``: what the backbone expects, how it was trained,
how its feature pool was chosen, how to load it with eossl or plain timm) and a STAC Item with the Machine Learning
Model extension (``item.json``: ``mlm:`` input bands and their z-score scaling, output embedding, framework), with
the bands described by the EO extension."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CARD_FILE", "ITEM_FILE", "MLM_SCHEMA", "model_card", "mlm_item", "write_model_card"]

CARD_FILE = "README.md"
ITEM_FILE = "item.json"
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"


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
    if licence is None and (extra.get("shipped") or {}).get("licences", {}).get("sources"):
        licence = "; ".join(f"{s['name']}: {s['licence']}" for s in extra["shipped"]["licences"]["sources"])
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
    lines += _shipped_section(extra.get("shipped"))
    return "\n".join(lines)


def _shipped_section(shipped: dict | None) -> list[str]:
    """Licences and reproduction of weights shipped with eossl (:mod:`eossl.models.shipped`)."""
    if not shipped:
        return []
    lic, rep = shipped.get("licences") or {}, shipped.get("reproduce") or {}
    gap = shipped.get("fp16_max_abs_feature_diff")
    if gap is None:
        stored = f"stored as {shipped.get('storage')}"
    elif shipped.get("storage") == "float16":
        stored = f"stored as float16 (its features within {gap:.2g} of float32's)"
    else:
        stored = f"stored as float32 (float16 would move its features by up to {gap:.2g}, more than 1e-3)"
    lines = ["## Shipped with eossl", "", f"Name: `{shipped['name']}` (`--weights {shipped['name']}`, "
             f"`load_backbone(\"{shipped['name']}\")`); {stored}.", "", "### Licences", "",
             f"- these weights: {lic.get('weights', 'not recorded')}"]
    lines += [f"- training source {s['name']}: {s['licence']}" + (f" ({s['note']})" if s.get("note") else "")
              for s in lic.get("sources", [])]
    if lic.get("attribution"):
        lines += [f"- attribution: {lic['attribution']}"]
    lines += ["", "### Reproduce", ""]
    lines += [f"- {k}: `{v}`" for k, v in rep.items() if k != "config"]
    if rep.get("config"):
        lines += ["", "```yaml", str(rep["config"]).rstrip(), "```"]
    return lines + [""]


def mlm_item(info, weights_file: str, feature_dim: int, parameters: int | None = None) -> dict:
    """A STAC Item (MLM extension) for the weights: the model asset is ``weights_file`` (relative href), the input
    the bands in order with their z-score scaling, the output the (B, ``feature_dim``) embedding of the recorded
    pool; no geometry (the card names the pretraining data instead)."""
    import torch

    extra = info.extra or {}
    mean, std = info.normalization["mean"], info.normalization["std"]
    properties = {
        "datetime": None, "start_datetime": "1970-01-01T00:00:00Z", "end_datetime": "9999-12-31T23:59:59Z",
        "description": f"{info.arch} pretrained with {info.ssl_method} on {info.pretrain_data} (eossl "
                       f"{info.eossl_version})",
        "eo:bands": [{"name": b, "center_wavelength": round(w / 1000.0, 6)}
                     for b, w in zip(info.bands, info.wavelengths_nm)],
        "mlm:name": f"eossl-{info.arch}-{info.ssl_method}", "mlm:architecture": info.arch,
        "mlm:tasks": ["similarity-search"], "mlm:framework": "pytorch", "mlm:framework_version": torch.__version__,
        "mlm:pretrained": True, "mlm:pretrained_source": info.pretrain_data,
        "mlm:input": [{
            "name": "reflectance chips", "bands": list(info.bands),
            "input": {"shape": [-1, info.in_chans, info.img_size, info.img_size],
                      "dim_order": ["batch", "bands", "height", "width"], "data_type": "float32"},
            "value_scaling": [{"type": "z-score", "mean": float(m), "stddev": float(s)} for m, s in zip(mean, std)],
            "description": f"reflectance (DN x scale + offset of sensor {extra.get('sensor', 'not recorded')}) at "
                           f"{info.gsd_m:g} m; invalid pixels 0 after scaling"}],
        "mlm:output": [{"name": f"features ({info.feature_pool} pool)", "tasks": ["similarity-search"],
                        "result": {"shape": [-1, int(feature_dim)], "dim_order": ["batch", "embedding"], "data_type": "float32"}}],
    }
    if parameters is not None:
        properties["mlm:total_parameters"] = int(parameters)
    return {"type": "Feature", "stac_version": "1.0.0", "stac_extensions": [MLM_SCHEMA, EO_SCHEMA],
            "id": properties["mlm:name"], "geometry": None, "properties": properties, "links": [],
            "assets": {"model": {"href": f"./{weights_file}", "type": "application/octet-stream; application=safetensors",
                                 "title": "backbone weights (timm keys)", "roles": ["mlm:model", "mlm:weights"],
                                 "mlm:artifact_type": "safetensors.torch.save_file"},
                       "card": {"href": f"./{CARD_FILE}", "type": "text/markdown", "roles": ["metadata"]}}}


def write_model_card(out: str | Path, info, weights_file: str, feature_dim: int, parameters: int | None = None) -> Path:
    """Write ``out/README.md`` and ``out/item.json`` (the STAC MLM item), each atomically; returns the card."""
    import json

    from eossl.runs import atomic_write

    path = Path(out) / CARD_FILE
    atomic_write(path, lambda p: p.write_text(model_card(info)))
    item = mlm_item(info, weights_file, feature_dim, parameters)
    atomic_write(Path(out) / ITEM_FILE, lambda p: p.write_text(json.dumps(item, indent=2)))
    return path
