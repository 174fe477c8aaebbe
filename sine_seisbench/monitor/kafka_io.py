"""Kafka as a source of waveform packets and a sink of picks and events (confluent-kafka / librdkafka).

**Source** (:class:`KafkaSource`): a consumer of one or more topics whose message values are packets (JSON or
miniSEED bytes). Positions are ``(topic, partition, offset)`` tuples. Offsets are committed only by
:meth:`KafkaSource.commit` (``enable.auto.commit=False``), per partition up to the longest contiguous run of
committed positions: the committed offset of a partition is its lowest offset delivered but not yet passed to
``commit``, or one past the highest delivered when none is outstanding. After a restart the group resumes
there (at-least-once; ``auto.offset.reset=earliest`` for a group that never committed).

``group_mode="subscribe"`` (default) joins the consumer group (partitions shared between the monitors of one
group, rebalanced when one comes or goes); ``group_mode="assign"`` reads every partition of the topics
itself from the group's committed offsets, without group membership: it starts at once (no join) and suits a
single monitor per group.

*Group join time.* A broker may hold a JoinGroup for a while to let other members join; tansu (the
Kafka-protocol broker the tests use) holds it for half the session timeout, which made the first poll of a
consumer with librdkafka's default ``session.timeout.ms`` (45 s) wait ~23 s. The source therefore uses a
6 s session (Kafka brokers' minimum by default): a join takes ~3 s with tansu, and a crashed member's
partitions move on after 6 s.

**Sink** (:class:`KafkaSink`): output messages keyed by their ``id`` (updates of one event stay in one
partition, in order), idempotent producer with ``acks=all``; :meth:`KafkaSink.publish` returns once the
broker acknowledged every message. Undecodable packets go to ``<topic>.dead`` with headers
``reason``/``position``.

Unreachable brokers raise :class:`~sine_seisbench.monitor.base.Unavailable` (librdkafka keeps reconnecting
by itself; the service retries): :meth:`KafkaSource.poll` when the client reports all brokers down or a
transport failure, :meth:`KafkaSource.commit` after ``commit_timeout`` seconds without an answer,
:meth:`KafkaSink.publish` when messages are still queued after ``flush_timeout`` seconds.

Feed a topic with :func:`publish_packets` (keyed by station so the packets of one station stay in order).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .base import Message, Unavailable, logger
from .redis_io import payload_bytes, position_text
from .schema import encode_message

_EXTRA = "pip install sine-seisbench[monitor]"
_log = logger.getChild("kafka")


def _ck() -> Any:
    try:
        import confluent_kafka
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(f"Kafka sources and sinks need confluent-kafka: {_EXTRA}") from e
    return confluent_kafka


def _codes(*names: str) -> frozenset[int]:
    err = _ck().KafkaError
    return frozenset(getattr(err, n) for n in names if hasattr(err, n))


def _down_codes() -> frozenset[int]:
    """Error codes meaning the cluster cannot be reached (now)."""
    return _codes("_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_AUTHENTICATION", "_SSL")


def _transient_codes() -> frozenset[int]:
    """Error codes worth retrying later (delivery, commit, admin requests)."""
    return _down_codes() | _codes(
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_QUEUE_FULL",
        "_PURGE_QUEUE",
        "_PURGE_INFLIGHT",
        "_WAIT_COORD",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "_NODE_UPDATE",
        "_RETRY",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "UNKNOWN_TOPIC_OR_PART",
        "KAFKA_STORAGE_ERROR",
        "BROKER_NOT_AVAILABLE",
        "THROTTLING_QUOTA_EXCEEDED",
    )


def _rebalance_codes() -> frozenset[int]:
    """Commit errors meaning this member lost (or is losing) its partitions: the offsets are dropped."""
    return _codes(
        "ILLEGAL_GENERATION",
        "UNKNOWN_MEMBER_ID",
        "REBALANCE_IN_PROGRESS",
        "_ASSIGNMENT_LOST",
        "FENCED_INSTANCE_ID",
    )


def _error_of(e: BaseException) -> Any:
    """The ``KafkaError`` inside a ``KafkaException`` (or ``None``)."""
    return e.args[0] if e.args and hasattr(e.args[0], "code") else None


class _RdkafkaLog:
    """librdkafka's log lines into ``sine_seisbench.monitor.kafka``; connection failures only at DEBUG level
    (they repeat every few ms while a broker is down, and surface as :class:`Unavailable` anyway)."""

    _QUIET = frozenset(
        {"FAIL", "REQTMOUT", "BROKERFAIL", "ERROR", "CONNECT", "DISCONNECT", "REQERR"}
    )

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility = args[0] if args else ""
        if facility in self._QUIET:
            level = logging.DEBUG
        _log.log(level, "librdkafka " + fmt, *args)


def _base_config(bootstrap: str, config: dict[str, Any] | None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": f"sine-monitor-{os.getpid()}",
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 5000,
        "logger": _RdkafkaLog(),
    }
    conf.update(config or {})
    return conf


# ---------------------------------------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------------------------------------
def topic_partitions(
    bootstrap: str, topic: str, timeout: float = 10.0, config: dict | None = None
) -> int | None:
    """Number of partitions of ``topic``, ``None`` when it does not exist.

    Lists all topics rather than asking for this one: some brokers (tansu among them) create a topic that a
    metadata request names.
    """
    return _partition_count(
        _ck().admin.AdminClient(_base_config(bootstrap, config)), bootstrap, topic, timeout
    )


def _partition_count(admin: Any, bootstrap: str, topic: str, timeout: float) -> int | None:
    try:
        md = admin.list_topics(timeout=timeout)
    except _ck().KafkaException as e:
        raise Unavailable(f"Kafka at {bootstrap} unavailable (listing topics): {e}") from e
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    replication_factor: int = 1,
    timeout: float = 10.0,
    config: dict[str, Any] | None = None,
) -> int:
    """Creates ``topic`` with ``partitions`` partitions when it does not exist; returns its partition count.

    An existing topic is left as it is (a different partition count is only logged).

    :raises Unavailable: when the cluster cannot be reached or does not answer within ``timeout`` seconds.
    """
    ck = _ck()
    admin = ck.admin.AdminClient(_base_config(bootstrap, config))
    existing = _partition_count(admin, bootstrap, topic, timeout)
    if existing is not None:
        if existing != partitions:
            _log.debug(
                "topic %r exists with %d partitions (asked for %d)", topic, existing, partitions
            )
        return existing
    future = admin.create_topics(
        [
            ck.admin.NewTopic(
                topic, num_partitions=partitions, replication_factor=replication_factor
            )
        ],
        request_timeout=timeout,
    )[topic]
    try:
        future.result(timeout)
        logger.info("created Kafka topic %r with %d partitions at %s", topic, partitions, bootstrap)
    except ck.KafkaException as e:
        err = _error_of(e)
        if err is None or err.code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
            if err is not None and err.code() not in _transient_codes():
                raise
            raise Unavailable(
                f"Kafka at {bootstrap} unavailable (creating topic {topic!r}): {e}"
            ) from e
    except TimeoutError as e:  # concurrent.futures.TimeoutError on Python >= 3.11
        raise Unavailable(f"Kafka at {bootstrap}: creating topic {topic!r} timed out") from e
    deadline = time.monotonic() + timeout
    while True:  # until the metadata show it (producers would otherwise wait for it)
        count = _partition_count(admin, bootstrap, topic, timeout)
        if count is not None:
            return count
        if time.monotonic() > deadline:
            raise Unavailable(
                f"Kafka at {bootstrap}: topic {topic!r} created but not in the metadata"
            )
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------
# Source
# ---------------------------------------------------------------------------------------------------------
class KafkaSource:
    """Waveform packets from Kafka topics.

    :param bootstrap: ``host:port[,host:port...]``.
    :param topic: Topic or list of topics.
    :param group: Consumer group id (committed offsets are kept per group).
    :param group_mode: ``"subscribe"`` (join the group, partitions balanced across members) or ``"assign"``
                       (read all partitions, no membership: starts at once; one monitor per group).
    :param max_messages: Most messages per :meth:`poll`.
    :param session_timeout_ms: Group session timeout (``subscribe``); see the module notes on join times.
    :param commit_timeout: Seconds :meth:`commit` waits for the broker's answer before :class:`Unavailable`.
    :param partitions: Create missing topics with this many partitions; ``None``: topics must exist.
    :param stop_when_idle: For tests and replays: :attr:`finished` becomes true once no message arrived for this
                           many seconds and every delivered message was committed. ``None``: never.
    :param config: Further librdkafka settings (override the defaults chosen here).
    """

    live = True

    def __init__(
        self,
        bootstrap: str,
        topic: str | list[str],
        group: str = "sine",
        *,
        group_mode: str = "subscribe",
        max_messages: int = 500,
        session_timeout_ms: int = 6000,
        commit_timeout: float = 10.0,
        partitions: int | None = None,
        stop_when_idle: float | None = None,
        config: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if group_mode not in ("subscribe", "assign"):
            raise ValueError(f"group_mode must be 'subscribe' or 'assign', got {group_mode!r}")
        ck = _ck()
        self.bootstrap = bootstrap
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.group = group
        self.group_mode = group_mode
        self.max_messages = int(max_messages)
        self.commit_timeout = float(commit_timeout)
        self.partitions = partitions
        self.stop_when_idle = stop_when_idle
        self.name = name or f"kafka:{','.join(self.topics)}"
        conf = _base_config(bootstrap, None)
        conf.update(
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(session_timeout_ms),
                "heartbeat.interval.ms": max(100, int(session_timeout_ms) // 3),
                "socket.timeout.ms": 10000,
                "error_cb": self._on_error,
                "on_commit": self._on_commit,
            }
        )
        conf.update(config or {})
        self._consumer = ck.Consumer(conf)
        self._started = False
        self._closed = False
        self._errors: list[Any] = []  # from error_cb, served inside consume()
        self._buffer: list[
            Any
        ] = []  # fetched while waiting for a commit answer, returned by the next poll
        self._inflight: dict[
            tuple[str, int], set[int]
        ] = {}  # delivered, not yet committed by the caller
        self._high: dict[tuple[str, int], int] = {}  # highest offset delivered per partition
        self._committed: dict[tuple[str, int], int] = {}  # last offset the broker confirmed
        self._to_commit: dict[tuple[str, int], int] = {}  # targets not yet confirmed (retried)
        self._commits_sent = 0
        self._commits_done = 0
        # commit sequence number -> its first error other than a rebalance
        self._commit_failures: dict[int, Any] = {}
        self._last_activity = time.monotonic()
        self._last_topic_warning = 0.0

    # -- Source protocol -----------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Message]:
        """Messages available now (waiting at most ``timeout`` seconds; joining the group may take longer)."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        self._start()
        if self._buffer:
            raw, self._buffer = self._buffer, []
        else:
            # consume(n, timeout) waits for n messages or the whole timeout: wait for the first one only,
            # then take what else is there already
            first = self._poll_one(timeout)
            raw = [first] if first is not None else []
            if first is not None and self.max_messages > 1:
                raw.extend(self._consume(self.max_messages - 1, 0.0))
        messages = self._accept(raw)
        self._raise_if_down(delivered=len(messages))
        if messages:
            self._last_activity = time.monotonic()
        return messages

    @property
    def finished(self) -> bool:
        if self.stop_when_idle is None:
            return False
        return (
            self._started
            and not self._buffer
            and not any(self._inflight.values())
            and not self._to_commit
            and time.monotonic() - self._last_activity >= self.stop_when_idle
        )

    def commit(self, positions: list[Any]) -> None:
        """Marks ``(topic, partition, offset)`` positions done and commits each partition's contiguous prefix.

        Waits for the broker's answer (``commit_timeout`` at most). Positions of partitions this consumer no
        longer owns are ignored (their new owner re-reads them: at-least-once).

        :raises Unavailable: when the broker does not answer; the offsets are committed with the next call.
        """
        touched: set[tuple[str, int]] = set()
        for topic, partition, offset in positions:
            tp = (topic, int(partition))
            pending = self._inflight.get(tp)
            if pending is None or offset not in pending:
                _log.debug(
                    "%s: commit of %s ignored (not outstanding here)",
                    self.name,
                    (topic, partition, offset),
                )
                continue
            pending.discard(offset)
            touched.add(tp)
        for tp in touched:
            pending = self._inflight[tp]
            target = min(pending) if pending else self._high[tp] + 1
            if target > max(self._committed.get(tp, -1), self._to_commit.get(tp, -1)):
                self._to_commit[tp] = target
        if touched:
            self._last_activity = time.monotonic()
        if self._to_commit:
            self._commit_and_wait(dict(self._to_commit))

    def close(self) -> None:
        """Leaves the group and closes the consumer; nothing is committed (uncommitted messages come again)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except Exception as e:  # noqa: BLE001 - closing while the broker is away
            _log.debug("%s: close: %s", self.name, e)

    # -- positions -----------------------------------------------------------------------------------------
    def outstanding(self) -> dict[tuple[str, int], list[int]]:
        """Offsets delivered but not yet committed, per ``(topic, partition)`` (for tests and diagnostics)."""
        return {tp: sorted(s) for tp, s in self._inflight.items() if s}

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """Offsets the broker confirmed for this consumer, per ``(topic, partition)``."""
        return dict(self._committed)

    # -- internals -----------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            return
        if self.partitions is not None:
            for t in self.topics:
                ensure_topic(self.bootstrap, t, self.partitions)
        if self.group_mode == "subscribe":
            self._consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            logger.info("%s: joining group %r (may take a few seconds)", self.name, self.group)
        else:
            self._assign_all()
        self._started = True

    def _assign_all(self) -> None:
        ck = _ck()
        try:
            md = self._consumer.list_topics(timeout=10.0)  # all topics: naming one may create it
        except ck.KafkaException as e:
            raise Unavailable(f"Kafka at {self.bootstrap} unavailable (metadata): {e}") from e
        tps = []
        for t in self.topics:
            tmd = md.topics.get(t)
            if tmd is None or tmd.error is not None:
                raise Unavailable(f"Kafka at {self.bootstrap}: topic {t!r} does not exist (yet)")
            tps.extend(ck.TopicPartition(t, p) for p in sorted(tmd.partitions))
        try:
            committed = self._consumer.committed(tps, timeout=10.0)
        except ck.KafkaException as e:
            raise Unavailable(
                f"Kafka at {self.bootstrap} unavailable (committed offsets): {e}"
            ) from e
        start = []
        for c in committed:
            tp = (c.topic, c.partition)
            self._reset(tp)
            if c.offset >= 0:
                self._committed[tp] = c.offset
            start.append(
                ck.TopicPartition(
                    c.topic, c.partition, c.offset if c.offset >= 0 else ck.OFFSET_STORED
                )
            )
        self._consumer.assign(start)
        logger.info(
            "%s: assigned %d partitions of %s from the committed offsets of group %r",
            self.name,
            len(start),
            self.topics,
            self.group,
        )

    def _reset(self, tp: tuple[str, int]) -> None:
        self._inflight[tp] = set()
        self._high.pop(tp, None)
        self._to_commit.pop(tp, None)
        self._committed.pop(tp, None)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for p in partitions:
            self._reset((p.topic, p.partition))
        logger.info(
            "%s: assigned %s",
            self.name,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing",
        )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Commit what is done for these partitions (without waiting: we are inside consume), then forget them.
        revoked = {(p.topic, p.partition) for p in partitions}
        offsets = {tp: off for tp, off in self._to_commit.items() if tp in revoked}
        if offsets:
            try:
                self._send_commit(offsets)
            except Exception as e:  # noqa: BLE001 - best effort; the new owner re-reads them
                _log.debug("%s: commit on revoke failed: %s", self.name, e)
        self._forget(revoked, "revoked")

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._forget({(p.topic, p.partition) for p in partitions}, "lost (session timed out)")

    def _forget(self, tps: set[tuple[str, int]], why: str) -> None:
        dropped = sum(len(self._inflight.get(tp, ())) for tp in tps)
        for tp in tps:
            self._inflight.pop(tp, None)
            self._high.pop(tp, None)
            self._to_commit.pop(tp, None)
            self._committed.pop(tp, None)
        self._buffer = [m for m in self._buffer if (m.topic(), m.partition()) not in tps]
        logger.info(
            "%s: partitions %s %s%s",
            self.name,
            ", ".join(f"{t}[{p}]" for t, p in sorted(tps)),
            why,
            f"; {dropped} uncommitted messages will be read again by their next owner"
            if dropped
            else "",
        )

    def _poll_one(self, timeout: float) -> Any:
        ck = _ck()
        try:
            return self._consumer.poll(max(0.0, timeout))
        except ck.KafkaException as e:
            err = _error_of(e)
            if err is not None and err.code() in _transient_codes():
                raise Unavailable(f"Kafka at {self.bootstrap} unavailable: {e}") from e
            raise

    def _consume(self, n: int, timeout: float) -> list[Any]:
        ck = _ck()
        try:
            return self._consumer.consume(max(1, n), max(0.0, timeout))
        except ck.KafkaException as e:
            err = _error_of(e)
            if err is not None and err.code() in _transient_codes():
                raise Unavailable(f"Kafka at {self.bootstrap} unavailable: {e}") from e
            raise

    def _accept(self, raw: list[Any]) -> list[Message]:
        ck = _ck()
        out: list[Message] = []
        received = time.time()
        for m in raw:
            err = m.error()
            if err is not None:
                self._message_error(err)
                continue
            tp = (m.topic(), m.partition())
            offset = m.offset()
            self._inflight.setdefault(tp, set()).add(offset)
            if offset > self._high.get(tp, -1):
                self._high[tp] = offset
            ts_type, ts = m.timestamp()
            published = ts / 1000.0 if ts_type != ck.TIMESTAMP_NOT_AVAILABLE and ts > 0 else None
            out.append(
                Message(
                    position=(tp[0], tp[1], offset),
                    payload=m.value(),
                    published=published,
                    received=received,
                )
            )
        return out

    def _message_error(self, err: Any) -> None:
        ck = _ck()
        code = err.code()
        if code == ck.KafkaError._PARTITION_EOF:
            return
        if code in _down_codes():
            self._errors.append(err)
        elif code in (ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ck.KafkaError._UNKNOWN_TOPIC):
            now = time.monotonic()
            if now - self._last_topic_warning > 60:
                self._last_topic_warning = now
                logger.warning("%s: %s (waiting for the topic to be created)", self.name, err.str())
        elif err.fatal():
            raise RuntimeError(f"{self.name}: fatal Kafka consumer error: {err.str()}")
        else:
            logger.warning("%s: consumer error: %s", self.name, err.str())

    def _on_error(self, err: Any) -> None:
        self._errors.append(err)

    def _raise_if_down(self, delivered: int) -> None:
        errors, self._errors = self._errors, []
        down = [e for e in errors if e.code() in _down_codes()]
        for e in errors:
            if e.code() not in _down_codes():
                if e.fatal():
                    raise RuntimeError(f"{self.name}: fatal Kafka consumer error: {e.str()}")
                _log.info("%s: %s", self.name, e.str())
        if not down:
            return
        text = f"Kafka at {self.bootstrap} unavailable: {down[-1].str()}"
        if delivered:
            logger.warning("%s: %s", self.name, text)
        else:
            raise Unavailable(text)

    def _send_commit(self, offsets: dict[tuple[str, int], int]) -> int:
        ck = _ck()
        tps = [ck.TopicPartition(t, p, off) for (t, p), off in sorted(offsets.items())]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except ck.KafkaException as e:
            err = _error_of(e)
            if err is not None and err.code() in _transient_codes():
                raise Unavailable(f"Kafka at {self.bootstrap} unavailable (commit): {e}") from e
            raise
        self._commits_sent += 1
        return self._commits_sent

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        self._commits_done += 1  # answers come in the order the commits were sent
        seq = self._commits_done
        ck = _ck()
        failed = []
        for p in partitions or []:
            tp = (p.topic, p.partition)
            perr = p.error or err
            if perr is None or (hasattr(perr, "code") and perr.code() == ck.KafkaError._NO_OFFSET):
                if p.offset > self._committed.get(tp, -1):
                    self._committed[tp] = p.offset
                if self._to_commit.get(tp, -1) <= p.offset:
                    self._to_commit.pop(tp, None)
            else:
                failed.append((tp, perr))
        if err is not None and err.code() != ck.KafkaError._NO_OFFSET and not partitions:
            failed.append((None, err))
        if not failed:
            return
        rebalance = [(tp, e) for tp, e in failed if e.code() in _rebalance_codes()]
        for tp, e in rebalance:
            if tp is not None:
                self._to_commit.pop(tp, None)
            logger.warning(
                "%s: commit of %s rejected (%s): the group is rebalancing, its next owner re-reads it",
                self.name,
                tp,
                e.str(),
            )
        others = [(tp, e) for tp, e in failed if e.code() not in _rebalance_codes()]
        if others:
            self._commit_failures[seq] = others[0][1]

    def _commit_and_wait(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commits asynchronously and serves the consumer until the answer comes (bounded, unlike a
        synchronous commit, which waits for as long as the group coordinator is away)."""
        seq = self._send_commit(offsets)
        deadline = time.monotonic() + self.commit_timeout
        while self._commits_done < seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"Kafka at {self.bootstrap}: no answer to an offset commit within {self.commit_timeout:g} s"
                )
            room = self.max_messages - len(self._buffer)
            got = self._consume(room if room > 0 else 1, min(0.01, remaining))
            self._buffer.extend(got)
        failure = self._commit_failures.pop(seq, None)
        self._commit_failures.clear()  # older ones belong to commits whose callers got Unavailable already
        if failure is not None:
            if failure.code() in _transient_codes():
                raise Unavailable(
                    f"Kafka at {self.bootstrap} unavailable (commit): {failure.str()}"
                )
            raise RuntimeError(f"{self.name}: offset commit failed: {failure.str()}")

    def __repr__(self) -> str:
        return f"KafkaSource({self.bootstrap!r}, {self.topics!r}, group={self.group!r}, group_mode={self.group_mode!r})"


