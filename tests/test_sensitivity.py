"""One sensitivity rule for classify and the monitor (pipeline.prepare.sensitivity / remove_sensitivity)."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
from obspy.core.inventory.response import InstrumentSensitivity, Response

from sine_seisbench import SINE
from sine_seisbench.example import network_stream
from sine_seisbench.monitor.engine import StreamingClassifier
from sine_seisbench.pipeline.prepare import prepare_stream, remove_sensitivity, sensitivity


def _with_responses(inventory: obspy.Inventory, values: dict[str, float]) -> obspy.Inventory:
    """Gives station ``S`` of the inventory a response without stages, only an overall sensitivity."""
    inv = inventory.copy()
    for station in inv[0]:
        for channel in station:
            if station.code in values:
                channel.response = Response(
                    instrument_sensitivity=InstrumentSensitivity(
                        values[station.code], 1.0, "M/S", "COUNTS"
                    )
                )
    return inv


@pytest.fixture(scope="module")
def record():
    stream, inv = network_stream(n=4, repeat=1)
    return stream, _with_responses(inv, {"S00": 2.0e9, "S01": 0.0, "S02": float("nan")})


def test_sensitivity_reads_responses_without_stages(record):
    stream, inv = record
    t = stream[0].stats.starttime
    assert sensitivity(inv, "XX.S00..HHZ", t) == 2.0e9
    # zero, NaN, no response, unknown channel, no Inventory: stays in counts
    assert sensitivity(inv, "XX.S01..HHZ", t) is None
    assert sensitivity(inv, "XX.S02..HHZ", t) is None
    assert sensitivity(inv, "XX.S03..HHZ", t) is None
    assert sensitivity(inv, "XX.S99..HHZ", t) is None
    assert sensitivity(None, "XX.S00..HHZ", t) is None


def test_remove_sensitivity_divides_and_flags_only_where_there_is_one(record):
    stream, inv = record
    st = stream.copy()
    remove_sensitivity(st, inv)
    for tr, orig in zip(st, stream, strict=True):
        if tr.stats.station == "S00":
            np.testing.assert_allclose(tr.data, orig.data / 2.0e9)
            assert tr.stats.sine_calibrated
        else:
            np.testing.assert_array_equal(tr.data, orig.data)
            assert not tr.stats.get("sine_calibrated")


@pytest.mark.parametrize("calibrated_amplitudes", [False, True])
def test_classify_and_monitor_calibrate_the_same_stations(record, calibrated_amplitudes):
    """classify's prepare step and the monitor's ingest divide by the sensitivity for the same models and
    stations: only models that use physical amplitudes, only where a usable sensitivity exists."""
    stream, inv = record
    model = SINE(calibrated_amplitudes=calibrated_amplitudes)
    argdict = {**model.default_args, "inventory": inv}
    _, stations = prepare_stream(model, stream.copy(), argdict)
    engine = StreamingClassifier(model, inv)
    monitor = {
        f"XX.{tr.stats.station}.": engine._sensitivity_of(tr) is not None for tr in stream
    }
    assert stations.calibrated == monitor
    expected = {f"XX.S0{i}.": calibrated_amplitudes and i == 0 for i in range(4)}
    assert stations.calibrated == expected
