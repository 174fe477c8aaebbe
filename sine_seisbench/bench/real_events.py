"""The ``real_events`` benchmark stage: located events on real records (issue 13).

Every method locates the events of the same real records: SINE (``model.classify(stream, inventory=...,
velocity_model=...)``, each SINE variant loaded) and the classical chain
(:func:`sine_seisbench.chain.run_chain`) fed with each loaded picker's own picks (``classify`` at the
picker's default thresholds), named ``chain+PhaseNet``, ``chain+EQTransformer``. Both use the same velocity model
per record. Events are compared with these references:

* ``iceland``: QuakeMigrate's **automatic** catalogue of 27 events (``DATA/events/iceland_qm_2014-08-24``; 32.5 s
  windows, zero-padded by :data:`~sine_seisbench.bench.multistation.ICELAND_PAD_S` on both sides as in the
  ``iceland`` stage). Per window, the method's event nearest in origin time to the window's own event is matched
  when within :data:`ICELAND_MAX_DT_S`; epicentre, depth and ML differences follow. The records are raw counts
  without responses: magnitudes are uncalibrated (SINE marks them; the chain's ML is not computed) and only
  counted. Velocity model: QuakeMigrate's ``inputs/iceland_vmodel.txt`` for every method.
* ``gmprocess``: two catalogued events with StationXML (``DATA/events/gmprocess_multi``): the method's event
  nearest in time to ``event.json``, its epicentral distance, depth difference, magnitude and SINE's saturation
  flag. Default (Southern California) velocity model: none is given for Hawaii or the Coast Ranges.
* ``ridgecrest``: one hour at 3 vertical stations against ComCat's reviewed catalogue: events matched one-to-one
  within :data:`RIDGECREST_MAX_DT_S` and :data:`RIDGECREST_MAX_KM`, against a chance level (the same matching
  with the catalogue shifted by -/+ :data:`CHANCE_SHIFT_S`, mean of the two).
* ``colombia``: the held-out last 2 h of the Mesetas records against the **automatic** GaMMA catalogues of
  SeisMonitor's EQTransformer and PhaseNet picks (agreement, not accuracy), matched within
  :data:`COLOMBIA_MAX_DT_S` and :data:`COLOMBIA_MAX_KM`.
* ``bounds``: on every record, per method, the events outside physical bounds (:func:`bounds_violations`).

An event here is a plain dict (JSON-ready, so that the harness's cache keeps it): ``time`` (UNIX s),
``latitude``, ``longitude``, ``depth_km``, ``magnitude`` (None when absent or uncalibrated), ``uncalibrated``,
``saturated`` (None where the method has no such flag).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd

from ..chain import run_chain
from ..data.layout import DataLayout, as_layout
from ..geometry import Coordinates, StationTable, reference_point, station_key
from ..seisbench_adapter import annotate_args
from ..stations import read_stations
from . import continuous as cont
from . import multistation as ms

Event = dict[str, Any]
Span = tuple[float, float]
Log = Callable[[str], None]
#: ``velocity_model -> TravelTimes``
TravelTimesFactory = Callable[[Any], Any]

#: Iceland: largest origin-time difference (s) to QuakeMigrate's event of the window.
ICELAND_MAX_DT_S = 3.0
#: Iceland: windows read in the quick suite (the first ones in time).
ICELAND_QUICK_EVENTS = 5
#: Ridgecrest: matching rule (origin time, epicentre) and the quick span (s, from the record's start).
RIDGECREST_MAX_DT_S = 5.0
RIDGECREST_MAX_KM = 30.0
RIDGECREST_QUICK_S = 900.0
#: Chance level: the catalogue shifted by minus and plus this many seconds.
CHANCE_SHIFT_S = 60.0
#: Colombia: matching rule against the automatic catalogues.
COLOMBIA_MAX_DT_S = 5.0
COLOMBIA_MAX_KM = 20.0
#: Physical bounds: depth above -(highest station elevation + this) km, or below the maximum depth; epicentre
#: farther than this from the station centroid; magnitude outside the range; origin time outside the record by
#: more than this.
BOUNDS_ABOVE_STATIONS_KM = 1.0
BOUNDS_MAX_DEPTH_KM = 50.0
BOUNDS_MAX_EPICENTRE_KM = 200.0
BOUNDS_MAGNITUDE = (-2.0, 9.5)
BOUNDS_TIME_S = 60.0
#: Regional records (gmprocess nc51194936: stations to 205 km; Colombia: to 280 km): a wider grid search for the
#: chain. Its travel-time table stays the default 200 km one (times beyond it continue linearly): building a
#: TauP table costs about 0.3 s per node, so the stage shares the tables of the other stages.
REGIONAL_SEARCH_RADIUS_KM = 200.0
#: Chain association window: at least this, or the largest station separation / 5 km/s + 2 s (SINE's rule).
CHAIN_MIN_WINDOW_S = 20.0
EARTH_RADIUS_KM = 6371.0

ICELAND_TEXT = (
    "QuakeMigrate's catalogue is automatic (coalescence location, automatic picks, local ML), not an analyst's: "
    "differences measure agreement with another automatic locator in the same velocity model, not error. The "
    "epicentres cluster along the dike, so the geometry varies little. The records are raw counts without "
    "responses: no method has a calibrated magnitude (SINE marks its magnitudes uncalibrated; the chain's ML, "
    "which needs ground velocity, is not computed), so only QuakeMigrate's ML exists and ML differences are "
    "left empty."
)
GMPROCESS_TEXT = (
    "Two ComCat events (one each; event.json only, no picks): the Hawaii record is clipped at all 6 stations "
    "(gmprocess keeps it to test its clipping check), so its amplitudes and magnitudes are not meaningful; "
    "nc51194936 has 3 stations 58-205 km away, one without Z. The default (Southern California) velocity model, "
    "as no model for either region is stored. The chain's ML (Hutton & Boore, Southern "
    "California) is computed from the StationXML-corrected velocity; it has no saturation flag. Single events: "
    "anecdotes, not statistics."
)
RIDGECREST_TEXT = (
    "ComCat's reviewed catalogue is the reference (analyst-reviewed, from the dense regional network); the "
    "record has only 3 vertical stations, so many catalogued events are too small or too far for them and a "
    "low match rate is expected. The aftershock rate is high (about 3 events per minute), hence the chance level: "
    "the same matching against the catalogue shifted by -/+60 s. Matched minus chance is what the method "
    "actually recovers."
)
COLOMBIA_TEXT = (
    "Agreement with **automatic** catalogues only: GaMMA associations of SeisMonitor's automatic EQTransformer "
    "and PhaseNet picks, never reviewed (no SGC catalogue, no magnitudes; GaMMA's depths are not compared). "
    "They hold few events in the held-out span, so the counts are small; the stations lie 50-280 km from the "
    "sequence, so epicentres differ by tens of km between locators."
)


# ----------------------------------------------------------------------------------------------------------------
# Events of the methods
# ----------------------------------------------------------------------------------------------------------------
def _texts(*objects: Any) -> list[str]:
    return [
        str(c.text or "").strip().lower()
        for o in objects
        if o is not None
        for c in getattr(o, "comments", [])
    ]


def catalog_events(catalog: Iterable[obspy.core.event.Event]) -> list[Event]:
    """SINE's ObsPy events as event dicts: the preferred origin (or the first), the preferred magnitude (or the
    first), ``uncalibrated``/``saturated`` from comments (of the event, origin or magnitude) starting with
    those words. An uncalibrated magnitude is kept out of ``magnitude`` (it is in ``raw_magnitude``)."""
    out = []
    for ev in catalog:
        origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
        if origin is None or origin.time is None:
            continue
        mag = ev.preferred_magnitude() or (ev.magnitudes[0] if ev.magnitudes else None)
        texts = _texts(ev, origin, mag)
        uncalibrated = any(t.startswith("uncalibrated") for t in texts)
        value = None if mag is None or mag.mag is None else float(mag.mag)
        out.append(
            {
                "time": float(origin.time.timestamp),
                "latitude": _float(origin.latitude),
                "longitude": _float(origin.longitude),
                "depth_km": _float(origin.depth) / 1000.0,
                "magnitude": None if uncalibrated else value,
                "raw_magnitude": value,
                "uncalibrated": uncalibrated,
                "saturated": any(t.startswith("saturated") for t in texts),
            }
        )
    return sorted(out, key=lambda e: e["time"])


def chain_events(results: Iterable[Mapping[str, Any]], calibrated: bool) -> list[Event]:
    """:func:`~sine_seisbench.chain.run_chain` results as event dicts. Without ``calibrated`` (records in
    counts) the chain's ML is meaningless and dropped (``uncalibrated`` True)."""
    out = []
    for r in results:
        ml = r.get("magnitude")
        ml = float(ml) if calibrated and ml is not None and math.isfinite(float(ml)) else None
        out.append(
            {
                "time": float(obspy.UTCDateTime(r["origin_time"]).timestamp),
                "latitude": _float(r["latitude"]),
                "longitude": _float(r["longitude"]),
                "depth_km": _float(r["depth_km"]),
                "magnitude": ml,
                "raw_magnitude": ml,
                "uncalibrated": not calibrated,
                "saturated": None,
            }
        )
    return sorted(out, key=lambda e: e["time"])


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


