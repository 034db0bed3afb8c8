"""Does pretraining pay off? Frozen features of exported weights against the cheap baselines, paired draw by draw.

For each k (labels per class) and each pool, on the same ``--draws`` few-label splits of EuroSAT-MS (default: the
built-in 200-chip sample):

* ``band statistics``: per-band mean, std and percentiles (65 numbers for 13 bands);
* ``RCF``: 512 random convolutional features (MOSAIKS, torchgeo's ``RCF``), filters drawn from the training
  chips of each draw (never from test chips);
* ``random init (pool)``: the same architecture randomly initialised, ``--random-inits`` init seeds, the
  accuracy of each draw averaged over them;
* ``pretrained (pool)``: each ``--weights`` folder (e.g. training seeds of one recipe) and their draw-wise mean;
* fusion rows: band statistics concatenated with the pretrained / random-init features.

Paired differences (pretrained mean over weights folders minus a baseline, draw by draw) come with t-based 95%
CIs over the draws. The pool recorded in the weights (``feature_pool``) is marked; choose pools before looking.

    .venv/bin/python benchmarks/pretrain_quality.py --weights RUN1/weights [RUN2/weights ...] \\
        [--pools last multi stats0 stats1 stats2] [--ks 5 10] [--draws 20] [--random-inits 3] [--out q.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing eossl

from eossl.data.labelled.folders import load_eurosat  # noqa: E402
from eossl.data.normalization import Normalization  # noqa: E402
from eossl.evaluate.baselines import band_statistics, rcf_features  # noqa: E402
from eossl.evaluate.features import extract_features  # noqa: E402
from eossl.evaluate.fewshot import few_shot_probe  # noqa: E402
from eossl.evaluate.metrics import mean_ci95  # noqa: E402
from eossl.models.backbones import create_backbone  # noqa: E402
from eossl.models.weights import backbone_for, read_weights_info  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, nargs="+", required=True, help="exported weights folders (same arch)")
    p.add_argument("--pools", nargs="+", default=None, help="feature pools (default: last multi stats0 stats1 "
                   "stats2 and the weights' recorded feature_pool)")
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-inits", type=int, default=3)
    p.add_argument("--root", type=Path, help="EuroSAT-MS class folders (default: the built-in sample)")
    p.add_argument("--out", type=Path, help="write all figures as JSON here")
    return p.parse_args(argv)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = 100 * (np.asarray(a) - np.asarray(b))
    return float(d.mean()), mean_ci95(d)["ci95"] or float("nan")


def quality(weights: list[Path], pools: list[str] | None = None, ks=(5, 10), draws: int = 20, seed: int = 0,
            random_inits: int = 3, root: Path | None = None, baselines: dict | None = None) -> dict:
    """Every row of the module docstring for exported ``weights`` (same arch and bands): a JSON-ready dict.

    ``baselines``: a dict kept across calls (e.g. one per benchmark process) in which the accuracies of the rows
    that do not depend on the weights (band statistics, RCF, the random inits and their fusion rows) are memoised
    by architecture, bands, k, draws, seed and pool; they are computed from the same seeds either way."""
    infos = [read_weights_info(w) for w in weights]
    arch, bands = infos[0].arch, infos[0].bands
    if any(i.arch != arch or i.bands != bands for i in infos):
        raise SystemExit("every weights folder must hold the same architecture and bands")
    recorded = {getattr(i, "feature_pool", None) for i in infos} - {None}
    pools = pools or list(dict.fromkeys(["last", "multi", "stats0", "stats1", "stats2", *sorted(recorded)]))
    chips = load_eurosat(root, bands=bands)
    size = int(chips.images.shape[-1])
    catalog = Normalization.of_sensor(chips.sensor, chips.bands)
    stats = band_statistics(chips.images, chips.mask)
    models = [backbone_for(chips.bands, chips.sensor, size, weights=w) for w in weights]
    memo = {} if baselines is None else baselines
    randoms, random_feats = [], {}

    def random_features(p):
        if not randoms:
            for s in range(seed, seed + random_inits):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(s)
                    randoms.append(create_backbone(arch, len(bands), img_size=size))
        if p not in random_feats:
            random_feats[p] = [extract_features(r, chips.images, catalog, pool=p) for r in randoms]
        return random_feats[p]

    def baseline(name, k, compute):          # compute() runs at once (k, p bound as defaults for the linter)
        key = (arch, tuple(bands), size, k, draws, seed, random_inits, name)
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def probe(features, k):
        return np.asarray(few_shot_probe(features, chips.labels, per_class=k, draws=draws, seed=seed,
                                         classes=chips.classes).accuracies)

    out = {"weights": [str(w) for w in weights], "arch": arch, "pools": pools, "recorded_pool": sorted(recorded),
           "draws": draws, "seed": seed, "random_inits": random_inits, "k": {}}
    feats = {p: [extract_features(m, chips.images, norm, pool=p) for m, norm in models] for p in pools}
    rcf = "RCF 512 (training-split filters)"
    for k in ks:
        acc = {"band statistics": baseline("band statistics", k, lambda k=k: probe(stats, k)),
               rcf: baseline(rcf, k, lambda k=k: probe(
                   lambda train: rcf_features(chips.images, chips.images[train], catalog, seed=seed), k))}
        rows = {}
        for p in pools:
            pre = feats[p]
            per_w = [probe(f, k) for f in pre]
            acc[f"pretrained ({p})"] = np.mean(per_w, axis=0)
            acc[f"random init ({p})"] = baseline(f"random init ({p})", k, lambda k=k, p=p: np.mean(
                [probe(f, k) for f in random_features(p)], axis=0))
            acc[f"band stats + pretrained ({p})"] = np.mean([probe(np.hstack([stats, f]), k) for f in pre], axis=0)
            acc[f"band stats + random init ({p})"] = baseline(f"band stats + random init ({p})", k, lambda k=k, p=p: np.mean(
                [probe(np.hstack([stats, f]), k) for f in random_features(p)], axis=0))
            rows[p] = {"per_weights": [float(100 * a.mean()) for a in per_w],
                       "vs band statistics": paired(acc[f"pretrained ({p})"], acc["band statistics"]),
                       "vs RCF": paired(acc[f"pretrained ({p})"], acc[rcf]),
                       "vs random init": paired(acc[f"pretrained ({p})"], acc[f"random init ({p})"]),
                       "fusion vs band statistics": paired(acc[f"band stats + pretrained ({p})"],
                                                           acc["band statistics"]),
                       "fusion vs random fusion": paired(acc[f"band stats + pretrained ({p})"],
                                                         acc[f"band stats + random init ({p})"])}
        out["k"][k] = {"accuracy": {n: (float(100 * a.mean()), mean_ci95(100 * a)["ci95"] or float("nan")) for n, a in acc.items()},
                       "paired": rows,
                       # the pretrained rows' accuracy per draw (fractions), to pair two quality() calls draw by draw
                       "per_draw": {p: [float(a) for a in acc[f"pretrained ({p})"]] for p in pools}}
    return out


def tables(out: dict) -> str:
    """Markdown tables of :func:`quality`'s result."""
    lines = []
    for k, res in out["k"].items():
        lines += [f"\n## k = {k} labels per class ({out['draws']} draws, seed {out['seed']}; "
                  f"{len(out['weights'])} weights, {out['random_inits']} random inits)\n",
                  "| features | accuracy % (95% CI) |", "|---|---:|"]
        lines += [f"| {n} | {m:.1f} ± {ci:.1f} |" for n, (m, ci) in res["accuracy"].items()]
        lines += ["", "| pool | pretrained per weights | - band stats | - RCF | - random init | fusion - band stats "
                  "| fusion - random fusion |", "|---|---|---:|---:|---:|---:|---:|"]
        for p, r in res["paired"].items():
            mark = " (recorded)" if p in out["recorded_pool"] else ""
            cells = " | ".join(f"{m:+.1f} ± {ci:.1f}" for m, ci in list(r.values())[1:])
            lines.append(f"| {p}{mark} | {' / '.join(f'{v:.1f}' for v in r['per_weights'])} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = quality(args.weights, args.pools, args.ks, args.draws, args.seed, args.random_inits, args.root)
    print(tables(out))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
