"""STAC in: Items, ItemCollections and static catalogs as scene indexes (local JSON the tests write, local COGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CRS, TINY_EXTENT, TINY_ORIGIN, _write_scene, write_geotiff

from eossl.catalog.build import build_index
from eossl.catalog.index import open_index
from eossl.catalog.stac import BandInfo, asset_bands, read_items
from eossl.cli import main
from eossl.data.reader import ChipReader

# Sentinel-2A centre wavelengths (µm) and common names, as Earth Search / Planetary Computer items give them
S2 = {"B01": ("coastal", 0.443), "B02": ("blue", 0.490), "B03": ("green", 0.560), "B04": ("red", 0.665),
      "B05": ("rededge", 0.704), "B06": ("rededge", 0.740), "B07": ("rededge", 0.783), "B08": ("nir", 0.842),
      "B8A": ("nir08", 0.865), "B09": ("nir09", 0.945), "B11": ("swir16", 1.610), "B12": ("swir22", 2.190)}
L2A_BANDS = list(S2)


def _bbox():
    from rasterio.warp import transform_bounds

    x0, y1 = TINY_ORIGIN
    return list(transform_bounds(TINY_CRS, "EPSG:4326", x0, y1 - TINY_EXTENT, x0 + TINY_EXTENT, y1))


def _item(item_id: str, assets: dict, *, collection: str | None = "sentinel-2-l2a", platform: str | None =
          "sentinel-2a", dt: str = "2020-06-15T10:10:31Z", extra: dict | None = None,
          version: str = "1.0.0") -> dict:
    bbox = _bbox()
    props = {"datetime": dt, **(extra or {})}
    if platform:
        props["platform"] = platform
    item = {"type": "Feature", "stac_version": version, "id": item_id, "bbox": bbox,
            "geometry": {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]],
                                                              [bbox[2], bbox[3]], [bbox[0], bbox[3]],
                                                              [bbox[0], bbox[1]]]]},
            "properties": props, "assets": assets, "links": []}
    if collection:
        item["collection"] = collection
    return item


def _band_asset(href: str, band: str | None, *, eo: bool = True, raster: dict | None = None,
                media: str = "image/tiff; application=geotiff; profile=cloud-optimized") -> dict:
    asset = {"href": href, "type": media, "roles": ["data", "reflectance"]}
    if eo and band:
        common, um = S2[band]
        asset["eo:bands"] = [{"name": band, "common_name": common, "center_wavelength": um}]
    if raster:
        asset["raster:bands"] = [raster]
    return asset


@pytest.fixture
def l2a_scene(tmp_path):
    return _write_scene(tmp_path / "data", bands=L2A_BANDS)


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _l2a_item(scene, folder: Path, **kw) -> dict:
    raster = {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}
    assets = {S2[b][0] if S2[b][0] != "rededge" else f"rededge{i}": _band_asset(
        str(Path("..") / scene.file(b).relative_to(folder.parent)), b, raster=raster)
        for i, b in enumerate(L2A_BANDS)}
    return _item("S2A_33UUP_20200615_0_L2A", assets, **kw)


def _l2a_item_file(tmp_path: Path, scene, baseline: str = "05.09", edit=None, **kw) -> Path:
    """``stac/item.json`` for ``scene`` (hrefs relative to it), after ``edit(item)``."""
    folder = tmp_path / "stac"
    folder.mkdir(exist_ok=True)
    item = _l2a_item(scene, folder, extra={"s2:processing_baseline": baseline}, **kw)
    if edit is not None:
        edit(item)
    return _write(folder / "item.json", item)


def test_item_infers_sensor_and_reads_raster_scale(tmp_path, l2a_scene):
    """Collection + platform + baseline 05.09 -> sentinel2-l2a-pb04; raster:bands offset -0.1 is what is read."""
    item = _l2a_item_file(tmp_path, l2a_scene)
    index = build_index([str(item)], None, progress=False)
    assert list(index.frame["sensor"]) == ["sentinel2-l2a-pb04"]
    why = index.frame["sensor_source"][0]
    assert "platform 'sentinel-2a'" in why and "processing baseline 05.09" in why
    assert index.frame["stac_item"][0] == str(item)
    assert index.datetime(0).isoformat().startswith("2020-06-15T10:10:31")
    assert set(index.assets(0)) == set(L2A_BANDS)
    reader = ChipReader(index, bands=["B04", "B8A"], resampling="nearest")
    chip = reader.read(0, index.bounds(0), gsd=20.0)
    dn = l2a_scene.array("B8A").astype(np.float64)
    np.testing.assert_allclose(chip.image[1], dn * 1e-4 - 0.1, atol=1e-5)
    assert "sentinel2-l2a-pb04: inferred from" in index.summary()


def test_baseline_before_04_gives_offset_free_sensor_and_raster_overrides(tmp_path, l2a_scene):
    """Baseline 02.14 -> sentinel2-l2a (no offset); raster:bands offset -0.1 is then stored as an override."""
    item = _l2a_item_file(tmp_path, l2a_scene, baseline="02.14")
    index = build_index([str(item)], None, progress=False)
    assert index.frame["sensor"][0] == "sentinel2-l2a"
    assert index.assets(0)["B04"].offset == pytest.approx(-0.1)
    assert index.assets(0)["B04"].scale == pytest.approx(1e-4)


def test_item_collection_stac_1_1_bands_and_scl_mask(tmp_path):
    """STAC 1.1 ``bands`` (eo:center_wavelength), two items in an ItemCollection, an SCL asset as cloud mask."""
    scenes = [_write_scene(tmp_path / f"d{i}", bands=L2A_BANDS, seed=i) for i in range(2)]
    feats = []
    for i, scene in enumerate(scenes):
        assets = {}
        for b in L2A_BANDS:
            assets[b] = {"href": str(scene.file(b)), "type": "image/tiff; application=geotiff",
                         "roles": ["data"], "bands": [{"name": b, "eo:common_name": S2[b][0],
                                                       "eo:center_wavelength": S2[b][1], "nodata": 0}]}
        scl = np.full((60, 60), 4, dtype="uint8")     # vegetation everywhere ...
        scl[:, :30] = 9                                # ... but cloud high probability on the west half
        write_geotiff(tmp_path / f"d{i}" / "SCL.tif", scl, 20.0)
        assets["scl"] = {"href": str(tmp_path / f"d{i}" / "SCL.tif"), "type": "image/tiff; application=geotiff",
                         "roles": ["data"]}
        feats.append(_item(f"S2A_item{i}", assets, dt=f"2020-0{6 + i}-15T10:10:31Z", version="1.1.0",
                           extra={"s2:processing_baseline": "02.14"}))
    coll = _write(tmp_path / "items.geojson", {"type": "FeatureCollection", "features": feats})
    index = build_index([str(coll)], None, progress=False)
    assert len(index) == 2 and set(index.frame["sensor"]) == {"sentinel2-l2a"}
    assert index.quality_mask(0) is not None and index.quality_mask(0).mask_kind == "scl"
    assert index.frame["valid_fraction"][0] == pytest.approx(0.5, abs=0.02)


def test_static_catalog_walked_and_asset_keys_without_eo_bands(tmp_path):
    """A catalog linking a collection linking an item; bands named only by asset key (B02, ...)."""
    scene = _write_scene(tmp_path / "data")
    cat_dir = tmp_path / "catalog"
    (cat_dir / "s2" / "item1").mkdir(parents=True)
    assets = {b: _band_asset(str(scene.file(b)), b, eo=False) for b in scene.bands}
    item = _item("S2A_MSIL1C_20200615T101031_N0209_R022_T33UUP_20200615T121029", assets,
                 collection="sentinel-2-l1c")
    item["links"] = [{"rel": "collection", "href": "../collection.json"},
                     {"rel": "parent", "href": "../collection.json"}, {"rel": "root", "href": "../../catalog.json"}]
    _write(cat_dir / "s2" / "item1" / "item1.json", item)
    _write(cat_dir / "s2" / "collection.json", {
        "type": "Collection", "stac_version": "1.0.0", "id": "sentinel-2-l1c", "description": "d", "license": "x",
        "extent": {"spatial": {"bbox": [_bbox()]}, "temporal": {"interval": [[None, None]]}},
        "links": [{"rel": "item", "href": "./item1/item1.json"}, {"rel": "root", "href": "../catalog.json"},
                  {"rel": "parent", "href": "../catalog.json"}]})
    cat = _write(cat_dir / "catalog.json", {
        "type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "d",
        "links": [{"rel": "child", "href": "./s2/collection.json"}, {"rel": "root", "href": "./catalog.json"}]})
    assert [i.id for i in read_items(str(cat))] == [item["id"]]
    index = build_index([str(cat)], None, progress=False)
    assert index.frame["sensor"][0] == "sentinel2-l1c"
    assert set(index.assets(0)) == set(scene.bands)


def test_cog_preferred_over_jp2_and_multiband_visual_skipped(tmp_path, l2a_scene):
    """Earth Search lists each band twice (COG and JP2) plus a 3-band visual: the COG of each band is used."""
    def edit(item):
        item["assets"]["red-jp2"] = _band_asset("missing/B04.jp2", "B04", media="image/jp2")
        item["assets"]["visual"] = {"href": "missing/TCI.tif", "type": "image/tiff", "roles": ["visual"],
                                    "eo:bands": [{"name": b, "common_name": S2[b][0]} for b in ("B04", "B03", "B02")]}
    index = build_index([str(_l2a_item_file(tmp_path, l2a_scene, "02.14", edit))], None, progress=False)
    assert index.assets(0)["B04"].path.endswith(".tif")


def test_explicit_sensor_and_index_through_cli(tmp_path, l2a_scene, capsys):
    item = _l2a_item_file(tmp_path, l2a_scene)
    out = tmp_path / "index.parquet"
    assert main(["catalog", "build", str(item), "--sensor", "sentinel2-l2a-pb04", "--out", str(out)]) == 0
    index = open_index(out)
    assert index.frame["sensor_source"][0] == "--sensor"
    assert "sensor_source" in index.frame.columns and len(index) == 1
    assert main(["catalog", "build", str(item), "--out", str(tmp_path / "inferred.parquet")]) == 0
    assert "inferred from" in capsys.readouterr().out


def test_asset_bands_stac_1_0_zips_eo_and_raster():
    bands = asset_bands({"eo:bands": [{"name": "B04", "center_wavelength": 0.665, "full_width_half_max": 0.038}],
                         "raster:bands": [{"scale": 1e-4, "offset": -0.1, "nodata": 0, "data_type": "uint16"}]})
    assert bands == [BandInfo("B04", None, 665.0, 38.0, 0.0, 1e-4, -0.1, "uint16")]


# ------------------------------------------------------------------------------------------ bad input


def test_item_without_band_metadata_or_platform_names_what_is_missing(tmp_path):
    scene = _write_scene(tmp_path / "data", bands=["B04"])
    item = _item("anonymous", {"data": {"href": str(scene.file("B04")), "type": "image/tiff"}}, collection=None,
                 platform=None)
    path = _write(tmp_path / "item.json", item)
    with pytest.raises(ValueError, match=r"STAC item anonymous: cannot tell its sensor: no collection, platform or "
                                         r"constellation .* no eo:bands .* pass --sensor"):
        build_index([str(path)], None, progress=False)


def test_unreadable_href_names_item_and_asset(tmp_path, l2a_scene):
    path = _l2a_item_file(tmp_path, l2a_scene, edit=lambda item: item["assets"]["red"].update(
        href="../data/gone_B04.tif"))
    with pytest.raises(ValueError, match=r"STAC item S2A_33UUP_20200615_0_L2A .*asset 'red' .*gone_B04.tif"):
        build_index([str(path)], None, progress=False)


def test_wavelength_contradicting_the_sensor_is_an_error(tmp_path, l2a_scene):
    path = _l2a_item_file(tmp_path, l2a_scene, edit=lambda item: item["assets"]["red"]["eo:bands"][0].update(
        center_wavelength=0.560))      # named B04 but green
    with pytest.raises(ValueError, match=r"asset 'red' band 1: eo:bands gives a centre wavelength of 560 nm, but it "
                                         r"is matched to band B04 at 664.6 nm"):
        build_index([str(path)], None, progress=False)


def test_platform_contradicting_sensor_is_an_error(tmp_path, l2a_scene):
    path = _l2a_item_file(tmp_path, l2a_scene, platform="landsat-8", collection="landsat-c2-l2")
    with pytest.raises(ValueError, match=r"platform 'landsat-8' says Landsat 8.* --sensor sentinel2-l2a"):
        build_index([str(path)], "sentinel2-l2a", progress=False)


def test_not_stac_json_is_named(tmp_path):
    path = _write(tmp_path / "labels.json", {"type": "Topology"})
    with pytest.raises(ValueError, match=r"labels.json: not a STAC Item"):
        build_index([str(path)], None, progress=False)


def test_raster_roots_still_need_a_sensor(tmp_path, l2a_scene):
    with pytest.raises(ValueError, match="--sensor is needed for the roots that are not STAC JSON"):
        build_index([str(l2a_scene)], None, progress=False)


# ------------------------------------------------------------------------------------------ STAC API search


class _Api:
    """A STAC API on localhost: landing page, POST /search with paging; records the search bodies."""

    def __init__(self, features: list[dict], query: bool = True):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self
        self.bodies: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                conforms = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]
                if query:
                    conforms.append("https://api.stacspec.org/v1.0.0/item-search#query")
                self._send({"type": "Catalog", "stac_version": "1.0.0", "id": "test-api", "description": "t",
                            "conformsTo": conforms,
                            "links": [{"rel": "self", "href": api.url}, {"rel": "root", "href": api.url},
                                      {"rel": "search", "href": api.url + "search", "method": "POST",
                                       "type": "application/geo+json"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.bodies.append(body)
                feats = [f for f in features if f.get("collection") in body.get("collections", [])]
                limit = 1                                    # one item per page: pagination is exercised
                start = int(body.get("token", 0))
                page = {"type": "FeatureCollection", "features": feats[start:start + limit], "links": []}
                if start + limit < len(feats):
                    page["links"].append({"rel": "next", "href": api.url + "search", "method": "POST",
                                          "body": {**body, "token": str(start + limit)}, "merge": False})
                self._send(page)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _search_features(tmp_path):
    feats = []
    for i, cloud in enumerate((5.0, 60.0, 10.0)):
        scene = _write_scene(tmp_path / f"d{i}", bands=["B02", "B03", "B04", "B08"], seed=i)
        assets = {S2[b][0]: _band_asset(str(scene.file(b)), b) for b in scene.bands}
        feats.append(_item(f"S2B_item{i}", assets, dt=f"2021-0{5 + i}-01T10:00:00Z", platform="sentinel-2b",
                           extra={"eo:cloud_cover": cloud, "s2:processing_baseline": "03.00"}))
    return feats


def test_search_indexes_the_items_and_writes_them(tmp_path, capsys):
    api = _Api(_search_features(tmp_path))
    try:
        out = tmp_path / "found.parquet"
        rc = main(["catalog", "search", api.url, "--collection", "sentinel-2-l2a", "--bbox", "14,52,15,53",
                   "--datetime", "2021-05-01/2021-08-01", "--max-cloud", "20", "--out", str(out)])
    finally:
        api.close()
    assert rc == 0
    body = api.bodies[0]
    assert body["bbox"] == [14, 52, 15, 53] and body["collections"] == ["sentinel-2-l2a"]
    assert body["query"] == {"eo:cloud_cover": {"lte": 20.0}}
    assert body["datetime"].startswith("2021-05-01")
    assert len(api.bodies) == 3                                       # every page was fetched
    index = open_index(out)
    assert list(index.frame["id"]) == ["S2B_item0", "S2B_item2"]       # 60 % cloud dropped (client side)
    assert set(index.frame["sensor"]) == {"sentinel2-l2a"}
    saved = json.loads(out.with_suffix(".items.json").read_text())
    assert [f["id"] for f in saved["features"]] == ["S2B_item0", "S2B_item2"]
    assert "wrote 2 acquisitions" in capsys.readouterr().out
    assert main(["catalog", "search", api.url, "--collection", "x", "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_search_without_query_extension_filters_cloud_on_the_items(tmp_path, caplog):
    api = _Api(_search_features(tmp_path), query=False)
    try:
        out = tmp_path / "found.parquet"
        assert main(["catalog", "search", api.url, "--collection", "sentinel-2-l2a", "--max-cloud", "20",
                     "--out", str(out)]) == 0
    finally:
        api.close()
    assert "query" not in api.bodies[0]
    assert len(open_index(out)) == 2
    assert "no query extension" in caplog.text


def test_search_that_finds_nothing_says_what_to_widen(tmp_path, capsys):
    api = _Api(_search_features(tmp_path))
    try:
        assert main(["catalog", "search", api.url, "--collection", "landsat-c2-l2",
                     "--out", str(tmp_path / "x.parquet")]) == 2
    finally:
        api.close()
    assert "found no items (collections landsat-c2-l2); widen --bbox" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_search_bad_bbox_and_unreachable_api(tmp_path, capsys):
    assert main(["catalog", "search", "http://127.0.0.1:9/", "--collection", "c", "--bbox", "1,2,3",
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "--bbox '1,2,3': give west,south,east,north" in capsys.readouterr().err
    assert main(["catalog", "search", "http://127.0.0.1:9/", "--collection", "c",
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "cannot open the STAC API at http://127.0.0.1:9/" in capsys.readouterr().err


def test_search_intersects_a_vector_file_in_wgs84(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    area = tmp_path / "field.gpkg"
    gpd.GeoDataFrame(geometry=[box(400000, 5799000, 401000, 5800000)], crs=TINY_CRS).to_file(area)
    api = _Api(_search_features(tmp_path))
    try:
        assert main(["catalog", "search", api.url, "--collection", "sentinel-2-l2a", "--intersects", str(area),
                     "--max-items", "1", "--out", str(tmp_path / "x.parquet")]) == 0
    finally:
        api.close()
    geom = api.bodies[0]["intersects"]
    assert geom["type"] == "Polygon"
    lon, lat = np.array(geom["coordinates"][0]).mean(axis=0)
    assert 13 < lon < 14 and 52 < lat < 53                      # reprojected from UTM 33N to lon/lat
    assert len(open_index(tmp_path / "x.parquet")) == 1          # --max-items 1: one item although 3 match
