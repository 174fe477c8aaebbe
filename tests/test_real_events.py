from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import obspy
import pytest
import seisbench
from obspy.core.event import Catalog, Comment, Event, Magnitude, Origin
from obspy.core.inventory import (
    Channel,
    InstrumentSensitivity,
    Inventory,
    Network,
    Response,
    Station,
)

from sine_seisbench.bench import harness
from sine_seisbench.bench import real_events as real
from sine_seisbench.geometry import Coordinates

T0 = 1_600_000_000.0
KM_PER_DEG = 2 * math.pi * real.EARTH_RADIUS_KM / 360.0


def ev(t: float, lat: float = 35.0, lon: float = -117.0, depth: float = 8.0, mag=None, **kw):
    return {
        "time": T0 + t,
        "latitude": lat,
        "longitude": lon,
        "depth_km": depth,
        "magnitude": mag,
        **kw,
    }


class RecordingCache:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def get(self, *key: str, compute):
        self.calls.append(key)
        return compute()


# ----------------------------------------------------------------------------------------------------------------
# Matching, chance level, bounds, statistics
# ----------------------------------------------------------------------------------------------------------------
def test_epicentral_km_and_non_finite():
    assert real.epicentral_km(ev(0, 0.0, 0.0), ev(0, 1.0, 0.0)) == pytest.approx(KM_PER_DEG)
    assert real.epicentral_km(ev(0, 60.0, 10.0), ev(0, 60.0, 12.0)) == pytest.approx(
        2 * KM_PER_DEG * 0.5, rel=1e-3
    )
    assert math.isnan(real.epicentral_km(ev(0, math.nan), ev(0)))


def test_match_events_is_one_to_one_by_time_then_distance():
    refs = [ev(10.0), ev(20.0), ev(100.0)]
    events = [
        ev(11.0),  # 1 s from ref 0
        ev(10.5),  # 0.5 s from ref 0: takes it, the first falls to nothing (ref 1 is 9 s away)
        ev(21.0, lat=35.5),  # 55 km from ref 1
        ev(99.0, lat=math.nan),
    ]
    assert real.match_events(events, refs, 5.0) == [(1, 0), (2, 1), (3, 2)]
    # the distance rule removes the far event and the one without an epicentre
    assert real.match_events(events, refs, 5.0, max_km=30.0) == [(1, 0)]
    assert real.match_events(events, refs, 0.4) == []
    assert real.match_events([], refs, 5.0) == [] and real.match_events(events, [], 5.0) == []
    # equal time differences: the nearer epicentre wins
    near, far = ev(50.0, lat=35.01), ev(50.0, lat=35.1)
    assert real.match_events([far, near], [ev(50.0)], 1.0, max_km=30.0) == [(1, 0)]


def test_chance_level_shifts_the_catalogue():
    refs = [ev(t) for t in (100.0, 300.0, 500.0)]
    exact = [ev(t) for t in (100.0, 300.0, 500.0)]
    span = (T0, T0 + 600.0)
    assert len(real.match_events(exact, refs, 5.0, 30.0)) == 3
    assert real.chance_matches(exact, refs, 5.0, 30.0, span) == 0.0
    # events every 60 s line up with the shifted catalogue too: the chance level equals the real count
    periodic = [ev(t) for t in np.arange(0.0, 601.0, 60.0)]
    refs60 = [ev(t) for t in (120.0, 300.0, 480.0)]
    assert len(real.match_events(periodic, refs60, 5.0, 30.0)) == 3
    assert real.chance_matches(periodic, refs60, 5.0, 30.0, span) == 3.0
    # the span drops shifted references outside it: -60 s moves 555 to 495 (15 s from 480), +60 s to 615, out
    # of the record (without the span, 15 s from 600)
    assert real.chance_matches(periodic, [ev(555.0)], 15.0, None, span) == 0.5
    assert real.chance_matches(periodic, [ev(555.0)], 15.0, None) == 1.0


STATIONS = [Coordinates(35.0, -117.0, 1500.0), Coordinates(35.2, -117.2, 500.0)]
SPAN = (T0, T0 + 3600.0)