# ----------------------------------------------------------------------------------------------------------------
# Matching, chance level, bounds, statistics
# ----------------------------------------------------------------------------------------------------------------
def epicentral_km(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Great-circle distance (km, spherical Earth) between two dicts with ``latitude``/``longitude``; NaN when
    either is not finite."""
    lat1, lon1, lat2, lon2 = (
        math.radians(_float(x))
        for x in (a["latitude"], a["longitude"], b["latitude"], b["longitude"])
    )
    if not all(math.isfinite(v) for v in (lat1, lon1, lat2, lon2)):
        return math.nan
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def match_events(
    events: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    max_dt_s: float,
    max_km: float | None = None,
) -> list[tuple[int, int]]:
    """One-to-one matching of events to references: every pair within ``max_dt_s`` in origin time (and within
    ``max_km`` in epicentre when given; a non-finite epicentre then never matches) is a candidate; candidates are
    taken greedily by increasing time difference (then distance), each event and reference at most once.

    :return: ``(event index, reference index)`` pairs, by reference index.
    """
    ref_times = np.array([r["time"] for r in references], dtype=float)
    order = np.argsort(ref_times)
    sorted_times = ref_times[order]
    candidates = []
    for i, ev in enumerate(events):
        t = float(ev["time"])
        lo = np.searchsorted(sorted_times, t - max_dt_s, side="left")
        hi = np.searchsorted(sorted_times, t + max_dt_s, side="right")
        for j in order[lo:hi]:
            dt = abs(t - ref_times[j])
            km = 0.0
            if max_km is not None:
                km = epicentral_km(ev, references[j])
                if not km <= max_km:
                    continue
            candidates.append((dt, km, i, int(j)))
    candidates.sort()
    used_e: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for _, _, i, j in candidates:
        if i in used_e or j in used_r:
            continue
        used_e.add(i)
        used_r.add(j)
        pairs.append((i, j))
    return sorted(pairs, key=lambda p: p[1])


def chance_matches(
    events: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    max_dt_s: float,
    max_km: float | None,
    span: Span | None = None,
    shift_s: float = CHANCE_SHIFT_S,
) -> float:
    """Chance level of :func:`match_events`: the mean number of matches against the references shifted by
    ``-shift_s`` and ``+shift_s`` (kept where the shifted time lies inside ``span`` when given, so that the count
    of references stays that of the real span)."""
    counts = []
    for shift in (-shift_s, shift_s):
        shifted = [{**r, "time": float(r["time"]) + shift} for r in references]
        if span is not None:
            shifted = [r for r in shifted if span[0] <= r["time"] <= span[1]]
        counts.append(len(match_events(events, shifted, max_dt_s, max_km)))
    return float(np.mean(counts))


def bounds_violations(
    event: Mapping[str, Any], stations: Sequence[Coordinates], span: Span
) -> list[str]:
    """Reasons why an event lies outside physical bounds (empty when it does not):

    ``not finite`` (time, latitude, longitude or depth), ``above surface`` (depth shallower than -(highest
    station elevation + :data:`BOUNDS_ABOVE_STATIONS_KM`)), ``too deep`` (> :data:`BOUNDS_MAX_DEPTH_KM`),
    ``far`` (epicentre more than :data:`BOUNDS_MAX_EPICENTRE_KM` from the station centroid), ``magnitude``
    (a magnitude, calibrated or not, outside :data:`BOUNDS_MAGNITUDE`), ``time`` (origin more than
    :data:`BOUNDS_TIME_S` outside ``span``).
    """
    values = [_float(event.get(k)) for k in ("time", "latitude", "longitude", "depth_km")]
    if not all(math.isfinite(v) for v in values):
        return ["not finite"]
    t, _, _, depth = values
    reasons = []
    top_km = max(c.elevation for c in stations) / 1000.0 if stations else 0.0
    if depth < -(top_km + BOUNDS_ABOVE_STATIONS_KM):
        reasons.append("above surface")
    if depth > BOUNDS_MAX_DEPTH_KM:
        reasons.append("too deep")
    if stations:
        lat0, lon0 = reference_point(stations)
        if epicentral_km(event, {"latitude": lat0, "longitude": lon0}) > BOUNDS_MAX_EPICENTRE_KM:
            reasons.append("far")
    mag = event.get("raw_magnitude", event.get("magnitude"))
    if mag is not None and not BOUNDS_MAGNITUDE[0] <= float(mag) <= BOUNDS_MAGNITUDE[1]:
        reasons.append("magnitude")
    if t < span[0] - BOUNDS_TIME_S or t > span[1] + BOUNDS_TIME_S:
        reasons.append("time")
    return reasons


def bounds_count(
    events: Sequence[Mapping[str, Any]], stations: Sequence[Coordinates], span: Span
) -> dict[str, Any]:
    """``events``, ``out_of_bounds`` (events with any violation) and ``reasons`` (``"reason: n"``, comma-separated)."""
    tally: dict[str, int] = {}
    bad = 0
    for ev in events:
        reasons = bounds_violations(ev, stations, span)
        bad += bool(reasons)
        for r in reasons:
            tally[r] = tally.get(r, 0) + 1
    return {
        "events": len(events),
        "out_of_bounds": bad,
        "reasons": ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())),
    }


def _merge_bounds(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    events = bad = 0
    tally: dict[str, int] = {}
    for p in parts:
        events += p["events"]
        bad += p["out_of_bounds"]
        for item in filter(None, p["reasons"].split(", ")):
            k, v = item.rsplit(": ", 1)
            tally[k] = tally.get(k, 0) + int(v)
    return {
        "events": events,
        "out_of_bounds": bad,
        "reasons": ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())),
    }


def pair_stats(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """Statistics of matched ``(event, reference)`` pairs: epicentral distance median and 90th percentile (km),
    median |depth difference| (km), and the ML difference (event - reference) median and standard deviation over
    the pairs where both have a magnitude (``ml_pairs``)."""
    epi = np.array([epicentral_km(e, r) for e, r in pairs], dtype=float)
    depth = np.array([abs(_float(e["depth_km"]) - _float(r["depth_km"])) for e, r in pairs])
    ml = np.array(
        [
            float(e["magnitude"]) - float(r["magnitude"])
            for e, r in pairs
            if e.get("magnitude") is not None
            and r.get("magnitude") is not None
            and math.isfinite(float(e["magnitude"]))
            and math.isfinite(float(r["magnitude"]))
        ]
    )
    epi, depth = epi[np.isfinite(epi)], depth[np.isfinite(depth)]
    return {
        "epicentre_median_km": float(np.median(epi)) if epi.size else math.nan,
        "epicentre_p90_km": float(np.percentile(epi, 90)) if epi.size else math.nan,
        "depth_median_abs_diff_km": float(np.median(depth)) if depth.size else math.nan,
        "ml_pairs": int(ml.size),
        "ml_diff_median": float(np.median(ml)) if ml.size else math.nan,
        "ml_diff_std": float(ml.std()) if ml.size else math.nan,
    }


def nearest_in_time(events: Sequence[Event], t: float) -> Event | None:
    """The event whose origin time is nearest to ``t`` (None without events)."""
    return min(events, key=lambda e: abs(e["time"] - t), default=None)


# ----------------------------------------------------------------------------------------------------------------
# Records and methods
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One real record as every method gets it.

    :param stream: What the pickers and SINE read (raw counts, or as stored).
    :param inventory: SINE's ``inventory=`` (an ObsPy Inventory with responses, or a station DataFrame).
    :param coordinates: The chain's station coordinates (``NET.STA.LOC``), stations of ``stream`` only.
    :param span: The record's real span (UNIX s; without padding).
    :param velocity_model: For SINE and the chain alike (None: Southern California).
    :param velocity: Ground velocity (m/s) for the chain's ML; None when the record is uncalibrated.
    :param sine_kwargs: SINE's extra ``classify`` arguments (Ridgecrest: ``min_phases=4``, since 3 vertical
                        stations give at most 3 P and the S seen on Z; 4 phases fix the 4 unknowns).
    """

    stream: obspy.Stream
    inventory: Any
    coordinates: dict[str, Coordinates]
    span: Span
    velocity_model: str | None = None
    velocity: obspy.Stream | None = None
    search_radius_km: float = 100.0
    #: Extra classify arguments for SINE on this record
    sine_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def chain_window_s(self) -> float:
        """The chain's association window: the largest station separation / 5 km/s + 2 s, at least
        :data:`CHAIN_MIN_WINDOW_S`."""
        coords = list(self.coordinates.values())
        sep = max(
            (
                epicentral_km(_latlon(a), _latlon(b))
                for i, a in enumerate(coords)
                for b in coords[i + 1 :]
            ),
            default=0.0,
        )
        return max(CHAIN_MIN_WINDOW_S, sep / 5.0 + 2.0)


def _latlon(c: Coordinates) -> dict[str, float]:
    return {"latitude": c.latitude, "longitude": c.longitude}


def station_coordinates(stream: obspy.Stream, inventory: Any) -> dict[str, Coordinates]:
    """Coordinates (``NET.STA.LOC``) of the stations of ``stream`` found in ``inventory`` (Inventory or
    DataFrame), at the stream's start."""
    table = StationTable.from_any(inventory)
    out = {}
    for tr in stream:
        key = station_key(tr.id)
        if key not in out:
            c = table.get(key, tr.stats.starttime)
            if c is not None:
                out[key] = c
    return out


def ground_velocity(stream: obspy.Stream, inventory: obspy.Inventory) -> obspy.Stream:
    """``stream`` divided by each channel's overall sensitivity where its input is velocity (m/s); other
    channels (no response, accelerometers) are left out.

    The overall sensitivity is read directly (``instrument_sensitivity``), since ObsPy's ``remove_sensitivity``
    fails on responses without stages (those of the Colombia StationXML). Where a channel has several identical
    epochs (FLO2 there), the first is used.
    """
    out = obspy.Stream()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Found more than one matching response")
        for tr in stream:
            try:
                sens = inventory.get_response(tr.id, tr.stats.starttime).instrument_sensitivity
            except Exception:  # noqa: BLE001 - no response for this channel
                continue
            units = str(getattr(sens, "input_units", "") or "").upper()
            if sens is None or not sens.value or units not in ("M/S", "M/SEC"):
                continue
            tr = tr.copy()
            tr.data = tr.data.astype(np.float64) / float(sens.value)
            out += tr
    return out


def method_names(models: Mapping[str, Any]) -> list[str]:
    """SINE's variants as they are, and ``chain+NAME`` for every other (picker) model."""
    return [n if n.startswith("SINE") else f"chain+{n}" for n in models]


def supports_velocity_model(model: Any) -> bool:
    """Whether a SINE takes ``velocity_model=`` (older ones ignore it with SeisBench's warning)."""
    try:
        return "velocity_model" in annotate_args(model)
    except AttributeError:  # not a SeisBench model
        return False


_TT: dict[str, Any] = {}


def default_travel_times(velocity_model: Any) -> Any:
    """A :class:`~sine_seisbench.traveltimes.TravelTimes` table on the default grid (200 km, 30 km), one per
    velocity model and process (tables are cached on disk too)."""
    from ..traveltimes import TravelTimes

    key = str(velocity_model)
    if key not in _TT:
        _TT[key] = TravelTimes(velocity_model=velocity_model)
    return _TT[key]


def run_method(
    method: str,
    models: Mapping[str, Any],
    record: Record,
    travel_times: TravelTimesFactory = default_travel_times,
) -> list[Event]:
    """Events of one method on one record.

    SINE: ``classify(stream, inventory=..., velocity_model=...)`` (the velocity model only when the record has
    one). ``chain+NAME``: the picker's ``classify`` picks, then :func:`~sine_seisbench.chain.run_chain` on
    the ground velocity (or the record as it is, its ML then dropped) in the record's velocity model.
    """
    if method.startswith("chain+"):
        picks = models[method[len("chain+") :]].classify(record.stream).picks
        tt = travel_times(record.velocity_model)
        results = run_chain(
            record.velocity if record.velocity is not None else record.stream,
            picks,
            record.coordinates,
            tt,
            window_s=record.chain_window_s,
            search_radius_km=record.search_radius_km,
        )
        return chain_events(results, calibrated=record.velocity is not None)
    kwargs: dict[str, Any] = {"inventory": record.inventory, **record.sine_kwargs}
    if record.velocity_model is not None:
        kwargs["velocity_model"] = record.velocity_model
    return catalog_events(models[method].classify(record.stream, **kwargs).events)


def _span(stream: obspy.Stream) -> Span:
    return (
        float(min(tr.stats.starttime for tr in stream).timestamp),
        float(max(tr.stats.endtime for tr in stream).timestamp),
    )


def _velocity_note(models: Mapping[str, Any], label: str) -> str:
    sine = [n for n in models if n.startswith("SINE")]
    ignored = [n for n in sine if not supports_velocity_model(models[n])]
    if ignored:
        return (
            f"velocity model {label} (the chain; ignored by {', '.join(ignored)}, whose classify takes no "
            "velocity_model: Southern California there)"
        )
    return f"velocity model {label} for every method"


# ----------------------------------------------------------------------------------------------------------------
# Iceland
# ----------------------------------------------------------------------------------------------------------------
def iceland_catalogue(folder: Path) -> dict[str, Event]:
    """QuakeMigrate's catalogue by event id (ML None where empty)."""
    frame = pd.read_csv(folder / "catalog.csv", dtype={"event_id": str})
    return {
        str(r.event_id): {
            "time": float(obspy.UTCDateTime(r.time).timestamp),
            "latitude": float(r.latitude),
            "longitude": float(r.longitude),
            "depth_km": float(r.depth_km),
            "magnitude": None if pd.isna(r.ML) else float(r.ML),
        }
        for r in frame.itertuples()
    }


def iceland_record(folder: Path, event_id: str) -> Record:
    """One Iceland window, zero-padded by ``ICELAND_PAD_S`` on both sides; raw counts, no responses."""
    stream = obspy.read(str(folder / "benchmark" / f"{event_id}.mseed"))
    inventory = ms.iceland_inventory(folder)
    return Record(
        stream=ms._padded(stream, ms.ICELAND_PAD_S),
        inventory=inventory,
        coordinates=station_coordinates(stream, inventory),
        span=_span(stream),
        velocity_model=str(folder / "inputs" / "iceland_vmodel.txt"),
        velocity=None,
    )


def iceland_events(
    method: str,
    models: Mapping[str, Any],
    folder: Path,
    event_ids: Sequence[str],
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, dict[str, Any]]:
    """Per window: the method's events and the window's bounds count."""
    out = {}
    for eid in event_ids:
        record = iceland_record(folder, eid)
        events = run_method(method, models, record, travel_times)
        out[eid] = {
            "events": events,
            "bounds": bounds_count(events, list(record.coordinates.values()), record.span),
        }
    return out


def iceland_rows(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]], catalogue: Mapping[str, Event]
) -> list[dict[str, Any]]:
    """Per method: windows, events (summed over the windows, which overlap), windows whose own event is matched
    (the nearest event within :data:`ICELAND_MAX_DT_S`), events matching no QuakeMigrate event, location and ML
    statistics of the matches (:func:`pair_stats`), uncalibrated magnitudes and out-of-bounds events."""
    ref_times = np.array([r["time"] for r in catalogue.values()])
    rows = []
    for method, windows in results.items():
        pairs = []
        n_events = unmatched = uncalibrated = 0
        for eid, window in windows.items():
            events = window["events"]
            ref = catalogue[eid]
            n_events += len(events)
            uncalibrated += sum(bool(e.get("uncalibrated")) for e in events)
            unmatched += sum(
                not np.any(np.abs(ref_times - e["time"]) <= ICELAND_MAX_DT_S) for e in events
            )
            best = nearest_in_time(events, ref["time"])
            if best is not None and abs(best["time"] - ref["time"]) <= ICELAND_MAX_DT_S:
                pairs.append((best, ref))
        dts = [e["time"] - r["time"] for e, r in pairs]
        bounds = _merge_bounds(w["bounds"] for w in windows.values())
        rows.append(
            {
                "method": method,
                "windows": len(windows),
                "events": n_events,
                "matched": len(pairs),
                "events_matching_no_qm_event": unmatched,
                "origin_dt_median_s": float(np.median(dts)) if dts else math.nan,
                **pair_stats(pairs),
                "uncalibrated_magnitudes": uncalibrated,
                "out_of_bounds": bounds["out_of_bounds"],
            }
        )
    return rows


