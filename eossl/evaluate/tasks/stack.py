"""``task: stack``: few-label crop types on labelled scene stacks, scored across parcels (issue 25, point 4).

Per stack of ``cfg.stack.stacks``: every pixel's composited series (:mod:`eossl.evaluate.stack_inputs`), the
parcel splits of :mod:`eossl.evaluate.parcel_splits` (``cfg.seeds`` seeds from ``cfg.seed``, ``cfg.ks`` pixels per
class), and per row one :class:`~eossl.evaluate.stack_model.StackModel`: prepared once on every pixel of the
stack, its features computed once for every pixel, one classifier fitted per split on the training pixels' rows
and its ``proba_from_features`` read on the test pixels' rows (what ``predict_proba`` of the map computes).

``metrics.json``: ``results`` are the parcel-disjoint scores over the multi-parcel classes pooled over the
stacks (ci95: half-width of the bootstrap interval over test parcels); ``parcel_scores`` holds every scope (each
stack and pooled) with its bootstrap interval, the paired differences headline minus each row, and the
single-parcel classes' within-parcel scores, apart. The headline row is named in the settings before scoring.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from eossl.evaluate.config import EvaluateConfig
from eossl.evaluate.context import TaskContext, TaskNotes
from eossl.evaluate.parcel_splits import class_kinds, parcel_splits
from eossl.evaluate.stack_inputs import load_stack_entry
from eossl.evaluate.stack_model import AbsentClassWarning, StackModel
from eossl.evaluate.stack_scoring import (
    make_scope,
    paired,
    paired_records,
    result_rows,
    scope_rows,
    single_parcel_scores,
)
from eossl.report.rows import Headline, ResultRow

log = logging.getLogger(__name__)

__all__ = ["ROWS", "StackNotes", "plan_rows", "row_labels", "row_model", "run"]

PROTOCOL_SEEDS = 20
ROWS = {   # row -> (feature kind, classifier, encoder: pretrained / random / image / None)
    "pretrained": ("encoder", "linear", "pretrained"), "raw": ("raw", "linear", None),
    "random_forest": ("raw", "random_forest", None), "phenology": ("phenology", "linear", None),
    "random_init": ("encoder", "linear", "random"), "fusion_pretrained": ("fusion", "linear", "pretrained"),
    "fusion_random_init": ("fusion", "linear", "random"), "pca": ("pca", "linear", None),
    "rocket": ("rocket", "linear", None), "image_pretrained": ("image", "linear", "image"),
    "image_sequence": ("image_sequence", "linear", "image"), "image_stack_norm": ("image", "linear", "image"),
    "image_random_init": ("image", "linear", "image")}
IMAGE_OPTIONS = {"image_pretrained": {}, "image_sequence": {}, "image_stack_norm": {"norm": "stack"},
                 "image_random_init": {"random_init": True}}


@dataclass(frozen=True)
class StackNotes(TaskNotes):
    """TaskNotes with the task's own top-level sections of ``metrics.json`` (``parcel_scores``)."""

    sections: dict = field(default_factory=dict)

    def to_dict(self, rows: list[ResultRow]) -> dict:
        return {**super().to_dict(rows), **self.sections}


def row_labels(weights: str | None, method: str = "", image: str = "") -> dict[str, tuple[str, str]]:
    """Row -> (model, protocol) of the result rows (``image``: what the image weights are, e.g. "resnet18
    vicreg")."""
    pre = f"pixel transformer, pretrained ({method or Path(str(weights)).name})"
    rnd = "pixel transformer, random init"
    img = f"per-date chips, {image or 'image backbone'}"
    return {"image_pretrained": (f"{img}, mean+std over time", "linear"),
            "image_sequence": (f"{img}, per-period PCA in time order", "linear"),
            "image_stack_norm": (f"{img} on the stack's own statistics, mean+std over time", "linear"),
            "image_random_init": (f"per-date chips, {image.split(' ')[0] if image else 'image backbone'} random "
                                  f"init, mean+std over time", "linear"),
            "pretrained": (pre, "linear"), "raw": ("raw series", "linear"), "random_forest": ("raw series",
            "random_forest"), "phenology": ("temporal stats + phenology", "linear"), "random_init": (rnd, "linear"),
            "fusion_pretrained": (f"raw series + {pre}", "linear"), "fusion_random_init": (f"raw series + {rnd}",
            "linear"), "pca": ("PCA of the raw series (all pixels)", "linear"),
            "rocket": ("MiniRocket (all pixels)", "linear")}


