"""Compare two runs of the demo pipeline (e.g. before and after a refactor): pretrained weights, the evaluation
table and results, the fine-tuning metrics and the class map.

    .venv/bin/python benchmarks/compare_demo.py OLD/runs/demo NEW/runs/demo
"""
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from safetensors.numpy import load_file


def one(d: Path, pattern: str) -> Path:
    found = sorted(d.glob(pattern))
    assert len(found) == 1, (d, pattern, found)
    return found[0]


a, b = Path(sys.argv[1]), Path(sys.argv[2])
wa, wb = (load_file(one(d, "pretrain-*/weights/backbone.safetensors")) for d in (a, b))
diff = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
print("weights: same keys", wa.keys() == wb.keys(), "max |diff|", diff)
ta, tb = (one(d, "evaluate-*/table.txt").read_text() for d in (a, b))
print("evaluate table.txt identical:", ta == tb)
ra, rb = (json.loads(one(d, "evaluate-*/metrics.json").read_text())["results"] for d in (a, b))
print("evaluate results identical:", ra == rb, len(ra), "rows")
fa, fb = (json.loads(one(d, "finetune-*/metrics.json").read_text()) for d in (a, b))
print("finetune metrics identical:", fa["metrics"] == fb["metrics"], "OA", fa["metrics"]["overall_accuracy"], fb["metrics"]["overall_accuracy"])
with rasterio.open(one(a, "predict-*/map.tif")) as x, rasterio.open(one(b, "predict-*/map.tif")) as y:
    ma, mb = x.read(1), y.read(1)
    print("class map identical:", ma.shape == mb.shape and bool((ma == mb).all()), ma.shape, "pixels differing",
          int((ma != mb).sum()) if ma.shape == mb.shape else "n/a")
print(ta)
