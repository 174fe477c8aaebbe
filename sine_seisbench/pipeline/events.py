"""From picks and event-head outputs to located events: association, de-duplication, ObsPy Catalog."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import obspy
import seisbench.util as sbu
from obspy.core.event import (
    Arrival,
    Comment,
    CreationInfo,
    Event,
    Magnitude,
    Origin,
    OriginQuality,
    OriginUncertainty,
    Pick,
    QuantityError,
    ResourceIdentifier,
    StationMagnitude,
    WaveformStreamID,
)
from obspy.geodetics import degrees2kilometers, gps2dist_azimuth, kilometers2degrees

from ..geometry import Coordinates, far_stations, reference_point, station_key, unproject
from ..ids import AGENCY, named_id, resource_id


@dataclass
class Candidate:
    """P picks of one station group that may belong to one earthquake, and the estimate made for them."""

    group: list[str]
    p_picks: list[sbu.Pick]
    reference: tuple[float, float] = (0.0, 0.0)
    mean: np.ndarray = field(default_factory=lambda: np.zeros(4))
    std: np.ndarray = field(default_factory=lambda: np.zeros(4))
    latitude: float = 0.0
    longitude: float = 0.0
    origin_time: obspy.UTCDateTime | None = None
    origin_time_std: float = 0.0
    #: The event step's result (:class:`~sine_seisbench.pipeline.locate.EventEstimate`), times relative to window_start
    estimate: Any = None
    window_start: obspy.UTCDateTime | None = None
    #: Why the event step found no event here (acceptance rule), or None
    rejected: str | None = None

    def set_estimate(self, result: Any, window_start: obspy.UTCDateTime, tt: Any = None) -> None:
        """Takes the event step's result: an :class:`~sine_seisbench.pipeline.locate.EventEstimate` or a reason."""
        self.window_start = window_start
        if isinstance(result, str):
            self.rejected, self.estimate = result, None
            self.latitude = self.longitude = float("nan")
            self.mean = np.full(4, np.nan)
            self.std = np.full(4, np.nan)
            self.origin_time = None
            return
        self.rejected, self.estimate = None, result
        self.latitude, self.longitude = unproject(result.east_km, result.north_km, *self.reference)
        cov = result.covariance
        self.mean = np.array([result.east_km, result.north_km, result.depth_km, result.magnitude])
        self.std = np.sqrt(np.clip(np.array([cov[0, 0], cov[1, 1], cov[2, 2], 0.0]), 0, None))
        self.std[3] = result.magnitude_std
        self.origin_time = window_start + result.origin_s
        self.origin_time_std = float(math.sqrt(max(cov[3, 3], 0.0)))

    def copy_estimate(self, other: Candidate) -> None:
        """Takes another candidate's estimate (same picks and window): the streaming engine's reuse."""
        for name in (
            "reference",
            "mean",
            "std",
            "latitude",
            "longitude",
            "origin_time",
            "origin_time_std",
            "estimate",
            "window_start",
            "rejected",
        ):
            setattr(self, name, getattr(other, name))

    @property
    def first_p(self) -> obspy.UTCDateTime:
        return min(p.peak_time for p in self.p_picks)

    @property
    def stations(self) -> set[str]:
        return {p.trace_id for p in self.p_picks}


def greedy_clusters(
    picks: list[sbu.Pick], window_s: float, min_stations: int
) -> Iterator[tuple[int, int, list[sbu.Pick] | None]]:
    """The greedy rule of :func:`associate` over P picks sorted by time, one cluster at a time.

    A cluster starts at the earliest unused pick and takes the earliest pick of every other station within
    ``window_s``; with at least ``min_stations`` stations it is a candidate and its picks are used, otherwise
    only its first pick is.

    :return: Per cluster ``(i, next_i, picks)``: its first pick's index, the index the next cluster starts at,
             and its picks (one per station) or None when it has too few stations. A streaming caller stops
             at a cluster that is not final yet and resumes from its first pick later.
    """
    i = 0
    while i < len(picks):
        t0 = picks[i].peak_time
        chosen: dict[str, sbu.Pick] = {}
        j = i
        while j < len(picks) and picks[j].peak_time - t0 <= window_s:
            chosen.setdefault(picks[j].trace_id, picks[j])
            j += 1
        if len(chosen) >= min_stations:
            yield i, j, list(chosen.values())
            i = j
        else:
            yield i, i + 1, None
            i += 1


