"""Station files as they come: one reader for ``--inventory``, ``inventory=`` and ``sine simulate --stations``.

:func:`read_stations` returns what SINE's ``inventory=`` takes (see :class:`~sine_seisbench.geometry.StationTable`):

* an :class:`obspy.Inventory` for StationXML and every other format :func:`obspy.read_inventory` reads
  (SC3ML, dataless SEED, RESP, FDSN station text ``#Network|Station|...``), responses included; a folder of
  StationXML files, a glob pattern or a list of files give one merged Inventory;
* a :class:`pandas.DataFrame` with the columns ``network``, ``station``, ``latitude``, ``longitude``,
  ``elevation`` (metres) and, where the file has them, ``location`` and ``channel`` (other columns are kept
  under their own names) for tables:

  - CSV, TSV, ``;``/``|``-separated or whitespace-separated text with a header. Column names are matched
    case-insensitively with the spellings of :data:`COLUMN_SPELLINGS` (``lat``/``latitude``/
    ``station_latitude_deg``, ``lon``/``long``/``longitude``, ``elev``/``elevation``/``elevation_m``/
    ``elevation(m)``, ``elev_km``/``elevation_km`` (converted to metres), ``net``/``network``/
    ``network_code``, ``sta``/``station``/``station_code``/``name``, ``loc``/``location``/``location_code``,
    ``cha``/``channel``/``channels``). A station column holding ``NET.STA[.LOC[.CHA]]`` ids (GaMMA's
    ``ridgecrest_stations.tsv``) gives the network (and location/channel) when there is no network column.
  - QuakeMigrate's station file (``Latitude,Longitude,Elevation,Name``): its elevation is in km.
  - REAL's headerless ``lon lat net sta chan elev_km`` lists (``central_italy_stations_2016.dat``).
  - JSON: SeisMonitor's ``{STA: {"network", "coords": [lat, lon, elev_m]}}`` or a list of records with the
    column spellings above.

A table without elevation gets 0 m with a warning that names the file. An empty location code (or ``--``)
becomes ``*``: those coordinates then hold for every location code of the station. A table without a network
column (QuakeMigrate's file) takes the networks from ``stream=`` (the waveforms' station codes) or
``network=``. A missing column or an unreadable file raises :class:`StationFileError` (a
:class:`~sine_seisbench.errors.UserError` and a :class:`ValueError`) that names the file, the column and the
accepted spellings.

:func:`fdsn_inventory` gets the Inventory of a stream's stations from an FDSN web service.
"""

from __future__ import annotations

import glob
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd

from .errors import MissingFileError, UserError, one_line

#: Columns of a station table (elevation in metres); ``location`` and ``channel`` are optional.
STATION_COLUMNS = ("network", "station", "latitude", "longitude", "elevation")

#: Accepted column names (compared lower-case, with spaces/hyphens as ``_`` and ``(m)``/``[m]`` as ``_m``),
#: in order of preference. ``elevation_km`` spellings are converted to metres.
COLUMN_SPELLINGS: dict[str, tuple[str, ...]] = {
    "network": ("network", "net", "network_code", "networkcode", "net_code", "nw"),
    "station": (
        "station",
        "sta",
        "station_code",
        "stationcode",
        "sta_code",
        "name",
        "station_name",
    ),
    "location": ("location", "loc", "location_code", "locationcode", "loc_code"),
    "channel": ("channel", "cha", "chan", "channel_code", "channels", "channel_codes"),
    "latitude": (
        "latitude",
        "lat",
        "station_latitude_deg",
        "station_latitude",
        "latitude_deg",
        "lat_deg",
        "stla",
    ),
    "longitude": (
        "longitude",
        "lon",
        "long",
        "lng",
        "station_longitude_deg",
        "station_longitude",
        "longitude_deg",
        "lon_deg",
        "stlo",
    ),
    "elevation": (
        "elevation",
        "elev",
        "elevation_m",
        "elev_m",
        "station_elevation_m",
        "station_elevation",
        "altitude",
        "altitude_m",
        "height",
        "height_m",
        "stel",
    ),
    "elevation_km": ("elevation_km", "elev_km", "station_elevation_km", "altitude_km", "height_km"),
}

#: Suffixes read as tables first (any other file goes to ObsPy first).
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".sta", ".lst", ".list", ".tab")


class StationFileError(UserError, ValueError):
    """A station file that cannot be read or lacks a needed column (one line naming the file and what to do)."""


