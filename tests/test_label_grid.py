"""Label rasters on the stack grid (NetCDF variable, GeoTIFF, majority over finer labels, errors), legends, and
parcels (8-connected regions, fragments, buffers), including the parcel counts of the shared stacks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from affine import Affine
from conftest import write_geotiff
from rasterio.crs import CRS
from stack_data import ORIGIN, SHARED, write_labels_nc

from eossl.data.labelled.label_grid import LabelWarning, load_label_grid, majority
from eossl.data.labelled.parcels import buffer_mask, find_parcels
from eossl.data.series.stack import StackWarning, open_stack
from eossl.data.series.stack_layers import StackGrid

LEGEND = "name,croptype,ewoc_code,landcover\nUnknown,0,00-00-00-000-0,0\nMaize,1200,11-01-06-000-0,11\n" \
         "Permanent grass crops,9120,13-00-00-000-0,13\n"


def _grid(res=10.0, n=8, epsg=32631, origin=ORIGIN) -> StackGrid:
    return StackGrid(crs=CRS.from_epsg(epsg), transform=Affine(res, 0, origin[0], 0, -res, origin[1]), height=n,
                     width=n)


@pytest.fixture
def ct():
    codes = np.zeros((8, 8), dtype="uint16")
    codes[:4, :5] = 1200
    codes[5:, 2:] = 9120
    return codes


def test_netcdf_variable_named_or_the_single_integer_one(tmp_path, ct):
    path = write_labels_nc(tmp_path / "labels.nc", ct)                 # CT and LC: ambiguous
    with pytest.raises(ValueError, match=r"integer variables: \['CT', 'LC'\].*pass variable="):
        load_label_grid(path, _grid())
    labels = load_label_grid(path, _grid(), variable="CT")
    np.testing.assert_array_equal(labels.codes, ct)
    np.testing.assert_array_equal(labels.labelled, ct > 0)
    assert labels.classes == [1200, 9120] and labels.names == {1200: "1200", 9120: "9120"}
    assert not labels.mixed.any()
    single = load_label_grid(write_labels_nc(tmp_path / "one.nc", ct, extra=False), _grid())
    assert single.variable == "CT"
    with pytest.raises(ValueError, match="has no variable 'XX'"):
        load_label_grid(path, _grid(), variable="XX")


def test_geotiff_labels_and_coarser_labels_repeated(tmp_path, ct):
    tif = write_geotiff(tmp_path / "labels.tif", ct, 10, origin=ORIGIN, crs="EPSG:32631")
    np.testing.assert_array_equal(load_label_grid(tif, _grid()).codes, ct)
    coarse = write_geotiff(tmp_path / "coarse.tif", ct[::2, ::2], 20, origin=ORIGIN, crs="EPSG:32631")
    labels = load_label_grid(coarse, _grid())
    np.testing.assert_array_equal(labels.codes, np.repeat(np.repeat(ct[::2, ::2], 2, 0), 2, 1))


def test_finer_labels_aggregated_by_majority_with_mixed_flags(tmp_path):
    fine = np.array([[1, 1, 1, 2, 0, 0, 3, 3],
                     [1, 1, 1, 1, 2, 2, 3, 0]] + [[0] * 8] * 6, dtype="uint16")
    labels = load_label_grid(write_geotiff(tmp_path / "l.tif", fine, 10, origin=ORIGIN, crs="EPSG:32631"),
                             _grid(res=20, n=4))
    assert labels.codes.shape == (4, 4)
    np.testing.assert_array_equal(labels.codes[0], [1, 1, 0, 3])     # 2 unlabelled vs 2 of class 2: unlabelled
    np.testing.assert_array_equal(labels.mixed[0], [False, True, True, True])
    assert not labels.mixed[1:].any() and not labels.labelled[1:].any()
    codes, mixed = majority(np.array([[5, 5], [7, 0]]), 2, nodata=0)
    assert codes[0, 0] == 5 and mixed[0, 0]


def test_labels_over_a_20m_only_stack(tmp_path, ct):
    from stack_data import make_raw, write_wc_folder

    raw = write_wc_folder(tmp_path, make_raw(), labels=ct)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StackWarning)
        stack = open_stack(tmp_path, bands=["B05", "B11", "B12"])
    assert stack.gsd == 20 and stack.values.shape[2:] == (4, 4)
    labels = load_label_grid(raw.files["labels"], stack, variable="CT")
    assert labels.codes.shape == (4, 4) and labels.codes[0, 0] == 1200 and labels.codes[3, 3] == 9120
    assert labels.mixed[0, 2] and labels.mixed[2, 1] and not labels.mixed[0, 0] and not labels.mixed[2, 0]


def test_crs_extent_and_missing_crs_errors(tmp_path, ct):
    other = write_geotiff(tmp_path / "utm32.tif", ct, 10, origin=ORIGIN, crs="EPSG:32632")
    with pytest.raises(ValueError, match=r"labels .*utm32\.tif are in EPSG:32632 but the stack is in EPSG:32631"):
        load_label_grid(other, _grid())
    shifted = write_geotiff(tmp_path / "shifted.tif", ct, 10, origin=(ORIGIN[0] + 10, ORIGIN[1]), crs="EPSG:32631")
    with pytest.raises(ValueError, match=r"shifted\.tif cover bounds \(500010.*the stack covers \(500000"):
        load_label_grid(shifted, _grid())
    nocrs_nc = write_labels_nc(tmp_path / "nocrs.nc", ct, epsg=None, extra=False)
    with pytest.raises(ValueError, match="has no CRS.*set label_crs: 'EPSG"):
        load_label_grid(nocrs_nc, _grid())
    nocrs_tif = write_geotiff(tmp_path / "nocrs.tif", ct, 10, origin=ORIGIN, crs=None)
    with pytest.raises(ValueError, match="has no CRS.*set label_crs: 'EPSG"):
        load_label_grid(nocrs_tif, _grid())
    assert load_label_grid(nocrs_nc, _grid(), label_crs="EPSG:32631").classes == [1200, 9120]
    with pytest.raises(ValueError, match="not an integer ratio"):
        load_label_grid(write_geotiff(tmp_path / "r15.tif", np.ones((16, 16), "uint8"), 5, origin=ORIGIN,
                                      crs="EPSG:32631"), _grid(res=80 / 6, n=6))


def test_legend_columns_found_by_content_and_missing_codes_warned(tmp_path, ct):
    csv = tmp_path / "legend.csv"
    csv.write_text(LEGEND)
    path = write_labels_nc(tmp_path / "labels.nc", ct, extra=False)
    labels = load_label_grid(path, _grid(), legend=csv)
    assert labels.names == {1200: "Maize", 9120: "Permanent grass crops"}
    ct2 = ct.copy()
    ct2[0, 7] = 4242
    tsv = tmp_path / "legend.tsv"
    tsv.write_text("code\tlabel\n1200\tmaize\n9120\tgrass\n")
    with pytest.warns(LabelWarning, match=r"label codes \[4242\] .* not in the legend"):
        labels = load_label_grid(write_labels_nc(tmp_path / "l2.nc", ct2, extra=False), _grid(), legend=tsv,
                                 code_column="code", name_column="label")
    assert labels.names == {1200: "maize", 4242: "4242", 9120: "grass"}
    with pytest.raises(ValueError, match="no column 'nope'"):
        load_label_grid(path, _grid(), legend=csv, code_column="nope")


def test_parcels_are_8_connected_regions_of_one_label_with_fragments_left_out():
    codes = np.zeros((10, 10), dtype=np.int64)
    codes[0:3, 0:3] = 1           # 9 px
    codes[3:5, 3:5] = 1           # 4 px touching the first diagonally: one parcel of 13
    codes[6:10, 0:5] = 2          # 20 px
    codes[0:2, 8:10] = 2          # 4 px fragment
    parcels = find_parcels(codes, min_pixels=10)
    assert len(parcels) == 2 and parcels.per_class() == {1: 1, 2: 1}
    assert list(parcels.sizes) == [13, 20]
    assert (parcels.ids[codes == 1] == 1).all() and (parcels.ids[6:10, 0:5] == 2).all()
    assert (parcels.ids[0:2, 8:10] == -1).all() and (parcels.ids[codes == 0] == 0).all()
    ring = buffer_mask(parcels.ids, [2], buffer=2)
    assert ring[4, 0] and ring[4, 6] and not ring[3, 0] and not ring[5, 7] and ring[6:10, 0:5].all()
    assert not buffer_mask(parcels.ids, [2], buffer=0)[5].any()
    assert find_parcels(codes, min_pixels=20).per_class() == {2: 1}


@pytest.mark.parametrize("year, total, per_class", [
    ("2018", 13, {9120: 7, 1200: 3, 7900: 1, 2130: 1, 5100: 1}),
    ("2019", 15, {1110: 4, 9120: 4, 1200: 3, 1510: 1, 8100: 1, 1500: 1, 5100: 1})])
def test_shared_stacks_parcel_counts(year, total, per_class):
    folder = SHARED / f"worldcereal_lpis_flanders{year}"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StackWarning)
        stack = open_stack(folder, bands=["B04", "B08"])
    labels = load_label_grid(next(folder.glob("OUTPUT_POLY-*_10m_*.nc")), stack, variable="CT",
                             legend=next(folder.glob("*legend*.csv")))
    parcels = find_parcels(labels.codes, labels.labelled)
    assert len(parcels) == total and parcels.per_class() == per_class
    assert labels.names[1200] == "Maize"


def test_label_crs_errors_name_the_key_of_the_config_they_come_from(tmp_path, ct):
    from eossl.data.labelled.points import read_labels

    nocrs_tif = write_geotiff(tmp_path / "nocrs.tif", ct, 10, origin=ORIGIN, crs=None)
    with pytest.raises(ValueError, match=r"set stack\.stacks\[\]\.label_crs: 'EPSG"):
        load_label_grid(nocrs_tif, _grid(), crs_key="stack.stacks[].label_crs")
    utm = write_geotiff(tmp_path / "utm31.tif", ct, 10, origin=ORIGIN, crs="EPSG:32631")
    with pytest.raises(ValueError, match=r"declares the CRS EPSG:32631 but label_crs is EPSG:32632"):
        load_label_grid(utm, _grid(), label_crs="EPSG:32632")
    pts = tmp_path / "pts.csv"
    pts.write_text("x,y,crop\n500010,5600010,maize\n")
    import geopandas as gpd  # noqa: F401  (read_labels reads CSV points through geopandas)

    with pytest.raises(ValueError, match=r"set `data\.label_crs`"):
        read_labels(pts, "crop", crs_key="data.label_crs")
