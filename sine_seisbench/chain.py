"""The classical "pick → associate → locate → magnitude" chain, the baseline for SINE's joint estimates.

Each step is deliberately simple and standard, so that the comparison measures what a joint multi-station
model adds over a conventional processing chain fed with the same picks:

- :func:`associate_picks`: greedy time clustering of a picker's P picks (:func:`sine_seisbench.pipeline.events.associate`),
  with each station's first S pick after its P attached; or :func:`associate_pyocto`: PyOcto's space-partitioning
  associator (Münchmeyer, 2024) with travel-time tables of the same 1-D model.
- :func:`locate`: grid-search hypocentre in the project's 1-D Southern California model
  (:class:`~sine_seisbench.traveltimes.TravelTimes`), coarse then fine, with the origin time solved analytically
  at every node and a robust L1 misfit (or classical least squares).
- :func:`local_magnitude`: ML from Wood-Anderson amplitudes with the Southern California relation of Hutton &
  Boore (1987), the median over stations.
- :func:`run_chain`: all three for every associated event (``associator="greedy"`` or ``"pyocto"``).
"""

from __future__ import annotations

import logging
import math
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench.util as sbu

from .geometry import Coordinates, project, reference_point, station_key, unproject
from .pipeline.events import associate, hypocentral_distance_km
from .pipeline.locate import HUTTON_BOORE, ml_from_amplitude, wood_anderson_mm
from .traveltimes import SOCAL_LAYERS, VP_VS, TravelTimes

logger = logging.getLogger(__name__)

#: The sampling rate (Hz) of the magnitude step: records at other rates are resampled to it.
SAMPLING_RATE = 100.0

#: A pick as :func:`locate` takes it: station ``NET.STA.LOC``, phase ``"P"``/``"S"``, time and weight.
PickTuple = tuple[str, str, obspy.UTCDateTime, float]

#: Velocities (km/s) of the top layer, used for the station elevation correction as in ``simulate_station``.
_VP_TOP = SOCAL_LAYERS[0][1]
_VS_TOP = SOCAL_LAYERS[0][1] / VP_VS

#: The associators of :func:`run_chain`.
ASSOCIATORS = ("greedy", "pyocto")


def surface_velocities(tt: TravelTimes) -> tuple[float, float]:
    """P and S velocities (km/s) of the top layer of ``tt``'s model, for station elevation corrections:
    ``tt.surface_vp``/``tt.surface_vs`` or the first of ``tt.layers`` (rows ``(top_km, vp, vs)``) where the table
    has them, otherwise those of the default Southern California model (5.5 and 5.5 / 1.73 km/s)."""
    if getattr(tt, "surface_vp", None) is not None and getattr(tt, "surface_vs", None) is not None:
        return float(tt.surface_vp), float(tt.surface_vs)
    layers = getattr(tt, "layers", None)
    if layers is None or len(layers) == 0:
        return _VP_TOP, _VS_TOP
    top = min(layers, key=lambda row: float(row[0]))
    vp = float(top[1])
    vs = float(top[2]) if len(top) > 2 and top[2] is not None else vp / VP_VS
    return vp, vs


def elevation_correction(tt: TravelTimes, elevation_m, phase: str) -> np.ndarray:
    """Travel time (s) from the table's surface up to stations at ``elevation_m`` through the top layer:
    ``tt.elevation_correction`` where the table has it (it knows the model's datum), otherwise ``elevation / v``
    with :func:`surface_velocities`."""
    method = getattr(tt, "elevation_correction", None)
    if callable(method):
        return np.asarray(method(np.asarray(elevation_m, dtype=float), phase), dtype=float)
    vp, vs = surface_velocities(tt)
    return np.asarray(elevation_m, dtype=float) / 1000.0 / (vs if phase == "S" else vp)


@dataclass
class Location:
    """A grid-search hypocentre.

    :param rms_s: RMS of the time residuals of the picks used (s).
    :param n_picks: Number of picks used (positive weight).
    :param residuals: ``(station, phase)`` → observed minus predicted arrival time (s), for every pick given.
    """

    latitude: float
    longitude: float
    depth_km: float
    origin_time: obspy.UTCDateTime
    rms_s: float
    n_picks: int
    residuals: dict[tuple[str, str], float] = field(default_factory=dict)


