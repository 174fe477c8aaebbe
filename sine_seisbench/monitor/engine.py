"""Streaming SINE: per-channel buffers, windows on a fixed time grid, picks and events merged across windows.

The engine reproduces :meth:`SINE.classify <sine_seisbench.model.SINE.classify>` incrementally:

* Samples live on a global grid (sample index = UNIX time x sampling rate). Window ``k`` starts at
  ``anchor + k * stride`` and holds the model's ``in_samples``; ``stride`` defaults to ``in_samples - overlap``
  with SINE's default ``overlap``, as in ``annotate``.
* A window is run once every active station has data to its end (gaps allowed), or once newer data (or, for a
  live source, wall-clock time) is ``max_latency_s`` past its end. Predictions of overlapping windows are stacked
  per station with SeisBench's rule (blinded edges, ``avg`` or ``max``).
* A sample is final when no later window covers it. Picks are taken from final stacked probabilities with
  SeisBench's trigger (on at the threshold, off at half of it), cut only where the trigger is off, so streaming
  picks equal those of one pass over the whole record.
* P picks are associated with :func:`sine_seisbench.pipeline.events.associate`'s greedy rule per station
  group, replayed cluster by cluster as picks become final; candidates are located by the event step
  (:func:`sine_seisbench.pipeline.locate.estimate_candidates`) and merged with
  :func:`sine_seisbench.pipeline.events.merge_sets`, on the stacked curves as ``classify`` does where the event
  step takes the annotation's (:func:`sine_seisbench.pipeline.locate.event_curves_from_annotation`): the
  estimate is complete once the stacks over its window are final, a window length minus the stride after its
  data (15 s at the default stride). An event is
  published as soon as ``min_stations`` final P picks associate, and republished with the same id and a higher
  ``version`` when picks, location or magnitude change.
* :meth:`StreamingClassifier.checkpoint` captures everything needed to continue exactly after a restart; data
  older than :meth:`StreamingClassifier.keep_from` are then no longer needed, so their source positions can be
  committed.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import obspy
import seisbench
import seisbench.util as sbu

from .. import seisbench_adapter as sba
from ..geometry import Coordinates, StationTable, station_key, warn_far_stations
from ..ids import stable_id
from ..model import SINE
from ..pipeline.events import (
    Candidate,
    candidate_to_event,
    drop_implausible,
    event_id_seed,
    greedy_clusters,
    merge_members,
    merge_sets,
)
from ..pipeline.locate import (
    association_window,
    estimate_candidates,
    event_curves_from_annotation,
    event_groups,
    event_phases,
)
from ..pipeline.pick import final_picks
from ..pipeline.prepare import (
    OutageLog,
    Stack,
    StationSet,
    WindowItem,
    cut_curves,
    cut_window,
    invalid_samples,
    sensitivity,
    window_items,
)
from ..pipeline.run import run_and_stack
from .base import MalformedPacket
from .schema import event_message, pick_message


class LatePacket(MalformedPacket):
    """Samples for windows that have already been run (later than ``max_latency_s``)."""


# -------------------------------------------------------------------------------------------------------------
# Buffers
# -------------------------------------------------------------------------------------------------------------
class ChannelBuffer:
    """Samples of one channel on the global grid ``index = round(t * rate)``; NaN where nothing arrived.

    Overlapping packets are idempotent: a sample already present is kept (the first arrival wins).

    :param max_span: Most samples the buffer may span (from its oldest to its newest sample); a write that would
                     make it longer raises :class:`MalformedPacket` instead of allocating.
    """

    def __init__(self, rate: float, max_span: int | None = None) -> None:
        self.rate = float(rate)
        self.max_span = max_span
        self.base: int | None = None
        self.data = np.empty(0, dtype=np.float32)
        self.end = -(2**62)  # one past the newest sample written

    def index(self, t: obspy.UTCDateTime | float) -> int:
        ts = t.timestamp if isinstance(t, obspy.UTCDateTime) else float(t)
        return int(round(ts * self.rate))

    def write(self, start: int, samples: np.ndarray) -> int:
        """Stores samples from grid index ``start``; returns how many were new."""
        n = len(samples)
        if self.max_span is not None:
            lo = start if self.base is None else min(start, self.base)
            hi = start + n if self.base is None else max(start + n, self.end)
            if hi - lo > self.max_span:
                raise MalformedPacket(
                    f"packet at sample {start} would make a buffer span {(hi - lo) / self.rate:.0f} s, more "
                    f"than its limit of {self.max_span / self.rate:.0f} s"
                )
        if self.base is None:
            self.base = start
        if start < self.base:  # an earlier packet arriving late: grow the buffer backwards
            grow = self.base - start
            self.data = np.concatenate([np.full(grow, np.nan, dtype=np.float32), self.data])
            self.base = start
        stop = start + n - self.base
        if stop > len(self.data):
            grown = np.full(max(stop, 2 * len(self.data), 4096), np.nan, dtype=np.float32)
            grown[: len(self.data)] = self.data
            self.data = grown
        target = self.data[start - self.base : stop]
        empty = np.isnan(target)
        new = int(empty.sum())
        target[empty] = np.asarray(samples, dtype=np.float32)[empty]
        self.end = max(self.end, start + n)
        return new

    def read(self, start: int, n: int) -> np.ndarray:
        out = np.full(n, np.nan, dtype=np.float32)
        if self.base is None:
            return out
        a, b = max(start, self.base), min(start + n, self.base + len(self.data))
        if b > a:
            out[a - start : b - start] = self.data[a - self.base : b - self.base]
        return out

    def trim(self, keep_from: int) -> None:
        if self.base is None or keep_from <= self.base:
            return
        drop = min(keep_from - self.base, len(self.data))
        self.data = self.data[drop:].copy()
        self.base += drop


@dataclass
class _StationState:
    key: str
    coordinates: Coordinates
    channels: dict[str, ChannelBuffer] = field(default_factory=dict)  # component letter -> buffer
    channel_codes: dict[str, str] = field(default_factory=dict)  # component letter -> channel code
    instrument: str | None = None  # band + instrument code, e.g. "HH"
    calibrated: bool = True

    @property
    def end(self) -> int:
        return max((b.end for b in self.channels.values()), default=-(2**62))


@dataclass
class _EventState:
    id: str
    version: int
    keys: set[tuple]
    digest: str
    order: int


def _pick_to_dict(p: sbu.Pick) -> dict[str, Any]:
    return {
        "trace_id": p.trace_id,
        "phase": p.phase,
        "peak_time": p.peak_time.timestamp,
        "peak_value": None if p.peak_value is None else float(p.peak_value),
        "start_time": None if p.start_time is None else p.start_time.timestamp,
        "end_time": None if p.end_time is None else p.end_time.timestamp,
    }


def _pick_from_dict(d: dict[str, Any]) -> sbu.Pick:
    return sbu.Pick(
        trace_id=d["trace_id"],
        phase=d["phase"],
        peak_time=obspy.UTCDateTime(d["peak_time"]),
        peak_value=d["peak_value"],
        start_time=None if d["start_time"] is None else obspy.UTCDateTime(d["start_time"]),
        end_time=None if d["end_time"] is None else obspy.UTCDateTime(d["end_time"]),
    )


def _pick_sort_key(p: sbu.Pick) -> tuple[float, str]:
    return (round(p.peak_time.timestamp, 6), p.trace_id)


def _cand_key(cand: Candidate) -> tuple:
    first = min(cand.p_picks, key=_pick_sort_key)
    return (tuple(cand.group), first.trace_id, round(first.peak_time.timestamp, 3))


# -------------------------------------------------------------------------------------------------------------
# Engine
# -------------------------------------------------------------------------------------------------------------
class StreamingClassifier:
    """Runs SINE over packets as they arrive; see the module docstring.

    :param model: A SINE model (its ``default_args`` apply; ``classify_args`` override them).
    :param inventory: StationXML Inventory, DataFrame or :class:`StationTable` with the stations' coordinates.
    :param stride_s: Seconds between window starts. Default: ``in_samples - overlap`` samples.
    :param max_latency_s: How long a window waits for stations that have not reached its end: in data time
                          (newer data of other stations) and, with ``live=True``, in wall-clock time.
    :param inactive_s: A station whose newest sample is this far behind a window's end is not waited for.
    :param anchor: Time of window 0. Default: the first sample received, so that windows are those of
                   ``classify`` on the record from that time (the anchor is kept in the checkpoint). Give a
                   fixed time (e.g. ``0``, the UNIX epoch) for windows independent of the start.
    :param live: Wall-clock latency applies (real-time sources).
    :param early_events: Publish an event as soon as ``min_stations`` final P picks associate, estimated from
                         the part of its event window already complete (data, and the stacked curves where the
                         event step takes them, final; the rest zero), and update it as the window fills;
                         otherwise wait for the complete window (the final version is the same).
    :param max_packet_skew_s: A packet that starts or ends more than this many seconds away from the stream's
                              time (the newest sample buffered, or after a restore the checkpoint's next
                              window) is refused (:class:`MalformedPacket`, dead-lettered) before anything is
                              buffered: a wrong clock (year 2099) would otherwise make a buffer span decades.
                              Not checked against the wall clock (replays of old data through Kafka or at
                              ``--speed`` are live sources too), so the very first packet a fresh engine
                              receives is not checked.
    :param classify_args: Any of SINE's annotate/classify arguments (thresholds, min_stations, ...).
    """

    def __init__(
        self,
        model: SINE,
        inventory: Any,
        stride_s: float | None = None,
        max_latency_s: float = 10.0,
        inactive_s: float = 120.0,
        anchor: obspy.UTCDateTime | float | None = None,
        live: bool = False,
        early_events: bool = True,
        max_packet_skew_s: float = 86400.0,
        **classify_args: Any,
    ) -> None:
        self.model = model
        self.inventory = inventory if isinstance(inventory, obspy.Inventory) else None
        self.table = StationTable.from_any(inventory)
        self.rate = float(model.sampling_rate)
        self.n = int(model.in_samples)
        self.argdict = model.default_args.copy()
        self.argdict.update(classify_args)
        sba.verify_args(model, classify_args)
        self.stride = (
            sba.window_stride(model, self.argdict)
            if stride_s is None
            else int(round(float(stride_s) * self.rate))
        )
        if not 0 < self.stride <= self.n:
            raise ValueError(
                f"stride must be between 1 sample and the window ({self.n / self.rate:.2f} s), got "
                f"{self.stride / self.rate:.2f} s"
            )
        self.latency = int(round(max_latency_s * self.rate))
        self.max_latency_s = float(max_latency_s)
        self.inactive = int(round(inactive_s * self.rate))
        # None: window 0 starts at the first sample received (as classify on a record from that time)
        self.anchor: int | None = None if anchor is None else self._to_index(anchor)
        self.live = live
        self.early_events = early_events
        if not max_packet_skew_s > 0:
            raise ValueError(f"max_packet_skew_s must be positive, got {max_packet_skew_s}")
        self.max_packet_skew_s = float(max_packet_skew_s)
        self._flushing = False
        self.stacking = sba.arg(self.model, self.argdict, "stacking").lower()
        self.blinding = sba.arg(self.model, self.argdict, "blinding")
        self.phases = [p for p in model.labels]
        self.thresholds = {
            p: float(sba.threshold(model, self.argdict, p)) for p in self.phases if p != "N"
        }
        self.max_abs_amplitude = float(sba.arg(self.model, self.argdict, "max_abs_amplitude"))
        self.min_stations = int(sba.arg(self.model, self.argdict, "min_stations"))
        self.pre_p = float(sba.arg(self.model, self.argdict, "event_pre_p"))
        self._annotation_curves = event_curves_from_annotation(self.model, self.argdict)
        self.merge_time = float(sba.arg(self.model, self.argdict, "merge_time"))
        self.merge_distance = float(sba.arg(self.model, self.argdict, "merge_distance"))
        self.batch_size = int(self.argdict.get("batch_size") or 16)
        self.window_len = (self.n - 1) / self.rate
        self.comp_index = sba.component_index(model)  # component letter -> model channel

        self.stations: dict[str, _StationState] = {}
        self.next_window: int | None = None  # index k of the next window to run
        self.stacks: dict[str, Stack] = {}
        self.pick_from: dict[tuple[str, str], int] = {}  # (station, phase) -> first non-final index
        self.p_picks: list[sbu.Pick] = []
        self.s_picks: list[sbu.Pick] = []
        self.cursors: dict[tuple[str, ...], tuple[float, str]] = {}
        self.final_cands: dict[tuple, Candidate] = {}
        self.events: dict[str, _EventState] = {}
        self._event_counter = 0
        self._located: dict[tuple, Candidate] = {}
        self._outages = OutageLog()
        self._implausible_logged: set = set()
        self._far_checked = 0  # number of stations when far stations were last checked
        self._far_warned: set[str] = set()
        self._sensitivity: dict[str, float | None] = {}
        self._stations: StationSet | None = None
        self._first_due: dict[int, float] = {}
        self._replayed_until: int | None = None
        self._newest = -(2**62)  # newest sample buffered (model grid), for max_packet_skew_s
        self._restored_keep = -(2**62)  # keep_from_index() when restored
        self._restored_buffered: list[
            list[Any]
        ] = []  # checkpoint's "buffered" (see _buffered_counts)
        self.stats = {"windows": 0, "packets": 0, "late": 0, "replayed": 0, "picks": 0}

    # ---------------------------------------------------------------------------------------------------------
    # Input
    # ---------------------------------------------------------------------------------------------------------
    def _to_index(self, t: obspy.UTCDateTime | float) -> int:
        ts = t.timestamp if isinstance(t, obspy.UTCDateTime) else float(t)
        return int(round(ts * self.rate))

    def _to_time(self, index: int) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(index / self.rate)

    def window_start(self, k: int) -> int:
        return self.anchor + k * self.stride

    def ingest(self, trace: obspy.Trace) -> None:
        """Buffers one packet's trace.

        :raises MalformedPacket: for a station without coordinates, an unusable channel, a second instrument
                                 at a station, or (:class:`LatePacket`) samples whose windows were already run.
        """
        self._check_skew(trace)
        key = station_key(trace.id)
        comp = trace.stats.channel[-1:]
        if comp not in self.comp_index:
            raise MalformedPacket(
                f"{trace.id}: component {comp!r} is not one of Z, N, E, 1, 2; only those are used. "
                "Do not send this channel to the monitor."
            )
        state = self.stations.get(key)
        if state is None:
            coords = self.table.get(key, trace.stats.starttime)
            if coords is None:
                raise MalformedPacket(
                    f"{trace.id}: no coordinates for station {key} in the station inventory; add it to "
                    "the StationXML given to the monitor (--inventory)."
                )
            state = self.stations[key] = _StationState(key, coords)
        instrument = trace.stats.channel[:2]
        if state.instrument is None:
            state.instrument = instrument
        elif instrument != state.instrument:
            raise MalformedPacket(
                f"{trace.id}: station {key} already streams instrument {state.instrument}; send one "
                "instrument per station (or give the other a different location code)."
            )
        data = np.asarray(trace.data, dtype=np.float64)
        bad, kinds = invalid_samples(trace.data, self.max_abs_amplitude)
        if bad.any():  # classify's rule: such samples are gaps
            seisbench.logger.warning(
                f"SINE: packet {trace.id} {trace.stats.starttime} has {int(bad.sum())} "
                f"{' and '.join(kinds)} sample(s); they are left out as gaps."
            )
            data = np.where(bad, np.nan, data)  # a new array: the packet's trace stays as it came
        scale = self._sensitivity_of(trace)
        if scale is None:
            state.calibrated = False
        else:
            data = data / scale
        buf = state.channels.get(comp)
        if buf is None:
            rate = trace.stats.sampling_rate
            span = int((2 * self.max_packet_skew_s + 3600.0) * rate)
            buf = state.channels[comp] = ChannelBuffer(rate, max_span=span)
            state.channel_codes[comp] = trace.stats.channel
        elif abs(buf.rate - trace.stats.sampling_rate) > 1e-6 * buf.rate:
            raise MalformedPacket(
                f"{trace.id}: sampling rate {trace.stats.sampling_rate} Hz differs from the "
                f"{buf.rate} Hz of earlier packets of this channel."
            )
        start = buf.index(trace.stats.starttime)
        stop = start + len(data)
        self.stats["packets"] += 1
        if self.next_window is not None:
            # samples before the start of the next window are never used again
            # after a restore, everything from keep_from on is needed again: the rebuilt windows and the
            # event windows of open candidates (which may start before the first rebuilt window)
            first_needed = (
                min(self._rebuild_from(), self._restored_keep)
                if getattr(self, "_pending_rebuild", False)
                else self.window_start(self.next_window)
            )
            used_from = first_needed * buf.rate / self.rate
            if stop <= used_from:
                if self._replayed_until is not None and stop * self.rate / buf.rate <= (
                    self._replayed_until
                ):
                    self.stats["replayed"] += 1
                    return
                self.stats["late"] += 1
                behind = (used_from - stop) / buf.rate
                raise LatePacket(
                    f"{trace.id}: packet {trace.stats.starttime}–{trace.stats.endtime} arrived after its "
                    f"windows were run ({behind:.1f} s before the next window); raise max_latency_s if "
                    "this station's data are routinely this late."
                )
        try:
            buf.write(start, data)
        except MalformedPacket as e:
            raise MalformedPacket(
                f"{trace.id}: {e}; fix the sender's clock (or raise max_packet_skew_s)"
            ) from e
        self._newest = max(self._newest, int(buf.end * self.rate / buf.rate))

    def _check_skew(self, trace: obspy.Trace) -> None:
        """Refuses a packet dated more than ``max_packet_skew_s`` from the stream's time (see the class)."""
        t0 = trace.stats.starttime.timestamp
        t1 = trace.stats.endtime.timestamp
        refs = []
        if self._newest > -(2**62):
            refs.append(("the newest data", self._newest / self.rate))
        elif self.next_window is not None:  # restored from a checkpoint, nothing buffered yet
            refs.append(
                ("the checkpoint's next window", self.window_start(self.next_window) / self.rate)
            )
        for what, ref in refs:
            skew = max(t0 - ref, ref - t1, 0.0)
            if skew > self.max_packet_skew_s:
                raise MalformedPacket(
                    f"{trace.id}: packet {trace.stats.starttime}–{trace.stats.endtime} is {skew:.0f} s away "
                    f"from {what} ({obspy.UTCDateTime(ref)}), more than max_packet_skew_s = "
                    f"{self.max_packet_skew_s:g} s; fix the sender's clock, or raise max_packet_skew_s "
                    "(--max-packet-skew) if the stream really jumps this far."
                )

    def _sensitivity_of(self, trace: obspy.Trace) -> float | None:
        """classify's rule (:meth:`SINE.annotate_stream_pre`): only models that use physical amplitudes see
        responses (:func:`~sine_seisbench.pipeline.prepare.sensitivity`), looked up once per channel."""
        if (
            self.inventory is None
            or not self.model.calibrated_amplitudes
            or not sba.arg(self.model, self.argdict, "remove_sensitivity")
        ):
            return None
        if trace.id not in self._sensitivity:
            self._sensitivity[trace.id] = sensitivity(
                self.inventory, trace.id, trace.stats.starttime
            )
        return self._sensitivity[trace.id]

    # ---------------------------------------------------------------------------------------------------------
    # Windows
    # ---------------------------------------------------------------------------------------------------------
    def _data_end(self) -> int:
        """Newest sample index (model grid) over all stations."""
        ends = [
            int(b.end * self.rate / b.rate)
            for s in self.stations.values()
            for b in s.channels.values()
        ]
        return max(ends, default=-(2**62))

    def _station_raw(self, state: _StationState, start: int) -> np.ndarray:
        """(components, in_samples) of a station on the model grid; NaN where there is no sample."""
        out = np.full((self.model.in_channels, self.n), np.nan, dtype=np.float32)
        for comp, buf in state.channels.items():
            if abs(buf.rate - self.rate) < 1e-9:
                x = buf.read(start, self.n)
            else:
                x = self._resampled(buf, start)
            out[self.comp_index[comp]] = x
        return out

    def _resampled(self, buf: ChannelBuffer, start: int) -> np.ndarray:
        """A window from a channel at another sampling rate. An integer multiple of the model's rate is
        decimated by SeisBench's rule (:meth:`_decimated`, as ``classify`` resamples); any other rate is
        band-limited to the model's Nyquist and linearly interpolated onto the model grid (1 s margins against
        edge effects), where ``classify`` uses ObsPy's FFT resampling of the whole trace, which a stream
        cannot reproduce."""
        ratio = buf.rate / self.rate
        if ratio > 1 and abs(ratio - round(ratio)) < 1e-9:
            return self._decimated(buf, start, int(round(ratio)))
        t0 = start / self.rate - 1.0
        i0 = int(math.floor(t0 * buf.rate))
        m = int(math.ceil((self.n / self.rate + 2.0) * buf.rate)) + 2
        x = buf.read(i0, m).astype(np.float64)
        ok = ~np.isnan(x)
        if ok.sum() < 2:
            return np.full(self.n, np.nan, dtype=np.float32)
        filled = np.where(ok, x, np.nanmean(x))
        if buf.rate > self.rate:
            from obspy.signal.filter import lowpass

            filled = lowpass(filled, 0.45 * self.rate, buf.rate, corners=4, zerophase=True)
        src_t = (i0 + np.arange(m)) / buf.rate
        dst_t = (start + np.arange(self.n)) / self.rate
        y = np.interp(dst_t, src_t, filled)
        valid = np.interp(dst_t, src_t, ok.astype(float)) > 0.999
        return np.where(valid, y, np.nan).astype(np.float32)

    def _decimated(self, buf: ChannelBuffer, start: int, k: int) -> np.ndarray:
        """SeisBench's resampling for an integer ratio ``k`` (``WaveformModel.resample``, what ``classify``
        does): ObsPy's zero-phase 4-corner Butterworth low-pass at half the model's rate, then every ``k``-th
        sample, model grid index ``j`` taking the channel's sample ``j * k``. The filter runs over the window
        with 1 s margins instead of the whole trace; the tested difference to ``classify`` is below 1e-6 of
        the window's peak when the trace starts on a model-grid sample (otherwise ``classify`` decimates from
        the trace's first sample, up to ``k - 1`` source samples away)."""
        margin = int(math.ceil(buf.rate))
        i0 = start * k - margin
        x = buf.read(i0, self.n * k + 2 * margin).astype(np.float64)
        ok = ~np.isnan(x)
        if ok.sum() < 2:
            return np.full(self.n, np.nan, dtype=np.float32)
        from obspy.signal.filter import lowpass

        y = lowpass(
            np.where(ok, x, np.nanmean(x)), 0.5 * self.rate, buf.rate, corners=4, zerophase=True
        )
        idx = margin + k * np.arange(self.n)
        return np.where(ok[idx], y[idx], np.nan).astype(np.float32)

    def _window_ready(self, k: int, flush: bool, now: float) -> bool:
        start = self.window_start(k)
        end = start + self.n
        data_end = self._data_end()
        if data_end <= start:
            return False
        if flush:
            return True
        if data_end >= end + self.latency:
            return True
        waiting = []
        for state in self.stations.values():
            s_end = int(state.end * self.rate / next(iter(state.channels.values())).rate)
            if s_end < end - self.inactive:
                continue  # silent station: not waited for
            for buf in state.channels.values():
                r = buf.rate / self.rate
                x = buf.read(int(math.floor(start * r)), int(math.ceil(self.n * r)))
                if np.isnan(x).any():
                    waiting.append(state.key)
                    break
        if not waiting:
            return True
        if self.live:
            due = self._first_due.setdefault(k, now)
            return now - due >= self.max_latency_s
        return False

    def _run_windows(self, ks: list[int]) -> None:
        """Runs windows ``ks`` for every station group and stacks their predictions (classify's prepare and
        run steps, :func:`~sine_seisbench.pipeline.prepare.window_items` and
        :func:`~sine_seisbench.pipeline.run.run_and_stack`)."""
        stations = self._station_set()
        items: list[WindowItem] = []
        for k in ks:
            start = self.window_start(k)
            raw = {key: self._station_raw(state, start) for key, state in self.stations.items()}
            new_items, new_outages = window_items(
                self.model, stations, start, raw, self._outages, self.argdict
            )
            for key, first in new_outages:
                seisbench.logger.warning(
                    f"SINE: station {key} has only constant data (dead channel or outage) from "
                    f"{self._to_time(first)}; it is left out of the windows until it has data again."
                )
            items += new_items

        def new_stack(key: str, start: int) -> Stack:
            # a station's stack starts where its trigger may still need stacked values (after a rebuild)
            base = min([start] + [self.pick_from.get((key, p), start) for p in self.thresholds])
            return Stack(len(self.phases), base, self.stacking)

        self.model.eval()
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        run_and_stack(self.model, stations, batches, self.stacks, self.argdict, new_stack)
        self.stats["windows"] += len(ks)

    def _station_set(self) -> StationSet:
        """The buffered stations as the shared steps take them (classify's
        :func:`~sine_seisbench.pipeline.prepare.prepare_stream` makes the same from a record); made anew, with
        empty caches, when a station joins or its calibration changes. The event step reads the instrument
        sensitivities for ML from the inventory, as classify does."""
        coords = {k: s.coordinates for k, s in self.stations.items()}
        calibrated = {k: s.calibrated for k, s in self.stations.items()}
        if self._stations is None or not self._stations.same_stations(coords, calibrated):
            self._stations = StationSet(coords, calibrated, self.inventory)
        return self._stations

    # ---------------------------------------------------------------------------------------------------------
    # Picks
    # ---------------------------------------------------------------------------------------------------------
    def _final_index(self, flush: bool) -> int:
        if flush:
            return 2**62
        return self.window_start(self.next_window)

    def _extract_picks(self, final: int) -> list[sbu.Pick]:
        new: list[sbu.Pick] = []
        for key, stack in self.stacks.items():
            stop_all = min(final, stack.end)
            for p_idx, phase in enumerate(self.phases):
                if phase not in self.thresholds:
                    continue
                thr = self.thresholds[phase]
                start = max(self.pick_from.get((key, phase), stack.base), stack.base)
                if stop_all <= start:
                    continue
                picks, cut = final_picks(
                    stack.values(start, stop_all, rows=p_idx),
                    thr,
                    key,
                    phase,
                    lambda i, start=start: self._to_time(start + i),
                    complete=final >= 2**62,
                )
                if cut:
                    new += picks
                    self.pick_from[(key, phase)] = start + cut
        return sorted(new, key=_pick_sort_key)

    def _pick_horizon(self, final: int) -> float:
        """Time before which every pick is known (final and extracted)."""
        starts = [final] + list(self.pick_from.values()) if final < 2**62 else [final]
        return min(starts) / self.rate

    # ---------------------------------------------------------------------------------------------------------
    # Events
    # ---------------------------------------------------------------------------------------------------------
    def _located_stations(self) -> list[str]:
        return sorted(self.stations)

    def _event_data_ready(self, cand: Candidate, flush: bool) -> bool:
        """The event window's data are complete (or given up waiting for): the windows run so far, which
        waited for every active station, reach its end; where the event step takes the annotation's curves
        (:func:`~sine_seisbench.pipeline.locate.event_curves_from_annotation`), their stacks are final there
        too (a window length minus the stride later)."""
        end = self._to_index(cand.first_p - self.pre_p) + self.n
        return flush or self._event_inputs_end() >= end

    def _event_inputs_end(self) -> int:
        """Grid index up to which the event step's inputs are final: the stacks' (classify's values) where it
        takes the annotation's curves, else the data of the windows run."""
        return self._final_index(False) if self._annotation_curves else self._processed_end()

    def _processed_end(self) -> int:
        return self.window_start(self.next_window - 1) + self.n

    def _read(self, key: str, start: int, n: int) -> np.ndarray | None:
        """A station's ``(components, n)`` on the model grid from ``start`` (for :func:`cut_window`; ``n`` is
        always the window, ``in_samples``)."""
        assert n == self.n
        state = self.stations.get(key)
        return None if state is None else self._station_raw(state, start)

    def _locate(self, cands: list[Candidate]) -> None:
        todo = []
        for cand in cands:
            complete = self._flushing or self._event_data_ready(cand, False)
            sig = (
                _cand_key(cand),
                tuple(sorted((p.trace_id, round(p.peak_time.timestamp, 3)) for p in cand.p_picks)),
                None if complete else self._processed_end(),
            )
            done = self._located.get(sig)
            if done is not None:
                cand.copy_estimate(done)
            else:
                todo.append((sig, cand))
        if todo:
            stations = self._station_set()
            self.model.eval()
            # one candidate per forward pass: results must not depend on which candidates happen to share a
            # batch (after a restart they differ), or a re-published event would differ in the last digits
            phases = event_phases(self.model)
            for sig, cand in todo:
                start = self._to_index(cand.first_p - self.pre_p)
                window = cut_window(
                    self._read, cand.group, start, self.n, self.model.in_channels, limit=sig[2]
                )
                curves = None
                if self._annotation_curves:  # classify's stacked values, final before this
                    limit = None if sig[2] is None else self._final_index(False)
                    curves = [cut_curves(self.stacks, cand.group, start, self.n, phases, limit)]
                estimate_candidates(self.model, stations, [cand], [window], self.argdict, curves)
            for sig, cand in todo:
                self._located[sig] = copy.copy(cand)

    def _associate(self, horizon: float, data_end: int, flush: bool) -> list[Candidate]:
        """Advances each group's greedy association over final clusters; returns preliminary candidates."""
        stations = self._located_stations()
        if len(stations) < self.min_stations:
            return []
        preliminary = []
        station_set = self._station_set()
        for group in event_groups(self.model, station_set):
            gkey = tuple(group)
            w = association_window(self.model, station_set, group, self.argdict)
            if gkey not in self.cursors and self.cursors:
                # the station set changed: a new group starts where association has got to
                self.cursors[gkey] = max(self.cursors.values())
            cursor = self.cursors.get(gkey, (-math.inf, ""))
            members = set(group)
            picks = sorted(
                (p for p in self.p_picks if p.trace_id in members and _pick_sort_key(p) >= cursor),
                key=_pick_sort_key,
            )
            # classify's greedy rule, replayed up to the first cluster that is not final yet
            for i, next_i, chosen in greedy_clusters(picks, w, self.min_stations):
                cand = None if chosen is None else Candidate(group=group, p_picks=chosen)
                final = flush or picks[i].peak_time.timestamp + w < horizon
                if (
                    cand is not None
                    and not self.early_events
                    and not self._event_data_ready(cand, flush)
                ):
                    break  # wait for the event window's data
                if not final:
                    if cand is not None:
                        preliminary.append(cand)
                    break
                if cand is not None:
                    self.final_cands[_cand_key(cand)] = cand
                if next_i < len(picks):
                    self.cursors[gkey] = _pick_sort_key(picks[next_i])
                else:  # just after the last pick considered
                    last_t, last_id = _pick_sort_key(picks[-1])
                    self.cursors[gkey] = (last_t, last_id + "\uffff")
        return preliminary

    def _update_events(self, preliminary: list[Candidate], horizon: float) -> list[dict]:
        cands = list(self.final_cands.values()) + preliminary
        if not cands:
            return []
        self._locate(cands)
        coords = {k: s.coordinates for k, s in self.stations.items()}
        data_start = None if self.anchor is None else self._to_time(self.anchor)
        kept = drop_implausible(
            cands,
            coords,
            data_start,
            self.window_len,
            seisbench.logger,
            logged=self._implausible_logged,
        )
        kept_ids = {id(c) for c in kept}
        for c in cands:  # a complete estimate out of bounds: never an event (picks are published)
            if id(c) not in kept_ids and (self._flushing or self._event_data_ready(c, False)):
                self.final_cands.pop(_cand_key(c), None)
        cands = kept
        work = [copy.copy(c) for c in cands]
        for c in work:
            c.p_picks = list(c.p_picks)
        keys = [_cand_key(c) for c in cands]
        messages: list[dict] = []
        channels = {
            k: s.channel_codes.get("Z") or next(iter(s.channel_codes.values()))
            for k, s in self.stations.items()
        }
        final_keys = set(self.final_cands)
        seen_events: set[str] = set()
        for members in sorted(
            merge_sets(work, self.merge_time, self.merge_distance),
            key=lambda m: min(work[i].origin_time for i in m),
        ):
            member_keys = {keys[i] for i in members}
            best = merge_members(work, members)
            owners = sorted(
                (e for e in self.events.values() if e.keys & member_keys), key=lambda e: e.order
            )
            if owners:
                state = owners[0]
                for other in owners[1:]:  # two published events turned out to be one earthquake
                    other.version += 1
                    messages.append(
                        {
                            "schema": "sine.event/1",
                            "type": "event",
                            "id": other.id,
                            "version": other.version,
                            "status": "retracted",
                            "superseded_by": state.id,
                        }
                    )
                    del self.events[other.id]
                state.keys |= member_keys
            else:
                state = _EventState(
                    id=stable_id("event", event_id_seed((k[1], k[2]) for k in member_keys)),
                    version=0,
                    keys=set(member_keys),
                    digest="",
                    order=self._event_counter,
                )
                self._event_counter += 1
                self.events[state.id] = state
            event = candidate_to_event(best, coords, channels, self.model.name)
            complete = all(
                self._flushing or self._event_data_ready(work[i], False) for i in members
            )
            digest = _event_digest(event) + ("" if complete else "|preliminary")
            if digest != state.digest:
                state.version += 1
                state.digest = digest
                msg = event_message(event, state.id, state.version)
                msg["preliminary"] = not complete
                messages.append(msg)
            seen_events.add(state.id)
            # closed: every member final, its window complete, and no later pick can join or attach
            last = max(p.peak_time.timestamp for p in best.p_picks)
            if (
                complete
                and member_keys <= final_keys
                and horizon > last + self.window_len + self.merge_time
            ):
                for k in member_keys:
                    self.final_cands.pop(k, None)
                del self.events[state.id]
        for state in [e for e in self.events.values() if e.id not in seen_events]:
            # no candidate supports it any more (the station set changed under a preliminary event)
            state.version += 1
            messages.append(
                {
                    "schema": "sine.event/1",
                    "type": "event",
                    "id": state.id,
                    "version": state.version,
                    "status": "retracted",
                    "superseded_by": None,
                }
            )
            del self.events[state.id]
        return messages

    # ---------------------------------------------------------------------------------------------------------
    # Driving
    # ---------------------------------------------------------------------------------------------------------
    def step(self, now: float | None = None, flush: bool = False) -> list[dict[str, Any]]:
        """Runs every window that is ready, then publishes new picks and new or changed events.

        :param flush: The input has ended: run the remaining windows (the last one aligned to the end of the
                      data, as SeisBench does) and finalise everything.
        :return: Output messages (:mod:`.schema` picks and events) in time order.
        """
        now = time.time() if now is None else now
        if not self.stations:
            return []
        if len(self.stations) != self._far_checked:
            self._warn_far_stations()
        if getattr(self, "_pending_rebuild", False) and not self.rebuild(flush):
            return []
        data_end = self._data_end()
        if self.next_window is None:
            first = min(
                int(b.base * self.rate / b.rate)
                for s in self.stations.values()
                for b in s.channels.values()
                if b.base is not None
            )
            if self.anchor is None:
                self.anchor = first
            # the window holding the first sample (packets may arrive out of order)
            self.next_window = (first - self.anchor) // self.stride
        ready = []
        k = self.next_window
        while self.window_start(k) + self.n <= data_end or (
            flush and self.window_start(k) < data_end and not ready
        ):
            if not self._window_ready(k, flush, now):
                break
            ready.append(k)
            k += 1
        if ready:
            self._run_windows(ready)
            self.next_window = ready[-1] + 1
        if flush:
            last_start = data_end - self.n
            covered = self.window_start(self.next_window - 1) + self.n if ready else -(2**62)
            if covered < data_end and last_start > self.window_start(self.next_window - 1):
                self._run_windows_at(last_start)
        self._flushing = flush
        final = self._final_index(flush)
        picks = self._extract_picks(final)
        messages: list[dict[str, Any]] = []
        for p in picks:
            (self.p_picks if p.phase == "P" else self.s_picks).append(p)
            messages.append(pick_message(p, self.model.name))
        self.stats["picks"] += len(picks)
        horizon = math.inf if flush else self._pick_horizon(final)
        preliminary = self._associate(horizon, data_end, flush)
        messages += self._update_events(preliminary, horizon)
        self._forget(horizon)
        for k_done in [k for k in self._first_due if k < self.next_window]:
            del self._first_due[k_done]
        return messages

    def _warn_far_stations(self) -> None:
        """One warning per station implausibly far from the rest of the network (checked when it joins)."""
        self._far_checked = len(self.stations)
        coords = {k: s.coordinates for k, s in self.stations.items()}
        warn_far_stations(coords, seisbench.logger, warned=self._far_warned)

    def _run_windows_at(self, start: int) -> None:
        """One extra window from grid index ``start`` (end of a finite record)."""
        saved_anchor, saved_stride = self.anchor, self.stride
        self.anchor, self.stride = start, self.n
        try:
            self._run_windows([0])
        finally:
            self.anchor, self.stride = saved_anchor, saved_stride

    def _forget(self, horizon: float) -> None:
        """Drops picks, stacks and samples nothing can need any more."""
        if not math.isfinite(horizon):
            return
        open_picks = {
            (p.trace_id, p.peak_time.timestamp)
            for c in self.final_cands.values()
            for p in c.p_picks
        }
        min_cursor = min((c[0] for c in self.cursors.values()), default=-math.inf)
        self.p_picks = [
            p
            for p in self.p_picks
            if p.peak_time.timestamp >= min_cursor
            or (p.trace_id, p.peak_time.timestamp) in open_picks
        ]
        oldest_open = min(
            [c.first_p.timestamp for c in self.final_cands.values()]
            + [p.peak_time.timestamp for p in self.p_picks]
            + [horizon - self.window_len]
        )
        self.s_picks = [p for p in self.s_picks if p.peak_time.timestamp >= oldest_open]
        if len(self._located) > 4096:
            self._located.clear()
        keep = self.keep_from_index()
        self._outages.trim(keep)
        first = self._first_event_window() if self._annotation_curves else None
        for key, stack in self.stacks.items():
            stack.trim(self._stack_keep_from(key, keep, first))
        for state in self.stations.values():
            for buf in state.channels.values():
                buf.trim(int(math.floor(keep * buf.rate / self.rate)) - 1)

    def keep_from_index(self) -> int:
        """Oldest sample (model grid index) that processing from now on, or after a restart from
        :meth:`checkpoint`, can still need."""
        if self.next_window is None:
            return -(2**62)
        needs = [self.window_start(self.next_window)]
        pick_starts = list(self.pick_from.values())
        if pick_starts:
            # recomputing the stacked values of a carried trigger region needs every window covering it
            needs.append(min(pick_starts) - self.n)
        first = self._first_event_window()
        if first is not None:
            # the annotation's curves over an event window need every window covering it
            needs.append(first - self.n if self._annotation_curves else first)
        k_first = -(-(min(needs) - self.n + 1 - self.anchor) // self.stride)
        return min(min(needs), self.window_start(min(k_first, self.next_window)))

    def _first_event_window(self) -> int | None:
        """Start (grid index) of the earliest event window a pick or an open candidate may still need."""
        live = [p.peak_time for p in self.p_picks] + [c.first_p for c in self.final_cands.values()]
        return self._to_index(min(live) - self.pre_p) if live else None

    def _stack_keep_from(self, key: str, default: int, first: int | None) -> int:
        """Oldest stacked sample of station ``key`` still needed: its pick cursors' (``default`` for a phase
        without one) and ``first``, the earliest open event window's (where the event step takes the
        annotation's curves; else None)."""
        keep = min([self.pick_from.get((key, p), default) for p in self.thresholds])
        return keep if first is None else min(keep, first)

    def keep_from(self) -> obspy.UTCDateTime | None:
        """Time before which no buffered sample is needed any more (see :meth:`keep_from_index`)."""
        if self.next_window is None:
            return None
        return self._to_time(self.keep_from_index())

    # ---------------------------------------------------------------------------------------------------------
    # Checkpoints
    # ---------------------------------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """JSON-serialisable state to continue exactly where this engine is (see :meth:`restore`)."""

        def cand_dict(c: Candidate) -> dict[str, Any]:
            return {"group": list(c.group), "p_picks": [_pick_to_dict(p) for p in c.p_picks]}

        return {
            "version": 1,
            "anchor": self.anchor,
            "stride": self.stride,
            "rate": self.rate,
            "next_window": self.next_window,
            "pick_from": [[k, p, i] for (k, p), i in sorted(self.pick_from.items())],
            "p_picks": [_pick_to_dict(p) for p in self.p_picks],
            "s_picks": [_pick_to_dict(p) for p in self.s_picks],
            "cursors": [[list(g), list(c)] for g, c in self.cursors.items()],
            "final_cands": [cand_dict(c) for c in self.final_cands.values()],
            "events": [
                {
                    "id": e.id,
                    "version": e.version,
                    "keys": [list(k[0]) + [k[1], k[2]] for k in e.keys],
                    "digest": e.digest,
                    "order": e.order,
                }
                for e in self.events.values()
            ],
            "event_counter": self._event_counter,
            "buffered": self._buffered_counts(),
        }

    def _buffered_counts(self) -> list[list[Any]]:
        """Per channel: ``[station, component, first, stop, samples]``, the samples held on its own grid in
        ``[keep_from, end of the windows run)``. A restored engine waits until the replay has brought these
        back, so it rebuilds its windows and re-estimates its events from exactly the same data."""
        if self.next_window is None:
            return []
        if getattr(
            self, "_pending_rebuild", False
        ):  # restored, not rebuilt yet: still the saved counts
            return [list(b) for b in self._restored_buffered]
        keep, end = self.keep_from_index(), self._processed_end()
        out: list[list[Any]] = []
        for key, state in sorted(self.stations.items()):
            for comp, buf in sorted(state.channels.items()):
                lo = int(math.floor(keep * buf.rate / self.rate))
                hi = int(math.ceil(end * buf.rate / self.rate))
                if hi > lo:
                    have = int(np.count_nonzero(~np.isnan(buf.read(lo, hi - lo))))
                    if have:
                        out.append([key, comp, lo, hi, have])
        return out

    def _replay_complete(self) -> bool:
        """After :meth:`restore`: every channel holds again the samples it held at the checkpoint."""
        for key, comp, lo, hi, have in self._restored_buffered:
            state = self.stations.get(key)
            buf = None if state is None else state.channels.get(comp)
            if buf is None or np.count_nonzero(~np.isnan(buf.read(lo, hi - lo))) < have:
                return False
        return True

    def restore(self, state: dict[str, Any]) -> None:
        """Continues from a :meth:`checkpoint`: windows before ``next_window`` are rebuilt (without publishing
        anything) from the replayed data, so picks and events continue exactly."""
        if state.get("version") != 1:
            raise ValueError(f"unknown checkpoint version {state.get('version')!r}")
        if state["rate"] != self.rate or state["stride"] != self.stride:
            raise ValueError(
                "checkpoint was written with another sampling rate or stride; start without it "
                "(delete the state) or use the same configuration"
            )
        self.anchor = int(state["anchor"])
        self.next_window = state["next_window"]
        self.pick_from = {(k, p): int(i) for k, p, i in state["pick_from"]}
        self.p_picks = [_pick_from_dict(d) for d in state["p_picks"]]
        self.s_picks = [_pick_from_dict(d) for d in state["s_picks"]]
        self.cursors = {tuple(g): (float(c[0]), str(c[1])) for g, c in state["cursors"]}
        self.final_cands = {}
        for d in state["final_cands"]:
            cand = Candidate(group=d["group"], p_picks=[_pick_from_dict(p) for p in d["p_picks"]])
            self.final_cands[_cand_key(cand)] = cand
        self.events = {}
        for e in state["events"]:
            keys = {(tuple(k[:-2]), k[-2], float(k[-1])) for k in e["keys"]}
            self.events[e["id"]] = _EventState(e["id"], e["version"], keys, e["digest"], e["order"])
        self._event_counter = int(state["event_counter"])
        self._pending_rebuild = True
        self._restored_buffered = [list(b) for b in state.get("buffered", [])]
        if self.next_window is not None:
            self._replayed_until = self.window_start(self.next_window)
            self._restored_keep = self.keep_from_index()

    def _rebuild_from(self) -> int:
        """First sample of the windows :meth:`rebuild` reruns."""
        needs = [self.window_start(self.next_window)] + list(self.pick_from.values())
        first = self._first_event_window() if self._annotation_curves else None
        need = min(needs if first is None else needs + [first])  # the curves of open event windows too
        return self.window_start(-(-(need - self.n + 1 - self.anchor) // self.stride))

    def rebuild(self, flush: bool = False) -> bool:
        """After :meth:`restore`, once replayed data are buffered: recomputes the stacked predictions of the
        windows that cover not-yet-final samples. Returns False while data are still missing."""
        if not getattr(self, "_pending_rebuild", False) or self.next_window is None:
            return True
        k0 = (self._rebuild_from() - self.anchor) // self.stride
        ks = list(range(k0, self.next_window))
        # Wait until the replay has brought back every sample the buffers held at the checkpoint (not just
        # until some station reached the end of the last window: a station whose newest packet is still on
        # its way would be filled with the window mean, and an open event re-estimated with zeros, giving
        # other picks and another location and magnitude than the uninterrupted run). Give up only once
        # newer data are max_latency_s past the windows run, as a window would.
        if not flush:
            if self._restored_buffered:
                if (
                    not self._replay_complete()
                    and self._data_end() < self._processed_end() + self.latency
                ):
                    return False
            elif ks and self._data_end() < self.window_start(ks[-1]) + self.n:
                return False  # a checkpoint without buffered counts (written by an older version)
        saved = dict(self.pick_from)
        self._run_windows(ks)
        first = self._first_event_window() if self._annotation_curves else None
        for key, stack in self.stacks.items():
            start = min([saved.get((key, p), stack.base) for p in self.thresholds])
            stack.trim(start if first is None else min(start, first))
        self._pending_rebuild = False
        return True


def _event_digest(event: obspy.core.event.Event) -> str:
    o = event.origins[0]
    m = event.magnitudes[0] if event.magnitudes else None
    parts = [
        f"{o.time.timestamp:.2f}",
        f"{o.latitude:.4f}",
        f"{o.longitude:.4f}",
        f"{o.depth:.0f}",
        "" if m is None else f"{m.mag:.2f}",
    ] + sorted(
        f"{p.waveform_id.station_code}|{p.phase_hint}|{p.time.timestamp:.2f}" for p in event.picks
    )
    return hashlib.sha1("|".join(parts).encode()).hexdigest()