def stage_iceland(
    models: Mapping[str, Any],
    data: DataLayout | str | Path,
    cache: ms.ResultCache,
    quick: bool,
    log: Log,
    travel_times: TravelTimesFactory = default_travel_times,
    n_events: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Iceland rows, bounds rows and the velocity-model note; every window (the first
    :data:`ICELAND_QUICK_EVENTS` in the quick suite, or ``n_events``)."""
    folder = as_layout(data).iceland
    if not (folder / "catalog.csv").exists() or not (folder / "benchmark").is_dir():
        log(f"real_events: {folder} (catalog.csv, benchmark/) not found; Iceland skipped")
        return [], [], ""
    catalogue = iceland_catalogue(folder)
    ids = sorted(p.stem for p in (folder / "benchmark").glob("*.mseed") if p.stem in catalogue)
    n = n_events if n_events is not None else (ICELAND_QUICK_EVENTS if quick else None)
    ids = ids[:n] if n is not None else ids
    suite = f"iceland_{len(ids)}" if n is not None else "iceland_all"
    results = {
        method: cache.get(
            "real_events",
            method,
            suite,
            compute=lambda method=method: iceland_events(method, models, folder, ids, travel_times),
        )
        for method in method_names(models)
    }
    bounds = [
        {
            "record": f"iceland ({len(ids)} windows)",
            "method": m,
            **_merge_bounds(w["bounds"] for w in r.values()),
        }
        for m, r in results.items()
    ]
    return iceland_rows(results, catalogue), bounds, _velocity_note(models, "iceland_vmodel.txt")


# ----------------------------------------------------------------------------------------------------------------
# gmprocess events
# ----------------------------------------------------------------------------------------------------------------
def gmprocess_reference(folder: Path) -> Event:
    """``event.json`` as an event dict (plus ``id`` and ``magnitude_type``)."""
    data = json.loads((folder / "event.json").read_text())
    return {
        "id": data["id"],
        "time": float(obspy.UTCDateTime(data["time"]).timestamp),
        "latitude": float(data["latitude"]),
        "longitude": float(data["longitude"]),
        "depth_km": float(data["depth_km"]),
        "magnitude": float(data["magnitude"]),
        "magnitude_type": str(data.get("magnitude_type", "")),
    }


def gmprocess_record(folder: Path) -> Record:
    """The raw records of one gmprocess event with its StationXML (responses: SINE calibrates itself, the chain
    gets the ground velocity)."""
    stream = obspy.Stream()
    for path in sorted(folder.glob("*.mseed")):
        stream += obspy.read(str(path))
    files = sorted(folder.glob("*.xml"))
    inventory = read_stations(files) if files else obspy.Inventory()
    coords = station_coordinates(stream, inventory)
    far = max(
        (epicentral_km(_latlon(c), gmprocess_reference(folder)) for c in coords.values()),
        default=0.0,
    )
    regional = far > 150.0
    return Record(
        stream=stream,
        inventory=inventory,
        coordinates=coords,
        span=_span(stream),
        velocity_model=None,
        velocity=ground_velocity(stream, inventory),
        search_radius_km=REGIONAL_SEARCH_RADIUS_KM if regional else 100.0,
    )


def gmprocess_events(
    method: str,
    models: Mapping[str, Any],
    folder: Path,
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, Any]:
    record = gmprocess_record(folder)
    events = run_method(method, models, record, travel_times)
    return {
        "events": events,
        "bounds": bounds_count(events, list(record.coordinates.values()), record.span),
    }


def gmprocess_row(method: str, result: Mapping[str, Any], ref: Event) -> dict[str, Any]:
    """The method's event nearest in time to the catalogued one: time and epicentral differences, depth
    difference (method - catalogue), magnitude (None when uncalibrated or absent) and flags."""
    ev = nearest_in_time(result["events"], ref["time"])
    row: dict[str, Any] = {
        "event": ref["id"],
        "method": method,
        "events": len(result["events"]),
        "catalogue_magnitude": f"{ref['magnitude']:.1f} {ref['magnitude_type']}",
        "out_of_bounds": result["bounds"]["out_of_bounds"],
    }
    if ev is None:
        return row
    return {
        **row,
        "origin_dt_s": ev["time"] - ref["time"],
        "epicentre_km": epicentral_km(ev, ref),
        "depth_diff_km": _float(ev["depth_km"]) - ref["depth_km"],
        "magnitude": ev["magnitude"],
        "uncalibrated": ev["uncalibrated"],
        "saturated": ev["saturated"],
    }


def stage_gmprocess(
    models: Mapping[str, Any],
    data: DataLayout | str | Path,
    cache: ms.ResultCache,
    log: Log,
    travel_times: TravelTimesFactory = default_travel_times,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """gmprocess rows and bounds rows (both events in both suites: they are short)."""
    root = as_layout(data).gmprocess
    folders = sorted(p for p in root.glob("*") if (p / "event.json").exists())
    if not folders:
        log(f"real_events: {root} (*/event.json) not found; gmprocess events skipped")
        return [], []
    rows, bounds = [], []
    for folder in folders:
        ref = gmprocess_reference(folder)
        for method in method_names(models):
            result = cache.get(
                "real_events",
                method,
                f"gmprocess_{folder.name}",
                compute=lambda method=method, folder=folder: gmprocess_events(
                    method, models, folder, travel_times
                ),
            )
            rows.append(gmprocess_row(method, result, ref))
            bounds.append(
                {"record": f"gmprocess {folder.name}", "method": method, **result["bounds"]}
            )
    return rows, bounds


# ----------------------------------------------------------------------------------------------------------------
# Ridgecrest
# ----------------------------------------------------------------------------------------------------------------
def ridgecrest_catalogue(folder: Path) -> list[Event]:
    """ComCat's reviewed events of the Ridgecrest hour (the whole file: the chance level shifts it)."""
    frame = pd.read_csv(folder / "catalog_comcat_2019-07-06T08.csv")
    return [
        {
            "time": float(pd.Timestamp(r.time).timestamp()),
            "latitude": float(r.latitude),
            "longitude": float(r.longitude),
            "depth_km": float(r.depth),
            "magnitude": float(r.mag),
        }
        for r in frame.itertuples()
    ]


def ridgecrest_record(folder: Path, quick: bool) -> Record:
    """The 3 vertical stations (m/s: counts / sensitivity), coordinates from ``stations_phaseno.csv`` with
    elevation 0 as in the ``continuous`` stage; the first :data:`RIDGECREST_QUICK_S` in the quick suite."""
    stream = cont.read_records(folder)
    if quick:
        t0 = min(tr.stats.starttime for tr in stream)
        stream.trim(t0, t0 + RIDGECREST_QUICK_S)
    frame = cont.phaseno_stations(folder)
    frame = frame[["network", "station", "latitude", "longitude", "elevation"]]
    return Record(
        stream=stream,
        inventory=frame,
        coordinates=station_coordinates(stream, frame),
        span=_span(stream),
        velocity_model=None,
        velocity=stream,
        sine_kwargs={"min_phases": 4},
    )


def record_events(
    record: Record,
    method: str,
    models: Mapping[str, Any],
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, Any]:
    """One method's events on a continuous record, with its span and its count of events out of bounds."""
    events = run_method(method, models, record, travel_times)
    return {
        "events": events,
        "span": list(record.span),
        "bounds": bounds_count(events, list(record.coordinates.values()), record.span),
    }


def ridgecrest_events(
    method: str,
    models: Mapping[str, Any],
    folder: Path,
    quick: bool,
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, Any]:
    return record_events(ridgecrest_record(folder, quick), method, models, travel_times)


def catalogue_rows(
    method: str,
    events: Sequence[Event],
    catalogue: Sequence[Event],
    span: Span,
    max_dt_s: float,
    max_km: float,
    chance: bool = True,
) -> dict[str, Any]:
    """Catalogue events inside ``span``, the method's events, one-to-one matches (:func:`match_events`), the
    chance level (:func:`chance_matches`) and the epicentre median distance of the matches."""
    inside = [r for r in catalogue if span[0] <= r["time"] <= span[1]]
    pairs = match_events(events, inside, max_dt_s, max_km)
    stats = pair_stats([(events[i], inside[j]) for i, j in pairs])
    row: dict[str, Any] = {
        "method": method,
        "catalogue_events": len(inside),
        "events": len(events),
        "matched": len(pairs),
    }
    if chance:
        level = chance_matches(events, catalogue, max_dt_s, max_km, span)
        row["chance_matched"] = level
        row["matched_minus_chance"] = len(pairs) - level
    row["epicentre_median_km"] = stats["epicentre_median_km"]
    row["depth_median_abs_diff_km"] = stats["depth_median_abs_diff_km"]
    return row


def stage_ridgecrest(
    models: Mapping[str, Any],
    data: DataLayout | str | Path,
    cache: ms.ResultCache,
    quick: bool,
    log: Log,
    travel_times: TravelTimesFactory = default_travel_times,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    folder = as_layout(data).ridgecrest
    if not (folder / "catalog_comcat_2019-07-06T08.csv").exists():
        log(
            f"real_events: {folder} (catalog_comcat_2019-07-06T08.csv) not found; Ridgecrest skipped"
        )
        return [], [], ""
    catalogue = ridgecrest_catalogue(folder)
    label = f"ridgecrest ({'15 min' if quick else '1 h'})"
    rows, bounds = [], []
    for method in method_names(models):
        result = cache.get(
            "real_events",
            method,
            f"ridgecrest_{'quick' if quick else 'full'}",
            compute=lambda method=method: ridgecrest_events(
                method, models, folder, quick, travel_times
            ),
        )
        span = (float(result["span"][0]), float(result["span"][1]))
        rows.append(
            {
                "record": label,
                **catalogue_rows(
                    method,
                    result["events"],
                    catalogue,
                    span,
                    RIDGECREST_MAX_DT_S,
                    RIDGECREST_MAX_KM,
                ),
            }
        )
        bounds.append({"record": label, "method": method, **result["bounds"]})
    return rows, bounds, label


# ----------------------------------------------------------------------------------------------------------------
# Colombia
# ----------------------------------------------------------------------------------------------------------------
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")


def automatic_catalogue(folder: Path, start: float, end: float) -> list[Event]:
    """A GaMMA catalogue of SeisMonitor (``associations.xml`` read as SeisComP XML for the epicentres; the depth
    from ``catalog.csv``, since the XML's is z/1000), events between ``start`` and ``end`` (UNIX s)."""
    cat = obspy.read_events(str(folder / "associations.xml"), format="SCML")
    depths: dict[float, float] = {}
    csv = folder / "catalog.csv"
    if csv.exists():
        frame = pd.read_csv(csv)
        for t, z in zip(frame["time"], frame["z(km)"], strict=True):
            if _TIME.fullmatch(str(t)):
                depths[round(obspy.UTCDateTime(str(t)).timestamp, 2)] = float(z)
    out = []
    for ev in cat:
        origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
        if origin is None or not start <= origin.time.timestamp <= end:
            continue
        t = float(origin.time.timestamp)
        out.append(
            {
                "time": t,
                "latitude": _float(origin.latitude),
                "longitude": _float(origin.longitude),
                "depth_km": depths.get(round(t, 2), math.nan),
                "magnitude": None,
            }
        )
    return sorted(out, key=lambda e: e["time"])


def colombia_record(folder: Path, end: obspy.UTCDateTime) -> Record:
    """The held-out records from 23:00 UTC (:func:`~sine_seisbench.bench.multistation.read_colombia`) with the
    StationXML (responses)."""
    stream = ms.read_colombia(folder, ms.COLOMBIA_START, end)
    inventory = read_stations(folder / "stations" / "inv.xml")
    return Record(
        stream=stream,
        inventory=inventory,
        coordinates=station_coordinates(stream, inventory),
        span=_span(stream),
        velocity_model=None,
        velocity=ground_velocity(stream, inventory),
        search_radius_km=REGIONAL_SEARCH_RADIUS_KM,
    )


def colombia_events(
    method: str,
    models: Mapping[str, Any],
    folder: Path,
    end: obspy.UTCDateTime,
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, Any]:
    return record_events(colombia_record(folder, end), method, models, travel_times)


def stage_colombia(
    models: Mapping[str, Any],
    data: DataLayout | str | Path,
    cache: ms.ResultCache,
    quick: bool,
    log: Log,
    travel_times: TravelTimesFactory = default_travel_times,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Colombia rows (one per automatic catalogue and method) and bounds rows; 23:00-01:00 UTC, 23:00-23:20 in
    the quick suite."""
    folder = as_layout(data).colombia
    if not (folder / "waveforms").is_dir() or not (folder / "stations" / "inv.xml").exists():
        log(f"real_events: {folder} (waveforms/, stations/inv.xml) not found; Colombia skipped")
        return [], [], ""
    end = ms.COLOMBIA_START + ms.COLOMBIA_QUICK_S if quick else ms.COLOMBIA_END
    label = f"colombia {ms.COLOMBIA_START.strftime('%H:%M')}-{end.strftime('%H:%M')} UTC"
    references = {}
    for kind, name in (
        ("eqt", "GaMMA on SeisMonitor EQT picks"),
        ("pnet", "GaMMA on SeisMonitor PhaseNet picks"),
    ):
        sub = folder / "automatic" / f"events_{kind}"
        if (sub / "associations.xml").exists():
            references[name] = automatic_catalogue(sub, ms.COLOMBIA_START.timestamp, end.timestamp)
        else:
            log(f"real_events: {sub / 'associations.xml'} not found; that catalogue left out")
    rows, bounds = [], []
    for method in method_names(models):
        result = cache.get(
            "real_events",
            method,
            f"colombia_{'quick' if quick else 'full'}",
            compute=lambda method=method: colombia_events(
                method, models, folder, end, travel_times
            ),
        )
        span = (float(result["span"][0]), float(result["span"][1]))
        for ref_name, catalogue in references.items():
            rows.append(
                {
                    "span": label,
                    "reference": ref_name,
                    **catalogue_rows(
                        method,
                        result["events"],
                        catalogue,
                        span,
                        COLOMBIA_MAX_DT_S,
                        COLOMBIA_MAX_KM,
                        chance=False,
                    ),
                }
            )
        bounds.append({"record": label, "method": method, **result["bounds"]})
    return rows, bounds, label


# ----------------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------------
def stage_real_events(
    models: Mapping[str, Any],
    data: DataLayout | str | Path,
    cache: ms.ResultCache,
    quick: bool,
    log: Log,
    travel_times: TravelTimesFactory = default_travel_times,
) -> dict[str, Any]:
    """All four records: ``{"iceland": rows, "gmprocess": rows, "ridgecrest": rows, "colombia": rows,
    "bounds": rows, "notes": {record: text}}`` (an absent folder leaves its rows empty, with a log line).

    :param data: The benchmark data's :class:`~sine_seisbench.data.layout.DataLayout`, or its root folder.
    """
    layout = as_layout(data)
    iceland, b_ice, ice_note = stage_iceland(models, layout, cache, quick, log, travel_times)
    gmp, b_gmp = stage_gmprocess(models, layout, cache, log, travel_times)
    ridge, b_ridge, _ = stage_ridgecrest(models, layout, cache, quick, log, travel_times)
    colombia, b_col, _ = stage_colombia(models, layout, cache, quick, log, travel_times)
    return {
        "iceland": iceland,
        "gmprocess": gmp,
        "ridgecrest": ridge,
        "colombia": colombia,
        "bounds": b_ice + b_gmp + b_ridge + b_col,
        "notes": {
            "iceland": ice_note,
            "default": "velocity model: Southern California (the default) for every method",
        },
    }
