"""Geometry across the antimeridian, stations with wrong coordinates, and the physical bounds of events
(issue 11, item 4)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import seisbench.util as sbu

from sine_seisbench import DEFAULT_WEIGHTS
from sine_seisbench.geometry import (
    EARTH_KM_PER_DEG,
    Coordinates,
    compact_groups,
    far_stations,
    local_positions,
    project,
    unproject,
    warn_far_stations,
)
from sine_seisbench.pipeline.events import (
    Bounds,
    Candidate,
    drop_implausible,
    group_aperture,
    implausible,
)

T0 = obspy.UTCDateTime(2021, 3, 4, 12, 0, 0)
#: A network around Fiji's Taveuni, across the antimeridian
DATELINE = (-16.8, 180.0)


def ring_network(
    centre: tuple[float, float], n: int, radius_km: float, seed: int = 0, net: str = "XX"
) -> dict[str, Coordinates]:
    """``n`` stations scattered within ``radius_km`` of ``centre`` (longitudes wrapped into [-180, 180))."""
    rng = np.random.default_rng(seed)
    r = radius_km * np.sqrt(rng.uniform(0.05, 1, n))
    az = rng.uniform(0, 2 * np.pi, n)
    km_lon = EARTH_KM_PER_DEG * math.cos(math.radians(centre[0]))
    out = {}
    for i in range(n):
        lon = centre[1] + r[i] * math.sin(az[i]) / km_lon
        out[f"{net}.S{i:02d}."] = Coordinates(
            centre[0] + r[i] * math.cos(az[i]) / EARTH_KM_PER_DEG,
            (lon + 180.0) % 360.0 - 180.0,
            float(rng.uniform(0, 800)),
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Projection across the antimeridian
# ---------------------------------------------------------------------------------------------------------
def test_projection_across_the_antimeridian():
    lat = np.array([-16.8, -16.8])
    lon = np.array([179.95, -179.95])
    east, north = project(lat, lon, -16.8, 180.0)
    km_lon = EARTH_KM_PER_DEG * math.cos(math.radians(-16.8))
    assert east == pytest.approx([-0.05 * km_lon, 0.05 * km_lon])
    assert north == pytest.approx([0.0, 0.0], abs=1e-9)
    # the reference at -180 is the same point as +180
    assert project(lat, lon, -16.8, -180.0)[0] == pytest.approx(east)
    for e, la, lo in zip(east, lat, lon, strict=True):
        back_lat, back_lon = unproject(e, 0.0, -16.8, 180.0)
        assert back_lat == pytest.approx(la)
        assert back_lon == pytest.approx(lo)
        assert -180.0 <= back_lon < 180.0


def test_local_positions_and_groups_of_an_antimeridian_network():
    coords = {
        "XX.A.": Coordinates(51.9, 179.9, 0.0),  # the Aleutians, Adak-Amchitka
        "XX.B.": Coordinates(51.95, -179.9, 0.0),
        "XX.C.": Coordinates(51.8, -179.95, 0.0),
        "XX.D.": Coordinates(52.0, 179.95, 0.0),
    }
    pos, (lat0, lon0) = local_positions(list(coords.values()))
    assert abs(lon0) > 179.8  # the reference point lies on the antimeridian, not at 0°
    spread = np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1).max()
    assert spread < 30.0  # a few km apart, not ~25,000 km
    # one station east of the line, one west: ordered east to west as on the map
    assert pos[0, 0] < pos[1, 0]

    network = ring_network(DATELINE, 20, 40.0)
    names = list(network)
    groups = compact_groups(names, list(network.values()), 8)
    for group in groups:
        gpos, _ = local_positions([network[s] for s in group])
        assert np.linalg.norm(gpos[:, None, :2] - gpos[None, :, :2], axis=-1).max() < 90.0


# ---------------------------------------------------------------------------------------------------------
# Stations implausibly far from their network
# ---------------------------------------------------------------------------------------------------------
def test_sign_flipped_longitude_is_flagged(caplog):
    network = ring_network((35.7, -117.6), 16, 60.0)
    bad = dict(network)
    c = bad["XX.S03."]
    bad["XX.S03."] = Coordinates(c.latitude, -c.longitude, c.elevation)
    keys = sorted(bad)
    flagged = far_stations(keys, [bad[k] for k in keys])
    assert [f.station for f in flagged] == ["XX.S03."]
    assert flagged[0].distance_km > 5000
    assert "XX.S03." in flagged[0].reason and "far from its network" in flagged[0].reason
    logger = logging.getLogger("sine-test-far")
    with caplog.at_level(logging.WARNING, logger="sine-test-far"):
        assert warn_far_stations(bad, logger) == ["XX.S03."]
    assert len(caplog.records) == 1 and "XX.S03." in caplog.records[0].getMessage()
    assert far_stations(sorted(network), [network[k] for k in sorted(network)]) == []


def test_one_station_far_off_a_small_network():
    network = ring_network((35.7, -117.6), 12, 10.0, seed=3)  # ~20 km across
    network["XX.FAR."] = Coordinates(35.7 + 300.0 / EARTH_KM_PER_DEG, -117.6, 100.0)
    keys = sorted(network)
    flagged = far_stations(keys, [network[k] for k in keys])
    assert [f.station for f in flagged] == ["XX.FAR."]
    assert 280 < flagged[0].distance_km < 310
    # a typo of a degree in latitude (~1,100 km) with two stations sharing the same wrong position
    network["XX.FAR."] = network["XX.TWIN."] = Coordinates(45.7, -117.6, 100.0)
    keys = sorted(network)
    assert [f.station for f in far_stations(keys, [network[k] for k in keys])] == [
        "XX.FAR.",
        "XX.TWIN.",
    ]


def test_sparse_and_split_networks_are_not_flagged():
    # a regional network with stations ~150 km apart
    lats, lons = np.meshgrid(np.arange(4) * 1.4 + 33.0, np.arange(4) * 1.6 - 120.0)
    coords = [Coordinates(a, b, 0.0) for a, b in zip(lats.ravel(), lons.ravel(), strict=True)]
    assert far_stations([f"XX.R{i:02d}." for i in range(16)], coords) == []
    # two arrays of equal size 500 km apart are two networks, not outliers
    a = ring_network((35.7, -117.6), 8, 10.0, net="AA")
    b = ring_network((35.7 + 500 / EARTH_KM_PER_DEG, -117.6), 8, 10.0, net="BB")
    both = {**a, **b}
    assert far_stations(sorted(both), [both[k] for k in sorted(both)]) == []
    # in a group of three, the one far off is found
    trio = ["XX.A.", "XX.B.", "XX.C."]
    coords3 = [
        Coordinates(35.7, -117.6, 0),
        Coordinates(35.75, -117.6, 0),
        Coordinates(35.7, 117.6, 0),
    ]
    assert [f.station for f in far_stations(trio, coords3)] == ["XX.C."]
    # too few stations to tell which is wrong
    assert far_stations(["XX.A.", "XX.B."], [Coordinates(0, 0, 0), Coordinates(0, 90, 0)]) == []
    # across the antimeridian
    dateline = ring_network(DATELINE, 16, 50.0)
    assert far_stations(sorted(dateline), [dateline[k] for k in sorted(dateline)]) == []


def _real_station_lists(shared: Path) -> dict[str, dict[str, Coordinates]]:
    italy = pd.read_csv(
        shared / "stations" / "central_italy_stations_2016.dat",
        sep=r"\s+",
        header=None,
        names=["longitude", "latitude", "network", "station", "channel", "elevation_km"],
    )
    ridgecrest = pd.read_csv(shared / "stations" / "ridgecrest_stations.tsv", sep="\t")
    return {
        "central_italy": {
            f"{r.network}.{r.station}.": Coordinates(r.latitude, r.longitude, r.elevation_km * 1e3)
            for r in italy.itertuples()
        },
        "ridgecrest": {
            r.station.rsplit(".", 1)[0]: Coordinates(r.latitude, r.longitude, r._4)
            for r in ridgecrest.itertuples()
        },
    }


@pytest.mark.parametrize("name", ["central_italy", "ridgecrest"])
def test_real_station_lists_give_no_warning(shared, name, caplog):
    stations = _real_station_lists(shared)[name]
    logger = logging.getLogger("sine-test-real")
    rng = np.random.default_rng(11)
    keys = sorted(stations)
    with caplog.at_level(logging.WARNING, logger="sine-test-real"):
        assert warn_far_stations(stations, logger) == []
        for n in (3, 5, 8, 16):
            for _ in range(25):
                subset = rng.choice(keys, min(n, len(keys)), replace=False)
                assert warn_far_stations({k: stations[k] for k in subset}, logger) == []
    assert caplog.records == []
    # and the same list with one sign-flipped longitude is flagged
    key = keys[len(keys) // 2]
    c = stations[key]
    bad = {**stations, key: Coordinates(c.latitude, -c.longitude, c.elevation)}
    assert [f.station for f in far_stations(keys, [bad[k] for k in keys])] == [key]


# ---------------------------------------------------------------------------------------------------------
# Physical bounds of events
# ---------------------------------------------------------------------------------------------------------
def located(
    network: dict[str, Coordinates],
    offset_km: tuple[float, float] = (3.0, -4.0),
    depth: float = 8.0,
    magnitude: float = 2.5,
    origin_shift_s: float = 0.0,
) -> Candidate:
    """A candidate of the whole network with P picks at straight-ray times (6 km/s) from an event ``offset_km``
    (east, north) of the network's first station, located there."""
    keys = sorted(network)
    first = network[keys[0]]
    lat, lon = unproject(*offset_km, first.latitude, first.longitude)
    picks = []
    for k in keys:
        epi = obspy.geodetics.gps2dist_azimuth(lat, lon, network[k].latitude, network[k].longitude)[
            0
        ]
        t = T0 + math.hypot(epi / 1e3, depth) / 6.0
        picks.append(sbu.Pick(k, t - 0.1, t + 0.1, t, 0.9, "P"))
    cand = Candidate(group=keys, p_picks=picks)
    cand.mean = np.array([0.0, 0.0, depth, magnitude])
    cand.std = np.array([1.0, 1.0, 2.0, 0.2])
    cand.latitude, cand.longitude = lat, lon
    cand.origin_time = T0 + origin_shift_s
    cand.origin_time_std = 0.1
    return cand


