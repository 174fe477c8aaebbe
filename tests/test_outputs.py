"""Round trips of the files SINE writes: picks CSV, events CSV, QuakeML and annotation traces."""

from __future__ import annotations

import math

import numpy as np
import obspy
import pandas as pd
import pytest
import seisbench.util as sbu
from obspy.core.event import Catalog, Event, Magnitude, Origin

from sine_seisbench.errors import UserError
from sine_seisbench.geometry import Coordinates, local_positions, project
from sine_seisbench.pipeline.events import Candidate, candidate_to_event
from sine_seisbench.pipeline.locate import ArrivalEstimate, EventEstimate
from sine_seisbench.pipeline.publish import (
    EVENT_COLUMNS,
    PICK_COLUMNS,
    PICK_SPAN_TO_SIGMA,
    annotation_channel,
    band_code,
    events_frame,
    frame_to_picks,
    picks_frame,
    read_annotations,
    read_catalog,
    read_events_csv,
    read_picks_csv,
    write_annotations,
    write_events_csv,
    write_picks_csv,
    write_quakeml,
)

T0 = obspy.UTCDateTime(2019, 7, 6, 8, 0, 0)
ORIGIN = T0 + 10.0
SOURCE = (35.72, -117.58, 8.0)  # latitude, longitude, depth km
VP, VS = 6.0, 3.46
STATIONS = {  # NET.STA.LOC -> latitude, longitude
    "XX.A01.": (35.80, -117.70),
    "XX.A02.": (35.60, -117.50),
    "XX.A03.": (35.90, -117.40),
    "XX.A04.00": (35.55, -117.80),
    "XX.A05.": (35.70, -117.30),
    "XX.A06.": (36.00, -117.60),
}
#: Event arrivals: P at the first 5 stations, S at the first 4; A06's P arrival lies 0.6 s after its pick
#: (another peak), so that pick stays unassociated and the arrival is listed as an event row.
P_STATIONS = ["XX.A01.", "XX.A02.", "XX.A03.", "XX.A04.00", "XX.A05.", "XX.A06."]
S_STATIONS = ["XX.A01.", "XX.A02.", "XX.A03.", "XX.A04.00"]


def travel_times(key: str) -> tuple[float, float]:
    lat, lon = STATIONS[key]
    east, north = project(lat, lon, SOURCE[0], SOURCE[1])
    r = math.hypot(math.hypot(east, north), SOURCE[2])
    return r / VP, r / VS


