"""Sources that replay recorded data (a folder of miniSEED files, an SDS archive) and SeedLink.

Replay sources cut the records into packets of ``packet_s`` seconds in time order (as a digitiser or SeedLink
would deliver them) and emit them as fast as possible (``speed=None``) or at ``speed`` times real time. Their
positions are packet sequence numbers; committed positions are kept in ``state_path`` (JSON), so a restarted
monitor continues after the last committed packet.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obspy

from .base import Message, Unavailable, logger
from .schema import split_packets


class _CommitLog:
    """Contiguous committed prefix of integer positions, persisted atomically in a JSON file."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.committed = 0  # positions < committed are done
        self._done: set[int] = set()
        if self.path and self.path.exists():
            self.committed = int(json.loads(self.path.read_text())["committed"])

    def commit(self, positions: list[int]) -> None:
        self._done.update(p for p in positions if p >= self.committed)
        moved = False
        while self.committed in self._done:
            self._done.discard(self.committed)
            self.committed += 1
            moved = True
        if moved and self.path:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps({"committed": self.committed}))
            os.replace(tmp, self.path)


class ReplaySource:
    """Base of the replay sources: packets from :meth:`_traces` in time order, paced by ``speed``."""

    name = "replay"

    def __init__(
        self,
        packet_s: float = 1.0,
        speed: float | None = None,
        state_path: str | os.PathLike | None = None,
        batch: int = 256,
    ) -> None:
        self.packet_s = float(packet_s)
        self.speed = speed
        self.live = speed is not None
        self.batch = batch
        self.log = _CommitLog(state_path)
        self._iter: Iterator[tuple[int, obspy.Trace]] | None = None
        self._next: tuple[int, obspy.Trace] | None = None
        self._finished = False
        self._t0_wall: float | None = None
        self._t0_data: float | None = None

    def _traces(self) -> Iterator[obspy.Trace]:
        raise NotImplementedError

    def _packets(self) -> Iterator[tuple[int, obspy.Trace]]:
        seq = 0
        for tr in self._traces():
            if seq >= self.log.committed:
                yield seq, tr
            seq += 1

    @property
    def finished(self) -> bool:
        return self._finished

    def poll(self, timeout: float) -> list[Message]:
        if self._iter is None:
            self._iter = self._packets()
        out: list[Message] = []
        deadline = time.time() + timeout
        while len(out) < self.batch:
            if self._next is None:
                try:
                    self._next = next(self._iter)
                except StopIteration:
                    self._finished = True
                    break
            seq, tr = self._next
            if self.speed is not None:
                end = tr.stats.endtime.timestamp + tr.stats.delta
                if self._t0_wall is None:
                    self._t0_wall, self._t0_data = time.time(), tr.stats.starttime.timestamp
                due = self._t0_wall + (end - self._t0_data) / self.speed
                wait = due - time.time()
                if wait > 0:
                    if out or time.time() + wait > deadline:
                        time.sleep(max(0.0, min(wait, deadline - time.time())))
                        break
                    time.sleep(wait)
            now = time.time()
            out.append(Message(position=seq, payload=tr, published=now, received=now))
            self._next = None
        return out

    def commit(self, positions: list[Any]) -> None:
        self.log.commit([int(p) for p in positions])

    def close(self) -> None:
        self._iter = None


