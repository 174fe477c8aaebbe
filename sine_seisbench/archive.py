"""Archive processing: ``sine annotate --archive``, in one process or on a Dask cluster.

An SDS archive (read with :class:`obspy.clients.filesystem.sds.Client`) is split into tasks, each a time chunk ×
a station group, that run :meth:`SINE.classify <sine_seisbench.model.SINE.classify>` on their data and write
their picks and events to ``OUT/chunks``. Daily files are then assembled from the finished chunks.

Design (see also the README section "Archive processing on Dask"):

* **Chunks.** Chunk boundaries lie on a fixed grid (multiples of the chunk length since 1970-01-01, clipped to
  the requested span), so a rerun with another span reuses the chunks it shares. Every chunk is read with a pad
  on both sides (default four model windows, 120 s for SINE) and the padded read starts on the model's window
  grid (multiples of ``in_samples - overlap`` samples since 1970-01-01). With contiguous data the windows of a
  chunk are then the windows a whole-record run would use, and the annotations inside the chunk equal those of
  a whole-record run.
* **Ownership.** A pick belongs to the chunk whose ``[start, end)`` holds its peak time (and, with several
  station groups, to the group that owns its station); an event belongs to the chunk holding its first P
  pick. Every pick and event is therefore written by exactly one task, whatever the scheduler, and the merge is
  a sort.
* **Pad.** An event owned by a chunk has its P picks within the association window (at most 80 % of the model
  window, 24 s) after its first P, its S picks within one window after each P, and its event window starts 5 s
  before the first P. The pad must cover one window of context for the picks on each side, the association
  window (and one more of quiet time for the greedy association to restart identically) before the chunk, and
  association window + S window + one window of context after it: 2 W + 2 A ≈ 108 s for SINE. The default of
  4 W (120 s) covers this.
* **Atomic, resumable output.** A task writes its picks (CSV) and events (QuakeML) to temporary names, renames
  them, and writes its record ``chunks/TASK.json`` last. Only tasks with a record count as finished, so a task
  killed at any point is simply recomputed (Dask reschedules the tasks of a lost worker) and a rerun skips the
  finished ones. The daily files and ``manifest.json`` are rewritten atomically from the records.
* **Model once per worker.** :func:`get_model` keeps the model in a module-level cache keyed by the weights, so
  each worker process loads it once; ``torch.set_num_threads`` is set per task (default 1, also without Dask:
  CPU reductions split over another number of threads round differently, so the thread count per task is
  what makes a run on any number of workers bit-identical to a single-process run).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd
import torch
from lxml import etree
from obspy.core.event import Catalog, Event, ResourceIdentifier
from obspy.core.inventory import Inventory, Network

from . import seisbench_adapter as sba
from .geometry import Coordinates, StationTable, compact_groups, local_positions, station_key
from .ids import named_id
from .loader import UNTRAINED, load_weights
from .model import DEFAULT_WEIGHTS, SINE
from .pipeline.events import MergeKey, merge_sets_of
from .pipeline.publish import (
    associate_picks,
    event_arrivals,
    frame_to_picks,
    picks_csv_bytes,
    picks_frame,
    picks_parquet_bytes,
    read_picks_csv,
    sort_picks,
)
from .progress import progress as progress_bar
from .stations import read_stations

#: Default pad on each side of a chunk, in model windows.
DEFAULT_PAD_WINDOWS = 4
#: Settings that must agree between runs writing to the same output folder.
_SETTINGS_COMPARED = ("weights", "chunk_s", "pad_s", "channels", "sds_type", "classify_kwargs")
_TMP_MARK = ".tmp-"
_Q = "http://quakeml.org/xmlns/quakeml/1.2"
_BED = "http://quakeml.org/xmlns/bed/1.2"

_MODELS: dict[str, SINE] = {}
#: Seed of untrained weights: every worker draws the same ones.
UNTRAINED_SEED = 0
_LOADS: dict[str, int] = {}


# ----------------------------------------------------------------------------------------------------
# The model, once per process
# ----------------------------------------------------------------------------------------------------
def load_model(weights: str | None) -> SINE:
    """The archive's weights through the one loader (:func:`sine_seisbench.loader.load_weights`): a path (without
    ``.json``/``.pt``), a shipped name such as ``sine_pn_original`` (read straight from the package, so workers
    never race on SeisBench's cache), another pretrained name, or ``None``/``"untrained"`` for untrained weights
    drawn with the fixed seed :data:`UNTRAINED_SEED` (identical in every process)."""
    return load_weights(_canonical_weights(weights) or UNTRAINED, untrained_seed=UNTRAINED_SEED)


def _canonical_weights(weights: str | os.PathLike | None) -> str | None:
    """How the archive records ``weights`` (settings, manifest, model cache): None for untrained weights (as
    earlier runs recorded them), else the spec as a string."""
    return None if weights is None or os.fspath(weights) == UNTRAINED else os.fspath(weights)


def get_model(weights: str | None, threads: int | None = None, device: str = "cpu") -> SINE:
    """The model for ``weights`` on ``device`` from this process's cache (loaded on first use); sets torch's
    thread count when ``threads`` is given."""
    if threads:
        torch.set_num_threads(int(threads))
    weights = _canonical_weights(weights)
    key = f"{weights}@{device}" if str(device) != "cpu" else str(weights)
    if key not in _MODELS:
        _MODELS[key] = load_model(weights).to(device)
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return _MODELS[key]


def model_loads() -> int:
    """How many times this process has loaded a model (for tests: run on every worker)."""
    return sum(_LOADS.values())


# ----------------------------------------------------------------------------------------------------
# Plan: chunks, pads, station groups, tasks
# ----------------------------------------------------------------------------------------------------
def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"1h"``, ``"30min"``, ``"90s"``, ``"1D"`` or a plain number of seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = pd.Timedelta(str(text).strip()).total_seconds()
            except ValueError as e:
                raise ValueError(
                    f"Cannot read the duration {text!r}; use e.g. 1h, 30min, 600s or 1D."
                ) from e
    if not seconds > 0:
        raise ValueError(f"A duration must be positive, got {text!r}.")
    return seconds


@dataclass(frozen=True)
class ChunkSpan:
    """A chunk ``[start, end)`` (owned times) and its padded read span, all in integer nanoseconds."""

    start_ns: int
    end_ns: int
    read_start_ns: int
    read_end_ns: int

    @property
    def start(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(ns=self.start_ns)

    @property
    def end(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(ns=self.end_ns)

    @property
    def read_start(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(ns=self.read_start_ns)

    @property
    def read_end(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(ns=self.read_end_ns)


def window_step(model: SINE, overlap: int | None = None) -> int:
    """Samples between consecutive annotation windows (``in_samples - overlap``)."""
    if overlap is None:
        overlap = sba.overlap_samples(model, model.default_args)
    return int(model.in_samples - sba.overlap_samples(model, {"overlap": overlap}))


def chunk_spans(
    start: obspy.UTCDateTime,
    end: obspy.UTCDateTime,
    chunk_s: float,
    pad_s: float,
    sampling_rate: float,
    step_samples: int,
) -> list[ChunkSpan]:
    """Chunks of ``[start, end)`` on a grid of ``chunk_s`` since the epoch, each with its padded read span.

    The read span starts at least ``pad_s`` (rounded up to whole window steps) before the chunk, on the window
    grid (multiples of ``step_samples`` since the epoch), and ends ``pad_s`` after it.
    """
    if end <= start:
        raise ValueError(f"The end {end} must be after the start {start}.")
    sr = int(round(sampling_rate))
    if abs(sr - sampling_rate) > 1e-9 or 10**9 % sr:
        raise ValueError(
            f"Archive processing needs an integer sampling rate dividing 1e9, got {sampling_rate}"
        )
    ns_per_sample = 10**9 // sr
    pad_samples = math.ceil(pad_s * sr / step_samples - 1e-9) * step_samples
    chunk_ns = int(round(chunk_s * 1e9))
    spans = []
    boundary = (start.ns // chunk_ns) * chunk_ns
    while boundary < end.ns:
        s, e = max(boundary, start.ns), min(boundary + chunk_ns, end.ns)
        first = s // ns_per_sample
        read_start = (first // step_samples) * step_samples - pad_samples
        read_end = -(-e // ns_per_sample) + pad_samples
        spans.append(ChunkSpan(s, e, read_start * ns_per_sample, read_end * ns_per_sample))
        boundary += chunk_ns
    return spans


def station_blocks(
    names: list[str], coords: list[Coordinates], size: int | None
) -> list[tuple[list[str], list[str]]]:
    """Station groups for tasks: ``(stations, owned)`` pairs.

    With ``size`` None or at least the number of stations, one group holds and owns every station. Otherwise the
    groups are :func:`~sine_seisbench.geometry.compact_groups` of at most ``size`` stations (compact and
    overlapping), and each station is owned by the first group that holds it together with its ``size // 2``
    nearest neighbours (the group that "serves" it), so its picks are made with its neighbourhood around it.
    """
    order = np.argsort(names)
    names = [names[i] for i in order]
    coords = [coords[i] for i in order]
    if size is None or size >= len(names):
        return [(names, names)]
    if size < 2:
        raise ValueError(f"stations per task must be at least 2, got {size}")
    groups = compact_groups(names, coords, size)
    pos, _ = local_positions(coords)
    dist = np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1)
    ranked = np.argsort(dist, axis=1, kind="stable")
    k = min(size // 2, size - 1)
    owned: list[list[str]] = [[] for _ in groups]
    members = [set(g) for g in groups]
    for i, name in enumerate(names):
        needed = {names[j] for j in ranked[i, : k + 1]}
        owner = next((g for g, m in enumerate(members) if needed <= m), None)
        if owner is None:
            owner = next(g for g, m in enumerate(members) if name in m)
        owned[owner].append(name)
    return [(g, o) for g, o in zip(groups, owned, strict=True) if o]


def _stamp(ns: int) -> str:
    t = obspy.UTCDateTime(ns=ns)
    text = t.strftime("%Y%m%dT%H%M%S")
    frac = ns % 10**9
    return text if frac == 0 else f"{text}.{frac:09d}".rstrip("0")


@dataclass(frozen=True)
class ArchiveTask:
    """One unit of work: a chunk × a station group."""

    span: ChunkSpan
    stations: tuple[str, ...]
    owned: tuple[str, ...]

    @property
    def task_id(self) -> str:
        digest = hashlib.sha1(
            ("|".join(self.stations) + "#" + "|".join(self.owned)).encode()
        ).hexdigest()[:10]
        return f"{_stamp(self.span.start_ns)}_{_stamp(self.span.end_ns)}_{digest}"


@dataclass
class ArchiveSettings:
    """What every task needs besides its :class:`ArchiveTask` (picklable, sent to the workers)."""

    archive: str
    out: str
    weights: str | None
    chunk_s: float
    pad_s: float
    channels: str = "*"
    sds_type: str = "D"
    sds_format: str = "MSEED"
    torch_threads: int | None = None
    classify_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def compared(self) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.classify_kwargs.items() if k != "batch_size"}
        values = asdict(self)
        values["classify_kwargs"] = kwargs
        return {k: values[k] for k in _SETTINGS_COMPARED}


@dataclass
class ArchiveResult:
    """What :func:`annotate_archive` did."""

    out: Path
    tasks: int
    computed: int
    skipped: int
    picks: int
    events: int
    days: list[str]
    seconds: float
    failed: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file next to ``path``, syncs it and renames it over ``path``: readers
    see the old file or the complete new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_tmp(folder: Path) -> int:
    removed = 0
    if folder.is_dir():
        for p in folder.rglob(f".*{_TMP_MARK}*"):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _quakeml_bytes(events: list[Event], resource_id: str) -> bytes:
    buf = io.BytesIO()
    Catalog(events, resource_id=ResourceIdentifier(resource_id)).write(buf, format="QUAKEML")
    return buf.getvalue()


def first_p(event: Event) -> obspy.UTCDateTime:
    """Time of the earliest P pick of an event (the time that assigns it to a chunk and a day)."""
    times = [p.time for p in event.picks if (p.phase_hint or "").upper() == "P"]
    if not times:
        return event.preferred_origin().time
    return min(times)


def _event_sort_key(event: Event) -> tuple[int, str]:
    return first_p(event).ns, str(event.resource_id)


# ----------------------------------------------------------------------------------------------------
# One task (runs on a worker)
# ----------------------------------------------------------------------------------------------------
def _record_path(out: Path, task_id: str) -> Path:
    return out / "chunks" / f"{task_id}.json"


def read_record(out: Path, task_id: str) -> dict[str, Any] | None:
    """The record of a finished task, or None when the task has not finished (or its files are gone)."""
    path = _record_path(out, task_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not all((out / name).exists() for name in record.get("files", {}).values()):
        return None
    return record


def read_task_stream(task: ArchiveTask, settings: ArchiveSettings) -> obspy.Stream:
    """The padded waveforms of a task's stations from the SDS archive."""
    from obspy.clients.filesystem.sds import Client

    client = Client(settings.archive, sds_type=settings.sds_type, format=settings.sds_format)
    stream = obspy.Stream()
    for key in task.stations:
        net, sta, loc = key.split(".")
        for channel in settings.channels.split(","):
            stream += client.get_waveforms(
                net, sta, loc, channel.strip(), task.span.read_start, task.span.read_end
            )
    return stream


def run_task(
    task: ArchiveTask, settings: ArchiveSettings, inventory: Inventory | pd.DataFrame
) -> dict[str, Any]:
    """Classifies one chunk × station group and writes its picks, events and record (in this order, each
    atomically). Returns the record. A task whose record already exists is not recomputed."""
    out = Path(settings.out)
    existing = read_record(out, task.task_id)
    if existing is not None:
        return existing
    t_start = time.perf_counter()
    model = get_model(settings.weights, settings.torch_threads, settings.device)
    stream = read_task_stream(task, settings)
    picks = picks_frame(None)
    events: list[Event] = []
    if len(stream):
        result = model.classify(stream, inventory=inventory, **settings.classify_kwargs)
        owned = set(task.owned)
        s, e = task.span.start_ns, task.span.end_ns
        # the chunk's own picks in the one picks table (classify's), linked to the events of the whole
        # classified stretch (an event whose first P lies in the next chunk is written by that chunk, with the
        # same id)
        picks = picks_frame(
            [
                p
                for p in result.picks
                if s <= p.peak_time.ns < e and station_key(p.trace_id) in owned
            ],
            result.events,
            stream,
            include_event_arrivals=False,
        )
        events = sorted(
            (ev for ev in result.events if s <= first_p(ev).ns < e), key=_event_sort_key
        )
    files = {
        "picks": f"chunks/{task.task_id}.picks.csv",
        "events": f"chunks/{task.task_id}.events.xml",
    }
    atomic_write(out / files["picks"], picks_csv_bytes(picks))
    atomic_write(
        out / files["events"],
        _quakeml_bytes(events, named_id("chunk", task.task_id)),
    )
    record = {
        "task_id": task.task_id,
        "start": str(task.span.start),
        "end": str(task.span.end),
        "start_ns": task.span.start_ns,
        "end_ns": task.span.end_ns,
        "read_start": str(task.span.read_start),
        "read_end": str(task.span.read_end),
        "stations": list(task.stations),
        "owned": list(task.owned),
        "traces": len(stream),
        "picks": len(picks),
        "events": len(events),
        "event_first_p": [[str(ev.resource_id), first_p(ev).ns] for ev in events],
        "files": files,
        "seconds": round(time.perf_counter() - t_start, 3),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    atomic_write(_record_path(out, task.task_id), json.dumps(record, indent=1).encode())
    return record


# ----------------------------------------------------------------------------------------------------
# Daily files (on the client)
# ----------------------------------------------------------------------------------------------------
def _merge_group_events(
    events: list[Event], merge_time_s: float, merge_distance_km: float
) -> list[list[int]]:
    """One event per earthquake among the events of one chunk from several station groups, by classify's merge
    rule (:func:`~sine_seisbench.pipeline.events.merge_sets_of` on
    :meth:`~sine_seisbench.pipeline.events.MergeKey.of_event`): events that share a P pick, or whose origins
    are within ``merge_time_s`` and ``merge_distance_km``, are one earthquake; the one with the most P
    stations, then the smallest horizontal uncertainty, then the smallest id comes first. (Groups that share
    the station of an earthquake's first P pick give it the same id.)

    :return: Indices into ``events``, one list per earthquake, the event kept first.
    """
    order = sorted(range(len(events)), key=lambda i: _event_sort_key(events[i]))
    keys = [MergeKey.of_event(events[i]) for i in order]
    sets = merge_sets_of(keys, merge_time_s, merge_distance_km)
    return [[order[i] for i in members] for members in sets]


def _link_picks(
    picks: pd.DataFrame,
    written: set[str],
    remap: dict[str, str],
    catalogs: Callable[[], list[Catalog]],
) -> pd.DataFrame:
    """The day's picks linked to written events. A chunk links its picks to the events of its own classify
    (:func:`~sine_seisbench.pipeline.publish.picks_frame`); an event merged away across station groups is
    replaced by the one kept, and a pick whose event was written by another chunk under another id (its first
    P lay outside the pick's chunk) is linked again by the same rule
    (:func:`~sine_seisbench.pipeline.publish.associate_picks`) to the written events of the day's chunks;
    without a match it keeps no event id (the pick itself stays)."""
    if not len(picks):
        return picks
    ids = picks["event_id"].replace(remap)
    lost = (ids != "") & ~ids.isin(written)
    if lost.any():
        events = Catalog([ev for c in catalogs() for ev in c if str(ev.resource_id) in written])
        arrivals = event_arrivals(events)
        rows = np.flatnonzero(lost.to_numpy())
        matched = associate_picks(frame_to_picks(picks.iloc[rows], source=None), arrivals)
        for i, row in enumerate(rows):
            ids.iloc[row] = arrivals[matched[i]].event_id if i in matched else ""
    picks = picks.copy()
    picks["event_id"] = ids
    return picks


def _days(start: obspy.UTCDateTime, end: obspy.UTCDateTime) -> list[obspy.UTCDateTime]:
    day = obspy.UTCDateTime(start.date)
    out = []
    while day < end:
        out.append(day)
        day += 86400
    return out


def assemble_day(
    out: Path,
    day: obspy.UTCDateTime,
    records: list[dict[str, Any]],
    picks_format: str,
    merge: tuple[float, float] | None,
) -> tuple[int, int]:
    """Writes ``picks/DAY.csv|parquet`` and ``events/DAY.xml`` from the records of the tasks overlapping the
    day. ``merge`` (merge time s, merge distance km) merges the events of one chunk found by several station
    groups. Returns the numbers of picks and events written.

    The events are copied as XML elements from the chunks' QuakeML files (lxml; parsing them into ObsPy objects
    is only needed to merge station groups), in the order of their first P pick."""
    label = day.strftime("%Y-%m-%d")
    d0, d1 = day.ns, (day + 86400).ns
    frames = []
    by_chunk: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rec in sorted(records, key=lambda r: r["task_id"]):
        if not (rec["start_ns"] < d1 and rec["end_ns"] > d0):
            continue
        frame = read_picks_csv(out / rec["files"]["picks"])
        frame["_task"] = rec["task_id"]
        frames.append(frame[frame["time"].str.slice(0, 10) == label])
        by_chunk.setdefault((rec["start_ns"], rec["end_ns"]), []).append(rec)
    picks = pd.concat(frames, ignore_index=True) if frames else picks_frame(None)

    wanted: dict[tuple[str, str], int] = {}  # (task, event id) -> first P (ns)
    written: set[str] = set()  # events of these chunks written to a daily file (this day's or another's)
    remap: dict[str, str] = {}  # merged-away event -> the event kept for its earthquake
    catalogs: dict[str, Catalog] = {}

    def catalog_of(rec: dict[str, Any]) -> Catalog:
        if rec["task_id"] not in catalogs:
            catalogs[rec["task_id"]] = obspy.read_events(
                str(out / rec["files"]["events"]), format="QUAKEML"
            )
        return catalogs[rec["task_id"]]

    for chunk in sorted(by_chunk):
        recs = by_chunk[chunk]
        keep = None
        if merge is not None and len(recs) > 1:
            evs = [
                (rec["task_id"], str(ev.resource_id), ev) for rec in recs for ev in catalog_of(rec)
            ]
            keep = set()
            for members in _merge_group_events([ev for _, _, ev in evs], *merge):
                task, best, _ = evs[members[0]]
                keep.add((task, best))
                remap.update({evs[i][1]: best for i in members[1:] if evs[i][1] != best})
        for rec in recs:
            for event_id, ns in rec["event_first_p"]:
                key = (rec["task_id"], event_id)
                if keep is None or key in keep:
                    written.add(event_id)
                    if d0 <= ns < d1:
                        wanted[key] = ns
    picks = _link_picks(
        picks, written, remap, lambda: [catalog_of(r) for rs in by_chunk.values() for r in rs]
    )
    elements = []
    for task_id in sorted({task for task, _ in wanted}):
        rec = next(r for recs in by_chunk.values() for r in recs if r["task_id"] == task_id)
        tree = etree.parse(str(out / rec["files"]["events"]))
        for element in tree.iter(f"{{{_BED}}}event"):
            key = (task_id, element.get("publicID"))
            if key in wanted:
                elements.append((wanted[key], key[1], element))
    elements.sort(key=lambda e: (e[0], e[1]))

    picks = sort_picks(picks)
    if picks_format == "parquet":
        atomic_write(out / "picks" / f"{label}.parquet", picks_parquet_bytes(picks))
    else:
        atomic_write(out / "picks" / f"{label}.csv", picks_csv_bytes(picks))
    root = etree.Element(f"{{{_Q}}}quakeml", nsmap={None: _BED, "q": _Q})
    params = etree.SubElement(
        root, f"{{{_BED}}}eventParameters", publicID=named_id("catalog", label)
    )
    for _, _, element in elements:
        params.append(element)
    etree.indent(root, space="  ")
    atomic_write(
        out / "events" / f"{label}.xml",
        etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True),
    )
    return len(picks), len(elements)


# ----------------------------------------------------------------------------------------------------
# The driver (on the client)
# ----------------------------------------------------------------------------------------------------
def _read_inventory(
    inventory: str | Path | Inventory | pd.DataFrame, stations: Iterable[str] | None = None
) -> Inventory | pd.DataFrame:
    """A station file in any format :func:`~sine_seisbench.stations.read_stations` reads (an Inventory or a
    DataFrame is returned as it is); ``stations`` (ids) give the networks of a table without them."""
    if isinstance(inventory, (Inventory, pd.DataFrame)):
        return inventory
    return read_stations(inventory, stream=stations)


def _select_inventory(
    inventory: Inventory | pd.DataFrame, stations: set[str]
) -> Inventory | pd.DataFrame:
    """The part of the inventory the tasks need (less to send to every worker)."""
    nets = {s.split(".")[0] for s in stations}
    stas = {".".join(s.split(".")[:2]) for s in stations}
    if isinstance(inventory, pd.DataFrame):
        keep = (inventory["network"].astype(str) + "." + inventory["station"].astype(str)).isin(
            stas
        )
        return inventory[keep].reset_index(drop=True)
    networks = []
    for net in inventory:
        if net.code not in nets:
            continue
        kept = [sta for sta in net if f"{net.code}.{sta.code}" in stas]
        if kept:
            copy = Network(net.code, stations=kept, description=net.description)
            networks.append(copy)
    return Inventory(networks=networks, source=inventory.source)


def scan_archive(
    archive: str | Path,
    start: obspy.UTCDateTime,
    end: obspy.UTCDateTime,
    channels: str = "*",
    sds_type: str = "D",
    sds_format: str = "MSEED",
) -> list[str]:
    """``NET.STA.LOC`` of the stations with day files in the archive between ``start`` and ``end``."""
    from fnmatch import fnmatchcase

    from obspy.clients.filesystem.sds import Client

    client = Client(str(archive), sds_type=sds_type, format=sds_format)
    patterns = [c.strip() for c in channels.split(",")]
    found = set()
    for day in _days(start, end):
        for net, sta, loc, cha in client.get_all_nslc(datetime=day + 43200):
            if any(fnmatchcase(cha, p) for p in patterns):
                found.add(f"{net}.{sta}.{loc}")
    return sorted(found)


class _LazyStations:
    """The ``NET.STA.LOC`` ids of :func:`scan_archive`, listed only when iterated (a station table without a
    network column takes its networks from them)."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __iter__(self) -> Any:
        return iter(scan_archive(*self.args))


def _check_settings(out: Path, settings: ArchiveSettings) -> None:
    path = out / "run.json"
    current = settings.compared()
    if path.exists():
        previous = json.loads(path.read_text())
        differ = sorted(k for k in current if previous.get(k) != json.loads(json.dumps(current[k])))
        if differ:
            detail = "; ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in differ)
            raise ValueError(
                f"{out} holds a run with other settings ({detail}). Use another --out folder, or "
                "remove the old results, to process with these settings."
            )
    else:
        atomic_write(path, json.dumps(current, indent=1, default=str).encode())


def _connect(scheduler: Any, workers: int | None, memory_limit: str | None) -> tuple[Any, Any]:
    """A ``distributed.Client`` for ``scheduler`` (an address, ``"local"`` or a Client) and the cluster
    started for it (or None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - dask is an optional extra
        raise ImportError(
            "Dask scheduling needs dask[distributed]: pip install 'sine-seisbench[dask]'"
        ) from e
    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit or "auto",
            dashboard_address=None,
        )
        return Client(cluster), cluster
    return Client(scheduler, timeout="30s"), None


def _is_synchronous(scheduler: Any) -> bool:
    return scheduler is None or (
        isinstance(scheduler, str) and scheduler.lower() in ("none", "synchronous", "sync", "")
    )


def _identity(x: Any) -> Any:
    return x


def annotate_archive(
    archive: str | Path,
    inventory: str | Path | Inventory | pd.DataFrame,
    start: str | obspy.UTCDateTime,
    end: str | obspy.UTCDateTime,
    out: str | Path,
    weights: str | None = DEFAULT_WEIGHTS,
    scheduler: Any = None,
    workers: int | None = None,
    chunk: str | float = "1h",
    pad: str | float | None = None,
    stations_per_task: int | None = None,
    channels: str = "*",
    picks_format: str = "csv",
    torch_threads: int = 1,
    retries: int = 2,
    progress: bool = True,
    drop_unlocated: bool = False,
    memory_limit: str | None = None,
    sds_type: str = "D",
    sds_format: str = "MSEED",
    device: str = "cpu",
    **classify_kwargs: Any,
) -> ArchiveResult:
    """Picks and events for an SDS archive between ``start`` and ``end``, written to ``out`` per day.

    :param archive: SDS root folder (``YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``), visible at the same path
                    to the client and every worker.
    :param inventory: StationXML/CSV path, an ObsPy Inventory or a DataFrame (network, station, latitude,
                      longitude, elevation): coordinates (and responses) of the stations.
    :param out: Output folder: ``picks/DAY.csv`` (or ``.parquet``), ``events/DAY.xml`` (QuakeML),
                ``manifest.json``, ``run.json`` and the per-task files in ``chunks/``.
    :param weights: SINE weights (path, shipped or pretrained name; default: the shipped
                    :data:`~sine_seisbench.DEFAULT_WEIGHTS`); None or ``"untrained"`` for untrained weights.
    :param scheduler: None/``"synchronous"`` (this process, no Dask), ``"local"`` (a ``LocalCluster`` of
                      ``workers`` processes with one thread each), a scheduler address
                      (``tcp://host:8786``) or a ``distributed.Client``.
    :param workers: Worker processes of the local cluster (default: the number of cores).
    :param chunk: Chunk length (``"1h"``, ``"30min"``, seconds).
    :param pad: Data read on each side of a chunk (default: four model windows, 120 s).
    :param stations_per_task: Split the network into station groups of at most this many stations (default:
                              the whole network in every task, which gives the results of ``classify``).
    :param channels: Channel pattern(s) to read, comma-separated (``"HH?,EH?"``).
    :param picks_format: ``"csv"`` or ``"parquet"``.
    :param torch_threads: Torch threads per task (default 1: one worker process per core). Results are
                          bit-identical across schedulers and worker counts for the same value; another thread
                          count changes event estimates at float32 rounding level (about 1e-7 relative).
    :param retries: Dask retries of a task that raised (tasks of a lost worker are rescheduled anyway).
    :param progress: Show a progress bar over the chunks (stderr; also silenced by
                     :func:`sine_seisbench.progress.set_quiet` or ``SINE_QUIET=1``).
    :param drop_unlocated: Leave out archive stations missing from the inventory (with a warning) instead of
                           raising an error that names them.
    :param memory_limit: Memory limit per worker of the local cluster (Dask syntax, e.g. ``"4GiB"``).
    :param device: Torch device of the model in every task (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; the
                   workers must have it). Results on another device differ at float32 rounding level.
    :param classify_kwargs: Passed to :meth:`SINE.classify` (``min_stations``, ``P_threshold``, ...).
    :return: An :class:`ArchiveResult`.
    """
    t0 = time.perf_counter()
    start, end = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
    if end <= start:
        raise ValueError(f"--end {end} must be after --start {start}.")
    if picks_format not in ("csv", "parquet"):
        raise ValueError(f"picks_format must be 'csv' or 'parquet', got {picks_format!r}")
    archive = Path(archive)
    if not archive.is_dir():
        raise FileNotFoundError(f"SDS archive {archive} does not exist or is not a folder.")
    out = Path(out)
    inventory = _read_inventory(
        inventory, _LazyStations(archive, start, end, channels, sds_type, sds_format)
    )
    weights = _canonical_weights(weights)
    if weights is not None and Path(weights).with_name(Path(weights).name + ".json").exists():
        weights = str(Path(weights).resolve())  # workers may run elsewhere

    model = get_model(weights, device=device)  # validates the weights and device before any work
    sba.verify_args(model, classify_kwargs)
    chunk_s = parse_duration(chunk)
    window_s = (model.in_samples - 1) / model.sampling_rate
    pad_s = parse_duration(pad) if pad is not None else DEFAULT_PAD_WINDOWS * window_s
    step = window_step(model, classify_kwargs.get("overlap"))
    spans = chunk_spans(start, end, chunk_s, pad_s, model.sampling_rate, step)

    stations = scan_archive(archive, start, end, channels, sds_type, sds_format)
    if not stations:
        raise ValueError(
            f"No data in the SDS archive {archive} between {start} and {end}"
            + (f" for channels {channels}" if channels != "*" else "")
            + " (expected files YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY)."
        )
    table = StationTable.from_any(inventory)
    coords = {s: table.get(s, start) for s in stations}
    missing = sorted(s for s, c in coords.items() if c is None)
    if missing and not drop_unlocated:
        raise ValueError(
            f"The inventory lacks station(s) {', '.join(missing)} that have data in {archive}; add them "
            "or use --drop-unlocated to process without them."
        )
    if missing:
        print(f"sine: no coordinates for {', '.join(missing)}; left out.", file=sys.stderr)
    located = [s for s in stations if coords[s] is not None]
    if not located:
        raise ValueError("None of the archive's stations is in the inventory.")
    blocks = station_blocks(located, [coords[s] for s in located], stations_per_task)
    tasks = [
        ArchiveTask(span, tuple(group), tuple(owned)) for span in spans for group, owned in blocks
    ]

    sync = _is_synchronous(scheduler)
    settings = ArchiveSettings(
        archive=str(archive.resolve()),
        out=str(out.resolve()),
        weights=weights,
        chunk_s=chunk_s,
        pad_s=pad_s,
        channels=channels,
        sds_type=sds_type,
        sds_format=sds_format,
        torch_threads=torch_threads,
        classify_kwargs=dict(classify_kwargs),
        device=str(device),
    )
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    _remove_stale_tmp(out)

    pending = [t for t in tasks if read_record(out, t.task_id) is None]
    skipped = len(tasks) - len(pending)
    print(
        f"sine: {len(tasks)} task(s) = {len(spans)} chunk(s) of {chunk_s:g} s x {len(blocks)} station "
        f"group(s) over {len(located)} station(s); {skipped} already finished, {len(pending)} to run"
        + ("" if sync else f" on {scheduler if isinstance(scheduler, str) else 'the Dask client'}"),
        file=sys.stderr,
    )
    task_inventory = _select_inventory(inventory, set(located))
    failed: dict[str, str] = {}
    if pending:
        if sync:
            threads = torch.get_num_threads()
            try:
                failed = _run_synchronous(pending, settings, task_inventory, progress)
            finally:
                torch.set_num_threads(threads)
        else:
            client, cluster = _connect(scheduler, workers, memory_limit)
            try:
                failed = _run_dask(client, pending, settings, task_inventory, progress, retries)
            finally:
                if cluster is not None:
                    client.close()
                    cluster.close()
    _remove_stale_tmp(out)

    records = {t.task_id: read_record(out, t.task_id) for t in tasks}
    finished = [r for r in records.values() if r is not None]
    merge = None
    if len(blocks) > 1:
        merge = (
            sba.arg(model, classify_kwargs, "merge_time"),
            sba.arg(model, classify_kwargs, "merge_distance"),
        )
    n_picks = n_events = 0
    days_written = []
    for day in _days(start, end):
        d0, d1 = day.ns, (day + 86400).ns
        day_tasks = [t for t in tasks if t.span.start_ns < d1 and t.span.end_ns > d0]
        if any(records[t.task_id] is None for t in day_tasks):
            continue
        p, e = assemble_day(out, day, [records[t.task_id] for t in day_tasks], picks_format, merge)
        n_picks, n_events = n_picks + p, n_events + e
        days_written.append(day.strftime("%Y-%m-%d"))
    manifest = {
        "start": str(start),
        "end": str(end),
        "settings": settings.compared(),
        "stations": located,
        "station_groups": [{"stations": g, "owned": o} for g, o in blocks],
        "tasks": len(tasks),
        "finished": sorted(finished, key=lambda r: r["task_id"]),
        "failed": failed,
        "days": days_written,
    }
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=1, default=str).encode())
    result = ArchiveResult(
        out=out,
        tasks=len(tasks),
        computed=len(pending) - len(failed),
        skipped=skipped,
        picks=n_picks,
        events=n_events,
        days=days_written,
        seconds=time.perf_counter() - t0,
        failed=sorted(failed),
    )
    if failed:
        first = sorted(failed)[0]
        raise RuntimeError(
            f"{len(failed)} task(s) failed (finished tasks are kept; rerun to retry them), e.g. "
            f"{first}: {failed[first]}"
        )
    return result


