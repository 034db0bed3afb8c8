"""Does temporal pretraining pay off on real crop labels? The WorldCereal points, few labels, spatial-block splits.

Rows on identical splits (``eossl.evaluate.series_eval``: k per class, ``--seeds`` seeds, classes with fewer than
``--min-per-class`` samples left out, 10 km blocks), scored by macro-F1 (headline), OA and kappa:

* ``pretrained (cube)``: the pixel time-series encoder pretrained by masked autoencoding (``eossl
  pretrain-series``) on pixel series of the WorldCereal datacube (Belgium: unlabeled, another continent), once;
* ``pretrained (cube + train points)``: the cube's weights pretrained again, per seed, on the points of that
  seed's training side as unlabeled series (labels unused, the seed's test points excluded; each row
  ``--points-repeats`` times per epoch) beside ``--points-cube-pixels`` cube pixels, for ``--points-epochs`` epochs
  at ``--points-lr`` (``init`` of ``eossl pretrain-series``): domain-adaptive continued pretraining;
* ``random-init pixel transformer``, ``raw series`` (logistic regression, random forest), ``temporal stats +
  phenology``: the baselines of the series task;
* ``raw series + pretrained ...`` and ``raw series + random-init ...``: the fusion rows (the raw series
  concatenated with the frozen features, one logistic regression).

Paired differences (each pretrained row and each fusion row with pretrained features, minus each other row, seed by
seed) with t-based 95% CIs at every k.

    .venv/bin/python benchmarks/series_crops.py --out runs/series_bench [--seeds 10] [--epochs 40]
        [--variants cube cube+points]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eossl.config import load_config  # noqa: E402
from eossl.data.series.tables import read_series_table  # noqa: E402
from eossl.evaluate.metrics import mean_ci95  # noqa: E402
from eossl.evaluate.series_eval import _keep_classes, evaluate_series, series_splits  # noqa: E402
from eossl.models.temporal import load_series_encoder, series_normalization  # noqa: E402
from eossl.train.config import SeriesPretrainConfig  # noqa: E402
from eossl.train.series_pretrain import pretrain_series  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "worldcereal"
SCORES = ("macro_f1", "overall_accuracy", "kappa")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default=str(SHARED / "test_public_extractions.parquet"))
    p.add_argument("--cube", default=str(SHARED / "worldcereal_preprocessed_inputs.nc"))
    p.add_argument("--label-column", default="sampling_label")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--ks", nargs="+", default=["5", "10", "all"])
    p.add_argument("--min-per-class", type=int, default=20)
    p.add_argument("--block-size-m", type=float, default=10000.0)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--n-pixels", type=int, default=10000)
    p.add_argument("--points-epochs", type=int, default=10)
    p.add_argument("--points-repeats", type=int, default=10)
    p.add_argument("--points-cube-pixels", type=int, default=2000)
    p.add_argument("--points-lr", type=float, default=3e-4)
    p.add_argument("--variants", nargs="+", default=["cube", "cube+points"], choices=["cube", "cube+points"])
    p.add_argument("--set", action="append", default=[], help="override of the pretraining config (KEY=VALUE)")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def _pretrain(args, run: Path, seed: int, exclude: list[str] | None = None, init: Path | None = None) -> Path:
    """The cube pretraining (``init`` None) or its continuation on the points outside ``exclude``."""
    if (run / "weights" / "weights.json").is_file():
        return run / "weights"
    sets = [f"corpus.roots=[{args.cube}]", "corpus.nodata=65535", f"corpus.sampler.n_pixels={args.n_pixels}",
            f"epochs={args.epochs}", f"seed={seed}", *args.set]
    if init is not None:
        sets += [f"init={init}", f"corpus.sampler.n_pixels={args.points_cube_pixels}", f"epochs={args.points_epochs}",
                 f"lr={args.points_lr}", f"corpus.table={args.table}", "corpus.id_column=sample_id",
                 f"corpus.table_repeats={args.points_repeats}", f"corpus.exclude_ids=[{', '.join(exclude)}]",
                 "corpus.bands=[B02, B03, B04, B05, B06, B07, B08, B11, B12]"]
    cfg = load_config(SeriesPretrainConfig, None, overrides=sets)
    pretrain_series(cfg, run, progress=False)
    return run / "weights"


def _evaluate(args, samples, seed: int, seeds: int, weights: Path | None, name: str, baselines) -> dict:
    from eossl.catalog.sensors import load_sensor

    loaded = None if weights is None else load_series_encoder(
        weights, load_sensor(samples.sensor).wavelengths(samples.bands))
    rows, notes = evaluate_series(samples, ks=[k if k == "all" else int(k) for k in args.ks], seeds=seeds, seed=seed,
                                  block_size_m=args.block_size_m, min_per_class=args.min_per_class,
                                  baselines=baselines, pretrained=None if loaded is None else loaded.model,
                                  pretrained_name=name,
                                  pretrained_norm=None if loaded is None else series_normalization(
                                      loaded.info, samples.sensor, samples.bands), progress=False)
    return notes.to_dict(rows)


def _merge(parts: list[dict]) -> list[dict]:
    """Rows of per-seed evaluations joined: per_seed lists concatenated, means and CIs recomputed."""
    merged: dict[tuple, dict] = {}
    for out in parts:
        for r in out["results"]:
            key = (r["model"], r["protocol"], r["k"])
            row = merged.setdefault(key, {"model": r["model"], "protocol": r["protocol"], "k": r["k"],
                                          "per_seed": []})
            row["per_seed"] += r["per_seed"]
    for row in merged.values():
        row.update({c: mean_ci95([s[c] for s in row["per_seed"]]) for c in SCORES})
    return list(merged.values())


def _paired(rows: list[dict], pretrained: str) -> list[dict]:
    from scipy import stats

    out = []
    pre = {(r["protocol"], r["k"]): r for r in rows if r["model"] == pretrained}
    for r in rows:
        if r["model"].startswith("pretrained") or r["model"] == pretrained:
            continue
        for (_proto, k), p in pre.items():
            if k != r["k"]:
                continue
            a = {s["seed"]: s["macro_f1"] for s in p["per_seed"]}
            b = {s["seed"]: s["macro_f1"] for s in r["per_seed"]}
            common = sorted(set(a) & set(b))
            if len(common) < 2:
                continue
            d = np.array([a[s] - b[s] for s in common])
            half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
            out.append({"pretrained": pretrained, "baseline": f"{r['model']} / {r['protocol']}", "k": k,
                        "mean": float(d.mean()), "ci95": half, "n": int(d.size)})
    return out


def table(rows: list[dict], score: str = "macro_f1") -> str:
    ks = list(dict.fromkeys(r["k"] for r in rows))
    keys = list(dict.fromkeys((r["model"], r["protocol"]) for r in rows))
    lines = [f"| {score} % (95% CI) | " + " | ".join(f"k = {k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for m, p in keys:
        cells = []
        for k in ks:
            r = next((r for r in rows if (r["model"], r["protocol"], r["k"]) == (m, p, k)), None)
            cells.append("-" if r is None else f"{100 * r[score]['mean']:.1f} ± {100 * (r[score]['ci95'] or 0):.1f}"
                         f" (n={r[score]['n']})")
        lines.append(f"| {m} / {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    samples = read_series_table(args.table, "sentinel2-l2a", label_column=args.label_column, id_column="sample_id")
    # the cube has no B8A: the encoder reads the bands both have
    samples = read_series_table(args.table, "sentinel2-l2a", label_column=args.label_column, id_column="sample_id",
                                bands=[b for b in samples.bands if b != "B8A"])
    rows, paired, timings = [], [], {}
    baselines = ["raw_series", "random_forest", "phenology", "random_init", "fusion"]
    t = time.time()
    cube = _pretrain(args, args.out / "pretrain-cube", 0)
    timings["pretrain cube (s)"] = round(time.time() - t, 1)
    if "cube" in args.variants:
        weights = cube
        out = _evaluate(args, samples, 0, args.seeds, weights, "(cube)", baselines)
        rows += out["results"]
        paired += _paired(out["results"], "pretrained (cube)") + _paired(out["results"], "raw series + pretrained (cube)")
        (args.out / "cube.json").write_text(json.dumps(out, indent=1, default=str))
    if "cube+points" in args.variants:
        kept, _ = _keep_classes(samples, args.min_per_class)
        splits, _ = series_splits(kept, [k if k == "all" else int(k) for k in args.ks], args.seeds, 0, 0.3,
                                  args.block_size_m)
        parts = []
        t = time.time()
        for sp in splits:
            test_ids = [kept.ids[i] for i in sp["test"]]
            weights = _pretrain(args, args.out / f"pretrain-cube-points-seed{sp['seed']}", sp["seed"], test_ids, cube)
            parts.append(_evaluate(args, samples, sp["seed"], 1, weights, "(cube + train points)",
                                   ["fusion"] if "cube" in args.variants else baselines))
        timings["pretrain + evaluate cube+points, all seeds (s)"] = round(time.time() - t, 1)
        merged = _merge(parts)
        if "cube" in args.variants:      # its random-init fusion row (one init) is the cube variant's already
            merged = [r for r in merged if not r["model"].startswith("raw series + random-init")]
        rows += merged
        paired += _paired(rows, "pretrained (cube + train points)") + \
            _paired(rows, "raw series + pretrained (cube + train points)")
    result = {"rows": rows, "paired_macro_f1": paired, "timings": timings, "seconds": round(time.time() - start, 1),
              "settings": vars(args) | {"out": str(args.out)}}
    (args.out / "series_crops.json").write_text(json.dumps(result, indent=1, default=str))
    text = table(rows) + "\n\n" + table(rows, "overall_accuracy") + "\n\npaired macro-F1 differences (points):\n" + \
        "\n".join(f"{p['pretrained']} - {p['baseline']} k={p['k']}: {100 * p['mean']:+.1f} ± {100 * p['ci95']:.1f} "
                  f"(n={p['n']})" for p in paired)
    (args.out / "series_crops.md").write_text(text + "\n")
    print(text)
    print(f"\ntimings: {timings}; total {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
