"""The classical pick → locate → magnitude chain (the baseline against SINE's joint estimates)."""

from __future__ import annotations

import math

import numpy as np
import obspy
import pytest
import seisbench.util as sbu
from obspy.geodetics import gps2dist_azimuth

from sine_seisbench.chain import (
    Location,
    associate_picks,
    associate_pyocto,
    local_magnitude,
    locate,
    run_chain,
    surface_velocities,
    write_pyocto_table,
)
from sine_seisbench.data.simulate import simulate_station
from sine_seisbench.geometry import Coordinates
from sine_seisbench.traveltimes import SOCAL_LAYERS, VP_VS, TravelTimes

ORIGIN = obspy.UTCDateTime(2020, 3, 1, 12, 0, 0)


@pytest.fixture(scope="session")
def tt() -> TravelTimes:
    """A coarse table (fast to build) in the project's SoCal TauP model."""
    return TravelTimes(
        max_distance_km=120.0, max_depth_km=24.0, distance_step_km=5.0, depth_step_km=3.0
    )


def network(n: int, seed: int) -> dict[str, Coordinates]:
    rng = np.random.default_rng(seed)
    return {
        f"CI.T{i:02d}.": Coordinates(
            35.7 + rng.uniform(-0.4, 0.4), -117.6 + rng.uniform(-0.5, 0.5), rng.uniform(0, 1500)
        )
        for i in range(n)
    }


def arrivals(
    tt: TravelTimes, lat: float, lon: float, depth: float, coords: Coordinates
) -> tuple[float, float, float, float]:
    """P and S travel times (with elevation correction), epicentral distance and azimuth, computed
    independently of the locator (ellipsoidal distances)."""
    dist_m, az, _ = gps2dist_azimuth(lat, lon, coords.latitude, coords.longitude)
    epi = dist_m / 1000.0
    t = tt(np.array([epi]), depth)
    elev_km = coords.elevation / 1000.0
    vp = SOCAL_LAYERS[0][1]
    return (
        float(t["tp"][0]) + elev_km / vp,
        float(t["ts"][0]) + elev_km * VP_VS / vp,
        epi,
        az,
    )


def synthetic_picks(
    tt: TravelTimes,
    coordinates: dict[str, Coordinates],
    lat: float,
    lon: float,
    depth: float,
    noise_s: float = 0.0,
    seed: int = 0,
    with_s: bool = True,
) -> list[tuple[str, str, obspy.UTCDateTime, float]]:
    rng = np.random.default_rng(seed)
    picks = []
    for key, coords in coordinates.items():
        tp, ts, _, _ = arrivals(tt, lat, lon, depth, coords)
        picks.append((key, "P", ORIGIN + tp + rng.normal(0, noise_s) * (noise_s > 0), 1.0))
        if with_s:
            picks.append((key, "S", ORIGIN + ts + rng.normal(0, noise_s) * (noise_s > 0), 0.5))
    return picks


def epicentral_error_km(loc: Location, lat: float, lon: float) -> float:
    return gps2dist_azimuth(lat, lon, loc.latitude, loc.longitude)[0] / 1000.0


@pytest.mark.parametrize(
    ("n", "lat", "lon", "depth", "with_s"),
    [
        (8, 35.75, -117.55, 9.0, True),
        (12, 35.55, -117.8, 4.5, True),
        (10, 35.9, -117.4, 15.0, False),
    ],
)
def test_locate_exact_picks(tt, n, lat, lon, depth, with_s):
    coordinates = network(n, seed=n)
    picks = synthetic_picks(tt, coordinates, lat, lon, depth, with_s=with_s)
    loc = locate(picks, coordinates, tt)
    assert epicentral_error_km(loc, lat, lon) < 1.0
    assert loc.depth_km == pytest.approx(depth, abs=2.0)
    assert abs(loc.origin_time - ORIGIN) < 0.1
    assert loc.n_picks == len(picks)
    assert loc.rms_s < 0.1
    assert set(loc.residuals) == {(p[0], p[1]) for p in picks}


def test_locate_noisy_picks(tt):
    coordinates = network(12, seed=3)
    lat, lon, depth = 35.65, -117.7, 8.0
    for seed in range(3):
        picks = synthetic_picks(tt, coordinates, lat, lon, depth, noise_s=0.1, seed=seed)
        loc = locate(picks, coordinates, tt)
        assert epicentral_error_km(loc, lat, lon) < 3.0
        assert loc.depth_km == pytest.approx(depth, abs=5.0)
        assert abs(loc.origin_time - ORIGIN) < 0.5
        assert 0.02 < loc.rms_s < 0.3


