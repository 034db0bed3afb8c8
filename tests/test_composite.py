"""Composites of a stack against a plain loop over pixels and periods; gap filling; the validity channel; one
pixel-series path for chosen pixels and for all of them."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from stack_data import make_raw, write_wc_folder

from eossl.data.series.composite import composite, fill_gaps, period_grid, pixel_series
from eossl.data.series.stack import SceneStack, open_stack


def _stack(values, valid, days) -> SceneStack:
    t, c, h, w = values.shape
    return SceneStack(values=np.where(valid, values, 0).astype(np.float32), valid=valid,
                      times=np.array(days, dtype="datetime64[D]").astype("datetime64[ns]"),
                      bands=[f"B{i}" for i in range(c)], sensor="test", crs="EPSG:32631",
                      transform=Affine(10, 0, 0, 0, -10, 0), gsd=10.0, sources=[], observed=np.ones((t, c), bool))


def _loop_median(stack, starts, ends):
    """Plain reference: per period, pixel and band, np.median of the valid values (NaN when none)."""
    days = stack.times.astype("datetime64[D]")
    p, (_, c, h, w) = len(starts), stack.values.shape
    out = np.full((p, c, h, w), np.nan, np.float32)
    for k in range(p):
        sel = np.flatnonzero((days >= starts[k]) & (days < ends[k]))
        for b in range(c):
            for i in range(h):
                for j in range(w):
                    v = stack.values[sel, b, i, j][stack.valid[sel, b, i, j]]
                    if v.size:
                        out[k, b, i, j] = np.median(v)
    return out


@pytest.mark.parametrize("period", ["10D", "month"])
def test_composite_medians_match_a_plain_loop(period):
    rng = np.random.default_rng(0)
    days = np.datetime64("2018-01-03") + np.sort(rng.choice(120, size=25, replace=False))
    values = rng.random((25, 3, 5, 4)).astype(np.float32)
    valid = rng.random((25, 3, 5, 4)) > 0.4
    stack = _stack(values, valid, days)
    comp = composite(stack, period)
    ref = _loop_median(stack, comp.starts, comp.ends)
    has = ~np.isnan(ref)
    np.testing.assert_array_equal(has, ~comp.filled)
    np.testing.assert_allclose(comp.values[has], ref[has], rtol=1e-6)
    counts = np.array([[valid[(days >= s) & (days < e)].sum(0)] for s, e in zip(comp.starts, comp.ends)])[:, 0]
    np.testing.assert_array_equal(comp.counts, counts)
    n_dates = np.array([((days >= s) & (days < e)).sum() for s, e in zip(comp.starts, comp.ends)])
    frac = counts.sum(1) / np.maximum(n_dates * 3, 1)[:, None, None]
    np.testing.assert_allclose(comp.validity, frac, rtol=1e-6)


def test_period_grid():
    times = np.array(["2018-01-15", "2018-03-02"], dtype="datetime64[D]")
    starts, ends = period_grid(times, "month")
    assert list(starts.astype(str)) == ["2018-01-01", "2018-02-01", "2018-03-01"]
    assert str(ends[-1]) == "2018-04-01"
    starts, ends = period_grid(times, "10D", start="2018-01-01", end="2018-01-31")
    assert len(starts) == 4 and str(starts[1]) == "2018-01-11" and str(ends[0]) == "2018-01-11"
    with pytest.raises(ValueError, match="unknown period 'week'"):
        period_grid(times, "week")


def test_gaps_filled_linearly_nearest_at_the_ends_and_never_valid_flagged():
    # one band, 3 pixels, 5 monthly periods; one observation per month on the 10th
    days = [f"2018-0{m}-10" for m in range(1, 6)]
    values = np.zeros((5, 1, 1, 3), np.float32)
    valid = np.zeros((5, 1, 1, 3), bool)
    values[[1, 3], 0, 0, 0] = [1.0, 3.0]              # pixel 0: valid in Feb and Apr only
    valid[[1, 3], 0, 0, 0] = True
    values[:, 0, 0, 1] = [5, 6, 7, 8, 9]              # pixel 1: always valid
    valid[:, 0, 0, 1] = True                          # pixel 2: never valid
    comp = composite(_stack(values, valid, days), "month")
    px0 = comp.values[:, 0, 0, 0]
    assert px0[0] == 1.0 and px0[4] == 3.0            # nearest at the ends
    feb, mar, apr = (np.datetime64(d) for d in ("2018-02-01", "2018-03-01", "2018-04-01"))
    centre = lambda s, n: (s - feb).astype(float) + n / 2   # noqa: E731
    w = (centre(mar, 31) - centre(feb, 28)) / (centre(apr, 30) - centre(feb, 28))
    np.testing.assert_allclose(px0[2], 1.0 + w * 2.0, rtol=1e-6)   # linear in time between the period centres
    np.testing.assert_array_equal(comp.filled[:, 0, 0, 0], [True, False, True, False, True])
    np.testing.assert_array_equal(comp.values[:, 0, 0, 1], [5, 6, 7, 8, 9])
    assert (comp.values[:, 0, 0, 2] == 0).all() and comp.never_valid[0, 0, 2] and not comp.never_valid[0, 0, :2].any()
    np.testing.assert_array_equal(comp.validity[:, 0, 0], [0, 1, 0, 1, 0])


def test_fill_gaps_matches_np_interp_per_column():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.integers(5, 15, size=12)).astype(float)
    series = rng.random((12, 50)).astype(np.float32)
    has = rng.random((12, 50)) > 0.5
    out = fill_gaps(series, has, t)
    for n in range(50):
        if has[:, n].any():
            np.testing.assert_allclose(out[:, n], np.interp(t, t[has[:, n]], series[has[:, n], n]), rtol=1e-5)
        else:
            assert (out[:, n] == 0).all()


def test_pixel_series_one_path_for_chosen_and_all_pixels(tmp_path):
    raw = make_raw(n_dates=5)
    write_wc_folder(tmp_path, raw)
    comp = composite(open_stack(tmp_path), "10D")
    every = pixel_series(comp)
    p, c = comp.values.shape[:2]
    assert every.shape == (64, p, c + 1) and every.dtype == np.float32 and comp.channels[-1] == "validity"
    rows, cols = np.array([0, 3, 7]), np.array([5, 0, 7])
    chosen = pixel_series(comp, rows, cols)
    np.testing.assert_array_equal(chosen, every[rows * 8 + cols])
    np.testing.assert_array_equal(chosen[1, :, :c], comp.values[:, :, 3, 0])
    np.testing.assert_array_equal(chosen[1, :, c], comp.validity[:, 3, 0])
    with pytest.raises(ValueError, match="outside the 8x8"):
        pixel_series(comp, [8], [0])
    with pytest.raises(ValueError, match="both rows and cols"):
        pixel_series(comp, rows=[0])


def test_stack_samples_are_the_pixel_series_with_observed_periods_and_centre_days(tmp_path):
    from eossl.data.series.stack_samples import period_centres, stack_samples

    raw = make_raw(n_dates=5)
    write_wc_folder(tmp_path, raw)
    comp = composite(open_stack(tmp_path), "10D")
    p, c = comp.values.shape[:2]
    every = stack_samples(comp)
    assert every.values.shape == (64, p, c) and (every.labels == -1).all() and every.bands == comp.bands
    rows, cols = np.array([0, 3, 7]), np.array([5, 0, 7])
    chosen = stack_samples(comp, rows, cols, labels=np.array([0, 1, 0]), classes=["a", "b"])
    np.testing.assert_array_equal(chosen.values, pixel_series(comp, rows, cols)[..., :c])
    np.testing.assert_array_equal(chosen.values, every.values[rows * 8 + cols])
    np.testing.assert_array_equal(chosen.valid[1], (comp.counts[:, :, 3, 0] > 0))
    assert chosen.ids == ["r0c5", "r3c0", "r7c7"] and chosen.classes == ["a", "b"]
    centres = period_centres(comp)
    assert (centres >= comp.starts.astype("datetime64[D]")).all() and (centres < comp.ends.astype("datetime64[D]")).all()
    np.testing.assert_array_equal(chosen.times[2], centres)
    with pytest.raises(ValueError, match="2 labels for 3 pixels"):
        stack_samples(comp, rows, cols, labels=np.array([0, 1]))
