"""View generation (eossl.augment.views) and the registry: presets, order of operations, normalisation,
masks, seasonal pairs, seeding and clear errors for bad input or bad configuration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import rasterio
import torch

from eossl.augment import RandomSpectralShift
from eossl.augment.views import METHOD_PRESETS, OPS, PRESETS, OpSpec, ViewGenerator, ViewSpec, preset
from eossl.catalog.sensors import load_sensor
from eossl.config import ConfigError, from_dict
from eossl.registry import Registry

# ------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class BandSet:
    names: list[str]
    wavelengths: list[float]
    mean: torch.Tensor      # (C,) reflectance
    std: torch.Tensor       # (C,)


_S2 = load_sensor("sentinel2-l1c")
_BAND_NAMES = {4: ["B02", "B03", "B04", "B08"], 13: list(_S2.band_names)}
METHODS = ["simsiam", "moco_v2", "moco_v3", "barlow", "vicreg", "mae", "simclr", "byol", "dino", "rotation",
           "jigsaw"]


@pytest.fixture(params=[4, 13], ids=["4bands", "13bands"])
def bands(request) -> BandSet:
    names = _BAND_NAMES[request.param]
    mean, std = _S2.norm_stats(names)
    return BandSet(names=names, wavelengths=_S2.wavelengths(names), mean=torch.as_tensor(mean),
                   std=torch.as_tensor(std))


def _gen(bs: BandSet, spec: ViewSpec | str, chip: int = 16, seed: int = 0) -> ViewGenerator:
    spec = preset(spec) if isinstance(spec, str) else spec
    return ViewGenerator(spec, bs.names, bs.wavelengths, bs.mean.tolist(), bs.std.tolist(), chip_size=chip, seed=seed)


def _reflectance(bs: BandSet, b: int = 8, hw: int = 16, seed: int = 0) -> torch.Tensor:
    """A plausible reflectance batch: catalog mean + std * N(0, 1), kept positive."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, len(bs.names), hw, hw, generator=g)
    return (bs.mean.view(1, -1, 1, 1) + bs.std.view(1, -1, 1, 1) * z).clamp_min(1e-4)


def _constant(bs: BandSet, values: torch.Tensor, b: int = 4, hw: int = 16) -> torch.Tensor:
    return values.view(1, -1, 1, 1).expand(b, len(bs.names), hw, hw).clone()


def _standardised(bs: BandSet, x: torch.Tensor) -> torch.Tensor:
    return (x - bs.mean.view(1, -1, 1, 1)) / bs.std.view(1, -1, 1, 1)


def _equal_views(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(va["image"], vb["image"]) and torch.equal(va["mask"], vb["mask"])
                                    for va, vb in zip(a, b))


# ------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", METHODS + ["strong", "light", "none"])
def test_every_preset_builds_and_makes_standardised_views(bands, name):
    spec = preset(name)
    assert isinstance(spec, ViewSpec)
    assert all(op.name in OPS for op in spec.ops)
    x = _reflectance(bands)
    views = _gen(bands, spec)(x)
    assert len(views) == 2
    for v in views:
        assert v["image"].shape == x.shape and v["image"].dtype == torch.float32
        assert v["mask"].shape == (8, 16, 16) and v["mask"].dtype == torch.bool
        assert torch.isfinite(v["image"]).all()


def test_method_presets_cover_every_method_and_point_at_existing_presets():
    assert set(METHODS) <= set(METHOD_PRESETS)
    assert set(METHOD_PRESETS.values()) <= set(PRESETS)
    assert {"strong", "light", "none"} <= set(PRESETS)
    assert preset("none").ops == []
    assert [o.name for o in preset("vicreg").ops] == [o.name for o in PRESETS["strong"]]
    assert [o.name for o in preset("mae").ops] == [o.name for o in PRESETS["light"]]


def test_preset_returns_a_copy_and_accepts_overrides():
    spec = preset("strong", n_views=3, crop_size=8)
    assert spec.n_views == 3 and spec.crop_size == 8
    original = dict(PRESETS["strong"][0].params)
    spec.ops[0].params["p"] = -1.0
    spec.ops.clear()
    assert PRESETS["strong"][0].params == original and len(PRESETS["strong"]) > 0