# ---------------------------------------------------------------------------------------------------------
# Sink
# ---------------------------------------------------------------------------------------------------------
class _Producer:
    """A producer whose batches are flushed with a deadline (shared by the sink and :func:`publish_packets`)."""

    def __init__(
        self, bootstrap: str, idempotence: bool = True, config: dict[str, Any] | None = None
    ) -> None:
        conf = _base_config(bootstrap, None)
        conf.update(
            {
                "acks": "all",
                "enable.idempotence": bool(idempotence),
                "linger.ms": 5,
                "error_cb": self._on_error,
            }
        )
        conf.update(config or {})
        self.bootstrap = bootstrap
        self._conf = conf
        self.producer = _ck().Producer(conf)
        self.last_error: Any = None
        self.fatal = False

    def _on_error(self, err: Any) -> None:
        self.last_error = err
        if err.fatal():
            # e.g. the idempotent producer's sequence state lost by a broker that lost its data: this
            # producer instance is unusable; the next send starts a new one
            self.fatal = True
            logger.error("Kafka producer fatal error at %s: %s", self.bootstrap, err.str())
        else:
            _log.debug("Kafka producer error at %s: %s", self.bootstrap, err.str())

    def send(
        self,
        items: Iterable[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]],
        timeout: float,
        what: str,
    ) -> int:
        """Produces ``(topic, key, value, headers)`` items and waits until all are acknowledged.

        :raises Unavailable: messages still queued after ``timeout`` seconds (they are purged from the local
                             queue; those already sent may still arrive: a retry re-publishes them) or a
                             transient delivery error.
        """
        ck = _ck()
        if self.fatal:
            logger.warning("Kafka producer for %s restarted after a fatal error", self.bootstrap)
            self.producer = ck.Producer(self._conf)
            self.fatal = False
        errors: list[Any] = []
        self.last_error = None  # only errors of this batch go into the messages

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)

        deadline = time.monotonic() + timeout
        n = 0
        try:
            for topic, key, value, headers in items:
                while True:
                    try:
                        self.producer.produce(
                            topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                        )
                        break
                    except BufferError:  # local queue full: let it drain
                        if time.monotonic() > deadline:
                            self._give_up()
                            raise Unavailable(
                                self._text(f"local queue full while sending {what}")
                            ) from None
                        self.producer.poll(0.05)
                n += 1
                self.producer.poll(0)
            remaining = self.producer.flush(max(0.0, deadline - time.monotonic()))
        except (ck.KafkaException, SystemError) as e:
            # A fatal error may be raised by produce/poll/flush rather than reported to error_cb, and
            # confluent-kafka then calls our delivery callback with that exception still set, which
            # surfaces as a SystemError chained to the KafkaException.
            cause = e
            while isinstance(cause, SystemError) and cause.__context__ is not None:
                cause = cause.__context__
            err = _error_of(cause)
            if isinstance(e, SystemError) or (
                err is not None and (err.fatal() or err.code() == ck.KafkaError._FATAL)
            ):
                self.fatal = True
                why = err.str() if err is not None else repr(cause)
                raise Unavailable(
                    self._text(f"{what}: producer failed ({why}); a new one starts next time")
                ) from e
            if err is not None and err.code() in _transient_codes():
                raise Unavailable(self._text(f"{what}: {e}")) from e
            raise
        if remaining:
            self._give_up()
            raise Unavailable(
                self._text(
                    f"{remaining} of {n} messages ({what}) not acknowledged within {timeout:g} s"
                )
            )
        if errors:
            err = errors[0]
            if err.code() in _transient_codes() or err.retriable() or self.fatal:
                raise Unavailable(
                    self._text(f"{len(errors)} of {n} messages ({what}) failed: {err.str()}")
                )
            raise RuntimeError(
                f"Kafka at {self.bootstrap}: {len(errors)} of {n} messages ({what}) failed: {err.str()}"
            )
        return n

    def _give_up(self) -> None:
        # Drop what is still in the local queue (not sent yet) so the caller's retry does not double it.
        try:
            self.producer.purge(in_queue=True, in_flight=False, blocking=False)
            self.producer.poll(0)
        except Exception as e:  # noqa: BLE001 - best effort
            _log.debug("purge failed: %s", e)

    def _text(self, what: str) -> str:
        last = f" (last error: {self.last_error.str()})" if self.last_error is not None else ""
        return f"Kafka at {self.bootstrap} unavailable: {what}{last}"

    def close(self, timeout: float = 5.0) -> None:
        try:
            self.producer.flush(timeout)
        except Exception as e:  # noqa: BLE001 - closing while the broker is away
            _log.debug("flush on close: %s", e)


