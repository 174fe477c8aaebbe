from __future__ import annotations

import io

import numpy as np
import obspy
import pytest
import seisbench.util as sbu
import torch

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.events import Candidate, associate, merge_candidates
from sine_seisbench.example import delays, network_stream

P_ONSET = obspy.UTCDateTime(2009, 8, 24, 0, 20, 7.7)  # P onset in ObsPy's RJOB record (approx.)


@pytest.fixture(scope="module")
def model() -> SINE:
    torch.manual_seed(0)
    return SINE(max_stations=6)


def pick(station: str, t: obspy.UTCDateTime, phase: str = "P", value: float = 0.9) -> sbu.Pick:
    return sbu.Pick(f"XX.{station}.", t - 0.2, t + 0.2, t, value, phase)


def true_picks(stream: obspy.Stream, inv, with_s: bool = True) -> sbu.PickList:
    """The virtual network's P (and S, 5 s later) at every station: the record's onset plus the delay."""
    st = stream.copy()
    SINE().annotate_stream_pre(st, {"inventory": inv})
    out = sbu.PickList()
    for key, delay in delays(st).items():
        station = key.split(".")[1]
        out.append(pick(station, P_ONSET + delay))
        if with_s:
            out.append(pick(station, P_ONSET + delay + 5.0, "S"))
    return sbu.PickList(sorted(out))


def with_picks(model, monkeypatch, picks):
    """Replaces the (untrained) picker's output with the given picks; location runs for real."""
    monkeypatch.setattr(
        model,
        "classify_aggregate",
        lambda annotations, argdict: sbu.ClassifyOutput(model.name, picks=picks),
    )


def test_classify_output_types(model):
    st, inv = network_stream(5)
    out = model.classify(st, inventory=inv)
    assert isinstance(out.picks, sbu.PickList)
    assert isinstance(out.events, obspy.Catalog)
    assert out.creator == "SINE"


def test_one_earthquake_gives_one_event_across_overlapping_groups(model, monkeypatch):
    st, inv = network_stream(14)
    picks = true_picks(st, inv)
    with_picks(model, monkeypatch, picks)
    out = model.classify(st, inventory=inv, min_stations=3)
    assert len(out.events) == 1
    event = out.events[0]
    origin, magnitude = event.preferred_origin(), event.preferred_magnitude()
    assert origin is not None and magnitude is not None
    for value in (origin.latitude, origin.longitude, origin.depth, magnitude.mag):
        assert np.isfinite(value)
    assert origin.latitude_errors.uncertainty > 0 and origin.longitude_errors.uncertainty > 0
    assert origin.depth_errors.uncertainty > 0 and magnitude.mag_errors.uncertainty > 0
    assert origin.time_errors.uncertainty > 0
    # Every station picked P; all stations contribute; S picks are attached
    p_stations = {p.waveform_id.station_code for p in event.picks if p.phase_hint == "P"}
    assert len(p_stations) == 14
    assert sum(p.phase_hint == "S" for p in event.picks) == 14
    assert len(origin.arrivals) == len(event.picks)
    assert {p.waveform_id.channel_code for p in event.picks} == {"HHZ"}
    pick_ids = {p.resource_id for p in event.picks}
    assert all(a.pick_id in pick_ids for a in origin.arrivals)
    # Origin time lies before the first P
    first_p = min(p.time for p in event.picks)
    assert origin.time < first_p


def test_two_earthquakes_and_min_stations(model, monkeypatch):
    st, inv = network_stream(8, repeat=4)
    first = true_picks(st, inv, with_s=False)
    second = sbu.PickList(pick(p.trace_id.split(".")[1], p.peak_time + 60) for p in first[:4])
    with_picks(model, monkeypatch, sbu.PickList(sorted(first + second)))
    out = model.classify(st, inventory=inv, min_stations=3)
    assert len(out.events) == 2
    times = sorted(e.preferred_origin().time for e in out.events)
    assert 50 < times[1] - times[0] < 70
    out = model.classify(st, inventory=inv, min_stations=5)
    assert len(out.events) == 1  # the second one is seen by only 4 stations


def test_too_few_stations_gives_picks_only(model, monkeypatch, sb_log):
    st, inv = network_stream(2)
    with_picks(model, monkeypatch, true_picks(st, inv))
    out = model.classify(st, inventory=inv, min_stations=3)
    assert len(out.picks) == 4 and len(out.events) == 0
    assert "min_stations=3" in sb_log.text and "picks only" in sb_log.text


