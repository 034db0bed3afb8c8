"""Views of pixel series (eossl.augment.series): shapes, seeding, the kept fraction of dates, shift bounds, the
spectral gain in reflectance units, and no edit of the caller's tensors."""

from __future__ import annotations

import pytest
import torch

from eossl.augment.series import keep_steps, series_view

B, T, C = 64, 20, 5


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=g)
    valid = torch.rand(B, T, C, generator=g) > 0.1
    valid[:, 3] = False                                    # a step invalid everywhere
    valid[1] = False                                       # a sample never valid
    x = torch.where(valid, x, torch.zeros_like(x))
    doy = torch.linspace(10, 300, T).expand(B, T).clone()
    doy[:, -1] = float("nan")                              # unknown time
    return x, valid, doy


def test_shapes_dtypes_and_no_in_place_edit():
    x, valid, doy = _batch()
    before = [t.clone() for t in (x, valid, doy)]
    out = series_view(x, valid, doy, torch.Generator().manual_seed(1))
    assert [t.shape for t in out] == [x.shape, valid.shape, doy.shape]
    assert [t.dtype for t in out] == [x.dtype, torch.bool, doy.dtype]
    for a, b in zip((x, valid, doy), before):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_the_same_seed_gives_the_same_view_and_two_draws_differ():
    x, valid, doy = _batch()
    a = series_view(x, valid, doy, torch.Generator().manual_seed(7))
    b = series_view(x, valid, doy, torch.Generator().manual_seed(7))
    for s, t in zip(a, b):
        torch.testing.assert_close(s, t, equal_nan=True)
    g = torch.Generator().manual_seed(7)
    first, second = series_view(x, valid, doy, g), series_view(x, valid, doy, g)
    assert not torch.equal(first[1], second[1])


def test_kept_fraction_of_valid_dates_is_within_the_range():
    x, valid, doy = _batch()
    lo, hi = 0.5, 0.8
    _, v, _ = series_view(x, valid, doy, torch.Generator().manual_seed(2), keep=(lo, hi))
    assert not (v & ~valid).any()                           # nothing becomes valid
    n_valid, n_kept = valid.any(-1).sum(1), v.any(-1).sum(1)
    has = n_valid > 0
    frac = n_kept[has].float() / n_valid[has].float()
    assert (frac >= lo - 0.5 / n_valid[has]).all() and (frac <= hi + 0.5 / n_valid[has]).all()
    assert n_kept[~has].eq(0).all()                         # a never-valid sample stays empty
    assert frac.std() > 0                                   # the fraction is drawn per sample
    # a kept step keeps all of its valid bands; a dropped step loses them all
    kept = v.any(-1)
    assert torch.equal(v, valid & kept[..., None])


def test_keep_steps_keeps_at_least_one_valid_step():
    step_valid = torch.zeros(4, 10, dtype=torch.bool)
    step_valid[0, 6] = True
    step_valid[1, :] = True
    kept = keep_steps(step_valid, torch.tensor([0.1, 0.01, 0.5, 1.0]), torch.Generator().manual_seed(0))
    assert kept[0].tolist() == step_valid[0].tolist() and kept[1].sum() == 1 and kept[2:].sum() == 0


def test_shift_is_one_offset_per_sample_within_bounds_and_nan_stays_nan():
    x, valid, doy = _batch()
    _, _, d = series_view(x, valid, doy, torch.Generator().manual_seed(3), shift_days=12.0)
    shift = d[:, :-1] - doy[:, :-1]
    assert shift.abs().max() <= 12.0 and shift.abs().max() > 6.0
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), atol=1e-4, rtol=0)
    assert d[:, -1].isnan().all()
    _, _, same = series_view(x, valid, doy, torch.Generator().manual_seed(3), shift_days=0.0)
    torch.testing.assert_close(same, doy, equal_nan=True)


def test_spectral_gain_acts_on_reflectance_behind_standardised_values():
    """Standardised z of reflectance r = mean + std z: the view holds (g r - mean) / std, one gain g per sample and
    band, within 1 +/- jitter, the same on every date."""
    x, valid, doy = _batch()
    mean, std = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.25]), torch.tensor([0.02, 0.03, 0.05, 0.1, 0.08])
    keep_all = (1.0, 1.0)
    out, v, _ = series_view(x, valid, doy, torch.Generator().manual_seed(4), keep=keep_all, jitter=0.2, mean=mean,
                            std=std)
    assert torch.equal(v, valid)
    r, r_out = mean + std * x, mean + std * out
    gain = torch.where(valid, r_out / r, torch.full_like(r, float("nan")))
    g = torch.nanmean(gain, dim=1)                                         # (B, C)
    ok = valid.any(1)
    assert ((g[ok] - 1).abs() <= 0.2 + 1e-5).all() and (g[ok] - 1).abs().max() > 0.1
    torch.testing.assert_close(torch.where(valid, gain, 0.0), torch.where(valid, g[:, None].expand_as(gain), 0.0),
                               rtol=1e-4, atol=1e-4)
    assert (out[~valid] == 0).all()
    plain, _, _ = series_view(x, valid, doy, torch.Generator().manual_seed(4), keep=keep_all, jitter=0.2)
    ratio = torch.where(valid & (x.abs() > 1e-3), plain / x, torch.full_like(x, float("nan")))
    torch.testing.assert_close(torch.nanmean(ratio, 1)[ok], g[ok], rtol=1e-4, atol=1e-4)   # no mean/std: x is r


@pytest.mark.parametrize("kwargs, match", [
    ({"keep": (0.0, 0.5)}, "keep must be"), ({"keep": (0.9, 0.5)}, "keep must be"),
    ({"shift_days": -1.0}, "shift_days"), ({"jitter": 1.0}, "jitter"),
    ({"mean": torch.zeros(5)}, "both mean and std"),
])
def test_bad_arguments_are_errors(kwargs, match):
    x, valid, doy = _batch()
    with pytest.raises(ValueError, match=match):
        series_view(x, valid, doy, torch.Generator(), **kwargs)


def test_bad_shapes_are_errors():
    x, valid, doy = _batch()
    with pytest.raises(ValueError, match=r"x \(B, T, C\)"):
        series_view(x, valid[:, :5], doy, torch.Generator())
