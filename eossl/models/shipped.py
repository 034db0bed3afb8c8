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


# ---------------------------------------------------------------------------------------------------- shipping


def cpu_flags() -> list[str]:
    """The vector-instruction flags of this CPU that change what a training run computes or how fast (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if f.startswith(("avx", "amx", "fma")))


def _feature_gap(folder32: Path, folder16: Path, seed: int = 0) -> float:
    """Max |features(float16-stored) - features(float32)| of the recorded pool on a seeded batch of standardised
    random chips (float32 compute both)."""
    import torch

    from eossl.models.weights import load_weights

    a, b = load_weights(folder32).model.eval(), load_weights(folder16).model.eval()
    info = load_weights(folder32).info
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, info.in_chans, min(info.img_size, 64), min(info.img_size, 64), generator=g)
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def ship_weights(src: str | Path, name: str, *, description: str, reproduce: dict, licences: dict,
                 root: str | Path | None = None, fp16: bool = True, overwrite: bool = False,
                 atol: float = FP16_ATOL) -> dict:
    """Copy exported weights ``src`` into ``root/name`` as a shipped set and record it in ``root/index.json``:
    the backbone stored as float16 when its features stay within ``atol`` of float32 (else float32; the gap is
    measured on a seeded batch of standardised random chips, :func:`_feature_gap`),
    the model card rewritten with ``licences`` and ``reproduce``, every file's SHA-256. Returns the index record.
    Nothing in ``root`` changes on an error (written in a temporary folder, then renamed)."""
    import shutil
    import tempfile

    from safetensors.torch import load_file, save_file

    from eossl.models.cards import write_model_card
    from eossl.models.info import read_weights_info
    from eossl.models.pooling import pool_dim
    from eossl.models.weights import INFO_FILE, WEIGHTS_FILE, load_weights
    from eossl.runs import atomic_write, current_umask

    root, src = Path(root or SHIPPED_ROOT), Path(src)
    if not name or any(c in name for c in "/\\: "):
        raise ValueError(f"shipped weights name {name!r}: letters, digits, dots and dashes only")
    index = shipped_index(root)
    if name in index["weights"] and not overwrite:
        raise ValueError(f"{PREFIX}{name} is shipped already; give another name (or --overwrite)")
    info = read_weights_info(src)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o777 & ~current_umask())                 # mkdtemp's folder is private (0700); shipped weights are not
    try:
        state = load_file(str(src / WEIGHTS_FILE))
        gap = None
        if fp16:
            half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            atomic_write(tmp / WEIGHTS_FILE, lambda p: save_file(half, str(p), metadata={"arch": info.arch,
                                                                                        "storage": "float16"}))
            (tmp / INFO_FILE).write_text((src / INFO_FILE).read_text())
            gap = _feature_gap(src, tmp)
            if gap > atol:
                fp16 = False
        if not fp16:
            shutil.copyfile(src / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        info.extra = {**info.extra, "shipped": {"name": PREFIX + name, "storage": "float16" if fp16 else "float32",
                                                "fp16_max_abs_feature_diff": gap, "reproduce": reproduce,
                                                "licences": licences}}
        (tmp / INFO_FILE).write_text(json.dumps(_asdict(info), indent=2))
        model = load_weights(tmp).model
        write_model_card(tmp, info, WEIGHTS_FILE, pool_dim(model.backbone, info.feature_pool),
                         sum(p.numel() for p in model.parameters()))
        del model
        files = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        record = {"description": description, "arch": info.arch, "bands": info.bands, "ssl_method": info.ssl_method,
                  "feature_pool": info.feature_pool, "storage": "float16" if fp16 else "float32",
                  "fp16_max_abs_feature_diff": gap, "reproduce": reproduce, "licences": licences, "files": files}
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index["weights"][name] = record
    from eossl.runs import write_text

    write_text(root / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return record


def _asdict(info) -> dict:
    from dataclasses import asdict

    return asdict(info)
