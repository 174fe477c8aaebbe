"""Redis Streams and Kafka sources and sinks of the monitor against real servers on 127.0.0.1 (no mocks).

redis-server and the tansu Kafka-protocol broker are started per test by :mod:`services`; tests skip with a
reason when either is not installed.
"""

from __future__ import annotations

import json
import time

import numpy as np
import obspy
import pytest
import services

from sine_seisbench.monitor.base import Message, Sink, Source, Unavailable
from sine_seisbench.monitor.schema import decode_packet, encode_packet

# fixtures: a fresh redis-server / tansu broker per test, skipped with a reason when not installed
redis_srv = services.redis_srv
kafka_broker = services.kafka_broker


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _traces(n: int, stations: tuple[str, ...] = ("B204", "B206", "B207")) -> list[obspy.Trace]:
    rng = np.random.default_rng(1)
    t0 = obspy.UTCDateTime(2022, 2, 6)
    out = []
    for i in range(n):
        sta = stations[i % len(stations)]
        tr = obspy.Trace(
            data=rng.integers(-1000, 1000, 200).astype(np.int32),
            header={"network": "PB", "station": sta, "channel": "EHZ", "sampling_rate": 100.0},
        )
        tr.stats.starttime = t0 + 2.0 * (i // len(stations))
        out.append(tr)
    return out


def _packets(traces: list[obspy.Trace]) -> list[bytes]:
    """Alternately JSON and miniSEED packets."""
    return [encode_packet(tr, "json" if i % 2 == 0 else "mseed") for i, tr in enumerate(traces)]


def _same(payload: object, trace: obspy.Trace) -> bool:
    (got,) = decode_packet(payload)
    return (
        got.id == trace.id
        and got.stats.starttime == trace.stats.starttime
        and np.array_equal(got.data, trace.data)
    )


def _poll_until(source, n: int, within: float = 15.0, timeout: float = 0.5) -> list[Message]:
    """Polls until ``n`` messages arrived (or ``within`` seconds passed)."""
    got: list[Message] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got.extend(source.poll(timeout))
    return got


def _pick(i: int) -> dict:
    return {
        "schema": "sine.pick/1",
        "type": "pick",
        "id": f"smi:sine-seisbench/pick/{i:016x}",
        "trace_id": "PB.B204.",
        "phase": "P",
        "time": "2022-02-06T00:00:01.000000Z",
        "peak_value": 0.9,
        "start_time": None,
        "end_time": None,
        "model": "SINE",
    }


def _event(version: int) -> dict:
    return {
        "schema": "sine.event/1",
        "type": "event",
        "id": "smi:sine-seisbench/event/00000000000000aa",
        "version": version,
        "origin_time": "2022-02-06T00:00:00.000000Z",
        "latitude": 33.5,
        "longitude": -116.5,
        "depth_km": 10.0,
        "magnitude": 2.1,
        "stations": 4 + version,
        "picks": [],
    }


def _timed(fn, *args, **kwargs) -> tuple[object, float]:
    t0 = time.monotonic()
    try:
        result = fn(*args, **kwargs)
    except Unavailable as e:
        result = e
    return result, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------------------
# Redis Streams
# ---------------------------------------------------------------------------------------------------------
def test_redis_round_trip_json_and_mseed(redis_srv):
    from sine_seisbench.monitor.redis_io import RedisSource, publish_packets

    traces = _traces(9)
    before = time.time()
    ids = publish_packets(redis_srv.url, "wave", _packets(traces))
    assert len(ids) == 9
    src = RedisSource(redis_srv.url, "wave", stop_when_idle=0.2, block_ms=100)
    assert isinstance(src, Source) and src.live
    got = _poll_until(src, 9)
    assert [m.position for m in got] == ids
    assert all(_same(m.payload, tr) for m, tr in zip(got, traces, strict=True))
    assert all(before - 1 <= m.published <= m.received + 1 for m in got)
    assert not src.finished  # delivered, not committed
    src.commit([m.position for m in got])
    assert src.poll(0.1) == []
    time.sleep(0.25)
    assert src.finished
    client = src._client
    assert client.xpending("wave", "sine")["pending"] == 0
    assert client.xlen("wave") == 9  # acknowledged, not deleted
    src.close()


def test_redis_commit_first_k_then_crash_redelivers_the_rest(redis_srv):
    from sine_seisbench.monitor.redis_io import RedisSource, publish_packets

    traces = _traces(10)
    ids = publish_packets(redis_srv.url, "wave", _packets(traces))
    first = RedisSource(redis_srv.url, "wave", block_ms=100)
    got = _poll_until(first, 10)
    assert [m.position for m in got] == ids
    first.commit([m.position for m in got[:4]])
    first.close()  # "crash": 6 entries delivered, never acknowledged

    more = publish_packets(redis_srv.url, "wave", _packets(_traces(2)))
    again = RedisSource(redis_srv.url, "wave", block_ms=100)  # same group and consumer name
    redelivered = again.poll(0.5)
    assert [m.position for m in redelivered] == ids[4:]  # pending first, nothing before k
    assert all(_same(m.payload, tr) for m, tr in zip(redelivered, traces[4:], strict=True))
    assert [m.position for m in _poll_until(again, 2)] == more  # then new entries
    assert again.poll(0.1) == []

    # A replacement with another consumer name takes the abandoned entries over only with claim_idle_ms
    again.close()
    other = RedisSource(redis_srv.url, "wave", consumer="sine-2", block_ms=50)
    assert other.poll(0.1) == []
    other.close()
    taker = RedisSource(redis_srv.url, "wave", consumer="sine-2", block_ms=50, claim_idle_ms=0)
    claimed = taker.poll(0.1)
    assert sorted(m.position for m in claimed) == sorted(ids[4:] + more)
    taker.commit([m.position for m in claimed])
    assert taker._client.xpending("wave", "sine")["pending"] == 0
    taker.close()


def test_redis_sink_publish_and_dead_letters(redis_srv):
    from sine_seisbench.monitor.redis_io import RedisSink, RedisSource, connect

    sink = RedisSink(redis_srv.url, "out")
    assert isinstance(sink, Sink)
    messages = [_pick(1), _event(1), _event(2)]
    ids = sink.publish(messages)
    assert len(ids) == 3
    client = connect(redis_srv.url)
    entries = client.xrange("out")
    assert [e[0].decode() for e in entries] == ids
    assert [json.loads(e[1][b"message"]) for e in entries] == messages
    assert [e[1][b"type"] for e in entries] == [b"pick", b"event", b"event"]

    sink.dead_letter(b"\x00garbage", "packet is neither JSON nor miniSEED", "1700000000000-0")
    sink.dead_letter({"id": "bad"}, "no samples", ("wave", 0, 5))
    dead = client.xrange("out.dead")
    assert dead[0][1] == {
        b"reason": b"packet is neither JSON nor miniSEED",
        b"position": b"1700000000000-0",
        b"payload": b"\x00garbage",
    }
    assert dead[1][1][b"position"] == b"wave:0:5" and json.loads(dead[1][1][b"payload"]) == {
        "id": "bad"
    }

    # Source side: an entry without the packet field is dead-lettered by the source when asked to...
    client.xadd("wave", {"something": "else"})
    good = client.xadd("wave", {"packet": encode_packet(_traces(1)[0])}).decode()
    src = RedisSource(redis_srv.url, "wave", dead_letter_stream="wave.dead", block_ms=50)
    assert [m.position for m in src.poll(0.2)] == [good]
    assert client.xrange("wave.dead")[0][1][b"reason"] == b"entry has no field 'packet'"
    assert client.xpending("wave", "sine")["pending"] == 1  # the dead one is acknowledged
    src.close()
    # ... and otherwise passed on as the dict of its fields (a JSON packet spread over fields decodes)
    fields = json.loads(encode_packet(_traces(1)[0]))
    client.xadd("w2", fields)
    src = RedisSource(redis_srv.url, "w2", block_ms=50)
    (m,) = src.poll(0.2)
    assert isinstance(m.payload, dict) and _same(m.payload, _traces(1)[0])
    src.close()
    sink.close()


def test_redis_paused_raises_unavailable_and_recovers(redis_srv):
    from sine_seisbench.monitor.redis_io import RedisSink, RedisSource, connect, publish_packets

    ids = publish_packets(redis_srv.url, "wave", _packets(_traces(6)))
    src = RedisSource(redis_srv.url, "wave", block_ms=100, timeout=0.5)
    sink = RedisSink(redis_srv.url, "out", timeout=0.5)
    got = _poll_until(src, 6)
    assert len(got) == 6

    redis_srv.pause()
    try:
        err, took = _timed(src.poll, 0.2)
        assert isinstance(err, Unavailable) and redis_srv.url in str(err) and took < 3
        err, took = _timed(sink.publish, [_pick(1)])
        assert isinstance(err, Unavailable) and took < 3
        err, took = _timed(src.commit, [m.position for m in got[:3]])
        assert isinstance(err, Unavailable) and took < 3
    finally:
        redis_srv.resume()

    src.commit([])  # the failed acknowledgements are retried
    client = connect(redis_srv.url)
    pending = client.xpending_range("wave", "sine", "-", "+", 10)
    assert [p["message_id"].decode() for p in pending] == ids[3:]
    sink.publish([_pick(2)])
    assert json.loads(client.xrange("out")[-1][1][b"message"])["id"] == _pick(2)["id"]
    # After the error the source re-reads its pending entries but skips those the caller still holds
    more = publish_packets(redis_srv.url, "wave", _packets(_traces(1)))
    assert [m.position for m in _poll_until(src, 1)] == more
    src.commit([m.position for m in got[3:]] + more)
    assert client.xpending("wave", "sine")["pending"] == 0
    src.close()
    sink.close()


def test_redis_restart_keeps_unacknowledged_entries(redis_srv):
    from sine_seisbench.monitor.redis_io import RedisSink, RedisSource, publish_packets

    ids = publish_packets(redis_srv.url, "wave", _packets(_traces(6)))
    src = RedisSource(redis_srv.url, "wave", block_ms=100, timeout=1.0)
    sink = RedisSink(redis_srv.url, "out", timeout=1.0)
    got = _poll_until(src, 6)
    src.commit([m.position for m in got[:2]])
    sink.publish([_pick(1)])

    redis_srv.restart(kill=True)  # a crash: only the append-only file survives

    sink.publish([_pick(2)])  # one reconnect attempt is built in
    try:  # redis-py notices the closed connection and reconnects; a broken read would be reported
        src.poll(0.1)
    except Unavailable:
        pass
    assert src.poll(0.2) == []  # its own pending entries are still held by the caller
    src.close()
    fresh = RedisSource(redis_srv.url, "wave", block_ms=100)  # a restarted monitor
    assert [m.position for m in fresh.poll(0.5)] == ids[2:]
    assert [json.loads(e[1][b"message"])["id"] for e in fresh._client.xrange("out")] == [
        _pick(1)["id"],
        _pick(2)["id"],
    ]
    fresh.close()
    sink.close()


# ---------------------------------------------------------------------------------------------------------
# Kafka (tansu)
# ---------------------------------------------------------------------------------------------------------
def _raw_consumer(bootstrap: str, topic: str, partitions: int):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, -2) for p in range(partitions)])  # from the beginning
    return c


