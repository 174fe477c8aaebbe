"""Real multi-station training windows with pseudo-labels from a published picker (the "teacher").

A *record* is a set of continuous (or event) waveforms of one network with station coordinates. Every record is
cut into consecutive windows of ``window_s`` seconds that hold all of its stations (one ``source_id`` per
window, 100 Hz, ZNE). The teacher (a SeisBench picker, e.g. ``PhaseNet.from_pretrained("original")``) picks the
whole record; its P picks are associated across stations and located with the project's classical chain
(:func:`sine_seisbench.chain.associate_picks` / :func:`~sine_seisbench.chain.locate` in the 1-D
model of :class:`~sine_seisbench.traveltimes.TravelTimes`). A teacher pick becomes a label only where at least
``min_stations`` stations agree on one located event: a P pick whose residual is below ``max_p_residual_s``, and
that station's S pick of the same event if its residual is below ``max_s_residual_s``
(:func:`confirm_picks`). Windows holding such an event get ``trace_label_source = "pseudo"``; the others get
``"none"`` (no trusted labels; arrivals NaN; for distillation only).

The evaluation records of the benchmark data never enter: :func:`~sine_seisbench.data.evaluation.check_not_evaluation`
refuses them, by path and by stream id and time, and :func:`build_real_dataset` applies it to every file and every
trace it reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench.data as sbd
import seisbench.util as sbu

from ..chain import Location, PickTuple, associate_picks, locate
from ..chain import local_magnitude as chain_local_magnitude
from ..geometry import Coordinates, station_key
from .evaluation import (  # noqa: F401 (EVALUATION_RECORDS, EvaluationRecord re-exported)
    EVALUATION_RECORDS,
    EvaluationRecord,
    check_not_evaluation,
)
from .layout import DataLayout, as_layout
from .simulate import SAMPLING_RATE, TravelTimes, aperture_km, load_station_list

logger = logging.getLogger(__name__)

#: Components in the written order and the channel letters that map to them.
_COMPONENT_INDEX = {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}


@dataclass
class RealRecord:
    """One network's waveforms for :func:`build_real_dataset`.

    :param name: Record name (prefix of the window ids; checked by :func:`check_not_evaluation`).
    :param waveforms: Waveform files (globs allowed) or a Stream.
    :param stations: Station coordinates (anything :func:`~sine_seisbench.data.simulate.load_station_list`
                     reads, e.g. a DataFrame with network, station, latitude, longitude, elevation m).
    :param start: Start of the span to use (default: the data's start).
    :param end: End of the span to use, exclusive (default: the data's end).
    :param inventory: StationXML with responses: the overall sensitivity is removed, and stations whose input
                      unit is m/s are marked ``trace_calibrated``.
    :param exclude: Stations (``NET.STA``) to leave out, with the reason logged.
    """

    name: str
    waveforms: obspy.Stream | Sequence[str | Path]
    stations: pd.DataFrame | str | Path | obspy.Inventory
    start: obspy.UTCDateTime | None = None
    end: obspy.UTCDateTime | None = None
    inventory: obspy.Inventory | None = None
    exclude: dict[str, str] = field(default_factory=dict)


def default_training_records(data_dir: DataLayout | str | Path) -> list[RealRecord]:
    """The real records of the benchmark data allowed for training (absent ones are left out).

    :param data_dir: The data's :class:`~sine_seisbench.data.layout.DataLayout`, or its root folder.

    - Colombia 2019-12-24 19:00-23:00 at the 7 HH stations (the 23:00-01:00 files are evaluation data); CLEJA
      is left out (HN accelerometer at 200 Hz, from 19:03:36: acceleration, not the velocity the teacher and
      the simulated data see);
    - Hengill 2018-12-30 03:00-03:05, 20 stations (200 Hz, resampled; raw counts);
    - the two gmprocess events (hv70907436: 6 HV stations; nc51194936: 3 stations at 40/50 Hz), sensitivity
      removed with their StationXML;
    - opsdata-coal-node's 5 events (12 geophones, 500 Hz, 15 s each) when that package is installed.
    """
    layout = as_layout(data_dir)
    records: list[RealRecord] = []
    colombia = layout.colombia
    if colombia.is_dir():
        files = []
        exclude = {}
        for folder in sorted((colombia / "waveforms").iterdir()):
            if folder.name == "CLEJA":
                exclude["CM.CLEJA"] = (
                    "HN accelerometer at 200 Hz from 19:03:36 (acceleration, not velocity)"
                )
                continue
            for f in sorted(folder.glob("CM.*.HH?__*.mseed")):
                try:
                    check_not_evaluation(f)
                except ValueError:
                    continue  # the 23:00-01:00 files
                files.append(f)
        for sta, reason in exclude.items():
            logger.info("Colombia record: %s left out: %s", sta, reason)
        inv_path = colombia / "stations" / "inv.xml"
        records.append(
            RealRecord(
                name="colombia_2019-12-24T19-23",
                waveforms=files,
                stations=colombia / "stations" / "stations.json",
                start=obspy.UTCDateTime("2019-12-24T19:00:00"),
                end=obspy.UTCDateTime("2019-12-24T23:00:00"),
                inventory=obspy.read_inventory(str(inv_path)) if inv_path.exists() else None,
                exclude=exclude,
            )
        )
    hengill = layout.hengill
    if hengill.is_dir():
        records.append(
            RealRecord(
                name="hengill_2018-12-30T03",
                waveforms=sorted((hengill / "waveforms").glob("*.mseed")),
                stations=hengill / "stations.csv",
            )
        )
    for event in ("hv70907436", "nc51194936"):
        folder = layout.gmprocess / event
        if folder.is_dir():
            inv = obspy.Inventory()
            for f in sorted(folder.glob("*.xml")):
                inv += obspy.read_inventory(str(f))
            records.append(
                RealRecord(
                    name=f"gmprocess_{event}",
                    waveforms=sorted(folder.glob("*.mseed")),
                    stations=inv,
                    inventory=inv,
                )
            )
    try:
        import opsdata_coal_node

        coal = Path(opsdata_coal_node.__file__).parent / "coal_node"
        inv = obspy.read_inventory(str(coal / "stations" / "inv.xml"))
        for i, f in enumerate(sorted((coal / "waveforms").glob("*.mseed"))):
            records.append(
                RealRecord(name=f"coal_node_{i}", waveforms=[f], stations=inv, inventory=inv)
            )
    except ImportError:
        logger.info("opsdata-coal-node is not installed: its 5 events are left out.")
    return records


def _as_record(record: RealRecord | tuple, index: int) -> RealRecord:
    if isinstance(record, RealRecord):
        return record
    waveforms, stations, *rest = record
    start, end = rest[0] if rest and rest[0] is not None else (None, None)
    return RealRecord(
        name=f"record{index:02d}", waveforms=waveforms, stations=stations, start=start, end=end
    )


def load_record(
    record: RealRecord,
) -> tuple[obspy.Stream, dict[str, Coordinates], dict[str, bool]]:
    """Reads a record at 100 Hz within its span, checked against the evaluation guard.

    Gaps are filled with zeros, the mean removed, the overall sensitivity removed where the inventory has it.

    :return: The stream (float64, 100 Hz), ``NET.STA.LOC`` → coordinates for the stations that have them, and
             ``NET.STA.LOC`` → calibrated (ground velocity in m/s).
    :raises ValueError: For evaluation data.
    """
    check_not_evaluation(record.name, record.start, record.end)
    if isinstance(record.waveforms, obspy.Stream):
        stream = record.waveforms.copy()
    else:
        stream = obspy.Stream()
        for path in record.waveforms:
            check_not_evaluation(path, record.start, record.end)
            stream += obspy.read(str(path))
    if record.start is not None or record.end is not None:
        end = record.end - 1e-6 if record.end is not None else None
        stream.trim(record.start, end, nearest_sample=False)
    excluded = {k for k in record.exclude}
    stream = obspy.Stream(
        [
            tr
            for tr in stream
            if tr.stats.npts > 1 and f"{tr.stats.network}.{tr.stats.station}" not in excluded
        ]
    )
    for tr in stream:
        # sample times [start, endtime]: the exclusive end just after the last sample
        check_not_evaluation(tr.id, tr.stats.starttime, tr.stats.endtime + 1e-6)
        tr.data = tr.data.astype(np.float64)
    stream.merge(method=1, fill_value=0)
    table = load_station_list(record.stations)
    lookup = {
        (n, s): Coordinates(float(a), float(b), float(c))
        for n, s, a, b, c in table[
            ["network", "station", "latitude", "longitude", "elevation"]
        ].itertuples(index=False, name=None)
    }
    coords: dict[str, Coordinates] = {}
    calibrated: dict[str, bool] = {}
    kept = obspy.Stream()
    for tr in stream:
        key = station_key(tr.id)
        c = lookup.get((tr.stats.network, tr.stats.station))
        if c is None:
            logger.info("Record %s: no coordinates for %s; left out.", record.name, tr.id)
            continue
        tr.detrend("demean")
        ok = False
        if record.inventory is not None:
            try:
                response = record.inventory.get_response(tr.id, tr.stats.starttime)
                sensitivity = response.instrument_sensitivity
                units = str(sensitivity.input_units or "").upper()
                if not sensitivity.value:
                    raise ValueError("no overall sensitivity")
                # divided directly: some StationXML responses (Colombia's) have no stages, which ObsPy's
                # remove_sensitivity does not accept
                tr.data = tr.data / float(sensitivity.value)
                ok = units in ("M/S", "M/SEC")
            except Exception as err:  # no response for this channel
                logger.info("Record %s: sensitivity of %s not removed: %s", record.name, tr.id, err)
        if tr.stats.sampling_rate != SAMPLING_RATE:
            tr.resample(SAMPLING_RATE)
        coords[key] = c
        calibrated[key] = calibrated.get(key, True) and ok
        kept += tr
    return kept, coords, calibrated


@dataclass
class ConfirmedEvent:
    """A located event and the teacher picks it confirms: station → {"P": time, "S": time}."""

    location: Location
    picks: dict[str, dict[str, obspy.UTCDateTime]]
    magnitude: float = float("nan")


def confirm_picks(
    event_picks: Sequence[PickTuple],
    location: Location,
    min_stations: int = 3,
    max_p_residual_s: float = 0.5,
    max_s_residual_s: float = 1.0,
) -> dict[str, dict[str, obspy.UTCDateTime]]:
    """The picks of one located event that become labels.

    A P pick is kept where its residual at ``location`` is below ``max_p_residual_s``; the event is kept when
    at least ``min_stations`` stations keep their P. A station's S pick is kept with its P where its residual is
    below ``max_s_residual_s`` (never without a kept P).

    :param event_picks: The event's picks ``(NET.STA.LOC, phase, time, weight)``.
    :param location: Its location; its ``residuals`` must hold every pick's residual.
    :return: Station → {"P": time[, "S": time]}; empty when fewer than ``min_stations`` P picks are kept.
    """
    kept: dict[str, dict[str, obspy.UTCDateTime]] = {}
    for sta, phase, t, _ in event_picks:
        if phase == "P":
            res = location.residuals.get((station_key(sta), "P"))
            if res is not None and abs(res) < max_p_residual_s:
                kept.setdefault(station_key(sta), {})["P"] = obspy.UTCDateTime(t)
    if len(kept) < min_stations:
        return {}
    for sta, phase, t, _ in event_picks:
        key = station_key(sta)
        if phase == "S" and key in kept:
            res = location.residuals.get((key, "S"))
            if res is not None and abs(res) < max_s_residual_s:
                kept[key]["S"] = obspy.UTCDateTime(t)
    return kept


def locate_and_confirm(
    picks: Iterable[sbu.Pick],
    coordinates: Mapping[str, Coordinates],
    tt: TravelTimes,
    min_stations: int = 3,
    max_p_residual_s: float = 0.5,
    max_s_residual_s: float = 1.0,
    association_window_s: float | None = None,
) -> list[ConfirmedEvent]:
    """Associates a teacher's picks, locates every event twice (all picks, then without those beyond the
    residual limits) and keeps the events that :func:`confirm_picks` confirms.

    The association window and the location grid follow the network's aperture (the search radius covers
    events well outside a small network, the coarse step grows for a large one).
    """
    picks = [p for p in picks if station_key(p.trace_id) in coordinates]
    coords = list(coordinates.values())
    ap = aperture_km([c.latitude for c in coords], [c.longitude for c in coords])
    window = association_window_s or float(np.clip(ap / 6.0 + 5.0, 10.0, 40.0))
    radius = float(np.clip(0.75 * ap + 30.0, 40.0, 250.0))
    coarse = max(2.0, radius / 40.0)
    kwargs = dict(
        search_radius_km=radius,
        coarse_step_km=coarse,
        fine_step_km=0.25 if coarse <= 2.0 else 0.5,
    )
    out: list[ConfirmedEvent] = []
    for event_picks in associate_picks(picks, window, min_stations):
        try:
            loc = locate(event_picks, coordinates, tt, **kwargs)
            limits = {"P": 2 * max_p_residual_s, "S": 2 * max_s_residual_s}
            reweighted = [
                (
                    s,
                    ph,
                    t,
                    w if abs(loc.residuals.get((station_key(s), ph), 0.0)) < limits[ph] else 0.0,
                )
                for s, ph, t, w in event_picks
            ]
            if sum(1 for _, ph, _, w in reweighted if ph == "P" and w > 0) >= min_stations:
                loc = locate(reweighted, coordinates, tt, **kwargs)
        except ValueError as err:
            logger.debug("Event at %s not located: %s", event_picks[0][2], err)
            continue
        kept = confirm_picks(event_picks, loc, min_stations, max_p_residual_s, max_s_residual_s)
        if kept:
            out.append(ConfirmedEvent(location=loc, picks=kept))
    return out


def _station_arrays(
    stream: obspy.Stream, t_start: obspy.UTCDateTime, n_total: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per station a (3, n_total) float32 ZNE array on the 100 Hz grid from ``t_start``, and its band code."""
    arrays: dict[str, np.ndarray] = {}
    bands: dict[str, str] = {}
    for tr in stream:
        comp = _COMPONENT_INDEX.get(tr.stats.channel[-1:].upper())
        if comp is None:
            continue
        key = station_key(tr.id)
        arr = arrays.setdefault(key, np.zeros((3, n_total), dtype=np.float32))
        bands.setdefault(key, tr.stats.channel[:2])
        offset = int(round((tr.stats.starttime - t_start) * SAMPLING_RATE))
        data = np.asarray(tr.data, dtype=np.float64)
        if np.ma.isMaskedArray(tr.data):
            data = np.ma.filled(tr.data, 0.0).astype(np.float64)
        data = np.where(np.isfinite(data), data, 0.0)
        lo, hi = max(offset, 0), min(offset + data.size, n_total)
        if hi > lo:
            arr[comp, lo:hi] = data[lo - offset : hi - offset]
    return arrays, bands


