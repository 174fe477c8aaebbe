from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import seisbench

from sine_seisbench.bench import multistation as ms
from sine_seisbench.bench.pick_tasks import onset_metrics


def test_match_times_counts_and_residuals():
    picks = {"A": [10.0, 10.15, 20.0], "B": [5.0], "C": [1.0]}
    refs = {"A": [10.1, 30.0], "B": [5.3], "D": [7.0]}
    m = ms.match_times(picks, refs, 0.2)
    # A: ref 10.1 matched by 10.15 (nearest, +0.05); 30.0 unmatched. B: 5.0 is 0.3 s off. D: no pick.
    assert (m.references, m.matched_references, m.picks, m.unmatched_picks) == (4, 1, 5, 3)
    assert m.residuals == pytest.approx([0.05])
    assert m.recall == 0.25 and m.precision == pytest.approx(
        2 / 5
    )  # 10.0 and 10.15 both lie near 10.1
    empty = ms.match_times({}, {}, 0.2)
    assert math.isnan(empty.recall) and math.isnan(empty.precision)


def _curve(rows):
    return [
        dict(zip(("threshold", "unmatched_rate", "recall", "precision"), r, strict=True))
        for r in rows
    ]


def test_threshold_at_equal_false_rate_and_at_precision():
    curve = _curve(
        [
            (0.1, 0.50, 0.90, 0.60),
            (0.2, 0.12, 0.80, 0.85),
            (0.3, 0.10, 0.70, 0.90),
            (0.4, 0.04, 0.70, 0.95),
            (0.5, 0.00, 0.40, 1.00),
        ]
    )
    assert ms.threshold_at_false_rate(curve, 0.1)["threshold"] == 0.3
    assert ms.threshold_at_false_rate(curve, 0.05)["threshold"] == 0.4
    assert ms.threshold_at_false_rate(curve, -1.0) is None
    # highest recall with precision >= 0.9: 0.3 and 0.4 tie at 0.7, the lower threshold is kept
    assert ms.threshold_at_precision(curve, 0.9)["threshold"] == 0.3
    assert ms.threshold_at_precision(curve, 0.99)["threshold"] == 0.5
    assert ms.threshold_at_precision(curve, 1.01) is None


def test_sweep_on_constructed_annotations():
    """Two triangular P peaks (0.9 at 10 s, 0.5 at 20 s) on one station; the reference is at 10.05 s."""
    t = np.arange(3000) / 100.0
    data = np.clip(0.9 - np.abs(t - 10) * 2, 0, None) + np.clip(0.5 - np.abs(t - 20) * 2, 0, None)
    start = obspy.UTCDateTime(0)
    ann = obspy.Stream(
        [obspy.Trace(data.astype(np.float32), {"station": "S1", "channel": "X_P", "delta": 0.01})]
    )
    refs = {"P": {"w|.S1.": [10.05]}}
    curve = ms.sweep([("w|", ann, (start, start + 30))], refs, 0.2, ("P",), (0.3, 0.6, 0.95))
    rows = {r["threshold"]: r for r in curve["P"]}
    assert (rows[0.3]["picks"], rows[0.3]["matched"], rows[0.3]["unmatched"]) == (2, 1, 1)
    assert (rows[0.6]["picks"], rows[0.6]["matched"], rows[0.6]["unmatched"]) == (1, 1, 0)
    assert rows[0.6]["residual_mean_s"] == pytest.approx(-0.05)
    assert rows[0.95]["picks"] == 0 and rows[0.95]["recall"] == 0.0