def test_locate_l1_resists_an_outlier(tt):
    coordinates = network(10, seed=5)
    lat, lon, depth = 35.7, -117.6, 10.0
    picks = synthetic_picks(tt, coordinates, lat, lon, depth)
    key, phase, time, weight = picks[0]
    picks[0] = (key, phase, time + 3.0, weight)  # a false P pick
    loc = locate(picks, coordinates, tt)
    assert epicentral_error_km(loc, lat, lon) < 1.0
    assert abs(loc.origin_time - ORIGIN) < 0.1
    assert loc.residuals[(key, "P")] == pytest.approx(3.0, abs=0.3)
    least_squares = locate(picks, coordinates, tt, robust=False)
    assert epicentral_error_km(least_squares, lat, lon) > epicentral_error_km(loc, lat, lon)


def test_locate_outside_the_network(tt):
    coordinates = network(10, seed=7)
    lat, lon, depth = 36.3, -117.0, 6.0  # ~60 km beyond the network's edge
    picks = synthetic_picks(tt, coordinates, lat, lon, depth)
    loc = locate(picks, coordinates, tt)
    assert epicentral_error_km(loc, lat, lon) < 2.0


def test_locate_needs_enough_picks(tt):
    coordinates = network(4, seed=1)
    picks = synthetic_picks(tt, coordinates, 35.7, -117.6, 8.0)
    only_two_p = [p for p in picks if p[1] == "S"] + [p for p in picks if p[1] == "P"][:2]
    with pytest.raises(ValueError, match="at least 3 P picks"):
        locate(only_two_p, coordinates, tt)
    three_p = [p for p in picks if p[1] == "P"][:3]
    with pytest.raises(ValueError, match="4 picks in all"):
        locate(three_p, coordinates, tt)
    with pytest.raises(ValueError, match="No coordinates"):
        locate(picks, {k: v for k, v in list(coordinates.items())[1:]}, tt)
    with pytest.raises(ValueError, match="'P' or 'S'"):
        locate([(*picks[0][:1], "X", *picks[0][2:])] + picks[1:], coordinates, tt)


def simulated_stream(
    tt: TravelTimes,
    coordinates: dict[str, Coordinates],
    lat: float,
    lon: float,
    depth: float,
    magnitude: float,
    seed: int = 0,
) -> obspy.Stream:
    """Noise-free ZNE velocity (m/s) at 100 Hz of one event at every station."""
    rng = np.random.default_rng(seed)
    mechanism = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
    stream = obspy.Stream()
    p_sample = 1000.0
    for key, coords in coordinates.items():
        tp, _, epi, az = arrivals(tt, lat, lon, depth, coords)
        velocity, _ = simulate_station(
            rng,
            tt,
            magnitude,
            depth,
            epi,
            az,
            coords.elevation,
            mechanism,
            3.0,
            6000,
            p_sample,
        )
        net, sta, loc = key.split(".")
        start = ORIGIN + tp - p_sample / 100.0
        for comp, data in zip("ZNE", velocity, strict=True):
            stream += obspy.Trace(
                data.astype(np.float32),
                header={
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "channel": f"HH{comp}",
                    "sampling_rate": 100.0,
                    "starttime": start,
                },
            )
    return stream


def test_local_magnitude(tt):
    coordinates = network(8, seed=11)
    lat, lon, depth = 35.72, -117.62, 7.0
    stream = simulated_stream(tt, coordinates, lat, lon, depth, 3.0, seed=2)
    origin = Location(lat, lon, depth, ORIGIN, 0.0, 0, {})
    ml, per_station = local_magnitude(stream, origin, coordinates, tt)
    assert ml == pytest.approx(3.0, abs=0.4)
    assert set(per_station) == set(coordinates)
    assert all(abs(v - 3.0) < 1.0 for v in per_station.values())
    # Without a travel-time table (straight rays for the window) the result barely changes
    ml_straight, _ = local_magnitude(stream, origin, coordinates)
    assert ml_straight == pytest.approx(ml, abs=0.1)
    # Z-only stations and stations without coordinates are skipped
    z_only = obspy.Stream([tr for tr in stream if tr.stats.channel.endswith("Z")])
    ml_none, none = local_magnitude(z_only, origin, coordinates, tt)
    assert math.isnan(ml_none) and none == {}


