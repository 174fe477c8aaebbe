"""Files SINE writes: picks CSV, events CSV, QuakeML and annotation (probability) traces.

One serialisation for every writer (``sine classify``, ``sine annotate``, ``sine plot``, Python callers):

* :func:`write_picks_csv` / :func:`read_picks_csv`: one row per pick with :data:`PICK_COLUMNS`; a pick used by
  an event carries that event's id and the spread of its soft arrival as uncertainty.
* :func:`write_events_csv` / :func:`read_events_csv`: one row per event with :data:`EVENT_COLUMNS`;
  :func:`read_catalog` reads either an events CSV or QuakeML back as an ObsPy Catalog.
* :func:`write_quakeml`: QuakeML with magnitude types and creation info (agency ``sine-seisbench``, version,
  creation time) on every event, origin, magnitude, station magnitude and pick, without changing the caller's
  Catalog.
* :func:`write_annotations` / :func:`read_annotations`: probability traces as miniSEED. miniSEED keeps 3
  characters of a channel code, so SeisBench's trace names ``SINE_P``, ``SINE_S``, ``SINE_N`` become
  :func:`annotation_channel` codes ``<band>X<label>`` (``HXP``, ``HXS``, ``HXN`` at 100 Hz) and are read back
  as ``SINE_P`` etc.
"""

from __future__ import annotations

import copy
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd
import seisbench.util as sbu
from obspy.core.event import (
    Catalog,
    Comment,
    CreationInfo,
    Event,
    Magnitude,
    Origin,
    OriginQuality,
    OriginUncertainty,
    QuantityError,
    ResourceIdentifier,
)
from obspy.geodetics import degrees2kilometers, kilometers2degrees

from ..errors import UserError, one_line
from ..ids import AGENCY, is_ours
from .pick import sorted_picks

#: Columns of the picks CSV, in order.
#:
#: * ``network``, ``station``, ``location``: the pick's station (SeisBench's ``trace_id`` ``NET.STA.LOC``).
#: * ``channel``: the station's vertical channel (e.g. ``HHZ``): the channel the event's Pick names when the pick
#:   is associated, else the channel of the stream given to the writer (``Z`` preferred, else the first of
#:   ``N/E/1/2``); empty when neither is known. SINE picks on all components of a station at once.
#: * ``phase``: ``P`` or ``S``.
#: * ``time``: the pick time (the probability's peak), ISO 8601 UTC.
#: * ``probability``: the probability at the peak.
#: * ``uncertainty_s``: 1-sigma timing spread (s); see :func:`picks_frame`.
#: * ``event_id``: the resource id of the event that uses the pick (as in the events CSV and QuakeML), or empty.
#: * ``start_time``, ``end_time``: the trigger span (probability above the threshold until below half of it),
#:   ISO UTC; empty for an event arrival without a pick (``source`` ``event``).
#: * ``source``: ``classify`` for SINE's picks, ``event`` for a soft arrival an event used where the probability
#:   stayed below the pick threshold (no classify pick; it is in the event's QuakeML picks).
PICK_COLUMNS = [
    "network",
    "station",
    "location",
    "channel",
    "phase",
    "time",
    "probability",
    "uncertainty_s",
    "event_id",
    "start_time",
    "end_time",
    "source",
]

#: Columns of the events CSV, in order. Errors are 1 sigma; ``latitude_error_km``/``longitude_error_km`` are the
#: origin's latitude/longitude uncertainties in km; ``ellipse_*`` the horizontal error ellipse (semi-major,
#: semi-minor in km, azimuth of the major axis in degrees from north); ``stations`` the stations used,
#: ``phases`` the arrivals used; ``residual_rms_s`` the RMS travel-time residual (OriginQuality.standard_error);
#: ``uncalibrated`` / ``saturated`` the event step's flags (comments), ``flags`` their full text.
EVENT_COLUMNS = [
    "id",
    "time",
    "latitude",
    "longitude",
    "depth_km",
    "time_error_s",
    "latitude_error_km",
    "longitude_error_km",
    "depth_error_km",
    "ellipse_major_km",
    "ellipse_minor_km",
    "ellipse_azimuth_deg",
    "magnitude",
    "magnitude_error",
    "magnitude_type",
    "stations",
    "phases",
    "azimuthal_gap",
    "residual_rms_s",
    "uncalibrated",
    "saturated",
    "flags",
]

