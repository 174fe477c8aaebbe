"""The location benchmark: uncertainty-ellipse coverage, simulated test events on real station geometries, and
the rows of SINE, the pickers' chains (greedy and PyOcto) and SINE's picks through the chain."""

from __future__ import annotations

import math

import numpy as np
import obspy
import pandas as pd
import pytest
import seisbench.util as sbu
from obspy.core.event import Catalog, Event, Origin, OriginUncertainty
from pyproj import Geod

from sine_seisbench.bench.harness import simulated_test_set
from sine_seisbench.bench.location import (
    SINE_PICKS_CHAIN,
    _errors,
    inside_ellipse,
    location_benchmark,
    summarise,
    uncertainty_ellipse,
)

GEOD = Geod(ellps="WGS84")
CENTRE = (42.8, 13.1)


def offset(azimuth_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` from :data:`CENTRE` along ``azimuth_deg`` (geodesic), as (lat, lon)."""
    lon, lat, _ = GEOD.fwd(CENTRE[1], CENTRE[0], azimuth_deg, distance_m)
    return lat, lon


def inside(az: float, dist: float, major: float, minor: float, axis: float, scale=1.0) -> bool:
    return inside_ellipse(*offset(az, dist), *CENTRE, major, minor, axis, scale=scale)


def test_inside_a_circle():
    for az in (0.0, 73.0, 180.0, 301.0):
        assert inside(az, 900.0, 1000.0, 1000.0, 0.0)
        assert inside(az, 999.0, 1000.0, 1000.0, 0.0)  # on the boundary (within a metre)
        assert not inside(az, 1010.0, 1000.0, 1000.0, 0.0)
        # The 2-sigma ellipse of the same 1-sigma circle
        assert not inside(az, 1500.0, 1000.0, 1000.0, 0.0)
        assert inside(az, 1500.0, 1000.0, 1000.0, 0.0, scale=2.0)
        assert not inside(az, 2010.0, 1000.0, 1000.0, 0.0, scale=2.0)
    assert inside_ellipse(*CENTRE, *CENTRE, 1.0, 1.0, 0.0)  # the centre itself


def test_inside_a_rotated_ellipse():
    major, minor, axis = 2000.0, 500.0, 45.0
    # Along the major axis (both directions) up to 2 km, across it only up to 500 m
    for az in (45.0, 225.0):
        assert inside(az, 1950.0, major, minor, axis)
        assert not inside(az, 2050.0, major, minor, axis)
    for az in (135.0, 315.0):
        assert inside(az, 480.0, major, minor, axis)
        assert not inside(az, 520.0, major, minor, axis)
        assert inside(az, 980.0, major, minor, axis, scale=2.0)
    # The same ellipse turned by 90 degrees swaps the two
    assert not inside(45.0, 1500.0, major, minor, 135.0)
    assert inside(135.0, 1500.0, major, minor, 135.0)
    # Off the axes: (u/a)^2 + (v/b)^2 with u = d cos 30, v = d sin 30
    d_edge = 1.0 / math.sqrt((math.cos(math.radians(30)) / 2000) ** 2 + (0.5 / 500) ** 2)
    assert inside(75.0, 0.99 * d_edge, major, minor, axis)
    assert not inside(75.0, 1.01 * d_edge, major, minor, axis)
    with pytest.raises(ValueError, match="positive"):
        inside_ellipse(*CENTRE, *CENTRE, 0.0, 1.0, 0.0)


def origin_with(**kwargs) -> Origin:
    return Origin(
        time=obspy.UTCDateTime(2020, 1, 1),
        latitude=CENTRE[0],
        longitude=CENTRE[1],
        depth=5000.0,
        origin_uncertainty=OriginUncertainty(**kwargs) if kwargs else None,
    )


def test_uncertainty_ellipse_of_an_origin():
    # Today's SINE origins: only a horizontal uncertainty, taken as a circle
    assert uncertainty_ellipse(origin_with(horizontal_uncertainty=1500.0)) == (1500.0, 1500.0, 0.0)
    ellipse = origin_with(
        horizontal_uncertainty=3000.0,
        max_horizontal_uncertainty=3000.0,
        min_horizontal_uncertainty=800.0,
        azimuth_max_horizontal_uncertainty=120.0,
        preferred_description="uncertainty ellipse",
        confidence_level=39.35,
    )
    assert uncertainty_ellipse(ellipse) == (3000.0, 800.0, 120.0)
    # Axes given the wrong way round: the larger one is the major axis, turned by 90 degrees
    swapped = origin_with(
        max_horizontal_uncertainty=800.0,
        min_horizontal_uncertainty=3000.0,
        azimuth_max_horizontal_uncertainty=120.0,
    )
    assert uncertainty_ellipse(swapped) == (3000.0, 800.0, 30.0)
    assert uncertainty_ellipse(origin_with()) is None
    assert uncertainty_ellipse(origin_with(horizontal_uncertainty=0.0)) is None


def test_errors_and_coverage():
    truth = {
        "latitude": CENTRE[0],
        "longitude": CENTRE[1],
        "depth_km": 8.0,
        "magnitude": 2.0,
        "time": obspy.UTCDateTime(2020, 1, 1),
    }

    def estimate(az: float, dist: float, ellipse) -> dict:
        lat, lon = offset(az, dist)
        return {
            "latitude": lat,
            "longitude": lon,
            "depth_km": 9.0,
            "magnitude": None,
            "time": truth["time"] + 0.5,
            "ellipse": ellipse,
        }

    # The truth lies 1.5 km from the estimate along the ellipse's major axis (reverse azimuth)
    row = _errors(truth, estimate(45.0, 1500.0, (1000.0, 400.0, 45.0)))
    assert row["epicentral_error_km"] == pytest.approx(1.5, abs=0.01)
    assert row["in_1sigma"] is False and row["in_2sigma"] is True
    assert row["uncertainty_major_km"] == 1.0 and row["uncertainty_minor_km"] == 0.4
    assert math.isnan(row["magnitude_error"]) and row["depth_error_km"] == pytest.approx(1.0)
    # Across the major axis the same distance lies outside both
    row = _errors(truth, estimate(135.0, 1500.0, (1000.0, 400.0, 45.0)))
    assert row["in_1sigma"] is False and row["in_2sigma"] is False
    # Without an ellipse: no coverage columns
    assert "in_1sigma" not in _errors(truth, estimate(0.0, 100.0, None))
    assert _errors(truth, None) == {"found": False}


def test_summarise_coverage():
    def row(err: float, in1=None, in2=None) -> dict:
        out = {
            "found": True,
            "epicentral_error_km": err,
            "depth_error_km": 1.0,
            "magnitude_error": 0.1,
        }
        if in1 is not None:
            out.update(in_1sigma=in1, in_2sigma=in2)
        return out

    rows = [
        row(1.0, True, True),
        row(2.0, False, True),
        row(3.0, False, False),
        row(4.0, False, True),
        row(5.0),  # located without an ellipse: not counted
        {"found": False},
    ]
    summary = summarise(rows)
    assert summary["events"] == 6 and summary["located"] == 5
    assert summary["coverage_1sigma"] == pytest.approx(0.25)
    assert summary["coverage_2sigma"] == pytest.approx(0.75)
    # The same after a DataFrame round trip (missing values become NaN, flags objects or floats)
    again = summarise(pd.DataFrame(rows).to_dict("records"))
    assert again["located"] == 5 and again["coverage_2sigma"] == pytest.approx(0.75)
    # No ellipse at all, and nothing located: NaN
    chain = summarise([row(1.0), row(2.0)])
    assert math.isnan(chain["coverage_1sigma"]) and math.isnan(chain["coverage_2sigma"])
    none = summarise([{"found": False}])
    assert none["located"] == 0 and math.isnan(none["coverage_1sigma"])


def test_simulated_test_set_on_real_geometries(shared, tt, tmp_path, sb_log):
    from sine_seisbench.data.simulate import load_station_list

    stations = load_station_list(shared / "events" / "iceland_qm_2014-08-24" / "stations.csv")
    ds = simulated_test_set(None, 2, tmp_path, tt, geometry="iceland", data_dir=shared)
    meta = ds.metadata
    assert meta["source_id"].nunique() == 2
    assert set(meta["station_code"]) <= set(stations["station"])
    for _, rows in meta.groupby("source_id"):
        assert 8 <= len(rows) <= 16
        lat, lon = rows["source_latitude_deg"].iloc[0], rows["source_longitude_deg"].iloc[0]
        assert stations.latitude.min() - 0.1 < lat < stations.latitude.max() + 0.1
        assert stations.longitude.min() - 0.1 < lon < stations.longitude.max() + 0.1
    # Real noise records, not the simulator's Gaussian fallback (which it warns about)
    assert "coloured Gaussian noise" not in sb_log.text
    with pytest.raises(ValueError, match="Unknown geometry 'mars'"):
        simulated_test_set(None, 2, tmp_path, tt, geometry="mars", data_dir=shared)
    with pytest.raises(FileNotFoundError, match="central_italy"):
        simulated_test_set(None, 2, tmp_path, tt, geometry="central_italy", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs data_dir"):  # no default data folder
        simulated_test_set(None, 2, tmp_path, tt, geometry="iceland")


class TruePicker:
    """Picks at the simulated arrival times of every station present in the stream."""

    def __init__(self, dataset) -> None:
        self.arrivals = {}
        for _, r in dataset.metadata.iterrows():
            start = obspy.UTCDateTime(r["trace_start_time"])
            key = f"{r['station_network_code']}.{r['station_code']}."
            for phase in "PS":
                t = start + float(r[f"trace_{phase.lower()}_arrival_sample"]) / 100.0
                self.arrivals.setdefault(key, []).append((phase, t))

    def classify(self, stream: obspy.Stream, **kwargs) -> sbu.ClassifyOutput:
        present = {f"{tr.stats.network}.{tr.stats.station}." for tr in stream}
        picks = sbu.PickList(
            sbu.Pick(key, t - 0.1, t + 0.1, t, 0.9, phase)
            for key in sorted(present)
            for phase, t in self.arrivals.get(key, [])
            if stream[0].stats.starttime <= t <= stream[0].stats.endtime
        )
        return sbu.ClassifyOutput("true", picks=picks)


class FakeSINE(TruePicker):
    """True picks, and an event 1 km north of the truth with a 1.5 km uncertainty circle."""

    def classify(self, stream: obspy.Stream, inventory=None, **kwargs) -> sbu.ClassifyOutput:
        out = super().classify(stream)
        meta = self.meta
        lon, lat, _ = GEOD.fwd(
            meta["source_longitude_deg"], meta["source_latitude_deg"], 0.0, 1000.0
        )
        origin = Origin(
            time=obspy.UTCDateTime(meta["source_origin_time"]),
            latitude=lat,
            longitude=lon,
            depth=meta["source_depth_km"] * 1000.0,
            origin_uncertainty=OriginUncertainty(horizontal_uncertainty=1500.0),
        )
        event = Event(origins=[origin])
        event.preferred_origin_id = origin.resource_id
        return sbu.ClassifyOutput("SINE", picks=out.picks, events=Catalog([event]))


def test_location_benchmark_rows(tt, tmp_path):
    ds = simulated_test_set(None, 1, tmp_path, tt, geometry="demo")
    sine = FakeSINE(ds)
    sine.meta = ds.metadata.iloc[0]
    rows = location_benchmark(
        ds,
        sine,
        {"True": TruePicker(ds)},
        tt,
        conditions=[(0.0, 0.0), (0.5, 0.0)],
        pick_jitters=(0.1,),
        geometry="demo",
    )
    frame = pd.DataFrame(rows)
    assert set(frame["geometry"]) == {"demo"}
    assert set(frame["method"]) == {"SINE", "True chain", "True chain (PyOcto)", SINE_PICKS_CHAIN}
    # Per condition one row per method; the jitter rows are the chains' only
    assert len(frame) == 2 * 4 + 3
    jitter = frame[frame["pick_jitter_s"].fillna(0) > 0]
    assert set(jitter["method"]) == {"True chain", "True chain (PyOcto)", SINE_PICKS_CHAIN}
    # True picks give accurate chain locations with either associator (a third of the picks missing and
    # 0.1 s jitter included)
    chains = frame[frame["method"] != "SINE"]
    assert chains["found"].all() and (chains["epicentral_error_km"] < 5.0).all()
    # SINE's event lies 1 km from the truth: inside its 1.5 km 1-sigma circle
    sine_rows = frame[frame["method"] == "SINE"]
    assert (sine_rows["epicentral_error_km"] - 1.0).abs().max() < 0.01
    assert sine_rows["in_1sigma"].all() and sine_rows["in_2sigma"].all()
    assert frame.loc[frame["method"] != "SINE", "in_1sigma"].isna().all()
    summary = summarise(sine_rows.to_dict("records"))
    assert summary["coverage_1sigma"] == 1.0
    # Half the stations removed: the degraded rows see fewer picks but are still located
    assert np.isfinite(frame[frame["drop_fraction"] == 0.5]["epicentral_error_km"]).all()