def _read_all(consumer, n: int, within: float = 10.0) -> list:
    out: list = []
    deadline = time.monotonic() + within
    while len(out) < n and time.monotonic() < deadline:
        out.extend(m for m in consumer.consume(100, 0.2) if m.error() is None)
    return out


def test_kafka_round_trip_keeps_station_order(kafka_broker):
    from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic, publish_packets

    bs = kafka_broker.bootstrap
    assert ensure_topic(bs, "wave", partitions=3) == 3
    assert ensure_topic(bs, "wave", partitions=3) == 3  # idempotent
    traces = _traces(12)
    before = time.time()
    assert publish_packets(bs, "wave", _packets(traces)) == 12
    src = KafkaSource(bs, "wave", group="g-round")  # subscribe mode: joins the group
    assert isinstance(src, Source)
    t0 = time.monotonic()
    got = _poll_until(src, 12, within=20)
    assert len(got) == 12, "group join or fetch too slow"
    assert time.monotonic() - t0 < 10  # the tuned session timeout keeps tansu's join short
    by_trace = {(tr.id, tr.stats.starttime.timestamp): tr for tr in traces}
    for m in got:
        (tr,) = decode_packet(m.payload)
        assert _same(m.payload, by_trace[(tr.id, tr.stats.starttime.timestamp)])
        assert isinstance(m.position, tuple) and m.position[0] == "wave"
        assert before - 1 <= m.published <= m.received + 1
    # keyed by station: one station's packets all in one partition, in time order
    for sta in ("B204", "B206", "B207"):
        mine = [m for m in got if decode_packet(m.payload)[0].stats.station == sta]
        assert len({m.position[1] for m in mine}) == 1
        starts = [decode_packet(m.payload)[0].stats.starttime for m in mine]
        assert starts == sorted(starts)
    src.commit([m.position for m in got])
    assert sum(src.committed_offsets().values()) == 12
    src.close()