#: A SINE pick without an event gets ``(end_time - start_time) / PICK_SPAN_TO_SIGMA`` as uncertainty, so that it
#: is on the scale of the soft-arrival spread an event gives its picks (the p²-weighted spread of the probability
#: peak). For a Gaussian-shaped peak of 0.9 and SINE's default threshold 0.3 the trigger span (threshold up,
#: threshold / 2 down) is 4.8 times that spread; on 103 picks of 6 Iceland windows
#: (``../shared/data/events/iceland_qm_2014-08-24``, shipped weights, Iceland velocity model) that an event used,
#: the median ratio was 4.6 (10-90 %: 3.6-4.9).
PICK_SPAN_TO_SIGMA = 4.6

#: An event arrival belongs to a SINE pick of the same station and phase when its time lies within the pick's
#: trigger span widened by this many seconds (each arrival to the nearest pick).
ASSOCIATION_TOLERANCE_S = 0.1

#: Instrument code of annotation channels: FDSN "X", derived or generated channel.
ANNOTATION_INSTRUMENT = "X"

_ANNOTATION_CODE = re.compile(rf"^[A-Z]{ANNOTATION_INSTRUMENT}[A-Z0-9]$")


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------
def package_version() -> str:
    """The installed version of sine-seisbench (``creation_info.version``)."""
    try:
        from importlib.metadata import version

        return version("sine-seisbench")
    except Exception:  # noqa: BLE001 - not installed (a source tree): the package's own string
        from .. import __version__

        return __version__


def _key(network: str, station: str, location: str) -> str:
    return f"{network}.{station}.{location or ''}"


def _split_key(trace_id: str) -> tuple[str, str, str]:
    parts = str(trace_id).split(".")
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _iso(t: obspy.UTCDateTime | None) -> str:
    return "" if t is None else str(obspy.UTCDateTime(t))


def _uncertainty(errors: QuantityError | None) -> float:
    value = None if errors is None else errors.uncertainty
    return math.nan if value is None else float(value)


def _finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def preferred_origin(event: Event) -> Origin | None:
    """The event's preferred origin, else its first origin, else None."""
    origin = event.preferred_origin()
    if origin is None and event.origins:
        origin = event.origins[0]
    return origin


def preferred_magnitude(event: Event) -> Magnitude | None:
    """The event's preferred magnitude, else its first magnitude, else None."""
    magnitude = event.preferred_magnitude()
    if magnitude is None and event.magnitudes:
        magnitude = event.magnitudes[0]
    return magnitude


def stream_channels(stream: obspy.Stream | None) -> dict[str, str]:
    """``NET.STA.LOC`` → the channel code a station's picks are reported on: its vertical (``..Z``) channel,
    else the first (sorted) of its ``N/E/1/2`` channels; the same choice as the channel of the event's Picks."""
    if stream is None:
        return {}
    found: dict[str, list[str]] = {}
    for tr in stream:
        key = _key(tr.stats.network, tr.stats.station, tr.stats.location)
        found.setdefault(key, []).append(tr.stats.channel)
    out = {}
    for key, channels in found.items():
        channels = sorted(set(channels))
        vertical = [c for c in channels if c.endswith("Z")]
        horizontal = [c for c in channels if c[-1:] in ("N", "E", "1", "2")]
        chosen = vertical or horizontal or channels
        out[key] = chosen[0]
    return out


# ------------------------------------------------------------------------------------------------------------
# Picks
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Arrival:
    """An arrival of an event: the pick an origin's Arrival references."""

    key: str
    phase: str
    time: obspy.UTCDateTime
    sigma: float
    weight: float
    channel: str
    event_id: str


def event_arrivals(catalog: Catalog | None) -> list[_Arrival]:
    """The picks referenced by an Arrival of each event's preferred origin (the picks the location used)."""
    out: list[_Arrival] = []
    for event in catalog or []:
        origin = preferred_origin(event)
        if origin is None:
            continue
        picks = {str(p.resource_id): p for p in event.picks}
        for arrival in origin.arrivals:
            pick = picks.get(str(arrival.pick_id))
            if pick is None or pick.time is None or pick.waveform_id is None:
                continue
            wid = pick.waveform_id
            phase = (pick.phase_hint or arrival.phase or "").upper()[:1]
            weight = arrival.time_weight
            out.append(
                _Arrival(
                    key=_key(wid.network_code or "", wid.station_code or "", wid.location_code),
                    phase=phase,
                    time=pick.time,
                    sigma=_uncertainty(pick.time_errors),
                    weight=math.nan if weight is None else float(weight),
                    channel=wid.channel_code or "",
                    event_id=str(event.resource_id),
                )
            )
    return out