def build_real_dataset(
    out: str | Path,
    records: Sequence[RealRecord | tuple],
    teacher,
    window_s: float = 45.0,
    min_stations: int = 3,
    max_p_residual_s: float = 0.5,
    max_s_residual_s: float = 1.0,
    dev_fraction: float = 0.1,
    tt: TravelTimes | None = None,
    teacher_kwargs: dict | None = None,
) -> dict:
    """Writes a SeisBench dataset of real multi-station windows with the teacher's confirmed picks as labels.

    Each record is read with :func:`load_record` (evaluation guard, 100 Hz, sensitivity removed where known),
    picked by ``teacher.classify`` in one go, and its picks confirmed with :func:`locate_and_confirm`. The
    record's span is cut into consecutive windows of ``window_s`` (a record shorter than one window gives one
    zero-padded window); a window holds one row per station with data in it. A window in which at least one
    confirmed P pick falls is labelled with the confirmed event that has the most P picks in it
    (``trace_label_source = "pseudo"``; arrival samples relative to the window start, outside ``[0, n)`` for
    picks of that event outside the window; NaN at stations without a confirmed pick); the other windows get
    ``"none"`` and NaN arrivals. ``source_*`` hold the located event of a pseudo window (ML from the chain
    where all its stations are calibrated), NaN otherwise. The last ``dev_fraction`` of each record's windows
    (in time) is ``split = "dev"``, the rest ``"train"``.

    Extra columns: ``trace_label_source``, ``trace_pseudo_confirmed`` (this station's P is a confirmed pick),
    ``trace_teacher_p_picks`` / ``trace_teacher_s_picks`` (all teacher picks at this station in the window,
    confirmed or not: a trainer may mask stations where the teacher saw an unconfirmed arrival),
    ``window_n_confirmed_events`` (confirmed events with a P pick in the window), ``source_record``.

    :param records: :class:`RealRecord` or ``(waveforms, stations[, (start, end)])`` tuples.
    :param teacher: A SeisBench picker with ``classify`` returning picks.
    :return: Counts: ``windows``, ``pseudo_windows``, ``none_windows``, ``traces``, ``confirmed_events``,
             ``labels_p`` / ``labels_s`` (confirmed picks written as labels), ``teacher_picks``, ``per_record``,
             ``seconds``.
    """
    started = time.perf_counter()
    tt = tt or TravelTimes()
    teacher_kwargs = teacher_kwargs or {}
    n_win = int(round(window_s * SAMPLING_RATE))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = dict(
        windows=0,
        pseudo_windows=0,
        none_windows=0,
        traces=0,
        confirmed_events=0,
        labels_p=0,
        labels_s=0,
        teacher_picks=0,
        per_record={},
    )
    with sbd.WaveformDataWriter(out / "metadata.csv", out / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": SAMPLING_RATE,
            "measurement": "velocity",
            "unit": "m/s where trace_calibrated, else counts",
            "instrument_response": "overall sensitivity removed where trace_calibrated",
        }
        for index, raw in enumerate(records):
            record = _as_record(raw, index)
            t_rec = time.perf_counter()
            stream, coords, calibrated = load_record(record)
            if not stream or len(coords) < 1:
                logger.warning("Record %s: no usable data.", record.name)
                continue
            picks = list(teacher.classify(stream, **teacher_kwargs).picks)
            t_pick = time.perf_counter()
            events = locate_and_confirm(
                picks, coords, tt, min_stations, max_p_residual_s, max_s_residual_s
            )
            for ev in events:
                keys = list(ev.picks)
                if all(calibrated.get(k, False) for k in keys):
                    first = min(p["P"] for p in ev.picks.values())
                    sub = stream.slice(first - 30, first + 180)
                    ev.magnitude, _ = chain_local_magnitude(sub, ev.location, coords, tt)
            t_loc = time.perf_counter()
            t_start = min(tr.stats.starttime for tr in stream)
            t_end = max(tr.stats.endtime + tr.stats.delta for tr in stream)
            if record.start is not None:
                t_start = max(t_start, record.start)
            if record.end is not None:
                t_end = min(t_end, record.end)
            n_total = int(math.floor((t_end - t_start) * SAMPLING_RATE + 1e-6))
            n_windows = n_total // n_win if n_total >= n_win else (1 if n_total > 0 else 0)
            arrays, bands = _station_arrays(stream, t_start, max(n_total, n_win))
            n_dev = int(round(dev_fraction * n_windows))
            # sample positions (from t_start) of confirmed and of all teacher picks
            ev_p = [
                {k: (v["P"] - t_start) * SAMPLING_RATE for k, v in ev.picks.items()}
                for ev in events
            ]
            teacher_pos: dict[tuple[str, str], np.ndarray] = {}
            for p in picks:
                key = (station_key(p.trace_id), str(p.phase).upper())
                teacher_pos.setdefault(key, []).append((p.peak_time - t_start) * SAMPLING_RATE)
            teacher_pos = {k: np.asarray(v) for k, v in teacher_pos.items()}
            rec_stats = dict(windows=0, pseudo_windows=0, labels_p=0, labels_s=0)
            for w in range(n_windows):
                lo, hi = w * n_win, (w + 1) * n_win
                counts = [sum(lo <= s < hi for s in pos.values()) for pos in ev_p]
                n_events_in = sum(c > 0 for c in counts)
                chosen = int(np.argmax(counts)) if counts and max(counts) > 0 else None
                ev = events[chosen] if chosen is not None else None
                label = "pseudo" if ev is not None else "none"
                w_start = t_start + lo / SAMPLING_RATE
                loc = ev.location if ev is not None else None
                written_rows = 0
                for key in sorted(arrays):
                    data = arrays[key][:, lo:hi]
                    if not np.any(data):
                        continue
                    c = coords[key]
                    net, sta, locc = (key.split(".") + ["", "", ""])[:3]
                    p_sample = s_sample = float("nan")
                    confirmed = False
                    if ev is not None and key in ev.picks:
                        confirmed = True
                        p_sample = round((ev.picks[key]["P"] - w_start) * SAMPLING_RATE, 2)
                        if "S" in ev.picks[key]:
                            s_sample = round((ev.picks[key]["S"] - w_start) * SAMPLING_RATE, 2)
                    tp = teacher_pos.get((key, "P"), np.empty(0))
                    ts = teacher_pos.get((key, "S"), np.empty(0))
                    comps = "".join(
                        name for name, row in zip("ZNE", data, strict=True) if np.any(row)
                    )
                    writer.add_trace(
                        {
                            "source_id": f"{record.name}_w{w:05d}",
                            "source_record": record.name,
                            "source_origin_time": str(loc.origin_time) if loc else "",
                            "source_latitude_deg": loc.latitude if loc else np.nan,
                            "source_longitude_deg": loc.longitude if loc else np.nan,
                            "source_depth_km": loc.depth_km if loc else np.nan,
                            "source_magnitude": ev.magnitude if ev is not None else np.nan,
                            "source_magnitude_type": "ml_chain" if ev is not None else "",
                            "source_location_rms_s": loc.rms_s if loc else np.nan,
                            "source_n_confirmed_stations": len(ev.picks) if ev is not None else 0,
                            "station_network_code": net,
                            "station_code": sta,
                            "station_location_code": locc,
                            "station_latitude_deg": c.latitude,
                            "station_longitude_deg": c.longitude,
                            "station_elevation_m": c.elevation,
                            "trace_channel": bands.get(key, ""),
                            "trace_component_order": "ZNE",
                            "trace_available_components": comps,
                            "trace_sampling_rate_hz": SAMPLING_RATE,
                            "trace_start_time": str(w_start),
                            "trace_p_arrival_sample": p_sample,
                            "trace_s_arrival_sample": s_sample,
                            "trace_calibrated": bool(calibrated.get(key, False)),
                            "trace_label_source": label,
                            "trace_pseudo_confirmed": confirmed,
                            "trace_teacher_p_picks": int(np.sum((tp >= lo) & (tp < hi))),
                            "trace_teacher_s_picks": int(np.sum((ts >= lo) & (ts < hi))),
                            "window_n_confirmed_events": n_events_in,
                            "split": "dev" if w >= n_windows - n_dev else "train",
                        },
                        data,
                    )
                    written_rows += 1
                    stats["traces"] += 1
                    if confirmed:
                        rec_stats["labels_p"] += 1
                        rec_stats["labels_s"] += int(np.isfinite(s_sample))
                if written_rows:
                    rec_stats["windows"] += 1
                    rec_stats["pseudo_windows"] += int(ev is not None)
            rec_stats.update(
                stations=len(arrays),
                teacher_picks=len(picks),
                confirmed_events=len(events),
                seconds_read_and_pick=round(t_pick - t_rec, 1),
                seconds_locate=round(t_loc - t_pick, 1),
                seconds_total=round(time.perf_counter() - t_rec, 1),
            )
            stats["per_record"][record.name] = rec_stats
            for k in ("windows", "pseudo_windows", "labels_p", "labels_s"):
                stats[k] += rec_stats[k]
            stats["confirmed_events"] += len(events)
            stats["teacher_picks"] += len(picks)
            logger.info("Record %s: %s", record.name, rec_stats)
    stats["none_windows"] = stats["windows"] - stats["pseudo_windows"]
    stats["seconds"] = round(time.perf_counter() - started, 1)
    return stats
