"""Chip cache: windows of a sampler pre-extracted into sharded, memory-mappable ``.npy`` files.

Layout of a cache directory::

    manifest.json          sampler config, source index hash, bands, dtype, shards written so far, complete flag
    shard-00000/           image.npy (N, C, H, W), mask.npy (N, H, W) bool, [image2.npy, mask2.npy for pairs],
                           meta.json (windows, times, acquisitions)

A shard is written into a hidden temporary directory and renamed into place; the manifest is rewritten
atomically after each shard. An interrupted run resumes at the first missing shard. Opening a cache against
an index or sampler config other than the one it was made from is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from bisect import bisect_right
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm.auto import tqdm

from eossl.catalog.index import SceneIndex
from eossl.data.chips.dataset import ChipDataset, CollatedBatch, collate, sample_from_arrays
from eossl.data.chips.samplers import SamplerBase
from eossl.data.reader import ChipReader
from eossl.data.windows import Window

__all__ = ["write_cache", "CachedChipDataset", "read_manifest", "CacheError"]

FORMAT = "eossl-chip-cache"
VERSION = 1


class CacheError(ValueError):
    """A cache cannot be used as asked (stale, incomplete, or not a cache)."""


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_manifest(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / "manifest.json"
    if not path.is_file():
        raise CacheError(f"{cache_dir} is not a chip cache (no manifest.json); create one with `eossl cache`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise CacheError(f"{path}: not an eossl chip cache manifest")
    return manifest


def _identity(index: SceneIndex, sampler: SamplerBase, reader: ChipReader, dtype: str) -> dict:
    return {"format": FORMAT, "version": VERSION, "index_hash": index.content_hash(), "sampler": sampler.config(),
            "bands": list(reader.bands), "resampling": reader.resampling, "dtype": dtype}


def _check_same(manifest: dict, expected: dict, where) -> None:
    for key in ("index_hash", "sampler", "bands", "resampling", "dtype"):
        if json.dumps(manifest.get(key), sort_keys=True) != json.dumps(expected.get(key), sort_keys=True):
            raise CacheError(
                f"chip cache {where} was made with a different {key} ({manifest.get(key)!r} vs now "
                f"{expected.get(key)!r}); it is stale: write the cache to a new directory, or delete {where}")


def write_cache(out: str | Path, index: SceneIndex, sampler: SamplerBase, reader: ChipReader,
                shard_size: int = 1024, dtype: str = "float32", num_workers: int = 0,
                progress: bool = True) -> dict:
    """Write (or resume) the cache of ``sampler``'s epoch-0 windows (every rank's) into ``out``."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"cache dtype must be float32 or float16, got {dtype!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    windows = sampler.global_windows(0)
    expected = _identity(index, sampler, reader, dtype)
    if (out / "manifest.json").exists():
        manifest = read_manifest(out)
        _check_same(manifest, expected, out)
    else:
        manifest = {**expected, "index_path": index.path, "total": len(windows), "shard_size": shard_size,
                    "size": sampler.size, "pairs": any(len(w.acquisitions) > 1 for w in windows),
                    "shards": [], "complete": False}
        _atomic_json(out / "manifest.json", manifest)
    _remove_strays(out, {s["name"] for s in manifest["shards"]})
    size = manifest["shard_size"]
    starts = list(range(len(manifest["shards"]) * size, len(windows), size))
    dataset = ChipDataset(reader)
    bar = tqdm(total=len(windows), initial=len(manifest["shards"]) * size, desc=f"caching {out.name}",
               unit="chip", disable=not progress)
    for start in starts:
        chunk = windows[start:start + size]
        loader = DataLoader(dataset, batch_size=min(64, len(chunk)), sampler=chunk, num_workers=num_workers,
                            collate_fn=collate)
        name = f"shard-{start // size:05d}"
        _write_shard(out, name, loader, chunk, dtype, bar)
        manifest["shards"].append({"name": name, "count": len(chunk)})
        manifest["complete"] = start + size >= len(windows)
        _atomic_json(out / "manifest.json", manifest)
    bar.close()
    if not starts and not manifest["complete"]:
        manifest["complete"] = True
        _atomic_json(out / "manifest.json", manifest)
    return manifest


def _remove_strays(out: Path, keep: set[str]) -> None:
    for p in out.iterdir():
        if p.is_dir() and (p.name.startswith(".shard-") or (p.name.startswith("shard-") and p.name not in keep)):
            shutil.rmtree(p)


def _write_shard(out: Path, name: str, loader: DataLoader, chunk: list[Window], dtype: str, bar) -> None:
    tmp = out / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    parts: dict[str, list] = {"image": [], "mask": [], "image2": [], "mask2": []}
    times, acqs = [], []
    for batch in loader:
        for key in parts:
            if key in batch:
                parts[key].append(batch[key].numpy())
        times.extend(zip(batch["time"], batch.get("time2", [None] * len(batch["time"]))))
        acqs.extend(batch["acquisition"])
        bar.update(len(batch["time"]))
    for key, arrays in parts.items():
        if arrays:
            data = np.concatenate(arrays)
            np.save(tmp / f"{key}.npy", data.astype(dtype) if key.startswith("image") else data)
    meta = {"windows": [w.to_json() for w in chunk], "times": times, "acquisitions": acqs}
    (tmp / "meta.json").write_text(json.dumps(meta))
    os.replace(tmp, out / name)


class CachedChipDataset(Dataset):
    """Samples from a complete cache, in the same dict form as live reads; memory-mapped, per process."""

    def __init__(self, cache_dir: str | Path, index: SceneIndex | None = None, sampler: SamplerBase | None = None,
                 reader: ChipReader | None = None):
        self.dir = Path(cache_dir)
        self.manifest = read_manifest(self.dir)
        m = self.manifest
        if not m["complete"]:
            raise CacheError(f"chip cache {self.dir} is incomplete ({len(m['shards'])} shards of "
                             f"{-(-m['total'] // m['shard_size'])}); run `eossl cache` again to resume it")
        if index is not None and m["index_hash"] != index.content_hash():
            raise CacheError(f"chip cache {self.dir} was made from another index (hash {m['index_hash']}, "
                             f"index {index.path} has {index.content_hash()}); it is stale: rebuild the cache")
        if sampler is not None and reader is not None:
            _check_same(m, _identity(index, sampler, reader, m["dtype"]), self.dir)
        self.bands = list(m["bands"])
        self.counts = [s["count"] for s in m["shards"]]
        self.offsets = list(np.cumsum([0] + self.counts))
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._meta: dict[str, dict] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, name: str) -> tuple[dict[str, np.ndarray], dict]:
        if name not in self._arrays:
            d = self.dir / name
            if not d.is_dir():
                raise CacheError(f"chip cache {self.dir}: shard {name} is missing; rebuild the cache")
            self._arrays[name] = {p.stem: np.load(p, mmap_mode="r") for p in sorted(d.glob("*.npy"))}
            self._meta[name] = json.loads((d / "meta.json").read_text())
        return self._arrays[name], self._meta[name]

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a cache of {len(self)} chips")
        s = bisect_right(self.offsets, i) - 1
        name = self.manifest["shards"][s]["name"]
        arrays, meta = self._shard(name)
        j = i - self.offsets[s]
        window = Window.from_json(meta["windows"][j])
        images = [np.array(arrays["image"][j], dtype=np.float32)]
        masks = [np.array(arrays["mask"][j])]
        times = list(meta["times"][j])
        acqs = [meta["acquisitions"][j]]
        if "image2" in arrays:
            images.append(np.array(arrays["image2"][j], dtype=np.float32))
            masks.append(np.array(arrays["mask2"][j]))
        return sample_from_arrays(images, masks, window, times, acqs)

    def __getitems__(self, indices: list[int]) -> CollatedBatch:
        """A whole batch at once (the DataLoader calls this): one copy per chip from the memory map into the
        batch tensors, which live in shared memory inside a worker. Use with :class:`eossl.data.dataset.Collate`."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"indices out of range for a cache of {len(self)} chips")
        shard_of = np.searchsorted(self.offsets, idx, side="right") - 1
        names = [s["name"] for s in self.manifest["shards"]]
        first = self._shard(names[shard_of[0]])[0]
        shared = get_worker_info() is not None
        n = len(idx)
        out = {key: _alloc((n, *first[key].shape[1:]), torch.float32 if key.startswith("image") else torch.bool,
                           shared) for key in first}
        views = {key: t.numpy() for key, t in out.items()}
        bounds, crs, labels = np.zeros((n, 4)), [None] * n, np.full(n, -1, dtype=np.int64)
        times, times2, acqs = [None] * n, [None] * n, [None] * n
        for s in np.unique(shard_of):
            arrays, meta = self._shard(names[s])
            for p in np.flatnonzero(shard_of == s):
                j = int(idx[p] - self.offsets[s])
                for key, view in views.items():
                    view[p] = arrays[key][j]
                w = meta["windows"][j]
                bounds[p], crs[p] = w["bounds"], w["crs"]
                labels[p] = -1 if w["label"] is None else w["label"]
                times[p], times2[p] = meta["times"][j]
                acqs[p] = meta["acquisitions"][j]
        batch = CollatedBatch(out)
        batch.update(time=times, bounds=torch.from_numpy(bounds), crs=crs, acquisition=acqs,
                     label=torch.from_numpy(labels))
        if "image2" in out:
            batch["time2"] = times2
        return batch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"], state["_meta"] = {}, {}
        return state


def _alloc(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype)
    return t.share_memory_() if shared else t