def associate(
    p_picks: sbu.PickList, group: list[str], window_s: float, min_stations: int
) -> list[Candidate]:
    """Greedy time clustering of a group's P picks (:func:`greedy_clusters`): one candidate per cluster of at
    least ``min_stations`` stations."""
    members = set(group)
    picks = sorted((p for p in p_picks if p.trace_id in members), key=lambda p: p.peak_time)
    return [
        Candidate(group=group, p_picks=chosen)
        for _, _, chosen in greedy_clusters(picks, window_s, min_stations)
        if chosen is not None
    ]


def hypocentral_distance_km(
    lat: float, lon: float, depth_km: float, station: Coordinates
) -> tuple[float, float, float]:
    """Hypocentral distance (km), epicentral distance (km) and azimuth event → station (degrees)."""
    epi_m, az, _ = gps2dist_azimuth(lat, lon, station.latitude, station.longitude)
    epi = epi_m / 1000.0
    return math.hypot(epi, depth_km + station.elevation / 1000.0), epi, az


def _pick_key(pick: sbu.Pick) -> tuple[str, float]:
    return pick.trace_id, round(pick.peak_time.timestamp, 3)


@dataclass(frozen=True)
class MergeKey:
    """What the merge rule (:func:`merge_sets_of`) reads of one estimate of an earthquake.

    :param p_picks: ``(NET.STA.LOC, P time rounded to 1 ms)`` of its P picks.
    :param stations: Number of stations with a P pick (more is better).
    :param horizontal_sigma_km: ``hypot(std east, std north)`` of the epicentre (smaller is better).
    :param tie: Last tie-breaker (an id), smaller first; "" keeps the input order.
    """

    p_picks: frozenset[tuple[str, float]]
    origin_time: obspy.UTCDateTime
    latitude: float
    longitude: float
    stations: int
    horizontal_sigma_km: float
    tie: str = ""

    @classmethod
    def of_candidate(cls, cand: Candidate) -> MergeKey:
        return cls(
            frozenset(_pick_key(p) for p in cand.p_picks),
            cand.origin_time,
            cand.latitude,
            cand.longitude,
            len(cand.stations),
            float(np.hypot(*cand.std[:2])),
        )

    @classmethod
    def of_event(cls, event: Event) -> MergeKey:
        """Of an ObsPy Event written by :func:`candidate_to_event` (the archive merges chunks' QuakeML): its P
        Picks (the event step's P arrivals), the epicentre's standard errors from the origin's latitude and
        longitude errors, the resource id as tie-breaker."""
        origin = event.preferred_origin() or event.origins[0]
        p_picks = set()
        for pick in event.picks:
            if (pick.phase_hint or "").upper() != "P":
                continue
            w = pick.waveform_id
            key = f"{w.network_code}.{w.station_code}.{w.location_code or ''}"
            p_picks.add((key, round(pick.time.timestamp, 3)))

        def km(errors: Any, factor: float = 1.0) -> float:
            value = None if errors is None else errors.uncertainty
            return math.inf if value is None else degrees2kilometers(float(value)) * factor

        sigma = math.hypot(
            km(origin.latitude_errors),
            km(origin.longitude_errors, max(math.cos(math.radians(origin.latitude)), 1e-6)),
        )
        return cls(
            frozenset(p_picks),
            origin.time,
            origin.latitude,
            origin.longitude,
            len({k for k, _ in p_picks}),
            sigma,
            str(event.resource_id),
        )