def test_no_magnitude_is_allowed_and_a_rejected_candidate_is_not_an_event():
    """An event without ML (no instrument response: uncalibrated) is an event; a candidate the acceptance rule
    turned down is not, and says why."""
    network = ring_network((35.7, -117.6), 10, 30.0)
    assert implausible(located(network, magnitude=float("nan")), network, T0 - 20, 30.0) is None
    cand = located(network)
    cand.rejected = "2 P and 1 S phases reach the thresholds"
    why = implausible(cand, network, T0 - 20, 30.0)
    assert why is not None and why.startswith("not accepted: 2 P and 1 S")
    cand = located(network)
    cand.latitude = float("nan")
    assert "non-finite" in implausible(cand, network, T0 - 20, 30.0)
    # a latitude no point has (a diverged fit, unprojected) is a reason, not a crash in the distance
    cand = located(network)
    cand.latitude = 296947.4
    assert "latitude 296947.400 outside [-90, 90]" in implausible(cand, network, T0 - 20, 30.0)


def test_a_normal_event_passes_every_bound():
    network = ring_network((35.7, -117.6), 10, 30.0)
    cand = located(network)
    assert implausible(cand, network, T0 - 20, 30.0) is None
    assert implausible(cand, network, None, 30.0) is None
    # an event 80 km outside a small group is still a plausible earthquake
    small = ring_network((35.7, -117.6), 6, 8.0, seed=2)
    assert implausible(located(small, offset_km=(80.0, 0.0)), small, T0 - 20, 30.0) is None
    # across the antimeridian
    dateline = ring_network(DATELINE, 10, 30.0)
    assert implausible(located(dateline, offset_km=(-10.0, 5.0)), dateline, T0 - 20, 30.0) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(magnitude=22.7), "magnitude 22.7 outside [-2, 9.5]"),
        (dict(magnitude=-3.1), "magnitude -3.1 outside"),
        (dict(depth=750.0), "depth 750 km deeper than 700 km"),
        (dict(depth=-9.0), "above the highest station"),
        (dict(offset_km=(1100.0, 0.0)), "epicentre"),
        (dict(origin_shift_s=9.0), "after the first P pick"),
    ],
)
def test_each_bound_rejects_with_its_reason(change, reason):
    network = ring_network((35.7, -117.6), 10, 30.0)
    why = implausible(located(network, **change), network, T0 - 20, 30.0)
    assert why is not None and reason in why


