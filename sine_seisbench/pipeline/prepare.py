"""The *prepare* step: a cleaned stream of a whole network on one sample grid, cut into station windows.

``SINE.annotate``/``classify`` and the streaming monitor share these rules, so that a record gives the same
windows, the same groups and the same stacked probabilities in both:

* Samples live on a global grid: sample index = round(UNIX time x sampling rate), as SeisBench aligns
  fractional start times (a start time moves by at most half a sample).
* Windows of the network start at ``anchor + k * stride``; every station with data in a window takes part in
  it. A station without data in part of a window is filled there (with the mean of its samples in the window,
  which is zero once the window is demeaned) and its output is masked for that part. A station whose data in
  a window are constant (an outage that writes zeros) is left out of that window and reported.
* Window predictions are stacked per station with SeisBench's rule (edges blinded, ``avg`` or ``max``), so the
  output of a station does not depend on which other stations have data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import obspy
import seisbench

from .. import seisbench_adapter as sba
from ..geometry import Coordinates, compact_groups, local_positions, station_key, warn_far_stations

if TYPE_CHECKING:
    from ..model import SINE

#: Samples whose absolute value exceeds this are treated as corrupt (left out as gaps). Digitisers give at most
#: 2**31 counts; beyond ~1e17 the squares in the float32 normalisation overflow.
MAX_ABS_AMPLITUDE = 1e15


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[a, b)`` of True in a 1-D boolean array."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def describe_spans(spans: list[tuple[obspy.UTCDateTime, obspy.UTCDateTime]], most: int = 3) -> str:
    """``T0–T1, T2–T3 and 4 more`` for a warning."""
    text = ", ".join(f"{a}–{b}" for a, b in spans[:most])
    if len(spans) > most:
        text += f" and {len(spans) - most} more"
    return text


def invalid_samples(
    data: np.ndarray, max_abs: float = MAX_ABS_AMPLITUDE
) -> tuple[np.ndarray, list[str]]:
    """The samples of a trace that carry no usable value: masked, NaN/inf, or absurd (``|x| > max_abs``).

    :return: The boolean mask and the kinds found (for a warning).
    """
    values = np.ma.getdata(data)
    if (
        np.ma.getmask(data) is np.ma.nomask
        and values.size
        and (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating))
    ):
        # the common case in two reductions (the monitor calls this for every 1 s packet): no mask and every
        # value within ±max_abs; NaN fails the comparisons and takes the full path below
        with np.errstate(invalid="ignore"):
            if values.min() >= -max_abs and values.max() <= max_abs:
                return np.zeros(values.shape, dtype=bool), []
    bad = np.ma.getmaskarray(data).copy()
    kinds = ["masked"] if bad.any() else []
    if np.issubdtype(values.dtype, np.number):
        with np.errstate(invalid="ignore", over="ignore"):
            finite = np.isfinite(values) if np.issubdtype(values.dtype, np.floating) else True
            nonfinite = ~finite & ~bad
            absurd = finite & (np.abs(values.astype(np.float64)) > max_abs) & ~bad
        if np.any(nonfinite):
            kinds.append("NaN/inf")
            bad |= nonfinite
        if np.any(absurd):
            kinds.append(f"absurd (|x| > {max_abs:g})")
            bad |= absurd
    return bad, kinds


def split_invalid_samples(stream: obspy.Stream, max_abs: float = MAX_ABS_AMPLITUDE) -> None:
    """Turns :func:`invalid_samples` into gaps between separate traces, with one warning per trace naming the
    spans, so that nothing is dropped silently."""
    replaced = obspy.Stream()
    for tr in stream:
        bad, kinds = invalid_samples(tr.data, max_abs)
        if not bad.any():
            replaced += tr
            continue
        dt = tr.stats.delta
        t0 = tr.stats.starttime
        spans = [(t0 + a * dt, t0 + (b - 1) * dt) for a, b in _spans(bad)]
        seisbench.logger.warning(
            f"SINE: trace {tr.id} has {int(bad.sum())} {' and '.join(kinds)} sample(s) at "
            f"{describe_spans(spans)}; these samples are left out as gaps."
        )
        tr = tr.copy()
        tr.data = np.ma.masked_array(np.ma.getdata(tr.data), mask=bad)
        replaced += tr.split()
    stream.traces = replaced.traces


@dataclass
class StationRecord:
    """One station's samples on the global grid: ``data[c, i]`` is component ``c`` (model order) at grid
    index ``base + i``; NaN where there is no sample."""

    key: str
    coordinates: Coordinates
    calibrated: bool
    base: int
    data: np.ndarray
    channels: dict[int, str] = field(default_factory=dict)  # model component -> channel code

    @property
    def end(self) -> int:
        """One past the last grid index."""
        return self.base + self.data.shape[1]

    def read(self, start: int, n: int) -> np.ndarray:
        """``(components, n)`` from grid index ``start``; NaN where there is no sample."""
        out = np.full((self.data.shape[0], n), np.nan, dtype=np.float32)
        a, b = max(start, self.base), min(start + n, self.end)
        if b > a:
            out[:, a - start : b - start] = self.data[:, a - self.base : b - self.base]
        return out


def fill_window(x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Prepares one station's window ``(components, samples)`` with NaN where there is no sample.

    Missing samples of a component are filled with the mean of its samples in the window (zero after
    demeaning: the network sees nothing there); components without any sample stay zero (the network's
    component mask).

    :return: The filled window, or None when the station has no usable data in the window (no sample, or every
             component constant, e.g. an outage writing zeros), and the mask ``(samples,)`` of samples where at
             least one component has data.
    """
    ok = ~np.isnan(x)
    if x.size and ok.all():  # the common case: every sample there (the same result as the loop below)
        usable = bool(np.any(x.max(axis=1) > x.min(axis=1)))
        return (x.astype(np.float32) if usable else None), ok[0]
    have = ok.any(axis=0)
    out = np.zeros_like(x, dtype=np.float32)
    usable = False
    for c in range(x.shape[0]):
        if not ok[c].any():
            continue
        values = x[c, ok[c]]
        if values.max() > values.min():
            usable = True
        if ok[c].all():
            out[c] = x[c]
        else:
            out[c] = np.where(ok[c], x[c], values.mean())
    return (out if usable else None), have


