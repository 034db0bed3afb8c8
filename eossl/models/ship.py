"""Shipping exported weights with eossl (maintainers): :func:`ship_weights` copies a run's weights into
``eossl/weights/<name>/`` and records them in ``index.json`` (read by :mod:`eossl.models.shipped`)."""

from __future__ import annotations

import json
from pathlib import Path

from eossl.models import shipped
from eossl.models.shipped import FP16_ATOL, INDEX_FILE, PREFIX, sha256, shipped_index

__all__ = ["cpu_flags", "ship_weights"]


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

    root, src = Path(root or shipped.SHIPPED_ROOT), Path(src)      # read at call time (tests point it elsewhere)
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