def _pick_span(pick: sbu.Pick) -> tuple[obspy.UTCDateTime, obspy.UTCDateTime]:
    start = pick.start_time if pick.start_time is not None else pick.peak_time
    end = pick.end_time if pick.end_time is not None else pick.peak_time
    return start, end


def associate_picks(
    picks: Iterable[sbu.Pick],
    arrivals: list[_Arrival],
    tolerance_s: float = ASSOCIATION_TOLERANCE_S,
) -> dict[int, int]:
    """Index of pick → index of the event arrival it is, for picks of the same station and phase whose trigger
    span (widened by ``tolerance_s``) holds the arrival's time; each arrival and each pick at most once, the
    nearest (arrival time to pick peak) first."""
    by_station: dict[tuple[str, str], list[int]] = {}
    for j, a in enumerate(arrivals):
        by_station.setdefault((a.key, a.phase), []).append(j)
    pairs = []
    for i, pick in enumerate(picks):
        start, end = _pick_span(pick)
        peak = pick.peak_time if pick.peak_time is not None else start
        for j in by_station.get((pick.trace_id, str(pick.phase).upper()[:1]), []):
            t = arrivals[j].time
            if start - tolerance_s <= t <= end + tolerance_s:
                pairs.append((abs(t - peak), i, j))
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def picks_frame(
    picks: Iterable[sbu.Pick] | None,
    catalog: Catalog | None = None,
    stream: obspy.Stream | None = None,
    include_event_arrivals: bool = True,
) -> pd.DataFrame:
    """The picks table (:data:`PICK_COLUMNS`) of SINE's picks and, optionally, its events.

    A pick is associated with an event when the event's preferred origin has an Arrival whose Pick is at the same
    station and phase, with a time inside the pick's trigger span widened by :data:`ASSOCIATION_TOLERANCE_S`
    (SINE's event step fits a soft arrival time near each station's probability peak, so an event's Pick and the
    classify pick of that peak differ by a few hundredths of a second). ``uncertainty_s`` is then the spread of
    the soft arrival (the event Pick's ``time_errors``); for a pick without an event it is the trigger span
    divided by :data:`PICK_SPAN_TO_SIGMA`.

    :param picks: SeisBench picks (``ClassifyOutput.picks``); None or empty for none.
    :param catalog: The events (``ClassifyOutput.events``), or None.
    :param stream: The waveforms classified, for the channel of picks without an event (see
                   :data:`PICK_COLUMNS`), or None.
    :param include_event_arrivals: Also list, with ``source`` ``event``, each event arrival that no pick matches
                                   (a soft arrival where the probability stayed below the pick threshold);
                                   ``probability`` is then the probability curve's peak there.
    """
    picks = list(picks or [])
    arrivals = event_arrivals(catalog)
    matched = associate_picks(picks, arrivals)
    channels = stream_channels(stream)
    rows = []
    for i, pick in enumerate(picks):
        net, sta, loc = _split_key(pick.trace_id)
        key = _key(net, sta, loc)
        start, end = _pick_span(pick)
        arrival = arrivals[matched[i]] if i in matched else None
        if arrival is not None and math.isfinite(arrival.sigma):
            sigma = arrival.sigma
        elif pick.start_time is not None and pick.end_time is not None:
            sigma = float(end - start) / PICK_SPAN_TO_SIGMA
        else:
            sigma = math.nan
        rows.append(
            {
                "network": net,
                "station": sta,
                "location": loc,
                "channel": (arrival.channel if arrival else "") or channels.get(key, ""),
                "phase": pick.phase,
                "time": _iso(pick.peak_time),
                "probability": _finite_or_nan(pick.peak_value),
                "uncertainty_s": sigma,
                "event_id": arrival.event_id if arrival else "",
                "start_time": _iso(pick.start_time),
                "end_time": _iso(pick.end_time),
                "source": "classify",
            }
        )
    if include_event_arrivals:
        used = set(matched.values())
        for j, a in enumerate(arrivals):
            if j in used:
                continue
            net, sta, loc = _split_key(a.key)
            rows.append(
                {
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "channel": a.channel or channels.get(a.key, ""),
                    "phase": a.phase,
                    "time": _iso(a.time),
                    "probability": a.weight,
                    "uncertainty_s": a.sigma,
                    "event_id": a.event_id,
                    "start_time": "",
                    "end_time": "",
                    "source": "event",
                }
            )
    return sort_picks(pd.DataFrame(rows, columns=PICK_COLUMNS))