class _Curves:
    """P and S travel-time curves of a :class:`TravelTimes` table per depth on a fine, uniform distance axis,
    for fast lookups; beyond the table's largest distance a curve is extended linearly."""

    def __init__(self, tt: TravelTimes, step_km: float = 0.25) -> None:
        self.tt = tt
        n = int(math.ceil(tt.max_distance_km / step_km)) + 1
        self.axis = np.linspace(0.0, tt.max_distance_km, n)
        self.step = float(self.axis[1] - self.axis[0])
        self._cache: dict[float, dict[str, tuple[np.ndarray, np.ndarray, float]]] = {}

    def curve(self, depth_km: float, phase: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Values on the axis, their differences and the slope (s/km) beyond the axis."""
        key = round(float(depth_km), 6)
        curves = self._cache.get(key)
        if curves is None:
            table = self.tt(self.axis, float(depth_km))
            curves = {}
            for name in ("tp", "ts"):
                values = np.asarray(table[name], dtype=float)
                diff = np.diff(values)
                curves[name] = (values, diff, float(diff[-1] / self.step))
            self._cache[key] = curves
        return curves["ts" if phase == "S" else "tp"]

    def lookup(self, distance_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth-independent interpolation indices, fractions and distances beyond the axis."""
        x = np.asarray(distance_km, dtype=float) / self.step
        index = np.clip(np.floor(x).astype(np.intp), 0, len(self.axis) - 2)
        frac = np.clip(x - index, 0.0, 1.0)
        beyond = np.maximum(np.asarray(distance_km, dtype=float) - self.axis[-1], 0.0)
        return index, frac, beyond

    def __call__(
        self,
        lookup: tuple[np.ndarray, np.ndarray, np.ndarray],
        depth_km: float,
        phase: str,
    ) -> np.ndarray:
        values, diff, slope = self.curve(depth_km, phase)
        index, frac, beyond = lookup
        return values[index] + diff[index] * frac + beyond * slope


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median along the last axis of ``values`` (N, K); the L1-optimal shift. At an exact tie of the
    cumulative weight the midpoint of the two central values is taken."""
    order = np.argsort(values, axis=-1)
    v = np.take_along_axis(values, order, axis=-1)
    cw = np.cumsum(weights[order], axis=-1)
    half = 0.5 * cw[:, -1]
    tol = 1e-9 * cw[:, -1]
    k = np.argmax(cw >= (half - tol)[:, None], axis=-1)
    rows = np.arange(values.shape[0])
    lo = v[rows, k]
    hi = v[rows, np.minimum(k + 1, values.shape[1] - 1)]
    tie = np.abs(cw[rows, k] - half) <= tol
    return np.where(tie, 0.5 * (lo + hi), lo)


def _search(
    curves: _Curves,
    east: np.ndarray,
    north: np.ndarray,
    depths: np.ndarray,
    pick_east: np.ndarray,
    pick_north: np.ndarray,
    obs: np.ndarray,
    weights: np.ndarray,
    is_s: np.ndarray,
    elevation_correction: np.ndarray,
    robust: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Misfit and origin time (both (D, N)) at nodes ``east``/``north`` (N,) and ``depths`` (D,)."""
    epi = np.hypot(east[:, None] - pick_east[None, :], north[:, None] - pick_north[None, :])
    p_cols, s_cols = np.flatnonzero(~is_s), np.flatnonzero(is_s)
    p_lookup = curves.lookup(epi[:, p_cols])
    s_lookup = curves.lookup(epi[:, s_cols])
    equal_weights = bool(np.all(weights == weights[0]))
    wsum = weights.sum()
    misfit = np.empty((len(depths), len(east)))
    origin = np.empty_like(misfit)
    pred = np.empty_like(epi)
    for i, z in enumerate(depths):
        pred[:, p_cols] = curves(p_lookup, z, "P")
        if s_cols.size:
            pred[:, s_cols] = curves(s_lookup, z, "S")
        shifted = obs[None, :] - elevation_correction[None, :] - pred  # origin-time estimates
        if robust:
            t0 = (
                np.median(shifted, axis=-1) if equal_weights else _weighted_median(shifted, weights)
            )
            misfit[i] = (np.abs(shifted - t0[:, None]) * weights).sum(axis=-1) / wsum
        else:
            t0 = shifted @ weights / wsum
            misfit[i] = np.sqrt(((shifted - t0[:, None]) ** 2 * weights).sum(axis=-1) / wsum)
        origin[i] = t0
    return misfit, origin


def locate(
    picks: Sequence[PickTuple],
    coordinates: Mapping[str, Coordinates],
    tt: TravelTimes,
    *,
    search_radius_km: float = 100.0,
    coarse_step_km: float = 2.0,
    fine_step_km: float = 0.25,
    depth_range_km: tuple[float, float] = (0.0, 30.0),
    coarse_depth_step_km: float = 2.0,
    n_refine: int = 3,
    robust: bool = True,
) -> Location:
    """Grid-search hypocentre from P (and optionally S) picks in the 1-D model of ``tt``.

    A local east/north grid of ±``search_radius_km`` around the pick-weighted station centroid and depths in
    ``depth_range_km`` (capped at the table's largest depth) is searched at ``coarse_step_km`` /
    ``coarse_depth_step_km``; the ``n_refine`` best, mutually distinct coarse nodes are then refined at
    ``fine_step_km`` over ±1.5 coarse steps in all three directions. At every node the origin time is solved
    analytically: with ``robust`` (default) it is the weighted median of pick time minus travel time, the exact
    minimiser of the weighted L1 misfit ``sum w |r| / sum w``; otherwise the weighted mean with a weighted RMS
    misfit (classical least squares). Station elevation adds the time through the top layer
    (:func:`elevation_correction`: ``elevation_km / 5.5`` s to P and ``elevation_km / (5.5 / 1.73)`` s to S in
    the default model, as in :func:`~sine_seisbench.data.simulate.simulate_station`).

    :param picks: ``(station "NET.STA.LOC", phase "P"/"S", time, weight)``; picks of weight 0 are not used
                  but get a residual.
    :param coordinates: Station ``NET.STA.LOC`` → :class:`~sine_seisbench.geometry.Coordinates`.
    :param tt: Travel-time table; distances beyond its range are extrapolated linearly.
    :raises ValueError: With fewer than 3 P picks or 4 picks in all (of positive weight), unknown stations,
                        unknown phases or invalid weights.
    """
    stations, phases, times, weights = [], [], [], []
    for item in picks:
        try:
            sta, phase, time, weight = item
        except (TypeError, ValueError):
            raise ValueError(
                f"A pick must be (station 'NET.STA.LOC', phase 'P'/'S', UTCDateTime, weight), got {item!r}."
            ) from None
        phase = str(phase).upper()
        if phase not in ("P", "S"):
            raise ValueError(f"Pick phase must be 'P' or 'S', got {phase!r} at {sta}.")
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"Pick weights must be finite and non-negative, got {weight} at {sta}."
            )
        stations.append(station_key(str(sta)))
        phases.append(phase)
        times.append(obspy.UTCDateTime(time))
        weights.append(weight)
    missing = sorted({s for s in stations if s not in coordinates})
    if missing:
        raise ValueError(f"No coordinates for the picked station(s) {', '.join(missing)}.")
    weights_all = np.array(weights, dtype=float)
    used = weights_all > 0
    n_p = int(sum(1 for ph, u in zip(phases, used, strict=True) if u and ph == "P"))
    if n_p < 3 or int(used.sum()) < 4:
        raise ValueError(
            f"Cannot locate: need at least 3 P picks and 4 picks in all (of positive weight), got {n_p} P and "
            f"{int(used.sum())} in all."
        )

    coords = [coordinates[s] for s in stations]
    lat0, lon0 = reference_point(coordinates[s] for s in dict.fromkeys(stations))
    pe, pn = project(
        np.array([c.latitude for c in coords]), np.array([c.longitude for c in coords]), lat0, lon0
    )
    pe, pn = np.asarray(pe, dtype=float), np.asarray(pn, dtype=float)
    elev_m = np.array([c.elevation for c in coords], dtype=float)
    is_s_all = np.array([ph == "S" for ph in phases])
    elev_corr_all = np.where(
        is_s_all, elevation_correction(tt, elev_m, "S"), elevation_correction(tt, elev_m, "P")
    )
    base = min(t for t, u in zip(times, used, strict=True) if u)
    obs_all = np.array([t - base for t in times])

    w = weights_all[used]
    args = (pe[used], pn[used], obs_all[used], w, is_s_all[used], elev_corr_all[used], robust)
    ce = float(np.sum(w * pe[used]) / w.sum())
    cn = float(np.sum(w * pn[used]) / w.sum())
    z_lo = max(float(depth_range_km[0]), 0.0)
    z_hi = min(float(depth_range_km[1]), float(tt.max_depth_km))
    if z_hi < z_lo:
        raise ValueError(
            f"Depth range {depth_range_km} lies outside the travel-time table (0-{tt.max_depth_km} km)."
        )
    curves = _Curves(tt, step_km=min(fine_step_km, tt.distance_step_km))

    # Coarse grid
    offsets = np.arange(-search_radius_km, search_radius_km + 1e-9, coarse_step_km)
    ge, gn = np.meshgrid(ce + offsets, cn + offsets, indexing="ij")
    ge, gn = ge.ravel(), gn.ravel()
    depths = np.arange(z_lo, z_hi + 1e-9, coarse_depth_step_km)
    if depths[-1] < z_hi - 1e-9:
        depths = np.append(depths, z_hi)
    misfit, _ = _search(curves, ge, gn, depths, *args)

    # The best few coarse nodes that are not neighbours of a better one
    seeds: list[tuple[float, float, float]] = []
    for flat in np.argsort(misfit, axis=None)[: max(200, n_refine)]:
        di, ni = np.unravel_index(flat, misfit.shape)
        cand = (float(ge[ni]), float(gn[ni]), float(depths[di]))
        if all(
            max(abs(cand[0] - s[0]), abs(cand[1] - s[1])) > 2 * coarse_step_km
            or abs(cand[2] - s[2]) > 2 * coarse_depth_step_km
            for s in seeds
        ):
            seeds.append(cand)
        if len(seeds) >= n_refine:
            break

    # Fine grids around them
    best: tuple[float, float, float, float, float] | None = None  # misfit, e, n, z, t0
    half_h = 1.5 * coarse_step_km
    half_z = 1.5 * coarse_depth_step_km
    f_off = np.arange(-half_h, half_h + 1e-9, fine_step_km)
    for se, sn, sz in seeds:
        fe, fn = np.meshgrid(se + f_off, sn + f_off, indexing="ij")
        fe, fn = fe.ravel(), fn.ravel()
        fz = np.arange(max(sz - half_z, z_lo), min(sz + half_z, z_hi) + 1e-9, fine_step_km)
        m, t0 = _search(curves, fe, fn, fz, *args)
        di, ni = np.unravel_index(int(np.argmin(m)), m.shape)
        if best is None or m[di, ni] < best[0]:
            best = (
                float(m[di, ni]),
                float(fe[ni]),
                float(fn[ni]),
                float(fz[di]),
                float(t0[di, ni]),
            )
    assert best is not None
    _, be, bn, bz, bt0 = best

    # Residuals of every pick at the solution
    epi = np.hypot(pe - be, pn - bn)
    lookup = curves.lookup(epi)
    pred = np.where(is_s_all, curves(lookup, bz, "S"), curves(lookup, bz, "P")) + elev_corr_all
    res = obs_all - bt0 - pred
    lat, lon = unproject(be, bn, lat0, lon0)
    return Location(
        latitude=float(lat),
        longitude=float(lon),
        depth_km=bz,
        origin_time=base + bt0,
        rms_s=float(np.sqrt(np.mean(res[used] ** 2))),
        n_picks=int(used.sum()),
        residuals={(s, ph): float(r) for s, ph, r in zip(stations, phases, res, strict=True)},
    )