# ----------------------------------------------------------------------------------------------------
# Column names
# ----------------------------------------------------------------------------------------------------
def _normalise(name: Any) -> str:
    text = str(name).strip().lstrip("#").strip().lower()
    text = re.sub(r"\s*[\(\[]\s*(\w+)\s*[\)\]]\s*$", r"_\1", text)  # elevation(m), Elevation [km]
    text = re.sub(r"[\s\-./]+", "_", text)
    return re.sub(r"_+", "_", text).strip("_")


def _spellings(column: str) -> str:
    return "/".join(COLUMN_SPELLINGS[column])


def _find(columns: Mapping[str, str], column: str) -> str | None:
    """The original name of the first column spelled as ``column``."""
    for spelling in COLUMN_SPELLINGS[column]:
        if spelling in columns:
            return columns[spelling]
    return None


def _missing(source: str, column: str, have: Iterable[Any], extra: str = "") -> StationFileError:
    return StationFileError(
        f"station file {source} has no {column} column (accepted spellings, any case: {_spellings(column)})"
        f"{extra}; its columns are {', '.join(map(str, have))}"
    )


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------
def _empty_code(value: Any) -> bool:
    """An empty network/location/channel code: None, NaN, ``""`` or ``--`` (SEED's blank location)."""
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or str(value).strip() in ("", "--")
    )


def _empty_number(value: Any) -> bool:
    """An empty number: as :func:`_empty_code`, or ``nan``/``none``/``null``/``na`` in any case."""
    return _empty_code(value) or str(value).strip().lower() in ("nan", "none", "null", "na", "n/a")


def _networks_from(stream: Any) -> dict[str, set[str]]:
    """Station code → network codes of the traces (a Stream, or ids ``NET.STA[.LOC.CHA]``)."""
    ids = [tr.id for tr in stream] if isinstance(stream, obspy.Stream) else [str(i) for i in stream]
    found: dict[str, set[str]] = {}
    for trace_id in ids:
        parts = trace_id.split(".")
        if len(parts) >= 2:
            found.setdefault(parts[1], set()).add(parts[0])
    return found