def sort_picks(frame: pd.DataFrame) -> pd.DataFrame:
    """A picks table in its written order: by time, network, station, location, phase (stable)."""
    if len(frame):
        frame = frame.sort_values(
            ["time", "network", "station", "location", "phase"], kind="stable"
        )
    return frame.reset_index(drop=True)


def picks_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The picks CSV of a picks table (:data:`PICK_COLUMNS`): ISO 8601 UTC times with microseconds, floats in
    full precision (they read back equal), missing values empty."""
    return frame[PICK_COLUMNS].to_csv(index=False, lineterminator="\n").encode()


def picks_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The picks table as Parquet: the columns of the CSV, times as UTC timestamps."""
    table = frame[PICK_COLUMNS].copy()
    for col in ("time", "start_time", "end_time"):
        table[col] = pd.to_datetime(table[col].replace("", None), utc=True, format="ISO8601")
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


def write_picks_csv(
    picks: Iterable[sbu.Pick] | None,
    path: str | os.PathLike,
    catalog: Catalog | None = None,
    stream: obspy.Stream | None = None,
    include_event_arrivals: bool = True,
) -> pd.DataFrame:
    """Writes the picks CSV (:data:`PICK_COLUMNS`, see :func:`picks_frame`); returns the table written.

    Times are ISO 8601 UTC with microseconds, floats in full precision, missing values empty.
    """
    frame = picks_frame(picks, catalog, stream, include_event_arrivals)
    Path(path).write_bytes(picks_csv_bytes(frame))
    return frame