def _run_synchronous(
    tasks: Sequence[ArchiveTask],
    settings: ArchiveSettings,
    inventory: Inventory | pd.DataFrame,
    progress: bool,
) -> dict[str, str]:
    for task in progress_bar(tasks, desc="chunks", unit="chunk", disable=not progress):
        run_task(task, settings, inventory)
    return {}


def _run_dask(
    client: Any,
    tasks: Sequence[ArchiveTask],
    settings: ArchiveSettings,
    inventory: Inventory | pd.DataFrame,
    progress: bool,
    retries: int,
) -> dict[str, str]:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    # A task, not scattered data: if the workers holding it die, the scheduler recomputes it.
    inv = client.submit(_identity, inventory, key=f"sine-inventory-{token}", pure=False)
    futures = {
        client.submit(
            run_task,
            task,
            settings,
            inv,
            key=f"sine-chunk-{task.task_id}-{token}",
            pure=False,
            retries=retries,
        ): task.task_id
        for task in tasks
    }
    failed: dict[str, str] = {}
    with progress_bar(total=len(futures), desc="chunks", unit="chunk", disable=not progress) as bar:
        for future in as_completed(futures):
            if future.status != "finished":
                try:
                    future.result()
                except Exception as e:  # noqa: BLE001 - reported per task
                    failed[futures[future]] = f"{type(e).__name__}: {e}"
            bar.update(1)
            future.release()
    inv.release()
    return failed


