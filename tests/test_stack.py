"""The stacking of window predictions (:class:`sine_seisbench.pipeline.prepare.Stack`) against a direct
computation: SeisBench's ``avg`` and ``max`` over the windows covering each sample, NaN samples not counted."""

from __future__ import annotations

import numpy as np
import pytest

from sine_seisbench.pipeline.prepare import Stack


def _reference(windows: list[tuple[int, np.ndarray]], start: int, stop: int, method: str):
    out = np.zeros((2, stop - start))
    for i in range(start, stop):
        for k in range(2):
            vals = [
                w[k, i - s] for s, w in windows if s <= i < s + w.shape[1] and not np.isnan(w[k, i - s])
            ]
            if vals:
                out[k, i - start] = max(vals) if method == "max" else float(np.mean(vals))
    return out


@pytest.mark.parametrize("method", ["avg", "max"])
def test_stack_equals_direct_average_and_maximum(method: str) -> None:
    rng = np.random.default_rng(3)
    windows = []
    for j in range(40):  # overlapping windows, a gap after window 20, some NaN (blinded/masked) samples
        s = 10 + 37 * j + (200 if j > 20 else 0)
        w = rng.uniform(size=(2, 75))
        w[:, :5] = np.nan
        w[0, rng.integers(0, 75, 10)] = np.nan
        windows.append((s, w))
    stack = Stack(2, 10, method)
    for s, w in windows:
        stack.add(s, w)
    end = windows[-1][0] + 75
    assert stack.end == end
    got = stack.values(0, end + 20, missing=0.0)
    want = np.zeros((2, end + 20))
    want[:, 10:end] = _reference(windows, 10, end, method)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # one phase or a list of phases (rows), a fully covered range, NaN where missing: the same values
    np.testing.assert_array_equal(stack.values(0, end + 20, rows=1), got[1])
    np.testing.assert_array_equal(stack.values(0, end + 20, rows=[1, 0]), got[[1, 0]])
    np.testing.assert_array_equal(stack.values(100, 300, rows=[0]), got[[0], 100:300])
    assert stack.values(end + 5, end + 9, rows=0).tolist() == [0.0] * 4
    with_nan = stack.values(0, end, missing=np.nan)
    assert np.isnan(with_nan[:, :15]).all()
    np.testing.assert_array_equal(np.nan_to_num(with_nan, nan=0.0), got[:, :end])
    # trimming keeps later values; windows before ``base`` only add their part from ``base`` on
    stack.trim(800)
    assert stack.base == 800 and stack.end == end
    stack.add(790, np.full((2, 30), 0.5))
    windows.append((790, np.full((2, 30), 0.5)))
    ref = _reference(windows, 800, end, method)
    np.testing.assert_allclose(stack.values(800, end), ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "data, bad_at, kinds",
    [
        (np.arange(100, dtype=np.float32), [], []),
        (np.arange(100, dtype=np.int32) - 50, [], []),
        (np.r_[np.zeros(5), np.nan, np.inf, -np.inf, np.ones(3)], [5, 6, 7], ["NaN/inf"]),
        (np.r_[np.zeros(5), 2e15, -3e15, 1.0], [5, 6], ["absurd (|x| > 1e+15)"]),
        (np.array([0, 2**62, 3], dtype=np.int64), [1], ["absurd (|x| > 1e+15)"]),
        (np.ma.masked_array(np.arange(6.0), mask=[0, 1, 0, 0, 1, 0]), [1, 4], ["masked"]),
        (np.zeros(0, dtype=np.float32), [], []),
    ],
)
def test_invalid_samples(data, bad_at, kinds) -> None:
    from sine_seisbench.pipeline.prepare import invalid_samples

    bad, found = invalid_samples(data, 1e15)
    assert bad.dtype == bool and bad.shape == np.shape(data)
    assert np.flatnonzero(bad).tolist() == bad_at
    assert found == kinds


def test_fill_window_complete_and_with_gaps() -> None:
    from sine_seisbench.pipeline.prepare import fill_window

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 50)).astype(np.float32)
    out, have = fill_window(x)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_array_equal(out, x)
    assert have.all() and have.shape == (50,)
    # constant everywhere (an outage writing zeros): unusable, samples there
    out, have = fill_window(np.zeros((3, 50), dtype=np.float32))
    assert out is None and have.all()
    # gaps: filled with the component's mean; an absent component stays zero
    y = x.copy()
    y[0, 10:20] = np.nan
    y[2] = np.nan
    y[1, 45:] = np.nan
    y[0, 45:] = np.nan
    out, have = fill_window(y)
    np.testing.assert_allclose(out[0, 10:20], np.nanmean(y[0]), rtol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)
    np.testing.assert_array_equal(out[1, :45], x[1, :45])
    assert have[:45].all() and not have[45:].any()
