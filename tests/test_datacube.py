"""xarray datacubes (NetCDF) behind the index and the chip reader: the real WorldCereal cube and synthetic ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from eossl.catalog.build import IndexOptions, build_index
from eossl.catalog.index import open_index
from eossl.data.reader import ChipReader

WC_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]


def reflectance(dn, scale=1e-4, offset=0.0) -> np.ndarray:
    """DN -> value exactly as the reader computes it (float32 throughout)."""
    return np.asarray(dn).astype(np.float32) * np.float32(scale) + np.float32(offset)


# ====================================================================================== WorldCereal cube


@pytest.fixture(scope="module")
def wc_index(worldcereal_nc, tmp_path_factory):
    index = build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    return open_index(index.save(tmp_path_factory.mktemp("wc") / "index.parquet"))


@pytest.fixture(scope="module")
def wc_cube(worldcereal_nc):
    with xr.open_dataset(worldcereal_nc, engine="h5netcdf") as ds:
        yield ds.load()


def test_worldcereal_index_has_one_row_per_month(wc_index):
    assert len(wc_index) == 12
    assert set(wc_index.frame["kind"]) == {"cube"} and set(wc_index.frame["sensor"]) == {"sentinel2-l2a"}
    months = [wc_index.datetime(i) for i in range(12)]
    assert months == list(pd.date_range("2020-11-01", periods=12, freq="MS", tz="UTC"))
    assert wc_index.ids[0] == "worldcereal_preprocessed_inputs.nc@2020-11-01"
    assert set(wc_index.frame["crs"]) == {"EPSG:32631"} and set(wc_index.frame["res"]) == {10.0}
    for i in range(12):
        assets = wc_index.assets(i)
        assert list(assets) == WC_BANDS
        assert all(a.nodata == 65535 and a.time_index == i for a in assets.values())
        assert assets["B04"].var == "S2-L2A-B04" and assets["B04"].band_sel is None
    minx, miny, maxx, maxy = wc_index.bounds(0)
    assert (maxx - minx, maxy - miny) == (1000.0, 1000.0)            # 100 x 100 px at 10 m


def test_worldcereal_dec_and_jan_are_empty(wc_index):
    valid = dict(zip([wc_index.datetime(i).strftime("%Y-%m") for i in range(12)], wc_index.frame["valid_fraction"]))
    assert valid["2020-12"] == 0.0 and valid["2021-01"] == 0.0
    assert all(v > 0.9 for k, v in valid.items() if k not in ("2020-12", "2021-01"))
    dec = wc_index.position("worldcereal_preprocessed_inputs.nc@2020-12-01")
    assert not wc_index.valid_mask(dec).any()
    with pytest.raises(ValueError, match="holds no valid pixel"):
        ChipReader(wc_index).read(dec, wc_index.bounds(dec))


def test_worldcereal_select_by_month(wc_index):
    june = wc_index.position("worldcereal_preprocessed_inputs.nc@2021-06-01")
    assert list(wc_index.select(time_range=("2021-06-01", None))) == list(range(june, 12))
    # the July composite (2021-07-01T00:00) is not in a June range
    assert list(wc_index.select(time_range=("2021-06-01", "2021-06-30"))) == [june]


@pytest.mark.parametrize("month, row, col", [("2021-06-01", 10, 20), ("2020-11-01", 0, 0), ("2021-10-01", 68, 68)])
def test_worldcereal_chip_equals_raw_values(wc_index, wc_cube, month, row, col):
    i = wc_index.position(f"worldcereal_preprocessed_inputs.nc@{month}")
    ti = list(pd.DatetimeIndex(wc_cube["t"].values)).index(pd.Timestamp(month))
    assert np.all(np.diff(wc_cube["y"].values) < 0)                     # this cube is north-up
    minx, _, _, maxy = wc_index.bounds(i)
    bounds = (minx + col * 10, maxy - (row + 32) * 10, minx + (col + 32) * 10, maxy - row * 10)
    chip = ChipReader(wc_index, resampling="nearest").read(i, bounds)
    assert chip.image.shape == (9, 32, 32) and chip.mask.all()
    assert chip.time == pd.Timestamp(month, tz="UTC")
    for c, band in enumerate(chip.bands):
        raw = wc_cube[f"S2-L2A-{band}"].isel(t=ti, y=slice(row, row + 32), x=slice(col, col + 32)).values
        assert raw.dtype == np.uint16 and (raw != 65535).all()
        np.testing.assert_array_equal(chip.image[c], reflectance(raw), err_msg=band)


def test_worldcereal_reprojected_read(wc_index):
    i = wc_index.position("worldcereal_preprocessed_inputs.nc@2021-06-01")
    minx, miny, maxx, maxy = wc_index.bounds(i)
    inner = (minx + 200, miny + 200, maxx - 200, maxy - 200)
    reader = ChipReader(wc_index, bands=["B04", "B08"])
    native = reader.read(i, inner)
    chip = reader.read(i, transform_bounds("EPSG:32631", "EPSG:4326", *inner), crs="EPSG:4326", size=60)
    assert chip.mask.all()
    # the lon/lat box covers a little more than the inner UTM box; measured relative difference of the band
    # means: B04 1.7 %, B08 0.14 %
    np.testing.assert_allclose(chip.image.mean(axis=(1, 2)), native.image.mean(axis=(1, 2)), rtol=0.03)


# ====================================================================================== synthetic cubes

X0, Y0 = 500000.0, 4999800.0        # west, south edges of the synthetic grid (EPSG:32631)
NY, NX = 20, 30


def _coords(res=10.0, south_up=True):
    x = X0 + res / 2 + res * np.arange(NX)
    y = Y0 + res / 2 + res * np.arange(NY)                 # ascending: row 0 is the southern edge
    return x, (y if south_up else y[::-1])


def _spatial_ref(epsg=32631):
    return xr.DataArray(np.int32(0), attrs={"crs_wkt": CRS.from_epsg(epsg).to_wkt()})


@pytest.fixture
def band_dim_cube(tmp_path):
    """(time, band, y, x) uint16 cube, band coordinate B02/B03/B04/B08, y ascending (south-up)."""
    rng = np.random.default_rng(7)
    data = rng.integers(1, 10000, size=(2, 4, NY, NX), dtype=np.uint16)
    data[1, :, :3, :] = 0                                  # nodata along the southern edge of the 2nd date
    x, y = _coords()
    ds = xr.Dataset({"reflectance": (("time", "band", "y", "x"), data), "spatial_ref": _spatial_ref()},
                    coords={"time": pd.to_datetime(["2021-03-01", "2021-04-01"]),
                            "band": ["B02", "B03", "B04", "B08"], "y": y, "x": x})
    path = tmp_path / "cube.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path, data


def test_band_dimension_cube_is_indexed(band_dim_cube):
    path, _ = band_dim_cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    assert len(index) == 2 and index.ids == ["cube.nc@2021-03-01", "cube.nc@2021-04-01"]
    assert index.crs(0) == "EPSG:32631" and index.res(0) == 10.0
    assert index.bounds(0) == pytest.approx((X0, Y0, X0 + 10 * NX, Y0 + 10 * NY))
    assets = index.assets(1)
    assert list(assets) == ["B02", "B03", "B04", "B08"]
    assert assets["B08"].var == "reflectance" and assets["B08"].band_sel == "B08" and assets["B08"].time_index == 1
    assert index.frame["valid_fraction"].iloc[0] == 1.0
    assert index.frame["valid_fraction"].iloc[1] == pytest.approx(17 / 20)
    mask = index.valid_mask(1)                              # north row first: the empty rows are at the bottom
    assert mask[:17].all() and not mask[17:].any()


def test_south_up_cube_reads_north_row_first(band_dim_cube):
    path, data = band_dim_cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    reader = ChipReader(index, bands=["nir", "B02", "green"], resampling="nearest")
    chip = reader.read(0, index.bounds(0))
    assert chip.image.shape == (3, NY, NX) and chip.mask.all()
    for c, b in enumerate([3, 0, 1]):                       # B08, B02, B03 in the file's band coordinate
        np.testing.assert_array_equal(chip.image[c], reflectance(data[0, b, ::-1, :]))
    # a window in the north-west corner: file rows NY-1 .. NY-8 (y ascending), columns 0 .. 9
    sub = reader.read(0, (X0, Y0 + 10 * (NY - 8), X0 + 100, Y0 + 10 * NY))
    np.testing.assert_array_equal(sub.image[1], reflectance(data[0, 0, NY - 8:, :10][::-1]))
    # the second date: nodata (0) rows at the south edge are masked, and come last
    second = reader.read(1, index.bounds(1))
    assert second.mask[:17].all() and not second.mask[17:].any()
    np.testing.assert_array_equal(second.image[1, :17], reflectance(data[1, 0, ::-1, :][:17]))


def test_north_up_cube_with_band_variables_and_no_time(tmp_path):
    rng = np.random.default_rng(8)
    x, y = _coords(south_up=False)
    b04 = rng.integers(1, 10000, size=(NY, NX), dtype=np.uint16)
    b8a = rng.integers(1, 10000, size=(NY, NX), dtype=np.uint16)
    ds = xr.Dataset({"S2_B04": (("y", "x"), b04, {"grid_mapping": "crs"}),
                     "S2_B8A": (("y", "x"), b8a, {"grid_mapping": "crs"}),
                     "SCL": (("y", "x"), np.zeros((NY, NX), np.uint8)),
                     "crs": _spatial_ref(32632)}, coords={"y": y, "x": x})
    path = tmp_path / "single.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    assert index.ids == ["single.nc"] and index.datetime(0) is None and index.crs(0) == "EPSG:32632"
    assert list(index.assets(0)) == ["B04", "B8A"]
    chip = ChipReader(index, bands=["B8A", "B04"]).read(0, index.bounds(0))
    np.testing.assert_array_equal(chip.image[0], reflectance(b8a))
    np.testing.assert_array_equal(chip.image[1], reflectance(b04))


def test_cube_with_scale_factor_is_read_as_decoded_values(tmp_path):
    rng = np.random.default_rng(9)
    x, y = _coords(south_up=False)
    dn = rng.integers(1, 10000, size=(1, NY, NX), dtype=np.uint16)
    values = dn * 1e-4
    values[0, 0, 0] = np.nan                                # written as the _FillValue 0
    ds = xr.Dataset({"B03": (("t", "y", "x"), values), "spatial_ref": _spatial_ref()},
                    coords={"t": pd.to_datetime(["2021-05-01"]), "y": y, "x": x})
    path = tmp_path / "scaled.nc"
    ds.to_netcdf(path, engine="h5netcdf",
                 encoding={"B03": {"scale_factor": 1e-4, "_FillValue": np.uint16(0), "dtype": "uint16"}})
    with xr.open_dataset(path, engine="h5netcdf") as check:
        decoded = check["B03"].values[0]
    assert np.isnan(decoded[0, 0]) and decoded.dtype.kind == "f"
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    asset = index.assets(0)["B03"]
    assert (asset.scale, asset.offset) == (1.0, 0.0)       # already in reflectance: not scaled again
    chip = ChipReader(index, bands=["B03"]).read(0, index.bounds(0))
    assert not chip.mask[0, 0] and chip.mask.sum() == NY * NX - 1
    np.testing.assert_allclose(chip.image[0][chip.mask], decoded[chip.mask], rtol=1e-6)
    np.testing.assert_allclose(chip.image[0][chip.mask], dn[0][chip.mask] * 1e-4, rtol=1e-5)


def test_cube_errors(tmp_path):
    x, y = _coords()
    data = np.ones((NY, NX), np.uint16)
    no_crs = tmp_path / "nocrs.nc"
    xr.Dataset({"B02": (("y", "x"), data)}, coords={"y": y, "x": x}).to_netcdf(no_crs, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"datacube .*nocrs\.nc has no CRS"):
        build_index([str(no_crs)], "sentinel2-l2a", progress=False)

    no_band = tmp_path / "noband.nc"
    xr.Dataset({"elevation": (("y", "x"), data), "spatial_ref": _spatial_ref()},
               coords={"y": y, "x": x}).to_netcdf(no_band, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"noband\.nc: no variable or band coordinate names a sentinel2-l2a band"
                                         r".*\['elevation', 'spatial_ref'\]"):
        build_index([str(no_band)], "sentinel2-l2a", progress=False)

    irregular = tmp_path / "irregular.nc"
    xi = x.copy()
    xi[5:] += 3.0
    xr.Dataset({"B02": (("y", "x"), data), "spatial_ref": _spatial_ref()},
               coords={"y": y, "x": xi}).to_netcdf(irregular, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"irregular\.nc: x/y coordinates are not regularly spaced"):
        build_index([str(irregular)], "sentinel2-l2a", progress=False)

    wrong_dims = tmp_path / "dims.nc"
    xr.Dataset({"B02": (("row", "col"), data), "spatial_ref": _spatial_ref()}).to_netcdf(wrong_dims,
                                                                                         engine="h5netcdf")
    with pytest.raises(ValueError, match=r"dims\.nc: variable 'B02' has dimensions \('row', 'col'\)"):
        build_index([str(wrong_dims)], "sentinel2-l2a", progress=False)

    with pytest.raises(FileNotFoundError, match=r"datacube not found: .*absent\.nc"):
        build_index([str(tmp_path / "absent.nc")], "sentinel2-l2a", progress=False)

    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netcdf file" * 20)
    with pytest.raises(ValueError, match=r"cannot open datacube .*garbage\.nc"):
        build_index([str(garbage)], "sentinel2-l2a", progress=False)


def test_cube_deleted_after_indexing(band_dim_cube):
    path, _ = band_dim_cube
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"datacube not found: .*cube\.nc"):
        ChipReader(index).read(0, index.bounds(0))


def test_cube_ids_are_unique_for_steps_on_the_same_day(tmp_path):
    x, y = _coords(south_up=False)
    data = np.ones((2, NY, NX), np.uint16)
    data[1] = 2
    ds = xr.Dataset({"B02": (("time", "y", "x"), data), "spatial_ref": _spatial_ref()},
                    coords={"time": pd.to_datetime(["2021-03-01T10:00", "2021-03-01T22:00"]), "y": y, "x": x})
    path = tmp_path / "sameday.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    index = build_index([str(path)], "sentinel2-l2a", progress=False)
    assert len(index) == 2
    # eossl bug (datacube.py scan_cube): the id is f"{file}@{day}", so two steps on one day share an id and
    # position(id) / reads by id return the first step
    assert len(set(index.ids)) == 2
    assert index.position(index.ids[1]) == 1


def test_zarr_cube_reads_like_the_netcdf_one(worldcereal_nc, tmp_path):
    import warnings

    pytest.importorskip("zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr v3 warns about string dtypes of the `crs` variable
        xr.open_dataset(worldcereal_nc, engine="h5netcdf").to_zarr(tmp_path / "wc.zarr", mode="w")
    nc = build_index([str(worldcereal_nc)], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    zr = build_index([str(tmp_path / "wc.zarr")], "sentinel2-l2a", IndexOptions(nodata=65535), progress=False)
    assert len(zr) == 12 and zr.ids[5] == "wc.zarr@2021-04-01"
    window = (nc.bounds(5)[0] + 100, nc.bounds(5)[1] + 100, nc.bounds(5)[0] + 420, nc.bounds(5)[1] + 420)
    a, b = ChipReader(nc).read(5, window), ChipReader(zr).read(5, window)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