def _predicted_times(
    origin: Location, coords: Coordinates, tt: TravelTimes | None, vp: float
) -> tuple[float, float, float]:
    """Predicted P and S travel times (s, with elevation correction) and hypocentral distance (km)."""
    r, epi, _ = hypocentral_distance_km(origin.latitude, origin.longitude, origin.depth_km, coords)
    if tt is not None:
        t = tt(np.array([epi]), origin.depth_km)
        # Beyond the table: continue at vp (slower than Pn, so the window errs towards late)
        extra = max(epi - tt.max_distance_km, 0.0)
        tp = float(t["tp"][0]) + float(elevation_correction(tt, coords.elevation, "P")) + extra / vp
        ts = (
            float(t["ts"][0])
            + float(elevation_correction(tt, coords.elevation, "S"))
            + extra * VP_VS / vp
        )
    else:
        tp, ts = r / vp, r * VP_VS / vp
    return tp, ts, r


def _component_data(
    traces: Iterable[obspy.Trace], t0: obspy.UTCDateTime, t1: obspy.UTCDateTime
) -> np.ndarray | None:
    """Samples in [t0, t1] at 100 Hz of one component, or None when the traces do not cover the window or
    hold non-finite or only zero samples."""
    st = obspy.Stream([tr.copy() for tr in traces])
    for tr in st:
        tr.data = tr.data.astype(np.float64)
        if tr.stats.sampling_rate != SAMPLING_RATE:
            tr.resample(SAMPLING_RATE)
    if len(st) > 1:
        try:
            st.merge(method=1, fill_value=0)
        except Exception:  # incompatible pieces: use the longest
            st = obspy.Stream([max(st, key=lambda tr: tr.stats.npts)])
    tr = st[0]
    if tr.stats.starttime > t0 + 1 / SAMPLING_RATE or tr.stats.endtime < t1 - 1 / SAMPLING_RATE:
        return None
    data = np.asarray(tr.slice(t0, t1).data, dtype=np.float64)
    if data.size < 2 * SAMPLING_RATE or not np.all(np.isfinite(data)) or not np.any(data):
        return None
    return data


