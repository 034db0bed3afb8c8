"""Augmentation ops (eossl.augment): exact geometry, band dropout rates, spectral shift maths, seeding, masks.

Every op is checked against an independent computation (torch.rot90/flip, a hand-written bilinear sampler,
the gain/offset/tilt formula, a hand-built Gaussian kernel) rather than against itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia.augmentation as K
import pytest
import torch

from eossl.augment import (
    RandomBandDropout,
    RandomBrightnessContrastMS,
    RandomGaussianBlurMS,
    RandomGaussianNoiseMS,
    RandomResizedCropMS,
    RandomRot90Flip,
    RandomRotationReflect,
    RandomSpectralShift,
)
from eossl.catalog.sensors import load_sensor

# ------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class BandSet:
    names: list[str]
    wavelengths: list[float]


_S2 = load_sensor("sentinel2-l1c")
_BAND_NAMES = {4: ["B02", "B03", "B04", "B08"], 13: list(_S2.band_names)}


@pytest.fixture(params=[4, 13], ids=["4bands", "13bands"])
def bands(request) -> BandSet:
    names = _BAND_NAMES[request.param]
    return BandSet(names=names, wavelengths=_S2.wavelengths(names))


def _rand(*shape, seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g)


def _distinct(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A batch whose values are all different, so every geometric transform of it is distinguishable."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(b * c * h * w, generator=g).float().view(b, c, h, w)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 exact dihedral transforms of ``x`` (..., H, W): rot90 by k after an optional horizontal flip."""
    return [torch.rot90(src, k, dims=(-2, -1)) for src in (x, x.flip(-1)) for k in range(4)]


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Plain bilinear sample of ``img`` (C, H, W) at pixel coordinates (x = column, y = row), inside the image."""
    h, w = img.shape[-2:]
    x0, y0 = min(int(math.floor(x)), w - 2), min(int(math.floor(y)), h - 2)
    fx, fy = x - x0, y - y0
    top = img[:, y0, x0] * (1 - fx) + img[:, y0, x0 + 1] * fx
    bottom = img[:, y0 + 1, x0] * (1 - fx) + img[:, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _quadrant(b: int, h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W) float mask marking the top-left quadrant."""
    q = torch.zeros(b, 1, h, w)
    q[:, :, : h // 2, : w // 2] = 1.0
    return q


def _all_ops(bs: BandSet, seed: int = 0) -> dict[str, torch.nn.Module]:
    """One instance of every op, always applied (p=1)."""
    return {
        "band_dropout": RandomBandDropout(p_band=0.3, seed=seed),
        "spectral_shift": RandomSpectralShift(bs.wavelengths, p=1.0, seed=seed),
        "brightness_contrast": RandomBrightnessContrastMS(p=1.0, seed=seed),
        "noise": RandomGaussianNoiseMS(std=(0.05, 0.2), p=1.0, seed=seed),
        "blur": RandomGaussianBlurMS(p=1.0, seed=seed),
        "rot90_flip": RandomRot90Flip(seed=seed),
        "rotation": RandomRotationReflect(p=1.0, seed=seed),
        "resized_crop": RandomResizedCropMS(size=8, seed=seed),
    }


OP_NAMES = ["band_dropout", "spectral_shift", "brightness_contrast", "noise", "blur", "rot90_flip", "rotation",
            "resized_crop"]
GEOMETRIC = {"rot90_flip", "rotation", "resized_crop"}


# ------------------------------------------------------------------------------------------- every op


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_keeps_dtype_and_shape_and_leaves_the_input_untouched(bands, name):
    c = len(bands.names)
    op = _all_ops(bands)[name]
    x = _rand(8, c, 16, 16, low=0.5, high=1.5)
    before = x.clone()
    out = op(x)
    assert torch.equal(x, before), f"{name} modified its input in place"
    assert out.dtype == torch.float32
    expected = (8, c, 8, 8) if name == "resized_crop" else (8, c, 16, 16)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()
    if name != "resized_crop":
        assert not torch.equal(out, x), f"{name} with p=1 left the batch unchanged"


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_works_under_no_grad_on_a_batch_of_one(bands, name):
    c = len(bands.names)
    op = _all_ops(bands)[name]
    x = _rand(1, c, 16, 16, low=0.5, high=1.5)
    with torch.no_grad():
        out = op(x)
    assert tuple(out.shape) == ((1, c, 8, 8) if name == "resized_crop" else (1, c, 16, 16))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", OP_NAMES)
def test_reseed_reproduces_parameters_and_outputs(bands, name):
    c = len(bands.names)
    op = _all_ops(bands)[name]
    x = _rand(8, c, 16, 16, low=0.5, high=1.5)
    op.reseed(123)
    p1 = op.forward_parameters(x.shape)
    op.reseed(123)
    p2 = op.forward_parameters(x.shape)
    assert p1.keys() == p2.keys()
    for key in p1:
        assert torch.equal(p1[key], p2[key]), f"{name}: parameter {key} differs after reseed"
    op.reseed(123)
    torch.manual_seed(0)              # the op must not depend on torch's global generator
    out1 = op(x)
    op.reseed(123)
    torch.manual_seed(1)
    out2 = op(x)
    assert torch.equal(out1, out2)
    op.reseed(124)
    assert not torch.equal(op(x), out1)


@pytest.mark.parametrize("name", OP_NAMES)
def test_same_constructor_seed_gives_same_output_and_different_seed_differs(bands, name):
    c = len(bands.names)
    x = _rand(8, c, 16, 16, low=0.5, high=1.5)
    torch.manual_seed(10)
    a = _all_ops(bands, seed=5)[name](x)
    torch.manual_seed(11)
    b = _all_ops(bands, seed=5)[name](x)
    c_ = _all_ops(bands, seed=6)[name](x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c_)


def test_p_gates_samples_exactly(bands):
    """Samples whose gate is off come back unchanged; the others change."""
    c = len(bands.names)
    op = RandomSpectralShift(bands.wavelengths, p=0.5, seed=3)
    x = _rand(32, c, 8, 8, low=0.1, high=0.5)
    params = op.forward_parameters(x.shape)
    out = op(x, params=params)
    gate = params["gate"]
    assert 0 < int(gate.sum()) < 32
    assert torch.equal(out[~gate], x[~gate])
    for i in gate.nonzero()[:, 0]:
        assert not torch.equal(out[i], x[i])


# ------------------------------------------------------------------------------------------- RandomRot90Flip


def _rot_params(b: int, k: int, flip: bool) -> dict[str, torch.Tensor]:
    return {"k": torch.full((b,), k, dtype=torch.long), "flip": torch.full((b,), flip, dtype=torch.bool)}


def test_four_quarter_turns_and_two_flips_are_the_identity(bands):
    op = RandomRot90Flip(seed=0)
    x = _distinct(8, len(bands.names), 16, 16)
    out = x
    for step in range(4):
        out = op.apply_transform(out, _rot_params(8, 1, False), op.flags)
        assert torch.equal(out, torch.rot90(x, step + 1, dims=(-2, -1)))
        if step < 3:
            assert not torch.equal(out, x)
    assert torch.equal(out, x)
    once = op.apply_transform(x, _rot_params(8, 0, True), op.flags)
    assert torch.equal(once, x.flip(-1))
    assert torch.equal(op.apply_transform(once, _rot_params(8, 0, True), op.flags), x)


@pytest.mark.parametrize("hw", [(16, 16), (16, 12)], ids=["square", "non-square"])
def test_every_output_is_the_drawn_dihedral_transform_exactly(bands, hw):
    h, w = hw
    b = 64
    op = RandomRot90Flip(seed=1)
    x = _distinct(b, len(bands.names), h, w)
    params = op.forward_parameters(x.shape)
    out = op(x, params=params)
    reached = set()
    for i in range(b):
        k, flip = int(params["k"][i]), bool(params["flip"][i])
        expected = torch.rot90(x[i].flip(-1) if flip else x[i], k, dims=(-2, -1))
        assert torch.equal(out[i], expected)
        matches = [j for j, cand in enumerate(_dihedral(x[i])) if cand.shape == out[i].shape
                   and torch.equal(cand, out[i])]
        assert len(matches) == 1
        reached.add(matches[0])
    if h == w:
        assert reached == set(range(8)), "every dihedral symmetry of the square must be reachable"
    else:
        assert reached == {0, 2, 4, 6}, "non-square chips only get 0/180 degree turns (shape is kept)"
        assert tuple(out.shape) == tuple(x.shape)


@pytest.mark.parametrize("hw", [(16, 16), (16, 12)], ids=["square", "non-square"])
def test_rot90_flip_matrices_move_pixels_where_the_image_moved_them(hw):
    h, w = hw
    op = RandomRot90Flip(seed=2)
    x = _distinct(16, 3, h, w)
    out = op(x)
    mats = op.transform_matrix
    assert mats.shape == (16, 3, 3)
    for i in range(16):
        for r, c in [(0, 0), (0, w - 1), (h - 1, 0), (3, 5), (h - 1, w - 1)]:
            p = mats[i] @ torch.tensor([float(c), float(r), 1.0])
            assert p[2] == pytest.approx(1.0)
            xn, yn = round(p[0].item()), round(p[1].item())
            assert p[0].item() == pytest.approx(xn, abs=1e-5) and p[1].item() == pytest.approx(yn, abs=1e-5)
            assert torch.equal(out[i, :, yn, xn], x[i, :, r, c])


def test_rot90_flip_mask_follows_the_image_exactly(bands):
    c = len(bands.names)
    x = _rand(16, c, 16, 16, low=1.0, high=2.0)
    x[:, 0] = _quadrant(16, 16, 16)[:, 0]           # channel 0 encodes the quadrant
    mask = _quadrant(16, 16, 16)
    seq = K.AugmentationSequential(RandomRot90Flip(seed=4), data_keys=["input", "mask"])
    out, out_mask = seq(x, mask)
    assert out_mask.shape == mask.shape
    assert torch.equal(out_mask[:, 0], out[:, 0])
    # the quadrant really moved somewhere else for some samples
    assert not torch.equal(out_mask, mask)


# ------------------------------------------------------------------------------------------- RandomRotationReflect


def test_rotation_reflect_matches_its_matrix_and_rotates_counter_clockwise():
    x = _rand(4, 3, 16, 16, low=1.0, high=2.0)
    op = RandomRotationReflect(degrees=(-180.0, 180.0), p=1.0, seed=5)
    out = op(x)
    inv = torch.linalg.inv(op.transform_matrix)
    checked = 0
    for i in range(4):
        for r in range(0, 16, 3):
            for c in range(0, 16, 3):
                src = inv[i] @ torch.tensor([float(c), float(r), 1.0])
                if 0 <= src[0] <= 15 and 0 <= src[1] <= 15:
                    torch.testing.assert_close(out[i, :, r, c], _bilinear(x[i], src[0].item(), src[1].item()),
                                               atol=1e-4, rtol=1e-4)
                    checked += 1
    assert checked > 40
    # 90 degrees counter-clockwise is torch.rot90(k=1) (up to bilinear round-off at integer positions)
    quarter = RandomRotationReflect(degrees=(90.0, 90.0), p=1.0, seed=0)(x)
    torch.testing.assert_close(quarter, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4, rtol=1e-4)


def test_rotation_reflect_marks_reflected_corners_invalid(bands):
    c = len(bands.names)
    x = _rand(2, c, 16, 16, low=1.0, high=2.0)
    mask = torch.ones(2, 1, 16, 16)
    seq = K.AugmentationSequential(RandomRotationReflect(degrees=(45.0, 45.0), p=1.0, seed=0),
                                   data_keys=["input", "mask"])
    out, out_mask = seq(x, mask)
    for r, col in [(0, 0), (0, 15), (15, 0), (15, 15)]:
        assert (out_mask[:, 0, r, col] == 0).all(), "reflected corner must be invalid"
        corner = out[:, :, r, col]
        assert torch.isfinite(corner).all()
        # reflected data from inside the chip, not zero padding
        assert (corner >= 1.0 - 1e-5).all() and (corner <= 2.0 + 1e-5).all()
    assert (out_mask[:, 0, 6:10, 6:10] == 1).all()   # the centre stays valid
    assert 0 < out_mask.mean() < 1


def test_rotation_mask_follows_the_image_approximately(bands):
    c = len(bands.names)
    x = _rand(8, c, 16, 16, low=1.0, high=2.0)
    x[:, 0] = _quadrant(8, 16, 16)[:, 0]
    seq = K.AugmentationSequential(RandomRotationReflect(p=1.0, seed=6), data_keys=["input", "mask"])
    out, out_mask = seq(x, _quadrant(8, 16, 16))
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    inside = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2).sqrt() <= 6.5       # valid for every angle
    decided = (out[:, 0] - 0.5).abs() > 0.05                          # away from the bilinear edge
    sel = inside.expand(8, 16, 16) & decided
    assert sel.sum() > 8 * 80
    assert torch.equal(out_mask[:, 0][sel] > 0.5, out[:, 0][sel] > 0.5)


