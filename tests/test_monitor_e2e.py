"""End to end through real brokers: packets published to Redis Streams / Kafka (tansu), the monitor consuming
them, results published back; parity with classify, consumer crashes, brokers paused and restarted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from services import kafka_broker, redis_srv  # noqa: F401 - fixtures
from test_monitor import assert_events_match, final_events, pick_keys

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.example import network_stream
from sine_seisbench.monitor.base import Message
from sine_seisbench.monitor.engine import StreamingClassifier
from sine_seisbench.monitor.schema import encode_packet, split_packets
from sine_seisbench.monitor.service import FileStateStore, Monitor

WINDOW_S = 30.0


@pytest.fixture(scope="module")
def model() -> SINE:
    return SINE.from_pretrained(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def record():
    return network_stream(8, repeat=6)


@pytest.fixture(scope="module")
def offline(model, record):
    stream, inv = record
    return model.classify(stream.copy(), inventory=inv)


@pytest.fixture(scope="module")
def packets(record):
    stream, _ = record
    return [encode_packet(p, "mseed") for p in split_packets(stream, 2.0)]


class Broker:
    """Redis or Kafka through one interface for the tests."""

    def __init__(self, kind: str, server: Any) -> None:
        self.kind, self.server = kind, server
        self.published: list[Any] = []  # source positions of the published packets, in order

    def publish(self, packets: list[bytes]) -> None:
        if self.kind == "redis":
            from sine_seisbench.monitor.redis_io import publish_packets

            self.published += publish_packets(self.server.url, "waveforms", packets)
        else:
            from sine_seisbench.monitor.kafka_io import ensure_topic, publish_packets

            # one partition: a replay as fast as possible through several partitions interleaves stations by
            # minutes of data time, more than max_latency_s (a live stream does not)
            ensure_topic(self.server.bootstrap, "waveforms", partitions=1)
            assert publish_packets(self.server.bootstrap, "waveforms", packets) == len(packets)
            # the topic (of a broker of this test's own) is fed only here: the offsets follow on. (tansu's high
            # watermark, the last record batch's base offset + 1, does not tell them.)
            first = len(self.published)
            self.published += [("waveforms", 0, o) for o in range(first, first + len(packets))]

    def source(self) -> DrainedSource:
        """The monitor's source, finished once it delivered every published packet not committed before."""
        if self.kind == "redis":
            from sine_seisbench.monitor.redis_io import RedisSource

            source = RedisSource(self.server.url, "waveforms", block_ms=200)
        else:
            from sine_seisbench.monitor.kafka_io import KafkaSource

            # "assign": all partitions from the group's committed offsets, no group join (one monitor per
            # group); tansu holds a group join 10+ s after a member crashed (see kafka_io)
            source = KafkaSource(
                self.server.bootstrap, "waveforms", group="sine", group_mode="assign"
            )
        committed = self.committed()
        return DrainedSource(source, [p for p in self.published if p not in committed])

    def committed(self) -> set[Any]:
        """The published positions the group ``sine`` has committed (acknowledged) so far."""
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.server.url)
            try:
                groups = client.xinfo_groups("waveforms")
                group = next((g for g in groups if g["name"] == b"sine"), None)
                if group is None:
                    return set()
                last = _entry_id(group["last-delivered-id"])
                pending = client.xpending_range("waveforms", "sine", "-", "+", 10**6)
            except redis.ResponseError:  # no stream yet
                return set()
            finally:
                client.close()
            held = {p["message_id"].decode() for p in pending}
            return {i for i in self.published if _entry_id(i) <= last and i not in held}
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.server.bootstrap, "group.id": "sine"})
        try:
            (tp,) = c.committed([TopicPartition("waveforms", 0)], timeout=10)
        finally:
            c.close()
        return {p for p in self.published if p[2] < tp.offset}  # no commit yet: offset < 0

    def sink(self):
        if self.kind == "redis":
            from sine_seisbench.monitor.redis_io import RedisSink

            return RedisSink(self.server.url, "sine.out")
        from sine_seisbench.monitor.kafka_io import KafkaSink

        return KafkaSink(self.server.bootstrap, "sine.out")

    def outputs(self):
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.server.url)
            return [json.loads(f[b"message"]) for _, f in client.xrange("sine.out")]
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": self.server.bootstrap,
                "group.id": f"reader-{time.time()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            # Read up to the end the broker reports, not until an idle time passed. tansu's high watermark is
            # the last record batch's base offset + 1 (Kafka's: the last record's offset + 1): once the record
            # at high - 1 came, the rest of its batch is in the same fetch, so a short idle ends the read.
            _, high = c.get_watermark_offsets(TopicPartition("sine.out", 0), timeout=10)
            c.assign([TopicPartition("sine.out", 0, 0)])
            out, last, idle = [], -1, time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                reached = last >= high - 1
                if reached and time.monotonic() - idle >= 0.5:
                    break
                m = c.poll(0.1 if reached else 0.5)
                if m is None or m.error():
                    continue
                out.append(json.loads(m.value()))
                last, idle = m.offset(), time.monotonic()
            assert last >= high - 1, f"sine.out read up to offset {last} of {high}"
            return out
        finally:
            c.close()