@pytest.mark.parametrize("mode", ["subscribe", "assign"])
def test_kafka_commit_first_k_then_crash_redelivers_the_rest(kafka_broker, mode):
    from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic, publish_packets

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=1)
    traces = _traces(10)
    publish_packets(bs, "wave", _packets(traces))
    first = KafkaSource(bs, "wave", group=f"g-{mode}", group_mode=mode)
    got = _poll_until(first, 10)
    assert [m.position[2] for m in got] == list(range(10))
    first.commit([m.position for m in got[:4]])
    assert first.committed_offsets() == {("wave", 0): 4}
    first.close()  # crash: 6 delivered, not committed

    again = KafkaSource(bs, "wave", group=f"g-{mode}", group_mode=mode)
    redelivered = _poll_until(again, 6)
    assert [m.position[2] for m in redelivered] == list(range(4, 10))
    assert all(_same(m.payload, tr) for m, tr in zip(redelivered, traces[4:], strict=True))
    assert again.poll(0.3) == []
    again.close()


def test_kafka_commits_contiguous_prefix_per_partition(kafka_broker):
    from confluent_kafka import Consumer, Producer, TopicPartition

    from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=2)
    p = Producer({"bootstrap.servers": bs})
    for part in (0, 1):
        for i in range(5):
            p.produce("wave", value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(10) == 0
    src = KafkaSource(bs, "wave", group="g-contig", group_mode="assign", stop_when_idle=0.0)
    got = _poll_until(src, 10)
    pos = {(m.position[1], m.position[2]): m.position for m in got}
    assert len(pos) == 10

    src.commit([pos[0, 0], pos[0, 1], pos[0, 3]])  # 2 still outstanding: stop before it
    assert src.committed_offsets() == {("wave", 0): 2}
    src.commit([pos[1, i] for i in range(5)])
    assert src.committed_offsets() == {("wave", 0): 2, ("wave", 1): 5}
    src.commit([pos[0, 2]])  # fills the gap: up to 4 (0..3 done), 4 outstanding
    assert src.committed_offsets()[("wave", 0)] == 4
    assert src.outstanding() == {("wave", 0): [4]}
    src.commit([("wave", 0, 3), ("wave", 7, 0)])  # repeated and unknown positions are ignored
    assert not src.finished
    src.commit([pos[0, 4]])
    assert src.committed_offsets()[("wave", 0)] == 5 and src.finished
    src.close()

    # the broker has the same offsets
    check = Consumer({"bootstrap.servers": bs, "group.id": "g-contig"})
    offsets = check.committed([TopicPartition("wave", 0), TopicPartition("wave", 1)], timeout=10)
    check.close()
    assert [o.offset for o in offsets] == [5, 5]


def test_kafka_rebalance_second_member_takes_over_uncommitted(kafka_broker):
    from confluent_kafka import Producer

    from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=2)
    p = Producer({"bootstrap.servers": bs})
    for part in (0, 1):
        for i in range(5):
            p.produce("wave", value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(10) == 0
    fast = {"group": "g-rebalance", "session_timeout_ms": 3000}  # tansu: joins take half of it
    a = KafkaSource(bs, "wave", **fast)
    got_a = _poll_until(a, 10, within=20)
    assert len(got_a) == 10
    a.commit([m.position for m in got_a if m.position[2] < 2])  # 0, 1 of both partitions done

    b = KafkaSource(bs, "wave", **fast)
    again_a: list[Message] = []
    got_b: list[Message] = []
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and len(again_a) + len(got_b) < 6:
        again_a.extend(a.poll(0.1))  # serves the rebalance: a's partitions are revoked, then split
        got_b.extend(b.poll(0.1))
    # each member re-reads its partition from the committed offset 2; nothing before it comes again
    assert len({m.position[1] for m in got_b}) == 1
    assert sorted(m.position[2] for m in got_b) == [2, 3, 4]
    assert sorted(m.position[2] for m in again_a) == [2, 3, 4]
    assert {m.position[1] for m in again_a} != {m.position[1] for m in got_b}
    # positions of the partition a lost are ignored; those it holds again are committed
    a.commit([m.position for m in got_a])
    mine = again_a[0].position[1]
    assert a.committed_offsets() == {("wave", mine): 5}
    b.commit([m.position for m in got_b])
    assert b.committed_offsets() == {("wave", 1 - mine): 5}
    a.close()
    b.close()


def test_kafka_sink_publish_and_dead_letters(kafka_broker):
    from sine_seisbench.monitor.kafka_io import KafkaSink, topic_partitions

    bs = kafka_broker.bootstrap
    sink = KafkaSink(bs, "events", partitions=3)
    assert isinstance(sink, Sink)
    messages = [_pick(1), _event(1), _pick(2), _event(2)]
    sink.publish(messages)
    assert topic_partitions(bs, "events") == 3
    reader = _raw_consumer(bs, "events", 3)
    got = _read_all(reader, 4)
    reader.close()
    assert sorted(
        json.loads(m.value())["id"] + str(json.loads(m.value()).get("version")) for m in got
    ) == sorted(m["id"] + str(m.get("version")) for m in messages)
    for m in got:
        assert m.key().decode() == json.loads(m.value())["id"]
    versions = [
        json.loads(m.value())["version"] for m in got if json.loads(m.value())["type"] == "event"
    ]
    assert versions == [1, 2]  # same key: same partition, in order
    assert len({m.partition() for m in got if json.loads(m.value())["type"] == "event"}) == 1

    sink.dead_letter(b"\x00garbage", "packet is neither JSON nor miniSEED", ("wave", 1, 17))
    reader = _raw_consumer(bs, "events.dead", 1)
    (dead,) = _read_all(reader, 1)
    reader.close()
    assert dead.value() == b"\x00garbage"
    assert dict(dead.headers()) == {
        "reason": b"packet is neither JSON nor miniSEED",
        "position": b"wave:1:17",
    }
    sink.close()


def test_kafka_paused_broker_bounded_then_recovers(kafka_broker):
    from sine_seisbench.monitor.kafka_io import (
        KafkaSink,
        KafkaSource,
        ensure_topic,
        publish_packets,
    )

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=1)
    publish_packets(bs, "wave", _packets(_traces(8)))
    src = KafkaSource(bs, "wave", group="g-pause")
    sink = KafkaSink(bs, "out")
    sink.publish([_pick(0)])  # creates the topic while the broker answers
    got = _poll_until(src, 8, within=20)
    assert len(got) == 8
    src.commit([m.position for m in got[:3]])

    # short waits while paused only (a loaded CI machine may need longer when all is well)
    src.commit_timeout = sink.flush_timeout = 1.0
    kafka_broker.pause()  # shorter than the 6 s session: no rebalance
    try:
        err, took = _timed(sink.publish, [_pick(1), _pick(2)])
        assert isinstance(err, Unavailable) and bs in str(err) and took < 3
        result, took = _timed(src.poll, 0.3)
        assert (result == [] or isinstance(result, Unavailable)) and took < 2
        err, took = _timed(src.commit, [m.position for m in got[3:6]])
        assert isinstance(err, Unavailable) and took < 3
    finally:
        kafka_broker.resume()
        src.commit_timeout = sink.flush_timeout = 10.0

    src.commit([])  # retries the offsets that were not confirmed
    assert src.committed_offsets() == {("wave", 0): 6}
    sink.publish([_pick(1), _pick(2)])  # the service's retry
    publish_packets(bs, "wave", _packets(_traces(2)))
    late = _poll_until(src, 2, within=10)
    assert [m.position[2] for m in late] == [8, 9]
    src.close()
    reader = _raw_consumer(bs, "out", 1)
    ids = {json.loads(m.value())["id"] for m in _read_all(reader, 3)}
    reader.close()
    assert ids == {_pick(i)["id"] for i in range(3)}  # re-publications possible, losses not
    again = KafkaSource(bs, "wave", group="g-pause", group_mode="assign")
    assert [m.position[2] for m in _poll_until(again, 4)] == [6, 7, 8, 9]
    again.close()
    sink.close()


