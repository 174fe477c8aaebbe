from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

# SeisBench reads its cache root at import: point it at a folder the tests fill themselves (no downloads).
os.environ["SEISBENCH_CACHE_ROOT"] = tempfile.mkdtemp(prefix="sine-seisbench-cache-")
# Travel-time tables are built once per machine, not per test run (keyed by model and grid)
os.environ.setdefault(
    "SINE_TRAVELTIME_CACHE", str(Path(tempfile.gettempdir()) / "sine-seisbench-traveltimes")
)

# Threads that wait at the end of a parallel region sleep instead of spinning (read when torch loads OpenMP; the
# subprocesses and Dask workers the tests start inherit it). With spinning threads, one busy process beside a
# 2-thread torch process on a 2-core machine made the model's steps ~2-4x slower (the tests start such processes:
# CLI monitors, Dask workers, brokers); results are the same either way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED}: real-data test skipped")
    return SHARED


@pytest.fixture
def sb_log(caplog):
    """Captures SeisBench's logger (which SINE's warnings go through)."""
    caplog.set_level(logging.WARNING, logger="seisbench")
    logging.getLogger("seisbench").propagate = True
    return caplog


@pytest.fixture(scope="session")
def tt():
    """A coarse travel-time table (fast to build) in the project's SoCal TauP model."""
    from sine_seisbench.data.simulate import TravelTimes

    return TravelTimes(
        max_distance_km=120.0, max_depth_km=24.0, distance_step_km=5.0, depth_step_km=3.0
    )


@pytest.fixture
def offline(monkeypatch):
    """SeisBench's network access (listing and downloading remote weights) fails the test."""
    import seisbench.util

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(seisbench.util, "ls_webdav", no_network)
    monkeypatch.setattr(seisbench.util, "download_http", no_network)