def plan_rows(st, weights) -> tuple[list[str], str, list[dict]]:
    """(rows to score, headline row, warnings): rows needing (image) weights are dropped without them."""
    need = {"pretrained": weights, "image": st.image_weights}
    rows = [r for r in ROWS if r in st.rows and (ROWS[r][2] not in need or need[ROWS[r][2]] is not None)]
    dropped = [r for r in st.rows if r not in rows]
    notes = ([{"code": "no_weights", "message": f"no weights / stack.image_weights: rows {', '.join(dropped)} not "
                                                f"scored"}] if dropped else [])
    headline = st.headline or ("fusion_pretrained" if weights is not None else "raw")
    if headline not in rows:
        raise ValueError(f"the headline row {headline!r} is not scored (rows: {', '.join(rows)}); give weights or "
                         f"another stack.headline")
    return rows, headline, notes


def row_model(row: str, stack, cfg: EvaluateConfig, device: str) -> StackModel:
    st, (kind, clf, enc) = cfg.stack, ROWS[row]
    comp = stack.comp
    return StackModel.build(kind, classes=stack.names, codes=stack.codes, bands=list(comp.bands), sensor=comp.sensor,
                            steps=len(comp.starts), period=st.period, classifier=clf, C=cfg.C, C_grid=st.C_grid,
                            seed=cfg.seed, weights=cfg.weights if enc == "pretrained" else None,
                            encoder_kwargs=st.encoder, device=device, image_weights=st.image_weights if enc == "image"
                            else None, image={"chip": st.image_chip, **IMAGE_OPTIONS.get(row, {})},
                            settings={"pca": {"components": st.pca_components, "whiten": st.pca_whiten},
                                      "rocket": {"n_features": st.rocket_features,
                                                 "max_pixels": st.rocket_max_pixels}, "trees": st.trees,
                                      "image": {"components": st.image_components}})


def _predict(model: StackModel, stack, splits: list, absent: list, images: dict, row: str) -> list[dict]:
    """Per split: the predicted codes of its test and single-parcel pixels (one fit on the training pixels).
    ``images`` collects what the image backbone of an image row is and reads (per stack and row)."""
    model.prepare(stack.samples, comps=[stack.comp])
    feats = model.transform(stack.samples, comp=stack.comp)
    if model.image is not None:
        images.setdefault(stack.name, {})[row] = model.image.describe()
    codes = np.asarray(stack.codes)
    out = []
    for sp in splits:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AbsentClassWarning)
            model.fit_features(feats[sp.train], np.searchsorted(codes, sp.train_labels), allow_absent=True)
        absent += [f"{stack.name} seed {sp.seed} k={sp.k}: {w.message}" for w in caught
                   if issubclass(w.category, AbsentClassWarning)]
        pick = np.concatenate([sp.test, sp.single])
        pred = codes[model.proba_from_features(feats[pick]).argmax(axis=1)]
        out.append({"seed": sp.seed, "k": sp.k, "test_pred": pred[:len(sp.test)], "single_pred": pred[len(sp.test):]})
    return out


def run(cfg: EvaluateConfig, ctx: TaskContext) -> list[ResultRow]:
    """Rows of every scored row at every k, pooled over the stacks (see the module doc)."""
    st = cfg.stack
    rows, headline, warns = plan_rows(st, cfg.weights)
    stacks = [load_stack_entry(e, st) for e in st.stacks]
    if len({s.name for s in stacks}) != len(stacks):
        raise ValueError(f"two stacks share a name ({[s.name for s in stacks]}); give each a stack.stacks[].name")
    ks = [str(k) for k in cfg.ks]
    splits = {s.name: parcel_splits(s.parcels, cfg.ks, cfg.seeds, cfg.seed, st.buffer) for s in stacks}
    method = _method(cfg.weights)
    labels = row_labels(cfg.weights, method, _image_label(st.image_weights))
    absent: list[str] = []
    images: dict[str, dict] = {}
    preds = {r: {s.name: _predict(row_model(r, s, cfg, ctx.device), s, splits[s.name], absent, images, r)
                 for s in stacks} for r in rows}
    names = {c: n for s in stacks for c, n in zip(s.codes, s.names, strict=True)}
    scopes = [[s] for s in stacks] + ([stacks] if len(stacks) > 1 else [])
    sections = {"scopes": [], "rows": [], "paired": [], "single_parcel": []}
    results = []
    for group in scopes:
        name = "pooled" if len(group) > 1 else group[0].name
        scope, where = make_scope(name, group, splits)
        scored, boot = scope_rows(scope, where, group, splits, {r: preds[r] for r in rows}, names, ks,
                                  st.resamples, cfg.seed)
        sections["scopes"].append({"scope": name, "stacks": [s.name for s in group],
                                   "multi_parcel_classes": [names[c] for c in scope.multi.tolist()], **boot})
        sections["rows"] += [{"scope": name, "model": labels[r][0], "protocol": labels[r][1], "k": k,
                              **v["summary"], "per_class_f1": dict(zip([names[c] for c in scope.multi.tolist()],
                                                                       v["point"]["per_class_f1"][0].tolist()))}
                             for (r, k), v in scored.items()]
        scope_paired = paired(scored, labels, headline, ks, name)
        sections["paired"] += scope_paired
        if group is scopes[-1]:                 # the last scope (pooled when there are several) gives the rows
            results = result_rows(scored, labels, headline, ks)
            pairs = paired_records(scope_paired, results)
    for s in stacks:
        for r in rows:
            sections["single_parcel"] += single_parcel_scores(s, splits[s.name], preds[r][s.name], labels[r])
    warns += _product_warnings(images)
    notes = _notes(cfg, stacks, splits, rows, headline, labels, warns, absent, sections, images)
    # the headline row was named (by plan_rows) before any score was computed
    ctx.record(replace(notes, headline=Headline(*labels[headline], ks[-1]), paired=pairs))
    return results


