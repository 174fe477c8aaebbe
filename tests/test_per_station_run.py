"""With ``graph_picks`` false each station's picks are the per-station path's: the run step runs every station once
per window (not once per overlapping group) and its annotation equals the one it gets alone."""

from __future__ import annotations

import numpy as np
import obspy
import pandas as pd
import pytest
from network_util import rjob_network

from sine_seisbench import DEFAULT_WEIGHTS
from sine_seisbench.loader import load_weights
from sine_seisbench.pipeline import run as run_module


@pytest.fixture(scope="module")
def network() -> tuple[obspy.Stream, pd.DataFrame]:
    """ObsPy's real BW.RJOB record on 24 virtual stations within ~60 km (several overlapping groups of 16)."""
    return rjob_network(24, 6000, seed=7, max_shift=500, lat_span=0.5, lon_span=0.7)


def test_each_station_runs_once_per_window_and_alone_gives_the_same(network, monkeypatch) -> None:
    stream, stations = network
    model = load_weights(DEFAULT_WEIGHTS).eval()
    assert model.default_args["graph_picks"] is False
    counted = []
    original = run_module.prepare_groups

    def counting(model, stations, windows, groups):
        counted.extend(len(g) for g in groups)
        return original(model, stations, windows, groups)

    monkeypatch.setattr(run_module, "prepare_groups", counting)
    together = model.annotate(stream, inventory=stations)
    n_windows = len(list(run_module.window_starts(0, 6000, model.in_samples, 1501)))
    assert sum(counted) == 24 * n_windows  # overlapping groups would run stations several times
    # with the graph's residual in the picks, stations run in compact overlapping groups: more station-windows
    counted.clear()
    grouped = model.annotate(stream, inventory=stations, graph_picks=True)
    assert sum(counted) > 24 * n_windows
    for key in ("XX.S03.", "XX.S17."):
        alone = model.annotate(stream.select(station=key.split(".")[1]), inventory=stations)
        for a, b in zip(alone, together.select(station=key.split(".")[1]), strict=True):
            assert a.id == b.id
            np.testing.assert_allclose(a.data, b.data, rtol=0, atol=1e-6)
    assert [tr.id for tr in grouped] == [tr.id for tr in together]
