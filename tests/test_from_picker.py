"""SINE built from a published PhaseNet returns that picker's probabilities until it is trained."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
import seisbench.models as sbm
import torch

from sine_seisbench import SINE
from sine_seisbench.bench.harness import seed_cache

COLOMBIA = "continuous/colombia_2019-12-24"


@pytest.fixture(scope="module")
def phasenet() -> sbm.PhaseNet:
    from conftest import SHARED

    if not (SHARED / "seisbench_cache").is_dir():
        pytest.skip(
            f"{SHARED / 'seisbench_cache'} not found: the published PhaseNet weights are needed"
        )
    seed_cache(SHARED)
    return sbm.PhaseNet.from_pretrained("original")


def max_difference(sine_out: obspy.Stream, picker_out: obspy.Stream, picker: str) -> float:
    """Largest |difference| over every station and phase; each station's output must cover the picker's."""
    worst = 0.0
    assert len(sine_out) == len(picker_out)
    for tr in sine_out:
        phase = tr.stats.channel[-1]
        ref = picker_out.select(station=tr.stats.station, channel=f"{picker}_{phase}")
        assert len(ref) == 1, tr.id
        ref = ref[0]
        # SINE places samples on the global grid (round(t * rate)): at most half a sample from the trace's own
        assert abs(tr.stats.starttime - ref.stats.starttime) <= 0.5 / tr.stats.sampling_rate
        assert tr.stats.npts == ref.stats.npts
        both = np.isfinite(tr.data) & np.isfinite(ref.data)
        assert both.sum() > 0.9 * tr.stats.npts
        worst = max(worst, float(np.abs(tr.data[both] - ref.data[both]).max()))
    return worst


def colombia(shared, stations: int) -> tuple[obspy.Stream, obspy.Inventory]:
    folder = shared / COLOMBIA
    start = obspy.UTCDateTime("2019-12-24T19:10:00")  # training span (before 23:00)
    stream = obspy.Stream()
    for path in sorted((folder / "waveforms").glob("*/CM.*HH*.mseed")):
        stream += obspy.read(str(path), starttime=start, endtime=start + 300)
    names = sorted({tr.stats.station for tr in stream})[:stations]
    stream = obspy.Stream([tr for tr in stream if tr.stats.station in names])
    return stream, obspy.read_inventory(str(folder / "stations" / "inv.xml"))


def test_from_picker_copies_the_layout_and_records_the_source(phasenet):
    model = SINE.from_picker(phasenet, "original")
    assert "PhaseNet 'original'" in model.picker and "Zhu" in model.picker
    assert model.default_args["blinding"] == phasenet.default_args["blinding"]
    # ENZ/NPS picker re-ordered into ZNE/PSN: first and last layers permuted, the rest identical
    ref = phasenet.state_dict()
    own = model.backbone.state_dict()
    assert torch.equal(own["inc.weight"][:, 0], ref["inc.weight"][:, 2])  # Z
    assert torch.equal(own["out.bias"][0], ref["out.bias"][1])  # P
    assert torch.equal(own["down_branch.2.0.weight"], ref["down_branch.2.0.weight"])
    assert model.get_model_args()["picker"] == model.picker


@pytest.mark.parametrize("stations", [1, 7])
def test_untrained_sine_returns_the_pickers_probabilities(shared, phasenet, stations):
    stream, inventory = colombia(shared, stations)
    model = SINE.from_picker(phasenet, "original")
    expected = phasenet.annotate(stream.copy())
    got = model.annotate(stream.copy(), inventory=inventory)
    assert {tr.stats.station for tr in got} == {tr.stats.station for tr in stream}
    assert max_difference(got, expected, "PhaseNet") < 1e-5


def test_from_picker_refuses_other_layouts():
    with pytest.raises(TypeError, match="PhaseNet"):
        SINE.from_picker(sbm.EQTransformer())
    with pytest.raises(ValueError, match="components"):
        SINE.from_picker(sbm.PhaseNet(in_channels=1, component_order="Z"))


def test_shipped_weights_pick_as_the_published_phasenet_by_default(shared, phasenet):
    """sine_pn_original defaults to graph_picks=False: its picks are PhaseNet 'original''s on a real network;
    graph_picks=True lets the trained station graph change them."""
    from sine_seisbench import DEFAULT_WEIGHTS

    stream, inventory = colombia(shared, 3)
    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    assert model.default_args["graph_picks"] is False
    assert "PhaseNet 'original'" in model.picker
    expected = phasenet.annotate(stream.copy())
    assert (
        max_difference(model.annotate(stream.copy(), inventory=inventory), expected, "PhaseNet")
        < 1e-5
    )
    graph = model.annotate(stream.copy(), inventory=inventory, graph_picks=True)
    assert max_difference(graph, expected, "PhaseNet") > 1e-3