class KafkaSink:
    """Picks and events to a Kafka topic, keyed by message id.

    :param bootstrap: ``host:port[,host:port...]``.
    :param topic: Output topic.
    :param dead_letter_topic: Topic of undecodable packets; default ``<topic>.dead``.
    :param flush_timeout: Seconds :meth:`publish` waits for the broker's acknowledgements.
    :param partitions: Partitions of the output topic when it has to be created.
    :param create_topics: Create missing topics (output, dead letters) with the admin client.
    :param idempotence: Idempotent producer (no duplicates from internal retries; tansu supports it).
    :param config: Further librdkafka producer settings.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dead_letter_topic: str | None = None,
        *,
        flush_timeout: float = 10.0,
        partitions: int = 1,
        create_topics: bool = True,
        idempotence: bool = True,
        config: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic or f"{topic}.dead"
        self.flush_timeout = float(flush_timeout)
        self.partitions = int(partitions)
        self.create_topics = create_topics
        self.name = name or f"kafka:{topic}"
        self._producer = _Producer(bootstrap, idempotence=idempotence, config=config)
        self._ready: set[str] = set()

    def _ensure(self, topic: str, partitions: int) -> None:
        if self.create_topics and topic not in self._ready:
            ensure_topic(self.bootstrap, topic, partitions, timeout=self.flush_timeout)
            self._ready.add(topic)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """Produces the messages (key: their ``id``) and returns once the broker acknowledged all of them."""
        if not messages:
            return
        self._ensure(self.topic, self.partitions)
        items = []
        for m in messages:
            key = m.get("id")
            items.append(
                (self.topic, None if key is None else str(key).encode(), encode_message(m), None)
            )
        self._producer.send(items, self.flush_timeout, f"to {self.topic!r}")

    def dead_letter(self, payload: Any, reason: str, position: Any) -> None:
        """Produces the raw payload to the dead-letter topic with headers ``reason`` and ``position``."""
        self._ensure(self.dead_letter_topic, 1)
        pos = position_text(position)
        headers = [("reason", reason.encode("utf-8")), ("position", pos.encode("utf-8"))]
        item = (self.dead_letter_topic, pos.encode("utf-8"), payload_bytes(payload), headers)
        self._producer.send(
            [item], self.flush_timeout, f"dead letter to {self.dead_letter_topic!r}"
        )

    def close(self) -> None:
        self._producer.close()

    def __repr__(self) -> str:
        return f"KafkaSink({self.bootstrap!r}, {self.topic!r})"


# ---------------------------------------------------------------------------------------------------------
# Feeding packets
# ---------------------------------------------------------------------------------------------------------
def packet_station(packet: bytes) -> str | None:
    """``NET.STA`` of a JSON or miniSEED (2 or 3) packet without decoding its samples; ``None`` if unknown."""
    try:
        head = packet.lstrip()[:1]
        if head == b"{":
            sid = json.loads(packet).get("id", "")
            parts = sid.split(".")
            return f"{parts[0]}.{parts[1]}" if len(parts) == 4 else None
        if (
            packet[:3] == b"MS\x03" and len(packet) >= 40
        ):  # miniSEED 3: FDSN source id after 40 bytes
            sid = packet[40 : 40 + packet[33]].decode("ascii")
            parts = sid.removeprefix("FDSN:").split("_")
            return f"{parts[0]}.{parts[1]}" if len(parts) >= 2 else None
        if len(packet) >= 48:  # miniSEED 2 fixed header
            station = packet[8:13].decode("ascii").strip()
            network = packet[18:20].decode("ascii").strip()
            return f"{network}.{station}" if station else None
    except (ValueError, UnicodeDecodeError, AttributeError, IndexError):
        return None
    return None


def publish_packets(
    bootstrap: str,
    topic: str,
    packets: list[bytes],
    key: str | bytes | Callable[[bytes], str | bytes | None] | None = None,
    partitions: int | None = None,
    timeout: float = 30.0,
    config: dict[str, Any] | None = None,
) -> int:
    """Produces waveform packets to ``topic`` in order and waits for the acknowledgements; returns the count.

    :param key: Message key: a fixed key, a function of the packet, or ``None``: the packet's station
                (``NET.STA``), so that the packets of one station land in one partition, in order.
    :param partitions: Create the topic with this many partitions when missing.
    :raises Unavailable: when the broker does not acknowledge everything within ``timeout`` seconds.
    """
    if partitions is not None:
        ensure_topic(bootstrap, topic, partitions, timeout=timeout, config=None)
    # One producer per bootstrap (and settings), kept between calls: starting an idempotent producer costs a
    # few round trips, and a paced replay calls this once per batch. Every call returns flushed.
    cache_key = (bootstrap, json.dumps(config, sort_keys=True, default=str))
    producer = _PRODUCERS.get(cache_key)
    if producer is None:
        producer = _PRODUCERS[cache_key] = _Producer(bootstrap, config=config)

    def key_of(packet: bytes) -> bytes | None:
        k = key(packet) if callable(key) else key if key is not None else packet_station(packet)
        return k.encode() if isinstance(k, str) else k

    items = ((topic, key_of(p), bytes(p), None) for p in packets)
    return producer.send(items, timeout, f"{len(packets)} packets to {topic!r}")


_PRODUCERS: dict[tuple[str, str], _Producer] = {}
