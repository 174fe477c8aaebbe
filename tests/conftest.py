from __future__ import annotations

import logging
from pathlib import Path

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
