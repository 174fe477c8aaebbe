from __future__ import annotations

import concurrent.futures
import io

import numpy as np
import obspy
import pytest
import seisbench.util as sbu
import torch

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.example import delays, network_stream
from sine_seisbench.pipeline.events import Candidate, associate, merge_candidates

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


@pytest.fixture(scope="module")
def shipped() -> SINE:
    return SINE.from_pretrained(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def shipped6() -> SINE:
    """The shipped weights in groups of at most 6 stations (the graph takes any number)."""
    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    model.max_stations = 6
    return model


def with_responses(inv):
    """The example network's inventory with a flat velocity response (the record is taken as m/s)."""
    from obspy.core.inventory import InstrumentSensitivity, Response

    inv = inv.copy()
    for net in inv:
        for sta in net:
            for cha in sta:
                cha.response = Response(
                    instrument_sensitivity=InstrumentSensitivity(1e9, 1.0, "M/S", "COUNTS")
                )
    return inv


def test_one_earthquake_per_repeat_located_across_overlapping_groups(shipped6):
    """14 stations (more than one group of 6): each repeat of the RJOB record is one event, located by
    migration and the travel-time fit within 2 km of the virtual source, with the arrivals of every station."""
    from obspy.geodetics import gps2dist_azimuth

    from sine_seisbench.example import SOURCE

    st, inv = network_stream(14)
    out = shipped6.classify(st, inventory=with_responses(inv))
    assert len(out.events) == 2
    for event in out.events:
        origin, magnitude = event.preferred_origin(), event.preferred_magnitude()
        epi = gps2dist_azimuth(origin.latitude, origin.longitude, *SOURCE)[0] / 1000
        assert epi < 2.0
        ou = origin.origin_uncertainty
        assert (
            ou.preferred_description == "uncertainty ellipse"
            and ou.confidence_level == pytest.approx(39.35)
        )
        assert 0 < ou.min_horizontal_uncertainty <= ou.max_horizontal_uncertainty
        assert 0 <= ou.azimuth_max_horizontal_uncertainty < 180
        assert origin.depth_errors.uncertainty > 0 and origin.time_errors.uncertainty > 0
        p_stations = {p.waveform_id.station_code for p in event.picks if p.phase_hint == "P"}
        assert (
            len(p_stations) >= 6
        )  # the arrivals of the best of the overlapping groups (at most 6 here)
        assert len(origin.arrivals) == len(event.picks)
        assert {p.waveform_id.channel_code for p in event.picks} == {"HHZ"}
        pick_ids = {p.resource_id for p in event.picks}
        assert all(a.pick_id in pick_ids for a in origin.arrivals)
        assert all(abs(a.time_residual) < 1.0 for a in origin.arrivals if a.phase == "P")
        assert origin.time < min(p.time for p in event.picks)
        # ML from the (flat) responses, one station magnitude per station with horizontals
        assert magnitude.magnitude_type == "ML" and np.isfinite(magnitude.mag)
        assert magnitude.mag_errors.uncertainty > 0
        assert len(event.station_magnitudes) == magnitude.station_count >= 5
    # a larger gain means a smaller ground motion: ML goes down by log10 of the factor
    louder = with_responses(inv)
    for net in louder:
        for sta in net:
            for cha in sta:
                cha.response.instrument_sensitivity.value = 1e10
    quieter = shipped6.classify(st, inventory=louder).events
    assert quieter[0].preferred_magnitude().mag == pytest.approx(
        out.events[0].preferred_magnitude().mag - 1.0, abs=1e-3
    )


def test_without_responses_the_magnitude_is_uncalibrated(shipped):
    st, inv = network_stream(6)
    out = shipped.classify(st, inventory=inv)
    assert len(out.events) == 2
    for event in out.events:
        assert event.preferred_magnitude() is None and not event.magnitudes
        assert any(c.text.startswith("uncalibrated") for c in event.comments)


def test_acceptance_rule_min_p_stations(shipped, sb_log):
    st, inv = network_stream(8, repeat=4)
    out = shipped.classify(st, inventory=inv)
    assert len(out.events) == 4
    times = sorted(e.preferred_origin().time for e in out.events)
    assert np.allclose(np.diff([t.timestamp for t in times]), 30.0, atol=0.1)
    strict = shipped.classify(st, inventory=inv, min_p_stations=9)
    assert len(strict.events) == 0
    assert len(strict.picks) == len(out.picks)  # the picks stay


def test_too_few_stations_gives_picks_only(model, monkeypatch, sb_log):
    st, inv = network_stream(2)
    with_picks(model, monkeypatch, true_picks(st, inv))
    out = model.classify(st, inventory=inv, min_stations=3)
    assert len(out.picks) == 4 and len(out.events) == 0
    assert "min_stations=3" in sb_log.text and "picks only" in sb_log.text


def test_quakeml_round_trip(shipped, tmp_path):
    st, inv = network_stream(6)
    out = shipped.classify(st, inventory=with_responses(inv))
    path = tmp_path / "events.xml"
    out.events.write(str(path), format="QUAKEML")
    back = obspy.read_events(str(path))
    assert len(back) == len(out.events) == 2
    a, b = out.events[0], back[0]
    assert str(a.resource_id) == str(b.resource_id)
    oa, ob = a.preferred_origin(), b.preferred_origin()
    assert oa.time == ob.time
    assert oa.latitude == pytest.approx(ob.latitude) and oa.depth == pytest.approx(ob.depth)
    assert ob.origin_uncertainty.max_horizontal_uncertainty == pytest.approx(
        oa.origin_uncertainty.max_horizontal_uncertainty
    )
    assert a.preferred_magnitude().mag == pytest.approx(b.preferred_magnitude().mag)
    assert len(ob.arrivals) == len(oa.arrivals) == len(b.picks) >= 6
    assert len(b.station_magnitudes) == len(a.station_magnitudes)
    # Deterministic ids: the same input gives the same event id
    again = shipped.classify(st, inventory=with_responses(inv))
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


def test_the_event_step_overlapping_the_annotation_gives_the_same_events(shipped, monkeypatch):
    """classify starts the event step on candidates that are final while the rest of the record is still
    annotated (EarlyEvents, a worker thread): its events are exactly those of the step run after the annotation,
    and the candidates of all but the record's end are done early."""
    import sine_seisbench.pipeline.locate as locate

    st, inv = network_stream(8, repeat=6)
    # a station with a gap and one starting late: the early step's picks have the times of the annotation
    # traces (one per covered span), so its Events are used there too
    gappy = st.select(station=st[0].stats.station)
    t0 = gappy[0].stats.starttime
    for tr in gappy:
        st.remove(tr)
        st += tr.slice(t0, t0 + 47.3) + tr.slice(t0 + 52.61, None)
    late_start = st.select(station=st[-1].stats.station)
    for tr in late_start:
        tr.trim(tr.stats.starttime + 3.37, None)
    taken, used = [], []
    real_take, real_event_of = locate.EarlyEvents.take, locate.EarlyEvents.event_of

    def take(self, cand):
        taken.append(real_take(self, cand))
        return taken[-1]

    def event_of(self, cand):
        used.append(real_event_of(self, cand) is not None)
        return real_event_of(self, cand) if used[-1] else None

    real_make = locate.EarlyEvents._make_events

    def make_events(self):
        # the estimates started so far are waited for: which are done before the annotation ends is otherwise
        # a matter of timing (on a busy machine the worker falls behind and its Events are made at the end)
        concurrent.futures.wait(list(self.futures.values()))
        real_make(self)

    monkeypatch.setattr(locate.EarlyEvents, "take", take)
    monkeypatch.setattr(locate.EarlyEvents, "event_of", event_of)
    monkeypatch.setattr(locate.EarlyEvents, "_make_events", make_events)
    # small batches: the annotation advances often, as on a long record
    early = shipped.classify(st.copy(), inventory=inv, batch_size=2)
    assert len(early.events) >= 5
    assert len(taken) >= 6 and sum(taken) >= len(taken) - 2  # only candidates near the end wait
    # the Events of the estimates done early were made during the annotation (the same Events)
    assert len(used) == len(early.events) and sum(used) >= len(used) - 2
    monkeypatch.setattr(locate.EarlyEvents, "advance", lambda self, stacks, final: None)
    taken.clear()
    late = shipped.classify(st.copy(), inventory=inv, batch_size=2)
    assert taken and not any(taken)

    def summary(catalog):
        out = []
        for event in catalog:
            o, m = event.preferred_origin(), event.preferred_magnitude()
            out.append((str(event.resource_id), o.time, o.latitude, o.longitude, o.depth, m and m.mag))
        return out

    assert summary(early.events) == summary(late.events)

    def quakeml(catalog):
        catalog.resource_id = "smi:local/catalog"
        out = io.BytesIO()
        catalog.write(out, format="QUAKEML")
        return out.getvalue()

    assert quakeml(early.events) == quakeml(late.events)


def test_the_event_step_takes_the_annotation_s_curves_where_the_network_would_give_them(shipped):
    """The event step's P and S curves are the annotation's stacked ones when a second run of the network on the
    candidate's window would be the per-station path alone (the shipped default); with the graph residual on the
    picks, or an arrival head, the network runs on the window."""
    from sine_seisbench.pipeline.locate import event_curves_from_annotation

    argdict = dict(shipped.default_args)
    assert event_curves_from_annotation(shipped, argdict)
    assert not event_curves_from_annotation(shipped, {**argdict, "graph_picks": True})
    assert not event_curves_from_annotation(SINE(arrival_head=True), {"graph_picks": False})
