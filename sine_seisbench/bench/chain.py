"""The classical chain, now :mod:`sine_seisbench.chain` (the training-data tools use it too, and ``data``
must not depend on ``bench``); re-exported here for the benchmark modules and older imports."""

from __future__ import annotations

from ..chain import (
    ASSOCIATORS,
    SAMPLING_RATE,
    Location,
    PickTuple,
    associate_picks,
    associate_pyocto,
    elevation_correction,
    local_magnitude,
    locate,
    run_chain,
    surface_velocities,
    write_pyocto_table,
)

__all__ = [
    "ASSOCIATORS",
    "SAMPLING_RATE",
    "Location",
    "PickTuple",
    "associate_picks",
    "associate_pyocto",
    "elevation_correction",
    "local_magnitude",
    "locate",
    "run_chain",
    "surface_velocities",
    "write_pyocto_table",
]
