"""The one normalisation: per-band ``(x - mean) / std``, invalid pixels 0, statistics picked by band name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eossl.catalog.sensors import load_sensor
from eossl.data.normalization import Normalization

BANDS = ["B02", "B03", "B04", "B08"]


def _norm() -> Normalization:
    return Normalization(BANDS, [0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.125, 2.0])


def test_apply_is_the_written_out_formula_with_invalid_pixels_zero_for_numpy_and_torch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.5, (3, 4, 5, 6)).astype(np.float32)
    valid = rng.random((3, 5, 6)) > 0.3
    norm = _norm()
    expected = np.empty_like(x)
    for b in range(4):   # a plain loop over bands and pixels
        expected[:, b] = np.where(valid, (x[:, b] - norm.mean[b]) / norm.std[b], 0.0)
    got_np = norm.apply(x, valid)
    got_t = norm.apply(torch.from_numpy(x), torch.from_numpy(valid))
    assert got_np.dtype == got_t.dtype == torch.float32
    np.testing.assert_array_equal(got_np.numpy(), expected)
    np.testing.assert_array_equal(got_t.numpy(), expected)
    np.testing.assert_array_equal(norm.apply(x[0]).numpy(), (x[0] - norm.mean[:, None, None]) / norm.std[:, None, None])
    np.testing.assert_array_equal(x, x.copy())          # the caller's array is not modified
    # a (N, T, C, H, W) series with (N, T, H, W) masks
    np.testing.assert_array_equal(norm.apply(torch.from_numpy(x)[None], torch.from_numpy(valid)[None]).numpy(),
                                  expected[None])


def test_statistics_follow_the_bands_and_adapted_bands_take_their_source():
    norm = _norm()
    sub = norm.for_bands(["B08", "B02"])
    assert sub.bands == ("B08", "B02") and sub.mean.tolist() == [np.float32(0.4), np.float32(0.1)]
    adapted = norm.for_bands(["B8A", "B04"], source={"B8A": "B08"})
    assert adapted.bands == ("B8A", "B04") and adapted.std.tolist() == [2.0, 0.125]
    with pytest.raises(ValueError, match="no normalisation statistics for B11"):
        norm.for_bands(["B02", "B11"])
    s2 = load_sensor("sentinel2-l1c")
    catalog = Normalization.of_sensor("sentinel2-l1c", BANDS)
    mean, std = s2.norm_stats(BANDS)
    np.testing.assert_array_equal(catalog.mean, mean)
    np.testing.assert_array_equal(catalog.std, std)
    # the weights.json / classifier.json record reads back as the same statistics
    record = sub.to_dict()
    assert set(record) == {"mean", "std"} and all(isinstance(v, float) for v in record["mean"] + record["std"])
    back = Normalization(sub.bands, **record)
    np.testing.assert_array_equal(back.mean, sub.mean)
    np.testing.assert_array_equal(back.std, sub.std)


def test_bad_statistics_and_shapes_are_refused_with_the_band_named():
    with pytest.raises(ValueError, match="4 bands .* but 3 means"):
        Normalization(BANDS, [0.1, 0.2, 0.3], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="standard deviation of B04 is not > 0"):
        Normalization(BANDS, [0.1] * 4, [1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"the data has 3 bands but the normalisation 4 \(B02, B03, B04, B08\)"):
        _norm().apply(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="the data has 5 bands"):
        _norm().apply(torch.zeros(2, 5, 2, 2))


def test_check_warns_then_refuses_data_in_other_units(caplog):
    norm = Normalization(BANDS, [0.0] * 4, [1.0] * 4)
    x = np.full((2, 4, 3, 3), 0.5, np.float32)
    x[:, 3] = 5.5
    z = norm.check(x, None, "toy")
    assert z.round(3).tolist() == [0.5, 0.5, 0.5, 5.5] and "B08 (mean 5.5" in caplog.text
    with pytest.raises(ValueError, match="far outside the normalisation .* B08"):
        norm.check(x * 100, None, "toy")
    with pytest.raises(ValueError, match="no valid pixel"):
        norm.check(x, np.zeros((2, 3, 3), bool), "toy")
