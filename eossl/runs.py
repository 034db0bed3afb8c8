"""Run directories: one per run, never overwritten."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

FAILED_FILE = "FAILED.json"
_STARTED = {"config.yaml", FAILED_FILE}          # what a run directory holds before its run has produced anything


def new_run_dir(parent: str | Path, name: str) -> Path:
    """Create ``parent/<name>-<timestamp>[-k]`` (a fresh directory; an existing one is never reused)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = parent / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {parent}")


@contextlib.contextmanager
def marks_failure(run_dir: str | Path, resume_hint: str | None = None):
    """Leave ``RUN_DIR/FAILED.json`` (status, error, time) when the body raises, so a run directory that a
    failed or interrupted command leaves behind says so; a later successful attempt in the same directory (a
    resumed run) removes the marker. A failure before the run wrote anything but its ``config.yaml`` (bad input
    found while starting: a missing folder, a wrong band) removes the directory instead: nothing is lost, and no
    empty FAILED run is left behind. The exception propagates unchanged."""
    run_dir = Path(run_dir)
    try:
        yield
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        if not interrupted and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= _STARTED:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            log.warning("%s: failed before the run wrote anything; the directory is removed", run_dir)
            raise
        record = {"status": "interrupted" if interrupted else "failed", "error": f"{type(err).__name__}: {err}",
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if resume_hint:
            record["resume"] = resume_hint
        if run_dir.is_dir():
            write_json(run_dir / FAILED_FILE, record)
            log.warning("%s: run %s; marked in %s%s", run_dir, record["status"], FAILED_FILE,
                        f" ({resume_hint})" if resume_hint else " (delete the directory when done with it)")
        raise
    (run_dir / FAILED_FILE).unlink(missing_ok=True)


def environment(device: str, seed: int) -> dict:
    """Versions, platform, device and seed of a run (``environment.json`` / ``metrics.json``)."""
    import platform
    import time

    import torch

    from eossl import __version__

    env = {"eossl": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "device": device, "seed": seed, "threads": torch.get_num_threads(),
           "cuda_devices": torch.cuda.device_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for name in ("lightning", "timm", "kornia", "torchgeo", "rasterio"):
        try:
            env[name] = __import__(name).__version__
        except Exception:  # an optional reader missing is not an error here
            env[name] = None
    return env


def current_umask() -> int:
    mask = os.umask(0o022)          # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp)`` on a hidden temporary file beside ``path`` (same suffix, so writers that infer the
    format from it work), then rename it into place: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())      # some writers (safetensors) create their file 0600: the umask's mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically (temporary file, then rename)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    write_text(path, json.dumps(data, indent=2, default=str))
