"""Steps that classify and the monitor engine share: where one copies SeisBench's rule, it must give SeisBench's
result exactly."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
from seisbench.models.base import WaveformModel

from sine_seisbench.pipeline.pick import pick_order, picks_from_annotations
from sine_seisbench.pipeline.prepare import cut_window


def _curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """A probability curve with bumps, plateaus (equal peaks), values exactly at the thresholds and a trigger
    still on at the end."""
    x = np.zeros(n, dtype=np.float32)
    for centre in rng.integers(0, n, 12):
        width = int(rng.integers(3, 60))
        height = float(rng.uniform(0.05, 1.0))
        lo, hi = max(0, centre - width), min(n, centre + width)
        x[lo:hi] = np.maximum(x[lo:hi], height * np.hanning(hi - lo).astype(np.float32))
    x[100:110] = 0.7  # a plateau: the first of the equal peaks
    x[200:205] = 0.3  # exactly the threshold
    x[205:210] = 0.15  # exactly half of it
    x[-20:] = 0.9  # on at the end of the trace
    return x


@pytest.mark.parametrize("seed", range(5))
def test_sine_picks_from_annotations_are_seisbench_s(seed):
    rng = np.random.default_rng(seed)
    annotations = obspy.Stream()
    for i in range(3):
        annotations += obspy.Trace(
            _curve(rng, 3000),
            {
                "network": "XX",
                "station": f"S{i:02d}",
                "location": "" if i else "00",
                "channel": "SINE_P",
                "sampling_rate": 100.0,
                "starttime": obspy.UTCDateTime(1_251_073_200.123 + 7.31 * i),
            },
        )
    for threshold in (0.3, 0.5):
        ours = picks_from_annotations(annotations, threshold, "P")
        # the same picks; ours in the order (start, end, trace id), which SeisBench's sorted() only approximates
        # where a pick's span lies within another's (its Pick.__lt__ is then true both ways)
        theirs = sorted(
            WaveformModel.picks_from_annotations(annotations, threshold, "P"), key=pick_order
        )
        assert [pick_order(p) for p in ours] == sorted(pick_order(p) for p in ours)
        assert len(theirs) > 3
        assert [
            (p.trace_id, p.phase, p.start_time.ns, p.end_time.ns, p.peak_time.ns, p.peak_value)
            for p in ours
        ] == [
            (p.trace_id, p.phase, p.start_time.ns, p.end_time.ns, p.peak_time.ns, p.peak_value)
            for p in theirs
        ]
        assert [type(p.peak_value) for p in ours] == [type(p.peak_value) for p in theirs]


def test_cut_window_zero_fills_and_zeroes_from_limit():
    data = {"A": np.arange(20, dtype=np.float32).reshape(2, 10)}
    data["A"][1, 3] = np.nan

    def read(key, start, n):
        x = data.get(key)
        return None if x is None else x[:, start : start + n]

    out = cut_window(read, ["B", "A"], 2, 6, 2)
    assert out.shape == (2, 2, 6) and out.dtype == np.float32
    assert not out[0].any()  # a station without data is zero
    assert out[1, 0].tolist() == [2, 3, 4, 5, 6, 7]
    assert out[1, 1].tolist() == [12, 0, 14, 15, 16, 17]  # a missing sample is zero
    limited = cut_window(read, ["B", "A"], 2, 6, 2, limit=5)
    assert limited[1, 0].tolist() == [2, 3, 4, 0, 0, 0]
    assert np.array_equal(cut_window(read, ["A"], 2, 6, 2, limit=8), out[1:])


def test_cut_curves_are_the_stacked_values_zero_filled_and_zeroed_from_limit():
    from sine_seisbench.pipeline.prepare import Stack, cut_curves

    stack = Stack(3, 10, "avg")
    first = np.arange(30, dtype=float).reshape(3, 10)
    stack.add(10, first)
    second = first + 1.0
    second[:, :2] = np.nan  # blinded: the first window alone counts there
    stack.add(15, second)
    out = cut_curves({"A": stack}, ["B", "A"], 8, 20, [0, 1])
    assert out.shape == (2, 2, 20) and out.dtype == np.float32
    assert not out[0].any()  # a station without a stack is zero
    assert np.array_equal(out[1], stack.values(8, 28)[[0, 1]])
    assert out[1, 0, :2].tolist() == [0, 0]  # before the stack: zero
    assert out[1, 0, 7:9].tolist() == [5, 6]  # one window (the other blinded)
    assert out[1, 0, 9].tolist() == (7 + 3) / 2  # the average of the two windows
    limited = cut_curves({"A": stack}, ["A"], 8, 20, [0, 1], limit=20)
    assert not limited[0, :, 12:].any() and np.array_equal(limited[0, :, :12], out[1, :, :12])