def test_strong_preset_shifts_spectra_in_reflectance_before_normalisation(bands):
    assert preset("strong").ops[0].name == "spectral_shift"
    gen = _gen(bands, "strong")
    assert [type(op) for op in gen.reflectance_ops] == [RandomSpectralShift]
    assert not any(isinstance(op, RandomSpectralShift) for op in gen.sequential.children())
    assert all(op.domain != "reflectance" for op in gen.sequential.children())
    # behaviour: gain 2 on reflectance gives (2x - mean) / std, not 2 (x - mean) / std
    spec = ViewSpec(ops=[OpSpec("spectral_shift", {"gain": [2.0, 2.0], "offset": [0.0, 0.0], "tilt": [0.0, 0.0],
                                                   "p": 1.0})])
    x = _reflectance(bands, b=2)
    view = _gen(bands, spec)(x)[0]["image"]
    torch.testing.assert_close(view, _standardised(bands, 2 * x))
    assert not torch.allclose(view, 2 * _standardised(bands, x))


# ------------------------------------------------------------------------------------------- normalisation, masks


def test_none_preset_standardises_with_the_catalog_statistics(bands):
    gen = _gen(bands, "none")
    zeros = gen(_constant(bands, bands.mean))
    for v in zeros:
        torch.testing.assert_close(v["image"], torch.zeros_like(v["image"]), atol=1e-5, rtol=0)
        assert v["mask"].all()
    ones = gen(_constant(bands, bands.mean + bands.std))[0]["image"]
    torch.testing.assert_close(ones, torch.ones_like(ones), atol=1e-5, rtol=1e-5)
    x = _reflectance(bands)
    torch.testing.assert_close(gen(x)[1]["image"], _standardised(bands, x))


@pytest.mark.parametrize("spec", ["none", "rot90_flip"])
def test_invalid_pixels_are_zero_after_normalisation(bands, spec):
    spec = preset("none") if spec == "none" else ViewSpec(ops=[OpSpec("rot90_flip")])
    x = _reflectance(bands)
    mask = torch.ones(8, 16, 16, dtype=torch.bool)
    mask[:, :, :5] = False                                     # nodata strip on the west edge
    views = _gen(bands, spec, seed=1)(x, mask)
    for v in views:
        assert (v["mask"].sum(dim=(1, 2)) == 16 * 11).all()
        assert (v["image"].permute(1, 0, 2, 3)[:, ~v["mask"]] == 0).all()
        assert (v["image"].permute(1, 0, 2, 3)[:, v["mask"]] != 0).any()
    if spec.ops:  # the mask moved with the image for some samples
        assert not all(torch.equal(v["mask"], mask) for v in views)


def test_crop_size_sets_the_view_size(bands):
    views = _gen(bands, preset("light", crop_size=8))(_reflectance(bands))
    for v in views:
        assert v["image"].shape == (8, len(bands.names), 8, 8)
        assert v["mask"].shape == (8, 8, 8)


# ------------------------------------------------------------------------------------------- seasonal pairs, n_views