def normalise_table(
    frame: pd.DataFrame,
    source: str = "DataFrame",
    stream: obspy.Stream | Iterable[str] | None = None,
    network: str | None = None,
    elevation_unit: str | None = None,
) -> pd.DataFrame:
    """A station table with the canonical columns (see the module's docstring).

    :param frame: The table as read; its column names in any of the spellings of :data:`COLUMN_SPELLINGS`.
    :param source: The file it came from (for the messages).
    :param stream: Waveforms (or trace ids) whose station codes give the network when the table has none.
    :param network: The network of every row when the table has no network column.
    :param elevation_unit: ``"m"`` or ``"km"`` for an ``elevation`` column; None: metres unless the column is
                           spelled ``..._km``.
    :raises StationFileError: For a missing column or non-numeric coordinates.
    """
    frame = frame.copy()
    columns = {}
    for name in frame.columns:
        columns.setdefault(_normalise(name), name)
    renames: dict[str, str] = {}
    for column in ("network", "station", "location", "channel", "latitude", "longitude"):
        found = _find(columns, column)
        if found is not None:
            renames[found] = column
    elev_km = _find(columns, "elevation_km")
    elev_m = _find(columns, "elevation")
    if elev_m is not None and elevation_unit != "km":
        renames[elev_m] = "elevation"
        factor = 1.0
    elif elev_m is not None or elev_km is not None:
        renames[elev_m if elev_m is not None else elev_km] = "elevation"
        factor = 1000.0
    else:
        factor = None
    # a column left under a canonical name that another column is renamed to (e.g. both Network and network)
    targets = set(renames.values())
    frame = frame.drop(columns=[c for c in frame.columns if c in targets and c not in renames])
    frame = frame.rename(columns=renames)
    have = list(columns.values())
    if "station" not in frame.columns:
        raise _missing(source, "station", have)
    frame["station"] = frame["station"].astype(str).str.strip()
    if "network" not in frame.columns:
        parts = frame["station"].str.split(".")
        if len(frame) and parts.str.len().min() >= 2:  # NET.STA[.LOC[.CHA]]
            frame["network"] = parts.str[0]
            frame["station"] = parts.str[1]
            if "location" not in frame.columns and parts.str.len().min() >= 3:
                frame["location"] = parts.str[2]
            if "channel" not in frame.columns and parts.str.len().min() >= 4:
                frame["channel"] = parts.str[3]
        elif network is not None:
            frame["network"] = str(network)
        elif stream is not None:
            frame = _networks_from_stream(frame, stream, source)
        else:
            raise _missing(
                source,
                "network",
                have,
                " and its station codes are not NET.STA ids; add the column, or give the waveforms "
                "(sine reads the networks from their station codes) or network=",
            )
    for column in ("latitude", "longitude"):
        if column not in frame.columns:
            raise _missing(source, column, have)
    if factor is None:
        warnings.warn(
            f"station file {source} has no elevation column (accepted spellings: "
            f"{_spellings('elevation')}, or {_spellings('elevation_km')} in km); elevations set to 0 m",
            stacklevel=3,
        )
        frame["elevation"] = 0.0
        factor = 1.0
    for column in ("latitude", "longitude", "elevation"):
        blank = frame[column].map(_empty_number)
        values = pd.to_numeric(frame[column].where(~blank, np.nan), errors="coerce")
        bad = values.isna() & ~blank
        if bad.any():
            raise StationFileError(
                f"station file {source}: column {column} holds a non-number "
                f"({frame[column][bad].iloc[0]!r} in row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}); "
                "give decimal degrees and metres (or a ..._km elevation column)"
            )
        frame[column] = values.astype(float)
    frame["elevation"] = frame["elevation"] * factor
    no_coords = frame["latitude"].isna() | frame["longitude"].isna()
    if no_coords.any():
        warnings.warn(
            f"station file {source}: {int(no_coords.sum())} row(s) without latitude/longitude left out",
            stacklevel=3,
        )
        frame = frame[~no_coords]
    if frame["elevation"].isna().any():
        warnings.warn(
            f"station file {source}: {int(frame['elevation'].isna().sum())} row(s) without elevation set "
            "to 0 m",
            stacklevel=3,
        )
        frame["elevation"] = frame["elevation"].fillna(0.0)
    if (
        factor == 1.0
        and len(frame)
        and frame["elevation"].abs().max() < 10
        and frame["elevation"].any()
    ):
        warnings.warn(
            f"station file {source}: every elevation is below 10 m; if they are in km, name the column "
            "elevation_km",
            stacklevel=3,
        )
    frame["network"] = frame["network"].map(lambda v: "" if _empty_code(v) else str(v).strip())
    frame["station"] = frame["station"].astype(str).str.strip()
    if "location" in frame.columns:
        frame["location"] = frame["location"].map(
            lambda v: "*" if _empty_code(v) else str(v).strip()
        )
    if "channel" in frame.columns:
        frame["channel"] = frame["channel"].map(lambda v: "" if _empty_code(v) else str(v).strip())
    first = [c for c in (*STATION_COLUMNS, "location", "channel") if c in frame.columns]
    for column in frame.columns:  # other columns as read (text): numbers where every value is one
        if column not in first and not pd.api.types.is_numeric_dtype(frame[column]):
            try:
                frame[column] = pd.to_numeric(frame[column])
            except (ValueError, TypeError):
                pass
    return frame[first + [c for c in frame.columns if c not in first]].reset_index(drop=True)


def _networks_from_stream(frame: pd.DataFrame, stream: Any, source: str) -> pd.DataFrame:
    found = _networks_from(stream)
    ambiguous = sorted(s for s in frame["station"] if len(found.get(s, ())) > 1)
    if ambiguous:
        raise StationFileError(
            f"station file {source} has no network column and the waveforms hold station {ambiguous[0]} in "
            f"several networks ({', '.join(sorted(found[ambiguous[0]]))}); add a network column"
        )
    frame = frame[frame["station"].isin(found)].copy()
    frame["network"] = [next(iter(found[s])) for s in frame["station"]]
    return frame


