"""Scene stacks read as they come (NetCDF folder, GeoTIFF folder, datacube), checked value by value against what
the test wrote; bad input as errors or named warnings; the shared WorldCereal stacks' shapes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from stack_data import (
    B10,
    B20,
    EPSG,
    ORIGIN,
    SHARED,
    expected,
    make_raw,
    write_datacube,
    write_nc,
    write_tiff_folder,
    write_wc_folder,
)

from eossl.data.series.stack import SceneStack, StackWarning, open_stack


@pytest.fixture
def wc(tmp_path):
    """A WorldCereal-style folder (10 m + 20 m + S1 + labels) and what was written."""
    labels = np.zeros((8, 8), dtype="uint16")
    labels[:4] = 1200
    return write_wc_folder(tmp_path / "wc", make_raw(), with_s1=True, labels=labels)


def _open(path, **kw) -> SceneStack:
    with warnings.catch_warnings():
        warnings.simplefilter("error", StackWarning)       # clean input: no warning at all
        return open_stack(path, **kw)


def test_netcdf_folder_values_scaled_fill_and_clouds_masked(wc):
    stack = _open(wc.files["10m"].parent)
    values, valid, order = expected(wc)
    assert stack.sensor == "sentinel2-l2a"            # from the SCL variable
    assert stack.bands == order and stack.values.shape == (4, 10, 8, 8) and stack.values.dtype == np.float32
    np.testing.assert_array_equal(stack.valid, valid)
    np.testing.assert_array_equal(stack.values, values)
    np.testing.assert_array_equal(stack.times, wc.dates)
    assert stack.gsd == 10 and stack.crs == f"EPSG:{EPSG}" and stack.bounds == (ORIGIN[0], ORIGIN[1] - 80, ORIGIN[0] + 80,
                                                                                 ORIGIN[1])
    assert not stack.valid[0, :, 2:4, 2:4].any()      # SCL 9 at 20 m pixel (1, 1): four 10 m pixels, every band
    assert not stack.valid[0, 1, 0, 0] and stack.valid[0, 0, 0, 0]   # fill 0 in B03 only
    b05 = stack.bands.index("B05")                     # 20 m band repeated on the 10 m grid
    np.testing.assert_array_equal(stack.values[3, b05, :2, :2], np.float32(wc.r20[3, 0, 0, 0]) * np.float32(1e-4))
    assert sorted(map(str, stack.sources)) == sorted(str(wc.files[k]) for k in ("10m", "20m"))


def test_s1_only_with_include_s1_on_its_own_dates(wc):
    plain = _open(wc.files["10m"].parent)
    s1 = _open(wc.files["10m"].parent, include_s1=True)
    assert s1.bands == plain.bands + ["VV", "VH"] and len(s1.times) == 8
    optical = np.isin(s1.times, plain.times)
    np.testing.assert_array_equal(s1.values[optical, :10], plain.values)
    assert not s1.valid[~optical, :10].any() and not s1.valid[optical, 10:].any()
    assert s1.observed[~optical, 10:].all() and not s1.observed[~optical, :10].any()
    assert -20.0 <= s1.values[~optical, 10:].min() and s1.values[~optical, 10:].max() <= 5.0   # dB after scale


def test_gsd_20m_averages_the_10m_bands(wc):
    stack = _open(wc.files["10m"].parent, gsd=20, bands=["B04", "swir16"])
    assert stack.bands == ["B04", "B11"] and stack.values.shape == (4, 2, 4, 4)
    np.testing.assert_allclose(stack.values[3, 0, 0, 0], wc.r10[3, 2, :2, :2].astype(np.float32).mean() * 1e-4,
                               rtol=1e-5)


def test_sensor_required_when_nothing_names_it(tmp_path):
    raw = make_raw()
    write_nc(tmp_path / "a.nc", raw.r10, B10, 10, raw.dates)
    with pytest.raises(ValueError, match="pass sensor="):
        open_stack(tmp_path)
    assert open_stack(tmp_path, sensor="sentinel2-l2a").bands == B10


@pytest.mark.parametrize("layout", ["per_band", "stacked"])
def test_tiff_folder_gives_the_same_stack(wc, tmp_path, layout):
    write_tiff_folder(tmp_path / "tif", wc, layout)
    ref = _open(wc.files["10m"].parent)
    stack = _open(tmp_path / "tif", sensor=None if layout == "per_band" else "sentinel2-l2a")
    assert stack.bands == ref.bands and stack.crs == ref.crs and stack.transform == ref.transform
    np.testing.assert_array_equal(stack.times.astype("datetime64[s]"), ref.times.astype("datetime64[s]"))
    np.testing.assert_array_equal(stack.valid, ref.valid)
    np.testing.assert_array_equal(stack.values, ref.values)


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_datacube_file_gives_the_same_stack(wc, tmp_path, fmt):
    cube = write_datacube(tmp_path / "cube.nc", wc)
    if fmt == "zarr":
        with xr.open_dataset(cube, mask_and_scale=False) as ds:
            ds.to_zarr(tmp_path / "cube.zarr")
        cube = tmp_path / "cube.zarr"
    ref = _open(wc.files["10m"].parent)
    stack = _open(cube)
    assert stack.bands == ref.bands
    np.testing.assert_array_equal(stack.valid, ref.valid)
    np.testing.assert_array_equal(stack.values, ref.values)


# ------------------------------------------------------------------------------------------------ bad input


def test_unsorted_dates_sorted_and_warned(tmp_path):
    raw = make_raw()
    rev = slice(None, None, -1)
    write_nc(tmp_path / "a10.nc", raw.r10[rev], B10, 10, raw.dates[rev])
    write_nc(tmp_path / "a20.nc", raw.r20[rev], B20, 20, raw.dates[rev], scl=raw.scl[rev])
    with pytest.warns(StackWarning, match="not in time order"):
        stack = open_stack(tmp_path)
    np.testing.assert_array_equal(stack.times, raw.dates)
    np.testing.assert_array_equal(stack.values, expected(raw)[0])


def test_duplicated_dates_merged_first_valid_wins(tmp_path):
    raw = make_raw(n_dates=3)
    dates = raw.dates.copy()
    dates[1] = dates[0] + np.timedelta64(2, "h")       # two acquisitions on one day
    raw.dates = dates
    write_wc_folder(tmp_path, raw)
    with pytest.warns(StackWarning, match="observed more than once"):
        stack = open_stack(tmp_path)
    assert len(stack.times) == 2 and stack.times[0] == dates[0]
    exp, ok, _ = expected(raw)
    first_ok = ok[0]
    merged = np.where(first_ok, exp[0], exp[1])        # the first date where valid, else the second's
    np.testing.assert_array_equal(stack.values[0], merged)
    np.testing.assert_array_equal(stack.valid[0], ok[0] | ok[1])
    assert not ok[0, :, 2:4, 2:4].any() and stack.valid[0, :, 2:4, 2:4].all()   # cloud in the first: second's


def test_all_cloud_date_kept_invalid_and_counted(tmp_path):
    raw = make_raw()
    raw.scl[2] = 9
    write_wc_folder(tmp_path, raw)
    with pytest.warns(StackWarning, match="1 of 4 dates have no usable pixel"):
        stack = open_stack(tmp_path)
    assert len(stack.times) == 4 and not stack.valid[2].any() and stack.valid[1].any()


def test_band_missing_on_some_dates_warned_and_invalid(tmp_path):
    raw = make_raw()
    write_nc(tmp_path / "a10.nc", raw.r10, B10, 10, raw.dates)
    write_nc(tmp_path / "a20.nc", raw.r20[[0, 2, 3]], B20, 20, raw.dates[[0, 2, 3]], scl=raw.scl[[0, 2, 3]])
    with pytest.warns(StackWarning, match=r"bands B05, B06, B07, B8A, B11, B12 missing on 1 of 4 dates \(2018-03-"):
        stack = open_stack(tmp_path)
    b05 = stack.bands.index("B05")
    assert not stack.valid[1, b05].any() and not stack.observed[1, b05] and stack.valid[1, 0].any()


@pytest.mark.parametrize("what", ["extent", "crs"])
def test_grids_that_do_not_line_up_are_an_error(tmp_path, what):
    raw = make_raw()
    write_nc(tmp_path / "a10.nc", raw.r10, B10, 10, raw.dates)
    if what == "extent":
        write_nc(tmp_path / "a20.nc", raw.r20, B20, 20, raw.dates, scl=raw.scl, origin=(ORIGIN[0] + 20, ORIGIN[1]))
        match = r"a20\.nc covers bounds \(500020.*a10\.nc covers \(500000"
    else:
        write_nc(tmp_path / "a20.nc", raw.r20, B20, 20, raw.dates, scl=raw.scl, epsg=32632)
        match = r"a20\.nc is in EPSG:32632 but .*a10\.nc is in EPSG:32631"
    with pytest.raises(ValueError, match=match):
        open_stack(tmp_path)


def test_non_integer_resolution_ratio_is_an_error(tmp_path):
    raw = make_raw()
    write_nc(tmp_path / "a10.nc", raw.r10, B10, 10, raw.dates)
    with pytest.raises(ValueError, match="not an integer ratio"):
        open_stack(tmp_path, sensor="sentinel2-l2a", gsd=15)


def test_no_image_files_is_a_file_not_found_error(tmp_path, wc):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image files in .*empty: looked for NetCDF/Zarr .*GeoTIFF"):
        open_stack(tmp_path / "empty", sensor="sentinel2-l2a")
    only_labels = tmp_path / "labels_only"
    only_labels.mkdir()
    wc.files["labels"].rename(only_labels / wc.files["labels"].name)
    with pytest.raises(FileNotFoundError, match="no time dimension"):
        open_stack(only_labels, sensor="sentinel2-l2a")


def test_undated_geotiff_is_an_error(tmp_path):
    from conftest import write_geotiff

    write_geotiff(tmp_path / "scene_B02.tif", np.ones((8, 8), "uint16"), 10, origin=ORIGIN, crs="EPSG:32631")
    with pytest.raises(ValueError, match="no date in the file name or its tags"):
        open_stack(tmp_path, sensor="sentinel2-l2a")


# ------------------------------------------------------------------------------------------------ shared data


@pytest.mark.parametrize("year, dates", [("2018", 118), ("2019", 72)])
def test_shared_worldcereal_stacks(year, dates):
    folder = SHARED / f"worldcereal_lpis_flanders{year}"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    with pytest.warns(StackWarning, match="no usable pixel"):
        stack = open_stack(folder)
    assert stack.values.shape == (dates, 10, 64, 64) and stack.gsd == 10 and stack.crs == "EPSG:32631"
    assert stack.bands == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert np.all(np.diff(stack.times) > np.timedelta64(0))
    refl = stack.values[stack.valid]
    assert 0 < np.median(refl) < 0.5 and refl.max() <= 2.0          # reflectance, not DN
    with xr.open_dataset(next(folder.glob("S2_L2A_10m_*.nc"))) as ds:   # scaled by xarray: the same values
        np.testing.assert_allclose(stack.values[5, 0], np.nan_to_num(ds["B02"].values[5]) * stack.valid[5, 0],
                                   rtol=1e-6, atol=1e-7)