# ----------------------------------------------------------------------------------------------------
# A small example archive (tests, benchmark, trying the command)
# ----------------------------------------------------------------------------------------------------
def write_example_archive(
    root: str | Path,
    start: str | obspy.UTCDateTime,
    duration_s: float,
    event_times: Sequence[str | obspy.UTCDateTime] = (),
    n_stations: int = 6,
    seed: int = 0,
    magnitude: tuple[float, float] = (2.6, 3.2),
    tt: Any = None,
) -> tuple[Inventory, pd.DataFrame]:
    """Writes an SDS archive of simulated continuous records, for tests, benchmarks and trying the command.

    The stations are :func:`sine_seisbench.demo.demo_network` (network DM around Ridgecrest, within about 60 km);
    each holds ``duration_s`` seconds of the simulator's coloured noise (3e-7 m/s RMS) from ``start`` and, for
    every origin time in ``event_times``, an earthquake of the simulator
    (:func:`sine_seisbench.data.simulate.simulate_station`: TauP times in the Southern California model, Brune
    source, radiation pattern, attenuation) at a seeded random hypocentre inside the network, with a magnitude
    uniform in ``magnitude``. Day files are split at midnight as in any SDS archive.

    :param tt: A :class:`~sine_seisbench.data.simulate.TravelTimes` (default: a coarse table to 120 km and 24 km
               depth, built in a few seconds and cached).
    :return: The network's Inventory and a table of the events (time, latitude, longitude, depth, magnitude).
    """
    from .data.simulate import NoiseBank, TravelTimes, simulate_station
    from .demo import CENTRE, demo_network
    from .example import make_inventory

    if tt is None:
        tt = TravelTimes(
            max_distance_km=120.0, max_depth_km=24.0, distance_step_km=5.0, depth_step_km=3.0
        )
    root = Path(root)
    start = obspy.UTCDateTime(start)
    sr = 100.0
    n = int(round(duration_s * sr))
    stations = demo_network(n_stations, seed=seed)
    rng = np.random.default_rng(seed)
    noise = NoiseBank(None, seed=seed)
    data = {row.station: noise.window(n) * 3e-7 for row in stations.itertuples()}
    events = []
    km_lon = 111.19 * math.cos(math.radians(CENTRE[0]))
    for t_origin in event_times:
        t_origin = obspy.UTCDateTime(t_origin)
        lat = CENTRE[0] + rng.uniform(-0.25, 0.25)
        lon = CENTRE[1] + rng.uniform(-0.25, 0.25)
        depth = float(rng.uniform(4, 12))
        mag = float(rng.uniform(*magnitude))
        mechanism = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
        events.append(
            {
                "time": str(t_origin),
                "latitude": lat,
                "longitude": lon,
                "depth": depth,
                "magnitude": mag,
            }
        )
        for row in stations.itertuples():
            epi = math.hypot((row.latitude - lat) * 111.19, (row.longitude - lon) * km_lon)
            az = math.degrees(
                math.atan2((row.longitude - lon) * km_lon, (row.latitude - lat) * 111.19)
            )
            tp = float(tt(np.array([epi]), depth)["tp"][0])
            p_sample = 1000.0
            signal, _ = simulate_station(
                rng, tt, mag, depth, epi, az % 360, row.elevation, mechanism, 3.0, 6000, p_sample
            )
            i0 = int(round((t_origin + tp - start) * sr - p_sample))
            a, b = max(i0, 0), min(i0 + signal.shape[1], n)
            if b > a:
                data[row.station][:, a:b] += signal[:, a - i0 : b - i0]
    for row in stations.itertuples():
        for c, comp in enumerate("ZNE"):
            trace = obspy.Trace(
                data[row.station][c].astype(np.float32),
                {
                    "network": row.network,
                    "station": row.station,
                    "location": "",
                    "channel": f"HH{comp}",
                    "sampling_rate": sr,
                    "starttime": start,
                },
            )
            for day in _days(start, start + duration_s):
                part = trace.slice(max(day, start), day + 86400 - 1 / sr)
                if not part.stats.npts:
                    continue
                folder = root / f"{day.year}" / row.network / row.station / f"HH{comp}.D"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{row.network}.{row.station}..HH{comp}.D.{day.year}.{day.julday:03d}"
                part.write(str(folder / name), format="MSEED", encoding="FLOAT32", reclen=4096)
    inventory = make_inventory(
        list(stations.station),
        list(zip(stations.latitude, stations.longitude, stations.elevation, strict=True)),
        network=str(stations.network.iloc[0]),
    )
    return inventory, pd.DataFrame(
        events, columns=["time", "latitude", "longitude", "depth", "magnitude"]
    )


__all__ = [
    "ArchiveResult",
    "ArchiveSettings",
    "ArchiveTask",
    "ChunkSpan",
    "annotate_archive",
    "chunk_spans",
    "get_model",
    "load_model",
    "model_loads",
    "parse_duration",
    "run_task",
    "scan_archive",
    "station_blocks",
    "write_example_archive",
]
