"""eossl's own pretrained weights, shipped with the package: ``eossl:<name>`` wherever weights are accepted
(``evaluate --weights``, ``finetune --weights``, ``predict``, ``model.init``, ``stack.image_weights``,
``load_backbone("eossl:<name>")``), offline.

Each set is a folder ``eossl/weights/<name>/`` as ``eossl export`` writes it (``backbone.safetensors``,
``weights.json``, the model card ``README.md``, the STAC MLM ``item.json``), the backbone stored as float16 when
its features stay within ``FP16_ATOL`` of the float32 ones. ``eossl/weights/index.json`` lists every set with the
SHA-256 of each file, a description, what reproduces it (commit, config, seed, torch version, CPU flags,
precision) and the licences. :func:`shipped_dir` checks the checksums before a set is read: a changed or truncated
file (or a Git LFS pointer instead of the file) is an error naming it, never silently different features.

>>> shipped_names()                                   # ["resnet18-s2-l1c-vicreg-quality"]
>>> shipped_dir("eossl:resnet18-s2-l1c-vicreg-quality")    # the verified folder
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

__all__ = ["PREFIX", "FP16_ATOL", "SHIPPED_ROOT", "is_shipped", "resolve_shipped", "shipped_dir", "shipped_index",
           "shipped_names", "sha256"]

PREFIX = "eossl:"
SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "weights"
INDEX_FILE = "index.json"
FP16_ATOL = 1e-3
_VERIFIED: dict[tuple, bool] = {}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_index(root: str | Path | None = None) -> dict:
    """``index.json`` of the shipped weights (``{"weights": {name: record}}``; empty without a file)."""
    path = Path(root or SHIPPED_ROOT) / INDEX_FILE
    if not path.is_file():
        return {"weights": {}}
    return json.loads(path.read_text())


def shipped_names(root: str | Path | None = None) -> list[str]:
    return sorted(shipped_index(root)["weights"])


def is_shipped(spec) -> bool:
    return isinstance(spec, (str, Path)) and str(spec).startswith(PREFIX)


def shipped_dir(spec: str, root: str | Path | None = None, verify: bool = True) -> Path:
    """The folder of the shipped weights ``eossl:<name>`` (or ``<name>``), its files checked against the
    checksums of ``index.json`` (once per process while they are unchanged)."""
    root = Path(root or SHIPPED_ROOT)
    name = str(spec).removeprefix(PREFIX)
    index = shipped_index(root)["weights"]
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=3, cutoff=0.4)
        raise ValueError(f"no shipped weights {PREFIX}{name}" + (f"; did you mean {', '.join(PREFIX + c for c in close)}?"
                                                                  if close else "")
                         + f" (shipped: {', '.join(PREFIX + n for n in sorted(index)) or 'none'}; `eossl weights "
                           f"list`)")
    folder = root / name
    if verify:
        _verify(folder, index[name].get("files", {}))
    return folder


def _verify(folder: Path, files: dict[str, str]) -> None:
    if not files:
        raise ValueError(f"{folder}: index.json lists no file checksums for these weights; re-ship them "
                         f"(`eossl weights ship`)")
    for fname, expected in files.items():
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the shipped weights are incomplete; reinstall eossl or "
                                    f"`git checkout -- {path}`")
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, expected)
        if _VERIFIED.get(key):
            continue
        actual = sha256(path)
        if actual != expected:
            raise ValueError(f"{path}: SHA-256 {actual[:16]}... does not match the shipped {expected[:16]}... (a "
                             f"changed, truncated or Git LFS pointer file); reinstall eossl or `git checkout -- "
                             f"{path}`")
        _VERIFIED[key] = True


def resolve_shipped(spec):
    """``spec`` as a weights folder: ``eossl:<name>`` -> its verified folder; anything else unchanged."""
    return str(shipped_dir(spec)) if is_shipped(spec) else spec