def merge_sets_of(
    keys: list[MergeKey], merge_time_s: float, merge_distance_km: float
) -> list[list[int]]:
    """Indices of estimates that describe one earthquake, one list per earthquake, each list ordered best
    first (most stations, then smallest horizontal uncertainty, then ``tie``).

    Two estimates are one earthquake when they share a P pick, or when their origin times differ by at most
    ``merge_time_s`` and their epicentres by at most ``merge_distance_km``.
    """
    n = len(keys)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    pick_owner: dict[tuple[str, float], int] = {}
    for i, key in enumerate(keys):
        for pick in sorted(key.p_picks):
            if pick in pick_owner:
                parent[find(i)] = find(pick_owner[pick])
            else:
                pick_owner[pick] = i
    order = sorted(range(n), key=lambda i: keys[i].origin_time)
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1 :]:
            if keys[b].origin_time - keys[a].origin_time > merge_time_s:
                break
            if find(a) == find(b):  # already one earthquake (a shared P pick): no distance needed
                continue
            dist_m, _, _ = gps2dist_azimuth(
                keys[a].latitude, keys[a].longitude, keys[b].latitude, keys[b].longitude
            )
            if dist_m / 1000.0 <= merge_distance_km:
                parent[find(a)] = find(b)

    sets: dict[int, list[int]] = {}
    for i in range(n):
        sets.setdefault(find(i), []).append(i)
    out = []
    for members in sets.values():
        members.sort(
            key=lambda i: (-keys[i].stations, keys[i].horizontal_sigma_km, keys[i].tie)
        )
        out.append(members)
    return out


def merge_sets(
    candidates: list[Candidate], merge_time_s: float, merge_distance_km: float
) -> list[list[int]]:
    """:func:`merge_sets_of` on located candidates (classify's and the monitor's merge)."""
    return merge_sets_of(
        [MergeKey.of_candidate(c) for c in candidates], merge_time_s, merge_distance_km
    )


def merge_members(candidates: list[Candidate], members: list[int]) -> Candidate:
    """The best candidate of a merge set (first member), gaining the others' picks at stations it lacks."""
    best = candidates[members[0]]
    have = best.stations
    for other in members[1:]:
        for pick in candidates[other].p_picks:
            if pick.trace_id not in have:
                best.p_picks.append(pick)
                have.add(pick.trace_id)
    return best


def merge_candidates(
    candidates: list[Candidate], merge_time_s: float, merge_distance_km: float
) -> list[Candidate]:
    """Merge candidates that describe one earthquake (overlapping groups or windows); see :func:`merge_sets`.

    Of each set the candidate with the most stations (then the smallest horizontal uncertainty) is kept; it
    gains the other candidates' picks at stations it lacks.
    """
    merged = [
        merge_members(candidates, members)
        for members in merge_sets(candidates, merge_time_s, merge_distance_km)
    ]
    return sorted(merged, key=lambda c: c.origin_time)


#: Smallest and largest magnitude an event may have (below -2 no network detects it; above 9.5 none was ever
#: recorded).
MIN_MAGNITUDE = -2.0
MAX_MAGNITUDE = 9.5
#: Deepest hypocentre (km below sea level): no earthquake occurs below the mantle transition zone (~700 km).
MAX_DEPTH_KM = 700.0
#: How far (km) a hypocentre may lie above the highest station of its group (the event head's depth is a
#: Gaussian estimate: a shallow event may come out slightly negative; published depths are clipped at 0).
MAX_HEIGHT_ABOVE_STATIONS_KM = 5.0
#: The epicentre may lie at most ``max(EPICENTRE_APERTURE_FACTOR * R, EPICENTRE_MIN_KM)`` from the centroid of
#: its group, ``R`` being the group's aperture radius; see :func:`implausible`.
EPICENTRE_APERTURE_FACTOR = 2.0
EPICENTRE_MIN_KM = 120.0
#: The origin time may lie at most this many seconds after the candidate's first P pick. The origin time is
#: the median over stations of P time minus straight-ray travel time, so an epicentre ``d`` km off moves it
#: by up to ``d / vp``: a few seconds after the first pick mean an imprecise location of a real earthquake
#: (seen: 2.3 s for the RJOB record replayed on the example network), not an unphysical event.
ORIGIN_AFTER_FIRST_P_S = 5.0