def test_iceland_rows_use_the_common_false_rate():
    def row(thr, recall, rate):
        return dict(
            threshold=thr,
            references=10,
            recall=recall,
            picks=5,
            unmatched_rate=rate,
            residual_mean_s=0.0,
            residual_std_s=0.1,
        )

    curves = {
        "A": {
            "events": 2,
            "station_windows": 20,
            "P": [row(0.1, 0.9, 0.5), row(0.3, 0.8, 0.2), row(0.6, 0.5, 0.05)],
            "S": [row(0.1, 0.7, 0.1), row(0.3, 0.6, 0.0), row(0.6, 0.2, 0.0)],
        }
    }
    rows = {r["phase"]: r for r in ms.iceland_rows(curves, target_rate=0.1)}
    assert rows["P"]["threshold"] == 0.6 and rows["P"]["agreement"] == 0.5
    assert rows["S"]["threshold"] == 0.1 and rows["S"]["agreement"] == 0.7
    assert rows["P"]["agreement_at_0.3"] == 0.8


def test_onset_metrics_report_within_0_1_s():
    assert onset_metrics([0.05, -0.1, 0.2, -0.3])["within_0.1s"] == 0.5
    assert math.isnan(onset_metrics([])["within_0.1s"])


def _colombia_like(root: Path) -> Path:
    """Files named like the Colombia records: one wholly before 23:00, one straddling it."""
    folder = root / "continuous" / "colombia_2019-12-24"
    wf = folder / "waveforms" / "AAA"
    wf.mkdir(parents=True)
    for name, t0 in (
        ("CM.AAA.00.HHZ__20191224T205959Z__20191224T225959Z.mseed", "2019-12-24T20:59:59"),
        ("CM.AAA.00.HHZ__20191224T225959Z__20191225T005959Z.mseed", "2019-12-24T22:59:59"),
    ):
        tr = obspy.Trace(
            np.zeros(100 * 600, dtype=np.float32),
            {"network": "CM", "station": "AAA", "location": "00", "channel": "HHZ"},
        )
        tr.stats.sampling_rate = 100.0
        tr.stats.starttime = obspy.UTCDateTime(t0)
        tr.write(str(wf / name), format="MSEED")
    return folder