class GridRecord:
    """A network's record on the global grid of the model's sampling rate (see the module docstring).

    :param stations: Station records keyed ``NET.STA.LOC``.
    :param rate: Sampling rate (Hz) of the grid.
    """

    def __init__(self, stations: dict[str, StationRecord], rate: float) -> None:
        self.stations = stations
        self.rate = float(rate)

    @property
    def start(self) -> int:
        return min(s.base for s in self.stations.values())

    @property
    def end(self) -> int:
        return max(s.end for s in self.stations.values())

    def time(self, index: int) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(index / self.rate)

    def read(self, key: str, start: int, n: int) -> np.ndarray | None:
        """Station ``key``'s ``(components, n)`` from grid index ``start`` (NaN where there is no sample); None
        for a station not in the record."""
        station = self.stations.get(key)
        return None if station is None else station.read(start, n)

    def index(self, t: obspy.UTCDateTime) -> int:
        return int(round(t.timestamp * self.rate))

    @classmethod
    def from_stream(
        cls,
        stream: obspy.Stream,
        rate: float,
        comp_dict: dict[str, int],
        n_components: int,
        calibrated: dict[str, bool] | None = None,
    ) -> GridRecord:
        """Places every trace of a prepared stream (one sampling rate, ``stats.coordinates`` set) on the grid.

        Where two traces of one channel overlap and disagree, only the disagreeing samples are left out (with a
        warning naming the channel and the span); identical overlaps are kept once.
        """
        by_station: dict[str, list[obspy.Trace]] = {}
        for tr in stream:
            if tr.stats.channel[-1:] not in comp_dict or tr.stats.npts == 0:
                continue
            by_station.setdefault(station_key(tr.id), []).append(tr)
        stations = {}
        for key, traces in sorted(by_station.items()):
            starts = [int(round(tr.stats.starttime.timestamp * rate)) for tr in traces]
            base = min(starts)
            end = max(s + tr.stats.npts for s, tr in zip(starts, traces, strict=True))
            data = np.full((n_components, end - base), np.nan, dtype=np.float32)
            conflict = np.zeros((n_components, end - base), dtype=bool)
            channels: dict[int, str] = {}
            for s, tr in sorted(zip(starts, traces, strict=True), key=lambda p: p[0]):
                c = comp_dict[tr.stats.channel[-1]]
                channels.setdefault(c, tr.stats.channel)
                values = np.asarray(tr.data, dtype=np.float32)
                target = data[c, s - base : s - base + len(values)]
                present = ~np.isnan(target)
                differs = present & (target != values)
                conflict[c, s - base : s - base + len(values)] |= differs
                target[~present] = values[~present]
            for c in range(n_components):
                if not conflict[c].any():
                    continue
                data[c, conflict[c]] = np.nan
                spans = [
                    (obspy.UTCDateTime((base + a) / rate), obspy.UTCDateTime((base + b - 1) / rate))
                    for a, b in _spans(conflict[c])
                ]
                seisbench.logger.warning(
                    f"SINE: overlapping records of {key}.{channels.get(c, '?')} disagree at "
                    f"{describe_spans(spans)} ({int(conflict[c].sum())} samples); only these samples are "
                    "left out. Remove the duplicate records from the input to keep them."
                )
            coords = Coordinates.from_stats(traces[0].stats.coordinates)
            stations[key] = StationRecord(
                key,
                coords,
                bool((calibrated or {}).get(key, False)),
                base,
                data,
                channels,
            )
        return cls(stations, rate)