def test_origin_before_the_data():
    network = ring_network((35.7, -117.6), 10, 30.0)
    cand = located(network)
    assert (
        implausible(cand, network, T0 + 29.0, 30.0) is None
    )  # P reached the stations within the window
    why = implausible(cand, network, T0 + 31.0, 30.0)
    assert why is not None and "before the start of the data" in why


def test_bounds_are_configurable():
    network = ring_network((35.7, -117.6), 10, 30.0)
    cand = located(network, magnitude=7.0, depth=100.0)
    assert implausible(cand, network, None, 30.0) is None
    assert "magnitude" in implausible(cand, network, None, 30.0, Bounds(max_magnitude=6.0))
    assert "depth" in implausible(cand, network, None, 30.0, Bounds(max_depth_km=50.0))
    far = located(network, offset_km=(200.0, 0.0))
    assert implausible(far, network, None, 30.0) is not None
    assert implausible(far, network, None, 30.0, Bounds(epicentre_min_km=300.0)) is None


def test_group_aperture_ignores_a_station_with_wrong_coordinates():
    network = ring_network((35.7, -117.6), 12, 15.0)
    lat0, lon0, radius = group_aperture(sorted(network), network)
    bad = dict(network)
    c = bad["XX.S05."]
    bad["XX.S05."] = Coordinates(c.latitude, -c.longitude, c.elevation)
    assert group_aperture(sorted(bad), bad)[2] < 20.0
    assert radius < 20.0 and abs(lat0 - 35.7) < 0.2 and abs(lon0 + 117.6) < 0.2
    # the event that a sign-flipped station drags 1,100 km off is dropped
    cand = located(network, offset_km=(0.0, -1100.0))
    assert "epicentre" in implausible(cand, bad, None, 30.0)