def test_colombia_never_reads_before_23h(tmp_path, monkeypatch):
    folder = _colombia_like(tmp_path)
    opened = []
    real_read = obspy.read

    def spy(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(ms.obspy, "read", spy)
    st = ms.read_colombia(folder, ms.COLOMBIA_START, ms.COLOMBIA_START + 120)
    assert opened == ["CM.AAA.00.HHZ__20191224T225959Z__20191225T005959Z.mseed"]
    assert len(st) == 1 and st[0].stats.starttime >= ms.COLOMBIA_START
    assert st[0].stats.starttime - ms.COLOMBIA_START < 0.01
    assert st[0].stats.endtime <= ms.COLOMBIA_START + 120
    with pytest.raises(ValueError, match="training data"):
        ms.read_colombia(folder, ms.COLOMBIA_START - 60, ms.COLOMBIA_START + 60)


def test_colombia_real_records_start_at_23h(shared):
    folder = shared / "continuous" / "colombia_2019-12-24"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: Colombia records absent")
    st = ms.read_colombia(folder, ms.COLOMBIA_START, ms.COLOMBIA_START + 60)
    assert len(st) == 21  # 7 HH stations x 3 components; CLEJA has no data after 23:00
    assert min(tr.stats.starttime for tr in st) >= ms.COLOMBIA_START
    refs = ms.seismonitor_references(
        folder / "automatic" / "picks" / "pnet_seismonitor_picks.csv",
        ms.COLOMBIA_START,
        ms.COLOMBIA_END,
    )
    times = [t for phase in refs.values() for ts in phase.values() for t in ts]
    assert times and min(times) >= ms.COLOMBIA_START.timestamp
    for phase in refs.values():
        for ts in phase.values():
            assert np.all(np.diff(ts) >= ms.DEDUPLICATE_S)


class _DictCache:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.store: dict[tuple[str, ...], object] = {}

    def get(self, *key: str, compute):
        self.calls.append(key)
        if key not in self.store:
            self.store[key] = compute()
        return self.store[key]


def test_stages_skip_without_data(tmp_path):
    messages: list[str] = []
    cache = _DictCache()
    assert ms.stage_iceland({}, tmp_path, cache, messages.append) == []
    assert ms.stage_colombia({}, tmp_path, cache, True, messages.append) == []
    assert (
        ms.stage_simulated_low_snr({}, tmp_path, cache, True, None, 0, tmp_path, messages.append)
        == []
    )
    assert len(messages) == 3 and all("skipped" in m for m in messages)
    assert not cache.calls


@pytest.fixture
def phasenet(shared, tmp_path, monkeypatch):
    src = shared / "seisbench_cache" / "models" / "v3" / "phasenet"
    if not src.is_dir():
        pytest.skip(f"{src} not found: PhaseNet weights absent")
    root = Path(seisbench.cache_model_root)
    shutil.copytree(src, root / "phasenet", dirs_exist_ok=True)
    import seisbench.models as sbm

    return sbm.PhaseNet.from_pretrained("original").eval()


def test_iceland_two_events_with_phasenet(shared, phasenet):
    folder = shared / "events" / "iceland_qm_2014-08-24"
    if not (folder / "picks.csv").exists():
        pytest.skip(f"{folder} not found: Iceland events absent")
    events = sorted(p.stem for p in (folder / "benchmark").glob("*.mseed"))[:2]
    result = ms.iceland_curves("PhaseNet", phasenet, folder, events, thresholds=(0.1, 0.3, 0.9))
    assert result["events"] == 2 and result["station_windows"] == 24
    qm = pd.read_csv(folder / "picks.csv", dtype={"event_id": str})
    own = qm[qm.event_id.isin(events)].groupby("phase").size()
    for phase in ("P", "S"):
        curve = result[phase]
        # every QuakeMigrate pick of the two events is a reference (plus neighbours' picks in the windows)
        assert curve[0]["references"] >= own[phase]
        recalls = [r["recall"] for r in curve]
        assert recalls == sorted(recalls, reverse=True)
        assert [r["unmatched"] for r in curve] == sorted(
            (r["unmatched"] for r in curve), reverse=True
        )
    p03 = result["P"][1]
    assert p03["recall"] > 0.5 and abs(p03["residual_mean_s"]) < 0.3
    rows = ms.iceland_rows({"PhaseNet": result}, target_rate=ms.ICELAND_FALSE_RATE)
    assert {r["phase"] for r in rows} == {"P", "S"}
    for r in rows:
        assert math.isnan(r["threshold"]) or r["unmatched_per_window"] <= ms.ICELAND_FALSE_RATE


def test_low_snr_events_have_low_snr_and_true_p_inside(shared, tt, tmp_path):
    noise = sorted((shared / "continuous" / "pnw_2022-02-06").glob("*.ms"))
    stations_path = shared / "stations" / "ridgecrest_stations.tsv"
    if not noise or not stations_path.exists():
        pytest.skip("PNW noise records or Ridgecrest stations absent")
    stations = ms.ridgecrest_stations(stations_path)
    assert len(stations) == 23 and not stations.duplicated(["network", "station"]).any()
    events = ms.low_snr_events(2, stations, tt, noise, tmp_path, seed=3)
    assert len(events) == 2
    for ev in events:
        assert len(ev.stream) == 3 * len(ev.p_times) == 3 * len(ev.inventory)
        for key, (t,) in ev.p_times.items():
            z = ev.stream.select(id=key + ".HHZ")[0]
            assert z.stats.starttime + 10 < obspy.UTCDateTime(t) < z.stats.endtime - 30
        assert all(ms.SIM_SNR_RANGE[0] <= s <= ms.SIM_SNR_RANGE[1] for s in ev.snr)
    summary = ms.snr_summary(events)
    assert summary["station_records"] == sum(len(e.snr) for e in events)
    assert ms.SIM_SNR_RANGE[0] <= summary["snr_median"] <= ms.SIM_SNR_RANGE[1]