def _image_label(weights) -> str:
    if weights is None:
        return ""
    from eossl.models.info import read_weights_info

    info = read_weights_info(weights)
    return f"{info.arch} {info.ssl_method} ({info.extra.get('sensor', 'sensor not recorded')})"


def _method(weights) -> str:
    if weights is None:
        return ""
    from eossl.models.info import read_weights_info

    return read_weights_info(weights).ssl_method


def _product_warnings(images: dict) -> list[dict]:
    """A named warning per stack read by image weights pretrained on another product (L1C weights on L2A)."""
    out = []
    for name, described in images.items():
        for d in described.values():
            p = d["product"]
            if not p["same"]:
                far = sorted(p["band_mean_z"].items(), key=lambda kv: -kv[1])[:3]
                out.append({"code": "image_product_level", "message": f"{name}: {p['note']}; largest: "
                            + ", ".join(f"{b} {z:.2f} std" for b, z in far)})
                break
    return out


def _notes(cfg, stacks, splits, rows, headline, labels, warns, absent, sections, images=None) -> StackNotes:
    st = cfg.stack
    if cfg.seeds < PROTOCOL_SEEDS:
        warns.append({"code": "protocol_seeds", "message": f"{cfg.seeds} seeds: the protocol fixes {PROTOCOL_SEEDS} "
                                                      f"(seeds={PROTOCOL_SEEDS}); figures are a smoke test"})
    if absent:
        warns.append({"code": "absent_class", "message": f"{len(absent)} fits lacked a class; first: {absent[0]}"})
    short = [f"{s.name} seed {sp.seed} k={sp.k}: {sp.short}" for s in stacks for sp in splits[s.name] if sp.short]
    if short:
        warns.append({"code": "short_class", "message": f"{len(short)} splits had a class with fewer than k "
                                                        f"eligible pixels (all used); first: {short[0]}"})
    settings = {"headline": "macro_f1", "headline_row": {"model": labels[headline][0],
                                                         "protocol": labels[headline][1]},
                "rows": [labels[r][0] + " / " + labels[r][1] for r in rows], "ks": [str(k) for k in cfg.ks],
                "seeds": cfg.seeds, "seed": cfg.seed, "C": cfg.C, "weights": cfg.weights,
                **{k: v for k, v in vars(st).items() if k not in ("stacks", "rows", "headline")}}
    data = {"stacks": [_describe(s) for s in stacks], **({"image_backbones": images} if images else {})}
    split_notes = {s.name: [{"seed": sp.seed, "k": sp.k, "n_train": int(sp.train.size), "n_test": int(sp.test.size),
                             "test_parcels": sorted({int(p) for p in np.unique(sp.test_parcels)}),
                             "n_single_scored": int(sp.single.size), "short": {str(c): n for c, n in sp.short.items()}}
                            for sp in splits[s.name]] for s in stacks}
    return StackNotes(what=f"{len(stacks)} stack(s)", settings=settings, data=data, splits=split_notes,
                      warnings=warns + [{"code": "unscored_classes", "message": f"{s.name}: classes without a "
                                         f"parcel of {st.min_parcel_pixels} px left out: {s.fragments}"}
                                        for s in stacks if s.fragments],
                      sections={"parcel_scores": sections})


def _describe(s) -> dict:
    multi, single = class_kinds(s.parcels)
    return {"name": s.name, "source": s.samples.source, "labels": s.labels.source, "variable": s.labels.variable,
            "grid": [int(s.labels.codes.shape[0]), int(s.labels.codes.shape[1])], "steps": int(len(s.comp.starts)),
            "bands": list(s.comp.bands), "sensor": s.comp.sensor, "classes": dict(zip(map(str, s.codes), s.names)),
            "parcels_per_class": {str(c): n for c, n in s.parcels.per_class().items()},
            "multi_parcel": multi, "single_parcel": single, "unscored": s.fragments}