@dataclass(frozen=True)
class Bounds:
    """Physical bounds an event must meet to be published; the defaults are the module constants."""

    min_magnitude: float = MIN_MAGNITUDE
    max_magnitude: float = MAX_MAGNITUDE
    max_depth_km: float = MAX_DEPTH_KM
    max_height_above_stations_km: float = MAX_HEIGHT_ABOVE_STATIONS_KM
    epicentre_aperture_factor: float = EPICENTRE_APERTURE_FACTOR
    epicentre_min_km: float = EPICENTRE_MIN_KM
    origin_after_first_p_s: float = ORIGIN_AFTER_FIRST_P_S


def group_aperture(
    group: list[str], coordinates: Mapping[str, Coordinates]
) -> tuple[float, float, float]:
    """Centroid (latitude, longitude) and aperture radius (km) of a station group.

    Stations that :func:`~sine_seisbench.geometry.far_stations` flags within the group (coordinate errors) are
    left out, so that one station with wrong coordinates neither moves the centroid nor widens the aperture.
    The centroid is the group's :func:`~sine_seisbench.geometry.reference_point` (circular mean longitude);
    the radius is the largest great-circle distance of a station from it.
    """
    return _group_aperture(tuple((k, coordinates[k]) for k in group if k in coordinates))


@functools.lru_cache(maxsize=4096)
def _group_aperture(stations: tuple[tuple[str, Coordinates], ...]) -> tuple[float, float, float]:
    """:func:`group_aperture` of ``(key, coordinates)`` pairs, remembered: the bounds check asks it of the same
    few groups for every candidate (the monitor: of every candidate again at every step; at 300 stations a
    quarter of its time before)."""
    keys = [k for k, _ in stations]
    coords = [c for _, c in stations]
    far = {f.station for f in far_stations(keys, coords)}
    core = [c for k, c in stations if k not in far] or coords
    lat0, lon0 = reference_point(core)
    radius = max(gps2dist_azimuth(lat0, lon0, c.latitude, c.longitude)[0] / 1000.0 for c in core)
    return lat0, lon0, radius