# ------------------------------------------------------------------------------------------- RandomResizedCropMS


def test_resized_crop_matches_its_matrix_and_box():
    x = _rand(6, 3, 16, 16)
    op = RandomResizedCropMS(size=(8, 10), scale=(0.2, 1.0), seed=7)
    params = op.forward_parameters(x.shape)
    out = op(x, params=params)
    assert tuple(out.shape) == (6, 3, 8, 10)
    mats = op.transform_matrix
    dst = torch.tensor([[0.0, 0], [9, 0], [9, 7], [0, 7]])
    for i in range(6):
        src = params["src"][i]
        assert (src >= 0).all() and (src[:, 0] <= 15).all() and (src[:, 1] <= 15).all()
        for s, d in zip(src, dst):
            p = mats[i] @ torch.tensor([s[0], s[1], 1.0])
            torch.testing.assert_close(p[:2] / p[2], d, atol=1e-3, rtol=0)
        inv = torch.linalg.inv(mats[i])
        for r, c in [(0, 0), (7, 9), (3, 4), (7, 0)]:
            q = inv @ torch.tensor([float(c), float(r), 1.0])
            torch.testing.assert_close(out[i, :, r, c], _bilinear(x[i], (q[0] / q[2]).item(), (q[1] / q[2]).item()),
                                       atol=1e-4, rtol=1e-4)


