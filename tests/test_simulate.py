from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd

from sine_seisbench.data.pipeline import build_generator, prepare_dataset
from sine_seisbench.data.simulate import (
    NoiseBank,
    SimulationConfig,
    TravelTimes,
    calibrate,
    load_stations,
    radiation,
    simulate_dataset,
)


@pytest.fixture(scope="session")
def tt() -> TravelTimes:
    """A coarse table (fast to build) in the project's SoCal TauP model."""
    return TravelTimes(
        max_distance_km=120.0, max_depth_km=24.0, distance_step_km=5.0, depth_step_km=3.0
    )


def stations_frame(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "network": "CI",
            "station": [f"T{i:02d}" for i in range(n)],
            "latitude": 35.7 + rng.uniform(-0.4, 0.4, n),
            "longitude": -117.6 + rng.uniform(-0.5, 0.5, n),
            "elevation": rng.uniform(0, 1500, n),
        }
    )


def test_travel_times_agree_with_taup(tt):
    from obspy.geodetics import kilometer2degrees
    from obspy.taup import TauPyModel

    model = TauPyModel(model=str(tt.taup_model))
    for dist, depth in [(7.5, 4.5), (33.0, 10.0), (71.0, 13.0), (110.0, 20.0)]:
        table = tt(np.array([dist]), depth)
        for phase, names in (("p", ["p", "P", "Pn"]), ("s", ["s", "S", "Sn"])):
            arrivals = model.get_travel_times(depth, kilometer2degrees(dist), phase_list=names)
            direct = min(a.time for a in arrivals)
            assert table[f"t{phase}"][0] == pytest.approx(direct, abs=0.15), (phase, dist, depth)


def test_s_minus_p_grows_with_distance(tt):
    dist = np.array([10.0, 30.0, 60.0, 100.0])
    t = tt(dist, 8.0)
    sp = t["ts"] - t["tp"]
    assert np.all(np.diff(sp) > 0)
    hyp = np.hypot(dist, 8.0)
    # Vp/Vs = 1.73 in crustal velocities of 5.5-6.7 km/s: about 0.11-0.14 s of S-P per km
    assert np.all((sp / hyp > 0.09) & (sp / hyp < 0.15))


def test_radiation_pattern_of_a_vertical_strike_slip():
    # P is nodal along strike and maximal at 45 degrees for a horizontal ray
    rp, _, _ = radiation(0.0, 90.0, 0.0, np.array([0.0, 45.0, 90.0]), np.array([90.0, 90.0, 90.0]))
    assert abs(rp[0]) < 1e-9 and rp[1] == pytest.approx(1.0) and abs(rp[2]) < 1e-9


def test_local_magnitude_calibration(tt):
    residuals = calibrate(120, seed=3, tt=tt)
    assert abs(np.median(residuals)) < 0.15
    assert 0.08 < residuals.std() < 0.35


def test_dataset_is_deterministic_opens_and_feeds_training(tmp_path, tt):
    cfg = SimulationConfig(n_events=4, max_stations=6, samples=4000, seed=5)
    a = simulate_dataset(
        tmp_path / "a", stations_frame(), region=(35.4, 36.0, -118.0, -117.2), config=cfg, tt=tt
    )
    b = simulate_dataset(
        tmp_path / "b", stations_frame(), region=(35.4, 36.0, -118.0, -117.2), config=cfg, tt=tt
    )
    ma, mb = pd.read_csv(a / "metadata.csv"), pd.read_csv(b / "metadata.csv")
    pd.testing.assert_frame_equal(ma, mb)
    da = sbd.WaveformDataset(a, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    db = sbd.WaveformDataset(b, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    np.testing.assert_array_equal(da.get_waveforms(0), db.get_waveforms(0))
    assert ma["source_id"].nunique() == 4 and len(ma) == 24
    assert (ma["trace_s_arrival_sample"] > ma["trace_p_arrival_sample"]).all()
    # S-P in the metadata matches the travel-time table
    row = ma.iloc[0]
    t = tt(np.array([row["path_ep_distance_km"]]), row["source_depth_km"])
    sp = (row["trace_s_arrival_sample"] - row["trace_p_arrival_sample"]) / 100
    assert sp == pytest.approx(t["ts"][0] - t["tp"][0], abs=0.35)
    # The P onset is where the metadata says: energy rises there
    w = da.get_waveforms(0)[0]
    p = int(row["trace_p_arrival_sample"])
    assert np.abs(w[p : p + 100]).max() > 2 * np.abs(w[p - 300 : p - 50]).max()
    prepared = prepare_dataset(da)
    sample = build_generator(prepared, 8, 3001, training=True)[0]
    assert sample["station_mask"].sum() >= 1 and sample["event_mask"].all()


def test_magnitude_scales_amplitudes(tmp_path, tt):
    cfg = SimulationConfig(n_events=1, max_stations=4, samples=4000, seed=1, noise_rms_median=1e-12)
    peaks = []
    for mag in (1.5, 3.5):
        catalog = pd.DataFrame(
            {
                "time": ["2019-07-06T00:00:00"],
                "latitude": [35.7],
                "longitude": [-117.6],
                "depth": [8.0],
                "magnitude": [mag],
            }
        )
        path = simulate_dataset(
            tmp_path / f"m{mag}", stations_frame(), catalog=catalog, config=cfg, tt=tt
        )
        ds = sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)
        peaks.append(np.mean([np.abs(ds.get_waveforms(i)).max() for i in range(len(ds))]))
    # two magnitude units: 1.5-2 orders of magnitude in peak velocity
    assert 1.0 < math.log10(peaks[1] / peaks[0]) < 2.5


def test_real_noise_bank(shared):
    paths = sorted((shared / "continuous" / "ridgecrest_2019-07-06T08").glob("*.mseed"))
    bank = NoiseBank(paths, seed=0)
    assert bank.real and len(bank.stations) == 3
    w = bank.window(3000)
    assert w.shape == (3, 3000)
    np.testing.assert_allclose(w.std(axis=-1), 1.0, rtol=1e-6)


def test_station_csv_with_epochs(shared):
    st = load_stations(shared / "stations" / "western_us_stations.csv", time=2019.5)
    ci = st[st["network"] == "CI"]
    assert 200 < len(ci) < 790
    assert {"network", "station", "latitude", "longitude", "elevation"} == set(st.columns)
