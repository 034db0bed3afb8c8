"""``report.md`` and ``report.html`` of a pipeline: what ran, the training curves and collapse monitors, the SSL
views, the few-label curve against the baselines, confusion matrices and a quick look at the class map.

The report directory is self-contained: every figure it shows is copied (or drawn) into it. What a stage's run
directory holds tells which section it gets (:func:`run_kind`): the pipeline names no command.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from eossl.pipeline.report_crop import SECTIONS as CROP_MAP_SECTIONS
from eossl.report.figures import save_probe_curves, save_training_curves
from eossl.report.rows import Headline, ResultRow
from eossl.runs import write_text
from eossl.train.probe_history import probe_verdict

__all__ = ["write_report", "run_kind", "KNOWN_RUNS"]


def write_report(out_dir: str | Path, pipeline_dir: str | Path, state: dict) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/report.html`` from the pipeline ``state`` (``pipeline.json``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks: list[tuple] = [("h1", f"eossl pipeline report: {state.get('name', Path(pipeline_dir).name)}"),
                           ("table", ["stage", "command", "action", "seconds", "run directory"],
                            [[n, r.get("command", ""), _action(r, out_dir), str(r.get("seconds", "")),
                              r.get("run_dir", "")] for n, r in state["stages"].items()])]
    for name, rec in state["stages"].items():
        if rec.get("status") != "done" or "run_dir" not in rec:
            continue
        kind = run_kind(Path(rec["run_dir"]), rec.get("outputs"))
        if kind is not None:
            blocks += _KINDS[kind][2](name, rec, out_dir)
    write_text(out_dir / "report.md", _markdown(blocks))
    write_text(out_dir / "report.html", _html(blocks, state.get("name", "")))
    return out_dir / "report.md"


def _action(rec: dict, out_dir: Path) -> str:
    if rec.get("status") == "running" and Path(rec.get("run_dir", "")) == out_dir:
        return "this report"
    return rec.get("action", rec.get("status", ""))


def _copy(src: Path, out_dir: Path, name: str) -> str | None:
    if not src.is_file():
        return None
    shutil.copyfile(src, out_dir / name)
    return name


def _pretrain(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run = Path(rec["run_dir"])
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    blocks = [("h2", f"Pretraining ({name})")]
    if summary:
        final = summary.get("final", {})
        blocks.append(("p", f"{summary.get('method')} on {summary.get('arch')}, {summary.get('global_step')} steps "
                            f"({summary.get('images_per_s')} images/s, effective batch "
                            f"{summary.get('effective_batch')}, peak LR {summary.get('peak_lr')}); final loss "
                            f"{final.get('loss')}, embedding std {final.get('embedding_std')}, effective rank "
                            f"{final.get('effective_rank')}."))
    csvs = sorted((run / "logs").glob("version_*/metrics.csv"))
    if csvs and _training_curves(out_dir / f"{name}_training.png", csvs, title=f"{name}: training curves"):
        blocks.append(("img", f"{name}_training.png", "Loss, learning rate and collapse monitors per step"))
    blocks += _probe(name, run, out_dir)
    views = _views(run, out_dir / f"{name}_views.png")
    if views:
        blocks.append(("img", views, "Chips of the corpus and their SSL views (true and false colour)"))
    return blocks


def _training_curves(out: Path, csvs: list[Path], title: str) -> bool:
    try:
        save_training_curves(out, csvs, title=title)
    except ValueError:      # logs without training metrics (a run shorter than its logging interval)
        return False
    return True


def _probe(name: str, run: Path, out_dir: Path) -> list[tuple]:
    """The online probe of a pretraining run (``RUN_DIR/probe/history.json``): what it found, and its curves."""
    path = run / "probe" / "history.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text())
    if not history.get("evaluations"):
        return []
    s = history["settings"]
    k = max(int(v) for v in s["ks"])
    best, stopped = history.get("best_pool") or {}, history.get("stopped")
    base = sorted(history.get("baselines", {}).get(f"k{k}", {}).items(), key=lambda item: -item[1]["mean"])
    text = (f"Online probe: {s.get('n_chips')} labelled chips ({s.get('data')}), {s.get('draws')} few-label draws at "
            f"k = {k} per class, every {s.get('every_n_steps')} steps. Best pool at step {best.get('step')}: "
            f"{best.get('pool')} {100 * best.get('mean', float('nan')):.1f}%")
    if base:
        text += "; baselines: " + ", ".join(f"{n} {100 * b['mean']:.1f}%" for n, b in base[:3])
    text += "." + (f" Training stopped at step {stopped['step']} ({stopped['minutes']:.1f} min): {stopped['reason']}."
                   if stopped else "")
    verdict = probe_verdict(history)    # the same sentence as the run's summary.json and its last log line
    said = verdict.sentence() if verdict else ""
    save_probe_curves(out_dir / f"{name}_probe.png", history)
    return [("p", text), *([("p", f"{said[:1].upper()}{said[1:]}.")] if said else []),
            ("img", f"{name}_probe.png", f"Online probe accuracy at k = {k} per pool against steps and training "
                                         f"minutes; baselines as bands (mean ± 95% CI)")]


def _views(run: Path, out: Path) -> str | None:
    """The run's views grid, drawn now if the run has none."""
    if _copy(run / "views.png", out.parent, out.name):
        return out.name
    if not (run / "index.parquet").is_file():
        return None
    from eossl.catalog.index import open_index
    from eossl.report.views import write_view_grid
    from eossl.train.config import read_run_config
    from eossl.train.pretrain import view_spec

    cfg = read_run_config(run)
    write_view_grid(out, open_index(run / "index.parquet"), view_spec(cfg.views, cfg.method.name), chips=4,
                    chip_size=cfg.corpus.sampler.chip_size, seed=cfg.trainer.seed, title=f"{cfg.method.name} views")
    return out.name