@pytest.mark.parametrize(
    ("event", "reasons"),
    [
        (ev(10.0, 35.1, -117.1, 5.0, 2.0), []),
        (
            ev(10.0, 35.1, -117.1, -2.4, 2.0),
            [],
        ),  # above sea level but below the highest station + 1 km
        (ev(10.0, 35.1, -117.1, -2.6, 2.0), ["above surface"]),
        (ev(10.0, 35.1, -117.1, 50.5), ["too deep"]),
        (ev(10.0, 37.0, -117.1, 5.0), ["far"]),  # 211 km north of the centroid
        (ev(10.0, 35.1, -117.1, 5.0, 9.6), ["magnitude"]),
        (ev(10.0, 35.1, -117.1, 5.0, -2.1), ["magnitude"]),
        (ev(-61.0), ["time"]),
        (ev(3600.0 + 59.0), []),
        (ev(3600.0 + 61.0, depth=60.0), ["too deep", "time"]),
        (ev(10.0, depth=math.nan), ["not finite"]),
    ],
)
def test_bounds_violations(event, reasons):
    assert real.bounds_violations(event, STATIONS, SPAN) == reasons


def test_bounds_use_uncalibrated_magnitudes_and_count():
    wild = ev(10.0, 35.1, -117.1, 5.0, None, raw_magnitude=12.0, uncalibrated=True)
    assert real.bounds_violations(wild, STATIONS, SPAN) == ["magnitude"]
    count = real.bounds_count(
        [wild, ev(10.0, 35.1, -117.1), ev(-100.0, depth=99.0)], STATIONS, SPAN
    )
    assert count == {
        "events": 3,
        "out_of_bounds": 2,
        "reasons": "magnitude: 1, time: 1, too deep: 1",
    }
    merged = real._merge_bounds([count, count, {"events": 0, "out_of_bounds": 0, "reasons": ""}])
    assert merged["events"] == 6 and merged["out_of_bounds"] == 4
    assert merged["reasons"] == "magnitude: 2, time: 2, too deep: 2"


def test_pair_stats():
    refs = [ev(0, 35.0, -117.0, 5.0, 2.0), ev(0, 35.0, -117.0, 5.0, 3.0), ev(0, 35.0, -117.0, 5.0)]
    events = [
        ev(0, 35.0 + 1 / KM_PER_DEG, -117.0, 6.0, 2.5),  # 1 km, depth 1, ML +0.5
        ev(0, 35.0 + 3 / KM_PER_DEG, -117.0, 2.0, 2.9),  # 3 km, depth 3, ML -0.1
        ev(0, 35.0 + 10 / KM_PER_DEG, -117.0, 5.5, 1.0),  # 10 km, reference without ML
    ]
    stats = real.pair_stats(list(zip(events, refs, strict=True)))
    assert stats["epicentre_median_km"] == pytest.approx(3.0, abs=1e-6)
    assert stats["epicentre_p90_km"] == pytest.approx(3.0 + 0.8 * 7.0, abs=1e-6)
    assert stats["depth_median_abs_diff_km"] == pytest.approx(1.0)
    assert stats["ml_pairs"] == 2
    assert stats["ml_diff_median"] == pytest.approx(0.2)
    assert stats["ml_diff_std"] == pytest.approx(0.3)
    empty = real.pair_stats([])
    assert math.isnan(empty["epicentre_median_km"]) and empty["ml_pairs"] == 0


# ----------------------------------------------------------------------------------------------------------------
# Events of the methods
# ----------------------------------------------------------------------------------------------------------------
def _obspy_event(t, depth_m, mag, comments=()):
    e = Event()
    o = Origin(time=obspy.UTCDateTime(T0 + t), latitude=35.0, longitude=-117.0, depth=depth_m)
    e.origins.append(o)
    e.preferred_origin_id = o.resource_id
    if mag is not None:
        m = Magnitude(mag=mag, magnitude_type="ML")
        e.magnitudes.append(m)
        e.preferred_magnitude_id = m.resource_id
    e.comments = [Comment(text=c) for c in comments]
    return e


