"""End to end through real brokers: packets published to Redis Streams / Kafka (tansu), the monitor consuming
them, results published back; parity with classify, consumer crashes, brokers paused and restarted."""

from __future__ import annotations

import json
import threading
import time

import pytest
from services import kafka_broker, redis_srv  # noqa: F401 - fixtures
from test_monitor import assert_events_match, final_events, pick_keys

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.example import network_stream
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

    def __init__(self, kind, server):
        self.kind, self.server = kind, server

    def publish(self, packets):
        if self.kind == "redis":
            from sine_seisbench.monitor.redis_io import publish_packets

            publish_packets(self.server.url, "waveforms", packets)
        else:
            from sine_seisbench.monitor.kafka_io import ensure_topic, publish_packets

            # one partition: a replay as fast as possible through several partitions interleaves stations by
            # minutes of data time, more than max_latency_s (a live stream does not)
            ensure_topic(self.server.bootstrap, "waveforms", partitions=1)
            publish_packets(self.server.bootstrap, "waveforms", packets)

    def source(self):
        if self.kind == "redis":
            from sine_seisbench.monitor.redis_io import RedisSource

            return RedisSource(self.server.url, "waveforms", block_ms=200)
        from sine_seisbench.monitor.kafka_io import KafkaSource

        # "assign": all partitions from the group's committed offsets, no group join (one monitor per group);
        # tansu holds a group join 10+ s after a member crashed (see kafka_io)
        return KafkaSource(self.server.bootstrap, "waveforms", group="sine", group_mode="assign")

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


@pytest.fixture(params=["redis", "kafka"])
def broker(request):
    if request.param == "redis":
        return Broker("redis", request.getfixturevalue("redis_srv"))
    return Broker("kafka", request.getfixturevalue("kafka_broker"))


def run_monitor(model, inv, anchor, broker, state_path, crash_after_messages=None, during=None):
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
            target=lambda: result.append(monitor.run(stop_when_idle_s=4.0, max_seconds=100))
        )
        worker.start()
        during()
        worker.join(timeout=120)
        monitor.close()
        return result[0] if result else None
    try:
        return monitor.run(stop_when_idle_s=4.0, max_seconds=100)
    except KeyboardInterrupt:
        return None
    finally:
        try:
            monitor.close()
        except Exception:  # noqa: BLE001 - closing after a simulated crash
            pass


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

    def outage():
        time.sleep(3.0)
        broker.server.pause()
        time.sleep(6.0)
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

    def restart():
        # mid-stream: as soon as the monitor has published its first output (a fixed delay raced with how fast
        # the monitor runs)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            try:
                if broker.outputs():
                    break
            except Exception:  # noqa: BLE001 - the stream does not exist yet
                pass
            time.sleep(0.05)
        # down long enough for the monitor to meet the outage (its publishing retries every 0.2-1 s)
        redis_srv.stop(kill=True)
        time.sleep(2.0)
        redis_srv.start()

    summary = run_monitor(
        model, inv, stream[0].stats.starttime, broker, tmp_path / "s", during=restart
    )
    assert summary is not None and summary["retries"] >= 1
    check_parity(broker.outputs(), offline, record)
