"""sine-seisbench: the SINE multi-station earthquake monitoring network as a SeisBench model."""

from __future__ import annotations

from .geometry import GeographicGroupingHelper, StationTable
from .loader import load_weights
from .model import DEFAULT_WEIGHTS, SINE

__all__ = ["DEFAULT_WEIGHTS", "SINE", "GeographicGroupingHelper", "StationTable", "load_weights"]
__version__ = "0.1.0"