def test_quakeml_round_trip(model, monkeypatch, tmp_path):
    st, inv = network_stream(6)
    with_picks(model, monkeypatch, true_picks(st, inv))
    out = model.classify(st, inventory=inv)
    path = tmp_path / "events.xml"
    out.events.write(str(path), format="QUAKEML")
    back = obspy.read_events(str(path))
    assert len(back) == len(out.events) == 1
    a, b = out.events[0], back[0]
    assert str(a.resource_id) == str(b.resource_id)
    oa, ob = a.preferred_origin(), b.preferred_origin()
    assert oa.time == ob.time
    assert oa.latitude == pytest.approx(ob.latitude) and oa.depth == pytest.approx(ob.depth)
    assert a.preferred_magnitude().mag == pytest.approx(b.preferred_magnitude().mag)
    assert len(ob.arrivals) == len(oa.arrivals) == 12 and len(b.picks) == 12
    # Deterministic ids: the same input gives the same event id
    again = model.classify(st, inventory=inv)
    assert str(again.events[0].resource_id) == str(a.resource_id)
    buf = io.BytesIO()
    again.events.write(buf, format="QUAKEML")
    assert b"sine-seisbench" in buf.getvalue()


def test_associate_clusters_by_time_and_station():
    t = obspy.UTCDateTime(2020, 1, 1)
    picks = sbu.PickList(
        [
            pick("A", t),
            pick("B", t + 1),
            pick("B", t + 1.5),
            pick("C", t + 2),
            pick("D", t + 30),
            pick("E", t + 31),
        ]
    )
    group = ["XX.A.", "XX.B.", "XX.C.", "XX.D.", "XX.E."]
    cands = associate(picks, group, window_s=5.0, min_stations=3)
    assert len(cands) == 1
    assert cands[0].stations == {"XX.A.", "XX.B.", "XX.C."}
    # the earliest B pick is used
    assert min(p.peak_time for p in cands[0].p_picks if p.trace_id == "XX.B.") == t + 1
    assert associate(picks, group, window_s=5.0, min_stations=2)[1].stations == {"XX.D.", "XX.E."}
    assert associate(picks, ["XX.A.", "XX.B."], 5.0, 3) == []


def test_merge_candidates_shared_picks_and_proximity():
    t = obspy.UTCDateTime(2020, 1, 1)
    a = Candidate(["g1"], [pick("A", t), pick("B", t + 1), pick("C", t + 2)])
    b = Candidate(["g2"], [pick("C", t + 2), pick("D", t + 3)])  # shares C's pick
    c = Candidate(["g3"], [pick("X", t + 100), pick("Y", t + 101)])
    d = Candidate(
        ["g4"], [pick("Z", t + 100.5), pick("W", t + 101)]
    )  # close in time and space to c
    e = Candidate(["g5"], [pick("V", t + 100.5), pick("U", t + 101)])  # same time, 200 km away
    for cand, lat in zip((a, b, c, d, e), (35.0, 35.01, 36.0, 36.05, 38.0), strict=True):
        cand.latitude, cand.longitude = lat, -117.0
        cand.origin_time = cand.first_p - 3
        cand.std = np.ones(4)
    merged = merge_candidates([a, b, c, d, e], merge_time_s=2.0, merge_distance_km=20.0)
    assert len(merged) == 3
    assert merged[0].stations == {"XX.A.", "XX.B.", "XX.C.", "XX.D."}
    assert len(merged[1].stations) == 4


def test_classify_is_inference_only_and_repeatable():
    """classify runs the event head in eval mode: BatchNorm statistics stay untouched and a second call, or
    picks taken from annotate, give the same result (regression: the event head used to run in train mode)."""
    from sine_seisbench.example import network_stream

    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    model.train()
    stream, inv = network_stream(6, repeat=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = model.classify(stream, inventory=inv)
    assert len(first.events) > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"classify changed {k}"
    assert model.training, "classify must restore the caller's train/eval mode"
    second = model.classify(stream, inventory=inv)
    key = [(p.trace_id, p.phase, p.peak_time) for p in first.picks]
    assert key == [(p.trace_id, p.phase, p.peak_time) for p in second.picks]
    annotations = model.annotate(stream, inventory=inv)
    argdict = dict(model.default_args)
    from_annotate = model.classify_aggregate(annotations, argdict).picks
    assert key == [(p.trace_id, p.phase, p.peak_time) for p in from_annotate]
