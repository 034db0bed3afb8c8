"""Pixel-series extraction speed: ``open_stack`` + ``composite`` (all pixels at once) against a plain per-date
xarray loop (open each date, scale, mask with SCL, repeat the 20 m bands, accumulate per period, median, fill gaps
per pixel with ``np.interp``) that computes the same composite; the two must agree.

    .venv/bin/python benchmarks/bench_stack.py [--period 10D] [--repeats 3] [STACK_DIR ...]

Default data: the two shared WorldCereal stacks (``../shared/data/worldcereal_lpis_flanders{2018,2019}``).
Reports seconds (median of ``--repeats``), pixels/s (H x W composited series per second) and the process's peak
resident memory (``resource.getrusage``) after each phase.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eossl.catalog.quality import usable  # noqa: E402
from eossl.data.series.composite import composite, period_grid  # noqa: E402
from eossl.data.series.stack import open_stack  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = [SHARED / "worldcereal_lpis_flanders2018", SHARED / "worldcereal_lpis_flanders2019"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eossl_composite(folder: Path, period: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack = open_stack(folder)
    return stack, composite(stack, period)


def plain_loop(sources: list[str], bands: list[str], times: np.ndarray, period: str, shape: tuple[int, int]):
    """The baseline: one date at a time with xarray; returns (values (P, C, H, W), validity (P, H, W))."""
    dss = [xr.open_dataset(s, mask_and_scale=False) for s in sources]
    time_dim = "timestamp"
    starts, ends = period_grid(times, period)
    h, w = shape
    per_period = [[] for _ in starts]
    n_dates = np.zeros(len(starts), int)
    for t, when in enumerate(times):
        day = np.datetime64(when, "D")
        p = int(np.searchsorted(starts, day, side="right")) - 1
        planes, clear = {}, np.ones((h, w), bool)
        for ds in dss:
            step = ds.isel({time_dim: t}).load()
            k = h // step.sizes["y"]
            for var in step.data_vars:
                arr = step[var].values
                if arr.ndim != 2:
                    continue
                arr = np.repeat(np.repeat(arr, k, 0), k, 1)
                if var == "SCL":
                    clear &= usable("scl", arr)
                elif var in bands:
                    a = step[var].attrs
                    planes[var] = np.where(arr == a["_FillValue"], np.nan, arr * np.float32(a["scale_factor"]))
        cube = np.stack([planes[b] for b in bands]).astype(np.float32)
        cube[:, ~clear] = np.nan
        per_period[p].append(cube)
        n_dates[p] += 1
    med = np.full((len(starts), len(bands), h, w), np.nan, np.float32)
    validity = np.zeros((len(starts), h, w), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN slices: no valid observation
        for p, obs in enumerate(per_period):
            if obs:
                arr = np.stack(obs)
                med[p] = np.nanmedian(arr, axis=0)
                validity[p] = np.isfinite(arr).sum(axis=(0, 1)) / (len(obs) * len(bands))
    centre = (starts - starts[0]).astype(float) + (ends - starts).astype(float) / 2
    out = np.zeros_like(med)
    for c in range(len(bands)):
        for i in range(h):
            for j in range(w):
                s = med[:, c, i, j]
                ok = np.isfinite(s)
                if ok.any():
                    out[:, c, i, j] = np.interp(centre, centre[ok], s[ok])
    return out, validity


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stacks", nargs="*", type=Path, default=DEFAULT)
    p.add_argument("--period", default="10D")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for folder in args.stacks:
        if not folder.is_dir():
            print(f"skipped {folder}: not found")
            continue
        secs, (stack, comp) = timed(lambda f=folder: eossl_composite(f, args.period), args.repeats)
        t, c, h, w = stack.values.shape
        mem_eossl = peak_mb()
        base_secs, (vals, validity) = timed(lambda s=stack, shape=(h, w): plain_loop(s.sources, s.bands, s.times,
                                                                                     args.period, shape), 1)
        np.testing.assert_allclose(vals, comp.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(validity, comp.validity, rtol=1e-5, atol=1e-6)
        print(f"{folder.name}: {t} dates x {c} bands x {h}x{w} px -> {comp.values.shape[0]} periods of "
              f"{args.period} (composites agree)")
        print(f"  open_stack + composite  {secs:7.3f} s  {h * w / secs:10.0f} pixels/s  (median of {args.repeats}); "
              f"peak RSS {mem_eossl:.0f} MB")
        print(f"  plain xarray date loop  {base_secs:7.3f} s  {h * w / base_secs:10.0f} pixels/s; "
              f"peak RSS {peak_mb():.0f} MB")
        print(f"  speed-up {base_secs / secs:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