def synthetic_network() -> dict:
    """A small located network: waveforms, station table, SeisBench picks, a SINE-style Catalog (made by
    :func:`candidate_to_event` from a hand-made estimate) and P/S/noise annotation traces."""
    rng = np.random.default_rng(0)
    rate, n = 100.0, 4000
    stream = obspy.Stream()
    annotations = obspy.Stream()
    picks = sbu.PickList()
    t = np.arange(n) / rate
    for key in STATIONS:
        net, sta, loc = key.split(".")
        tp, ts = travel_times(key)
        p_time, s_time = ORIGIN + tp, ORIGIN + ts
        for comp in "ZNE":
            data = rng.normal(0, 1.0, n)
            for arrival, amp in ((p_time, 20.0 if comp == "Z" else 8.0), (s_time, 40.0)):
                x = t - (arrival - T0)
                data += amp * np.exp(-((x / 0.3) ** 2)) * np.sin(2 * np.pi * 5 * x) * (x > -0.2)
            stream += obspy.Trace(
                data,
                {
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "channel": f"HH{comp}",
                    "sampling_rate": rate,
                    "starttime": T0,
                },
            )
        curves = {}
        for phase, arrival in (("P", p_time), ("S", s_time)):
            curves[phase] = 0.9 * np.exp(-0.5 * ((t - (arrival - T0)) / 0.1) ** 2)
            picks.append(sbu.Pick(key, arrival - 0.15, arrival + 0.2, arrival, 0.9, phase))
        curves["N"] = 1.0 - curves["P"] - curves["S"]
        for label in "PSN":
            annotations += obspy.Trace(
                curves[label].astype(np.float32),
                {
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "channel": f"SINE_{label}",
                    "sampling_rate": rate,
                    "starttime": T0,
                },
            )
    coordinates = {k: Coordinates(lat, lon, 500.0) for k, (lat, lon) in STATIONS.items()}
    group = list(STATIONS)
    positions, ref = local_positions([coordinates[k] for k in group])
    window_start = T0
    arrivals = []
    for key in group:
        tp, ts = travel_times(key)
        offset = 0.6 if key == "XX.A06." else 0.02
        if key in P_STATIONS:
            arrivals.append(
                ArrivalEstimate(key, "P", ORIGIN + tp + offset - window_start, 0.07, 0.85)
            )
        if key in S_STATIONS:
            arrivals.append(ArrivalEstimate(key, "S", ORIGIN + ts - 0.01 - window_start, 0.09, 0.8))
    for a in arrivals:
        a.residual, a.distance_km, a.azimuth = 0.01, 20.0, 45.0 * group.index(a.station)
    east, north = project(SOURCE[0], SOURCE[1], *ref)
    covariance = np.diag([1.5**2, 0.8**2, 2.0**2, 0.1**2])
    covariance[0, 1] = covariance[1, 0] = 0.3
    estimate = EventEstimate(
        east_km=east,
        north_km=north,
        depth_km=SOURCE[2],
        origin_s=ORIGIN - window_start,
        covariance=covariance,
        arrivals=arrivals,
        coalescence=0.8,
        n_p=len(P_STATIONS),
        n_s=len(S_STATIONS),
        magnitude=2.4,
        magnitude_std=0.2,
        station_magnitudes={k: 2.4 for k in group[:4]},
        flags=["saturated: clipped records at XX.A01.; ML is a lower bound"],
        rms_s=0.04,
    )
    candidate = Candidate(group=group, p_picks=[p for p in picks if p.phase == "P"])
    candidate.reference = ref
    candidate.set_estimate(estimate, window_start)
    channels = {k: "HHZ" for k in group}
    event = candidate_to_event(candidate, coordinates, channels, "SINE")
    inventory = pd.DataFrame(
        [
            {
                "network": k.split(".")[0],
                "station": k.split(".")[1],
                "location": k.split(".")[2],
                "latitude": lat,
                "longitude": lon,
                "elevation": 500.0,
            }
            for k, (lat, lon) in STATIONS.items()
        ]
    )
    return {
        "stream": stream,
        "inventory": inventory,
        "picks": sbu.PickList(sorted(picks)),
        "catalog": Catalog([event]),
        "annotations": annotations,
    }


@pytest.fixture(scope="module")
def network() -> dict:
    return synthetic_network()


# ------------------------------------------------------------------------------------------------------------
# Picks
# ------------------------------------------------------------------------------------------------------------
def test_picks_csv_columns_association_and_uncertainty(network, tmp_path):
    path = tmp_path / "picks.csv"
    written = write_picks_csv(network["picks"], path, network["catalog"], network["stream"])
    assert path.read_text().splitlines()[0] == ",".join(PICK_COLUMNS)
    frame = read_picks_csv(path)
    assert list(frame.columns) == PICK_COLUMNS and len(frame) == len(written)
    event_id = str(network["catalog"][0].resource_id)
    picks = frame[frame.source == "classify"]
    assert len(picks) == len(network["picks"])
    associated = picks[picks.event_id != ""]
    # every P and S arrival within the pick's span is associated; A06's P arrival (0.6 s off) is not
    assert len(associated) == len(P_STATIONS) - 1 + len(S_STATIONS)
    assert set(associated.event_id) == {event_id}
    assert np.allclose(associated[associated.phase == "P"].uncertainty_s, 0.07)
    assert np.allclose(associated[associated.phase == "S"].uncertainty_s, 0.09)
    free = picks[picks.event_id == ""]
    assert np.allclose(free.uncertainty_s, 0.35 / PICK_SPAN_TO_SIGMA)
    assert set(picks.channel) == {"HHZ"}  # from the event's picks, else the stream's vertical
    (extra,) = frame[frame.source == "event"].to_dict("records")
    assert (extra["station"], extra["phase"], extra["event_id"]) == ("A06", "P", event_id)
    assert extra["probability"] == pytest.approx(0.85) and extra["start_time"] == ""
    assert set(frame.location) == {"", "00"}
    assert list(frame.time) == sorted(frame.time)
    # times are ISO UTC
    assert all(t.endswith("Z") and "T" in t for t in frame.time)