def cut_window(
    read: Callable[[str, int, int], np.ndarray | None],
    stations: list[str],
    start: int,
    n: int,
    components: int,
    limit: int | None = None,
) -> np.ndarray:
    """An event window ``(len(stations), components, n)`` of a station group from grid index ``start``; absent
    data are zero.

    :param read: ``read(station, start, n)``: the station's ``(components, n)`` samples with NaN where there is
                 none, or None for a station without data.
    :param limit: Samples from this grid index on are zero too (a streaming caller whose data are not complete
                  at every station yet, so that an early estimate does not depend on which packets happened to
                  be there).
    """
    out = np.zeros((len(stations), components, n), dtype=np.float32)
    for i, key in enumerate(stations):
        x = read(key, start, n)
        if x is not None:
            out[i] = np.nan_to_num(x, nan=0.0)
    if limit is not None and limit < start + n:
        out[..., max(0, limit - start) :] = 0.0
    return out


def cut_curves(
    stacks: dict[str, Stack],
    stations: list[str],
    start: int,
    n: int,
    phases: list[int],
    limit: int | None = None,
) -> np.ndarray:
    """The stacked probability curves ``(len(stations), len(phases), n)`` of a station group from grid index
    ``start`` (the event step's input when it takes the annotation's curves); zero where no window covered a
    sample or a station has no stack.

    :param phases: Indices of the phases in the stacks (e.g. P and S).
    :param limit: Samples from this grid index on are zero too (a streaming caller whose stacks are final only
                  before it).
    """
    out = np.zeros((len(stations), len(phases), n), dtype=np.float32)
    for i, key in enumerate(stations):
        stack = stacks.get(key)
        if stack is not None:
            stack.write(start, start + n, out[i], rows=phases)
    if limit is not None and limit < start + n:
        out[..., max(0, limit - start) :] = 0.0
    return out


def window_starts(first: int, end: int, n: int, stride: int) -> list[int]:
    """Window starts of a record ``[first, end)``: ``first + k * stride`` while the window fits, and one more
    aligned to the end of the record when the last one does not reach it (as SeisBench does). A record
    shorter than a window gets one window from its first sample."""
    if end - first <= n:
        return [first]
    starts = list(range(first, end - n + 1, stride))
    if starts[-1] + n < end:
        starts.append(end - n)
    return starts


class OutageLog:
    """Collects windows in which a station had only constant data and reports each contiguous span once."""

    def __init__(self) -> None:
        self._spans: dict[str, list[list[int]]] = {}

    def add(self, key: str, start: int, stop: int) -> bool:
        """Records a dead stretch; True when it starts a new span (not adjacent to the last one)."""
        spans = self._spans.setdefault(key, [])
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], stop)
            return False
        spans.append([start, stop])
        return True

    def trim(self, keep_from: int) -> None:
        """Forgets spans ending before ``keep_from`` (a streaming caller that has reported them)."""
        for key in list(self._spans):
            self._spans[key] = [s for s in self._spans[key] if s[1] >= keep_from][-1:]
            if not self._spans[key]:
                del self._spans[key]

    def report(self, rate: float) -> list[str]:
        """Logs one warning per station and returns the messages."""
        messages = []
        for key, spans in sorted(self._spans.items()):
            times = [
                (obspy.UTCDateTime(a / rate), obspy.UTCDateTime((b - 1) / rate)) for a, b in spans
            ]
            msg = (
                f"SINE: station {key} has only constant data (dead channel or outage) in the window(s) "
                f"covering {describe_spans(times)}; it is left out there."
            )
            seisbench.logger.warning(msg)
            messages.append(msg)
        self._spans.clear()
        return messages


