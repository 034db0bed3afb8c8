"""Series extraction speed: geometries read together per tile against one read per geometry (the baseline).

``eossl extract`` reads, for every acquisition, one window per tile of :data:`eossl.data.extract.TILE_PX` pixels
holding the geometries whose windows start in it, and cuts each geometry's pixels out of it. The baseline is the
same function with ``TILE_PX = 1``: every point its own read per acquisition (what extraction did before). Both
run in this process on the same index and points, alternately, ``--repeats`` times (median seconds reported), and
must give the same table.

    .venv/bin/python benchmarks/bench_extract.py [--grid-m 40] [--repeats 3]

Default data: the WorldCereal sample datacube (100 x 100 px at 10 m, 12 monthly S2 L2A composites), points every
``--grid-m`` metres (:func:`eossl.data.extract.grid_points`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eossl.catalog.build import IndexOptions, build_index  # noqa: E402
from eossl.data.series import extract  # noqa: E402

CUBE = Path(__file__).resolve().parents[2] / "shared" / "data" / "worldcereal" / "worldcereal_preprocessed_inputs.nc"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cube", default=str(CUBE))
    p.add_argument("--sensor", default="sentinel2-l2a")
    p.add_argument("--nodata", type=float, default=65535)
    p.add_argument("--grid-m", type=float, default=40.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    index = build_index([args.cube], args.sensor, IndexOptions(nodata=args.nodata), progress=False)
    points = extract.grid_points(index, args.grid_m)
    tile = extract.TILE_PX
    times: dict[str, list[float]] = {"per tile": [], "per geometry (baseline)": []}
    tables = {}
    for _ in range(args.repeats):
        for name, px in (("per tile", tile), ("per geometry (baseline)", 1)):
            extract.TILE_PX = px
            t = time.perf_counter()
            tables[name] = extract.extract_series(index, points, id_column="sample_id", progress=False)
            times[name].append(time.perf_counter() - t)
    extract.TILE_PX = tile
    pd.testing.assert_frame_equal(tables["per tile"], tables["per geometry (baseline)"])
    n = len(points) * len(index)
    print(f"{len(points)} points x {len(index)} acquisitions ({n} values per band), TILE_PX = {tile}; median of "
          f"{args.repeats}:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:26s} {med:8.2f} s  ({n / med:9.0f} point-dates/s; min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"  speed-up: {statistics.median(times['per geometry (baseline)']) / statistics.median(times['per tile']):.1f}x"
          " (tables identical)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
