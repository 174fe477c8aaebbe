"""The default velocity model's travel-time table ships with the package: a first run builds nothing."""

from __future__ import annotations

import numpy as np

from sine_seisbench import traveltimes
from sine_seisbench.traveltimes import TravelTimes, shipped_tables


def test_default_table_is_shipped_and_used_without_a_build(tmp_path, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the default table was built instead of taken from the package")

    monkeypatch.setattr(traveltimes, "_build", no_build)
    tt = TravelTimes(cache_dir=tmp_path)
    # a change of the default model, the grid or _TABLE_VERSION changes the digest: ship the new table
    # (build it with TravelTimes() and copy tt_<digest>.npz and model_<digest>.npz to sine_seisbench/tables)
    assert f"tt_{tt.digest}.npz" in shipped_tables()
    assert (tmp_path / f"tt_{tt.digest}.npz").is_file()
    assert tt.taup_model.is_file()  # the simulator's TauP model comes with it
    t = tt.times(np.array([0.0, 50.0, 150.0]), np.array([10.0, 10.0, 10.0]), "P")
    assert np.all(np.diff(t) > 0) and 1.0 < t[0] < 3.0  # ~10 km at ~6 km/s
    assert not list(tmp_path.glob(".*.tmp"))