#: One station group's part of one window, as the *run* step takes it: ``(window start (grid index), group,
#: windows (stations, components, samples) filled by :func:`fill_window`, sample masks (samples,) per station)``.
WindowItem = tuple[int, list[str], np.ndarray, list[np.ndarray]]


def usable_windows(
    raw: dict[str, np.ndarray], start: int, outages: OutageLog
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[tuple[str, int]]]:
    """The stations that take part in the window from grid index ``start``.

    :param raw: Each station's window ``(components, samples)`` with NaN where there is no sample.
    :param outages: Where stations with only constant data are recorded.
    :return: Filled windows and sample masks (:func:`fill_window`) of the usable stations, and ``(station,
             first dead index)`` of every station whose outage starts a new span in ``outages``.
    """
    windows: dict[str, np.ndarray] = {}
    have: dict[str, np.ndarray] = {}
    new_outages = []
    for key, x in raw.items():
        w, h = fill_window(x)
        if w is not None:
            windows[key], have[key] = w, h
        elif h.any():
            idx = np.flatnonzero(h)
            first = start + int(idx[0])
            if outages.add(key, first, start + int(idx[-1]) + 1):
                new_outages.append((key, first))
    return windows, have, new_outages


class Stack:
    """Stacked window predictions of one station from grid index ``base`` on, ``(phases, samples)``.

    Blinded or masked samples of a window are NaN and do not count; ``avg`` averages and ``max`` takes the
    largest value over the windows covering a sample (SeisBench's stacking).
    """

    def __init__(self, phases: int, base: int, method: str) -> None:
        self.base = base
        self.method = method
        self._fill = -np.inf if method == "max" else 0.0
        # buffers with spare room at the end (grown geometrically); the first ``_length`` samples are used
        self._total = np.full((phases, 0), self._fill, dtype=np.float64)
        self._count = np.zeros((phases, 0), dtype=np.int32)
        self._length = 0

    def _reserve(self, length: int) -> None:
        if length > self._total.shape[1]:
            size = max(length, 2 * self._total.shape[1])
            total = np.full((self._total.shape[0], size), self._fill)
            count = np.zeros((self._count.shape[0], size), dtype=np.int32)
            total[:, : self._length] = self._total[:, : self._length]
            count[:, : self._length] = self._count[:, : self._length]
            self._total, self._count = total, count
        self._length = max(self._length, length)

    def add(self, start: int, pred: np.ndarray) -> None:
        """``pred``: (phases, samples), float32 or float64 (summed in float64), NaN where blinded or masked."""
        if start < self.base:
            pred = pred[:, self.base - start :]
            start = self.base
        stop = start + pred.shape[1] - self.base
        self._reserve(stop)
        sl = slice(start - self.base, stop)
        valid = ~np.isnan(pred)
        total = self._total[:, sl]
        if self.method == "max":
            np.fmax(total, pred, out=total)  # fmax ignores NaN
        else:
            np.add(total, pred, out=total, where=valid)
        np.add(self._count[:, sl], valid, out=self._count[:, sl], casting="unsafe")

    def values(
        self, start: int, stop: int, missing: float = 0.0, rows: int | list[int] | None = None
    ) -> np.ndarray:
        """Stacked probabilities on ``[start, stop)`` (of the phases ``rows`` only, indexed as
        ``total[rows]``: an int gives one curve); ``missing`` where no window covered a sample."""
        shape = self._total[_rows(rows), :0].shape[:-1] + (stop - start,)
        return self.write(start, stop, np.empty(shape), missing, rows)

    def write(
        self,
        start: int,
        stop: int,
        out: np.ndarray,
        missing: float = 0.0,
        rows: int | list[int] | None = None,
    ) -> np.ndarray:
        """:meth:`values` written into ``out`` (``(len(rows), stop - start)``; float32 takes the float64 values
        rounded, as an assignment would)."""
        pick = _rows(rows)
        a, b = max(start, self.base), min(stop, self.end)
        if b <= a:
            out[...] = missing
            return out
        if a > start:
            out[..., : a - start] = missing
        if b < stop:
            out[..., b - start :] = missing
        tot = self._total[pick, a - self.base : b - self.base]
        cnt = self._count[pick, a - self.base : b - self.base]
        part = out[..., a - start : b - start]
        covered = cnt > 0
        if covered.all():  # most calls: no masked operation (2x faster)
            covered = True
        else:
            part[...] = missing
        if self.method == "max":
            np.copyto(part, tot, where=covered, casting="same_kind")
        else:
            np.divide(tot, cnt, out=part, where=covered, casting="same_kind")
        return out

    @property
    def end(self) -> int:
        return self.base + self._length

    def trim(self, keep_from: int) -> None:
        if keep_from <= self.base:
            return
        drop = min(keep_from - self.base, self._length)
        self._length -= drop
        self._total = self._total[:, drop:].copy()
        self._count = self._count[:, drop:].copy()
        self.base = keep_from