def test_kafka_producers_recover_from_a_broker_that_lost_its_state(kafka_broker):
    """tansu keeps everything in memory: after a restart the idempotent producers' ids are unknown to it,
    which is fatal for a librdkafka producer; the sink and publish_packets start a new one."""
    from sine_seisbench.monitor.kafka_io import KafkaSink, ensure_topic, publish_packets

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=1)
    sink = KafkaSink(bs, "out", flush_timeout=1.0)
    publish_packets(bs, "wave", _packets(_traces(2)))
    sink.publish([_pick(0)])
    kafka_broker.restart(kill=True)

    def eventually(fn) -> int:
        failures = 0
        deadline = time.monotonic() + 15
        while True:
            try:
                fn()
                return failures
            except Unavailable:
                failures += 1
                assert time.monotonic() < deadline, "no recovery after the broker restart"

    ensure_topic(bs, "wave", partitions=1)
    eventually(lambda: publish_packets(bs, "wave", _packets(_traces(2)), timeout=1.0))
    eventually(lambda: sink.publish([_pick(1)]))
    reader = _raw_consumer(bs, "out", 1)
    assert _pick(1)["id"] in {json.loads(m.value())["id"] for m in _read_all(reader, 1)}
    reader.close()
    sink.close()


def test_kafka_broker_down_raises_unavailable(kafka_broker):
    from sine_seisbench.monitor.kafka_io import KafkaSink, KafkaSource, ensure_topic

    bs = kafka_broker.bootstrap
    ensure_topic(bs, "wave", partitions=1)
    src = KafkaSource(bs, "wave", group="g-down", group_mode="assign")
    assert src.poll(0.2) == []
    sink = KafkaSink(bs, "out", flush_timeout=1.0)
    kafka_broker.stop(kill=True)

    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="brokers are down|Connect|refused"):
        while time.monotonic() - t0 < 10:
            src.poll(0.2)
    assert time.monotonic() - t0 < 10
    err, took = _timed(sink.publish, [_pick(1)])
    assert isinstance(err, Unavailable) and took < 12
    err, took = _timed(ensure_topic, bs, "other", 1, timeout=1.0)
    assert isinstance(err, Unavailable) and took < 5
    src.close()
    sink.close()
