"""Where the benchmark and training tools find their real data: one root folder the caller names, and the
documented layout below it.

The package names no data folder of its own: :func:`sine_seisbench.bench.harness.run_benchmark`, the stages of
:mod:`sine_seisbench.bench`, :func:`~sine_seisbench.data.simulate.default_station_lists`,
:func:`~sine_seisbench.data.simulate.default_noise_paths` and
:func:`~sine_seisbench.data.realdata.default_training_records` take a :class:`DataLayout` (or a root folder,
read with :data:`LAYOUT`). Every named path can be moved on its own::

    DataLayout.from_root("/data/bench", pnw="/elsewhere/pnw_2022-02-06")

The layout (paths relative to the root; a part that is absent only skips the stages that read it):

========================== ============================================= ==============================================
name                       relative path                                 what
========================== ============================================= ==============================================
``datasets``               ``datasets/``                                 labelled SeisBench datasets (``*/metadata.csv``)
``seisbench_cache``        ``seisbench_cache/``                          SeisBench cache with published weights
                                                                         (``models/v3/...``), copied for offline use
``western_us_stations``    ``stations/western_us_stations.csv``          stations of the PNW record
``ridgecrest_stations``    ``stations/ridgecrest_stations.tsv``          CI/PB/NP stations around Ridgecrest
``central_italy_stations`` ``stations/central_italy_stations_2016.dat`` REAL's central-Italy station list
``pnw``                    ``continuous/pnw_2022-02-06/``                PNW day with manual picks
``ridgecrest``             ``continuous/ridgecrest_2019-07-06T08/``      Ridgecrest hour, ComCat catalogue, PhaseNO
``colombia``               ``continuous/colombia_2019-12-24/``           Colombia records (``waveforms/``,
                                                                         ``stations/``, ``automatic/``)
``hengill``                ``continuous/hengill_2018-12-30/``            Hengill records (training/noise only)
``iceland``                ``events/iceland_qm_2014-08-24/``             QuakeMigrate's Iceland events
``gmprocess``              ``events/gmprocess_multi/``                   gmprocess events with StationXML
========================== ============================================= ==============================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

#: The documented layout of the benchmark data: name → path relative to the root folder.
LAYOUT: dict[str, str] = {
    "datasets": "datasets",
    "seisbench_cache": "seisbench_cache",
    "western_us_stations": "stations/western_us_stations.csv",
    "ridgecrest_stations": "stations/ridgecrest_stations.tsv",
    "central_italy_stations": "stations/central_italy_stations_2016.dat",
    "pnw": "continuous/pnw_2022-02-06",
    "ridgecrest": "continuous/ridgecrest_2019-07-06T08",
    "colombia": "continuous/colombia_2019-12-24",
    "hengill": "continuous/hengill_2018-12-30",
    "iceland": "events/iceland_qm_2014-08-24",
    "gmprocess": "events/gmprocess_multi",
}


@dataclass(frozen=True)
class DataLayout:
    """The real data of the benchmark and training tools: a root folder and a path for each named part of
    :data:`LAYOUT`. Build it with :meth:`from_root` (or :func:`as_layout`); no field has a default folder."""

    root: Path
    datasets: Path
    seisbench_cache: Path
    western_us_stations: Path
    ridgecrest_stations: Path
    central_italy_stations: Path
    pnw: Path
    ridgecrest: Path
    colombia: Path
    hengill: Path
    iceland: Path
    gmprocess: Path

    @classmethod
    def from_root(
        cls, root: str | os.PathLike, **overrides: str | os.PathLike | None
    ) -> DataLayout:
        """The layout under ``root``; ``overrides`` (names of :data:`LAYOUT`) put single parts elsewhere (paths
        as given, not relative to ``root``; None keeps the layout's path).

        :raises TypeError: For a name that is not part of the layout.
        """
        unknown = sorted(set(overrides) - set(LAYOUT))
        if unknown:
            raise TypeError(
                f"Unknown part(s) of the data layout: {', '.join(unknown)}; the parts are "
                f"{', '.join(LAYOUT)}."
            )
        root = Path(root)
        paths = {
            name: Path(overrides[name]) if overrides.get(name) is not None else root / rel
            for name, rel in LAYOUT.items()
        }
        return cls(root=root, **paths)

    def parts(self) -> dict[str, Path]:
        """Name → path of every part (the root left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "root"}


def as_layout(data: DataLayout | str | os.PathLike) -> DataLayout:
    """``data`` itself when it is a :class:`DataLayout`, else the layout under the root folder ``data``.

    :raises TypeError: For None (the tools name no default data folder).
    """
    if isinstance(data, DataLayout):
        return data
    if data is None:
        raise TypeError(
            "No data folder given: pass the root of the benchmark data (see sine_seisbench.data.layout) or a "
            "DataLayout."
        )
    return DataLayout.from_root(data)


__all__ = ["LAYOUT", "DataLayout", "as_layout"]