def test_catalog_events_reads_magnitude_and_flags():
    cat = Catalog(
        [
            _obspy_event(20.0, 8000.0, 2.5, ["saturated at 3 stations"]),
            _obspy_event(10.0, 4000.0, 1.2, ["Uncalibrated: no response"]),
            _obspy_event(30.0, None, None, ["uncalibrated"]),
        ]
    )
    out = real.catalog_events(cat)
    assert [e["time"] - T0 for e in out] == pytest.approx([10.0, 20.0, 30.0])
    first, second, third = out
    assert first["uncalibrated"] and first["magnitude"] is None and first["raw_magnitude"] == 1.2
    assert first["depth_km"] == pytest.approx(4.0) and not first["saturated"]
    assert second["saturated"] and not second["uncalibrated"] and second["magnitude"] == 2.5
    assert third["magnitude"] is None and math.isnan(third["depth_km"])


def test_chain_events_keep_ml_only_when_calibrated():
    results = [
        {
            "origin_time": obspy.UTCDateTime(T0 + 5),
            "latitude": 35.0,
            "longitude": -117.0,
            "depth_km": 7.0,
            "magnitude": 14.0,
        },
        {
            "origin_time": obspy.UTCDateTime(T0 + 1),
            "latitude": 35.0,
            "longitude": -117.0,
            "depth_km": 7.0,
            "magnitude": math.nan,
        },
    ]
    counts = real.chain_events(results, calibrated=False)
    assert [e["time"] - T0 for e in counts] == pytest.approx([1.0, 5.0])
    assert all(e["uncalibrated"] and e["magnitude"] is None for e in counts)
    assert real.bounds_count(counts, STATIONS, SPAN)["out_of_bounds"] == 0
    velocity = real.chain_events(results, calibrated=True)
    assert velocity[0]["magnitude"] is None and velocity[1]["magnitude"] == 14.0
    assert velocity[1]["saturated"] is None and not velocity[1]["uncalibrated"]


def test_method_names_and_chain_window():
    assert real.method_names({"SINE": 0, "SINE-graph": 0, "PhaseNet": 0}) == [
        "SINE",
        "SINE-graph",
        "chain+PhaseNet",
    ]
    record = real.Record(
        obspy.Stream(),
        None,
        {"A": Coordinates(35.0, -117.0, 0.0), "B": Coordinates(36.0, -117.0, 0.0)},
        SPAN,
    )
    assert record.chain_window_s == pytest.approx(KM_PER_DEG / 5.0 + 2.0)
    record.coordinates = {"A": Coordinates(35.0, -117.0, 0.0)}
    assert record.chain_window_s == real.CHAIN_MIN_WINDOW_S


def _channel(code: str, units: str) -> Channel:
    sens = InstrumentSensitivity(
        value=2.0e8, frequency=1.0, input_units=units, output_units="COUNTS"
    )
    return Channel(
        code,
        "00",
        latitude=3.0,
        longitude=-74.0,
        elevation=500.0,
        depth=0.0,
        sample_rate=100.0,
        response=Response(instrument_sensitivity=sens),  # no stages, as in the Colombia StationXML
    )


def test_ground_velocity_reads_the_overall_sensitivity():
    station = Station(
        "ST", 3.0, -74.0, 500.0, channels=[_channel("HHZ", "M/S"), _channel("HNZ", "M/S**2")]
    )
    inventory = Inventory([Network("CM", stations=[station])], source="test")
    stream = obspy.Stream(
        [
            obspy.Trace(
                np.full(10, 4.0e8, dtype=np.int32),
                {"network": "CM", "station": "ST", "location": "00", "channel": c},
            )
            for c in ("HHZ", "HNZ", "HHE")
        ]
    )
    out = real.ground_velocity(stream, inventory)
    # HHZ in m/s; the accelerometer and the channel without a response are left out; the input is unchanged
    assert [tr.stats.channel for tr in out] == ["HHZ"]
    assert out[0].data == pytest.approx(np.full(10, 2.0))
    assert stream[0].data[0] == 400_000_000


# ----------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------
def test_iceland_rows_match_the_windows_own_event():
    catalogue = {"a": ev(10.0, mag=1.0), "b": ev(20.0, mag=1.5), "c": ev(40.0)}
    ok = {"events": 0, "out_of_bounds": 0, "reasons": ""}
    results = {
        "SINE": {
            # window a: events near a (2 s) and b (0.5 s from b): a is matched by the nearest to it
            "a": {"events": [ev(12.0, mag=1.2), ev(20.5, mag=None)], "bounds": ok},
            # window b: the nearest to b is 4 s away: unmatched; both are more than 3 s from every catalogued event
            "b": {"events": [ev(24.0), ev(90.0)], "bounds": {**ok, "out_of_bounds": 1}},
            "c": {"events": [], "bounds": ok},
        }
    }
    (row,) = real.iceland_rows(results, catalogue)
    assert row["windows"] == 3 and row["events"] == 4 and row["matched"] == 1
    assert row["events_matching_no_qm_event"] == 2
    assert row["origin_dt_median_s"] == pytest.approx(2.0)
    assert row["ml_pairs"] == 1 and row["ml_diff_median"] == pytest.approx(0.2)
    assert row["out_of_bounds"] == 1


def test_catalogue_rows_with_chance_level():
    catalogue = [ev(t) for t in (-30.0, 100.0, 200.0, 300.0, 4000.0)]
    events = [ev(101.0), ev(203.0, lat=36.0), ev(160.0), ev(359.0)]
    row = real.catalogue_rows("m", events, catalogue, SPAN, 5.0, 30.0)
    assert row["catalogue_events"] == 3 and row["events"] == 4 and row["matched"] == 1
    # shifted by -60 s: 40, 140, 240 match nothing; by +60 s: 160 and 360 are matched by 160 and 359
    assert row["chance_matched"] == pytest.approx(1.0)
    assert row["matched_minus_chance"] == pytest.approx(0.0)
    assert row["epicentre_median_km"] == pytest.approx(0.0)
    assert "chance_matched" not in real.catalogue_rows("m", events, catalogue, SPAN, 5, 30, False)


def test_stage_skips_absent_folders(tmp_path):
    messages: list[str] = []
    cache = RecordingCache()
    result = real.stage_real_events({"PhaseNet": None}, tmp_path, cache, True, messages.append)
    assert all(
        result[k] == [] for k in ("iceland", "gmprocess", "ridgecrest", "colombia", "bounds")
    )
    assert len(messages) == 4 and all("skipped" in m for m in messages)
    assert not cache.calls


def test_harness_section_and_summary(tmp_path, monkeypatch):
    assert "real_events" in harness.STAGES
    rows = {
        "iceland": [{"method": "SINE", "windows": 27, "matched": 20, "epicentre_median_km": 2.0}],
        "gmprocess": [{"event": "x", "method": "SINE", "epicentre_km": 3.0}],
        "ridgecrest": [{"record": "ridgecrest (1 h)", "method": "SINE", "matched": 9}],
        "colombia": [{"span": "23:00-01:00", "reference": "r", "method": "SINE", "matched": 1}],
        "bounds": [
            {"record": "a", "method": "SINE", "events": 3, "out_of_bounds": 1, "reasons": "far: 1"},
            {"record": "b", "method": "SINE", "events": 2, "out_of_bounds": 0, "reasons": ""},
        ],
        "notes": {"iceland": "velocity model v", "default": "velocity model d"},
    }
    monkeypatch.setattr(real, "stage_real_events", lambda *a, **k: rows)
    summary: list[str] = []
    lines = harness._real_events_section({}, tmp_path, None, True, tmp_path, print, summary)
    text = "\n".join(lines)
    for title in ("Iceland", "gmprocess", "Ridgecrest", "Colombia", "outside physical bounds"):
        assert title in text
    assert "automatic" in text and "chance" in text
    assert (tmp_path / "real_events_iceland.csv").exists()
    assert len(summary) == 3 and "| SINE | 5 | 1 |" in summary[-1]
    monkeypatch.setattr(
        real, "stage_real_events", lambda *a, **k: {**rows, **{k: [] for k in rows if k != "notes"}}
    )
    assert harness._real_events_section({}, tmp_path, None, True, tmp_path, print, []) == []


