from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from sine_seisbench.cli import main
from sine_seisbench.data.legacy import import_sine, load_npy, read_ranges
from sine_seisbench.data.pipeline import build_generator, prepare_dataset

RANGES_INI = """
[data]
lat_min = 32.0
lat_max = 37.0
lon_min = 114.0
lon_max = 121.0
depth_min = 0.0
depth_max = 30.0
mag_min = 0.0
mag_max = 6.0
"""


def sine_event(rng: np.random.Generator, torch_values: bool) -> dict:
    """An event in the original SINE layout (5 stations x 1500 samples, vertical, min-max scaled)."""
    lat, lon_w, depth, mag = 35.5, 117.5, 8.0, 3.0  # lon_w: west-positive
    stations = np.array(
        [[35.5 + dy, 117.5 + dx, 0.5, 1.0] for dy, dx in rng.uniform(-0.4, 0.4, size=(5, 2))]
    )
    p = np.sort(rng.integers(0, 400, size=5))
    p[0] = 0
    waves = rng.random((5, 1500))
    label = np.array([(lat - 32) / 5, (lon_w - 114) / 7, depth / 30, mag / 6])
    d = {
        "input_data": waves,
        "station_list": stations,
        "P_point": p,
        "label": label,
        "input_data_fft": np.abs(np.fft.rfft(waves)),
        "edge_index": np.array([[0, 1], [1, 0]]),
        "edge_weight_dis": np.ones(2),
        "edge_weight_similar": np.ones(2),
        "P_point_label": np.zeros((5, 1500)),
    }
    if torch_values:
        d = {k: torch.as_tensor(v) for k, v in d.items()}
    return d


@pytest.fixture
def sine_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "ExampleData"
    folder.mkdir()
    for i in range(3):
        ev = sine_event(rng, torch_values=i % 2 == 0)
        np.save(folder / f"ev{i}.npy", np.array(ev, dtype=object), allow_pickle=True)
    # a training-set file: dict of event dicts
    train_set = {f"t{i}": sine_event(rng, torch_values=True) for i in range(2)}
    np.save(folder / "train_set.npy", np.array(train_set, dtype=object), allow_pickle=True)
    (tmp_path / "config.ini").write_text(RANGES_INI)
    return folder, tmp_path / "config.ini"


def test_ranges_are_read_loosely(tmp_path):
    p = tmp_path / "c.ini"
    p.write_text(
        "[norm]\nmin_lat=1\nmax_lat=2\nlongitude_min=3\nlongitude_max=4\ndep_min=0\ndep_max=9\nmag_min=0\nmag_max=7\n"
    )
    assert read_ranges(p) == {
        "latitude": (1, 2),
        "longitude": (3, 4),
        "depth": (0, 9),
        "magnitude": (0, 7),
    }
    p.write_text("[norm]\nlat_min=1\nlat_max=2\n")
    with pytest.raises(ValueError, match="longitude, depth, magnitude"):
        read_ranges(p)


def test_import_converts_events(sine_files, tmp_path):
    folder, ranges = sine_files
    ds = import_sine(folder, tmp_path / "out", read_ranges(ranges))
    assert len(ds) == 5 * 5
    meta = ds.metadata
    assert meta["source_id"].nunique() == 5
    np.testing.assert_allclose(meta["source_latitude_deg"], 35.5)
    np.testing.assert_allclose(meta["source_longitude_deg"], -117.5)  # west-positive undone
    np.testing.assert_allclose(meta["source_depth_km"], 8.0)
    np.testing.assert_allclose(meta["source_magnitude"], 3.0)
    assert (meta["station_longitude_deg"] < -116).all()  # stations flipped to match the event
    np.testing.assert_allclose(meta["station_elevation_m"], 500.0)
    waves, _ = ds.get_sample(0)
    assert waves.shape == (3, 1500) and not waves[1:].any()  # Z only; N, E zero
    # The imported set feeds the training pipeline
    prepared = prepare_dataset(ds)
    sample = build_generator(prepared, 8, 1001, training=False)[0]
    assert sample["station_mask"].sum() == 5 and sample["event_mask"].all()


def test_cli_import(sine_files, tmp_path, capsys):
    folder, ranges = sine_files
    assert (
        main(
            ["import-sine", str(folder / "ev0.npy"), str(tmp_path / "one"), "--ranges", str(ranges)]
        )
        == 0
    )
    assert "5 traces of 1 events" in capsys.readouterr().out


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_foreign_objects_are_refused(tmp_path):
    ev = sine_event(np.random.default_rng(1), torch_values=False)
    ev["payload"] = Evil()
    path = tmp_path / "evil.npy"
    np.save(path, np.array(ev, dtype=object), allow_pickle=True)
    with pytest.raises(
        pickle.UnpicklingError, match=r"evil\.npy: refusing to load 'posix\.system'"
    ):
        load_npy(path)


def test_plain_arrays_load_without_pickle(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.arange(5.0))
    np.testing.assert_array_equal(load_npy(path), np.arange(5.0))