def _entry_id(value: bytes | str) -> tuple[int, int]:
    """A Redis stream entry id as a comparable pair."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, seq = text.split("-")
    return int(ms), int(seq)


class DrainedSource:
    """A broker source whose :attr:`finished` is true once it has delivered every position of ``expected``
    (the packets published and not committed before this run): the replay is drained, whatever the time it
    took (instead of ``stop_when_idle_s``, a guess that a broker or a loaded machine can exceed).

    :param source: The Redis or Kafka source.
    :param expected: Positions this run has to deliver; ``None``: never finished (only an idle time ends it).
    """

    def __init__(self, source: Any, expected: list[Any] | None) -> None:
        self.source = source
        self.name, self.live = source.name, source.live
        self.expected = None if expected is None else set(expected)
        self.delivered: set[Any] = set()
        # called before every poll (the tests' timing: see mid_stream)
        self.hold: Callable[[DrainedSource], None] | None = None

    @property
    def finished(self) -> bool:
        return self.expected is not None and self.expected <= self.delivered

    def poll(self, timeout: float) -> list[Message]:
        if self.hold is not None:
            self.hold(self)
        messages = self.source.poll(timeout)
        self.delivered.update(m.position for m in messages)
        return messages

    def commit(self, positions: list[Any]) -> None:
        self.source.commit(positions)

    def close(self) -> None:
        self.source.close()


@pytest.fixture(params=["redis", "kafka"])
def broker(request):
    if request.param == "redis":
        return Broker("redis", request.getfixturevalue("redis_srv"))
    return Broker("kafka", request.getfixturevalue("kafka_broker"))


def run_monitor(
    model: SINE,
    inv: Any,
    anchor: Any,
    broker: Broker,
    state_path: Path,
    crash_after_messages: int | None = None,
    during: Callable[[Monitor, DrainedSource], None] | None = None,
    stop_when_idle_s: float | None = None,
) -> dict[str, Any] | None:
    """One monitor's life on ``broker``: it stops once its source is drained (or after ``stop_when_idle_s`` of
    nothing delivered, when given), or crashes after ``crash_after_messages`` (returns None). ``during`` runs
    in this thread while the monitor runs in another."""
    source = broker.source()
    if crash_after_messages is not None:
        poll, calls = source.poll, [0]

        def crashing_poll(timeout):
            if calls[0] >= crash_after_messages:
                raise KeyboardInterrupt("simulated crash")
            got = poll(timeout)
            calls[0] += len(got)  # messages delivered so far
            return got

        source.poll = crashing_poll
    if stop_when_idle_s is not None:
        source.expected = None  # only the idle time ends the run
    monitor = Monitor(
        StreamingClassifier(model, inv, anchor=anchor),
        source,
        [broker.sink()],
        state=FileStateStore(state_path),
        backoff=(0.2, 1.0),
    )
    result: list = []
    if during is not None:
        # the monitor runs in a thread; the outage is driven from this (the servers' parent) thread, since
        # the test servers die with the thread that started them
        worker = threading.Thread(
            target=lambda: result.append(
                monitor.run(stop_when_idle_s=stop_when_idle_s, max_seconds=200)
            )
        )
        worker.start()
        try:
            during(monitor, source)
        finally:
            source.hold = None
            worker.join(timeout=240)
        assert not worker.is_alive(), "the monitor did not stop"
        monitor.close()
        assert not result or source.expected is None or source.finished, "not drained in time"
        return result[0] if result else None
    try:
        summary = monitor.run(stop_when_idle_s=stop_when_idle_s, max_seconds=200)
    except KeyboardInterrupt:
        return None
    finally:
        try:
            monitor.close()
        except Exception:  # noqa: BLE001 - closing after a simulated crash
            pass
    # stopped by max_seconds, the monitor would not have flushed its last windows
    assert source.expected is None or source.finished, "the source was not drained in time"
    return summary


def mid_stream(source: DrainedSource, within: float = 120.0) -> threading.Event:
    """Holds the monitor before its first poll after one that delivered messages (mid-stream: packets are left)
    until the returned event is set; returns once the monitor is held there."""
    held, release = threading.Event(), threading.Event()

    def hold(src: DrainedSource) -> None:
        if src.delivered and not src.finished and not release.is_set():
            held.set()
            release.wait(within)

    source.hold = hold
    assert held.wait(within), "the monitor delivered no message"
    return release


def wait_for(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Polls ``condition`` until it holds; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within:g} s"
        time.sleep(0.02)


def check_parity(out, offline, record):
    stream, _ = record
    end = stream[0].stats.endtime.timestamp - WINDOW_S
    assert pick_keys([m for m in out if m["type"] == "pick"], end) == pick_keys(offline.picks, end)
    assert_events_match(
        offline.events, final_events(out), time_tol=0.011, km_tol=0.01, mag_tol=0.001, before=end
    )


def test_broker_replay_equals_classify(model, record, offline, packets, broker, tmp_path):
    stream, inv = record
    broker.publish(packets)
    summary = run_monitor(model, inv, stream[0].stats.starttime, broker, tmp_path / "state")
    assert summary["messages"] == len(packets) and summary["malformed"] == 0
    check_parity(broker.outputs(), offline, record)


def test_consumer_killed_mid_stream_loses_and_duplicates_nothing(
    model, record, offline, packets, broker, tmp_path
):
    stream, inv = record
    broker.publish(packets)
    anchor = stream[0].stats.starttime
    assert run_monitor(model, inv, anchor, broker, tmp_path / "s", crash_after_messages=600) is None
    assert run_monitor(model, inv, anchor, broker, tmp_path / "s", crash_after_messages=700) is None
    run_monitor(model, inv, anchor, broker, tmp_path / "s")
    out = broker.outputs()
    check_parity(out, offline, record)
    events = final_events(out)
    assert len({e["id"] for e in events}) == len(events)
    seen = {}
    for m in out:  # a repeat after a restart is the same message
        first = seen.setdefault((m["id"], m.get("version")), m)
        if first != m:
            import difflib

            diff = difflib.unified_diff(first["quakeml"].splitlines(), m["quakeml"].splitlines())
            raise AssertionError("\n".join(list(diff)[:30]))


def test_broker_unreachable_for_a_while(model, record, offline, packets, broker, tmp_path):
    """The broker is frozen (SIGSTOP) for 6 s mid-run: the monitor logs, retries with backoff, recovers and
    loses nothing it had acknowledged."""
    stream, inv = record
    broker.publish(packets)

    def outage(monitor: Monitor, source: DrainedSource) -> None:
        # the monitor has read part of the stream and waits before its next poll
        release = mid_stream(source)
        broker.server.pause()
        release.set()
        time.sleep(6.0)  # the outage's length (the scenario), not a wait for something
        broker.server.resume()

    summary = run_monitor(
        model, inv, stream[0].stats.starttime, broker, tmp_path / "s", during=outage
    )
    assert summary is not None
    check_parity(broker.outputs(), offline, record)


def test_redis_restarted_with_persistence(
    model,
    record,
    offline,
    packets,
    redis_srv,  # noqa: F811 - the fixture imported from services
    tmp_path,
):
    stream, inv = record
    broker = Broker("redis", redis_srv)
    broker.publish(packets)

    def restart(monitor: Monitor, source: DrainedSource) -> None:
        # mid-stream: the monitor has read part of the stream and waits before its next poll
        release = mid_stream(source)
        redis_srv.stop(kill=True)
        release.set()
        # down until the monitor has met the outage (its next poll fails), not for a guessed time
        wait_for(lambda: monitor.stats.retries >= 1, "the monitor met no outage")
        redis_srv.start()

    summary = run_monitor(
        model, inv, stream[0].stats.starttime, broker, tmp_path / "s", during=restart
    )
    assert summary is not None and summary["retries"] >= 1
    check_parity(broker.outputs(), offline, record)


def test_redis_outage_is_not_idle_time(model, record, offline, packets, redis_srv, tmp_path):  # noqa: F811
    """``stop_when_idle_s`` ends a replay once the source delivered nothing for that long; waiting for an
    unreachable broker is not such a time. Redis goes down mid-stream for several times the idle time: the
    monitor still reads the whole stream (it used to stop at its first answered poll after the outage, which
    re-reads its pending entries and delivers nothing, with the rest of the stream unread)."""
    stream, inv = record
    broker = Broker("redis", redis_srv)
    broker.publish(packets)
    idle_s = 1.0

    def restart(monitor: Monitor, source: DrainedSource) -> None:
        release = mid_stream(source)
        redis_srv.stop(kill=True)
        t0 = time.monotonic()
        release.set()
        # retries wait 0.2, 0.4, 0.8, 1.0 s: five of them keep Redis away for more than 2 idle times
        wait_for(lambda: monitor.stats.retries >= 5, "the monitor met no outage")
        assert time.monotonic() - t0 > 2 * idle_s
        redis_srv.start()

    summary = run_monitor(
        model,
        inv,
        stream[0].stats.starttime,
        broker,
        tmp_path / "s",
        during=restart,
        stop_when_idle_s=idle_s,
    )
    assert summary is not None and summary["retries"] >= 5
    assert summary["messages"] == len(packets)
    check_parity(broker.outputs(), offline, record)