def _read_text_table(path: Path, source: str) -> pd.DataFrame:
    """A delimited table with a header, REAL's headerless list, or a JSON station list."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise StationFileError(f"station file {source} is not a text table ({one_line(e)})") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise StationFileError(f"station file {source} is empty")
    if text.lstrip().startswith(("{", "[")):
        return _read_json(text, source)
    header = lines[0]
    tokens = header.split()
    try:
        float(tokens[0])
        headerless = True
    except ValueError:
        headerless = False
    if headerless:
        raw = pd.read_csv(
            path, sep=r"\s+", header=None, dtype=str, keep_default_na=False, engine="python"
        )
        if raw.shape[1] != 6:
            raise StationFileError(
                f"station file {source} has no header and {raw.shape[1]} columns; give a header line "
                f"(network, station, latitude, longitude, elevation) or REAL's six columns "
                "lon lat net sta chan elev_km"
            )
        return pd.DataFrame(
            {
                "network": raw[2],
                "station": raw[3],
                "channel": raw[4],
                "latitude": raw[1],
                "longitude": raw[0],
                "elevation_km": raw[5],
            }
        )
    if "\t" in header:
        sep = "\t"
    elif "," in header:
        sep = ","
    elif ";" in header:
        sep = ";"
    elif "|" in header:
        sep = "|"
    else:
        sep = r"\s+"
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            engine="python",
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except (ValueError, pd.errors.ParserError) as e:
        raise StationFileError(
            f"cannot read station file {source} as a table ({one_line(e)}); give CSV/TSV with a header line"
        ) from e
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_json(text: str, source: str) -> pd.DataFrame:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StationFileError(f"cannot read station file {source} as JSON ({one_line(e)})") from e
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "coords" in v for v in data.values())
    ):  # SeisMonitor: {STA: {"network", "coords": [lat, lon, elevation m], ...}}
        return pd.DataFrame(
            [
                {
                    "network": v.get("network", ""),
                    "station": k,
                    "latitude": v["coords"][0],
                    "longitude": v["coords"][1],
                    "elevation": v["coords"][2] if len(v["coords"]) > 2 else np.nan,
                }
                for k, v in data.items()
            ]
        )
    if isinstance(data, dict):  # {column: [values]} or {key: {column: value}}
        try:
            frame = pd.DataFrame(data)
            if frame.shape[0] and all(isinstance(v, dict) for v in data.values()):
                frame = frame.T
        except ValueError as e:
            raise StationFileError(
                f"station file {source}: JSON layout not understood ({one_line(e)})"
            ) from e
    elif isinstance(data, list):
        frame = pd.DataFrame(data)
    else:
        raise StationFileError(
            f"station file {source}: JSON layout not understood; give a list of records"
        )
    return frame


def _is_quakemigrate(frame: pd.DataFrame) -> bool:
    """QuakeMigrate's station file: exactly Latitude, Longitude, Elevation (km), Name."""
    return sorted(_normalise(c) for c in frame.columns) == [
        "elevation",
        "latitude",
        "longitude",
        "name",
    ]


# ----------------------------------------------------------------------------------------------------
# Inventories
# ----------------------------------------------------------------------------------------------------
def _read_obspy(path: Path, source: str) -> obspy.Inventory:
    try:
        return obspy.read_inventory(str(path))
    except Exception as e:  # noqa: BLE001 - ObsPy raises many types for a file it cannot read
        raise StationFileError(
            f"cannot read station file {source} ({one_line(e)}); give StationXML (or another format ObsPy's "
            "read_inventory reads) or a CSV/TSV table with network, station, latitude, longitude, elevation"
        ) from e


def _looks_like_xml(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def _looks_like_obspy_text(path: Path) -> bool:
    """FDSN station text (``#Network|Station|...``)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"#network", b"# network")) and b"|" in head


def _expand(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The files of a path, a folder (its ``*.xml``), a glob pattern or a list of them."""
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in _expand(s)]
    text = str(source)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)))
        if not files:
            raise MissingFileError(f"no station file matches {text}; check the pattern")
        return files
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
        if not files:
            raise StationFileError(f"station folder {text} holds no StationXML files (*.xml)")
        return files
    if not path.exists():
        raise MissingFileError(f"station file {text} does not exist; check the path")
    if not os.access(path, os.R_OK):
        raise StationFileError(
            f"station file {text} cannot be read (permission denied); check its permissions"
        )
    return [path]