def test_drop_implausible_logs_once_and_keeps_the_rest(caplog):
    network = ring_network((35.7, -117.6), 10, 30.0)
    good, bad = located(network), located(network, magnitude=14.7)
    logger = logging.getLogger("sine-test-drop")
    logged: set = set()
    with caplog.at_level(logging.WARNING, logger="sine-test-drop"):
        kept = drop_implausible([good, bad], network, T0 - 20, 30.0, logger, logged=logged)
        assert len(kept) == 1 and kept[0] is good
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        for part in ("magnitude 14.7", "XX.S00.", "First P", "picks are kept"):
            assert part in message
        # the streaming engine checks the same candidates again: no second warning
        assert drop_implausible([bad], network, T0 - 20, 30.0, logger, logged=logged) == []
        assert len(caplog.records) == 1
    assert drop_implausible([bad], network, T0 - 20, 30.0) == []  # no logger: silent


# ---------------------------------------------------------------------------------------------------------
# End to end: classify on a simulated network across the antimeridian
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dateline_record(tmp_path_factory, tt) -> tuple[obspy.Stream, obspy.Inventory, dict]:
    """A simulated M2.8 earthquake under a 12-station network around 180° (stream, inventory, truth)."""
    import seisbench.data as sbd

    from sine_seisbench.data.simulate import SimulationConfig, simulate_dataset
    from sine_seisbench.demo import dataset_to_stream

    network = ring_network(DATELINE, 12, 50.0, seed=7, net="DM")
    assert min(c.longitude for c in network.values()) < -179.0
    assert max(c.longitude for c in network.values()) > 179.0
    stations = pd.DataFrame(
        [
            dict(
                network="DM",
                station=k.split(".")[1],
                latitude=c.latitude,
                longitude=c.longitude,
                elevation=c.elevation,
            )
            for k, c in network.items()
        ]
    )
    truth = dict(time="2021-03-04T12:00:00", latitude=-16.75, longitude=-179.93, depth=8.0)
    truth["magnitude"] = 2.8
    config = SimulationConfig(
        n_events=1,
        max_stations=12,
        samples=6000,
        seed=7,
        z_only_fraction=0.0,
        gap_fraction=0.0,
        dead_component_fraction=0.0,
        p_sample_range=(1500, 2500),
    )
    path = simulate_dataset(
        tmp_path_factory.mktemp("dateline") / "ds",
        stations,
        catalog=pd.DataFrame([truth]),
        config=config,
        tt=tt,
    )
    stream, inventory = dataset_to_stream(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)
    )
    stream.trim(max(tr.stats.starttime for tr in stream), min(tr.stats.endtime for tr in stream))
    return stream, inventory, truth