def test_resized_crop_mask_follows_the_image_approximately(bands):
    c = len(bands.names)
    x = _rand(8, c, 16, 16, low=1.0, high=2.0)
    x[:, 0] = _quadrant(8, 16, 16)[:, 0]
    seq = K.AugmentationSequential(RandomResizedCropMS(size=12, scale=(0.3, 1.0), seed=8),
                                   data_keys=["input", "mask"])
    out, out_mask = seq(x, _quadrant(8, 16, 16))
    assert tuple(out.shape) == (8, c, 12, 12)
    assert tuple(out_mask.shape) == (8, 1, 12, 12)
    decided = (out[:, 0] - 0.5).abs() > 0.05
    assert decided.float().mean() > 0.7
    assert torch.equal(out_mask[:, 0][decided] > 0.5, out[:, 0][decided] > 0.5)


@pytest.mark.parametrize("p", [0.5, 0.0])
def test_resized_crop_with_p_below_one_resizes_masks_of_skipped_samples_too(p):
    """Skipped samples are resized to ``size`` (apply_non_transform); their masks must be too, or the batch
    cannot be assembled (mixed gate: ValueError) or image and mask sizes disagree (gate all off)."""
    x = _rand(8, 3, 16, 16)
    x[:, 0] = _quadrant(8, 16, 16)[:, 0]
    seq = K.AugmentationSequential(RandomResizedCropMS(size=8, p=p, seed=9), data_keys=["input", "mask"])
    out, out_mask = seq(x, _quadrant(8, 16, 16))
    assert tuple(out.shape) == (8, 3, 8, 8)
    assert tuple(out_mask.shape) == (8, 1, 8, 8)
    decided = (out[:, 0] - 0.5).abs() > 0.05
    assert torch.equal(out_mask[:, 0][decided] > 0.5, out[:, 0][decided] > 0.5)


