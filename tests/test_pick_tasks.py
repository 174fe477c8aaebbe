from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import seisbench.data as sbd
import seisbench.models as sbm
import torch

from sine_seisbench import SINE
from sine_seisbench.bench.pick_tasks import (
    curves,
    detection_metrics,
    evaluate_pick_tasks,
    format_table,
    mcc,
    onset_metrics,
    phase_metrics,
    roc_auc,
    split_traces,
    window_scores,
)
from sine_seisbench.data.fixture import DATA_FORMAT, write_event_dataset


def _bump(n: int, centre: float, height: float = 1.0, width: float = 10.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((np.arange(n) - centre) / width) ** 2)


def _write_noise_dataset(path: Path, n: int = 4, samples: int = 6000) -> Path:
    """Noise-only traces (no arrival columns), alternately dev and test."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with sbd.WaveformDataWriter(path / "metadata.csv", path / "waveforms.hdf5") as writer:
        writer.data_format = dict(DATA_FORMAT)
        for i in range(n):
            meta = {
                "station_network_code": "CI",
                "station_code": f"N{i:02d}",
                "trace_sampling_rate_hz": 100.0,
                "split": "dev" if i % 2 == 0 else "test",
            }
            writer.add_trace(meta, rng.normal(0, 1.0, size=(3, samples)).astype(np.float32))
    return path


def _open(path: Path) -> sbd.WaveformDataset:
    return sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)


@pytest.fixture(scope="module")
def event_path(tmp_path_factory) -> Path:
    return write_event_dataset(
        tmp_path_factory.mktemp("pick") / "events", n_events=6, n_stations=3, samples=6000
    )


@pytest.fixture(scope="module")
def mixed_dataset(event_path, tmp_path_factory):
    noise = _write_noise_dataset(tmp_path_factory.mktemp("pick") / "noise")
    return sbd.MultiWaveformDataset([_open(event_path), _open(noise)])


# ---------------------------------------------------------------------------------------------------------------
# Metrics on hand-made curves
# ---------------------------------------------------------------------------------------------------------------
def test_perfect_detector_has_auc_and_f1_one():
    n, length = 3001, 3000
    is_eq = np.array([True, False, True, False, True, False, False, True])
    det = np.stack([_bump(n, 1500, 0.95 if e else 0.05) for e in is_eq])
    noise = 1 - det
    borders = [(0, length)] * len(is_eq)
    with_det = window_scores({"P": det, "S": det, "noise": noise, "detection": det}, borders)
    without_det = window_scores({"P": det, "S": det * 0, "noise": noise}, borders)
    assert np.allclose(with_det["detection"], without_det["detection"])  # max(1 - noise)
    res = detection_metrics(
        is_eq[:4], with_det["detection"][:4], is_eq[4:], with_det["detection"][4:]
    )
    assert res["auc"] == 1.0 and res["f1"] == 1.0 and res["dev"]["f1"] == 1.0
    assert res["precision"] == res["recall"] == 1.0
    assert (res["n_earthquake"], res["n_noise"]) == (2, 2)
    assert 0.05 < res["threshold"] < 0.95


def test_auc_of_reversed_and_constant_scores():
    y = [True, False, True, False]
    assert roc_auc(y, [0.1, 0.9, 0.2, 0.8]) == 0.0
    assert roc_auc(y, [0.5] * 4) == 0.5
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_detection_metrics_with_one_class_are_nan_but_counted():
    res = detection_metrics([True, True], [0.9, 0.2], [True], [0.7])
    assert math.isnan(res["auc"]) and math.isnan(res["f1"]) and math.isnan(res["threshold"])
    assert res["n_earthquake"] == 1 and res["n_noise"] == 0
    assert res["dev"]["earthquake_above_0.5"] == 0.5


def test_window_scores_read_only_inside_the_target_window():
    n = 6000
    p = _bump(n, 500, 0.9)[None] + _bump(n, 3000, 0.4)[None]  # a larger peak outside the window
    s = _bump(n, 3200, 0.2)[None]
    out = window_scores({"P": p, "S": s, "noise": 1 - p - s}, [(2500, 3500)])
    assert out["p_sample"][0] == 500  # 3000 - 2500
    assert out["s_sample"][0] == 700
    assert np.isclose(out["p_max"][0], 0.4, atol=1e-3)
    assert np.isclose(out["p_or_s"][0], out["p_max"][0] / out["s_max"][0])


def test_phase_identification_mcc():
    is_p = np.array([True, False, True, False, True, False])
    score = np.where(is_p, 3.0, 0.4) * np.linspace(1, 1.2, 6)
    res = phase_metrics(is_p[:2], score[:2], is_p[2:], score[2:])
    assert res["mcc"] == 1.0 and res["dev"]["mcc"] == 1.0
    assert (res["n_P"], res["n_S"]) == (2, 2)
    assert mcc([True, False], [False, True]) == -1.0
    assert mcc([True, True], [True, True]) == 0.0  # undefined -> 0


def test_perfect_onsets_and_constant_offset():
    sr, n = 100.0, 1001
    onsets = np.array([200.0, 431.0, 777.0])
    starts = np.array([1000, 5000, 40])
    for shift in (0, 25, -12):
        p = np.stack([_bump(n, o + shift, 0.8) for o in onsets])
        scores = window_scores({"P": p, "S": p * 0.1, "noise": 1 - p}, [(0, n)] * 3)
        picked = starts + scores["p_sample"]
        stats = onset_metrics((picked - (starts + onsets)) / sr)
        assert stats["n"] == 3
        assert stats["mean_s"] == pytest.approx(shift / sr)
        assert stats["rmse_s"] == pytest.approx(abs(shift) / sr)
        assert stats["std_s"] == stats["rmse_s"]
        assert stats["mae_s"] == pytest.approx(abs(shift) / sr)
    assert math.isnan(onset_metrics([])["mean_s"])


# ---------------------------------------------------------------------------------------------------------------
# Model adapter
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [lambda: SINE(max_stations=4), lambda: sbm.PhaseNet(), lambda: sbm.EQTransformer()],
    ids=["SINE", "PhaseNet", "EQTransformer"],
)
def test_curves_shapes(make):
    torch.manual_seed(0)
    model = make()
    rng = np.random.default_rng(0)
    for length in (1000, model.in_samples):
        out = curves(model, rng.normal(size=(2, 3, length)).astype(np.float32), batch_size=1)
        keys = {"P", "S", "noise"} | (
            {"detection"} if isinstance(model, sbm.EQTransformer) else set()
        )
        assert set(out) == keys
        for v in out.values():
            assert v.shape == (2, length)
            assert np.all(np.isfinite(v)) and v.min() >= 0 and v.max() <= 1 + 1e-6
    assert model.training  # restored
    with pytest.raises(ValueError):
        curves(model, np.zeros((1, 3, model.in_samples + 1), np.float32))


def test_curves_reorder_components_for_the_model():
    """A PhaseNet taking ENZ sees the same data as one taking ZNE with its first layer permuted."""
    torch.manual_seed(0)
    zne = sbm.PhaseNet(component_order="ZNE").eval()
    enz = sbm.PhaseNet(component_order="ENZ").eval()
    enz.load_state_dict(zne.state_dict())
    with torch.no_grad():
        enz.inc.weight.copy_(zne.inc.weight[:, [2, 1, 0]])
    x = np.random.default_rng(1).normal(size=(2, 3, 3001)).astype(np.float32)
    a, b = curves(zne, x), curves(enz, x)
    assert np.allclose(a["P"], b["P"], atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# End to end on a fixture
# ---------------------------------------------------------------------------------------------------------------
def test_hash_split_by_event_without_split_column(tmp_path):
    path = write_event_dataset(tmp_path / "nosplit", n_events=6, n_stations=2, with_split=False)
    ds = _open(path)
    split, source = split_traces(ds)
    assert "source_id" in source
    assert set(split) == {"dev", "test"}
    by_event = ds.metadata.groupby("source_id").apply(lambda m: set(split[m.index]))
    assert all(len(s) == 1 for s in by_event)  # an event lies in one split
    assert (split == "dev").sum() == (split == "test").sum()
    assert np.array_equal(split, split_traces(ds)[0])


def test_evaluate_pick_tasks_on_fixture_is_finite_and_deterministic(mixed_dataset):
    torch.manual_seed(0)
    model = sbm.PhaseNet()
    res = evaluate_pick_tasks(model, mixed_dataset, seed=3, progress=False)
    assert res["split"]["source"] == "split column"
    t1, t2, t3 = res["task1"], res["task2"], res["task3"]
    assert t1["n_earthquake"] > 0 and t1["n_noise"] > 0
    assert t1["dev"]["n_earthquake"] > 0 and t1["dev"]["n_noise"] > 0
    for value in (t1["auc"], t1["f1"], t1["threshold"], t2["mcc"], t2["threshold"]):
        assert math.isfinite(value)
    assert t2["n_P"] > 0 and t2["n_S"] > 0
    for phase in ("P", "S"):
        assert t3[phase]["n"] > 0
        for key in ("mean_s", "rmse_s", "mae_s"):
            assert math.isfinite(t3[phase][key])
        assert t3[phase]["mae_s"] <= t3[phase]["rmse_s"] + 1e-12
    again = evaluate_pick_tasks(model, mixed_dataset, seed=3, progress=False)
    assert again == res
    table = format_table({"PhaseNet (random) / fixture": res})
    assert table.splitlines()[2].startswith("| PhaseNet (random) / fixture |")


def test_evaluate_pick_tasks_sine_without_noise_room(event_path):
    torch.manual_seed(0)
    res = evaluate_pick_tasks(SINE(max_stations=4), _open(event_path), tasks=(1, 3), progress=False)
    assert "task2" not in res
    t1 = res["task1"]
    # P arrives 5-25 s into the fixture's traces: no 30 s of noise before it, and no noise traces
    assert t1["n_noise"] == 0 and t1["n_earthquake"] > 0
    assert (
        t1["traces_without_noise_room"] == res["split"]["dev_traces"] + res["split"]["test_traces"]
    )
    assert math.isnan(t1["auc"]) and "no noise windows" in t1["note"]
    assert math.isfinite(res["task3"]["P"]["mae_s"]) and math.isfinite(res["task3"]["S"]["mae_s"])
    assert "no noise windows" in format_table({"SINE": res})