def _evaluate(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run = Path(rec["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    head = Headline.from_dict(metrics["headline"]) if "headline" in metrics else None
    what = "" if head is None else f"{head.model} / {head.protocol}"
    blocks = [("h2", f"Few-label evaluation ({name}, task {metrics.get('task', 'patch')})"),
              ("p", "Mean and 95% CI over seeds; every row is scored on the same splits.")]
    blocks += _warnings(metrics)
    if (run / "table.txt").is_file():
        blocks.append(("pre", (run / "table.txt").read_text().rstrip()))
    row = None if head is None else next(
        (r for r in map(ResultRow.from_dict, metrics.get("results", [])) if head.matches(r)), None)
    per_class = _per_class(row) if row is not None else None
    if per_class:
        blocks.append(("p", f"Per-class scores of {what} at k={head.k}, every seed's test predictions pooled:"))
        blocks.append(("pre", per_class))
    for fig, caption in (("few_label_curve.png", "Few-label curve against the baselines"),
                         ("confusion_matrix.png", f"Confusion matrix: {what}, k={head.k if head else None}, "
                                                  f"seeds pooled")):
        if _copy(run / fig, out_dir, f"{name}_{fig}"):
            blocks.append(("img", f"{name}_{fig}", caption))
    return blocks


def _per_class(row: ResultRow) -> str | None:
    """Precision, recall, F1 and support per class of ``row`` (pooled over seeds), as text."""
    if row.metrics_all_seeds is None:
        return None
    per = row.metrics_all_seeds.get("per_class") or {}
    width = max([len(c) for c in per] + [5])

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"
    lines = [f"{'class':<{width}}  precision  recall     F1  support"]
    lines += [f"{c:<{width}}  {pct(m['precision']):>9}  {pct(m['recall']):>6}  {pct(m['f1']):>5}  {m['support']:>7}"
              for c, m in per.items()]
    return "\n".join(lines)


def _finetune(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run = Path(rec["run_dir"])
    m = json.loads((run / "metrics.json").read_text())
    s = m["metrics"]
    extra = f", mean IoU {100 * s['mean_iou']:.1f}%" if "mean_iou" in s else ""
    blocks = [("h2", f"Fine-tuning ({name})"),
              ("p", f"Trained on {m['n_train']} samples in {m['seconds']} s; hold-out ({m['n_test']}): overall "
                    f"accuracy {100 * s['overall_accuracy']:.1f}%, macro-F1 {100 * s['macro_f1']:.1f}%, kappa "
                    f"{s['kappa']:.3f}{extra}. Classifier: {m['model']}.")]
    blocks += _warnings(m)
    if (run / "logs" / "metrics.csv").is_file():
        save_training_curves(out_dir / f"{name}_training.png", [run / "logs" / "metrics.csv"],
                             title=f"{name}: fine-tuning loss and learning rate")
        blocks.append(("img", f"{name}_training.png", "Fine-tuning loss and learning rate per step"))
    if _copy(run / "confusion_matrix.png", out_dir, f"{name}_confusion_matrix.png"):
        blocks.append(("img", f"{name}_confusion_matrix.png", "Hold-out confusion matrix"))
    return blocks


def _warnings(metrics: dict) -> list[tuple]:
    """A "Warnings" box of the run's ``metrics.json`` warnings (degenerate splits or results), if any."""
    items = [f"{w['code']}: {w['message']}" for w in metrics.get("warnings") or []]
    return [("warn", f"Warnings ({len(items)}): read these results with care", items)] if items else []


def _predict(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run, out = Path(rec["run_dir"]), rec.get("outputs") or {}
    blocks = [("h2", f"Class map ({name})"),
              ("p", f"Cloud-Optimised GeoTIFF: {out.get('map') or run / MAP_FILE}")]
    if _copy(Path(out.get("preview") or run / MAP_PREVIEW_FILE), out_dir, f"{name}_map.png"):
        blocks.append(("img", f"{name}_map.png", "Quick look of the predicted class map"))
    return blocks


def _extract(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    import pandas as pd

    path = _table(Path(rec["run_dir"]), rec.get("outputs"))
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    n = table["sample_id"].nunique()
    valid = float((table["valid_pixels"] > 0).mean()) if len(table) else 0.0
    return [("h2", f"Extracted series ({name})"),
            ("p", f"{n} geometries x {table['date'].nunique()} dates ({len(table)} rows, {100 * valid:.0f}% with "
                  f"valid pixels): {path}")]


def _pretrain_series(name: str, rec: dict, out_dir: Path) -> list[tuple]:
    run = Path(rec["run_dir"])
    s = json.loads((run / "summary.json").read_text())
    corpus = "; ".join(f"{p['kind']} from {p['from']} ({p['n']})" for p in s["corpus"]["parts"])
    if s["corpus"].get("init"):
        corpus = f"continued from {s['corpus']['init']} on {corpus}"
    return [("h2", f"Temporal pretraining ({name})"),
            ("p", f"Masked autoencoding of pixel time series: {s['steps']} steps ({s['epochs']} epochs) in "
                  f"{s['seconds']:.0f} s, reconstruction loss {s['first_loss']:.4f} -> {s['last_loss']:.4f}. "
                  f"Corpus: {corpus}, {s['corpus']['steps']} time steps, bands {', '.join(s['corpus']['bands'])}.")]


# the files a pipeline stage writes into its run directory, where no record (summary.json, metrics.json) says more
MAP_FILE, MAP_PREVIEW_FILE, TABLE_FILES = "map.tif", "map_preview.png", ("series.parquet", "series.csv")


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _table(run: Path, outputs: dict | None) -> Path | None:
    """The extracted series table of ``run``: its ``table`` artifact, else series.parquet / series.csv in it."""
    if (outputs or {}).get("table"):
        return Path(outputs["table"])
    return next((run / f for f in TABLE_FILES if (run / f).is_file()), None)


# kind of run -> (what tells it, in words; whether a run directory (and its artifacts) is one; its section). A run
# directory describes itself by the records it holds, so the report reads those, never the name of the command
# that wrote them; the first kind that matches wins (a pretraining run also holds an index and weights).
_KINDS = {
    "pretraining": ("checkpoints/", lambda run, out: (run / "checkpoints").is_dir(), _pretrain),
    "series pretraining": ("summary.json of a series corpus",
                           lambda run, out: "corpus" in _json(run / "summary.json"), _pretrain_series),
    "evaluation": ("metrics.json with results", lambda run, out: "results" in _json(run / "metrics.json"),
                   _evaluate),
    "fine-tuning": ("model/classifier.json", lambda run, out: (run / "model" / "classifier.json").is_file(),
                    _finetune),
    **CROP_MAP_SECTIONS,        # before "class map": a crop-type map of a stack is a class map with more to say
    "class map": (MAP_FILE, lambda run, out: bool((out or {}).get("map")) or (run / MAP_FILE).is_file(), _predict),
    "series table": (" or ".join(TABLE_FILES), lambda run, out: _table(run, out) is not None, _extract),
}
KNOWN_RUNS = ", ".join(f"{kind} ({what})" for kind, (what, _, _) in _KINDS.items())
"""The kinds of run directory the report has a section for, and what tells each (for messages)."""


def run_kind(run_dir: Path, outputs: dict | None = None) -> str | None:
    """The kind of run ``run_dir`` holds (pretraining, evaluation, ...: see :data:`KNOWN_RUNS`), told by its
    records and files (and ``outputs``, the artifacts a pipeline recorded for it); None: a run the report has no
    section for (a scene index, exported weights, a report) or not a run directory."""
    return next((kind for kind, (_, holds, _) in _KINDS.items() if holds(Path(run_dir), outputs)), None)


def _markdown(blocks: list[tuple]) -> str:
    lines = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            lines += [("# " if b[0] == "h1" else "## ") + b[1], ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "pre":
            lines += ["```", b[1], "```", ""]
        elif b[0] == "warn":
            lines += [f"> **{b[1]}**", ">"] + [f"> - {item}" for item in b[2]] + [""]
        elif b[0] == "img":
            lines += [f"![{b[2]}]({b[1]})", "", f"*{b[2]}*", ""]
        elif b[0] == "table":
            lines += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in b[2]] + [""]
    return "\n".join(lines)


def _html(blocks: list[tuple], name: str) -> str:
    e = html.escape
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            body.append(f"<{b[0]}>{e(b[1])}</{b[0]}>")
        elif b[0] == "pre":
            body.append(f"<pre>{e(b[1])}</pre>")
        elif b[0] == "warn":
            items = "".join(f"<li>{e(item)}</li>" for item in b[2])
            body.append(f'<div class="warnings"><strong>{e(b[1])}</strong><ul>{items}</ul></div>')
        elif b[0] == "img":
            body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
        elif b[0] == "table":
            head = "".join(f"<th>{e(c)}</th>" for c in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}"
             "pre{background:#f6f6f6;padding:8px;overflow-x:auto}figcaption{font-size:85%;color:#555}"
             ".warnings{background:#fff4e5;border:2px solid #e69500;padding:8px 12px;margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>eossl report: {e(name)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