def test_resized_crop_rejects_bad_ranges():
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropMS(size=8, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropMS(size=8, scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCropMS(size=8, ratio=(0.0, 1.0))


# ------------------------------------------------------------------------------------------- RandomBandDropout


def _dropped(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(B, C) bool: bands that the op replaced (compared with an input that has no zeros)."""
    return (out != x).flatten(2).all(dim=2)


def test_band_dropout_never_drops_every_band(bands):
    c = len(bands.names)
    x = _rand(2000, c, 2, 2, low=1.0, high=2.0)
    out = RandomBandDropout(p_band=0.95, seed=0)(x)
    dropped = _dropped(x, out)
    assert (dropped.sum(dim=1) < c).all()
    assert (dropped.sum(dim=1) == c - 1).float().mean() > 0.3     # p=0.95 really drops most bands
    out_k = RandomBandDropout(k=c - 1, seed=0)(x)
    assert (_dropped(x, out_k).sum(dim=1) == c - 1).all()


def test_band_dropout_hits_the_requested_rate(bands):
    c, n, p = len(bands.names), 4000, 0.3
    x = _rand(n, c, 2, 2, low=1.0, high=2.0)
    rate = _dropped(x, RandomBandDropout(p_band=p, seed=1)(x)).float().mean(dim=0)
    # the "keep one band" rule removes p**c / c from each band's rate
    expected = p - p**c / c
    se = math.sqrt(expected * (1 - expected) / n)
    assert ((rate - expected).abs() < 4 * se).all(), rate
    assert abs(rate.mean().item() - expected) < 4 * se / math.sqrt(c)


@pytest.mark.parametrize("k", [1, "c-1"])
def test_band_dropout_drops_exactly_k_bands_uniformly(bands, k):
    c = len(bands.names)
    k = c - 1 if k == "c-1" else k
    x = _rand(1000, c, 2, 2, low=1.0, high=2.0)
    dropped = _dropped(x, RandomBandDropout(k=k, fill="zero", seed=2)(x))
    assert (dropped.sum(dim=1) == k).all()
    rate = dropped.float().mean(dim=0)
    se = math.sqrt((k / c) * (1 - k / c) / 1000) + 1e-9
    assert ((rate - k / c).abs() < 5 * se + 1e-6).all()


def test_band_dropout_fill_modes(bands):
    c = len(bands.names)
    x = _rand(4, c, 64, 64, low=1.0, high=2.0)
    for fill in ("zero", "mean", "noise"):
        op = RandomBandDropout(k=1, fill=fill, seed=3)
        params = op.forward_parameters(x.shape)
        out = op(x, params=params)
        drop = params["drop"]
        assert (drop.sum(dim=1) == 1).all()
        assert torch.equal(out[~drop], x[~drop]), "kept bands must be untouched"
        filled = out[drop]                                        # (B, H, W)
        if fill == "zero":
            assert (filled == 0).all()
        elif fill == "mean":
            expected = x[drop].mean(dim=(1, 2), keepdim=True).expand_as(filled)
            torch.testing.assert_close(filled, expected)
        else:   # standard normal noise, a fresh field per sample
            assert abs(filled.mean().item()) < 0.05
            assert abs(filled.std().item() - 1.0) < 0.05
            assert not torch.equal(filled[0], filled[1])


def test_band_dropout_rejects_invalid_arguments():
    for kwargs in ({"p_band": 1.0}, {"p_band": -0.1}, {"k": 0}, {"fill": "nan"}):
        with pytest.raises(ValueError):
            RandomBandDropout(**kwargs)
    with pytest.raises(ValueError, match="at least one band"):
        RandomBandDropout(k=4)(torch.ones(2, 4, 4, 4))


# ------------------------------------------------------------------------------------------- RandomSpectralShift


def test_spectral_shift_fixed_gain_offset_maps_mean_and_std(bands):
    c = len(bands.names)
    g, o = 1.3, 0.02
    x = _rand(8, c, 16, 16, low=0.05, high=0.5)
    op = RandomSpectralShift(bands.wavelengths, gain=(g, g), offset=(o, o), tilt=(0.0, 0.0), p=1.0, seed=0)
    out = op(x)
    torch.testing.assert_close(out.mean(dim=(2, 3)), g * x.mean(dim=(2, 3)) + o, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.std(dim=(2, 3)), g * x.std(dim=(2, 3)), atol=1e-5, rtol=1e-5)


def test_spectral_shift_gain_and_offset_stay_in_their_ranges(bands):
    c = len(bands.names)
    ones = torch.ones(64, c, 4, 4)
    out = RandomSpectralShift(bands.wavelengths, gain=(0.9, 1.1), offset=(0.0, 0.0), tilt=(0.0, 0.0), p=1.0,
                              seed=1)(ones)
    gain = out[..., 0, 0]
    assert torch.equal(out, gain[..., None, None].expand_as(out)), "the gain is per sample and band, not per pixel"
    assert (gain >= 0.9 - 1e-6).all() and (gain <= 1.1 + 1e-6).all()
    assert gain.std() > 0.02, "gains must vary across samples and bands"
    assert (gain[:, 0] != gain[:, 1]).any(), "each band has its own gain"
    x = _rand(64, c, 4, 4)
    out = RandomSpectralShift(bands.wavelengths, gain=(1.0, 1.0), offset=(-0.05, 0.05), tilt=(0.0, 0.0), p=1.0,
                              seed=2)(x)
    shift = out - x
    torch.testing.assert_close(shift, shift[..., :1, :1].expand_as(shift))
    assert (shift.abs() <= 0.05 + 1e-6).all() and shift.std() > 0.01


def test_spectral_tilt_is_monotone_in_wavelength(bands):
    c = len(bands.names)
    ones = torch.ones(32, c, 2, 2)
    kwargs = dict(gain=(1.0, 1.0), offset=(0.0, 0.0), tilt=(0.1, 0.2), p=1.0, seed=3)
    factor = RandomSpectralShift(bands.wavelengths, **kwargs)(ones)[..., 0, 0]
    assert (factor.diff(dim=1) > 0).all(), "bands are in wavelength order: the factor must increase"
    # factor = 1 + tilt * w, w in [-1, 1]: shortest band 1 - tilt, longest 1 + tilt
    assert ((factor[:, 0] >= 0.8 - 1e-6) & (factor[:, 0] <= 0.9 + 1e-6)).all()
    assert ((factor[:, -1] >= 1.1 - 1e-6) & (factor[:, -1] <= 1.2 + 1e-6)).all()
    torch.testing.assert_close(factor[:, 0] + factor[:, -1], torch.full((32,), 2.0))

    perm = torch.randperm(c, generator=torch.Generator().manual_seed(0))
    if torch.equal(perm, torch.arange(c)):
        perm = perm.flip(0)
    shuffled = [bands.wavelengths[i] for i in perm]
    factor = RandomSpectralShift(shuffled, **kwargs)(ones)[..., 0, 0]
    order = torch.tensor(shuffled).argsort()
    assert (factor[:, order].diff(dim=1) > 0).all(), "the factor must follow wavelength, not channel order"
    assert not (factor.diff(dim=1) > 0).all()


def test_spectral_shift_rejects_bad_arguments(bands):
    c = len(bands.names)
    with pytest.raises(ValueError, match="wavelength"):
        RandomSpectralShift([])
    with pytest.raises(ValueError, match="gain"):
        RandomSpectralShift(bands.wavelengths, gain=(1.1, 0.9))
    with pytest.raises(ValueError, match="gain"):
        RandomSpectralShift(bands.wavelengths, gain=(-0.5, 1.0))
    with pytest.raises(ValueError, match="tilt"):
        RandomSpectralShift(bands.wavelengths, tilt=(-1.5, 0.0))
    op = RandomSpectralShift(bands.wavelengths, p=1.0)
    with pytest.raises(ValueError, match=f"{c} bands"):
        op(torch.ones(2, c + 1, 4, 4))


# ------------------------------------------------------------------------------------------- intensity ops


def test_contrast_keeps_each_band_mean_and_scales_around_it(bands):
    c = len(bands.names)
    x = torch.randn(16, c, 16, 16, generator=torch.Generator().manual_seed(0))
    op = RandomBrightnessContrastMS(brightness=(0.0, 0.0), contrast=(0.5, 1.5), p=1.0, seed=0)
    params = op.forward_parameters(x.shape)
    out = op(x, params=params)
    m = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(2, 3), keepdim=True), m, atol=1e-5, rtol=0)
    ratio = out.std(dim=(2, 3)) / x.std(dim=(2, 3))           # (B, C): one contrast per sample
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ratio[:, 0], params["contrast"], atol=1e-4, rtol=1e-4)
    assert ((ratio >= 0.5 - 1e-4) & (ratio <= 1.5 + 1e-4)).all()
    torch.testing.assert_close(out, (x - m) * params["contrast"].view(-1, 1, 1, 1) + m)


def test_brightness_shifts_every_band_equally_without_clipping(bands):
    c = len(bands.names)
    x = 3 * torch.randn(16, c, 8, 8, generator=torch.Generator().manual_seed(1))
    out = RandomBrightnessContrastMS(brightness=(-0.5, 0.5), contrast=(1.0, 1.0), p=1.0, seed=1)(x)
    shift = out - x
    per_sample = shift[:, :1, :1, :1]
    torch.testing.assert_close(shift, per_sample.expand_as(shift), atol=1e-5, rtol=0)
    assert (per_sample.abs() <= 0.5 + 1e-6).all()
    assert per_sample.std() > 0.05
    assert out.max() > 1.0 and out.min() < -1.0, "standardised values must not be clipped"


def test_noise_std_matches_the_drawn_sigma(bands):
    c = len(bands.names)
    x = _rand(2, c, 64, 64)
    op = RandomGaussianNoiseMS(std=(0.05, 0.5), p=1.0, seed=2)
    params = op.forward_parameters(x.shape)
    noise = op(x, params=params) - x
    sigma = params["sigma"]                                    # (B, C)
    assert sigma.shape == (2, c) and sigma.std() > 0
    measured = noise.std(dim=(2, 3))
    # 4096 pixels per (sample, band): the std estimate has ~1.1% relative standard error
    assert ((measured / sigma - 1).abs() < 0.06).all(), (measured, sigma)
    assert (noise.mean(dim=(2, 3)).abs() < 4 * sigma / 64).all()


def _gaussian_variance_ratio(sigma: float, ksize: int) -> float:
    """Variance of white noise after a separable, normalised Gaussian blur (away from borders)."""
    t = torch.arange(ksize, dtype=torch.float64) - ksize // 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    return float((k**2).sum() ** 2)


def test_blur_reduces_white_noise_variance_more_for_larger_sigma(bands):
    c = len(bands.names)
    x = torch.randn(2, c, 64, 64, generator=torch.Generator().manual_seed(3))
    variances = []
    for s in (0.5, 1.0, 2.0):
        out = RandomGaussianBlurMS(kernel_size=7, sigma=(s, s), p=1.0, seed=0)(x)
        inner = out[..., 4:-4, 4:-4]
        var = inner.var().item() / x[..., 4:-4, 4:-4].var().item()
        assert var == pytest.approx(_gaussian_variance_ratio(s, 7), rel=0.1)
        variances.append(var)
    assert variances[0] > variances[1] > variances[2]
    assert variances[0] < 1.0
    const = torch.full((2, c, 16, 16), 0.7)
    torch.testing.assert_close(RandomGaussianBlurMS(p=1.0, seed=0)(const), const)


def test_intensity_ops_reject_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        RandomGaussianBlurMS(kernel_size=4)
    with pytest.raises(ValueError, match="sigma"):
        RandomGaussianBlurMS(sigma=(0.0, 1.0))
    with pytest.raises(ValueError, match="std"):
        RandomGaussianNoiseMS(std=(-0.1, 0.1))
    with pytest.raises(ValueError, match="contrast"):
        RandomBrightnessContrastMS(contrast=(1.2, 0.8))
    with pytest.raises(ValueError, match="degrees"):
        RandomRotationReflect(degrees=(10.0, -10.0))


def test_ops_declare_their_value_domain():
    assert RandomSpectralShift([500.0, 600.0]).domain == "reflectance"
    for op in (RandomBandDropout(), RandomBrightnessContrastMS(), RandomGaussianNoiseMS()):
        assert op.domain == "standardized"
    for op in (RandomGaussianBlurMS(), RandomRot90Flip(), RandomRotationReflect(), RandomResizedCropMS(8)):
        assert op.domain == "any"


def test_tiny_crop_scale_gives_finite_crops():
    op = RandomResizedCropMS(size=16, scale=(1e-4, 1e-4), seed=0)
    out = op(torch.rand(4, 3, 64, 64))
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()


def test_allocator_setting_is_applied_once_on_glibc():
    import platform

    from eossl.runtime import configure_allocator

    applied = configure_allocator()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True
    assert configure_allocator() is applied
