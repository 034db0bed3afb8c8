"""Exported weights as ONNX: the backbone in its recorded feature pool, a dynamic batch axis, checked against
PyTorch with onnxruntime before it is kept.

>>> export_onnx("my-weights")        # -> my-weights/backbone.onnx, item.json gains the ONNX model asset

Needs ``onnx`` and ``onnxruntime`` (``pip install "eossl[onnx]"``). The check runs a random batch of
``check_batch`` chips through both and requires ``|onnx - torch| <= atol + rtol * |torch|`` everywhere
(defaults 1e-4 and 1e-4: float32 kernels of two runtimes, measured at about 2e-6 on ResNet-18).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["ONNX_FILE", "export_onnx"]

ONNX_FILE = "backbone.onnx"


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """torch.onnx.export with the batch axis dynamic: the torch.export-based exporter (torch's default since 2.9),
    else the deprecated TorchScript-based one for a model torch.export cannot capture."""
    names = dict(input_names=["chips"], output_names=["features"], opset_version=18)
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False, **names,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    except Exception as err:                       # torch.export's failures have no common base class
        log.warning("torch.export could not capture the model (%s); using the TorchScript-based ONNX exporter",
                    str(err).splitlines()[0][:200])
        torch.onnx.export(model, (x,), str(path), dynamo=False, **names,
                          dynamic_axes={"chips": {0: "batch"}, "features": {0: "batch"}})


def export_onnx(weights: str | Path, check_batch: int = 3, atol: float = 1e-4, rtol: float = 1e-4,
                seed: int = 0) -> Path:
    """Write ``WEIGHTS/backbone.onnx`` ((B, C, H, W) standardised chips -> (B, D) features in the recorded pool)
    after checking it against the PyTorch model; add it to ``WEIGHTS/item.json`` as a second ``mlm:model`` asset.
    Raises ValueError naming the largest difference when the runtimes disagree (nothing is written then)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError('ONNX export needs onnx and onnxruntime: pip install "eossl[onnx]"') from err
    from eossl.models.cards import ITEM_FILE
    from eossl.models.weights import load_weights
    from eossl.runs import atomic_write

    weights = Path(weights)
    loaded = load_weights(weights)
    model, info = loaded.model.eval(), loaded.info
    if (weights / ONNX_FILE).exists():
        raise ValueError(f"{weights / ONNX_FILE} exists; exported files are never overwritten")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(check_batch, info.in_chans, info.img_size, info.img_size, generator=g)
    tmp = weights / f".{ONNX_FILE}.tmp"
    try:
        with torch.no_grad():
            _export(model, x[:2], tmp)        # batch 2: torch.export specialises a size-1 dimension
            expected = model(x).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        err = np.abs(got - expected)
        if got.shape != expected.shape or not (err <= atol + rtol * np.abs(expected)).all():
            raise ValueError(f"the ONNX model of {weights} disagrees with PyTorch on a random batch: shape "
                             f"{got.shape} vs {expected.shape}, largest difference {err.max():.3g} (allowed "
                             f"{atol} + {rtol} x |value|); keep the safetensors weights")
        tmp.replace(weights / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    item_path = weights / ITEM_FILE
    if item_path.is_file():
        item = json.loads(item_path.read_text())
        item["assets"]["onnx"] = {"href": f"./{ONNX_FILE}", "type": "application/octet-stream; application=onnx",
                                  "title": f"backbone in the {info.feature_pool} pool (ONNX, dynamic batch)",
                                  "roles": ["mlm:model"], "mlm:artifact_type": "onnx"}
        atomic_write(item_path, lambda p: p.write_text(json.dumps(item, indent=2)))
    return weights / ONNX_FILE
