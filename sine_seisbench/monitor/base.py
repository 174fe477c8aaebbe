"""Interfaces shared by the monitor's sources, sinks and service."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger("sine_seisbench.monitor")


class Unavailable(ConnectionError):
    """A broker, server or file system is (temporarily) unreachable; the service retries with backoff."""


class MalformedPacket(ValueError):
    """A message that is not a valid waveform packet; it goes to the dead-letter sink and is committed."""


@dataclass
class Message:
    """One raw input message as a source delivered it.

    :param position: Source-specific, opaque position used to commit it (Kafka ``(topic, partition, offset)``,
                     Redis stream entry id, ``(file, index)``, ...). Must be hashable.
    :param payload: ``bytes`` (JSON or miniSEED), ``str`` (JSON), ``dict`` (decoded JSON) or ``obspy.Trace``.
    :param published: Wall-clock time (UNIX seconds) at which the producer published it, when known
                      (Kafka message timestamp, Redis entry id); used for latency figures.
    :param received: Wall-clock time it was received here.
    """

    position: Any
    payload: Any
    published: float | None = None
    received: float = field(default_factory=time.time)


@runtime_checkable
class Source(Protocol):
    """Where waveform packets come from.

    ``poll`` returns the messages available now (waiting at most ``timeout`` seconds; an empty list when there
    are none) and raises :class:`Unavailable` when its server cannot be reached. ``finished`` becomes true when a
    finite source (files, an SDS time span) has delivered everything. ``commit`` is called with positions whose
    results have been published and whose data are no longer needed; only then may the source forget them
    (commit offsets, acknowledge entries, record a file position). After a restart, ``poll`` resumes after the
    last committed positions (at-least-once). ``live`` sources are real-time streams: windows wait for late
    stations only ``max_latency`` seconds of wall-clock time.
    """

    name: str
    live: bool

    def poll(self, timeout: float) -> list[Message]: ...

    @property
    def finished(self) -> bool: ...

    def commit(self, positions: list[Any]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Where picks and events go.

    ``publish`` takes output messages (dicts of :mod:`.schema`) and returns only once they are durable at the
    destination (flushed); it raises :class:`Unavailable` when the destination cannot be reached (the service
    retries the same messages, so a sink must tolerate a repeated publish). ``dead_letter`` records a message
    that could not be decoded.
    """

    name: str

    def publish(self, messages: list[dict[str, Any]]) -> None: ...

    def dead_letter(self, payload: Any, reason: str, position: Any) -> None: ...

    def close(self) -> None: ...