def _read_csv(path: str | os.PathLike, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as e:
        raise UserError(f"{what} {path} does not exist; check the path") from e
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({one_line(e)}); check the path") from e
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise UserError(f"cannot read {what} {path} ({one_line(e)}); give a CSV file") from e


def _to_float(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace("", np.nan), errors="coerce").astype(float)


def _check_times(frame: pd.DataFrame, columns: list[str], path: Any, what: str) -> None:
    for column in columns:
        for i, value in enumerate(frame[column]):
            if value == "":
                continue
            try:
                obspy.UTCDateTime(value)
            except Exception as e:  # noqa: BLE001 - ObsPy raises several types for a bad time
                raise UserError(
                    f"{what} {path}, row {i + 2}: {column} {value!r} is not a time; give ISO 8601 UTC"
                ) from e


def read_picks_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a picks CSV written by :func:`write_picks_csv`: the columns :data:`PICK_COLUMNS` (text, times as ISO
    strings; ``probability`` and ``uncertainty_s`` as floats, NaN where empty).

    Only ``network``, ``station``, ``phase`` and ``time`` are required; missing optional columns are added empty
    (``source`` ``classify``), so hand-made pick files work too.

    :raises UserError: When the file is missing, malformed, lacks a required column or has a bad time.
    """
    frame = _read_csv(path, "picks file")
    required = ["network", "station", "phase", "time"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(
            f"picks file {path} lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(required)} (as written by sine classify --picks)"
        )
    for column in PICK_COLUMNS:
        if column not in frame.columns:
            frame[column] = "classify" if column == "source" else ""
    frame = frame[PICK_COLUMNS].copy()
    _check_times(frame, ["time", "start_time", "end_time"], path, "picks file")
    for column in ("probability", "uncertainty_s"):
        frame[column] = _to_float(frame[column])
    return frame


def frame_to_picks(frame: pd.DataFrame, source: str | None = "classify") -> sbu.PickList:
    """SeisBench picks from a picks table (:func:`read_picks_csv`); rows without a trigger span get the peak time
    as start and end.

    :param source: Keep only rows of this ``source`` (None: all rows).
    """
    out = sbu.PickList()
    for row in frame.itertuples(index=False):
        if source is not None and row.source and row.source != source:
            continue
        peak = obspy.UTCDateTime(row.time)
        start = obspy.UTCDateTime(row.start_time) if row.start_time else peak
        end = obspy.UTCDateTime(row.end_time) if row.end_time else peak
        value = float(row.probability)
        out.append(
            sbu.Pick(
                _key(row.network, row.station, row.location),
                start,
                end,
                peak,
                None if math.isnan(value) else value,
                row.phase,
            )
        )
    return sorted_picks(out)


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------
def _flags(event: Event) -> list[str]:
    return [c.text for c in event.comments if c.text]


def event_row(event: Event) -> dict[str, Any]:
    """One row of the events CSV (:data:`EVENT_COLUMNS`) for an ObsPy Event."""
    origin = preferred_origin(event)
    magnitude = preferred_magnitude(event)
    row: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS, math.nan)
    row["id"] = str(event.resource_id)
    row["time"] = ""
    row["magnitude_type"] = ""
    flags = _flags(event)
    row["uncalibrated"] = any(f.startswith("uncalibrated") for f in flags)
    row["saturated"] = any(f.startswith("saturated") for f in flags)
    row["flags"] = " | ".join(flags)
    if origin is not None:
        lat = _finite_or_nan(origin.latitude)
        row["time"] = _iso(origin.time)
        row["latitude"] = lat
        row["longitude"] = _finite_or_nan(origin.longitude)
        row["depth_km"] = _finite_or_nan(origin.depth) / 1000.0
        row["time_error_s"] = _uncertainty(origin.time_errors)
        row["latitude_error_km"] = degrees2kilometers(_uncertainty(origin.latitude_errors))
        row["longitude_error_km"] = degrees2kilometers(
            _uncertainty(origin.longitude_errors)
        ) * math.cos(math.radians(lat))
        row["depth_error_km"] = _uncertainty(origin.depth_errors) / 1000.0
        ou = origin.origin_uncertainty
        if ou is not None:
            major = ou.max_horizontal_uncertainty
            minor = ou.min_horizontal_uncertainty
            if major is None and ou.horizontal_uncertainty is not None:
                major = minor = ou.horizontal_uncertainty
            row["ellipse_major_km"] = _finite_or_nan(major) / 1000.0
            row["ellipse_minor_km"] = _finite_or_nan(minor) / 1000.0
            row["ellipse_azimuth_deg"] = _finite_or_nan(ou.azimuth_max_horizontal_uncertainty)
        quality = origin.quality
        if quality is not None:
            stations = quality.used_station_count
            if stations is None:
                stations = quality.associated_station_count
            phases = quality.used_phase_count
            if phases is None:
                phases = quality.associated_phase_count
            row["stations"] = _finite_or_nan(stations)
            row["phases"] = _finite_or_nan(phases)
            row["azimuthal_gap"] = _finite_or_nan(quality.azimuthal_gap)
            row["residual_rms_s"] = _finite_or_nan(quality.standard_error)
    if magnitude is not None:
        row["magnitude"] = _finite_or_nan(magnitude.mag)
        row["magnitude_error"] = _uncertainty(magnitude.mag_errors)
        row["magnitude_type"] = magnitude.magnitude_type or ""
    return row


def events_frame(catalog: Catalog | Iterable[Event] | None) -> pd.DataFrame:
    """The events table (:data:`EVENT_COLUMNS`), one row per event in origin-time order."""
    frame = pd.DataFrame([event_row(e) for e in (catalog or [])], columns=EVENT_COLUMNS)
    frame["stations"] = frame["stations"].astype("Int64")
    frame["phases"] = frame["phases"].astype("Int64")
    if len(frame):
        frame = frame.sort_values(["time", "id"], kind="stable").reset_index(drop=True)
    return frame


def write_events_csv(
    catalog: Catalog | Iterable[Event] | None, path: str | os.PathLike
) -> pd.DataFrame:
    """Writes the events CSV (:data:`EVENT_COLUMNS`); returns the table written. Missing values are empty."""
    frame = events_frame(catalog)
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.7g")
    return frame


def read_events_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Reads an events CSV written by :func:`write_events_csv` (numbers as floats, flags as bools, text as str).

    Only ``time``, ``latitude``, ``longitude`` are required (``depth_km`` defaults to 0, ``id`` to the row
    number); other missing columns are added empty.

    :raises UserError: When the file is missing, malformed, lacks a required column or has a bad time.
    """
    frame = _read_csv(path, "events file")
    required = ["time", "latitude", "longitude"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(
            f"events file {path} lacks the column(s) {', '.join(missing)}; it needs {', '.join(required)} "
            "(as written by sine classify --events), or give QuakeML"
        )
    for column in EVENT_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame[EVENT_COLUMNS].copy()
    _check_times(frame, ["time"], path, "events file")
    text = {"id", "time", "magnitude_type", "flags", "uncalibrated", "saturated"}
    for column in EVENT_COLUMNS:
        if column not in text:
            frame[column] = _to_float(frame[column])
    for column in ("uncalibrated", "saturated"):
        frame[column] = frame[column].str.strip().str.lower().isin(["true", "1", "yes"])
    for column in ("stations", "phases"):
        frame[column] = frame[column].round().astype("Int64")
    frame["id"] = [value or f"smi:local/event/{i}" for i, value in enumerate(frame["id"])]
    return frame


def _nan_none(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def frame_to_catalog(frame: pd.DataFrame) -> Catalog:
    """An ObsPy Catalog from an events table (:func:`read_events_csv`): per row an Event with one Origin (errors,
    error ellipse, quality), a Magnitude when given and the flags as comments."""
    catalog = Catalog()
    for row in frame.to_dict("records"):
        lat = float(row["latitude"])
        rid = ResourceIdentifier(row["id"])
        depth = _nan_none(row["depth_km"])
        lat_err = _nan_none(row["latitude_error_km"])
        lon_err = _nan_none(row["longitude_error_km"])
        depth_err = _nan_none(row["depth_error_km"])
        origin = Origin(
            resource_id=ResourceIdentifier(f"{row['id']}/origin"),
            time=obspy.UTCDateTime(row["time"]),
            time_errors=QuantityError(uncertainty=_nan_none(row["time_error_s"])),
            latitude=lat,
            latitude_errors=QuantityError(
                uncertainty=None if lat_err is None else kilometers2degrees(lat_err)
            ),
            longitude=float(row["longitude"]),
            longitude_errors=QuantityError(
                uncertainty=None
                if lon_err is None
                else kilometers2degrees(lon_err) / max(math.cos(math.radians(lat)), 1e-6)
            ),
            depth=0.0 if depth is None else depth * 1000.0,
            depth_errors=QuantityError(
                uncertainty=None if depth_err is None else depth_err * 1000.0
            ),
        )
        major = _nan_none(row["ellipse_major_km"])
        if major is not None:
            minor = _nan_none(row["ellipse_minor_km"])
            origin.origin_uncertainty = OriginUncertainty(
                horizontal_uncertainty=major * 1000.0,
                max_horizontal_uncertainty=major * 1000.0,
                min_horizontal_uncertainty=None if minor is None else minor * 1000.0,
                azimuth_max_horizontal_uncertainty=_nan_none(row["ellipse_azimuth_deg"]),
                preferred_description="uncertainty ellipse",
            )
        quality = {
            "used_station_count": row["stations"],
            "associated_station_count": row["stations"],
            "used_phase_count": row["phases"],
            "associated_phase_count": row["phases"],
            "azimuthal_gap": _nan_none(row["azimuthal_gap"]),
            "standard_error": _nan_none(row["residual_rms_s"]),
        }
        quality = {
            k: (None if v is None or v is pd.NA else (int(v) if "count" in k else v))
            for k, v in quality.items()
        }
        if any(v is not None for v in quality.values()):
            origin.quality = OriginQuality(**quality)
        event = Event(resource_id=rid, origins=[origin])
        event.preferred_origin_id = origin.resource_id
        flags = [f.strip() for f in str(row["flags"] or "").split(" | ") if f.strip()]
        if not flags:
            flags = [
                name for name in ("uncalibrated", "saturated") if bool(row[name])
            ]  # flags without text
        event.comments = [Comment(text=f) for f in flags]
        mag = _nan_none(row["magnitude"])
        if mag is not None:
            magnitude = Magnitude(
                resource_id=ResourceIdentifier(f"{row['id']}/magnitude"),
                mag=mag,
                mag_errors=QuantityError(uncertainty=_nan_none(row["magnitude_error"])),
                magnitude_type=row["magnitude_type"] or None,
                origin_id=origin.resource_id,
            )
            event.magnitudes = [magnitude]
            event.preferred_magnitude_id = magnitude.resource_id
        catalog.append(event)
    return catalog


def read_catalog(path: str | os.PathLike) -> Catalog:
    """Events from a file: an events CSV (``.csv``/``.tsv``, :func:`read_events_csv`) or anything
    ``obspy.read_events`` reads (QuakeML, ...).

    :raises UserError: When the file is missing or cannot be read.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"events file {path} does not exist or is not a file; check the path")
    if p.suffix.lower() in (".csv", ".tsv"):
        return frame_to_catalog(read_events_csv(p))
    try:
        return obspy.read_events(str(p))
    except Exception as e:  # noqa: BLE001 - ObsPy raises many types for a file it cannot read
        raise UserError(
            f"cannot read events file {path} ({one_line(e)}); give QuakeML or an events CSV"
        ) from e


# ------------------------------------------------------------------------------------------------------------
# QuakeML
# ------------------------------------------------------------------------------------------------------------
def _complete_creation_info(obj: Any, now: obspy.UTCDateTime, version: str) -> None:
    info = obj.creation_info
    if info is None:
        info = obj.creation_info = CreationInfo()
    if not info.agency_id:
        info.agency_id = AGENCY
    if not info.author:
        info.author = AGENCY
    if not info.version:
        info.version = version
    if info.creation_time is None:
        info.creation_time = now


def _is_ours(obj: Any) -> bool:
    return is_ours(getattr(obj, "method_id", None))


def with_metadata(catalog: Catalog) -> Catalog:
    """A deep copy of ``catalog`` with creation info (agency ``sine-seisbench``, author ``sine-seisbench``
    unless one is set, the package version, the creation time now) completed on the catalog and on every event,
    origin, magnitude, station magnitude and pick, and a magnitude type on every magnitude and station
    magnitude: ``ML`` for SINE's own (method id ``smi:sine-seisbench/...``), else ``M`` (unspecified). Fields
    already set are kept."""
    out = copy.deepcopy(catalog)
    now = obspy.UTCDateTime()
    version = package_version()
    _complete_creation_info(out, now, version)
    for event in out:
        _complete_creation_info(event, now, version)
        for obj in [*event.origins, *event.magnitudes, *event.station_magnitudes, *event.picks]:
            _complete_creation_info(obj, now, version)
        for magnitude in event.magnitudes:
            if not magnitude.magnitude_type:
                magnitude.magnitude_type = "ML" if _is_ours(magnitude) else "M"
        for magnitude in event.station_magnitudes:
            if not magnitude.station_magnitude_type:
                magnitude.station_magnitude_type = "ML" if _is_ours(magnitude) else "M"
    return out


def write_quakeml(catalog: Catalog, path: str | os.PathLike) -> Catalog:
    """Writes ``catalog`` as QuakeML 1.2 with complete metadata (:func:`with_metadata`); the caller's Catalog is
    not changed. Returns the Catalog written."""
    out = with_metadata(catalog)
    out.write(str(path), format="QUAKEML")
    return out


# ------------------------------------------------------------------------------------------------------------
# Annotations (probability traces)
# ------------------------------------------------------------------------------------------------------------
#: FDSN band codes of broadband-type channels by least sampling rate (Hz).
_BAND_CODES = [
    (1000.0, "F"),
    (250.0, "C"),
    (80.0, "H"),
    (10.0, "B"),
    (1.0 + 1e-9, "M"),
    (0.5, "L"),
    (0.05, "V"),
    (0.0, "U"),
]


def band_code(sampling_rate: float) -> str:
    """FDSN band code of a sampling rate (broadband letters: F ≥1000 Hz, C ≥250, H ≥80, B ≥10, M >1, L ~1,
    V ~0.1, U lower)."""
    for least, code in _BAND_CODES:
        if sampling_rate >= least:
            return code
    return "U"


def annotation_channel(label: str, sampling_rate: float) -> str:
    """miniSEED channel code of an annotation trace of ``label`` (``P``, ``S``, ``N``): band code of the
    sampling rate + ``X`` (FDSN instrument code "derived or generated channel") + the label, e.g. ``HXP`` for a
    100 Hz P probability."""
    if len(label) != 1 or not label.isalnum():
        raise ValueError(
            f"annotation label {label!r} is not one letter or digit; it cannot be a channel code's last character"
        )
    return f"{band_code(sampling_rate)}{ANNOTATION_INSTRUMENT}{label.upper()}"


def annotation_label(channel: str) -> str | None:
    """The label (``P``, ``S``, ``N``, ...) of an annotation channel: ``SINE_P`` (SeisBench's name) or ``HXP``
    (:func:`annotation_channel`); None for other channels."""
    if "_" in channel:
        return channel.rsplit("_", 1)[1] or None
    if _ANNOTATION_CODE.match(channel):
        return channel[2]
    return None


def write_annotations(stream: obspy.Stream, path: str | os.PathLike) -> obspy.Stream:
    """Writes annotation traces (``model.annotate`` output, channels ``<MODEL>_<label>``) as miniSEED with
    channel codes :func:`annotation_channel` (``SINE_P`` → ``HXP`` at 100 Hz), float32 samples (NaN kept);
    every station's P, S and noise traces stay apart. The caller's stream is not changed. Returns the Stream
    written. :func:`read_annotations` restores the SeisBench names.

    :raises ValueError: When a channel is not ``<MODEL>_<one-letter label>``, or one file would hold two models'
                        traces of the same label (write them to separate files).
    """
    out = obspy.Stream()
    models: dict[str, set[str]] = {}
    for tr in stream:
        channel = tr.stats.channel
        if _ANNOTATION_CODE.match(channel):  # already coded
            code = channel
        else:
            model, sep, label = channel.rpartition("_")
            if not sep or not model:
                raise ValueError(
                    f"trace {tr.id} is not an annotation trace: its channel is not <MODEL>_<label> (e.g. SINE_P)"
                )
            code = annotation_channel(label, tr.stats.sampling_rate)
            models.setdefault(label.upper(), set()).add(model)
        copy_tr = tr.copy()
        copy_tr.stats.channel = code
        copy_tr.data = np.ascontiguousarray(tr.data, dtype=np.float32)
        copy_tr.stats.pop("mseed", None)
        out += copy_tr
    mixed = sorted(label for label, names in models.items() if len(names) > 1)
    if mixed:
        raise ValueError(
            f"annotation traces of several models for label(s) {', '.join(mixed)}: "
            f"{sorted(set().union(*models.values()))}; write each model's annotations to its own file"
        )
    if len(out):
        out.write(str(path), format="MSEED", encoding="FLOAT32", reclen=4096)
    else:
        Path(path).write_bytes(b"")
    return out


def read_annotations(path: str | os.PathLike, model_name: str = "SINE") -> obspy.Stream:
    """Reads annotation traces written by :func:`write_annotations`: channels ``?X<label>`` become SeisBench's
    ``<model_name>_<label>`` (``HXP`` → ``SINE_P``); other channels are kept as they are. An empty file gives an
    empty Stream.

    :raises UserError: When the file is missing or not miniSEED.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"annotations file {path} does not exist or is not a file; check the path")
    if p.stat().st_size == 0:
        return obspy.Stream()
    try:
        stream = obspy.read(str(p))
    except Exception as e:  # noqa: BLE001 - ObsPy raises many types for a file it cannot read
        raise UserError(
            f"cannot read annotations file {path} ({one_line(e)}); give the miniSEED file of sine annotate --out"
        ) from e
    for tr in stream:
        if _ANNOTATION_CODE.match(tr.stats.channel):
            tr.stats.channel = f"{model_name}_{tr.stats.channel[2]}"
    return stream


def annotations_by_station(stream: obspy.Stream | None) -> Mapping[str, dict[str, obspy.Stream]]:
    """``NET.STA.LOC`` → label → the station's annotation traces of that label (either naming)."""
    out: dict[str, dict[str, obspy.Stream]] = {}
    for tr in stream or []:
        label = annotation_label(tr.stats.channel)
        if label is None:
            continue
        key = _key(tr.stats.network, tr.stats.station, tr.stats.location)
        out.setdefault(key, {}).setdefault(label, obspy.Stream()).append(tr)
    return out


__all__ = [
    "EVENT_COLUMNS",
    "PICK_COLUMNS",
    "annotation_channel",
    "annotation_label",
    "events_frame",
    "frame_to_catalog",
    "frame_to_picks",
    "picks_frame",
    "read_annotations",
    "read_catalog",
    "read_events_csv",
    "read_picks_csv",
    "with_metadata",
    "write_annotations",
    "write_events_csv",
    "write_picks_csv",
    "write_quakeml",
]
