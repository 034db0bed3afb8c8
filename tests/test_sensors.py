"""eossl.catalog.sensors: the built-in sensor YAML files and the loader's checks."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import yaml

from eossl.catalog.scan import band_of_name
from eossl.catalog.sensors import catalog_dirs, list_sensors, load_sensor
from eossl.config import ConfigError

BUILTIN = ["hls-l30", "hls-s30", "landsat8-c2l1", "landsat8-c2l2", "landsat9-c2l1", "landsat9-c2l2",
           "sentinel2-l1c", "sentinel2-l1c-pb04", "sentinel2-l2a", "sentinel2-l2a-pb04"]


def test_every_builtin_sensor_is_listed():
    assert set(BUILTIN) <= set(list_sensors())


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_sensor_contract(name):
    """Every built-in sensor loads, resolves every name of every band to that band, and has usable stats."""
    s = load_sensor(name)
    assert s.name == name
    assert len(s.bands) >= 8 and len(set(s.band_names)) == len(s.band_names)
    seen: dict[str, str] = {}
    for band in s.bands:
        assert band.scale is not None and band.scale > 0 and band.offset is not None and band.dtype
        assert band.wavelength_nm > 0 and band.bandwidth_nm > 0 and band.gsd_m > 0
        for alias in band.names():
            key = alias.lower().replace("_", "").replace("-", "").replace(" ", "")
            assert seen.setdefault(key, band.name) == band.name, f"{alias!r} names {seen[key]} and {band.name}"
            assert s.resolve(alias) == band.name
            assert s.resolve(alias.upper()) == band.name
    mean, std = s.norm_stats(s.band_names)
    assert mean.dtype == np.float32 and mean.shape == (len(s.bands),)
    assert np.all(std > 0) and np.all(np.isfinite(mean))
    assert sorted(s.stack_band_order) == sorted(s.band_names)
    # common names sit in their spectral windows (a swapped band or wavelength would show up here)
    windows = {"blue": (440, 520), "green": (530, 590), "red": (620, 700), "nir": (760, 900),
               "nir08": (840, 890), "swir16": (1550, 1700), "swir22": (2050, 2350)}
    for band in s.bands:
        if band.common_name in windows:
            lo, hi = windows[band.common_name]
            assert lo <= band.wavelength_nm <= hi, (band.name, band.common_name, band.wavelength_nm)
    assert s.resolve("red") and s.resolve("nir08")


def test_sentinel2_l1c_b8a_b08_and_nir_names():
    s = load_sensor("sentinel2-l1c")
    assert s.band_names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                            "B11", "B12"]
    for name in ("B8A", "b8a", "B08A", "nir08", "NIR08", "nir_narrow", "nir narrow", "Nir-Narrow"):
        assert s.resolve(name) == "B8A", name
    for name in ("B08", "B8", "nir", "NIR", "nir_broad"):
        assert s.resolve(name) == "B08", name
    assert s.band("nir08").wavelength_nm == pytest.approx(864.7)
    assert s.band("nir").wavelength_nm == pytest.approx(832.8)
    assert s.band("B8A").gsd_m == 20 and s.band("B08").gsd_m == 10
    assert s.resolve_many(["B8A", "red", "B02"]) == ["B8A", "B04", "B02"]
    assert s.resolve_many(None) == s.band_names
    assert s.match("B8A") == "B8A" and s.match("SCL") is None and s.match("TCI") is None


def test_scale_offset_and_nodata_resolved_per_band():
    s = load_sensor("sentinel2-l1c")
    b = s.band("B04")
    assert (b.scale, b.offset, b.nodata, b.dtype, b.unit) == (pytest.approx(1e-4), 0.0, 0, "uint16", "reflectance")
    pb04 = load_sensor("sentinel2-l1c-pb04")   # extends sentinel2-l1c, only the offset changes
    assert pb04.band_names == s.band_names
    assert pb04.band("B04").offset == pytest.approx(-0.1)
    assert pb04.band("B04").scale == pytest.approx(1e-4)
    np.testing.assert_array_equal(pb04.norm_stats(["B04"])[1], s.norm_stats(["B04"])[1])


def test_landsat_c2l2_band_names():
    s = load_sensor("landsat8-c2l2")
    assert s.resolve("SR_B4") == s.resolve("B4") == s.resolve("red") == s.resolve("sr-b4") == "SR_B4"
    assert s.resolve("nir08") == s.resolve("B5") == "SR_B5"
    st = s.band("ST_B10")
    assert st.unit == "kelvin" and st.scale == pytest.approx(0.00341802) and st.offset == pytest.approx(149.0)
    sr = s.band("SR_B4")
    assert sr.scale == pytest.approx(2.75e-5) and sr.offset == pytest.approx(-0.2)
    assert load_sensor("landsat9-c2l2").resolve("B4") == "SR_B4"


@pytest.mark.parametrize("stem, band", [
    ("LC08_L2SP_042034_20170616_20200903_02_T1_SR_B4", "SR_B4"),
    ("LC08_L2SP_042034_20170616_20200903_02_T1_ST_B10", "ST_B10"),
    ("LC08_L2SP_042034_20170616_20200903_02_T1_QA_PIXEL", None),
    ("LC08_L2SP_042034_20170616_20200903_02_T1_SR_QA_AEROSOL", None),
    ("LC08_L2SP_042034_20170616_20200903_02_T1_ST_QA", None),
])
def test_landsat_file_names(stem, band):
    assert band_of_name(stem, load_sensor("landsat8-c2l2"))[0] == band


@pytest.mark.parametrize("sensor, stem, band", [
    ("sentinel2-l1c", "T18TUL_20170613T153551_B8A", "B8A"),
    ("sentinel2-l1c", "T18TUL_20170613T153551_B08", "B08"),
    ("sentinel2-l1c", "s2_B10", "B10"),
    ("sentinel2-l1c", "preview", None),
    ("sentinel2-l2a", "T18TUL_20170613T153551_B8A_20m", "B8A"),
    ("sentinel2-l2a", "T18TUL_20170613T153551_B02_60m", "B02"),
    ("sentinel2-l2a", "T18TUL_20170613T153551_SCL_20m", None),
    ("sentinel2-l2a", "T18TUL_20170613T153551_TCI_10m", None),
    ("sentinel2-l2a", "T18TUL_20170613T153551_AOT_10m", None),
    ("sentinel2-l2a", "T18TUL_20170613T153551_WVP_10m", None),
    ("hls-s30", "HLS.S30.T18TUL.2020273T155621.v2.0.B8A", "B8A"),
    ("hls-s30", "HLS.S30.T18TUL.2020273T155621.v2.0.Fmask", None),
])
def test_sentinel2_file_names(sensor, stem, band):
    assert band_of_name(stem, load_sensor(sensor))[0] == band


def test_band_of_name_returns_the_other_tokens():
    band, rest = band_of_name("T18TUL_20170613T153551_B8A_20m", load_sensor("sentinel2-l2a"))
    assert band == "B8A" and rest == ["T18TUL", "20170613T153551", "20m"]


def test_unknown_band_lists_the_bands():
    s = load_sensor("sentinel2-l2a")
    with pytest.raises(ValueError) as err:
        s.resolve("B10")                     # L2A has no cirrus band
    msg = str(err.value)
    assert "'B10'" in msg and "sentinel2-l2a" in msg and "B01, B02" in msg and "B12" in msg
    with pytest.raises(ValueError, match="names B04 more than once"):
        s.resolve_many(["red", "B04"])


def test_unknown_sensor_lists_known_sensors():
    with pytest.raises(ValueError) as err:
        load_sensor("sentinel3-olci")
    msg = str(err.value)
    assert "unknown sensor 'sentinel3-olci'" in msg
    assert "sentinel2-l1c" in msg and "landsat8-c2l2" in msg and "EOSSL_CATALOG_PATH" in msg
    with pytest.raises(FileNotFoundError, match="sensor file not found"):
        load_sensor("/nonexistent/mysensor.yaml")


# --------------------------------------------------------------------------------------- custom YAML

def _tiny_sensor(**overrides) -> dict:
    spec = {
        "name": "tiny-rgb",
        "description": "three-band test sensor",
        "nodata": 0,
        "scale": 0.0001,
        "bands": [
            {"name": "B02", "aliases": ["blue"], "wavelength_nm": 490, "bandwidth_nm": 60, "gsd_m": 10},
            {"name": "B03", "aliases": ["green"], "wavelength_nm": 560, "bandwidth_nm": 35, "gsd_m": 10},
            {"name": "B04", "aliases": ["red"], "wavelength_nm": 665, "bandwidth_nm": 30, "gsd_m": 10},
        ],
        "normalization": {"source": "made up", "mean": {"B02": 0.1, "B03": 0.1, "B04": 0.1},
                          "std": {"B02": 0.05, "B03": 0.05, "B04": 0.05}},
    }
    spec.update(overrides)
    return spec


def _write(tmp_path, spec, name="tiny_rgb.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_custom_sensor_by_path_and_by_catalog_path(tmp_path, monkeypatch):
    path = _write(tmp_path, _tiny_sensor())
    s = load_sensor(str(path))
    assert s.band_names == ["B02", "B03", "B04"] and s.resolve("red") == "B04"
    assert s.stack_band_order == ("B02", "B03", "B04")
    monkeypatch.setenv("EOSSL_CATALOG_PATH", str(tmp_path))
    assert catalog_dirs()[0] == tmp_path
    assert "tiny-rgb" in list_sensors()
    assert load_sensor("tiny-rgb").band_names == ["B02", "B03", "B04"]


def test_catalog_path_overrides_a_builtin(tmp_path, monkeypatch):
    _write(tmp_path, _tiny_sensor(name="sentinel2-l1c"), name="sentinel2_l1c.yaml")
    monkeypatch.setenv("EOSSL_CATALOG_PATH", str(tmp_path))
    assert load_sensor("sentinel2-l1c").band_names == ["B02", "B03", "B04"]
    monkeypatch.delenv("EOSSL_CATALOG_PATH")
    assert len(load_sensor("sentinel2-l1c").bands) == 13   # the cache is keyed by the catalog path


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.update(colour="red"), r"colour: unknown key; allowed keys: name, description"),
    (lambda s: s["bands"][1].update(fwhm=35), r"bands\[1\]\.fwhm: unknown key"),
    (lambda s: s["bands"][1]["aliases"].append("blue"), r"alias 'blue' of band B03 is already used by band B02"),
    (lambda s: s["bands"][2].update(common_name="B02"), r"alias 'B02' of band B04 is already used by band B02"),
    (lambda s: s["normalization"]["mean"].pop("B03"), r"normalization\.mean must give exactly the bands.*"
                                                      r"missing \['B03'\]"),
    (lambda s: s["normalization"]["std"].update(B05=0.1), r"normalization\.std .*unknown \['B05'\]"),
    (lambda s: s["normalization"]["std"].update(B03=0.0), r"std must be > 0 .*\['B03'\]"),
    (lambda s: s.pop("normalization"), r"has no normalization"),
    (lambda s: s.update(bands=[]), r"lists no bands"),
    (lambda s: s["bands"][0].update(wavelength_nm=-5), r"bands\[0\] \(B02\)\.wavelength_nm must be > 0"),
    (lambda s: s["bands"][0].update(wavelength_nm="blue"), r"bands\[0\]\.wavelength_nm: got 'blue'"),
    (lambda s: s["bands"][0].update(unit="dn"), r"bands\[0\]\.unit: got 'dn'.*'reflectance'"),
    (lambda s: s.update(dtype="uint12"), r"dtype: 'uint12'; allowed: uint8"),
    (lambda s: s.update(stack_band_order=["B02", "B02", "B04"]), r"stack_band_order .* distinct bands"),
    (lambda s: s.update(stack_band_order=["B02", "B03", "B05"]), r"stack_band_order .* distinct bands"),
    (lambda s: s.update(datetime_patterns=[r"(\d{8})"]), r"needs a named group 'date' or 'doy'"),
    (lambda s: s.update(datetime_patterns=[r"(?P<date>\d{8"]), r"is not a valid regex"),
    (lambda s: s["bands"][0].pop("gsd_m"), r"bands\[0\]\.gsd_m: missing required field"),
])
def test_bad_sensor_yaml_is_a_config_error_naming_the_problem(tmp_path, mutate, expected):
    spec = _tiny_sensor()
    mutate(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(ConfigError, match=expected) as err:
        load_sensor(str(path))
    assert str(path) in str(err.value)


def test_sensor_name_must_match_file_name(tmp_path, monkeypatch):
    _write(tmp_path, _tiny_sensor(name="other-name"))
    monkeypatch.setenv("EOSSL_CATALOG_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"name 'other-name' does not match the file name \(expected 'tiny-rgb'\)"):
        load_sensor("tiny-rgb")


def _write_child(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSSL_CATALOG_PATH", str(tmp_path))
    _write(tmp_path, _tiny_sensor())
    (tmp_path / "tiny_rgb_off.yaml").write_text(textwrap.dedent("""\
        name: tiny-rgb-off
        extends: tiny-rgb
        offset: -0.1
    """))


def test_extends_inherits_bands_and_overrides_given_keys(tmp_path, monkeypatch):
    _write_child(tmp_path, monkeypatch)
    child = load_sensor("tiny-rgb-off")
    assert child.name == "tiny-rgb-off"
    assert child.band_names == ["B02", "B03", "B04"] and child.band("red").offset == pytest.approx(-0.1)
    assert child.band("red").scale == pytest.approx(1e-4) and child.band("red").nodata == 0
    assert load_sensor("tiny-rgb").band("red").offset == 0.0


def test_extends_inherits_the_description(tmp_path, monkeypatch):
    # data_catalog/README.md: "The child inherits every key and overrides only the keys it gives."
    # The child gives no description, so it must inherit the parent's (eossl bug: it becomes "").
    _write_child(tmp_path, monkeypatch)
    assert load_sensor("tiny-rgb-off").description == "three-band test sensor"


def test_extends_rejects_bands(tmp_path, monkeypatch):
    _write_child(tmp_path, monkeypatch)
    (tmp_path / "tiny_bad.yaml").write_text("name: tiny-bad\nextends: tiny-rgb\nbands: []\n")
    with pytest.raises(ConfigError, match=r"tiny_bad\.yaml: a sensor that extends 'tiny-rgb' must not list bands"):
        load_sensor("tiny-bad")


def test_extends_cycle_is_an_error_showing_the_whole_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSSL_CATALOG_PATH", str(tmp_path))
    (tmp_path / "loop_a.yaml").write_text("name: loop-a\nextends: loop-b\n")
    (tmp_path / "loop_b.yaml").write_text("name: loop-b\nextends: loop-a\n")
    with pytest.raises(ConfigError, match="circular 'extends' chain") as err:
        load_sensor("loop-a")
    # eossl bug (cosmetic): the chain printed is "loop-a -> loop-a", leaving out loop-b that closes the loop
    assert "loop-a -> loop-b -> loop-a" in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_sensor(str(path))