def _rows(rows: int | list[int] | None) -> int | slice | list[int]:
    """``Stack`` rows as an index: a run of consecutive rows as a slice (a view instead of a copy)."""
    if rows is None:
        return slice(None)
    if isinstance(rows, (int, np.integer)):
        return int(rows)
    rows = [int(r) for r in rows]
    if rows and rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return rows


def mask_prediction(pred: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Window prediction ``(phases, samples)`` with NaN where the station had no sample."""
    if have.all():
        return pred
    return np.where(have[None, :], pred, np.nan)


def stack_to_traces(
    key: str,
    stack: Stack,
    labels: Iterable[str],
    rate: float,
    prefix: str,
    only: Iterable[str] | None = None,
) -> obspy.Stream:
    """Annotation traces ``NET.STA.LOC.<prefix>_<label>`` of a station, one per covered span.

    :param labels: The stack's labels, in its row order.
    :param only: These labels only (default: all): ``classify`` picks from P and S, not from N.
    """
    labels = list(labels)
    chosen = [label for label in labels if only is None or label in only]
    values = stack.values(stack.base, stack.end, missing=np.nan, rows=[labels.index(c) for c in chosen])
    covered = ~np.isnan(values).all(axis=0)
    net, sta, loc = key.split(".")[:3]
    out = obspy.Stream()
    for a, b in _spans(covered):
        for i, label in enumerate(chosen):
            out += obspy.Trace(
                values[i, a:b].astype(np.float32),
                {
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "channel": f"{prefix}_{label}",
                    "sampling_rate": rate,
                    "starttime": obspy.UTCDateTime((stack.base + a) / rate),
                },
            )
    return out


# ------------------------------------------------------------------------------------------------------------
# Instrument sensitivity (classify and the monitor: one rule)
# ------------------------------------------------------------------------------------------------------------
def sensitivity(inventory: Any, trace_id: str, time: obspy.UTCDateTime) -> float | None:
    """The overall sensitivity of channel ``trace_id`` at ``time`` in an ObsPy Inventory: the response's
    ``instrument_sensitivity`` value as it is written (a response without stages is read as well). None where
    there is no inventory, channel, response or sensitivity, or the value is zero or not finite: such a channel
    stays in counts (uncalibrated)."""
    if not isinstance(inventory, obspy.Inventory):
        return None
    try:
        response = inventory.get_response(trace_id, time)
    except Exception:  # noqa: BLE001 - ObsPy raises plain Exception for a channel it does not find
        return None
    sens = None if response is None else response.instrument_sensitivity
    if sens is None or sens.value is None:
        return None
    value = float(sens.value)
    return value if value != 0 and math.isfinite(value) else None


def remove_sensitivity(stream: obspy.Stream, inventory: Any) -> None:
    """Divides each trace by its overall sensitivity (:func:`sensitivity`) and marks it ``sine_calibrated``;
    traces without one are left as they are."""
    for tr in stream:
        if tr.stats.get("sine_calibrated"):
            continue
        value = sensitivity(inventory, tr.id, tr.stats.starttime)
        if value is None:
            continue
        tr.data = np.asarray(tr.data, dtype=np.float64) / value
        tr.stats.sine_calibrated = True


# ------------------------------------------------------------------------------------------------------------
# The stations of a record
# ------------------------------------------------------------------------------------------------------------
@dataclass
class StationSet:
    """The stations of a prepared record (or of the monitor's buffers) as the later steps need them.

    :param coordinates: ``NET.STA.LOC`` → coordinates.
    :param calibrated: ``NET.STA.LOC`` → whether its traces were divided by their sensitivity (m/s).
    :param inventory: The ObsPy Inventory given (instrument sensitivities for ML), or None.

    It also keeps what is derived from the station set once: each group's local positions, the compact groups
    of each set of stations with data, and the instrument gains. Replaces the state that used to travel in the
    argdict under private keys.
    """

    coordinates: dict[str, Coordinates]
    calibrated: dict[str, bool] = field(default_factory=dict)
    inventory: Any = None
    #: the instrument gains looked up so far (:func:`~sine_seisbench.pipeline.locate.station_gains`)
    gain_cache: dict[str, dict[int, tuple[float, str]]] = field(default_factory=dict, repr=False)
    #: values derived from the station set once, keyed by what they are and their arguments (group inputs,
    #: compact groups, the event step's groups and association windows)
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def same_stations(
        self, coordinates: dict[str, Coordinates], calibrated: dict[str, bool]
    ) -> bool:
        return self.coordinates == coordinates and self.calibrated == calibrated

    def group_inputs(
        self, stations: list[str]
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """Local positions ``(S, 3)`` (km), calibration flags ``(S,)`` and reference point of a group."""
        key = ("group_inputs", tuple(stations))
        if key not in self.derived:
            positions, ref = local_positions([self.coordinates[station_key(s)] for s in stations])
            calibrated = np.array([self.calibrated.get(station_key(s), False) for s in stations])
            self.derived[key] = (positions, calibrated, ref)
        return self.derived[key]

    def groups(
        self, stations: Iterable[str], max_stations: int, min_neighbours: int | None
    ) -> list[list[str]]:
        """The compact groups of at most ``max_stations`` of a set of stations (cached per set)."""
        members = frozenset(stations)
        key = ("groups", members, max_stations, min_neighbours)
        if key not in self.derived:
            names = sorted(members)
            self.derived[key] = compact_groups(
                names, [self.coordinates[s] for s in names], max_stations, min_neighbours
            )
        return self.derived[key]


def group_limits(model: SINE) -> tuple[int, int | None]:
    """``(max_stations, min_neighbours)`` of a model's station groups."""
    return model.max_stations, getattr(sba.grouping_helper(model), "min_neighbours", None)


def prepare_stream(
    model: SINE, stream: obspy.Stream, argdict: dict[str, Any]
) -> tuple[GridRecord, StationSet] | None:
    """The *prepare* step of ``classify``/``annotate``: cleans the stream in place (the caller's private
    copy; :meth:`SINE.annotate_stream_pre`: corrupt samples become gaps, coordinates attached, sensitivity,
    SeisBench's resampling), places it on the sampling grid and describes its stations. None when nothing
    usable is left."""
    stream.merge(-1)
    model.annotate_stream_pre(stream, argdict)
    stream = model.annotate_stream_validate(stream, argdict)
    comp_dict = sba.component_index(
        model, stream, sba.arg(model, argdict, "flexible_horizontal_components")
    )
    calibrated: dict[str, bool] = {}
    for tr in stream:
        key = station_key(tr.id)
        calibrated[key] = calibrated.get(key, True) and bool(tr.stats.get("sine_calibrated"))
    record = GridRecord.from_stream(
        stream, model.sampling_rate, comp_dict, model.in_channels, calibrated
    )
    if not record.stations:
        return None
    stations = StationSet(
        {k: s.coordinates for k, s in record.stations.items()},
        {k: s.calibrated for k, s in record.stations.items()},
        argdict.get("inventory"),
    )
    warn_far_stations(stations.coordinates, seisbench.logger)
    return record, stations


def window_items(
    model: SINE,
    stations: StationSet,
    start: int,
    raw: dict[str, np.ndarray],
    outages: OutageLog,
    argdict: dict[str, Any],
) -> tuple[list[WindowItem], list[tuple[str, int]]]:
    """The *prepare* step of one window from grid index ``start``: the stations' raw windows
    ``(components, in_samples)`` (NaN where there is no sample) filled and masked (:func:`usable_windows`)
    and split into the model's station groups (:meth:`StationSet.groups`). Used by ``classify`` and the
    monitor.

    Where the picks do not depend on the group (``graph_picks`` false: each station's are the per-station
    path's), every station is run once per window, in batches of ``max_stations`` in name order, instead of once
    per overlapping group it belongs to; its stacked values are the same (the mean of equal predictions).

    :return: One ``(start, group, windows (stations, components, samples), sample masks)`` per group, and
             the stations whose outage starts a new span in ``outages`` (see :func:`usable_windows`).
    """
    windows, have, new_outages = usable_windows(raw, start, outages)
    if not windows:
        groups = []
    elif sba.arg(model, argdict, "graph_picks"):
        groups = stations.groups(windows, *group_limits(model))
    else:
        names = sorted(windows)
        groups = [
            names[i : i + model.max_stations] for i in range(0, len(names), model.max_stations)
        ]
    items = [
        (start, group, np.stack([windows[s] for s in group]), [have[s] for s in group])
        for group in groups
    ]
    return items, new_outages