def sb_pick(station: str, phase: str, time: obspy.UTCDateTime, value: float = 0.9) -> sbu.Pick:
    return sbu.Pick(
        trace_id=station,
        start_time=time - 0.1,
        end_time=time + 0.1,
        peak_time=time,
        peak_value=value,
        phase=phase,
    )


def test_associate_picks():
    base = obspy.UTCDateTime(2020, 1, 1)
    picks = []
    for event, t0 in enumerate((base, base + 60)):
        for i in range(6):
            sta = f"CI.S{i:02d}."
            picks.append(sb_pick(sta, "P", t0 + 2.0 + i))
            if i % 2 == event:
                picks.append(sb_pick(sta, "S", t0 + 2.0 + 1.7 * i + 1.0, value=0.6))
    # A cluster of two stations only (dropped) and a stray S pick
    picks += [sb_pick("CI.S00.", "P", base + 200), sb_pick("CI.S01.", "P", base + 201)]
    picks.append(sb_pick("CI.S05.", "S", base + 300))
    events = associate_picks(picks, window_s=10.0, min_stations=3)
    assert len(events) == 2
    for event, (ev, t0) in enumerate(zip(events, (base, base + 60), strict=True)):
        p = [x for x in ev if x[1] == "P"]
        s = [x for x in ev if x[1] == "S"]
        assert len(p) == 6 and len(s) == 3
        assert all(t0 < x[2] < t0 + 20 for x in ev)
        assert {x[0] for x in s} == {f"CI.S{i:02d}." for i in range(6) if i % 2 == event}
        assert all(x[3] == pytest.approx(0.9) for x in p)
        assert ev == sorted(ev, key=lambda x: x[2])
    # Channel-level trace ids are reduced to NET.STA.LOC
    channel_picks = [sb_pick(f"CI.S{i:02d}..HHZ", "P", base + i) for i in range(3)]
    (only,) = associate_picks(channel_picks, window_s=10.0, min_stations=3)
    assert {x[0] for x in only} == {"CI.S00.", "CI.S01.", "CI.S02."}
    assert associate_picks(channel_picks, window_s=10.0, min_stations=4) == []


@pytest.mark.parametrize("associator", ["greedy", "pyocto"])
def test_run_chain(tt, associator):
    coordinates = network(8, seed=13)
    lat, lon, depth = 35.68, -117.52, 9.0
    stream = simulated_stream(tt, coordinates, lat, lon, depth, 2.5, seed=4)
    picks = []
    for key, coords in coordinates.items():
        tp, ts, _, _ = arrivals(tt, lat, lon, depth, coords)
        picks += [sb_pick(key, "P", ORIGIN + tp), sb_pick(key, "S", ORIGIN + ts, 0.7)]
    picks.append(sb_pick("XX.UNKNOWN.", "P", ORIGIN + 3.0))  # no coordinates: ignored
    (event,) = run_chain(stream, picks, coordinates, tt, min_stations=3, associator=associator)
    assert event["n_picks"] == 16 and event["n_stations"] == 8
    assert gps2dist_azimuth(lat, lon, event["latitude"], event["longitude"])[0] < 1000.0
    assert event["depth_km"] == pytest.approx(depth, abs=2.0)
    assert abs(event["origin_time"] - ORIGIN) < 0.1
    assert event["magnitude"] == pytest.approx(2.5, abs=0.4)
    assert event["n_magnitude_stations"] == 8


def test_run_chain_unknown_associator(tt):
    coordinates = network(4, seed=1)
    picks = [sb_pick(k, "P", ORIGIN + i) for i, k in enumerate(coordinates)]
    with pytest.raises(ValueError, match="Unknown associator 'gamma'.*'greedy', 'pyocto'"):
        run_chain(obspy.Stream(), picks, coordinates, tt, associator="gamma")