def test_seasonal_pairs_use_takes_view_one_from_the_second_date(bands):
    a = _constant(bands, bands.mean)                           # standardises to 0
    b = _constant(bands, bands.mean + bands.std)               # standardises to 1
    mask2 = torch.ones(4, 16, 16, dtype=torch.bool)
    mask2[:, :3] = False
    views = _gen(bands, preset("none", n_views=3, seasonal_pairs="use"))(a, image2=b, mask2=mask2)
    assert len(views) == 3
    torch.testing.assert_close(views[0]["image"], torch.zeros_like(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(views[2]["image"], torch.zeros_like(a), atol=1e-5, rtol=0)
    expected1 = mask2.unsqueeze(1).float().expand_as(b)
    torch.testing.assert_close(views[1]["image"], expected1, atol=1e-5, rtol=1e-5)
    assert torch.equal(views[1]["mask"], mask2)
    assert views[0]["mask"].all()


def test_seasonal_pairs_ignore_takes_every_view_from_the_first_date(bands):
    a = _constant(bands, bands.mean)
    b = _constant(bands, bands.mean + bands.std)
    views = _gen(bands, preset("none", seasonal_pairs="ignore"))(a, image2=b)
    assert len(views) == 2
    for v in views:
        torch.testing.assert_close(v["image"], torch.zeros_like(a), atol=1e-5, rtol=0)


def test_batch_of_one_under_no_grad(bands):
    x = _reflectance(bands, b=1)
    with torch.no_grad():
        views = _gen(bands, "strong", seed=3)(x)
    assert [tuple(v["image"].shape) for v in views] == [(1, len(bands.names), 16, 16)] * 2
    assert all(v["image"].dtype == torch.float32 and v["mask"].shape == (1, 16, 16) for v in views)


@pytest.mark.parametrize("n", [1, 3])
def test_n_views(bands, n):
    views = _gen(bands, preset("strong", n_views=n))(_reflectance(bands))
    assert len(views) == n
    if n > 1:
        assert not torch.equal(views[0]["image"], views[1]["image"]), "views of one chip must differ"


def test_multi_crop_adds_seeded_local_views_after_the_global_ones(bands):
    x = _reflectance(bands, hw=32)
    spec = preset("strong", n_views=2, local_views=3, local_crop_size=8, local_crop_scale=(0.05, 0.2))
    gen = _gen(bands, spec, chip=32, seed=3)
    views = gen(x)
    assert [tuple(v["image"].shape[-2:]) for v in views] == [(32, 32)] * 2 + [(8, 8)] * 3
    assert all(v["mask"].shape == (8, *v["image"].shape[-2:]) for v in views)
    # the global views are those of the same spec without local views: adding locals changes nothing else
    assert _equal_views(views[:2], _gen(bands, preset("strong", n_views=2), chip=32, seed=3)(x))
    assert not torch.equal(views[2]["image"], views[3]["image"])
    gen.reseed(3)
    assert _equal_views(gen(x), views), "reseeding reproduces global and local views"
    # a local view covers at most 20% of the chip: on a ramp (value = column), its columns span <= 0.45 * 32 + 1
    ramp = torch.arange(32.0).view(1, 1, 1, 32).expand(4, len(bands.names), 32, 32).contiguous()
    none_local = ViewSpec(ops=[OpSpec("resized_crop", {"scale": [1.0, 1.0]})], n_views=1, local_views=2,
                          local_crop_size=8, local_crop_scale=(0.05, 0.2))
    flat = ViewGenerator(none_local, bands.names, bands.wavelengths, [0.0] * len(bands.names),
                         [1.0] * len(bands.names), chip_size=32, seed=0)(ramp)
    assert flat[0]["image"][:, 0].amax() - flat[0]["image"][:, 0].amin() > 30
    for v in flat[1:]:
        span = v["image"][:, 0].amax(dim=(-2, -1)) - v["image"][:, 0].amin(dim=(-2, -1))
        assert (span <= 0.45 * 32 * (4 / 3) ** 0.5 + 1).all()
    with pytest.raises(ConfigError, match="views.local_views: local views are cut by a resized_crop op"):
        ViewSpec(ops=[OpSpec("rot90_flip")], local_views=2)


def test_views_of_a_geotiff_stack_in_eurosat_band_order(tiny_stack):
    """Bands need not be in wavelength order: names, wavelengths and statistics follow the file's order."""
    with rasterio.open(tiny_stack.plain) as ds:
        dn = torch.from_numpy(ds.read().astype("float32"))            # (13, 64, 64), EuroSAT order
    x = (dn * 1e-4)[None, :, :32, :32].repeat(2, 1, 1, 1)           # S2 L1C scale: reflectance = DN * 1e-4
    mean, std = _S2.norm_stats(tiny_stack.order)
    bs = BandSet(tiny_stack.order, _S2.wavelengths(tiny_stack.order), torch.as_tensor(mean), torch.as_tensor(std))
    torch.testing.assert_close(_gen(bs, "none", chip=32)(x)[0]["image"], _standardised(bs, x))
    views = _gen(bs, "strong", chip=32)(x)
    assert all(v["image"].shape == (2, 13, 32, 32) and torch.isfinite(v["image"]).all() for v in views)


# ------------------------------------------------------------------------------------------- seeding, purity


def test_same_seed_same_views_and_different_seed_differs(bands):
    x = _reflectance(bands)
    torch.manual_seed(0)                                       # views must not depend on torch's global RNG
    first = _gen(bands, "strong", seed=5)(x)
    torch.manual_seed(1)
    second = _gen(bands, "strong", seed=5)(x)
    other = _gen(bands, "strong", seed=6)(x)
    assert _equal_views(first, second)
    assert not _equal_views(first, other)


def test_inputs_are_untouched(bands):
    x, x2 = _reflectance(bands, seed=0), _reflectance(bands, seed=1)
    mask = torch.ones(8, 16, 16, dtype=torch.bool)
    mask[:, 0] = False
    mask2 = mask.clone()
    clones = [t.clone() for t in (x, x2, mask, mask2)]
    _gen(bands, preset("strong", n_views=3))(x, mask, image2=x2, mask2=mask2)
    for t, c in zip((x, x2, mask, mask2), clones):
        assert torch.equal(t, c)


@pytest.mark.parametrize("name", OPS.names())
def test_every_registered_op_runs_in_a_view_pipeline(bands, name):
    """Registry contract: each op builds from a spec, keeps dtype, leaves the input alone, and masks follow."""
    x = _reflectance(bands)
    mask = torch.ones(8, 16, 16, dtype=torch.bool)
    mask[:, :, :4] = False
    before, mask_before = x.clone(), mask.clone()
    gen = _gen(bands, ViewSpec(ops=[OpSpec(name, {"p": 1.0})], crop_size=12))
    views = gen(x, mask)
    assert torch.equal(x, before) and torch.equal(mask, mask_before)
    if name not in ("rot90_flip", "rotation", "resized_crop"):   # value ops leave the mask alone
        assert all(torch.equal(v["mask"], mask) for v in views)
    hw = 12 if name == "resized_crop" else 16
    for v in views:
        assert v["image"].shape == (8, len(bands.names), hw, hw) and v["image"].dtype == torch.float32
        assert v["mask"].shape == (8, hw, hw)
        assert torch.isfinite(v["image"]).all()
    if name != "resized_crop":
        assert not torch.allclose(views[0]["image"], _standardised(bands, x)), f"{name} with p=1 changed nothing"


# ------------------------------------------------------------------------------------------- errors


def test_wrong_band_count_is_a_clear_error(bands):
    c = len(bands.names)
    gen = _gen(bands, "strong")
    with pytest.raises(ValueError, match=rf"{c - 1} bands.*configured for {c}"):
        gen(_reflectance(bands)[:, : c - 1])
    with pytest.raises(ValueError, match=rf"{c + 1} bands"):
        gen(torch.ones(2, c + 1, 16, 16), image2=torch.ones(2, c + 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gen(_reflectance(bands)[0])


def test_nan_input_is_a_clear_error(bands):
    gen = _gen(bands, "none")
    x = _reflectance(bands)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gen(bad)
    with pytest.raises(ValueError, match="NaN"):
        gen(x, image2=bad)


def test_unknown_op_name_lists_known_ops_with_the_dotted_path(bands):
    # validation may happen when the spec is built (load time) or when the generator is: accept both
    with pytest.raises(ConfigError, match=r"views\.ops\[1\]\.name") as err:
        _gen(bands, ViewSpec(ops=[OpSpec("rot90_flip"), OpSpec("hue_jitter")]))
    assert "hue_jitter" in str(err.value)
    for known in OPS.names():
        assert known in str(err.value)


def test_unknown_op_parameter_names_it_and_lists_the_allowed_ones(bands):
    with pytest.raises(ConfigError, match=r"views\.ops\[0\]\.params\.p_bands") as err:
        _gen(bands, ViewSpec(ops=[OpSpec("band_dropout", {"p_bands": 0.3})]))
    for allowed in ("p_band", "k", "fill", "p"):
        assert allowed in str(err.value)
    assert "seed" not in str(err.value).split("allowed")[-1]


def test_invalid_op_value_is_a_config_error_with_the_path(bands):
    with pytest.raises(ConfigError, match=r"views\.ops\[0\].*p_band"):
        _gen(bands, ViewSpec(ops=[OpSpec("band_dropout", {"p_band": 1.5})]))
    with pytest.raises(ConfigError, match="n_views"):
        _gen(bands, preset("none", n_views=0))


def test_yaml_view_config_errors_name_the_dotted_path():
    """The load-time path (eossl.config.from_dict, used by the CLI) is strict."""
    cases = [({"ops": [{"name": "rot90_flip"}, {"name": "hue"}]}, r"views\.ops\[1\]\.name.*known: .*rot90_flip"),
             ({"ops": [{"name": "noise", "params": {"sd": 1}}]}, r"views\.ops\[0\]\.params\.sd.*allowed: std"),
             ({"n_view": 2}, r"views\.n_view.*n_views"),
             ({"seasonal_pairs": "yes"}, r"views\.seasonal_pairs.*'use', 'ignore'")]
    for data, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            from_dict(ViewSpec, data, "views")
    spec = from_dict(ViewSpec, {"ops": [{"name": "noise", "params": {"std": [0.0, 0.2]}}], "n_views": 3}, "views")
    assert spec.n_views == 3 and spec.ops[0].name == "noise"


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="unknown view preset 'stronk'") as err:
        preset("stronk")
    for known in ("strong", "light", "none", "simsiam", "mae"):
        assert known in str(err.value)


def test_per_band_arguments_must_agree(bands):
    with pytest.raises(ValueError, match="one entry per band"):
        ViewGenerator(preset("none"), bands.names, bands.wavelengths[:-1], bands.mean.tolist(), bands.std.tolist(),
                      chip_size=16)


# ------------------------------------------------------------------------------------------- Registry


def test_registry_register_get_and_names():
    reg: Registry[type] = Registry("widget")

    @reg.register("b")
    class B:
        pass

    reg.register("a")(int)
    assert reg.get("b") is B and reg.get("a") is int
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_registry_unknown_name_lists_what_exists():
    reg: Registry[type] = Registry("widget")
    reg.register("alpha")(int)
    reg.register("beta")(float)
    with pytest.raises(ValueError, match="unknown widget 'gamma'") as err:
        reg.get("gamma")
    assert "alpha" in str(err.value) and "beta" in str(err.value)


def test_registry_duplicate_name_raises_and_lists_what_exists():
    reg: Registry[type] = Registry("widget")
    reg.register("alpha")(int)
    reg.register("beta")(float)
    with pytest.raises(ValueError, match="'alpha'") as err:
        reg.register("alpha")(str)
    assert reg.get("alpha") is int, "a failed registration must not replace the original"
    # house style (STYLE.md 3): a duplicate name raises an error that lists what exists
    assert "beta" in str(err.value), f"message does not list the registered names: {err.value}"


def test_native_preset_crops_at_the_chip_resolution(bands):
    """`native` views are crop_size px boxes of the chip with its own pixel spacing (no zoom): on a ramp image whose
    value grows by 1 per pixel, neighbouring view pixels still differ by 1 (up to rotation/flip)."""
    spec = ViewSpec(ops=[op for op in preset("native").ops if op.name != "spectral_shift"], crop_size=8)
    gen = ViewGenerator(spec, bands.names, bands.wavelengths, [0.0] * len(bands.names), [1.0] * len(bands.names),
                        chip_size=16, seed=0)
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 16).expand(4, len(bands.names), 16, 16).clone()
    for view in gen(ramp, torch.ones(4, 16, 16, dtype=torch.bool)):
        img = view["image"][:, 0]
        assert img.shape == (4, 8, 8)
        steps = torch.maximum((img[:, :, 1:] - img[:, :, :-1]).abs().amax(dim=(1, 2)),
                              (img[:, 1:, :] - img[:, :-1, :]).abs().amax(dim=(1, 2)))
        assert torch.allclose(steps, torch.ones(4), atol=1e-3), steps   # a zoomed crop would step by != 1
    with pytest.raises(ConfigError, match="does not fit"):
        _gen(bands, preset("native", crop_size=32), chip=16)