def implausible(
    candidate: Candidate,
    coordinates: Mapping[str, Coordinates],
    data_start: obspy.UTCDateTime | None,
    window_len_s: float,
    bounds: Bounds | None = None,
) -> str | None:
    """Why a located candidate is no physical earthquake, or None when it is within :class:`Bounds`.

    A candidate is rejected when

    * the event step did not accept it (:attr:`Candidate.rejected`: too few P and S phases at the migration's
      best point);
    * any estimate (location, depth, origin time) is not finite (a magnitude may be absent: no response);
    * its magnitude is outside ``[min_magnitude, max_magnitude]`` (-2 ... 9.5);
    * its depth exceeds ``max_depth_km`` (700 km) or it lies more than ``max_height_above_stations_km`` above
      the highest station of its group;
    * its epicentre is farther than ``max(epicentre_aperture_factor * R, epicentre_min_km)`` from the centroid
      of its group, ``R`` being the group's aperture radius (:func:`group_aperture`). The factor 2 admits
      events outside the group by as much as the group is wide (a network records events beyond its edge);
      the floor of 120 km, the largest epicentral distance of the training records
      (:class:`~sine_seisbench.data.simulate.SimulationConfig`), keeps small or dense groups from rejecting
      events a few tens of km outside them. Beyond that the event head, whose location output is scaled to
      ~50 km around the group, has left its domain: such an estimate comes from wrong station coordinates
      (e.g. a longitude wrapped the wrong way), not from an earthquake;
    * its origin time is before ``data_start`` by more than ``window_len_s`` (a P wave that needs longer than
      the model's window to reach the first station is outside the model's domain), or after its first P
      pick by more than ``origin_after_first_p_s``.

    :param coordinates: Station coordinates by ``NET.STA.LOC``.
    :param data_start: Start of the data the picks come from (None: not checked).
    :param window_len_s: The model's window length (s).
    :param bounds: The bounds; default :class:`Bounds` ().
    """
    b = bounds or Bounds()
    if candidate.rejected is not None:
        return f"not accepted: {candidate.rejected}"
    lat, lon = float(candidate.latitude), float(candidate.longitude)
    depth, magnitude = float(candidate.mean[2]), float(candidate.mean[3])
    origin = candidate.origin_time
    values = {"latitude": lat, "longitude": lon, "depth": depth}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if origin is None:
        bad.append("origin time")
    if bad:
        return f"non-finite or missing estimate ({', '.join(bad)})"
    if not -90.0 <= lat <= 90.0:
        return f"latitude {lat:.3f} outside [-90, 90]"
    # a magnitude may be absent (no instrument response: uncalibrated), never out of bounds
    if math.isfinite(magnitude) and not b.min_magnitude <= magnitude <= b.max_magnitude:
        return f"magnitude {magnitude:.1f} outside [{b.min_magnitude:g}, {b.max_magnitude:g}]"
    if depth > b.max_depth_km:
        return f"depth {depth:.0f} km deeper than {b.max_depth_km:g} km"
    group = [k for k in candidate.group if k in coordinates] or [
        k for k in candidate.stations if k in coordinates
    ]
    if group:
        top_km = max(coordinates[k].elevation for k in group) / 1000.0
        if depth < -top_km - b.max_height_above_stations_km:
            return (
                f"hypocentre {-depth:.1f} km above sea level, more than "
                f"{b.max_height_above_stations_km:g} km above the highest station ({top_km:.1f} km)"
            )
        lat0, lon0, radius = group_aperture(group, coordinates)
        distance = gps2dist_azimuth(lat0, lon0, lat, lon)[0] / 1000.0
        limit = max(b.epicentre_aperture_factor * radius, b.epicentre_min_km)
        if distance > limit:
            return (
                f"epicentre {distance:.0f} km from the centroid ({lat0:.3f}, {lon0:.3f}) of its station group "
                f"of aperture radius {radius:.0f} km (limit {limit:.0f} km)"
            )
    first_p = candidate.first_p
    if origin - first_p > b.origin_after_first_p_s:
        return (
            f"origin time {origin} is {origin - first_p:.1f} s after the first P pick ({first_p})"
        )
    if data_start is not None and data_start - origin > window_len_s:
        return (
            f"origin time {origin} is {data_start - origin:.1f} s before the start of the data "
            f"({data_start}), more than the model window ({window_len_s:g} s)"
        )
    return None


def _candidate_signature(candidate: Candidate) -> tuple:
    return (
        tuple(candidate.group),
        tuple(sorted((p.trace_id, round(p.peak_time.timestamp, 3)) for p in candidate.p_picks)),
        tuple(np.round(np.asarray(candidate.mean, dtype=float), 3).tolist()),
    )