def local_magnitude(
    stream: obspy.Stream,
    origin: Location,
    coordinates: Mapping[str, Coordinates],
    tt: TravelTimes | None = None,
    *,
    pre_p_s: float = 1.0,
    post_s_s: float = 10.0,
    vp_km_s: float = 6.0,
) -> tuple[float, dict[str, float]]:
    """Local magnitude from Wood-Anderson amplitudes (Hutton & Boore, 1987), median over stations.

    For every station with coordinates and at least one horizontal component (channel code ending N/E or 1/2;
    a single horizontal stands in for both), the ZNE ground velocity (m/s) in the window from predicted P −
    ``pre_p_s`` to predicted S + ``post_s_s`` is demeaned, tapered (0.5 s) and passed to
    :func:`~sine_seisbench.pipeline.locate.wood_anderson_mm` at 100 Hz; the station magnitude follows with the
    hypocentral distance (:func:`~sine_seisbench.pipeline.locate.ml_from_amplitude`, Hutton & Boore). Stations whose
    records do not cover the window, or hold gaps of non-finite samples, are skipped.

    :param stream: Ground velocity in m/s, ideally at 100 Hz (other rates are resampled).
    :param tt: Travel times for the window; without it straight rays at ``vp_km_s`` and Vp/Vs 1.73 are used.
    :return: The median ML (NaN without any station) and ``NET.STA.LOC`` → station ML.
    """
    by_station: dict[str, dict[str, list[obspy.Trace]]] = {}
    for tr in stream:
        comp = tr.stats.channel[-1:].upper()
        comp = {"1": "N", "2": "E"}.get(comp, comp)
        if comp in ("Z", "N", "E"):
            by_station.setdefault(station_key(tr.id), {}).setdefault(comp, []).append(tr)
    station_ml: dict[str, float] = {}
    for sta in sorted(by_station):
        comps = by_station[sta]
        if sta not in coordinates or not ({"N", "E"} & set(comps)):
            continue
        tp, ts, r = _predicted_times(origin, coordinates[sta], tt, vp_km_s)
        t0 = origin.origin_time + tp - pre_p_s
        t1 = origin.origin_time + ts + post_s_s
        data = {c: _component_data(traces, t0, t1) for c, traces in comps.items()}
        horizontals = [data.get("N"), data.get("E")]
        if horizontals[0] is None and horizontals[1] is None:
            continue
        if horizontals[0] is None:
            horizontals[0] = horizontals[1]
        elif horizontals[1] is None:
            horizontals[1] = horizontals[0]
        n = min(len(h) for h in horizontals)
        zne = np.zeros((3, n))
        zne[1], zne[2] = horizontals[0][:n], horizontals[1][:n]
        if data.get("Z") is not None:
            m = min(n, len(data["Z"]))
            zne[0, :m] = data["Z"][:m]
        zne -= zne.mean(axis=-1, keepdims=True)
        ramp = min(int(0.5 * SAMPLING_RATE), n // 4)
        if ramp > 1:
            taper = 0.5 * (1 - np.cos(np.pi * np.arange(ramp) / ramp))
            zne[:, :ramp] *= taper
            zne[:, -ramp:] *= taper[::-1]
        amplitude = wood_anderson_mm(zne, SAMPLING_RATE)
        if not (math.isfinite(amplitude) and amplitude > 0):
            continue
        station_ml[sta] = float(ml_from_amplitude(amplitude, max(r, 1.0), HUTTON_BOORE))
    if not station_ml:
        return float("nan"), station_ml
    return float(np.median(list(station_ml.values()))), station_ml


def _pick_weight(pick: sbu.Pick) -> float:
    value = pick.peak_value
    return 1.0 if value is None or not math.isfinite(float(value)) else float(value)


def associate_picks(
    picks: Iterable[sbu.Pick],
    window_s: float = 20.0,
    min_stations: int = 3,
    *,
    max_s_minus_p_s: float = 30.0,
) -> list[list[PickTuple]]:
    """Group a picker's picks into events by greedy time clustering of the P picks.

    The P picks are clustered with :func:`sine_seisbench.pipeline.events.associate` (a cluster starts at the earliest
    unused P pick and takes every station's earliest P pick within ``window_s``; it is an event with at least
    ``min_stations`` stations). Each of an event's stations gets its first S pick after its P pick, within
    ``max_s_minus_p_s`` and before that station's next P pick.

    :param picks: SeisBench picks (``trace_id`` ``NET.STA.LOC`` or a full channel id, ``phase`` P/S).
    :return: Per event (in time order) its picks as :func:`locate` takes them, weights from ``peak_value``
             (1 where absent).
    """
    p_picks: list[sbu.Pick] = []
    s_by_station: dict[str, list[sbu.Pick]] = {}
    p_times: dict[str, list[float]] = {}
    for pick in picks:
        phase = str(pick.phase or "").upper()
        if phase not in ("P", "S") or pick.peak_time is None:
            continue
        key = station_key(pick.trace_id)
        if key != pick.trace_id:
            pick = sbu.Pick(
                trace_id=key,
                start_time=pick.start_time,
                end_time=pick.end_time,
                peak_time=pick.peak_time,
                peak_value=pick.peak_value,
                phase=phase,
            )
        if phase == "P":
            p_picks.append(pick)
            p_times.setdefault(key, []).append(pick.peak_time.timestamp)
        else:
            s_by_station.setdefault(key, []).append(pick)
    for times in p_times.values():
        times.sort()
    for s_list in s_by_station.values():
        s_list.sort(key=lambda p: p.peak_time)

    group = sorted(p_times)
    events: list[list[PickTuple]] = []
    for cand in associate(sbu.PickList(p_picks), group, window_s, min_stations):
        out: list[PickTuple] = []
        for p in sorted(cand.p_picks, key=lambda p: p.peak_time):
            out.append((p.trace_id, "P", p.peak_time, _pick_weight(p)))
            tp = p.peak_time.timestamp
            later_p = [t for t in p_times[p.trace_id] if t > tp]
            limit = min(tp + max_s_minus_p_s, later_p[0] if later_p else math.inf)
            for s in s_by_station.get(p.trace_id, []):
                ts = s.peak_time.timestamp
                if tp < ts <= limit:
                    out.append((s.trace_id, "S", s.peak_time, _pick_weight(s)))
                    break
        events.append(sorted(out, key=lambda x: x[2]))
    return sorted(events, key=lambda ev: min(x[2] for x in ev))


def write_pyocto_table(
    tt: TravelTimes,
    path: str | Path,
    max_distance_km: float,
    max_depth_km: float | None = None,
    delta_km: float = 1.0,
) -> tuple[Path, float]:
    """Writes ``tt``'s first-arrival P and S times as PyOcto's binary 1-D travel-time table.

    PyOcto's :class:`pyocto.VelocityModel1D` reads ``struct("iid", nx, nz, delta)`` followed by the P and then the
    S times on a ``(nx, nz)`` grid of epicentral distance × source depth (km, row-major); PyOcto's own
    ``create_model`` fills it with an eikonal solver (pyrocko). Here the grid holds the project's TauP times of
    ``tt`` itself, so that association and :func:`locate` use the same 1-D model; distances beyond ``tt``'s
    table are continued linearly (as :func:`locate` does), depths beyond it take its deepest row.

    :param max_distance_km: Largest epicentral distance needed (PyOcto returns no time at or beyond the last
                            node: give the diagonal of the search area); the grid reaches one node further.
    :param max_depth_km: Deepest source depth needed (default: the table's largest depth).
    :return: The file and the largest S time of the grid (s).
    """
    path = Path(path)
    z_max = float(tt.max_depth_km if max_depth_km is None else max_depth_km)
    nx = int(math.ceil(max_distance_km / delta_km)) + 2
    nz = int(math.ceil(z_max / delta_km)) + 2
    curves = _Curves(tt, step_km=min(delta_km, tt.distance_step_km))
    lookup = curves.lookup(np.arange(nx) * delta_km)
    p_times = np.empty((nx, nz))
    s_times = np.empty((nx, nz))
    for k in range(nz):
        z = min(k * delta_km, float(tt.max_depth_km))
        p_times[:, k] = curves(lookup, z, "P")
        s_times[:, k] = curves(lookup, z, "S")
    with open(path, "wb") as f:
        f.write(struct.pack("iid", nx, nz, float(delta_km)))
        f.write(np.ascontiguousarray(p_times, dtype=np.float64).tobytes())
        f.write(np.ascontiguousarray(s_times, dtype=np.float64).tobytes())
    return path, float(s_times.max())


def associate_pyocto(
    picks: Iterable[sbu.Pick],
    coordinates: Mapping[str, Coordinates],
    tt: TravelTimes,
    min_stations: int = 3,
    *,
    n_picks: int | None = None,
    n_s_picks: int = 0,
    n_p_and_s_picks: int = 0,
    margin_km: float = 50.0,
    tolerance_s: float = 1.0,
    pick_match_tolerance_s: float = 1.5,
    min_node_size_km: float = 10.0,
    delta_km: float = 1.0,
    n_threads: int = 1,
    **pyocto_kwargs,
) -> list[list[PickTuple]]:
    """Group a picker's picks into events with PyOcto's associator in ``tt``'s 1-D model.

    The search area spans the picked stations (a transverse Mercator projection around their centre) padded
    by ``margin_km``, at depths 0 to ``tt.max_depth_km``; travel times come from :func:`write_pyocto_table`
    (written to a temporary folder and removed afterwards) with the top layer's velocities for the station
    elevation corrections (:func:`surface_velocities`), as in :func:`locate`. An event needs ``min_stations`` P
    picks and ``n_picks`` picks in all (default ``max(4, min_stations)``, what :func:`locate` needs); S picks are
    optional unless ``n_s_picks``/``n_p_and_s_picks`` ask for them. Should PyOcto give one event two picks of a
    station and phase, the one with the smaller residual is kept.

    :param picks: SeisBench picks (``trace_id`` ``NET.STA.LOC`` or a full channel id, ``phase`` P/S); picks at
                  stations without coordinates are ignored.
    :param coordinates: Station ``NET.STA.LOC`` → :class:`~sine_seisbench.geometry.Coordinates`.
    :param tolerance_s: The velocity model's tolerance (s) in PyOcto's space partitioning.
    :param pick_match_tolerance_s: Largest residual (s) of a pick matched to a located candidate.
    :param min_node_size_km: Node size (km) below which PyOcto locates a candidate.
    :param n_threads: PyOcto's threads (default 1: the benchmark shares its cores).
    :param pyocto_kwargs: Further arguments of :class:`pyocto.OctoAssociator` (e.g. ``min_pick_fraction``).
    :return: Per event (in time order) its picks as :func:`locate` takes them, weights from ``peak_value``
             (1 where absent), the same structure as :func:`associate_picks`.
    :raises ImportError: Without the ``pyocto`` package (``pip install pyocto``).
    """
    try:
        import pyocto
        from pyproj import CRS, Transformer
    except ImportError as err:
        raise ImportError(
            "associator='pyocto' needs the pyocto package: pip install pyocto "
            "(or the project's [test] extra)."
        ) from err

    rows = []
    for pick in picks:
        phase = str(pick.phase or "").upper()
        key = station_key(pick.trace_id)
        if phase not in ("P", "S") or pick.peak_time is None or key not in coordinates:
            continue
        rows.append((key, phase, obspy.UTCDateTime(pick.peak_time), _pick_weight(pick)))
    p_stations = {r[0] for r in rows if r[1] == "P"}
    if len(p_stations) < max(min_stations, 1):
        return []

    stations = sorted({r[0] for r in rows})
    lat0, lon0 = reference_point(coordinates[s] for s in stations)
    crs = CRS(f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +units=km")
    to_local = Transformer.from_crs(CRS.from_epsg(4326), crs)
    lat = np.array([coordinates[s].latitude for s in stations])
    lon = np.array([coordinates[s].longitude for s in stations])
    x, y = to_local.transform(lat, lon)
    x, y = np.atleast_1d(np.asarray(x, dtype=float)), np.atleast_1d(np.asarray(y, dtype=float))
    station_frame = pd.DataFrame(
        {
            "id": stations,
            "x": x,
            "y": y,
            # PyOcto adds -z / v_top: z = -(elevation correction) * v_top matches elevation_correction
            "z": -elevation_correction(tt, [coordinates[s].elevation for s in stations], "P")
            * surface_velocities(tt)[0],
        }
    )
    xlim = (float(x.min()) - margin_km, float(x.max()) + margin_km)
    ylim = (float(y.min()) - margin_km, float(y.max()) + margin_km)
    diagonal = math.hypot(xlim[1] - xlim[0], ylim[1] - ylim[0])
    pick_frame = pd.DataFrame(
        {
            "station": [r[0] for r in rows],
            "phase": [r[1] for r in rows],
            "time": [r[2].timestamp for r in rows],
        }
    )
    vp_top, vs_top = surface_velocities(tt)
    with tempfile.TemporaryDirectory(prefix="sine-pyocto-") as tmp:
        table, s_max = write_pyocto_table(
            tt, Path(tmp) / "model.pyocto", diagonal, delta_km=delta_km
        )
        model = pyocto.VelocityModel1D(
            str(table),
            tolerance=tolerance_s,
            surface_p_velocity=vp_top,
            surface_s_velocity=vs_top,
        )
        associator = pyocto.OctoAssociator(
            xlim=xlim,
            ylim=ylim,
            zlim=(0.0, float(tt.max_depth_km)),
            velocity_model=model,
            time_before=s_max,
            n_picks=max(4, min_stations) if n_picks is None else n_picks,
            n_p_picks=min_stations,
            n_s_picks=n_s_picks,
            n_p_and_s_picks=n_p_and_s_picks,
            pick_match_tolerance=pick_match_tolerance_s,
            min_node_size=min_node_size_km,
            n_threads=n_threads,
            crs=crs,
            **pyocto_kwargs,
        )
        _, assignments = associator.associate(pick_frame, station_frame)

    events: list[list[PickTuple]] = []
    if len(assignments):
        for _, group in assignments.groupby("event_idx", sort=True):
            best: dict[tuple[str, str], tuple[float, PickTuple]] = {}
            for idx, residual in zip(group["pick_idx"], group["residual"], strict=True):
                sta, phase, time, weight = rows[int(idx)]
                res = abs(float(residual)) if math.isfinite(float(residual)) else math.inf
                if (sta, phase) not in best or res < best[(sta, phase)][0]:
                    best[(sta, phase)] = (res, (sta, phase, time, weight))
            events.append(sorted((v[1] for v in best.values()), key=lambda p: p[2]))
    return sorted(events, key=lambda ev: min(p[2] for p in ev))


def run_chain(
    stream: obspy.Stream,
    picks: Iterable[sbu.Pick],
    coordinates: Mapping[str, Coordinates],
    tt: TravelTimes,
    min_stations: int = 3,
    *,
    window_s: float = 20.0,
    max_s_minus_p_s: float = 30.0,
    associator: str = "greedy",
    associator_kwargs: Mapping[str, object] | None = None,
    **locate_kwargs,
) -> list[dict]:
    """Associate → locate → magnitude for every event in a picker's picks.

    Picks at stations without coordinates are ignored; events that cannot be located (too few picks) are
    skipped. Extra keyword arguments go to :func:`locate`.

    :param associator: ``"greedy"`` (default: :func:`associate_picks` with ``window_s`` and
                       ``max_s_minus_p_s``) or ``"pyocto"`` (:func:`associate_pyocto` in ``tt``'s model).
    :param associator_kwargs: Further keyword arguments of the associator's function.
    :return: Per event: ``origin_time`` (UTCDateTime), ``latitude``, ``longitude``, ``depth_km``, ``rms_s``,
             ``n_picks``, ``n_stations``, ``magnitude`` (ML; NaN without usable horizontals),
             ``n_magnitude_stations`` and ``station_magnitudes``.
    :raises ValueError: For an associator other than ``"greedy"`` and ``"pyocto"``.
    """
    if associator not in ASSOCIATORS:
        raise ValueError(
            f"Unknown associator {associator!r}; choose one of {', '.join(map(repr, ASSOCIATORS))}."
        )
    usable = [p for p in picks if station_key(p.trace_id) in coordinates]
    extra = dict(associator_kwargs or {})
    if associator == "pyocto":
        associated = associate_pyocto(usable, coordinates, tt, min_stations, **extra)
    else:
        associated = associate_picks(
            usable, window_s, min_stations, max_s_minus_p_s=max_s_minus_p_s, **extra
        )
    results = []
    for event_picks in associated:
        try:
            loc = locate(event_picks, coordinates, tt, **locate_kwargs)
        except ValueError as err:
            logger.info("Classical chain: event at %s not located: %s", event_picks[0][2], err)
            continue
        ml, station_ml = local_magnitude(stream, loc, coordinates, tt)
        results.append(
            {
                "origin_time": loc.origin_time,
                "latitude": loc.latitude,
                "longitude": loc.longitude,
                "depth_km": loc.depth_km,
                "rms_s": loc.rms_s,
                "n_picks": loc.n_picks,
                "n_stations": len({p[0] for p in event_picks}),
                "magnitude": ml,
                "n_magnitude_stations": len(station_ml),
                "station_magnitudes": station_ml,
            }
        )
    return results
