"""Remote rasters: a catalog pointing at COGs over HTTP (GDAL /vsicurl/), served from loopback by the test."""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from eossl.catalog.build import build_index
from eossl.data.reader import ChipReader


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (what GDAL's /vsicurl/ needs)."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not os.path.isfile(path) or not match:
            return super().send_head()
        size = os.path.getsize(path)
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        fh = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        fh.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return _Limited(fh, end - start + 1)


class _Limited:
    def __init__(self, fh, n):
        self.fh, self.n = fh, n

    def read(self, size=-1):
        size = self.n if size < 0 else min(size, self.n)
        data = self.fh.read(size)
        self.n -= len(data)
        return data

    def close(self):
        self.fh.close()


@pytest.fixture
def served_scene(tmp_path):
    rng = np.random.default_rng(3)
    for band, res in (("B02", 10), ("B04", 10), ("B05", 20)):
        n = 640 // res
        with rasterio.open(tmp_path / f"T33UUP_20210704T101031_{band}.tif", "w", driver="GTiff", width=n, height=n,
                           count=1, dtype="uint16", crs="EPSG:32633", transform=from_origin(600000, 5500000, res, res),
                           tiled=True, blockxsize=32, blockysize=32, compress="deflate") as dst:
            dst.write(rng.integers(1, 10000, (n, n), dtype=np.uint16), 1)
    handler = functools.partial(_RangeHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_index_and_read_cogs_over_http(served_scene):
    local, base = served_scene
    urls = [f"/vsicurl/{base}/T33UUP_20210704T101031_{b}.tif" for b in ("B02", "B04", "B05")]
    index = build_index(urls, "sentinel2-l2a", progress=False)
    assert len(index) == 1 and sorted(index.assets(0)) == ["B02", "B04", "B05"]
    assert index.assets(0)["B02"].path.startswith("/vsicurl/http://127.0.0.1")
    assert str(index.datetime(0).date()) == "2021-07-04"
    chip = ChipReader(index, bands=["B04", "B02"]).read(0, (600100, 5499400, 600420, 5499720), gsd=10)
    with rasterio.open(local / "T33UUP_20210704T101031_B04.tif") as ds:
        expected = ds.read(1, window=((28, 60), (10, 42))).astype(np.float32) * np.float32(1e-4)
    assert chip.mask.all()
    np.testing.assert_array_equal(chip.image[0], expected)


def test_missing_remote_file_is_a_clear_error(served_scene):
    _, base = served_scene
    with pytest.raises(ValueError, match="cannot read raster /vsicurl/.*B99.tif"):
        build_index([f"/vsicurl/{base}/T33UUP_20210704T101031_B99.tif"], "sentinel2-l2a", progress=False)