def test_picks_round_trip_to_seisbench_picks(network, tmp_path):
    path = tmp_path / "picks.csv"
    write_picks_csv(network["picks"], path, network["catalog"])
    back = frame_to_picks(read_picks_csv(path))
    original = sorted(network["picks"], key=lambda p: (p.peak_time, p.trace_id, p.phase))
    back = sorted(back, key=lambda p: (p.peak_time, p.trace_id, p.phase))
    assert len(back) == len(original)
    for a, b in zip(original, back, strict=True):
        assert (a.trace_id, a.phase) == (b.trace_id, b.phase)
        assert abs(a.peak_time - b.peak_time) < 1e-6
        assert abs(a.start_time - b.start_time) < 1e-6 and abs(a.end_time - b.end_time) < 1e-6
        assert b.peak_value == pytest.approx(a.peak_value)


def test_picks_without_events_or_stream(network, tmp_path):
    frame = picks_frame(network["picks"])
    assert (frame.event_id == "").all() and (frame.channel == "").all()
    assert (frame.source == "classify").all()
    empty = write_picks_csv([], tmp_path / "empty.csv")
    assert empty.empty and list(read_picks_csv(tmp_path / "empty.csv").columns) == PICK_COLUMNS


def test_hand_made_picks_file_and_mistakes(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("network,station,phase,time\nXX,A01,P,2019-07-06T08:00:12.5\n")
    frame = read_picks_csv(path)
    assert frame.iloc[0].location == "" and math.isnan(frame.iloc[0].uncertainty_s)
    (pick,) = frame_to_picks(frame)
    assert pick.trace_id == "XX.A01." and pick.start_time == pick.peak_time
    bad = tmp_path / "bad.csv"
    bad.write_text("station,phase,time\nA01,P,2019-07-06T08:00:12.5\n")
    with pytest.raises(UserError, match="lacks the column"):
        read_picks_csv(bad)
    bad.write_text("network,station,phase,time\nXX,A01,P,yesterday\n")
    with pytest.raises(UserError, match="row 2: time 'yesterday' is not a time"):
        read_picks_csv(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_picks_csv(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------
def test_events_csv_values(network, tmp_path):
    path = tmp_path / "events.csv"
    write_events_csv(network["catalog"], path)
    assert path.read_text().splitlines()[0] == ",".join(EVENT_COLUMNS)
    (row,) = read_events_csv(path).to_dict("records")
    event = network["catalog"][0]
    origin = event.preferred_origin()
    assert row["id"] == str(event.resource_id)
    assert abs(obspy.UTCDateTime(row["time"]) - ORIGIN) < 1e-5
    assert (row["latitude"], row["longitude"]) == pytest.approx(SOURCE[:2], abs=1e-5)
    assert row["depth_km"] == pytest.approx(SOURCE[2])
    # the latitude/longitude errors are the estimate's north/east standard deviations in km
    assert row["latitude_error_km"] == pytest.approx(0.8, rel=1e-4)
    assert row["longitude_error_km"] == pytest.approx(1.5, rel=1e-4)
    assert row["depth_error_km"] == pytest.approx(2.0) and row["time_error_s"] == pytest.approx(0.1)
    ou = origin.origin_uncertainty
    assert row["ellipse_major_km"] == pytest.approx(ou.max_horizontal_uncertainty / 1000)
    assert row["ellipse_minor_km"] == pytest.approx(ou.min_horizontal_uncertainty / 1000)
    assert row["ellipse_major_km"] > 1.5 and row["ellipse_minor_km"] < 0.8  # correlated errors
    assert (row["magnitude"], row["magnitude_error"], row["magnitude_type"]) == (
        pytest.approx(2.4),
        pytest.approx(0.2),
        "ML",
    )
    assert row["stations"] == len(STATIONS) and row["phases"] == len(origin.arrivals)
    assert row["azimuthal_gap"] == pytest.approx(origin.quality.azimuthal_gap)
    assert row["residual_rms_s"] == pytest.approx(0.04)
    assert row["saturated"] and not row["uncalibrated"] and row["flags"].startswith("saturated")


def test_events_csv_round_trip_through_catalog(network, tmp_path):
    first = tmp_path / "events.csv"
    original = write_events_csv(network["catalog"], first)
    catalog = read_catalog(first)
    assert isinstance(catalog, Catalog) and len(catalog) == 1
    again = events_frame(catalog)
    pd.testing.assert_frame_equal(
        read_events_csv(first), again.astype(read_events_csv(first).dtypes), check_exact=False
    )
    second = tmp_path / "again.csv"
    write_events_csv(catalog, second)
    assert first.read_text() == second.read_text()
    assert len(original) == 1


def test_events_csv_empty_and_minimal(tmp_path):
    path = tmp_path / "none.csv"
    write_events_csv(Catalog(), path)
    assert len(read_catalog(path)) == 0
    path.write_text("time,latitude,longitude\n2019-07-06T08:00:10Z,35.7,-117.6\n")
    (event,) = read_catalog(path)
    origin = event.preferred_origin()
    assert origin.depth == 0 and origin.origin_uncertainty is None and not event.magnitudes
    path.write_text("time,latitude\n2019-07-06T08:00:10Z,35.7\n")
    with pytest.raises(UserError, match="lacks the column"):
        read_catalog(path)


# ------------------------------------------------------------------------------------------------------------
# QuakeML
# ------------------------------------------------------------------------------------------------------------
def test_quakeml_metadata_without_changing_the_callers_catalog(network, tmp_path):
    catalog = network["catalog"].copy()
    foreign = Event(
        origins=[Origin(time=ORIGIN + 60, latitude=35.0, longitude=-117.0, depth=1000.0)],
        magnitudes=[Magnitude(mag=1.0)],
    )
    catalog.append(foreign)
    before = catalog.copy()
    path = tmp_path / "events.xml"
    write_quakeml(catalog, path)
    assert catalog == before and catalog[0].creation_info.version is None
    back = read_catalog(path)
    assert len(back) == 2
    for event in back:
        objects = [
            event,
            *event.origins,
            *event.magnitudes,
            *event.station_magnitudes,
            *event.picks,
        ]
        for obj in objects:
            info = obj.creation_info
            assert info.agency_id == "sine-seisbench" and info.version == "0.1.0"
            assert info.creation_time is not None and info.author
    ours, theirs = back
    assert ours.creation_info.author == "SINE"  # kept: the model that made it
    assert theirs.creation_info.author == "sine-seisbench"
    assert ours.magnitudes[0].magnitude_type == "ML"
    assert {m.station_magnitude_type for m in ours.station_magnitudes} == {"ML"}
    assert theirs.magnitudes[0].magnitude_type == "M"  # unknown type: unspecified
    # the picks keep their uncertainties and the arrivals their references
    origin = ours.preferred_origin()
    assert len(origin.arrivals) == len(ours.picks)
    assert {str(a.pick_id) for a in origin.arrivals} == {str(p.resource_id) for p in ours.picks}
    assert write_events_csv(back[:1], tmp_path / "e.csv").equals(events_frame(network["catalog"]))


def test_picks_csv_from_quakeml_read_back(network, tmp_path):
    """The association survives a QuakeML round trip (resource ids kept)."""
    path = tmp_path / "events.xml"
    write_quakeml(network["catalog"], path)
    direct = picks_frame(network["picks"], network["catalog"])
    via_file = picks_frame(network["picks"], read_catalog(path))
    pd.testing.assert_frame_equal(direct, via_file)


# ------------------------------------------------------------------------------------------------------------
# Annotations
# ------------------------------------------------------------------------------------------------------------
def test_annotation_channel_codes():
    assert annotation_channel("P", 100) == "HXP"
    assert annotation_channel("s", 100) == "HXS"
    assert annotation_channel("N", 50) == "BXN"
    assert [band_code(r) for r in (2000, 500, 100, 40, 5, 1, 0.1, 0.01)] == list("FCHBMLVU")
    with pytest.raises(ValueError, match="not one letter"):
        annotation_channel("Det", 100)


def test_annotations_round_trip_keep_phases_apart(network, tmp_path):
    annotations = network["annotations"].copy()
    annotations[0].data[:50] = np.nan  # blinded samples stay NaN
    path = tmp_path / "annotations.mseed"
    written = write_annotations(annotations, path)
    assert {tr.stats.channel for tr in written} == {"HXP", "HXS", "HXN"}
    assert annotations[0].stats.channel == "SINE_P"  # the caller's stream is unchanged
    raw = obspy.read(str(path))
    assert len({tr.id for tr in raw}) == len(annotations) == 3 * len(STATIONS)
    back = read_annotations(path)
    assert sorted(tr.id for tr in back) == sorted(tr.id for tr in annotations)
    for tr in annotations:
        (other,) = back.select(id=tr.id)
        assert other.stats.starttime == tr.stats.starttime
        assert other.stats.sampling_rate == tr.stats.sampling_rate
        np.testing.assert_array_equal(other.data, tr.data.astype(np.float32))
    assert np.isnan(back.select(id=annotations[0].id)[0].data[:50]).all()
    assert {tr.stats.channel for tr in read_annotations(path, model_name="MySINE")} == {
        "MySINE_P",
        "MySINE_S",
        "MySINE_N",
    }


def test_annotations_of_the_model_round_trip(tmp_path):
    """What SINE.annotate returns (several spans per station, location codes) reads back as it was."""
    import torch

    from sine_seisbench import SINE
    from sine_seisbench.example import network_stream

    torch.manual_seed(0)
    stream, inventory = network_stream(4)
    annotations = SINE(max_stations=4).annotate(stream, inventory=inventory)
    assert len(annotations) > 0
    path = tmp_path / "a.mseed"
    write_annotations(annotations, path)
    back = read_annotations(path)
    assert sorted(tr.id for tr in back) == sorted(tr.id for tr in annotations)
    for a, b in zip(
        sorted(annotations, key=lambda tr: (tr.id, tr.stats.starttime)),
        sorted(back, key=lambda tr: (tr.id, tr.stats.starttime)),
        strict=True,
    ):
        np.testing.assert_allclose(b.data, a.data.astype(np.float32))


def test_annotation_writer_rejects_what_it_cannot_keep_apart(network, tmp_path):
    other = network["annotations"].copy()
    for tr in other:
        tr.stats.channel = tr.stats.channel.replace("SINE", "PhaseNet")
    with pytest.raises(ValueError, match="several models"):
        write_annotations(network["annotations"] + other, tmp_path / "x.mseed")
    raw = network["stream"][:1]
    with pytest.raises(ValueError, match="not an annotation trace"):
        write_annotations(raw, tmp_path / "x.mseed")
    write_annotations(obspy.Stream(), tmp_path / "empty.mseed")
    assert len(read_annotations(tmp_path / "empty.mseed")) == 0
    (tmp_path / "text.mseed").write_text("not miniSEED")
    with pytest.raises(UserError, match="cannot read annotations file"):
        read_annotations(tmp_path / "text.mseed")


def test_merge_key_of_an_event_is_the_candidates(network):
    """The archive merges QuakeML events by classify's rule: MergeKey.of_event reads back the candidate's
    horizontal uncertainty (hypot of the east and north standard errors) and its P stations."""
    from sine_seisbench.pipeline.events import MergeKey, merge_sets_of

    event = network["catalog"][0]
    key = MergeKey.of_event(event)
    assert key.horizontal_sigma_km == pytest.approx(math.hypot(1.5, 0.8), rel=1e-9)
    assert key.stations == len(P_STATIONS)
    assert key.origin_time == event.preferred_origin().time
    # a copy 2 s later with a larger uncertainty is the same earthquake; the better one is kept first
    worse = event.copy()
    worse.resource_id = "smi:local/worse"
    origin = worse.preferred_origin()
    origin.time += 2.0
    origin.latitude_errors.uncertainty *= 3
    other = MergeKey.of_event(worse)
    assert other.horizontal_sigma_km > key.horizontal_sigma_km
    assert merge_sets_of([other, key], 3.0, 5.0) == [[1, 0]]
    assert merge_sets_of([other, key], 1.0, 5.0) == [[1, 0]]  # they still share P picks
    far = event.copy()
    far.resource_id = "smi:local/far"
    far.picks = [p for p in far.picks if p.phase_hint != "P"]
    far.preferred_origin().time += 10.0
    assert merge_sets_of([key, MergeKey.of_event(far)], 3.0, 5.0) == [[0], [1]]