def read_stations(
    source: str | os.PathLike | Sequence[str | os.PathLike] | obspy.Inventory | pd.DataFrame,
    *,
    stream: obspy.Stream | Iterable[str] | None = None,
    network: str | None = None,
    elevation_unit: str | None = None,
) -> obspy.Inventory | pd.DataFrame:
    """Station coordinates (and responses, where the file has them) in the shape SINE's ``inventory=`` takes.

    :param source: A station file (see the module's docstring for the formats), a folder of StationXML files, a
                   glob pattern, a list of files, an Inventory (returned as it is) or a DataFrame (its columns
                   normalised).
    :param stream: Waveforms (or trace ids) whose station codes give the networks of a table without a network
                   column; stations of the file without data are then left out.
    :param network: The network of every row of a table without a network column.
    :param elevation_unit: ``"m"`` or ``"km"``: the unit of an ``elevation`` column (default: metres, km for
                           ``elevation_km`` spellings and QuakeMigrate's station file).
    :return: An :class:`obspy.Inventory` (ObsPy formats) or a :class:`pandas.DataFrame` (tables).
    :raises StationFileError: A file that cannot be read or lacks a needed column (the message names the file,
                              the column and the accepted spellings).
    :raises MissingFileError: A file that does not exist.
    """
    if isinstance(source, obspy.Inventory):
        return source
    if isinstance(source, pd.DataFrame):
        return normalise_table(source, "DataFrame", stream, network, elevation_unit)
    files = _expand(source)
    if len(files) > 1:
        parts = [
            read_stations(f, stream=stream, network=network, elevation_unit=elevation_unit)
            for f in files
        ]
        if all(isinstance(p, obspy.Inventory) for p in parts):
            merged = obspy.Inventory()
            for p in parts:
                merged += p
            return merged
        frames = [p if isinstance(p, pd.DataFrame) else inventory_frame(p) for p in parts]
        return pd.concat(frames, ignore_index=True)
    path = files[0]
    label = str(source) if not isinstance(source, (list, tuple)) else str(path)
    if _looks_like_xml(path):
        return _read_obspy(path, label)
    if _looks_like_obspy_text(path):
        try:
            return _read_obspy(path, label)
        except StationFileError:  # ObsPy's reader needs start times; the table reader does not
            pass
    is_table = path.suffix.lower() in _TABLE_SUFFIXES or path.suffix.lower() == ".json"
    try:
        raw = _read_text_table(path, label)
    except StationFileError:
        if is_table:
            raise
        return _read_obspy(path, label)  # dataless SEED and other binary formats
    unit = elevation_unit
    if unit is None and _is_quakemigrate(raw):
        unit = "km"
    try:
        return normalise_table(raw, label, stream, network, unit)
    except StationFileError:
        if is_table:
            raise
        try:
            return obspy.read_inventory(str(path))
        except Exception:  # noqa: BLE001 - not an ObsPy format either: the table's message is clearer
            pass
        raise


def inventory_frame(inventory: obspy.Inventory) -> pd.DataFrame:
    """One row per station of ``inventory`` (network, station, latitude, longitude, elevation m)."""
    return pd.DataFrame(
        [
            {
                "network": n.code,
                "station": s.code,
                "latitude": s.latitude,
                "longitude": s.longitude,
                "elevation": s.elevation or 0.0,
            }
            for n in inventory
            for s in n
        ],
        columns=list(STATION_COLUMNS),
    )


# ----------------------------------------------------------------------------------------------------
# FDSN
# ----------------------------------------------------------------------------------------------------
def fdsn_inventory(
    url: str,
    stream: obspy.Stream,
    level: str = "response",
    timeout: float = 60.0,
) -> obspy.Inventory:
    """The Inventory of ``stream``'s stations from the FDSN web service at ``url`` (ObsPy's FDSN client).

    :param url: The service's base address (``https://service.iris.edu``) or a short name ObsPy knows
                (``IRIS``, ``GFZ``, ``ETH``, ...).
    :param stream: The waveforms: their networks, stations and time span are asked for.
    :param level: ``"response"`` (coordinates and responses) or ``"channel"``.
    :param timeout: Seconds to wait for the service.
    :raises UserError: One line when the service cannot be reached or has none of the stations.
    """
    from obspy.clients.fdsn import Client

    if not len(stream):
        raise UserError("--fdsn: no waveforms to ask stations for")
    networks = sorted({tr.stats.network for tr in stream})
    stations = sorted({tr.stats.station for tr in stream})
    start = min(tr.stats.starttime for tr in stream)
    end = max(tr.stats.endtime for tr in stream)
    try:
        client = Client(url, timeout=timeout)
        return client.get_stations(
            network=",".join(networks),
            station=",".join(stations),
            starttime=start,
            endtime=end,
            level=level,
        )
    except Exception as e:  # noqa: BLE001 - FDSN errors come in many types (URLError, FDSNException, ...)
        reason = one_line(e) or type(e).__name__
        if "No data" in reason or "204" in reason:
            raise UserError(
                f"--fdsn {url}: the service has no stations {','.join(networks)}.{','.join(stations)} between "
                f"{start} and {end}; give --inventory instead"
            ) from e
        raise UserError(
            f"--fdsn {url}: cannot get the stations ({reason[:200]}); check the address and the network "
            "connection, or give a station file with --inventory"
        ) from e


__all__ = [
    "COLUMN_SPELLINGS",
    "STATION_COLUMNS",
    "StationFileError",
    "fdsn_inventory",
    "inventory_frame",
    "normalise_table",
    "read_stations",
]
