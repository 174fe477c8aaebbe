"""Redis Streams as a source of waveform packets and a sink of picks and events.

**Source** (:class:`RedisSource`): a consumer group reads one stream; every entry carries a packet (JSON or
miniSEED bytes) in the field ``field`` (default ``"packet"``). Positions are entry ids (``str``, e.g.
``"1700000000000-0"``); :meth:`RedisSource.commit` acknowledges them (``XACK``) and deletes nothing. Entries
read but not acknowledged stay in the group's pending-entries list (PEL): after a restart the source first
re-reads its own pending entries, so nothing unacknowledged is lost (at-least-once). A consumer that never
comes back can leave entries pending forever; give the replacement ``claim_idle_ms`` to take them over.

**Sink** (:class:`RedisSink`): each output message is one entry ``{"message": <JSON>, "type": ..., "id": ...}``
of the output stream, all messages of one :meth:`RedisSink.publish` in one ``MULTI``/``EXEC`` transaction;
undecodable packets go to ``<stream>.dead`` as ``{"reason", "position", "payload"}``.

Both raise :class:`~sine_seisbench.monitor.base.Unavailable` (naming the URL) when Redis cannot be reached or
does not answer within ``timeout`` seconds; they never retry for long themselves (the service does).

Feed a stream with :func:`publish_packets`::

    publish_packets("redis://127.0.0.1:6379/0", "waveforms", [encode_packet(tr) for tr in packets])
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .base import Message, Unavailable, logger
from .schema import encode_message

_EXTRA = "pip install sine-seisbench[monitor]"


def _redis() -> Any:
    try:
        import redis
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(f"Redis sources and sinks need redis-py: {_EXTRA}") from e
    return redis


def connect(url: str, timeout: float = 5.0, retries: int = 0) -> Any:
    """A ``redis.Redis`` client for ``url`` that gives up after ``timeout`` seconds per command.

    :param retries: Immediate reconnect attempts after a broken connection (not after a timeout).
    """
    redis = _redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries, supported_errors=(redis.exceptions.ConnectionError,)),
        decode_responses=False,
    )


def _is_unavailable(e: BaseException) -> bool:
    redis = _redis()
    exc = redis.exceptions
    if isinstance(e, exc.AuthenticationError | exc.AuthorizationError):
        return False  # a configuration error: retrying does not help
    if isinstance(e, exc.ConnectionError | exc.TimeoutError | exc.OutOfMemoryError | OSError):
        return True
    # "-LOADING" (reading the AOF after a restart), "-MASTERDOWN", "-TRYAGAIN", read-only replica
    text = str(e).upper()
    return isinstance(e, exc.ResponseError) and text.startswith(
        ("LOADING", "MASTERDOWN", "TRYAGAIN", "READONLY", "BUSY ")
    )


@contextmanager
def _unavailable(url: str, what: str) -> Iterator[None]:
    """Turns Redis connection errors and timeouts into :class:`Unavailable` naming the URL."""
    try:
        yield
    except Exception as e:
        if _is_unavailable(e):
            raise Unavailable(
                f"Redis at {_safe_url(url)} unavailable ({what}): {type(e).__name__}: {e}"
            ) from e
        raise


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_time(entry_id: str) -> float:
    """Wall-clock time (UNIX seconds) at which Redis assigned an auto-generated entry id."""
    return int(entry_id.split("-", 1)[0]) / 1000.0


def payload_bytes(payload: Any) -> bytes:
    """A dead-lettered payload as bytes (JSON for dicts, the JSON packet for ObsPy traces)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, dict | list):
        return json.dumps(
            payload, default=lambda o: _text(o) if isinstance(o, bytes) else str(o)
        ).encode()
    try:
        import obspy

        from .schema import encode_packet

        if isinstance(payload, obspy.Trace):
            return encode_packet(payload)
    except Exception:  # noqa: BLE001 - fall back to repr below
        pass
    return repr(payload).encode("utf-8")


def position_text(position: Any) -> str:
    """A source position as text: ``"1700000000000-0"``, ``"topic:partition:offset"``, ``repr`` otherwise."""
    if isinstance(position, str):
        return position
    if isinstance(position, tuple):
        return ":".join(str(p) for p in position)
    return repr(position)


