"""The monitoring service: source → engine → sinks → commit, with retries, dead letters and clean shutdown.

Delivery guarantees: a source position is committed only after (1) every pick and event derived from its data
has been published to every sink and (2) the engine's checkpoint, which lets a restarted engine continue exactly,
has been saved. A restart therefore re-reads at most the uncommitted packets, rebuilds the engine's state from
them and re-publishes nothing that was already published with the same content (events keep their ids and
versions; a re-published (id, version) is identical and harmless).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .base import MalformedPacket, Message, Sink, Source, Unavailable, logger
from .engine import StreamingClassifier
from .schema import decode_packet, encode_message


# -------------------------------------------------------------------------------------------------------------
# File sinks
# -------------------------------------------------------------------------------------------------------------
class JsonLinesSink:
    """Picks and events as JSON lines on stdout (``path="-"``) or appended to a file (flushed and fsynced on
    every publish). Dead letters go to ``<path>.dead`` (stderr for stdout)."""

    name = "jsonl"

    def __init__(self, path: str = "-", include_quakeml: bool = False) -> None:
        self.path = path
        self.include_quakeml = include_quakeml
        self._fh: TextIO = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")  # noqa: SIM115

    def publish(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            if not self.include_quakeml and "quakeml" in m:
                m = {k: v for k, v in m.items() if k != "quakeml"}
            self._fh.write(json.dumps(m, sort_keys=True) + "\n")
        self._fh.flush()
        if self._fh is not sys.stdout:
            os.fsync(self._fh.fileno())

    def dead_letter(self, payload: Any, reason: str, position: Any) -> None:
        line = json.dumps(
            {"reason": reason, "position": repr(position), "payload": _preview(payload)}
        )
        if self.path == "-":
            print(line, file=sys.stderr)
        else:
            with open(self.path + ".dead", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def close(self) -> None:
        if self._fh is not sys.stdout:
            self._fh.close()


class QuakeMLSink:
    """One QuakeML file per event in ``folder`` (``<id hash>.xml``), rewritten atomically on every update."""

    name = "quakeml"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            if m.get("type") != "event":
                continue
            path = self.folder / (m["id"].rsplit("/", 1)[-1] + ".xml")
            if m.get("status") == "retracted":
                if path.exists():
                    path.unlink()
                continue
            tmp = path.with_suffix(".xml.tmp")
            tmp.write_text(m["quakeml"], encoding="utf-8")
            os.replace(tmp, path)

    def dead_letter(self, payload: Any, reason: str, position: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _preview(payload: Any, limit: int = 200) -> str:
    if isinstance(payload, bytes | bytearray):
        return payload[:limit].decode("utf-8", "replace")
    return repr(payload)[:limit]


# -------------------------------------------------------------------------------------------------------------
# Checkpoint stores
# -------------------------------------------------------------------------------------------------------------
class FileStateStore:
    """The engine checkpoint in a JSON file, replaced atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class RedisStateStore:
    """The engine checkpoint under a Redis key (for Redis-fed monitors without a local disk)."""

    def __init__(self, url: str, key: str) -> None:
        import redis

        self.url, self.key = url, key
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def load(self) -> dict[str, Any] | None:
        import redis

        try:
            raw = self.client.get(self.key)
        except redis.RedisError as e:
            raise Unavailable(f"Redis at {self.url}: {e}") from e
        return None if raw is None else json.loads(raw)

    def save(self, state: dict[str, Any]) -> None:
        import redis

        try:
            self.client.set(self.key, json.dumps(state))
        except redis.RedisError as e:
            raise Unavailable(f"Redis at {self.url}: {e}") from e


# -------------------------------------------------------------------------------------------------------------
# The service
# -------------------------------------------------------------------------------------------------------------
@dataclass
class MonitorStats:
    messages: int = 0
    malformed: int = 0
    picks: int = 0
    event_messages: int = 0
    events: set[str] = field(default_factory=set)
    retries: int = 0
    commits: int = 0
    latencies: list[float] = field(
        default_factory=list
    )  # packet published -> first event version published
    step_seconds: float = 0.0
    data_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies) if self.latencies else None
        return {
            "messages": self.messages,
            "malformed": self.malformed,
            "picks": self.picks,
            "events": len(self.events),
            "event_messages": self.event_messages,
            "retries": self.retries,
            "commits": self.commits,
            "latency_median_s": None if lat is None else float(np.median(lat)),
            "latency_p95_s": None if lat is None else float(np.percentile(lat, 95)),
            "processing_s": self.step_seconds,
        }


class Monitor:
    """Runs a :class:`StreamingClassifier` on a source and publishes to sinks.

    :param state: Where the engine checkpoint is kept (a :class:`FileStateStore` / :class:`RedisStateStore`);
                  without it a restart starts a fresh engine from the source's committed position.
    :param dead_letter: The sink that receives undecodable or unusable packets (default: the first sink).
    :param commit_interval_s: Least wall-clock time between commits (checkpoint + source commit).
    :param backoff: First and largest wait (s) between retries when a broker is unreachable.
    """

    def __init__(
        self,
        engine: StreamingClassifier,
        source: Source,
        sinks: list[Sink],
        state: FileStateStore | RedisStateStore | None = None,
        dead_letter: Sink | None = None,
        commit_interval_s: float = 1.0,
        poll_timeout_s: float = 0.5,
        backoff: tuple[float, float] = (0.2, 10.0),
        on_output: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.sinks = list(sinks)
        self.state = state
        self.dead = dead_letter or (self.sinks[0] if self.sinks else None)
        self.commit_interval_s = commit_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.backoff = backoff
        self.on_output = on_output
        self.stats = MonitorStats()
        self._pending: dict[Any, float] = {}  # position -> end of its data (model grid index)
        self._done: list[Any] = []
        self._stop = threading.Event()
        self._last_commit = 0.0
        self._newest_published: float | None = None
        self._restored = False

    # ---------------------------------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        """Ask the loop to finish: publish what is ready, save the checkpoint, commit, return."""
        if not self._stop.is_set():
            logger.info("monitor: stop requested; publishing, committing and exiting")
        self._stop.set()

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        delay = self.backoff[0]
        while True:
            try:
                return fn()
            except Unavailable as e:
                self.stats.retries += 1
                logger.warning(f"monitor: {what} failed ({e}); retrying in {delay:.1f} s")
                if self._stop.wait(delay) and what.startswith("poll"):
                    return []
                delay = min(delay * 2, self.backoff[1])

    def _restore(self) -> None:
        if self._restored:
            return
        self._restored = True
        if self.state is None:
            return
        saved = self._retry("loading the checkpoint", self.state.load)
        if saved:
            self.engine.restore(saved)
            logger.info(
                f"monitor: resumed from checkpoint (next window {saved['next_window']}, "
                f"{len(saved['events'])} open event(s))"
            )

    def _ingest(self, msg: Message) -> None:
        self.stats.messages += 1
        try:
            traces = decode_packet(msg.payload)
            end = -(2**62)
            for tr in traces:
                self.engine.ingest(tr)
                end = max(end, self.engine._to_index(tr.stats.endtime) + 1)
        except MalformedPacket as e:
            self.stats.malformed += 1
            logger.warning(f"monitor: message {msg.position!r} sent to the dead letters: {e}")
            reason = str(e)
            if self.dead is not None:
                self._retry(
                    "dead-lettering",
                    lambda: self.dead.dead_letter(msg.payload, reason, msg.position),
                )
            self._done.append(msg.position)
            return
        self._pending[msg.position] = end
        if msg.published is not None:
            self._newest_published = max(self._newest_published or 0.0, msg.published)

    def _publish(self, out: list[dict[str, Any]]) -> None:
        if not out:
            return
        for sink in self.sinks:
            self._retry(f"publishing to {sink.name}", lambda sink=sink: sink.publish(out))
        now = time.time()
        for m in out:
            if m["type"] == "pick":
                self.stats.picks += 1
            else:
                self.stats.event_messages += 1
                self.stats.events.add(m["id"])
                if m.get("version") == 1 and self._newest_published is not None:
                    self.stats.latencies.append(now - self._newest_published)
        if self.on_output is not None:
            self.on_output(out)

    def _commit(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_commit < self.commit_interval_s:
            return
        keep = self.engine.keep_from_index() if self.engine.next_window is not None else None
        done = list(self._done)
        if keep is not None:
            done += [pos for pos, end in self._pending.items() if end <= keep]
        if not done and not force:
            return
        if self.state is not None and self.engine.next_window is not None:
            self._retry("saving the checkpoint", lambda: self.state.save(self.engine.checkpoint()))
        if not done:
            return
        self._retry(f"committing to {self.source.name}", lambda: self.source.commit(done))
        for pos in done:
            self._pending.pop(pos, None)
        self._done = []
        self._last_commit = now
        self.stats.commits += 1

    def run(
        self,
        max_seconds: float | None = None,
        install_signals: bool = False,
        stop_when_idle_s: float | None = None,
    ) -> dict[str, Any]:
        """Runs until the source is finished (then flushes the engine), :meth:`stop` is called, SIGTERM/SIGINT
        arrive (with ``install_signals``) or ``max_seconds`` pass. With ``stop_when_idle_s``, a source that
        delivered nothing for that long (counted from its first message, or from the first poll when resumed
        from a checkpoint) counts as finished (replays through a broker). Only polls that answered count as
        idle: time spent waiting for an unreachable broker (retries) and the engine's work after a poll that
        delivered messages do not. Returns a summary."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        t_end = None if max_seconds is None else time.time() + max_seconds
        self._restore()
        # idle time counts from the first message, so that a monitor started before its publisher waits for
        # it; a monitor resumed from a checkpoint has read this stream before: its idle time counts from its
        # first poll (a restart with nothing left to read stops too)
        resumed = self.engine.next_window is not None
        seen = resumed  # whether idle time counts at all
        # start of the current run of answered polls that delivered nothing
        idle_since: float | None = None
        retries = self.stats.retries
        while not self._stop.is_set():
            if t_end is not None and time.time() >= t_end:
                break
            polled_at = time.time()
            messages = self._retry(
                f"polling {self.source.name}", lambda: self.source.poll(self.poll_timeout_s)
            )
            for msg in messages:
                self._ingest(msg)
            if messages:
                seen, idle_since = True, None
            elif self.stats.retries != retries:
                # a broker was unreachable since the last poll (polling, publishing or committing): waiting
                # for it is not the source being idle; count from now
                idle_since = time.time() if seen else None
            elif seen and idle_since is None:
                idle_since = polled_at
            retries = self.stats.retries
            idle = (
                stop_when_idle_s is not None
                and idle_since is not None
                and time.time() - idle_since >= stop_when_idle_s
            )
            finished = (self.source.finished or idle) and not messages
            t0 = time.perf_counter()
            out = self.engine.step(flush=finished)
            self.stats.step_seconds += time.perf_counter() - t0
            self._publish(out)
            if finished:
                self._done += list(self._pending)
                self._pending.clear()
                self._commit(force=True)
                break
            self._commit()
        else:
            # stopped: publish what is ready without finalising partial windows, then commit
            out = self.engine.step()
            self._publish(out)
            self._commit(force=True)
        self._commit(force=True)
        return self.stats.summary()

    def close(self) -> None:
        self.source.close()
        for sink in self.sinks:
            sink.close()


__all__ = [
    "FileStateStore",
    "JsonLinesSink",
    "Monitor",
    "MonitorStats",
    "QuakeMLSink",
    "RedisStateStore",
    "encode_message",
]