def test_pyocto_table_holds_the_travel_times(tt, tmp_path):
    import struct

    path, s_max = write_pyocto_table(tt, tmp_path / "t.pyocto", max_distance_km=150.0, delta_km=2.0)
    raw = path.read_bytes()
    nx, nz, delta = struct.unpack("iid", raw[:16])
    assert delta == 2.0 and nx == 77 and nz == int(math.ceil(24.0 / 2.0)) + 2
    p = np.frombuffer(raw[16 : 16 + 8 * nx * nz]).reshape(nx, nz)
    s = np.frombuffer(raw[16 + 8 * nx * nz :]).reshape(nx, nz)
    for x, z in ((10.0, 6.0), (60.0, 12.0), (100.0, 2.0)):
        t = tt(np.array([x]), z)
        assert p[int(x / 2), int(z / 2)] == pytest.approx(float(t["tp"][0]), abs=0.02)
        assert s[int(x / 2), int(z / 2)] == pytest.approx(float(t["ts"][0]), abs=0.03)
    # Beyond the table (120 km) the times keep growing, at least at the table's last slope
    assert np.all(np.diff(p[55:, 3]) > 0.2) and s_max == pytest.approx(s.max())
    assert surface_velocities(tt) == pytest.approx((SOCAL_LAYERS[0][1], SOCAL_LAYERS[0][1] / VP_VS))


def exact_sb_picks(
    tt: TravelTimes, coordinates: dict[str, Coordinates], events: list[tuple]
) -> tuple[list[sbu.Pick], list[set]]:
    """SeisBench picks at the exact P and S times of every (lat, lon, depth, origin) and the (station, phase,
    time) set of each event."""
    picks, truth = [], []
    for lat, lon, depth, t0 in events:
        keys = set()
        for key, coords in coordinates.items():
            tp, ts, _, _ = arrivals(tt, lat, lon, depth, coords)
            picks += [sb_pick(key, "P", t0 + tp), sb_pick(key, "S", t0 + ts, 0.6)]
            keys |= {
                (key, "P", round((t0 + tp).timestamp, 3)),
                (key, "S", round((t0 + ts).timestamp, 3)),
            }
        truth.append(keys)
    return picks, truth


def pick_set(event: list[tuple]) -> set[tuple[str, str, float]]:
    """(station, phase, timestamp to the ms) of an associated event's picks."""
    return {(p[0], p[1], round(p[2].timestamp, 3)) for p in event}


def test_associate_pyocto_recovers_events(tt):
    coordinates = network(6, seed=21)
    events = [
        (35.75, -117.55, 9.0, ORIGIN),
        (35.55, -117.8, 4.0, ORIGIN + 12.0),  # within the first one's S arrivals
        (35.85, -117.4, 15.0, ORIGIN + 300.0),
    ]
    picks, truth = exact_sb_picks(tt, coordinates, events)
    # A stray pick, one at a station without coordinates and a pick of another phase
    picks += [
        sb_pick("CI.T00.", "P", ORIGIN + 150.0),
        sb_pick("XX.NONE.", "P", ORIGIN + 3.0),
        sb_pick("CI.T01.", "N", ORIGIN + 3.0),
    ]
    found = associate_pyocto(picks, coordinates, tt)
    assert len(found) == 3
    for ev, expected, (lat, lon, depth, t0) in zip(found, truth, events, strict=True):
        assert pick_set(ev) == expected
        assert ev == sorted(ev, key=lambda p: p[2])
        assert all(p[3] == pytest.approx(0.9 if p[1] == "P" else 0.6) for p in ev)
        loc = locate(ev, coordinates, tt)
        assert epicentral_error_km(loc, lat, lon) < 1.0 and abs(loc.origin_time - t0) < 0.2
        assert loc.depth_km == pytest.approx(depth, abs=2.0)
    # The greedy time clustering (20 s window) does not separate the two overlapping events
    greedy = associate_picks(picks, window_s=20.0, min_stations=3)
    assert sum(pick_set(ev) in truth[:2] for ev in greedy) < 2
    # Channel-level trace ids are reduced to NET.STA.LOC; too few stations give no event
    channel = [
        sbu.Pick(p.trace_id + ".HHZ", p.start_time, p.end_time, p.peak_time, p.peak_value, p.phase)
        for p in picks[:12]
    ]
    (only,) = associate_pyocto(channel, coordinates, tt)
    assert pick_set(only) == truth[0]
    assert associate_pyocto(picks[:4], coordinates, tt) == []
    assert associate_pyocto(picks[:12], coordinates, tt, min_stations=7) == []