# ---------------------------------------------------------------------------------------------------------
# Source
# ---------------------------------------------------------------------------------------------------------
class RedisSource:
    """Waveform packets from a Redis stream, read through a consumer group.

    :param url: ``redis://[:password@]host:port/db``.
    :param stream: Stream key.
    :param group: Consumer group, created (``MKSTREAM``, from the stream's beginning) when missing.
    :param consumer: This reader's name within the group; a restarted monitor must use the same name to get
                     its unacknowledged entries again.
    :param block_ms: Longest a :meth:`poll` blocks on the server waiting for new entries (also capped by
                     ``poll``'s timeout).
    :param field: Entry field holding the packet. An entry without it is passed on as the dict of its fields
                  (decoded as UTF-8 where possible), which :func:`.schema.decode_packet` accepts when the
                  fields are those of a JSON packet, or sent to ``dead_letter_stream`` when that is given.
    :param dead_letter_stream: Where the source itself records entries it cannot deliver (no ``field``,
                               deleted before they were processed); ``None``: pass them on / only log.
    :param count: Most entries per :meth:`poll`.
    :param timeout: Seconds a command may take before :class:`Unavailable` is raised (the blocking read gets
                    ``block_ms`` on top).
    :param stop_when_idle: For tests and replays: :attr:`finished` becomes true once nothing new arrived for
                           this many seconds and every delivered entry was committed. ``None``: never.
    :param claim_idle_ms: Take over (``XAUTOCLAIM``) entries that other consumers of the group left pending for
                          longer than this, checked every ``claim_idle_ms``. ``None``: only own entries.
    """

    live = True

    def __init__(
        self,
        url: str,
        stream: str,
        group: str = "sine",
        consumer: str = "sine-1",
        block_ms: int = 1000,
        field: str = "packet",
        dead_letter_stream: str | None = None,
        *,
        count: int = 500,
        timeout: float = 5.0,
        stop_when_idle: float | None = None,
        claim_idle_ms: int | None = None,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.block_ms = int(block_ms)
        self.field = field.encode()
        self.dead_letter_stream = dead_letter_stream
        self.count = int(count)
        self.timeout = float(timeout)
        self.stop_when_idle = stop_when_idle
        self.claim_idle_ms = claim_idle_ms
        self.name = name or f"redis:{stream}"
        # A read whose answer was lost still moves entries into our PEL: a socket error or timeout must not
        # be retried silently, so no automatic retries; the next poll re-reads the PEL instead.
        self._client = connect(url, timeout=self.timeout + self.block_ms / 1000.0, retries=0)
        self._group_ready = False
        # re-reading our own pending entries from this id; None: reading new entries
        self._pending_from: str | None = "0"
        self._outstanding: set[str] = set()  # delivered, not committed
        self._uncommitted: list[str] = []  # passed to commit but XACK failed: retried next commit
        self._last_activity = time.monotonic()
        self._last_claim = 0.0
        self._closed = False

    # -- Source protocol -----------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Message]:
        """Entries available now: first this consumer's pending ones, then new ones (blocking ≤ ``timeout``)."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        try:
            with _unavailable(self.url, f"reading stream {self.stream!r}"):
                self._ensure_group()
                messages = self._read(timeout)
        except Unavailable:
            self._pending_from = "0"  # entries of a lost answer are in our PEL: read it again
            raise
        except Exception as e:
            if "NOGROUP" in str(e):  # stream or group deleted (or a restart without persistence)
                logger.warning(
                    "%s: consumer group %r missing, creating it again", self.name, self.group
                )
                self._group_ready = False
                self._pending_from = "0"
                return []
            raise
        if messages:
            self._last_activity = time.monotonic()
        return messages

    @property
    def finished(self) -> bool:
        if self.stop_when_idle is None:
            return False
        return (
            self._group_ready
            and self._pending_from is None
            and not self._outstanding
            and not self._uncommitted
            and time.monotonic() - self._last_activity >= self.stop_when_idle
        )

    def commit(self, positions: list[Any]) -> None:
        """Acknowledges (``XACK``) the given entry ids; they are not deleted from the stream."""
        ids = self._uncommitted + [_text(p) for p in positions]
        if not ids:
            return
        self._uncommitted = []
        try:
            with _unavailable(self.url, "acknowledging entries"):
                pipe = self._client.pipeline(transaction=False)
                for i in range(0, len(ids), 1000):
                    pipe.xack(self.stream, self.group, *ids[i : i + 1000])
                pipe.execute()
        except Exception:
            self._uncommitted = ids  # XACK is idempotent: try them all again next time
            raise
        self._outstanding.difference_update(ids)
        self._last_activity = time.monotonic()

    def close(self) -> None:
        """Closes the connection; entries delivered but not committed stay pending for the next start."""
        self._closed = True
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    # -- internals -----------------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            logger.info("%s: created consumer group %r on %r", self.name, self.group, self.stream)
        except _redis().exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    def _read(self, timeout: float) -> list[Message]:
        now = time.monotonic()
        if self.claim_idle_ms is not None and now - self._last_claim >= self.claim_idle_ms / 1000.0:
            self._last_claim = now
            claimed = self._claim()
            if claimed:
                return claimed
        if self._pending_from is not None:
            # Own PEL: entries delivered to this consumer name and never acknowledged (an earlier run, or a
            # read whose answer was lost). Skip those the caller already holds.
            reply = self._client.xreadgroup(
                self.group, self.consumer, {self.stream: self._pending_from}, count=self.count
            )
            entries = _entries(reply)
            if not entries:
                if self._pending_from == "0" and not self._outstanding:
                    logger.debug("%s: no pending entries", self.name)
                self._pending_from = None
            else:
                self._pending_from = _text(entries[-1][0])
                messages = self._messages(entries, skip_outstanding=True)
                if messages:
                    logger.info("%s: %d pending entries delivered again", self.name, len(messages))
                    return messages
                return []
        block = min(int(timeout * 1000), self.block_ms)
        reply = self._client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.count,
            block=block if block >= 1 else None,  # BLOCK 0 would wait forever
        )
        return self._messages(_entries(reply))

    def _claim(self) -> list[Message]:
        entries: list[Any] = []
        start = "0-0"
        while len(entries) < self.count:
            reply = self._client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle_ms or 0),
                start_id=start,
                count=self.count - len(entries),
            )
            start, got = _text(reply[0]), reply[1]
            entries.extend(got)
            if start == "0-0":
                break
        messages = self._messages(entries, skip_outstanding=True)
        if messages:
            logger.warning(
                "%s: took over %d entries other consumers left pending for more than %d ms",
                self.name,
                len(messages),
                self.claim_idle_ms,
            )
        return messages

    def _messages(self, entries: list[Any], skip_outstanding: bool = False) -> list[Message]:
        messages: list[Message] = []
        drop: list[str] = []
        received = time.time()
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if skip_outstanding and entry_id in self._outstanding:
                continue
            if fields is None:  # in the PEL, but deleted from the stream (XDEL, MAXLEN trimming)
                logger.warning(
                    "%s: pending entry %s was deleted from the stream; skipped", self.name, entry_id
                )
                self._dead_letter(
                    entry_id, "entry deleted from the stream before it was processed", b""
                )
                drop.append(entry_id)
                continue
            if self.field in fields:
                payload: Any = fields[self.field]
            elif self.dead_letter_stream is not None:
                reason = f"entry has no field {self.field.decode()!r}"
                self._dead_letter(entry_id, reason, payload_bytes(_decoded(fields)))
                drop.append(entry_id)
                continue
            else:
                payload = _decoded(fields)
            self._outstanding.add(entry_id)
            messages.append(
                Message(
                    position=entry_id,
                    payload=payload,
                    published=entry_time(entry_id),
                    received=received,
                )
            )
        if drop:
            self._client.xack(self.stream, self.group, *drop)
        return messages

    def _dead_letter(self, entry_id: str, reason: str, payload: bytes) -> None:
        if self.dead_letter_stream is None:
            return
        self._client.xadd(
            self.dead_letter_stream, {"reason": reason, "position": entry_id, "payload": payload}
        )

    def __repr__(self) -> str:
        return f"RedisSource({_safe_url(self.url)!r}, {self.stream!r}, group={self.group!r}, consumer={self.consumer!r})"


def _entries(reply: Any) -> list[Any]:
    """The ``[(id, fields), ...]`` of an ``XREADGROUP`` reply for one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        values = list(reply.values())
        return list(values[0][0]) if values and values[0] and isinstance(values[0][0], list) else []
    return list(reply[0][1])


def _decoded(fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        try:
            out[_text(k)] = v.decode("utf-8") if isinstance(v, bytes) else v
        except UnicodeDecodeError:
            out[_text(k)] = v
    return out


# ---------------------------------------------------------------------------------------------------------
# Sink
# ---------------------------------------------------------------------------------------------------------
class RedisSink:
    """Picks and events appended to a Redis stream.

    :param url: ``redis://[:password@]host:port/db``.
    :param stream: Output stream key.
    :param field: Entry field holding the JSON message (``type`` and ``id`` are copied into fields of their own
                  so consumers can filter without parsing).
    :param dead_letter_stream: Stream of undecodable packets; default ``<stream>.dead``.
    :param maxlen: Trim the streams to about this many entries (``MAXLEN ~``); ``None``: keep everything.
    :param timeout: Seconds a command may take before :class:`Unavailable` is raised.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        field: str = "message",
        dead_letter_stream: str | None = None,
        maxlen: int | None = None,
        *,
        timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.stream = stream
        self.field = field
        self.dead_letter_stream = dead_letter_stream or f"{stream}.dead"
        self.maxlen = maxlen
        self.timeout = float(timeout)
        self.name = name or f"redis:{stream}"
        # One immediate reconnect after a broken connection (e.g. Redis restarted); a repeated XADD after a
        # lost EXEC answer is a harmless re-publication (consumers keep the highest version per id).
        self._client = connect(url, timeout=self.timeout, retries=1)

    def publish(self, messages: list[dict[str, Any]]) -> list[str]:
        """Appends the messages in one transaction; returns their entry ids."""
        if not messages:
            return []
        with _unavailable(self.url, f"publishing to stream {self.stream!r}"):
            pipe = self._client.pipeline(transaction=True)
            for m in messages:
                fields: dict[str, Any] = {self.field: encode_message(m)}
                for key in ("type", "id"):
                    if isinstance(m.get(key), str):
                        fields[key] = m[key]
                pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            ids = pipe.execute()
        return [_text(i) for i in ids]

    def dead_letter(self, payload: Any, reason: str, position: Any) -> None:
        """Appends ``{"reason", "position", "payload"}`` to the dead-letter stream."""
        with _unavailable(self.url, f"publishing to stream {self.dead_letter_stream!r}"):
            self._client.xadd(
                self.dead_letter_stream,
                {
                    "reason": reason,
                    "position": position_text(position),
                    "payload": payload_bytes(payload),
                },
                maxlen=self.maxlen,
                approximate=True,
            )

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def __repr__(self) -> str:
        return f"RedisSink({_safe_url(self.url)!r}, {self.stream!r})"


def publish_packets(
    url: str,
    stream: str,
    packets: list[bytes],
    field: str = "packet",
    maxlen: int | None = None,
    batch: int = 500,
    timeout: float = 10.0,
) -> list[str]:
    """Appends waveform packets (JSON or miniSEED bytes) to ``stream``, in order; returns their entry ids.

    :param batch: Packets per pipelined round trip.
    :raises Unavailable: when Redis cannot be reached (packets of earlier batches are already in the stream).
    """
    client = connect(url, timeout=timeout, retries=1)
    ids: list[str] = []
    try:
        with _unavailable(url, f"publishing packets to {stream!r}"):
            for i in range(0, len(packets), batch):
                pipe = client.pipeline(transaction=False)
                for packet in packets[i : i + batch]:
                    pipe.xadd(stream, {field: packet}, maxlen=maxlen, approximate=True)
                ids.extend(_text(x) for x in pipe.execute())
    finally:
        client.close()
    return ids