class FileSource(ReplaySource):
    """miniSEED (or any ObsPy-readable) files matching ``pattern`` (a folder, a glob or a list of paths)."""

    name = "files"

    def __init__(self, pattern: str | list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(pattern, list | tuple):
            paths = [str(p) for p in pattern]
        elif os.path.isdir(pattern):
            paths = sorted(str(p) for p in Path(pattern).iterdir() if p.is_file())
        else:
            paths = sorted(glob.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"no waveform files match {pattern!r}")
        self.paths = paths

    def _traces(self) -> Iterator[obspy.Trace]:
        stream = obspy.Stream()
        for path in self.paths:
            try:
                stream += obspy.read(path)
            except Exception as e:  # noqa: BLE001 - name the file, go on with the others
                logger.error(f"files source: cannot read {path}: {e}; the file is skipped")
        stream.merge(method=1)
        stream = stream.split()
        yield from split_packets(stream, self.packet_s)


class SDSSource(ReplaySource):
    """An SDS archive (``ROOT/YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``) between ``start`` and ``end``,
    read ``chunk_s`` at a time with :class:`obspy.clients.filesystem.sds.Client`.

    :param streams: ``NET.STA.LOC.CHA`` patterns (wildcards allowed); default: everything in the archive.
    """

    name = "sds"

    def __init__(
        self,
        root: str,
        start: obspy.UTCDateTime | str,
        end: obspy.UTCDateTime | str,
        streams: list[str] | None = None,
        chunk_s: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from obspy.clients.filesystem.sds import Client

        if not os.path.isdir(root):
            raise FileNotFoundError(f"SDS archive {root!r} does not exist")
        self.client = Client(root)
        self.start, self.end = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
        if self.end <= self.start:
            raise ValueError(f"SDS source: end {self.end} is not after start {self.start}")
        self.streams = streams or [
            ".".join(nslc) for nslc in sorted(self.client.get_all_nslc(datetime=None))
        ]
        if not self.streams:
            raise FileNotFoundError(f"SDS archive {root!r} holds no streams")
        self.chunk_s = float(chunk_s)

    def _traces(self) -> Iterator[obspy.Trace]:
        t = self.start
        while t < self.end:
            t1 = min(t + self.chunk_s, self.end)
            stream = obspy.Stream()
            for sid in self.streams:
                net, sta, loc, cha = sid.split(".")
                stream += self.client.get_waveforms(net, sta, loc, cha, t, t1 - 1e-6)
            stream.merge(method=1)
            stream = stream.split()
            # samples in [t, t1): the next chunk starts with the sample at t1
            stream.trim(t, t1 - 1e-6, nearest_sample=False)
            stream.traces = [tr for tr in stream if tr.stats.npts > 0]
            yield from split_packets(stream, self.packet_s)
            t = t1


class SeedLinkSource:
    """Real-time packets from a SeedLink server with ObsPy's :class:`~obspy.clients.seedlink.slclient.SLClient`
    (run in a background thread).

    :param server: ``host:port``.
    :param streams: SeedLink selectors ``NET_STA:CHA``, e.g. ``["UW_SHW:HH?"]``.
    :param state_path: SeedLink state file (sequence numbers per station) so a restart resumes where the last
                       commit left off; ObsPy's client writes it when told to.

    Committing: SeedLink has no consumer offsets. The state file is written by the client as packets arrive;
    together with the monitor's checkpoint (which reruns windows from ``keep_from``) a restart loses nothing the
    server still holds in its ring buffer.
    """

    name = "seedlink"
    live = True

    def __init__(
        self,
        server: str,
        streams: list[str],
        state_path: str | None = None,
        begin_time: obspy.UTCDateTime | None = None,
    ) -> None:
        from obspy.clients.seedlink.slclient import SLClient

        class _Client(SLClient):
            def packet_handler(inner, count, slpack):  # noqa: N805 - ObsPy's callback signature
                from obspy.clients.seedlink.slpacket import SLPacket

                if slpack is None or slpack in (SLPacket.SLNOPACKET, SLPacket.SLERROR):
                    return False
                if slpack.get_type() == SLPacket.TYPE_SLINF:
                    return False
                tr = slpack.get_trace()
                if tr is not None:
                    self._queue.put(tr)
                return False

        self._queue: queue.Queue[obspy.Trace] = queue.Queue()
        self.client = _Client()
        self.client.slconn.set_sl_address(server)
        self.client.multiselect = ",".join(streams)
        if begin_time is not None:
            self.client.begin_time = obspy.UTCDateTime(begin_time)
        if state_path:
            self.client.slconn.statefile = state_path
        self.client.initialize()
        self._seq = 0
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.client.run()
        except Exception as e:  # noqa: BLE001 - reported by poll
            self._error = e

    @property
    def finished(self) -> bool:
        return False

    def poll(self, timeout: float) -> list[Message]:
        if self._error is not None:
            raise Unavailable(f"SeedLink connection failed: {self._error}")
        out = []
        try:
            tr = self._queue.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            self._seq += 1
            out.append(Message(position=self._seq, payload=tr, published=None))
            try:
                tr = self._queue.get_nowait()
            except queue.Empty:
                return out

    def commit(self, positions: list[Any]) -> None:
        pass

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass
