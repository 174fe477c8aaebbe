"""sine-seisbench: the SINE multi-station earthquake monitoring network as a SeisBench model."""

from __future__ import annotations

from .geometry import GeographicGroupingHelper, StationTable
from .model import DEFAULT_WEIGHTS, SINE

__all__ = ["DEFAULT_WEIGHTS", "SINE", "GeographicGroupingHelper", "StationTable"]
__version__ = "0.1.0"