def drop_implausible(
    candidates: list[Candidate],
    coordinates: Mapping[str, Coordinates],
    data_start: obspy.UTCDateTime | None,
    window_len_s: float,
    logger: logging.Logger | None = None,
    bounds: Bounds | None = None,
    logged: set | None = None,
) -> list[Candidate]:
    """The located candidates that are physical earthquakes (:func:`implausible`), in their order.

    Every dropped candidate is logged as one warning naming its first P pick, its stations, the estimate and
    the reason; its picks stay in the pick output.

    :param logger: Where the warnings go (None: not logged).
    :param logged: A set kept by a caller that checks the same candidates again and again (the streaming
                   engine): a candidate whose picks and estimate are in it is not logged again; it is added.
    """
    kept = []
    for cand in candidates:
        reason = implausible(cand, coordinates, data_start, window_len_s, bounds)
        if reason is None:
            kept.append(cand)
            continue
        if logger is None:
            continue
        if (
            cand.rejected is not None
        ):  # a trigger the acceptance rule turned down: not an event, picks kept
            logger.info(
                f"SINE: no event at the P picks from {cand.first_p} ({', '.join(sorted(cand.stations))}): "
                f"{reason}."
            )
            continue
        if logged is not None:
            signature = _candidate_signature(cand)
            if signature in logged:
                continue
            logged.add(signature)
        e_std, n_std = (float(v) for v in cand.std[:2])
        logger.warning(
            f"SINE: event candidate dropped: {reason}. First P {cand.first_p} at "
            f"{min(cand.p_picks, key=lambda p: p.peak_time).trace_id}; stations "
            f"{', '.join(sorted(cand.stations))}; estimate: origin {cand.origin_time}, latitude "
            f"{cand.latitude:.3f}, longitude {cand.longitude:.3f} (±{max(e_std, n_std):.1f} km), depth "
            f"{float(cand.mean[2]):.1f} km, M {float(cand.mean[3]):.1f}. Its picks are kept."
        )
    return kept


def event_id_seed(p_picks: Iterable[tuple[str, float]]) -> str:
    """The seed of an event's id: its first P pick ``NET.STA.LOC|time (UNIX s, 1 ms)`` (earliest time, then
    smallest station id). An earthquake keeps its id while its origin is updated (the monitor publishes new
    versions under it), and ``classify``, the monitor and the archive give the same earthquake the same id."""
    trace_id, time = min(p_picks, key=lambda k: (round(k[1], 3), k[0]))
    return f"{trace_id}|{time:.3f}"


def event_id(p_picks: Iterable[sbu.Pick]) -> ResourceIdentifier:
    """The id of the event whose P picks these are (:func:`event_id_seed`)."""
    return resource_id("event", event_id_seed((p.trace_id, p.peak_time.timestamp) for p in p_picks))


def _resource_id(kind: str, seed: str) -> ResourceIdentifier:
    return resource_id(kind, seed)


def candidate_to_event(
    candidate: Candidate,
    coordinates: Mapping[str, Coordinates],
    channels: Mapping[str, str],
    method: str,
) -> Event:
    """An ObsPy Event from a located candidate (:meth:`Candidate.set_estimate`): Origin with its 1-sigma error
    ellipse, Picks and Arrivals of the soft arrival times used in the fit, ML with StationMagnitudes (absent
    when uncalibrated), and the event step's flags as comments (``uncalibrated: ...``, ``saturated: ...``).

    :param channels: ``NET.STA.LOC`` → channel code for waveform ids (e.g. the vertical channel).
    """
    est = candidate.estimate
    if est is None or candidate.window_start is None or candidate.origin_time is None:
        raise ValueError(
            "candidate_to_event needs a located candidate (estimate_candidates first)."
        )
    e_std, n_std, d_std, _ = (float(v) for v in candidate.std)
    major, minor, azimuth = est.ellipse()
    creation = CreationInfo(agency_id=AGENCY, author=method)
    method_id = ResourceIdentifier(named_id("method", method))
    seed = f"{candidate.origin_time.timestamp:.2f}|" + ",".join(
        sorted(f"{p.trace_id}@{p.peak_time.timestamp:.2f}" for p in candidate.p_picks)
    )
    origin = Origin(
        resource_id=_resource_id("origin", seed),
        time=candidate.origin_time,
        time_errors=QuantityError(uncertainty=candidate.origin_time_std),
        latitude=candidate.latitude,
        latitude_errors=QuantityError(uncertainty=kilometers2degrees(n_std)),
        longitude=candidate.longitude,
        longitude_errors=QuantityError(
            uncertainty=kilometers2degrees(e_std)
            / max(math.cos(math.radians(candidate.latitude)), 1e-6)
        ),
        depth=float(est.depth_km) * 1000.0,
        depth_errors=QuantityError(uncertainty=d_std * 1000.0),
        depth_type="from location",
        origin_uncertainty=OriginUncertainty(
            horizontal_uncertainty=major * 1000.0,
            min_horizontal_uncertainty=minor * 1000.0,
            max_horizontal_uncertainty=major * 1000.0,
            azimuth_max_horizontal_uncertainty=azimuth,
            preferred_description="uncertainty ellipse",
            confidence_level=39.35,
        ),
        method_id=method_id,
        evaluation_mode="automatic",
        creation_info=creation,
    )
    picks, arrivals, azimuths = [], [], []
    for a in sorted(est.arrivals, key=lambda a: (a.time, a.phase)):
        net, sta, loc = station_key(a.station).split(".")
        pick = Pick(
            resource_id=_resource_id("pick", f"{seed}|{a.phase}|{a.station}"),
            time=candidate.window_start + a.time,
            time_errors=QuantityError(uncertainty=a.sigma),
            waveform_id=WaveformStreamID(
                network_code=net,
                station_code=sta,
                location_code=loc,
                channel_code=channels.get(a.station),
            ),
            phase_hint=a.phase,
            evaluation_mode="automatic",
            method_id=method_id,
            creation_info=creation,
        )
        picks.append(pick)
        azimuths.append(a.azimuth)
        arrivals.append(
            Arrival(
                resource_id=_resource_id("arrival", f"{seed}|{a.phase}|{a.station}"),
                pick_id=pick.resource_id,
                phase=a.phase,
                azimuth=a.azimuth,
                distance=kilometers2degrees(a.distance_km),
                time_residual=a.residual,
                time_weight=a.weight,
            )
        )
    origin.arrivals = arrivals
    stations = {a.station for a in est.arrivals}
    gap = 360.0
    if len(set(azimuths)) > 1:
        az = np.sort(np.unique(np.asarray(azimuths) % 360.0))
        gap = float(np.max(np.diff(np.concatenate([az, az[:1] + 360.0]))))
    origin.quality = OriginQuality(
        associated_phase_count=len(arrivals),
        used_phase_count=len(arrivals),
        associated_station_count=len(stations),
        used_station_count=len(stations),
        standard_error=est.rms_s,
        azimuthal_gap=gap,
    )
    event = Event(
        resource_id=event_id(candidate.p_picks),
        event_type="earthquake",
        origins=[origin],
        picks=picks,
        creation_info=creation,
        comments=[
            Comment(resource_id=_resource_id("comment", f"{seed}|{flag}"), text=flag)
            for flag in est.flags
        ],
    )
    event.preferred_origin_id = origin.resource_id
    if math.isfinite(est.magnitude):
        magnitude = Magnitude(
            resource_id=_resource_id("magnitude", seed),
            mag=float(est.magnitude),
            mag_errors=QuantityError(uncertainty=est.magnitude_std),
            magnitude_type="ML",
            origin_id=origin.resource_id,
            station_count=len(est.station_magnitudes),
            method_id=method_id,
            evaluation_mode="automatic",
            evaluation_status="preliminary"
            if any(f.startswith("saturated") for f in est.flags)
            else None,
            creation_info=creation,
        )
        for station, value in sorted(est.station_magnitudes.items()):
            net, sta, loc = station_key(station).split(".")
            event.station_magnitudes.append(
                StationMagnitude(
                    resource_id=_resource_id("station_magnitude", f"{seed}|{station}"),
                    origin_id=origin.resource_id,
                    mag=float(value),
                    station_magnitude_type="ML",
                    waveform_id=WaveformStreamID(
                        network_code=net,
                        station_code=sta,
                        location_code=loc,
                        channel_code=channels.get(station),
                    ),
                    method_id=method_id,
                    creation_info=creation,
                )
            )
        event.magnitudes = [magnitude]
        event.preferred_magnitude_id = magnitude.resource_id
    return event
