"""Training data: simulated events on many real geometries, real windows with confirmed teacher picks, and the
evaluation guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import seisbench
import seisbench.util as sbu

from sine_seisbench.chain import Location
from sine_seisbench.data.evaluation import EVALUATION_RECORDS, check_not_evaluation
from sine_seisbench.data.layout import DataLayout
from sine_seisbench.data.realdata import (
    build_real_dataset,
    confirm_picks,
    default_training_records,
    locate_and_confirm,
)
from sine_seisbench.data.simulate import (
    GeometryConfig,
    SimulationConfig,
    _haversine_km,
    aperture_km,
    default_noise_paths,
    default_station_lists,
    load_station_list,
    simulate_geometries,
)


def _stations(
    n: int, lat0: float, lon0: float, spread_deg: float, seed: int, net: str
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "network": net,
            "station": [f"S{i:03d}" for i in range(n)],
            "latitude": lat0 + rng.uniform(-spread_deg, spread_deg, n),
            "longitude": lon0 + rng.uniform(-spread_deg, spread_deg, n),
            "elevation": rng.uniform(0, 1000, n),
        }
    )


def _check_geometry(meta: pd.DataFrame, geometry: GeometryConfig) -> None:
    assert (meta["trace_label_source"] == "simulated").all()
    for _, group in meta.groupby("source_id"):
        assert geometry.stations[0] <= len(group) <= geometry.stations[1]
        ap = aperture_km(group["station_latitude_deg"], group["station_longitude_deg"])
        assert geometry.aperture_km[0] <= ap <= geometry.aperture_km[1]
        assert ap == pytest.approx(group["source_aperture_km"].iloc[0], abs=1e-6)
        assert group[["station_network_code", "station_code"]].drop_duplicates().shape[0] == len(
            group
        )


def test_geometry_sampler_respects_station_count_and_aperture(tmp_path, tt):
    dense = _stations(300, 35.7, -117.6, 1.2, 0, "AA")  # ~270 km wide, any aperture possible
    dated = _stations(60, 45.0, 10.0, 0.5, 1, "BB")
    dated["start_date"] = np.where(np.arange(60) < 30, 2000.0, 2010.0)  # two networks in time
    dated["end_date"] = np.where(np.arange(60) < 30, 2005.0, 3000.001)
    geometry = GeometryConfig()
    out = simulate_geometries(
        tmp_path / "geo",
        {"dense": dense, "dated": dated},
        n_events=12,
        config=SimulationConfig(seed=3, samples=3000),
        geometry=geometry,
        tt=tt,
    )
    meta = pd.read_csv(out / "metadata.csv")
    assert meta["source_id"].nunique() == 12
    _check_geometry(meta, geometry)
    assert set(meta["source_geometry"]) <= {"dense", "dated"}
    # stations of one group operated together
    for _, group in meta[meta["source_geometry"] == "dated"].groupby("source_id"):
        early = group["station_code"].str[1:].astype(int) < 30
        assert early.all() or (~early).all()
    # epicentres inside or near their group; depths and magnitudes in range
    for _, group in meta.groupby("source_id"):
        d = _haversine_km(
            group["source_latitude_deg"].iloc[0],
            group["source_longitude_deg"].iloc[0],
            group["station_latitude_deg"],
            group["station_longitude_deg"],
        )
        assert d.min() <= group["source_aperture_km"].iloc[0] + 2 * geometry.margin_km + 1e-6
        assert d.max() <= tt.max_distance_km
    assert meta["source_depth_km"].between(0.3, 29).all()
    assert meta["source_magnitude"].between(0.3, geometry.max_magnitude).all()
    assert meta["trace_p_arrival_sample"].notna().all()


def test_geometry_sampler_on_real_lists(shared, tmp_path, tt):
    lists = default_station_lists(shared)
    assert {"western_us", "ridgecrest", "central_italy", "hengill", "colombia"} <= set(lists)
    geometry = GeometryConfig(stations=(3, 8))
    out = simulate_geometries(
        tmp_path / "geo",
        lists,
        n_events=6,
        config=SimulationConfig(seed=1, samples=3000),
        geometry=geometry,
        tt=tt,
    )
    _check_geometry(pd.read_csv(out / "metadata.csv"), geometry)


def test_station_list_formats_synthetic(tmp_path):
    (tmp_path / "real.dat").write_text(
        "13.35 42.97 XO AM05 EHZ 0.464\n12.76 42.57 IV ARRO EHZ 0.253\n"
    )
    (tmp_path / "gamma.tsv").write_text(
        "station\tlongitude\tlatitude\televation(m)\tunit\n"
        "CI.CCC..BH\t-117.365\t35.525\t670.0\tm/s\nCI.CCC..HH\t-117.365\t35.525\t670.0\tm/s\n"
    )
    (tmp_path / "s.json").write_text(
        '{"YOT": {"network": "CM", "coords": [3.98, -76.34, 1040.0], "channels": ["HHZ"]}}'
    )
    (tmp_path / "ice.csv").write_text(
        "network,station,latitude,longitude,elevation_m\nZ7,DYJN,64.68,-17.13,1381\n"
    )
    (tmp_path / "wus.csv").write_text(
        "id,network_code,station_code,location_code,channels,latitude,longitude,elevation,start_date,end_date\n"
        "CI.A.,CI,A,,HH,35.0,-117.0,100.0,2000.0,2005.0\nCI.A.,CI,A,,HN,35.0,-117.0,100.0,2004.0,2010.0\n"
    )
    italy = load_station_list(tmp_path / "real.dat")
    assert italy["station"].tolist() == ["AM05", "ARRO"]
    assert italy["latitude"].iloc[0] == pytest.approx(42.97)
    assert italy["longitude"].iloc[0] == pytest.approx(13.35)
    assert italy["elevation"].iloc[0] == pytest.approx(464.0)
    gamma = load_station_list(tmp_path / "gamma.tsv")
    assert gamma[["network", "station"]].values.tolist() == [["CI", "CCC"]]
    assert gamma["elevation"].iloc[0] == 670.0
    js = load_station_list(tmp_path / "s.json")
    assert js.iloc[0][["network", "station", "latitude", "longitude", "elevation"]].tolist() == [
        "CM",
        "YOT",
        3.98,
        -76.34,
        1040.0,
    ]
    assert load_station_list(tmp_path / "ice.csv")["elevation"].iloc[0] == 1381
    wus = load_station_list(tmp_path / "wus.csv")
    assert (
        len(wus) == 1 and wus["start_date"].iloc[0] == 2000.0 and wus["end_date"].iloc[0] == 2010.0
    )


@pytest.mark.parametrize(
    "path, n, lat_range",
    [
        ("stations/western_us_stations.csv", 20315, (30, 50)),
        ("stations/ridgecrest_stations.tsv", 23, (35, 36.5)),
        ("stations/central_italy_stations_2016.dat", 60, (41.5, 44)),
        ("events/iceland_qm_2014-08-24/stations.csv", 12, (64, 65.5)),
        ("continuous/hengill_2018-12-30/stations.csv", 20, (63.8, 64.3)),
        ("continuous/colombia_2019-12-24/stations/stations.json", 8, (1, 6)),
        ("continuous/colombia_2019-12-24/stations/inv.xml", 8, (1, 6)),
        ("events/gmprocess_multi/hv70907436", 6, (18.5, 20.5)),
        ("events/gmprocess_multi/nc51194936", 3, (37, 42)),
    ],
)
def test_station_list_loaders_read_real_formats(shared, path, n, lat_range):
    frame = load_station_list(shared / path)
    assert len(frame) == n
    assert frame["latitude"].between(*lat_range).all()
    assert frame[["network", "station"]].duplicated().sum() == 0
    assert frame["elevation"].between(-1500, 8100).all()  # metres (a few western-US rows are odd)
    assert frame["elevation"].median() > 50  # also from the km-valued .dat


@pytest.mark.parametrize(
    "path",
    [
        "datasets/stead50",
        "datasets/ncedc154/metadata.csv",
        "continuous/pnw_2022-02-06/PB.B204..EHZ.mseed",
        "continuous/ridgecrest_2019-07-06T08/CI.WNM..EHZ.mseed",
        "events/iceland_qm_2014-08-24/benchmark/20140824000141300.mseed",
        "continuous/colombia_2019-12-24/waveforms/CHI/CM.CHI.00.HHE__20191224T225959Z__20191225T005959Z.mseed",
    ],
)
def test_guard_refuses_evaluation_paths(path):
    name = next(r.name for r in EVALUATION_RECORDS if any(m in path for m in r.markers))
    with pytest.raises(ValueError, match=name.split()[0]):
        check_not_evaluation(f"/somewhere/shared/data/{path}")


def test_guard_splits_colombia_by_time():
    folder = "/x/continuous/colombia_2019-12-24/waveforms/PRA/"
    check_not_evaluation(folder + "CM.PRA.00.HHZ__20191224T190000Z__20191224T210000Z.mseed")
    check_not_evaluation(folder + "CM.PRA.00.HHZ__20191224T210000Z__20191224T230000Z.mseed")
    with pytest.raises(ValueError, match="colombia"):
        check_not_evaluation(folder + "CM.PRA.00.HHZ__20191224T230000Z__20191225T010000Z.mseed")
    with pytest.raises(ValueError, match="colombia"):  # a time range that reaches 23:00
        check_not_evaluation(
            folder + "CM.PRA.00.HHZ__20191224T210000Z__20191224T230000Z.mseed",
            "2019-12-24T22:00:00",
            "2019-12-24T23:00:00.01",
        )
    with pytest.raises(ValueError, match="time range"):  # span unknown
        check_not_evaluation("/x/continuous/colombia_2019-12-24/waveforms/PRA/all.mseed")
    # stream ids with their spans
    check_not_evaluation("CM.YOT.00.HHZ", "2019-12-24T21:00:00", "2019-12-24T22:59:59.999")
    for start in ("2019-12-24T23:00:00", "2019-12-24T23:30:00", "2019-12-25T00:59:00"):
        with pytest.raises(ValueError, match="colombia"):
            check_not_evaluation("CM.YOT.00.HHZ", start, obspy.UTCDateTime(start) + 10)
    check_not_evaluation("CM.YOT.00.HHZ", "2019-12-25T01:00:00", "2019-12-25T02:00:00")
    with pytest.raises(ValueError, match="ridgecrest"):
        check_not_evaluation("CI.WNM..EHZ", "2019-07-06T08:30:00", "2019-07-06T08:31:00")
    with pytest.raises(ValueError, match="iceland"):
        check_not_evaluation("Z7.DYJN..HHZ", "2014-08-24T00:05:00", "2014-08-24T00:06:00")
    with pytest.raises(ValueError, match="pnw"):
        check_not_evaluation("UW.SHW..HHZ", "2022-02-06T01:00:00", "2022-02-06T01:01:00")
    check_not_evaluation("CI.WNM..EHZ", "2019-07-07T08:30:00", "2019-07-07T08:31:00")
    check_not_evaluation("/x/continuous/hengill_2018-12-30/waveforms/2C.BIT06..HHZ__a.mseed")


def test_default_records_and_noise_avoid_evaluation(shared):
    records = default_training_records(shared)
    names = [r.name for r in records]
    assert {"colombia_2019-12-24T19-23", "hengill_2018-12-30T03", "gmprocess_hv70907436"} <= set(
        names
    )
    colombia = records[names.index("colombia_2019-12-24T19-23")]
    assert colombia.end == obspy.UTCDateTime("2019-12-24T23:00:00")
    assert len({Path(f).parent.name for f in colombia.waveforms}) == 7  # CLEJA left out
    for record in records:
        for f in record.waveforms:
            check_not_evaluation(f, record.start, record.end)
            assert "2259" not in Path(f).name.split("__")[1]  # no file starting at/after 22:59:59
    for path in default_noise_paths(shared):
        check_not_evaluation(path)
        assert "iceland_qm" not in path and "pnw" not in path and "ridgecrest" not in path


def test_default_lists_and_records_follow_the_layout(tmp_path):
    """The data tools read the parts of the layout they are given, not a fixed folder: a part moved elsewhere
    is found there, and an empty root gives nothing."""
    assert default_station_lists(tmp_path) == {}
    assert default_noise_paths(tmp_path) == []
    assert [r.name for r in default_training_records(tmp_path) if "coal" not in r.name] == []
    moved = tmp_path / "elsewhere" / "my_hengill"
    (moved / "waveforms").mkdir(parents=True)
    pd.DataFrame(
        {"network": ["2C"], "station": ["BIT06"], "latitude": [64.0], "longitude": [-21.3]}
    ).to_csv(moved / "stations.csv", index=False)
    for comp in "ZNE":
        (
            moved / "waveforms" / f"2C.BIT06..HH{comp}__20181230T030000Z__20181230T030500Z.mseed"
        ).touch()
    layout = DataLayout.from_root(tmp_path / "root", hengill=moved)
    assert default_station_lists(layout) == {"hengill": moved / "stations.csv"}
    assert default_noise_paths(layout) == [str(moved / "waveforms" / "2C.BIT06..HH?__*.mseed")]
    records = [r for r in default_training_records(layout) if "coal" not in r.name]
    assert [r.name for r in records] == ["hengill_2018-12-30T03"]
    assert records[0].stations == moved / "stations.csv"


def test_data_layer_imports_no_bench_module():
    """No import circle between data/ and bench/: the training-data tools load without the benchmark harness,
    and the classical chain without the simulator."""
    import subprocess
    import sys

    code = (
        "import sys; import sine_seisbench.data.realdata, sine_seisbench.data.simulate, "
        "sine_seisbench.chain; "
        "print(sorted(m for m in sys.modules if m.startswith('sine_seisbench.bench')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    code = "import sys; import sine_seisbench.chain; print('sine_seisbench.data.simulate' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def _location(residuals: dict) -> Location:
    return Location(35.0, -117.0, 8.0, obspy.UTCDateTime(0), 0.1, len(residuals), residuals)


def test_confirm_picks_keeps_only_stations_that_agree():
    t = obspy.UTCDateTime(100)
    picks = [
        ("XX.A.", "P", t, 1.0),
        ("XX.A.", "S", t + 5, 1.0),
        ("XX.B.", "P", t + 1, 1.0),
        ("XX.B.", "S", t + 6, 1.0),
        ("XX.C.", "P", t + 2, 1.0),
        ("XX.D.", "P", t + 3, 1.0),
        ("XX.E.", "P", t + 4, 1.0),
        ("XX.E.", "S", t + 9, 1.0),
    ]
    residuals = {
        ("XX.A.", "P"): 0.1,
        ("XX.A.", "S"): 0.5,
        ("XX.B.", "P"): -0.2,
        ("XX.B.", "S"): 1.5,  # S beyond 1 s: dropped
        ("XX.C.", "P"): 0.3,
        ("XX.D.", "P"): 0.05,
        ("XX.E.", "P"): 0.9,  # P beyond 0.5 s: the station is not confirmed, its S neither
        ("XX.E.", "S"): 0.2,
    }
    kept = confirm_picks(picks, _location(residuals), min_stations=3)
    assert kept == {
        "XX.A.": {"P": t, "S": t + 5},
        "XX.B.": {"P": t + 1},
        "XX.C.": {"P": t + 2},
        "XX.D.": {"P": t + 3},
    }
    assert confirm_picks(picks, _location(residuals), min_stations=5) == {}
    residuals.update({("XX.C.", "P"): 0.6, ("XX.D.", "P"): -0.7})
    assert confirm_picks(picks, _location(residuals), min_stations=3) == {}  # only A and B agree


class _FakeTeacher:
    """A teacher whose picks are given."""

    def __init__(self, picks: list[sbu.Pick]) -> None:
        self.picks = picks

    def classify(self, stream, **kwargs):
        return sbu.ClassifyOutput("fake", picks=sbu.PickList(self.picks))


def _pick(sta: str, phase: str, t: obspy.UTCDateTime) -> sbu.Pick:
    return sbu.Pick(
        f"XX.{sta}.", start_time=t - 0.1, end_time=t + 0.1, peak_time=t, peak_value=0.9, phase=phase
    )


def _synthetic_case(tt):
    """Six stations with noise; an event seen (P and S) at S01-S05, an inconsistent P at S06 within the
    association window, and an isolated P at S01 much later."""
    stations = _stations(6, 35.7, -117.6, 0.25, 5, "XX")
    stations["station"] = [f"S{i:02d}" for i in range(1, 7)]
    stations["elevation"] = 0.0
    t0 = obspy.UTCDateTime("2021-03-01T00:00:00")
    origin = t0 + 50.0
    lat, lon, depth = 35.72, -117.58, 8.0
    dist = _haversine_km(lat, lon, stations["latitude"], stations["longitude"])
    times = tt(dist, depth)
    picks = []
    for i, sta in enumerate(stations["station"][:5]):
        picks.append(_pick(sta, "P", origin + float(times["tp"][i])))
        picks.append(_pick(sta, "S", origin + float(times["ts"][i])))
    picks.append(_pick("S06", "P", origin + float(times["tp"][5]) + 3.0))  # does not fit the event
    picks.append(_pick("S01", "P", t0 + 100.0))  # isolated
    rng = np.random.default_rng(0)
    stream = obspy.Stream(
        [
            obspy.Trace(
                rng.standard_normal(12000).astype(np.float64),
                header=dict(
                    network="XX",
                    station=sta,
                    location="",
                    channel=f"HH{c}",
                    sampling_rate=100.0,
                    starttime=t0,
                ),
            )
            for sta in stations["station"]
            for c in "ZNE"
        ]
    )
    return stations, stream, picks, t0, origin


def test_locate_and_confirm_rejects_inconsistent_and_isolated_picks(tt):
    stations, _, picks, _, origin = _synthetic_case(tt)
    from sine_seisbench.geometry import Coordinates

    coords = {
        f"XX.{r.station}.": Coordinates(r.latitude, r.longitude, r.elevation)
        for r in stations.itertuples()
    }
    events = locate_and_confirm(picks, coords, tt, min_stations=3)
    assert len(events) == 1
    ev = events[0]
    assert sorted(ev.picks) == [f"XX.S0{i}." for i in range(1, 6)]
    assert all(set(p) == {"P", "S"} for p in ev.picks.values())
    assert abs(ev.location.origin_time - origin) < 0.3


def test_build_real_dataset_labels_only_confirmed_picks(tmp_path, tt):
    stations, stream, picks, t0, _ = _synthetic_case(tt)
    stats = build_real_dataset(tmp_path / "real", [(stream, stations)], _FakeTeacher(picks), tt=tt)
    meta = pd.read_csv(tmp_path / "real" / "metadata.csv")
    assert stats["windows"] == 2 and stats["pseudo_windows"] == 1 and stats["none_windows"] == 1
    assert stats["labels_p"] == 5 and stats["labels_s"] == 5
    assert len(meta) == 12 and (meta.groupby("source_id").size() == 6).all()
    first = meta[meta["source_id"] == "record00_w00000"]
    assert (first["trace_label_source"] == "none").all()
    assert (
        first[["trace_p_arrival_sample", "trace_s_arrival_sample", "source_latitude_deg"]]
        .isna()
        .all()
        .all()
    )
    second = meta[meta["source_id"] == "record00_w00001"].set_index("station_code")
    assert (second["trace_label_source"] == "pseudo").all()
    w_start = t0 + 45.0
    for p in picks[:10]:
        sta = p.trace_id.split(".")[1]
        col = "trace_p_arrival_sample" if p.phase == "P" else "trace_s_arrival_sample"
        assert second.loc[sta, col] == pytest.approx((p.peak_time - w_start) * 100, abs=0.01)
    assert np.isnan(second.loc["S06", "trace_p_arrival_sample"])
    assert not second.loc["S06", "trace_pseudo_confirmed"]
    assert second.loc["S06", "trace_teacher_p_picks"] == 1
    assert (
        second.loc["S01", "trace_teacher_p_picks"] == 1
    )  # the isolated pick at 100 s is in this window
    assert second["source_latitude_deg"].nunique() == 1
    assert (meta["trace_sampling_rate_hz"] == 100).all() and (meta["split"] == "train").all()
    import seisbench.data as sbd

    ds = sbd.WaveformDataset(tmp_path / "real", component_order="ZNE", sampling_rate=100)
    assert ds.get_waveforms(0).shape == (3, 4500)


@pytest.fixture
def phasenet(shared):
    src = shared / "seisbench_cache" / "models" / "v3" / "phasenet"
    if not src.is_dir():
        pytest.skip(f"{src} not found: PhaseNet weights absent")
    shutil.copytree(src, Path(seisbench.cache_model_root) / "phasenet", dirs_exist_ok=True)
    import seisbench.models as sbm

    return sbm.PhaseNet.from_pretrained("original").eval()


def test_phasenet_pseudo_labels_on_hawaii_event(shared, phasenet, tmp_path, tt):
    record = next(r for r in default_training_records(shared) if r.name == "gmprocess_hv70907436")
    build_real_dataset(tmp_path / "real", [record], phasenet, tt=tt)
    meta = pd.read_csv(tmp_path / "real" / "metadata.csv")
    assert meta["source_id"].nunique() == 10
    assert meta["trace_calibrated"].all()
    pseudo = meta[meta["trace_label_source"] == "pseudo"]
    for _, group in pseudo.groupby("source_id"):
        assert group["trace_pseudo_confirmed"].sum() >= 3
        assert group.loc[~group["trace_pseudo_confirmed"], "trace_p_arrival_sample"].isna().all()
    none = meta[meta["trace_label_source"] == "none"]
    assert none[["trace_p_arrival_sample", "trace_s_arrival_sample"]].isna().all().all()
    # the Mw 5.3 mainshock (ComCat: 03:09:02, 19.742 N 155.791 W) is found and located
    main = pseudo[pseudo["source_id"] == "gmprocess_hv70907436_w00000"]
    assert len(main)
    assert (
        abs(
            obspy.UTCDateTime(main["source_origin_time"].iloc[0])
            - obspy.UTCDateTime("2019-04-14T03:09:02")
        )
        < 2
    )
    d = _haversine_km(
        19.742,
        -155.791,
        main["source_latitude_deg"].iloc[:1],
        main["source_longitude_deg"].iloc[:1],
    )
    assert d[0] < 25