# ----------------------------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------------------------
def test_reference_loaders(shared):
    colombia = shared / "continuous" / "colombia_2019-12-24" / "automatic"
    if not (colombia / "events_pnet" / "associations.xml").exists():
        pytest.skip(f"{colombia} not found: Colombia catalogues absent")
    start, end = obspy.UTCDateTime("2019-12-24T23:00:00"), obspy.UTCDateTime("2019-12-25T01:00:00")
    pnet = real.automatic_catalogue(colombia / "events_pnet", start.timestamp, end.timestamp)
    eqt = real.automatic_catalogue(colombia / "events_eqt", start.timestamp, end.timestamp)
    # GaMMA on SeisMonitor's PhaseNet picks: 2 events in the held-out span (23:15:04.8 and 23:32:42.6, z 0 km)
    assert [round(e["time"] - start.timestamp, 1) for e in pnet] == [904.8, 1962.6]
    assert all(e["depth_km"] == 0.0 and 2.9 < e["latitude"] < 3.2 for e in pnet) and eqt == []
    gmp = shared / "events" / "gmprocess_multi" / "nc51194936"
    if gmp.is_dir():
        ref = real.gmprocess_reference(gmp)
        assert ref["id"] == "nc51194936" and ref["magnitude"] == 4.7 and ref["depth_km"] == 2.049


@pytest.fixture
def phasenet(shared):
    src = shared / "seisbench_cache" / "models" / "v3" / "phasenet"
    if not src.is_dir():
        pytest.skip(f"{src} not found: PhaseNet weights absent")
    shutil.copytree(src, Path(seisbench.cache_model_root) / "phasenet", dirs_exist_ok=True)
    import seisbench.models as sbm

    return sbm.PhaseNet.from_pretrained("original").eval()


def test_iceland_two_events_chain_smoke(shared, phasenet, tmp_path_factory):
    """The chain on PhaseNet's picks in the Iceland model, on 2 windows (a coarse travel-time table, kept in
    pytest's temp root between sessions: a TauP table costs about 0.3-1 s per node)."""
    folder = shared / "events" / "iceland_qm_2014-08-24"
    if not (folder / "catalog.csv").exists():
        pytest.skip(f"{folder} not found: Iceland events absent")
    from sine_seisbench.traveltimes import TravelTimes

    tables: dict[str, TravelTimes] = {}

    def travel_times(velocity_model):
        assert str(velocity_model).endswith("iceland_vmodel.txt")  # the same model as SINE's
        if "tt" not in tables:
            tables["tt"] = TravelTimes(
                max_distance_km=60.0,
                max_depth_km=12.0,
                distance_step_km=10.0,
                depth_step_km=4.0,
                velocity_model=velocity_model,
                cache_dir=tmp_path_factory.getbasetemp().parent / "sine-seisbench-tt",
            )
        return tables["tt"]

    cache = RecordingCache()
    rows, bounds, note = real.stage_iceland(
        {"PhaseNet": phasenet}, shared, cache, True, print, travel_times, n_events=2
    )
    assert cache.calls == [("real_events", "chain+PhaseNet", "iceland_2")]
    assert "iceland_vmodel.txt" in note
    (row,) = rows
    assert row["method"] == "chain+PhaseNet" and row["windows"] == 2
    # each window holds its own event and a neighbour's: the chain locates at least one per window
    assert row["events"] >= 2
    # raw counts: every chain ML is dropped as uncalibrated, so no ML pair
    assert row["uncalibrated_magnitudes"] == row["events"] and row["ml_pairs"] == 0
    assert bounds == [
        {
            "record": "iceland (2 windows)",
            "method": "chain+PhaseNet",
            "events": row["events"],
            "out_of_bounds": 0,
            "reasons": "",
        }
    ]
    # measured (coarse table, ce35d04): 1 of 2 matched, origin 2.1 s early, 3.4 km from QuakeMigrate's epicentre
    assert 1 <= row["matched"] <= 2
    assert row["epicentre_median_km"] < 15.0 and row["depth_median_abs_diff_km"] < 6.0
