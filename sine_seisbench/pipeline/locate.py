"""SINE's event step: migration of the P and S probability curves, a robust travel-time fit, ML from amplitudes.

One implementation, used by :func:`estimate_candidates` (at the end of this module, the step as the drivers
call it) and through it by ``classify``, the streaming monitor and the Dask archive. Per candidate window (the stations of a
group, the P and S probability curves over the window (the annotation's stacked ones, or the network's on the
window: :func:`event_curves_from_annotation`), the waveforms):

1. **Migration** (:func:`coalescence`, differentiable in torch): for every node of a 3-D grid around the group
   and every origin time, the mean over stations of the P curve at the predicted P time plus the S curve at the
   predicted S time (curves max-pooled to ``migration_dt`` and widened by ``migration_smooth_s`` for the model
   error of a 1-D travel-time table). The best node, coarse then fine, is the start.
2. **Acceptance**: at the start, a station counts a phase when its curve reaches the pick threshold within
   ``0.3 s + 3 %`` of the predicted travel time; the event needs ``min_p_stations`` P (3) and ``min_phases``
   phases (5), the rule of the classical chain.
3. **Soft arrivals** (:func:`soft_arrivals`): near each predicted arrival the curve's own peak, then the
   probability-squared weighted mean time and spread around it: no threshold on the timing; weight = peak value.
4. **Robust fit** (:func:`fit_hypocentre`): hypocentre and origin time by Huber-loss least squares of the soft
   arrival times in the same travel-time table, each residual scaled by the arrival's spread and a model error
   (``model_error_s`` + ``model_error_fraction`` x travel time), with static station corrections (P and S delays
   estimated from located events: :func:`estimate_station_corrections`). The covariance is the inverse of the
   robustly weighted normal matrix times the residual variance factor (at least 1), times
   ``uncertainty_scale`` (calibrated on simulations so that the true epicentre falls inside the 1-sigma
   ellipse ~39 % of the time).
5. **Magnitude** (:func:`local_magnitude`): Wood-Anderson amplitudes of response-corrected horizontals
   (overall sensitivity of the channel; velocity or acceleration sensors), corrected for the hypocentral distance
   with Hutton & Boore (1987) (``ml_relation`` configurable) plus static station terms; the network ML is the
   median, its uncertainty the scaled MAD. The pre-P noise's WA amplitude is removed in quadrature and stations
   whose signal does not exceed the noise (``ml_min_snr`` 1) are left out. Without any response the magnitude is *uncalibrated* (none is given);
   clipped records or ML above ``ml_saturation`` flag the magnitude as saturated.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seisbench
import seisbench.util as sbu
import torch
import torch.nn.functional as F
from obspy.core.event import Catalog, Event

from .. import seisbench_adapter as sba
from ..geometry import compact_groups, local_positions
from ..traveltimes import TravelTimes
from .events import (
    Candidate,
    associate,
    candidate_to_event,
    drop_implausible,
    greedy_clusters,
    merge_candidates,
)
from .lsq import huber_least_squares
from .pick import final_picks, sample_time
from .prepare import GridRecord, Stack, StationSet, cut_curves, cut_window
from .run import pipelined, run_groups

if TYPE_CHECKING:
    from ..model import SINE

#: The forward-difference step of scipy where a relative step is lost to rounding (``_eps_for_method``)
_SQRT_EPS = float(np.finfo(np.float64).eps ** 0.5)
#: Hutton & Boore (1987): -log A0(r) = a log10(r / 100) + b (r - 100) + c, r hypocentral km, A in mm
HUTTON_BOORE = (1.110, 0.00189, 3.0)
#: Wood-Anderson seismometer (poles/zeros as used by SCSN, static gain 2080)
WOOD_ANDERSON = {
    "poles": [-6.283 + 4.7124j, -6.283 - 4.7124j],
    "zeros": [0j, 0j],
    "gain": 1.0,
    "sensitivity": 2080,
}


@dataclass
class LocatorConfig:
    """Settings of the event step. Those that are also ``annotate``/``classify`` arguments of SINE are taken
    from there (the thresholds from ``P_threshold``/``S_threshold``); the migration grid and the Huber scale
    (``migration_*``, ``huber_scale``) keep these defaults."""

    min_p_stations: int = 3
    min_phases: int = 5
    p_threshold: float = 0.3
    s_threshold: float = 0.3
    #: Least curve peak near a predicted arrival for it to enter the fit (weights are the peak values)
    soft_floor: float = 0.1
    migration_dt: float = 0.05
    migration_smooth_s: float = 0.3
    migration_nodes: int = 21
    model_error_s: float = 0.05
    model_error_fraction: float = 0.02
    huber_scale: float = 1.5
    uncertainty_scale: float = 0.3
    ml_relation: tuple[float, float, float] = HUTTON_BOORE
    ml_saturation: float = 6.0
    #: Least ratio of a station's WA amplitude to that of the pre-P noise for its ML to count
    ml_min_snr: float = 1.0
    #: Timing error (s) at which a station's predicted arrival error halves its migration weight
    arrival_reference_s: float = 0.1

    @classmethod
    def from_argdict(cls, get) -> LocatorConfig:
        """From a getter ``get(name)`` of annotate arguments."""
        kwargs = {}
        for name in cls.__dataclass_fields__:
            value = get(name)
            if value is not None:
                kwargs[name] = tuple(value) if name == "ml_relation" else value
        return cls(**kwargs)


@dataclass
class ArrivalEstimate:
    """A soft arrival time of one station and phase and its fit."""

    station: str
    phase: str
    time: float  # s after the window start
    sigma: float  # s, the curve's spread
    weight: float  # the curve's peak value
    travel_time: float = math.nan  # s, predicted (with elevation and station correction)
    residual: float = math.nan  # s, observed - predicted
    distance_km: float = math.nan
    azimuth: float = math.nan
    used: bool = True


@dataclass
class EventEstimate:
    """A located event of one candidate window (times in s after the window start, positions in km east/north
    of the group's reference point)."""

    east_km: float
    north_km: float
    depth_km: float
    origin_s: float
    covariance: np.ndarray  # (4, 4): east, north, depth (km), origin time (s)
    arrivals: list[ArrivalEstimate]
    coalescence: float
    n_p: int
    n_s: int
    magnitude: float = math.nan
    magnitude_std: float = math.nan
    station_magnitudes: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    rms_s: float = math.nan

    def ellipse(self) -> tuple[float, float, float]:
        """1-sigma horizontal error ellipse: semi-major, semi-minor (km) and azimuth of the major axis (deg)."""
        cov = self.covariance[:2, :2]
        values, vectors = np.linalg.eigh(cov)
        values = np.clip(values, 0.0, None)
        major = vectors[:, 1]
        azimuth = math.degrees(math.atan2(major[0], major[1])) % 180.0
        return math.sqrt(values[1]), math.sqrt(values[0]), azimuth


# ------------------------------------------------------------------------------------------------------------
# Migration
# ------------------------------------------------------------------------------------------------------------
def prepare_curves(curves: torch.Tensor, rate: float, config: LocatorConfig) -> torch.Tensor:
    """Max-pools ``(stations, phases, samples)`` probability curves to ``migration_dt`` and widens each peak by
    ``migration_smooth_s`` (max filter): differentiable, for :func:`coalescence` (without gradients on the CPU in
    numpy, :func:`max_pool`: the same values, without torch's thread pool)."""
    step = max(int(round(config.migration_dt * rate)), 1)
    width = max(int(round(config.migration_smooth_s / config.migration_dt)), 0)
    if curves.device.type == "cpu" and not (torch.is_grad_enabled() and curves.requires_grad):
        x = max_pool(curves.numpy(), step, step)
        if width > 0:
            x = max_pool(x, 2 * width + 1, 1, width)
        return torch.from_numpy(x)
    x = F.max_pool1d(curves, step, step, ceil_mode=True)
    if width > 0:
        x = F.max_pool1d(x, 2 * width + 1, 1, padding=width)
    return x


def max_pool(x: np.ndarray, size: int, stride: int, padding: int = 0) -> np.ndarray:
    """``torch.nn.functional.max_pool1d(x, size, stride, padding, ceil_mode=True)`` on the last axis, in numpy:
    the same values (a maximum rounds nothing). The event step's curves are small: torch's pool would hand each
    to its thread pool, which on busy cores waits for its threads (seen: 3 ms instead of 0.1 ms a call)."""
    n = x.shape[-1]
    # torch's output length with ceil_mode: the last window starts inside the input or its left padding
    n_out = -(-(n + 2 * padding - size) // stride) + 1
    if (n_out - 1) * stride >= n + padding:
        n_out -= 1
    span = (n_out - 1) * stride + size  # input (padded) samples the windows cover
    padded = np.full(x.shape[:-1] + (max(span, n + padding),), -np.inf, dtype=x.dtype)
    padded[..., padding : padding + n] = x
    # the maximum of each window's k-th samples, k = 0 .. size - 1, as strided views (numpy's reduction over a
    # short last axis of a reshape is ~10x slower)
    out = padded[..., 0 : (n_out - 1) * stride + 1 : stride].copy()
    for k in range(1, size):
        np.maximum(out, padded[..., k : k + (n_out - 1) * stride + 1 : stride], out=out)
    return out


def coalescence(
    curves: torch.Tensor,
    tp: torch.Tensor,
    ts: torch.Tensor,
    origins: torch.Tensor,
    weights: torch.Tensor,
    dt: float,
) -> torch.Tensor:
    """Mean over stations of the weighted P and S curves at the predicted arrival times.

    :param curves: ``(stations, 2, samples)`` P and S curves at interval ``dt`` (from :func:`prepare_curves`).
    :param tp: ``(nodes, stations)`` P travel times (s); ``ts`` the same for S.
    :param origins: ``(times,)`` origin times (s after the curves' first sample), a regular grid of step ``dt``
                    (as :func:`migrate` makes them; any other set of times is computed one by one).
    :param weights: ``(stations, 2)`` weights per station and phase (0 for stations without data).
    :return: ``(nodes, times)`` coalescence in [0, 2].
    """
    n_t = origins.numel()
    if _regular_origins(origins, dt):
        total = _coalescence_sum(curves, tp, ts, origins[0], n_t, weights, dt)
    else:  # not a regular grid: one origin time at a time
        parts = [_coalescence_sum(curves, tp, ts, o, 1, weights, dt) for o in origins]
        total = torch.cat(parts, dim=1) if parts else curves.new_zeros(tp.shape[0], 0)
    return total / weights[:, 0].sum().clamp(min=1e-6)


def _coalescence_sum(
    curves: torch.Tensor,
    tp: torch.Tensor,
    ts: torch.Tensor,
    origin: torch.Tensor,
    n_t: int,
    weights: torch.Tensor,
    dt: float,
) -> torch.Tensor:
    """Sum over stations and phases of :func:`coalescence` for the ``n_t`` origins ``origin + j dt``.

    Origin j reads sample ``round((origin + tt) / dt) + j``: each station's curve is read along one run of ``n_t``
    samples starting at its node's first index, i.e. one row of the curve's sliding windows (``unfold``, a view),
    gathered per station; samples outside the curve read zero (padding)."""
    n_st, _, n_samples = curves.shape
    total = curves.new_zeros(tp.shape[0], n_t)
    if tp.numel() == 0:
        return total
    for k, times in enumerate((tp, ts)):
        first = torch.round(origin / dt + times / dt).long()  # (N, S)
        left = max(-int(first.min()), 0)
        right = max(int(first.max()) + n_t - n_samples, 0)
        padded = F.pad(curves[:, k] * weights[:, k : k + 1], (left, right))  # (S, L)
        for s in range(n_st):
            windows = padded[s].unfold(0, n_t, 1)  # (L - n_t + 1, n_t)
            total = total + windows.index_select(0, first[:, s] + left)
    return total


def _grid_times(
    tt: TravelTimes,
    positions: np.ndarray,
    east: np.ndarray,
    north: np.ndarray,
    depth: np.ndarray,
    corrections: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """P and S travel times ``(nodes, stations)`` from nodes to stations (with elevation and corrections)."""
    dist = np.hypot(east[:, None] - positions[None, :, 0], north[:, None] - positions[None, :, 1])
    return _with_stations(tt, positions, tt.times_ps(dist, depth[:, None]), corrections)


def _with_stations(
    tt: TravelTimes, positions: np.ndarray, times: list[np.ndarray], corrections: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P and S table times ``(..., stations)`` plus the stations' elevation corrections and static corrections."""
    elev = positions[:, 2] * 1000.0
    tp = times[0] + tt.elevation_correction(elev, "P") + corrections[:, 0]
    ts = times[1] + tt.elevation_correction(elev, "S") + corrections[:, 1]
    return tp, ts


def _node_grid_times(
    tt: TravelTimes,
    positions: np.ndarray,
    east: np.ndarray,
    north: np.ndarray,
    depth: np.ndarray,
    corrections: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_grid_times` of the nodes of a grid ``east x depth`` positions (``east``/``north`` the
    horizontal positions, ``depth`` the depths): nodes ordered horizontal-major as
    ``np.repeat(east, len(depth))``, ``np.tile(depth, len(east))``; the distances are computed once per horizontal
    position, the same values as :func:`_grid_times` on the flattened nodes."""
    dist = np.hypot(east[:, None] - positions[None, :, 0], north[:, None] - positions[None, :, 1])
    tp, ts = tt.grid_times_ps(dist, depth)
    # _with_stations in place: the same sums, without new arrays of the grid's size
    elev = positions[:, 2] * 1000.0
    for times, phase, k in ((tp, "P", 0), (ts, "S", 1)):
        times += tt.elevation_correction(elev, phase)
        times += corrections[:, k]
    n_st = positions.shape[0]
    return tp.reshape(-1, n_st), ts.reshape(-1, n_st)


def _regular_origins(origins: torch.Tensor, dt: float) -> bool:
    """Whether ``origins`` is a regular grid of step ``dt`` (the fast path of :func:`coalescence`)."""
    n_t = origins.numel()
    steps = torch.arange(n_t, device=origins.device, dtype=origins.dtype)
    return bool(n_t) and torch.allclose(origins, origins[0] + steps * dt, rtol=0.0, atol=1e-3 * dt)


def _first_reads(times: np.ndarray, origin: np.ndarray, step: np.float32) -> np.ndarray:
    """Sample read at the first origin time ``origin`` (float32) for travel times ``times`` (float32), as
    :func:`_coalescence_sum` computes it in torch: ``round(origin / step + times / step)`` in float32 (numpy
    divides and rounds, half to even, the same way: tested). Non-decreasing in the times."""
    return np.round(origin / step + times / step).astype(np.int64)


def _weighted_series(
    curves: torch.Tensor, weights: torch.Tensor, left: int, right: int
) -> tuple[np.ndarray, np.ndarray]:
    """The weighted curves as series ``(2 x stations, left + samples + right)`` (the P curves of the stations,
    then their S curves, as :func:`coalescence` sums them; ``curves[:, k] * weights[:, k : k + 1]`` padded with
    zeros) and the denominator (float32)."""
    n_st, _, n_samples = curves.shape
    weighted = (curves * weights[:, :, None]).numpy()
    series = np.zeros((2 * n_st, left + n_samples + right), dtype=weighted.dtype)
    series[:, left : left + n_samples] = weighted.transpose(1, 0, 2).reshape(2 * n_st, n_samples)
    denominator = weights[:, 0].sum().clamp(min=1e-6).numpy()
    return series, denominator


def _best_node_time_dense(
    curves: torch.Tensor,
    tp: np.ndarray,
    ts: np.ndarray,
    origins: torch.Tensor,
    weights: torch.Tensor,
    dt: float,
) -> tuple[int, int, float]:
    """:func:`_best_node_time` by computing the coalescence of every node and origin time (the reference of the
    bounded search, and its path for curves that are not finite).

    The same float32 operations in the same order as :func:`coalescence` (read positions
    ``round(origin / dt + tt / dt)``, station sums P then S in station order, one division), in numpy: blocks of
    nodes whose sums stay in the CPU cache, each station's curve read as rows of its sliding windows (a view).
    torch's element-wise operations on these sizes were slower (on 2 busy cores its thread pool waited for its
    threads), and its ``index_select`` on the sliding-window view 10x slower.
    """
    n_nodes, n_t = tp.shape[0], origins.numel()
    origin, step = origins[0].numpy(), np.float32(dt)
    firsts = np.concatenate([_first_reads(t, origin, step) for t in (tp, ts)], axis=1)
    left = max(-int(firsts.min()), 0)
    right = max(int(firsts.max()) + n_t - curves.shape[-1], 0)
    series, denominator = _weighted_series(curves, weights, left, right)
    rows = np.ascontiguousarray((firsts + np.arange(len(series)) * series.shape[1] + left).T)
    view = np.lib.stride_tricks.sliding_window_view(series.reshape(-1), n_t)
    block = max(1, min(n_nodes, 32_768 // max(n_t, 1)))  # 128 KiB of float32 sums
    total = np.empty((block, n_t), dtype=np.float32)
    best = (-1.0, 0, 0)
    for start in range(0, n_nodes, block):
        stop = min(start + block, n_nodes)
        m = stop - start
        acc = total[:m]
        acc.fill(0.0)
        for row in rows:
            # fancy indexing reads the view's rows in place (np.take would copy the whole view first)
            acc += view[row[start:stop]]
        acc /= denominator
        flat = int(np.argmax(acc))
        value = float(acc.flat[flat])
        if value > best[0]:
            node, j = divmod(flat, n_t)
            best = (value, start + node, j)
    return best[1], best[2], best[0]


#: Origin times per block of the bounded search of :func:`_best_node_time` (a power of 2)
_BOUND_BLOCK = 16
#: Relative margin of its bounds over the float32 rounding of the sums (n non-negative terms: < n 6e-8)
_BOUND_MARGIN = 1e-3
#: Work arrays of :func:`_best_node_time`, per thread (a few MB)
_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A work array of this thread, reused from call to call (its values are left from the last use): fresh
    memory is slow where page faults are (a sandbox: ~0.7 ms per MB). Only for use inside one call."""
    size = math.prod(shape)
    held = _SCRATCH.__dict__.get(name)
    if held is None or held.dtype != dtype or held.size < size:
        held = np.empty(size, dtype=dtype)
        _SCRATCH.__dict__[name] = held
    return held[:size].reshape(shape)


def _window_max_table(series: np.ndarray, shortest: int, longest: int, step: int) -> np.ndarray:
    """Sliding maxima ``(levels, series, samples)`` of ``series`` ``(series, samples)`` (a :func:`_scratch`
    array): level m holds the maximum of ``series[:, i : i + shortest + m step]`` at i (0 where that would run
    past the end), for the lengths from ``shortest`` (a power of 2, at least ``step``) to ``longest`` or just
    above."""
    n = series.shape[-1]
    n_levels = -(-max(longest - shortest, 0) // step) + 1
    table = _scratch("window_max", (n_levels,) + series.shape, series.dtype)
    base = table[0]
    base[:] = series
    width = 1
    while width < shortest:  # doubling: maxima over 2, 4, ... shortest samples, in place
        np.maximum(base[:, : n - width], base[:, width:], out=base[:, : n - width])
        base[:, n - width :] = 0.0
        width *= 2
    for m in range(1, n_levels):
        # [i, i + shortest + m step) = [i, i + shortest + (m - 1) step) + [i + m step, i + m step + shortest)
        cut = n - m * step
        np.maximum(table[m - 1, :, :cut], base[:, m * step :], out=table[m, :, :cut])
        table[m, :, cut:] = 0.0
    return table


def _best_node_time(
    curves: torch.Tensor,
    tp: np.ndarray,
    ts: np.ndarray,
    origins: torch.Tensor,
    weights: torch.Tensor,
    dt: float,
    group: int = 1,
    hint: tuple[np.ndarray, float] | None = None,
) -> tuple[int, int, float]:
    """The largest :func:`coalescence` of nodes ``tp``/``ts`` ``(nodes, stations)`` (float32) and origin times
    ``origins`` (a regular grid of step ``dt``) and its node and origin index (the first of equal values in
    node-major order, as ``coalescence(...).reshape(-1).max(0)``), without gradients.

    Branch and bound with the result of :func:`_best_node_time_dense` (the same float32 sums in the same order,
    computed only where the maximum can be). The origin times are cut into blocks of ``_BOUND_BLOCK`` and the
    nodes into groups of ``group`` consecutive nodes (:func:`migrate`: the depths of one horizontal position). An
    upper bound of the coalescence over a group and block is the sum over stations and phases of the curve's
    maximum over every position the group's nodes read in the block (from the group's least and largest travel
    times, as the read position does not decrease with the travel time; :func:`_window_max_table`); the same
    over one node's reads bounds a node and block. Each bound is raised by ``_BOUND_MARGIN`` over the rounding
    of the float32 sums (their terms are non-negative). The floor is the best sum in the node blocks of the
    best bounds (and near ``hint``); node bounds are computed in the groups and blocks whose bound reaches the
    floor, and sums in the node blocks whose bound reaches it: no value at or above the floor is left out, so
    the maximum and its first position are those of the whole grid. On the benchmark's curves 0.2-0.7 % of the
    node blocks are summed. The arrays of the size of the grid are :func:`_scratch` arrays.

    :param group: Nodes per group (a divisor of the number of nodes; 1: every node its own group).
    :param hint: Nodes and an origin time (s) near which the maximum is expected (:func:`migrate`: the coarse
                 search's best, for the fine search): their sums raise the floor; the result does not depend on
                 it.
    :return: node index, origin index, the coalescence there.
    """
    n_nodes, n_t = tp.shape[0], origins.numel()
    n_st, _, n_samples = curves.shape
    width = _BOUND_BLOCK
    n_blocks = -(-n_t // width)
    group = group if group > 0 and n_nodes % group == 0 else 1
    if n_nodes * n_blocks < 64:
        return _best_node_time_dense(curves, tp, ts, origins, weights, dt)
    origin, step = origins[0].numpy(), np.float32(dt)
    # the first read of every node and series (P then S of each station): _first_reads in place
    reads = _scratch("reads", (n_nodes, 2 * n_st), np.float32)
    np.divide(tp, step, out=reads[:, :n_st])
    np.divide(ts, step, out=reads[:, n_st:])
    np.add(origin / step, reads, out=reads)
    np.round(reads, out=reads)
    # per group and series the first and last read of block 0
    lo = reads.reshape(-1, group, 2 * n_st).min(axis=1).T.astype(np.int64)
    hi = reads.reshape(-1, group, 2 * n_st).max(axis=1).T.astype(np.int64)
    # each group's range is read at the table's next length at or above it (up to level_step - 1 more): the
    # padding keeps these longer ranges inside the series, where the table's maxima are whole
    level_step = max(width // 4, 1)
    left = max(-int(lo.min()), 0)
    right = max(int(hi.max()) + n_blocks * width - n_samples, 0) + level_step
    series, denominator = _weighted_series(curves, weights, left, right)
    if not np.isfinite(series).all() or series.min() < 0 or not np.isfinite(denominator):
        return _best_node_time_dense(curves, tp, ts, origins, weights, dt)
    n_series, n_padded = series.shape
    offsets = np.arange(n_series)[:, None] * n_padded + left  # of the series in the flattened table
    scale = np.float64(1.0 + _BOUND_MARGIN) / np.float64(denominator)
    length = hi - lo + width  # (series, groups): positions read by a group in a block
    # the reads of every block b at lo + b w: rows of a strided view of the table
    table = _window_max_table(series, width, int(length.max()), level_step).reshape(-1)
    rows = -(-(length - width) // level_step) * series.size + lo + offsets
    item = table.itemsize
    view = np.lib.stride_tricks.as_strided(
        table,
        (table.size - (n_blocks - 1) * width, n_blocks),
        (item, width * item),
        writeable=False,
    )
    group_bounds = np.zeros((rows.shape[1], n_blocks), dtype=np.float32)
    for row in rows:
        group_bounds += view[row]
    group_bounds = group_bounds.reshape(-1) * scale  # group-major, then block
    block_max = table[: series.size]  # level 0: the maximum over each block's own reads
    firsts = _scratch("firsts", (n_series, n_nodes), np.int32)
    firsts[...] = reads.T
    firsts += offsets.astype(np.int32)
    windows = np.lib.stride_tricks.sliding_window_view(series.reshape(-1), width)

    def expand(group_blocks: np.ndarray) -> np.ndarray:
        """Node blocks (node-major indices ``node * n_blocks + block``, sorted) of group blocks."""
        groups, blocks = np.divmod(group_blocks, n_blocks)
        nodes = (groups * group)[:, None] + np.arange(group)
        return np.sort((nodes * n_blocks + blocks[:, None]).reshape(-1))

    def node_bounds(flat: np.ndarray) -> np.ndarray:
        """Bounds of node blocks ``flat``, in chunks that stay in the CPU cache."""
        out = np.empty(len(flat), dtype=np.float32)
        for a in range(0, len(flat), 1024):
            nodes, blocks = np.divmod(flat[a : a + 1024], n_blocks)
            at = np.take(firsts, nodes, axis=1) + blocks * width  # (series, node blocks)
            out[a : a + 1024] = block_max.take(at).sum(axis=0)
        return out * scale

    def exact(flat: np.ndarray) -> np.ndarray:
        """Coalescence ``(len(flat), width)`` of node blocks ``flat``, the dense sums in the dense order; origin
        times past the grid are -inf."""
        acc = np.zeros((len(flat), width), dtype=np.float32)
        for a in range(0, len(flat), 128):
            nodes, blocks = np.divmod(flat[a : a + 128], n_blocks)
            part = acc[a : a + 128]
            for values in windows[np.take(firsts, nodes, axis=1) + blocks * width]:
                part += values  # series by series
        acc /= denominator
        acc[(flat % n_blocks * width)[:, None] + np.arange(width) >= n_t] = -np.inf
        return acc

    def best_of(values: np.ndarray, n_top: int) -> np.ndarray:
        return (
            np.argpartition(values, -n_top)[-n_top:]
            if values.size > n_top
            else np.arange(values.size)
        )

    # the floor: the best sum near the hint, else in the node blocks of the best node bounds in the groups of the
    # best group bounds
    if hint is not None and len(hint[0]):
        j = int(round((hint[1] - float(origins[0])) / dt))
        near = np.clip(np.array([j - width // 2, j + width // 2]) // width, 0, n_blocks - 1)
        blocks = np.unique(np.asarray(hint[0], dtype=np.int64)[:, None] * n_blocks + near)
    else:
        blocks = expand(best_of(group_bounds, 64))
        blocks = blocks[best_of(node_bounds(blocks), 16)]
    floor = float(exact(blocks).max())
    blocks = expand(np.flatnonzero(group_bounds >= floor))
    bounds = node_bounds(blocks)
    floor = max(floor, float(exact(blocks[best_of(bounds, 16)]).max()))
    blocks = blocks[bounds >= floor]
    values = exact(blocks)
    i = int(np.argmax(values))
    block_i, j = divmod(i, width)
    node, block = divmod(int(blocks[block_i]), n_blocks)
    return node, block * width + j, float(values.flat[i])


#: The coarse grids' travel times of the last station groups (:func:`_search_grid`), at most this many bytes
_GRID_CACHE_BYTES = 64 * 2**20
_GRID_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_GRID_CACHE_LOCK = threading.Lock()


def _search_grid(
    tt: TravelTimes,
    positions: np.ndarray,
    available: np.ndarray,
    corrections: np.ndarray,
    shape: tuple[float, float, float, float, float, int, int],
    cache: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The nodes of a :func:`migrate` grid, ``shape`` = (centre east, centre north, half width, top, bottom,
    depths, nodes per side), horizontal-major (east, north, depth ``(nodes,)``), their P and S travel times to the
    stations ``(nodes, stations)`` (float32) and the largest P travel time to a station with data. With
    ``cache``, kept for the same table, stations, corrections and shape (least recently used dropped beyond
    ``_GRID_CACHE_BYTES``): the same arrays, read-only."""
    key = None
    if cache:
        key = (
            id(tt),
            positions.tobytes(),
            available.tobytes(),
            np.asarray(corrections, dtype=float).tobytes(),
            tuple(float(v) for v in shape),
        )
        with _GRID_CACHE_LOCK:
            held = _GRID_CACHE.get(key)
            if held is not None and held[0] is tt:
                _GRID_CACHE.move_to_end(key)
                return held[1]
    ce, cn, he, z_lo, z_hi, nz, n = shape
    axis = np.linspace(-he, he, n)
    ge, gn = np.meshgrid(ce + axis, cn + axis, indexing="ij")
    gz = np.linspace(z_lo, z_hi, nz)
    east = np.repeat(ge.ravel(), nz)
    north = np.repeat(gn.ravel(), nz)
    depth = np.tile(gz, ge.size)
    tp, ts = _node_grid_times(tt, positions, ge.ravel(), gn.ravel(), gz, corrections)
    latest = tp.max(axis=0)  # per station
    longest = float(latest[available].max()) if available.any() else float(latest.max())
    grid = (east, north, depth, tp.astype(np.float32), ts.astype(np.float32), longest)
    if key is not None:
        for array in grid[:5]:
            array.flags.writeable = False
        size = sum(array.nbytes for array in grid[:5])
        with _GRID_CACHE_LOCK:
            _GRID_CACHE[key] = (tt, grid, size)
            total = sum(entry[2] for entry in _GRID_CACHE.values())
            while total > _GRID_CACHE_BYTES and len(_GRID_CACHE) > 1:
                total -= _GRID_CACHE.popitem(last=False)[1][2]
    return grid


def migrate(
    curves: np.ndarray,
    rate: float,
    positions: np.ndarray,
    available: np.ndarray,
    tt: TravelTimes,
    first_p_s: float,
    config: LocatorConfig,
    corrections: np.ndarray | None = None,
    station_weights: np.ndarray | None = None,
) -> tuple[float, float, float, float, float]:
    """Best node and origin time of the coalescence of ``curves`` ``(stations, 2, samples)`` (P, S).

    The grid spans the group's aperture plus its radius (at least 20 km) around its centre, depths from the
    highest station to the table's depth, coarse (``migration_nodes`` per side) then 4x finer around the best
    coarse node. Origin times run from ``first_p_s`` minus the largest P travel time of the grid to just after
    ``first_p_s``.

    :param station_weights: ``(stations, 2)`` weights of the P and S curves (default 1).
    :return: east, north, depth (km), origin time (s after the first sample), coalescence.
    """
    n_st = positions.shape[0]
    corrections = np.zeros((n_st, 2)) if corrections is None else corrections
    weights = np.repeat(available[:, None], 2, 1).astype(np.float32)
    if station_weights is not None:
        weights = weights * np.asarray(station_weights, dtype=np.float32)
    weights = torch.as_tensor(weights)
    with torch.no_grad():
        fine = prepare_curves(torch.as_tensor(curves, dtype=torch.float32), rate, config)
        # the coarse search on curves pooled twice as much (half the origin times)
        coarse = torch.from_numpy(max_pool(fine.numpy(), 2, 2))
    used = positions[available] if available.any() else positions
    centre = (used[:, :2].max(0) + used[:, :2].min(0)) / 2
    radius = float(np.max(np.hypot(*(used[:, :2] - centre).T))) if len(used) else 0.0
    half = min(max(2.0 * radius, 20.0), 0.7 * tt.max_distance_km)
    top = max(-tt.datum_km, -float(used[:, 2].max())) if len(used) else -tt.datum_km
    bottom = tt.max_depth_km - tt.datum_km
    n = config.migration_nodes

    def search(ce, cn, he, z_lo, z_hi, nz, pooled, dt, hint_origin=None, cache=False):
        east, north, depth, tp32, ts32, longest = _search_grid(
            tt, positions, available, corrections, (ce, cn, he, z_lo, z_hi, nz, n), cache
        )
        origins = torch.arange(first_p_s - longest - 1.0, first_p_s + 0.5, dt, dtype=torch.float32)
        best_value, best = -1.0, (0.0, 0.0, 0.0, 0.0)
        if _regular_origins(origins, dt) and pooled.device.type == "cpu" and len(east):
            hint = None
            if hint_origin is not None:  # the centre (the coarse best) and its 8 neighbours, all depths
                centre_h = (n // 2) * n + n // 2
                around = (centre_h + np.array([-n - 1, -n, -n + 1, -1, 0, 1, n - 1, n, n + 1]))[
                    :, None
                ]
                hint = ((around * nz + np.arange(nz)).ravel(), hint_origin)
            i, j, value = _best_node_time(pooled, tp32, ts32, origins, weights, dt, nz, hint)
            if value > best_value:
                best_value = value
                best = (east[i], north[i], depth[i], float(origins[j]))
        else:  # the general path (coalescence in torch, in chunks of nodes)
            tp_t, ts_t = torch.tensor(tp32), torch.tensor(ts32)  # copies (the cached grids are read-only)
            chunk = max(1, 4_000_000 // max(n_st * len(origins), 1))
            with torch.no_grad():
                for start in range(0, len(east), chunk):
                    c = coalescence(
                        pooled,
                        tp_t[start : start + chunk],
                        ts_t[start : start + chunk],
                        origins,
                        weights,
                        dt,
                    )
                    value, flat = c.reshape(-1).max(0)
                    if float(value) > best_value:
                        i, j = divmod(int(flat), c.shape[1])
                        best_value = float(value)
                        best = (
                            east[start + i],
                            north[start + i],
                            depth[start + i],
                            float(origins[j]),
                        )
        return best, best_value, (2 * he / (n - 1), (z_hi - z_lo) / max(nz - 1, 1))

    nz = max(int(round((bottom - top) / 3.0)) + 1, 2)
    dt = config.migration_dt
    # the coarse grid depends only on the stations (and which have data), the fine grid also on the coarse grid's
    # best node: their travel times are kept for the next candidate of the same group (events of one source
    # region share the fine grid)
    (e, nn, z, t0), value, (step_h, step_z) = search(
        centre[0], centre[1], half, top, bottom, nz, coarse, 2 * dt, cache=True
    )
    (e, nn, z, t0), value, _ = search(
        e,
        nn,
        1.5 * step_h,
        max(top, z - 1.5 * step_z),
        min(bottom, z + 1.5 * step_z),
        7,
        fine,
        dt,
        t0,
        cache=True,
    )
    return float(e), float(nn), float(z), float(t0), value


# ------------------------------------------------------------------------------------------------------------
# Soft arrivals and acceptance
# ------------------------------------------------------------------------------------------------------------
def _search_half_width(travel_time: np.ndarray) -> np.ndarray:
    return 0.3 + 0.03 * np.abs(travel_time)


def _weighted_times(
    curves: np.ndarray,
    pairs_s: np.ndarray,
    pairs_k: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    whole: np.ndarray,
    half: int,
    rate: float,
    mean: np.ndarray,
    spread: np.ndarray,
) -> None:
    """:func:`soft_arrivals`' p²-weighted mean time and spread of each row's samples ``[first, last)``, into
    ``mean`` and ``spread``: the rows of ``2 half + 1`` samples (``whole``) at once, the others one by one."""
    if whole.any():
        idx = first[whole][:, None] + np.arange(2 * half + 1)
        p2 = curves[pairs_s[whole][:, None], pairs_k[whole][:, None], idx].astype(float) ** 2
        t = idx / rate
        total = np.sum(p2, axis=1)
        m = np.sum(t * p2, axis=1) / total
        mean[whole] = m
        spread[whole] = np.sqrt(np.sum((t - m[:, None]) ** 2 * p2, axis=1) / total)
    for i in np.flatnonzero(~whole):  # near the curve's ends: fewer samples
        p2 = curves[pairs_s[i], pairs_k[i], first[i] : last[i]].astype(float) ** 2
        t = np.arange(first[i], last[i]) / rate
        mean[i] = np.sum(t * p2) / np.sum(p2)
        spread[i] = np.sqrt(np.sum((t - mean[i]) ** 2 * p2) / np.sum(p2))


def soft_arrivals(
    curves: np.ndarray,
    rate: float,
    stations: list[str],
    available: np.ndarray,
    predicted: np.ndarray,
    origin_s: float,
    config: LocatorConfig,
    arrival_sigma: np.ndarray | None = None,
) -> tuple[list[ArrivalEstimate], int, int]:
    """Soft arrival times near ``predicted`` ``(stations, 2)`` arrival times (s after the first sample), and the
    numbers of stations whose P and S curves reach the pick thresholds there (for the acceptance rule).

    The search window is ±(0.3 s + 3 % of the travel time from ``origin_s``); within it the curve's peak (the
    first of equal values), then the p²-weighted mean time and spread within ±0.4 s of the peak. ``arrival_sigma``
    ``(stations, 2)``, the network's timing errors (s), is added to the spreads in quadrature. All stations and
    phases at once (one row per station and phase; the sums of a peak's ±0.4 s are row sums of the same samples
    in the same order as one station at a time: the same values); arrivals in station order, P before S.
    """
    n = curves.shape[-1]
    half = int(round(0.4 * rate))
    if not np.isfinite(curves).all():
        curves = np.nan_to_num(curves.astype(float))
    pairs_s, pairs_k = np.nonzero(np.repeat(np.asarray(available, dtype=bool)[:, None], 2, axis=1))
    t_pred = np.asarray(predicted, dtype=float)[pairs_s, pairs_k]
    if not np.isfinite(t_pred).all():
        raise ValueError("soft_arrivals: a predicted arrival time is not finite.")
    w = _search_half_width(t_pred - origin_s)
    lo = np.maximum(np.floor((t_pred - w) * rate).astype(np.int64), 0)
    hi = np.minimum(np.ceil((t_pred + w) * rate).astype(np.int64) + 1, n)
    keep = hi - lo >= 3
    pairs_s, pairs_k, lo, hi = pairs_s[keep], pairs_k[keep], lo[keep], hi[keep]
    if not len(lo):
        return [], 0, 0
    # the search windows as rows (-inf past each window's end), their peaks
    columns = np.arange(int((hi - lo).max()))
    at = lo[:, None] + columns
    inside = at < hi[:, None]
    rows = curves[pairs_s[:, None], pairs_k[:, None], np.minimum(at, n - 1)].astype(float)
    rows[~inside] = -np.inf
    peak_at = lo + np.argmax(rows, axis=1)
    peak = rows[np.arange(len(rows)), peak_at - lo]
    thresholds = np.where(pairs_k == 0, config.p_threshold, config.s_threshold)
    reached = peak >= thresholds
    counts = (int(np.sum(reached & (pairs_k == 0))), int(np.sum(reached & (pairs_k == 1))))
    # the p^2-weighted mean and spread within +-half samples of each peak (cut at the curve's ends)
    first = np.maximum(peak_at - half, 0)
    last = np.minimum(peak_at + half + 1, n)
    mean = np.empty(len(lo))
    spread = np.empty(len(lo))
    whole = last - first == 2 * half + 1
    with np.errstate(invalid="ignore", divide="ignore"):  # flat zero rows: below soft_floor, left out
        _weighted_times(curves, pairs_s, pairs_k, first, last, whole, half, rate, mean, spread)
    out: list[ArrivalEstimate] = []
    for i in np.flatnonzero(peak >= config.soft_floor):
        st, k = int(pairs_s[i]), int(pairs_k[i])
        sigma = max(float(spread[i]), 1.0 / rate)
        if arrival_sigma is not None:  # the network's timing error of this station and phase
            sigma = math.hypot(sigma, float(arrival_sigma[st, k]))
        out.append(ArrivalEstimate(stations[st], "PS"[k], float(mean[i]), sigma, float(peak[i])))
    return out, counts[0], counts[1]


# ------------------------------------------------------------------------------------------------------------
# Robust travel-time fit
# ------------------------------------------------------------------------------------------------------------
def fit_hypocentre(
    arrivals: list[ArrivalEstimate],
    positions: Mapping[str, np.ndarray],
    tt: TravelTimes,
    start: tuple[float, float, float, float],
    config: LocatorConfig,
    corrections: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Huber-loss fit of east, north, depth (km) and origin time (s) to soft arrival times; fills each arrival's
    travel time, residual, distance and azimuth.

    :param positions: Station → east, north, up (km).
    :param start: East, north, depth, origin time to start from (the migration's best node).
    :return: the solution ``(4,)``, its covariance ``(4, 4)`` and the RMS residual (s).
    """
    corrections = corrections or {}
    pos = np.array([positions[a.station] for a in arrivals], dtype=float)
    is_s = np.array([a.phase == "S" for a in arrivals])
    obs = np.array([a.time for a in arrivals])
    weight = np.array([a.weight for a in arrivals])
    corr = np.array(
        [corrections.get(a.station, (0.0, 0.0))[1 if a.phase == "S" else 0] for a in arrivals]
    )
    elev = np.where(
        is_s,
        tt.elevation_correction(pos[:, 2] * 1000, "S"),
        tt.elevation_correction(pos[:, 2] * 1000, "P"),
    )
    spread = np.array([a.sigma for a in arrivals])
    # no source above the table's surface (sea level, or datum_km above it) nor above the highest station
    z_lo = max(-tt.datum_km, -float(pos[:, 2].max()))
    z_hi = tt.max_depth_km - tt.datum_km

    def predict(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Travel times and distances ``(points, arrivals)`` from hypocentres ``xs`` ``(points, 4)``."""
        dist = np.hypot(xs[:, :1] - pos[:, 0], xs[:, 1:2] - pos[:, 1])
        return tt.phase_times(dist, xs[:, 2:3], is_s) + elev + corr, dist

    root_weight, spread2 = np.sqrt(weight), spread**2

    def sigma(travel):
        model = config.model_error_s + config.model_error_fraction * np.abs(travel)
        return np.sqrt(spread2 + model**2)

    def residuals_at(xs: np.ndarray, travel: np.ndarray | None = None) -> np.ndarray:
        """Scaled residuals ``(points, arrivals)`` of hypocentres ``xs`` ``(points, 4)`` (with their travel
        times, when given): one table look-up for all points, the same values as one point at a time."""
        if travel is None:
            travel, _ = predict(xs)
        return root_weight * (obs - xs[:, 3:4] - travel) / sigma(travel)

    lower = np.array([-np.inf, -np.inf, z_lo, -np.inf])
    upper = np.array([np.inf, np.inf, z_hi, np.inf])

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals at ``x`` and their Jacobian by scipy's forward differences (``approx_derivative`` with
        ``rel_step=1e-4``: steps ``1e-4 |x|``, sqrt(eps) max(1, |x|) where that is lost to rounding, reversed
        where a step would leave the bounds, shortened where it cannot fit), the point and its 3 steps in space
        in one look-up (the origin time's step shares the point's travel times)."""
        sign = np.where(x >= 0, 1.0, -1.0)
        h = 1e-4 * sign * np.abs(x)
        h = np.where((x + h) - x == 0, _SQRT_EPS * sign * np.maximum(1.0, np.abs(x)), h)
        stepped = x + h
        below, above = x - lower, upper - x
        fitting = np.abs(h) <= np.maximum(below, above)
        h = np.where(((stepped < lower) | (stepped > upper)) & fitting, -h, h)
        h = np.where(fitting, h, np.where(above >= below, above, -below))
        points = np.repeat(x[None], 5, axis=0)
        points[np.arange(1, 5), np.arange(4)] = x + h
        travel, _ = predict(points[:4])  # the origin time's step moves no travel time
        r = residuals_at(points, np.concatenate([travel, travel[:1]]))
        return r[0], ((r[1:] - r[0]) / ((x + h) - x)[:, None]).T

    x0 = np.array(start, dtype=float)
    x0[2] = min(max(x0[2], z_lo + 1e-3), z_hi - 1e-3)
    result = huber_least_squares(
        evaluate, x0, lower, upper, f_scale=config.huber_scale, x_scale=np.array([1.0, 1.0, 1.0, 0.1])
    )
    x = result.x
    # the covariance's Jacobian by finite differences over fixed steps of 50 m / 5 ms (not the solver's steps,
    # relative to |x|), one-sided into the allowed depth range; the solution and its 4 steps in one look-up
    steps = np.array([0.05, 0.05, 0.05, 0.005])
    if x[2] + steps[2] > z_hi:
        steps[2] = -steps[2]
    points = np.repeat(x[None], 5, axis=0)
    points[np.arange(1, 5), np.arange(4)] += steps
    travels, dists = predict(points)
    travel, dist = travels[0], dists[0]
    raw = obs - x[3] - travel
    scaled = root_weight * (obs - points[:, 3:4] - travels) / sigma(travels)
    r = scaled[0]
    # Huber weights of the solution: full inside f_scale, f_scale/|r| outside
    huber = np.where(
        np.abs(r) <= config.huber_scale, 1.0, config.huber_scale / np.maximum(np.abs(r), 1e-12)
    )
    jac = ((scaled[1:] - r) / steps[:, None]).T
    jac = jac * np.sqrt(huber)[:, None]
    dof = max(len(r) - 4, 1)
    variance_factor = max(float(np.sum(huber * r**2) / dof), 1.0)
    try:
        cov = np.linalg.inv(jac.T @ jac) * variance_factor * config.uncertainty_scale**2
    except np.linalg.LinAlgError:
        cov = np.full((4, 4), np.nan)
    if not np.all(np.isfinite(cov)):
        cov = np.linalg.pinv(jac.T @ jac) * variance_factor * config.uncertainty_scale**2
    for a, t, res, d, p in zip(arrivals, travel, raw, dist, pos, strict=True):
        a.travel_time, a.residual, a.distance_km = float(t), float(res), float(d)
        a.azimuth = float(math.degrees(math.atan2(p[0] - x[0], p[1] - x[1])) % 360.0)
    rms = float(np.sqrt(np.average(raw**2, weights=weight)))
    return x, cov, rms


# ------------------------------------------------------------------------------------------------------------
# Magnitude
# ------------------------------------------------------------------------------------------------------------
def wood_anderson_mm(velocity: np.ndarray, rate: float) -> float:
    """Peak Wood-Anderson amplitude (mm) of ground velocity (m/s) ``(components, samples)``: the mean over the
    horizontals (the last two rows) of each one's peak."""
    n = velocity.shape[-1]
    f = np.fft.rfftfreq(n, 1 / rate)
    s = 2j * np.pi * f
    h = np.ones_like(s) * WOOD_ANDERSON["sensitivity"]
    for z in WOOD_ANDERSON["zeros"]:
        h = h * (s - z)
    for p in WOOD_ANDERSON["poles"]:
        h = h / (s - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp_to_wa = np.where(f > 0, h / s, 0)  # velocity -> displacement -> WA
    wa = np.fft.irfft(np.fft.rfft(velocity, axis=-1) * disp_to_wa, n, axis=-1)
    return float(np.mean(np.abs(wa[-2:]).max(axis=-1)) * 1000.0)


def ml_from_amplitude(
    amplitude_mm: float, hypocentral_km: float, relation: tuple[float, float, float] = HUTTON_BOORE
) -> float:
    """ML = log10 A + a log10(r / 100) + b (r - 100) + c (Hutton & Boore 1987 by default)."""
    a, b, c = relation
    r = max(hypocentral_km, 1.0)
    return math.log10(amplitude_mm) + a * math.log10(r / 100.0) + b * (r - 100.0) + c


def clipped(counts: np.ndarray) -> bool:
    """A flat-topped record: at least 5 samples within 0.1 % of the largest |value|, which is 1000 counts or
    more (a digitiser or sensor at its limit)."""
    peak = float(np.max(np.abs(counts))) if counts.size else 0.0
    if not math.isfinite(peak) or peak < 1000.0:
        return False
    return int(np.sum(np.abs(counts) >= 0.999 * peak)) >= 5


def _wa_amplitude(
    record: np.ndarray, lo: int, hi: int, gain: Mapping[int, tuple[float, str]], rate: float
) -> tuple[float | None, bool]:
    """Peak Wood-Anderson amplitude (mm) of samples ``lo:hi`` of one station's ``(3, samples)`` raw ZNE record
    (horizontals with a sensitivity in M/S or M/S**2; one horizontal stands in for both), and whether a
    horizontal is clipped; None without a usable horizontal."""
    comps, was_clipped = [], False
    for c in (1, 2):
        data = record[c, lo:hi].astype(float)
        if c not in gain or data.size < 2 or not np.any(data) or not np.all(np.isfinite(data)):
            continue
        was_clipped = was_clipped or clipped(data)
        value, units = gain[c]
        velocity = (data - data.mean()) / value
        units = units.upper()
        if units in ("M/S**2", "M/S/S", "M/S2"):
            velocity = np.cumsum(velocity) / rate
            velocity -= np.linspace(velocity[0], velocity[-1], velocity.size)
        elif units != "M/S":
            continue
        comps.append(velocity)
    if not comps:
        return None, was_clipped
    if len(comps) == 1:
        comps = comps * 2
    ramp = min(int(0.5 * rate), comps[0].size // 4)
    zne = np.zeros((3, comps[0].size))
    zne[1], zne[2] = comps
    if ramp > 1:
        taper = 0.5 * (1 - np.cos(np.pi * np.arange(ramp) / ramp))
        zne[:, :ramp] *= taper
        zne[:, -ramp:] *= taper[::-1]
    return wood_anderson_mm(zne, rate), was_clipped


def local_magnitude(
    window: np.ndarray,
    rate: float,
    stations: list[str],
    gains: Mapping[str, Mapping[int, tuple[float, str]]],
    hypocentral_km: Mapping[str, float],
    spans: Mapping[str, tuple[int, int]],
    config: LocatorConfig,
    station_terms: Mapping[str, float] | None = None,
) -> tuple[float, float, dict[str, float], list[str]]:
    """Network ML from a window ``(stations, 3, samples)`` of raw values (ZNE) and per station the overall
    sensitivities ``gains[station][component] = (value, input units)``.

    :param spans: Station → sample range (P - 1 s to S + 10 s, clipped to the window) of the measurement.
    :return: ML (median of station MLs + terms; NaN without any calibrated horizontal), its uncertainty (1.4826
             MAD, at least 0.1), station MLs and flags (``uncalibrated: ...``, ``saturated: ...``).
    """
    station_terms = station_terms or {}
    station_ml: dict[str, float] = {}
    clipped_at: list[str] = []
    calibrated_any = False
    for s, station in enumerate(stations):
        if station not in spans or station not in hypocentral_km:
            continue
        lo, hi = spans[station]
        if hi - lo < int(2 * rate):
            continue
        gain = gains.get(station, {})
        if not any(c in gain for c in (1, 2)):
            continue
        signal, was_clipped = _wa_amplitude(window[s], lo, hi, gain, rate)
        if signal is None:
            continue
        calibrated_any = True
        if was_clipped:
            clipped_at.append(station)
        # the noise before the P wave (as long as the measurement window, at least 2 s): its WA amplitude is
        # removed in quadrature, and a station whose signal is below ml_min_snr x the noise is left out (a high
        # ratio keeps only the stations that happen to be loud and biases small events upwards: measured 0.16 at
        # 2, 0.11 at 1 on simulated events)
        n_lo = max(lo - (hi - lo), 0)
        noise = (
            _wa_amplitude(window[s], n_lo, lo, gain, rate)[0]
            if lo - n_lo >= int(2 * rate)
            else None
        )
        if noise is not None and noise > 0:
            if signal < config.ml_min_snr * noise:
                continue
            signal = math.sqrt(signal**2 - noise**2)
        if signal > 0 and math.isfinite(signal):
            station_ml[station] = ml_from_amplitude(
                signal, hypocentral_km[station], config.ml_relation
            ) + float(station_terms.get(station, 0.0))
    flags: list[str] = []
    if not calibrated_any:
        flags.append(
            "uncalibrated: no station of the event has an instrument response (sensitivity in M/S or M/S**2) in "
            "the inventory, so no ML is given; pass a StationXML with responses"
        )
        return math.nan, math.nan, station_ml, flags
    if not station_ml:
        return math.nan, math.nan, station_ml, flags
    values = np.array(list(station_ml.values()))
    ml = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - ml))), 0.1) if len(values) > 1 else 0.3
    if clipped_at:
        flags.append(
            f"saturated: clipped records at {', '.join(sorted(set(clipped_at)))}; ML is a lower bound"
        )
    elif ml >= config.ml_saturation:
        flags.append(
            f"saturated: ML {ml:.1f} >= {config.ml_saturation:g}, where ML saturates; use Mw"
        )
    return ml, spread, station_ml, flags


# ------------------------------------------------------------------------------------------------------------
# Station corrections
# ------------------------------------------------------------------------------------------------------------
def read_station_corrections(source: Any) -> dict[str, dict[str, float]]:
    """Station corrections from a CSV file (columns ``station`` ``NET.STA.LOC``, and any of ``P``, ``S`` (s,
    added to predicted times) and ``ML`` (added to station magnitudes)), a DataFrame, or a dict
    ``station -> {"P": .., "S": .., "ML": ..}``; None gives none."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): {p: float(v) for p, v in dict(c).items()} for k, c in source.items()}
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"Station corrections file {path} not found (a CSV with columns station, P, S, ML)."
            )
        frame = pd.read_csv(path, dtype={"station": str})
    elif isinstance(source, pd.DataFrame):
        frame = source
    else:
        raise TypeError(
            f"station_corrections must be a CSV path, a DataFrame or a dict, got {type(source)}."
        )
    if "station" not in frame:
        raise ValueError("Station corrections need a 'station' column (NET.STA.LOC).")
    out = {}
    for _, row in frame.iterrows():
        out[str(row["station"])] = {
            k: float(row[k]) for k in ("P", "S", "ML") if k in frame and pd.notna(row[k])
        }
    return out


def estimate_station_corrections(
    catalog, min_events: int = 3, path: str | Path | None = None
) -> pd.DataFrame:
    """Static P and S delays (median time residual) and ML terms (median of network ML minus station ML) per
    station over the events of a catalogue made by SINE (its Arrivals and StationMagnitudes).

    Locate the events without corrections (or add the corrections used to the result): a residual is observed
    minus predicted time with the corrections then in force. Corrections are relative to the velocity model:
    use them with the same model, as ``station_corrections=`` of ``classify``. Only stations/phases with at least ``min_events`` values get one.

    :param path: Also write the table there as CSV.
    """
    from ..geometry import station_key

    residuals: dict[tuple[str, str], list[float]] = {}
    terms: dict[str, list[float]] = {}
    for event in catalog:
        origin = event.preferred_origin() or event.origins[0]
        picks = {p.resource_id.id: p for p in event.picks}
        for arrival in origin.arrivals:
            pick = picks.get(arrival.pick_id.id)
            if pick is None or arrival.time_residual is None:
                continue
            key = station_key(pick.waveform_id.id)
            residuals.setdefault((key, arrival.phase), []).append(float(arrival.time_residual))
        magnitude = event.preferred_magnitude()
        if magnitude is None or magnitude.mag is None:
            continue
        for sm in event.station_magnitudes:
            key = station_key(sm.waveform_id.id)
            terms.setdefault(key, []).append(float(magnitude.mag) - float(sm.mag))
    stations = sorted({k for k, _ in residuals} | set(terms))
    rows = []
    for station in stations:
        row: dict[str, Any] = {"station": station}
        for phase in ("P", "S"):
            values = residuals.get((station, phase), [])
            row[phase] = float(np.median(values)) if len(values) >= min_events else math.nan
            row[f"n_{phase}"] = len(values)
        values = terms.get(station, [])
        row["ML"] = float(np.median(values)) if len(values) >= min_events else math.nan
        row["n_ML"] = len(values)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["station", "P", "S", "ML", "n_P", "n_S", "n_ML"])
    if path is not None:
        frame.to_csv(path, index=False)
    return frame


# ------------------------------------------------------------------------------------------------------------
# Inputs from the annotate arguments
# ------------------------------------------------------------------------------------------------------------
_TRAVEL_TIMES: dict[str, TravelTimes] = {}


def traveltimes_for(velocity_model: Any) -> TravelTimes:
    """The (cached) travel-time table of a ``velocity_model`` argument (see :mod:`sine_seisbench.traveltimes`)."""
    key = repr(velocity_model if not isinstance(velocity_model, Path) else str(velocity_model))
    if key not in _TRAVEL_TIMES:
        _TRAVEL_TIMES[key] = TravelTimes(velocity_model=velocity_model)
    return _TRAVEL_TIMES[key]


_COMPONENTS = {"Z": 0, "N": 1, "E": 2, "1": 1, "2": 2}


def station_gains(
    inventory: Any,
    stations: list[str],
    calibrated: Mapping[str, bool],
    cache: dict[str, dict[int, tuple[float, str]]],
) -> dict[str, dict[int, tuple[float, str]]]:
    """Per station of ``stations`` (``NET.STA.LOC``) the overall sensitivity and input units of its Z/N/E
    channels (component index 0/1/2) from ``inventory`` (an ObsPy Inventory); stations whose traces were already
    divided by their sensitivity (``calibrated``) get (1, "M/S"). Looked up once per station and kept in
    ``cache`` (:attr:`StationSet.gain_cache <sine_seisbench.pipeline.prepare.StationSet.gain_cache>`)."""
    import obspy

    out = {}
    for key in stations:
        if calibrated.get(key):
            out[key] = {0: (1.0, "M/S"), 1: (1.0, "M/S"), 2: (1.0, "M/S")}
            continue
        if key not in cache:
            gains: dict[int, tuple[float, str]] = {}
            if isinstance(inventory, obspy.Inventory):
                net, sta, loc = key.split(".")
                for network in inventory.select(network=net, station=sta, location=loc or ""):
                    for station in network:
                        for channel in station:
                            comp = _COMPONENTS.get(channel.code[-1:].upper())
                            response = channel.response
                            sens = None if response is None else response.instrument_sensitivity
                            if comp is None or comp in gains or sens is None or not sens.value:
                                continue
                            if math.isfinite(float(sens.value)):
                                gains[comp] = (float(sens.value), str(sens.input_units or ""))
            cache[key] = gains
        out[key] = cache[key]
    return out


# ------------------------------------------------------------------------------------------------------------
# The whole step
# ------------------------------------------------------------------------------------------------------------
def locate_window(
    curves: np.ndarray,
    window: np.ndarray,
    rate: float,
    stations: list[str],
    positions: np.ndarray,
    available: np.ndarray,
    first_p_s: float,
    tt: TravelTimes,
    config: LocatorConfig,
    gains: Mapping[str, Mapping[int, tuple[float, str]]] | None = None,
    corrections: Mapping[str, Mapping[str, float]] | None = None,
    arrival_sigma: np.ndarray | None = None,
) -> EventEstimate | str:
    """Locates the event of one candidate window, or says why there is none.

    :param curves: ``(stations, 2, samples)`` P and S probabilities over the window.
    :param window: ``(stations, 3, samples)`` raw values (ZNE) for the magnitude.
    :param positions: ``(stations, 3)`` east, north, up (km) relative to the group's reference point.
    :param available: ``(stations,)`` stations with data in the window.
    :param first_p_s: The candidate's first P pick (s after the window start).
    :param arrival_sigma: ``(stations, 2)`` P and S timing errors (s) the network predicts (its arrival head), or
                          None: the migration weights each station and phase by ``1 / (1 + (sigma /
                          config.arrival_reference_s)^2)`` and the fit adds sigma to each arrival's spread.
    :return: The estimate, or the reason for rejecting the candidate (acceptance rule).
    """
    corrections = corrections or {}
    corr = np.array(
        [
            [corrections.get(s, {}).get("P", 0.0), corrections.get(s, {}).get("S", 0.0)]
            for s in stations
        ]
    )
    if int(available.sum()) < config.min_p_stations:
        return f"{int(available.sum())} station(s) with data, fewer than min_p_stations={config.min_p_stations}"
    # The acceptance rule counts the stations whose curve reaches the pick threshold near the predicted
    # arrivals (soft_arrivals); wherever the hypocentre is, they are at most those whose curve reaches it
    # anywhere in the window. A candidate that cannot be accepted is rejected here, before the migration and
    # the fits (the same decision; on noise triggers and at stations without S most of the event step's time).
    reach = (np.fmax.reduce(curves, axis=-1) >= [config.p_threshold, config.s_threshold]) & (
        available[:, None]
    )
    most_p, most_s = (int(v) for v in reach.sum(axis=0))
    if most_p < config.min_p_stations or most_p + most_s < config.min_phases:
        return (
            f"{most_p} P and {most_s} S curves reach the thresholds anywhere in the window (need "
            f"min_p_stations={config.min_p_stations} P and min_phases={config.min_phases} in all)"
        )
    weights = None
    if arrival_sigma is not None:
        weights = 1.0 / (1.0 + (arrival_sigma / config.arrival_reference_s) ** 2)
    e, n, z, t0, value = migrate(
        curves, rate, positions, available, tt, first_p_s, config, corr, weights
    )
    pos_of = {s: positions[i] for i, s in enumerate(stations)}
    corr_of = {s: (corr[i, 0], corr[i, 1]) for i, s in enumerate(stations)}

    def arrivals_at(x) -> tuple[list[ArrivalEstimate], int, int]:
        tp, ts = _grid_times(
            tt, positions, np.array([x[0]]), np.array([x[1]]), np.array([x[2]]), corr
        )
        predicted = np.stack([tp[0], ts[0]], axis=-1) + x[3]
        return soft_arrivals(
            curves, rate, stations, available, predicted, x[3], config, arrival_sigma
        )

    def accepted(n_p: int, n_s: int) -> bool:
        return n_p >= config.min_p_stations and n_p + n_s >= config.min_phases

    def fittable(arrivals: list[ArrivalEstimate]) -> bool:
        return sum(a.phase == "P" for a in arrivals) >= 3 and len(arrivals) >= 4  # 4 unknowns

    def nearest_km(x: np.ndarray) -> float:
        """Epicentral distance (km) from ``x`` to the nearest station with data (NaN stays NaN)."""
        used = positions[available]
        return float(np.min(np.hypot(x[0] - used[:, 0], x[1] - used[:, 1])))

    # Two passes: arrivals near the migration's best point, a fit, then arrivals near the fitted hypocentre
    # (closer to the truth than the grid node) and the final fit; acceptance is decided where the arrivals were
    # taken, the second pass preferred. A fit that ends farther from every station than the travel-time table
    # reaches has left the table's support (extrapolated times; seen: 3e7 km away, where the search windows,
    # 3 % of the travel time wide, take every peak as an arrival): no event.
    start = np.array([e, n, z, t0])
    arrivals, n_p, n_s = arrivals_at(start)
    passes = []
    if fittable(arrivals):
        x, cov, rms = fit_hypocentre(arrivals, pos_of, tt, tuple(start), config, corr_of)
        if not nearest_km(x) <= tt.max_distance_km:
            return (
                f"the travel-time fit diverged: its epicentre is {nearest_km(x):.0f} km from the nearest "
                f"station, beyond the travel-time table ({tt.max_distance_km:g} km)"
            )
        passes.append((x, cov, rms, arrivals, n_p, n_s))
        again, n_p2, n_s2 = arrivals_at(x)
        if fittable(again):
            if accepted(n_p2, n_s2):
                x2, cov2, rms2 = fit_hypocentre(again, pos_of, tt, tuple(x), config, corr_of)
                if nearest_km(x2) <= tt.max_distance_km:
                    passes.insert(0, (x2, cov2, rms2, again, n_p2, n_s2))
            else:
                # a pass whose arrivals are not accepted is never chosen: its fit is not run (on noise
                # triggers half of the event step's time); its counts still enter the reason for a rejection
                passes.insert(0, (None, None, None, again, n_p2, n_s2))
    chosen = next((p for p in passes if accepted(p[4], p[5])), None)
    if chosen is None:
        n_p, n_s = max(((p[4], p[5]) for p in passes), default=(n_p, n_s))
        return (
            f"{n_p} P and {n_s} S phases reach the thresholds near the located hypocentre (need "
            f"min_p_stations={config.min_p_stations} P and min_phases={config.min_phases} in all)"
        )
    x, cov, rms, arrivals, n_p, n_s = chosen
    estimate = EventEstimate(
        east_km=float(x[0]),
        north_km=float(x[1]),
        depth_km=float(x[2]),
        origin_s=float(x[3]),
        covariance=cov,
        arrivals=arrivals,
        coalescence=value,
        n_p=n_p,
        n_s=n_s,
        rms_s=rms,
    )
    # Magnitude: P - 1 s to S + 10 s per station, in the window
    tp, ts = _grid_times(tt, positions, x[:1], x[1:2], x[2:3], corr)
    spans, hypo = {}, {}
    n_samples = window.shape[-1]
    for i, s in enumerate(stations):
        if not available[i]:
            continue
        lo = max(int((x[3] + tp[0, i] - 1.0) * rate), 0)
        hi = min(int((x[3] + ts[0, i] + 10.0) * rate), n_samples)
        spans[s] = (lo, hi)
        hypo[s] = math.hypot(
            math.hypot(x[0] - positions[i, 0], x[1] - positions[i, 1]), x[2] + positions[i, 2]
        )
    terms = {s: c["ML"] for s, c in corrections.items() if "ML" in c}
    ml, ml_std, station_ml, flags = local_magnitude(
        window, rate, stations, gains or {}, hypo, spans, config, terms
    )
    estimate.magnitude, estimate.magnitude_std = ml, ml_std
    estimate.station_magnitudes, estimate.flags = station_ml, flags
    return estimate


# ------------------------------------------------------------------------------------------------------------
# The step as the drivers call it (classify, the monitor, the archive through classify)
# ------------------------------------------------------------------------------------------------------------
def event_groups(model: SINE, stations: StationSet) -> list[list[str]]:
    """The station groups of association and the event step: every station in compact groups of at most
    ``max_stations``."""
    key = ("event_groups", model.max_stations)
    if key not in stations.derived:
        names = sorted(stations.coordinates)
        stations.derived[key] = compact_groups(
            names, [stations.coordinates[s] for s in names], model.max_stations
        )
    return stations.derived[key]


def association_window(
    model: SINE, stations: StationSet, group: list[str], argdict: dict[str, Any]
) -> float:
    """Association window (s) of a station group: ``association_window`` or the group's largest station
    distance / 5 km/s + 2 s, capped at 80% of the model window."""
    window_s = sba.arg(model, argdict, "association_window")
    if window_s is not None:
        return float(window_s)
    key = ("association_window", tuple(group))
    if key not in stations.derived:
        pos, _ = local_positions([stations.coordinates[s] for s in group])
        span = float(np.max(np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1)))
        stations.derived[key] = span / 5.0 + 2.0
    return min(stations.derived[key], 0.8 * (model.in_samples - 1) / model.sampling_rate)


def locator_config(model: SINE, argdict: dict[str, Any]) -> LocatorConfig:
    """The event step's settings from the annotate arguments (:meth:`LocatorConfig.from_argdict`)."""

    def get(name: str):
        if name == "p_threshold":
            return sba.threshold(model, argdict, "P")
        if name == "s_threshold":
            return sba.threshold(model, argdict, "S")
        if name in sba.annotate_args(model):
            return sba.arg(model, argdict, name)
        return None

    return LocatorConfig.from_argdict(get)


def event_phases(model: SINE) -> list[int]:
    """Indices of the P and S curves among the model's labels (the event step's two phases)."""
    return [model.labels.index("P"), model.labels.index("S")]


def event_curves_from_annotation(model: SINE, argdict: dict[str, Any]) -> bool:
    """Whether the event step takes each station's P and S curves from the annotation's stacks rather than from
    the network run again on the candidate's window: when that run would be the per-station path alone (no
    graph residual on the picks, no arrival head), the same network whose stacked output the picks come from.

    The stacked curves are the better input (measured: ``benchmarks/results/real_events.md``, more events matched
    on Iceland and Ridgecrest): the candidate's window starts ``event_pre_p`` (5 s) before its first P, at the
    edge where the picker is least reliable and the annotation blinds its output, and each sample of the stack
    averages the overlapping windows. And they cost nothing: on 16 stations with an earthquake every 30 s the
    second run cost half as many station-windows as the annotation itself."""
    return not sba.arg(model, argdict, "graph_picks") and model.arrival_head is None


def estimate_candidates(
    model: SINE,
    stations: StationSet,
    candidates: list[Candidate],
    windows: list[np.ndarray],
    argdict: dict[str, Any],
    curves: list[np.ndarray] | None = None,
) -> None:
    """The event step on each candidate's window ``(stations, components, samples)`` starting ``event_pre_p``
    before its first P: its P and S curves are migrated, accepted or rejected, their soft arrival times fitted
    and ML measured (:func:`locate_window`). Fills in location, magnitude, uncertainties and origin time, or
    ``rejected`` with the reason.

    :param curves: Each window's P and S curves ``(stations, 2, samples)``, the annotation's
                   (:func:`event_curves_from_annotation`, :func:`~sine_seisbench.pipeline.prepare.cut_curves`);
                   None: the network is run on the windows (one candidate per forward pass).
    """
    config = locator_config(model, argdict)
    tt = traveltimes_for(sba.arg(model, argdict, "velocity_model"))
    corrections = read_station_corrections(sba.arg(model, argdict, "station_corrections"))
    pre_p = sba.arg(model, argdict, "event_pre_p")
    phase_index = event_phases(model)
    Job = tuple[Candidate, np.ndarray]

    def network(job: Job) -> tuple[np.ndarray, np.ndarray | None]:
        cand, window = job
        # the event head's graph features are run only where they give the arrival weights
        out, _ = run_groups(
            model, stations, [window], [cand.group], argdict, event=model.arrival_head is not None
        )
        n_st = len(cand.group)
        sigma = None
        if "arrival_sigma" in out:
            sigma = np.nan_to_num(out["arrival_sigma"][0, :n_st].cpu().numpy(), nan=0.0)
        return out["picks"][0, :n_st][:, phase_index].cpu().numpy(), sigma

    def locate(job: Job, result: tuple[np.ndarray, np.ndarray | None]) -> None:
        cand, window = job
        cand_curves, sigmas = result
        positions, _, ref = stations.group_inputs(cand.group)
        cand.reference = ref
        available = np.any(window != 0, axis=(1, 2)) & np.all(np.isfinite(window), axis=(1, 2))
        gains = station_gains(stations.inventory, cand.group, stations.calibrated, stations.gain_cache)
        estimate = locate_window(
            np.nan_to_num(cand_curves),
            window,
            model.sampling_rate,
            list(cand.group),
            positions,
            available,
            pre_p,
            tt,
            config,
            gains,
            corrections,
            sigmas,
        )
        cand.set_estimate(estimate, cand.first_p - pre_p, tt)

    jobs = list(zip(candidates, windows, strict=True))
    if curves is not None:
        for job, cand_curves in zip(jobs, curves, strict=True):
            locate(job, (cand_curves, None))
        return
    # One candidate per forward pass: an estimate must not depend on which candidates share a batch (the
    # kernels round differently for other batch sizes), so that classify and the monitor give the same
    # results. The network of the next candidate runs while this one is located.
    pipelined(jobs, network, locate)


class EarlyEvents:
    """``classify``'s event step on the candidates that are final while the record is still being annotated.

    :func:`~sine_seisbench.pipeline.run.annotate_record` stacks the record's windows batch by batch, in time
    order; after each batch :meth:`advance` takes the P picks that can no longer change (the pick step's rule,
    :func:`~sine_seisbench.pipeline.pick.picks_from_curve`, on the final part of each station's stack, as the
    monitor does), associates all of them per group as :func:`locate_record` does, and hands each candidate whose
    cluster is final and whose window's curves are final to a worker thread, which runs
    :func:`estimate_candidates` on it. :func:`locate_record` takes from here (:meth:`take`) the estimate of each
    of its candidates with the same group and window start and runs the step on the others.

    Used only where the event step takes the annotation's curves (:func:`event_curves_from_annotation`): an
    estimate then depends only on the group and the window (the candidate's first P), whose data and curves are
    final, so the events are those of the step run after the annotation; only the time it runs changes: the
    event step (NumPy and Python) overlaps the annotation (ONNX Runtime or torch, which release the GIL). A
    candidate started here that the final picks do not form is computed for nothing; one they form that was not
    started is computed at the end.
    """

    def __init__(
        self, model: SINE, record: GridRecord, stations: StationSet, argdict: dict[str, Any]
    ) -> None:
        self.model, self.record, self.stations, self.argdict = model, record, stations, argdict
        self.pre_p = float(sba.arg(model, argdict, "event_pre_p"))
        self.min_stations = int(sba.arg(model, argdict, "min_stations"))
        self.threshold = float(sba.threshold(model, argdict, "P"))
        self.phases = event_phases(model)
        self.groups = (
            event_groups(model, stations) if len(stations.coordinates) >= self.min_stations else []
        )
        self.windows = [association_window(model, stations, g, argdict) for g in self.groups]
        self.groups_of: dict[str, list[int]] = {}
        for g, group in enumerate(self.groups):
            for key in group:
                self.groups_of.setdefault(key, []).append(g)
        #: per group, its final P picks not yet in a final cluster (the greedy rule resumes at the first)
        self.pending: list[list[sbu.Pick]] = [[] for _ in self.groups]
        #: final candidates whose window's curves are not final yet
        self.waiting: list[Candidate] = []
        self.pick_from: dict[str, int] = {}
        #: per station, the first grid index of the covered span its cursor is in (None: not in one)
        self.span_of: dict[str, int | None] = {}
        self.futures: dict[tuple[tuple[str, ...], int], Future[Candidate]] = {}
        #: ObsPy Events of finished estimates, made in this (the calling) thread while the annotation runs
        #: (ObsPy's resource ids are not made for threads), with the picks and estimate they were made of
        self.events: dict[tuple[tuple[str, ...], int], tuple[list, Any, Event] | None] = {}
        self.channels = waveform_channels(record)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sine-events") if self.groups else None

    def key(self, cand: Candidate) -> tuple[tuple[str, ...], int]:
        """What an estimate depends on: the group and the window's first grid index."""
        return tuple(cand.group), self.record.index(cand.first_p - self.pre_p)

    def advance(self, stacks: dict[str, Stack], final: int) -> None:
        """New final P picks of ``stacks`` (final before grid index ``final``), and the event step started on the
        candidates they make final."""
        if self._pool is None:
            return
        horizon = final
        p_index = self.phases[0]
        rate = self.model.sampling_rate
        for key, stack in stacks.items():
            start = max(self.pick_from.get(key, stack.base), stack.base)
            stop = min(final, stack.end)
            if stop > start:
                # the values and times of the annotation traces classify picks from (float32, each covered span
                # a trace from its first sample: stack_to_traces), so that these picks are the final ones
                values = stack.values(start, stop, missing=np.nan, rows=p_index).astype(np.float32)
                covered = ~np.isnan(values)
                spans = self._span_starts(key, start, covered)
                values[~covered] = 0.0
                new, cut = final_picks(
                    values,
                    self.threshold,
                    key,
                    "P",
                    lambda i, start=start, spans=spans: sample_time(
                        self.record.time(int(spans[i])), start + i - spans[i], rate
                    ),
                )
                if cut:
                    for g in self.groups_of.get(key, []):
                        self.pending[g] += new
                    self.pick_from[key] = start + cut
                    self.span_of[key] = int(spans[cut - 1]) if covered[cut - 1] else None
            if stack.end >= final:  # a station with data up to here: its picks are known before its cursor
                horizon = min(horizon, self.pick_from.get(key, stack.base))
        known = self.record.time(horizon)  # every P pick peaking before this is known
        n = self.model.in_samples
        for g, (group, window_s) in enumerate(zip(self.groups, self.windows, strict=True)):
            # associate's greedy rule, resumed where the last final cluster ended (the clusters after it
            # depend only on the picks from there on)
            picks = sorted(self.pending[g], key=lambda p: p.peak_time)
            used = 0
            for i, next_i, chosen in greedy_clusters(picks, window_s, self.min_stations):
                if picks[i].peak_time + window_s >= known:
                    break  # this cluster and the next ones may still change
                used = next_i
                if chosen is None:
                    continue
                self.waiting.append(Candidate(group=group, p_picks=chosen))
            self.pending[g] = picks[used:]
        waiting, self.waiting = self.waiting, []
        for cand in waiting:
            key = self.key(cand)
            if key in self.futures:
                continue
            if key[1] + n > final:  # its window's curves are not final yet
                self.waiting.append(cand)
                continue
            # the curves are cut here: the stacks grow in this thread
            curves = cut_curves(stacks, cand.group, key[1], n, self.phases)
            self.futures[key] = self._pool.submit(self._estimate, cand, curves)
        self._make_events()

    def _span_starts(self, key: str, start: int, covered: np.ndarray) -> np.ndarray:
        """The first grid index of the covered span of each sample from grid index ``start`` (``covered``: the
        samples some window covered; -1 where none did): the start of the annotation trace it is in."""
        n = len(covered)
        before = self.span_of.get(key)
        opens = covered & ~np.concatenate([[before is not None], covered[:-1]])
        spans = np.maximum.accumulate(np.where(opens, start + np.arange(n), -1))
        if before is not None:
            spans[spans < 0] = before
        return np.where(covered, spans, -1)

    def _make_events(self) -> None:
        """The ObsPy Events of the estimates finished so far (:meth:`event_of` hands them to
        :func:`locate_record`: not made in its serial end)."""
        for key, future in self.futures.items():
            if key in self.events or not future.done() or future.exception() is not None:
                continue
            done = future.result()
            self.events[key] = None
            if done.estimate is not None:
                event = candidate_to_event(
                    done, self.stations.coordinates, self.channels, self.model.name
                )
                self.events[key] = (_pick_signature(done), done.estimate, event)

    def event_of(self, cand: Candidate) -> Event | None:
        """The Event made here of ``cand``'s estimate, if one was and ``cand`` still has the picks it was made
        of (a merge adds the picks of other groups): the Event :func:`candidate_to_event` makes of ``cand``."""
        made = self.events.get(self.key(cand))
        if made is None or made[1] is not cand.estimate or made[0] != _pick_signature(cand):
            return None
        return made[2]

    def _estimate(self, cand: Candidate, curves: np.ndarray) -> Candidate:
        n, channels = self.model.in_samples, self.model.in_channels
        window = cut_window(self.record.read, cand.group, self.key(cand)[1], n, channels)
        estimate_candidates(self.model, self.stations, [cand], [window], self.argdict, [curves])
        return cand

    def take(self, cand: Candidate) -> bool:
        """Gives ``cand`` the estimate made here for its group and window, if one was (waiting for it; the
        worker's exception is raised here)."""
        future = self.futures.pop(self.key(cand), None)
        if future is None:
            return False
        done = future.result()
        cand.reference = done.reference
        cand.set_estimate(
            done.rejected if done.estimate is None else done.estimate, cand.first_p - self.pre_p
        )
        return True

    def close(self) -> None:
        """Stops the worker (estimates not taken are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def locate_record(
    model: SINE,
    record: GridRecord,
    stations: StationSet,
    picks: sbu.PickList,
    argdict: dict[str, Any],
    stacks: dict[str, Stack] | None = None,
    early: EarlyEvents | None = None,
) -> Catalog:
    """The locate step of ``classify`` on a whole record: P picks associated per station group
    (:func:`~sine_seisbench.pipeline.events.associate`), each candidate's window cut from the record and
    estimated (:func:`estimate_candidates`, on the annotation's ``stacks`` where
    :func:`event_curves_from_annotation`; estimates made ``early`` during the annotation are taken over),
    implausible ones dropped, duplicates of overlapping groups merged, ObsPy Events made
    (:func:`~sine_seisbench.pipeline.events.candidate_to_event`)."""
    coordinates = stations.coordinates
    min_stations = sba.arg(model, argdict, "min_stations")
    if len(coordinates) < min_stations:
        seisbench.logger.warning(
            f"SINE: only {len(coordinates)} located station(s) with data, fewer than "
            f"min_stations={min_stations}; returning picks only, no events."
        )
        return Catalog()

    p_picks = sbu.PickList(p for p in picks if p.phase == "P")
    window_len = (model.in_samples - 1) / model.sampling_rate
    candidates: list[Candidate] = []
    for group in event_groups(model, stations):
        window_s = association_window(model, stations, group, argdict)
        candidates += associate(p_picks, group, window_s, min_stations)
    if not candidates:
        return Catalog()

    pre_p = sba.arg(model, argdict, "event_pre_p")
    todo = [cand for cand in candidates if early is None or not early.take(cand)]
    starts = [record.index(cand.first_p - pre_p) for cand in todo]
    n = model.in_samples
    windows = [
        cut_window(record.read, cand.group, start, n, model.in_channels)
        for cand, start in zip(todo, starts, strict=True)
    ]
    curves = None
    if stacks is not None and event_curves_from_annotation(model, argdict):
        curves = [
            cut_curves(stacks, cand.group, start, n, event_phases(model))
            for cand, start in zip(todo, starts, strict=True)
        ]
    if todo:
        estimate_candidates(model, stations, todo, windows, argdict, curves)
    candidates = drop_implausible(
        candidates, coordinates, record.time(record.start), window_len, seisbench.logger
    )
    if not candidates:
        return Catalog()
    merged = merge_candidates(
        candidates,
        sba.arg(model, argdict, "merge_time"),
        sba.arg(model, argdict, "merge_distance"),
    )
    channels = waveform_channels(record)
    return Catalog(
        [
            (None if early is None else early.event_of(cand))
            or candidate_to_event(cand, coordinates, channels, model.name)
            for cand in merged
        ]
    )


def waveform_channels(record: GridRecord) -> dict[str, str]:
    """``NET.STA.LOC`` → the channel code the events' waveform ids name (the vertical's, else the first)."""
    return {
        key: station.channels.get(0) or next(iter(station.channels.values()))
        for key, station in record.stations.items()
    }


def _pick_signature(cand: Candidate) -> list[tuple[str, int]]:
    return [(p.trace_id, p.peak_time.ns) for p in cand.p_picks]


__all__ = [
    "HUTTON_BOORE",
    "ArrivalEstimate",
    "EarlyEvents",
    "association_window",
    "event_curves_from_annotation",
    "estimate_candidates",
    "event_groups",
    "event_phases",
    "locate_record",
    "locator_config",
    "EventEstimate",
    "LocatorConfig",
    "coalescence",
    "estimate_station_corrections",
    "fit_hypocentre",
    "local_magnitude",
    "locate_window",
    "migrate",
    "read_station_corrections",
    "soft_arrivals",
    "station_gains",
    "traveltimes_for",
]