@pytest.fixture(scope="module")
def default_model():
    from sine_seisbench import SINE

    return SINE.from_pretrained(DEFAULT_WEIGHTS)


def test_classify_on_a_network_across_the_antimeridian(dateline_record, default_model, sb_log):
    """The earthquake is located near the truth with a plausible magnitude (on the unwrapped projection it
    came out ~12,000 km away)."""
    stream, inventory, truth = dateline_record
    out = default_model.classify(stream, inventory=inventory)
    assert len({p.trace_id for p in out.picks if p.phase == "P"}) >= 6
    assert len(out.events) == 1
    origin, magnitude = out.events[0].preferred_origin(), out.events[0].preferred_magnitude()
    error_km = (
        obspy.geodetics.gps2dist_azimuth(
            truth["latitude"], truth["longitude"], origin.latitude, origin.longitude
        )[0]
        / 1e3
    )
    assert error_km < 30.0
    assert -180.0 <= origin.longitude < 180.0
    assert abs(magnitude.mag - truth["magnitude"]) < 1.0
    assert 0 <= origin.depth / 1e3 < 40.0
    assert "far from" not in sb_log.text and "dropped" not in sb_log.text


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def sign_flipped(dateline_record, default_model):
    """The dateline network with one station's latitude sign-flipped (3,700 km off, in the northern
    hemisphere): (inventory, the station's key, classify's output, the warnings classify logged). Classify runs
    once for the classify and the monitor test."""
    stream, inventory, _truth = dateline_record
    inventory = inventory.copy()
    station = inventory[0][4]
    station.latitude = -station.latitude
    for channel in station:
        channel.latitude = -channel.latitude
    key = f"{inventory[0].code}.{station.code}."
    logger = logging.getLogger("seisbench")  # SeisBench's logger, which SINE's warnings go through
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        out = default_model.classify(stream.copy(), inventory=inventory)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return inventory, key, out, [r.getMessage() for r in handler.records]


def test_classify_warns_of_a_sign_flipped_station_and_publishes_no_absurd_event(
    dateline_record, sign_flipped
):
    """Needs :func:`warn_far_stations` and :func:`drop_implausible` wired into ``SINE.classify``: the station
    with the sign-flipped longitude is named in one warning, the picks are all there, and every published
    event is within the physical bounds."""
    stream, _, _truth = dateline_record
    inventory, key, out, logged = sign_flipped
    warnings = [m for m in logged if "far from" in m]
    assert len(warnings) == 1 and key in warnings[0]
    assert key in {p.trace_id for p in out.picks}
    coordinates = {
        f"{net.code}.{sta.code}.": Coordinates(sta.latitude, sta.longitude, sta.elevation)
        for net in inventory
        for sta in net
    }
    data_start = min(tr.stats.starttime for tr in stream)
    for event in out.events:
        origin, magnitude = event.preferred_origin(), event.preferred_magnitude()
        assert -2.0 <= magnitude.mag <= 9.5
        assert origin.depth / 1e3 <= 700.0
        assert origin.time >= data_start - 30.0
        assert origin.time <= min(p.time for p in event.picks) + 5.0
        good = [k for k in coordinates if k != key]
        lat0, lon0, radius = group_aperture(good, coordinates)
        distance = (
            obspy.geodetics.gps2dist_azimuth(lat0, lon0, origin.latitude, origin.longitude)[0] / 1e3
        )
        assert distance < max(2 * radius, 120.0) + 100.0


def test_the_monitor_warns_of_a_sign_flipped_station_and_publishes_no_absurd_event(
    dateline_record, default_model, sign_flipped, sb_log
):
    """The streaming engine applies the same bounds as classify: what it publishes is what classify keeps."""
    from engine_util import published_events, run_engine

    from sine_seisbench.monitor.engine import StreamingClassifier

    stream, _, _truth = dateline_record
    inventory, key, expected, _ = sign_flipped
    sb_log.clear()
    engine = StreamingClassifier(default_model, inventory)
    out = run_engine(engine, stream)
    warnings = [r.getMessage() for r in sb_log.records if "far from" in r.getMessage()]
    assert len(warnings) == 1 and key in warnings[0]
    published = published_events(out)
    assert len(published) == len(expected.events)
    for m in published:
        assert -2.0 <= m["magnitude"] <= 9.5 and m["depth_km"] <= 700.0
