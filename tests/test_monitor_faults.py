"""Monitor faults (issue 11, item 7): packets far from the stream's time, identical re-publication after a crash
at any point, ``--stop-when-idle`` after a restart with nothing left to read, and fast packet preparation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pytest
import services

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.example import network_stream
from sine_seisbench.monitor.base import MalformedPacket, Message
from sine_seisbench.monitor.engine import ChannelBuffer, StreamingClassifier
from sine_seisbench.monitor.schema import encode_packet, split_packets
from sine_seisbench.monitor.service import FileStateStore, JsonLinesSink, Monitor

kafka_broker = services.kafka_broker


@pytest.fixture(scope="module")
def model() -> SINE:
    return SINE.from_pretrained(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def record():
    """8 virtual stations, 4 minutes, the real RJOB earthquake 8 times."""
    return network_stream(8, repeat=8)


class SourceCrash(Exception):
    """Raised by :class:`PacketSource` to end a run the way a crash does: nothing more is published or
    committed."""


class CommitLog:
    """The committed prefix of a :class:`PacketSource`; outlives a crashed monitor, like a consumer group's
    offsets on a broker."""

    def __init__(self) -> None:
        self.committed = 0
        self.done: set[int] = set()

    def commit(self, positions: list[int]) -> None:
        self.done.update(positions)
        while self.committed in self.done:
            self.done.discard(self.committed)
            self.committed += 1


class PacketSource:
    """Encoded packets in a fixed order, ``batch`` per poll, from the first uncommitted one; with
    ``crash_after`` polls, the next poll raises :class:`SourceCrash`."""

    name = "packets"
    live = False

    def __init__(
        self, payloads: list[bytes], log: CommitLog, batch: int, crash_after: int | None = None
    ) -> None:
        self.payloads = payloads
        self.log = log
        self.batch = batch
        self.crash_after = crash_after
        self.next = log.committed
        self.polls = 0

    @property
    def finished(self) -> bool:
        return self.next >= len(self.payloads)

    def poll(self, timeout: float) -> list[Message]:
        self.polls += 1
        if self.crash_after is not None and self.polls > self.crash_after:
            raise SourceCrash(f"crash after {self.crash_after} polls")
        stop = min(self.next + self.batch, len(self.payloads))
        out = [Message(position=i, payload=self.payloads[i]) for i in range(self.next, stop)]
        self.next = stop
        return out

    def commit(self, positions: list[Any]) -> None:
        self.log.commit([int(p) for p in positions])

    def close(self) -> None:
        pass


def run_once(
    model: SINE,
    inv: obspy.Inventory,
    payloads: list[bytes],
    log: CommitLog,
    out: Path,
    state: Path,
    batch: int,
    crash_after: int | None = None,
) -> bool:
    """One monitor process's life: restore from ``state``, read from the committed position; False when it
    crashed."""
    engine = StreamingClassifier(model, inv)
    source = PacketSource(payloads, log, batch, crash_after)
    monitor = Monitor(
        engine, source, [JsonLinesSink(str(out))], state=FileStateStore(state), commit_interval_s=0
    )
    try:
        monitor.run()
    except SourceCrash:
        return False
    finally:
        monitor.close()
    return True


def lines_by_key(path: Path) -> dict[tuple[str, Any], list[str]]:
    """Every published line per (id, version), as published (sorted keys, so byte-for-byte comparable)."""
    out: dict[tuple[str, Any], list[str]] = {}
    for line in path.read_text().splitlines():
        m = json.loads(line)
        out.setdefault((m["id"], m.get("version")), []).append(line)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Packets far from the stream's time
# ---------------------------------------------------------------------------------------------------------------
def _shifted(tr: obspy.Trace, to: obspy.UTCDateTime) -> obspy.Trace:
    out = tr.copy()
    out.stats.starttime = to
    return out


def test_a_packet_far_from_the_stream_time_is_refused_before_anything_is_allocated(model, record):
    stream, inv = record
    packets = split_packets(stream, 1.0)
    engine = StreamingClassifier(model, inv)
    for p in packets[:240]:
        engine.ingest(p)
    sizes = {k: len(b.data) for k, s in engine.stations.items() for k, b in s.channels.items()}
    t_end = packets[239].stats.endtime
    for when in (t_end + 3 * 86400, obspy.UTCDateTime(2099, 1, 1), t_end - 5 * 86400):
        with pytest.raises(
            MalformedPacket, match=r"XX\.S00\.\.HH.: packet .* max_packet_skew_s = 86400 s"
        ):
            engine.ingest(_shifted(packets[0], when))
    assert {
        k: len(b.data) for k, s in engine.stations.items() for k, b in s.channels.items()
    } == sizes
    # within the horizon: accepted (a stream may resume after a day-long outage)
    wide = StreamingClassifier(model, inv, max_packet_skew_s=10 * 86400)
    wide.ingest(packets[0])
    wide.ingest(_shifted(packets[1], t_end + 3 * 86400))
    # a restored engine (nothing buffered yet) checks against its checkpoint's time
    for p in packets[240:960]:
        engine.ingest(p)
    engine.step()
    restored = StreamingClassifier(model, inv)
    restored.restore(json.loads(json.dumps(engine.checkpoint())))
    with pytest.raises(MalformedPacket, match="checkpoint's next window"):
        restored.ingest(_shifted(packets[0], obspy.UTCDateTime(2099, 1, 1)))
    assert not restored.stations


def test_channel_buffer_refuses_an_absurd_span():
    buf = ChannelBuffer(100.0, max_span=100 * 3600)
    buf.write(100_000, np.ones(100))
    with pytest.raises(MalformedPacket, match="span"):
        buf.write(100_000 + 100 * 7200, np.ones(100))
    with pytest.raises(MalformedPacket, match="span"):
        buf.write(100_000 - 100 * 7200, np.ones(100))
    assert len(buf.data) == 4096 and buf.base == 100_000


def test_a_packet_of_2099_is_dead_lettered_and_the_monitor_goes_on(model, record, tmp_path):
    stream, inv = record
    packets = split_packets(stream, 1.0)[:1200]
    payloads = [encode_packet(p, "mseed") for p in packets]
    payloads.insert(
        600, encode_packet(_shifted(packets[0], obspy.UTCDateTime(2099, 6, 1)), "mseed")
    )
    log = CommitLog()
    out = tmp_path / "out.jsonl"
    engine = StreamingClassifier(model, inv)
    monitor = Monitor(engine, PacketSource(payloads, log, 100), [JsonLinesSink(str(out))])
    summary = monitor.run()
    assert summary["malformed"] == 1
    (dead,) = [json.loads(line) for line in Path(str(out) + ".dead").read_text().splitlines()]
    assert "XX.S00..HH" in dead["reason"] and "2099-06-01" in dead["reason"]
    assert "max_packet_skew_s" in dead["reason"]
    assert log.committed == len(
        payloads
    )  # the bad packet is committed: a restart does not read it again
    assert summary["events"] >= 1


# ---------------------------------------------------------------------------------------------------------------
# Re-publication after a crash is identical, whatever the crash point
# ---------------------------------------------------------------------------------------------------------------
def test_restart_from_a_checkpoint_at_any_point_republishes_identical_messages(model, record):
    """The engine of an uninterrupted run is checkpointed after every step, and the source positions it would
    commit are noted (a packet is committed once its data end before keep_from, as the service does). From
    checkpoints at several points a new engine is restored and fed from the first uncommitted packet, 37
    packets per step (steps end in the middle of a second, so some stations' newest packet is still missing
    when the restored engine first steps). Every (id, version) it publishes is byte-for-byte the message the
    uninterrupted run published, and it publishes nothing the uninterrupted run did not."""
    stream, inv = record
    packets = split_packets(stream, 1.0)
    batch = 37

    def key_line(m: dict[str, Any]) -> tuple[tuple[str, Any], str]:
        return (m["id"], m.get("version")), json.dumps(m, sort_keys=True)

    engine = StreamingClassifier(model, inv)
    ref: dict[tuple[str, Any], str] = {}
    saved: list[tuple[dict[str, Any], int]] = []
    committed = 0
    for i in range(0, len(packets), batch):
        for p in packets[i : i + batch]:
            engine.ingest(p)
        ref.update(key_line(m) for m in engine.step())
        keep = engine.keep_from_index()
        while committed < min(i + batch, len(packets)) and (
            engine._to_index(packets[committed].stats.endtime) + 1 <= keep
        ):
            committed += 1
        saved.append((json.loads(json.dumps(engine.checkpoint())), committed))
    ref.update(key_line(m) for m in engine.step(flush=True))
    assert sum(1 for k in ref if "/event/" in k[0]) >= 7

    for cut in (40, 70, 100):
        state, first = saved[cut]
        restored = StreamingClassifier(model, inv)
        restored.restore(state)
        got: list[tuple[tuple[str, Any], str]] = []
        for i in range(first, len(packets), batch):
            for p in packets[i : i + batch]:
                restored.ingest(p)
            got += [key_line(m) for m in restored.step()]
        got += [key_line(m) for m in restored.step(flush=True)]
        assert got, f"nothing published after the checkpoint of step {cut}"
        for key, line in got:
            assert key in ref, (
                f"restart at step {cut}: {key} was never published without the restart:\n{line}"
            )
            assert line == ref[key], (
                f"restart at step {cut}: {key} re-published with other content:\n{ref[key]}\n{line}"
            )


# ---------------------------------------------------------------------------------------------------------------
# --stop-when-idle after a restart with nothing left to read
# ---------------------------------------------------------------------------------------------------------------
def test_stop_when_idle_stops_a_restarted_monitor_with_nothing_to_read(
    model, kafka_broker, tmp_path
):
    from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic, publish_packets

    stream, inv = network_stream(4, repeat=2)
    ensure_topic(kafka_broker.bootstrap, "waves", partitions=1)
    publish_packets(
        kafka_broker.bootstrap,
        "waves",
        [encode_packet(p, "mseed") for p in split_packets(stream, 2.0)],
    )
    state = FileStateStore(tmp_path / "state.json")

    def run() -> tuple[dict[str, Any], float]:
        source = KafkaSource(kafka_broker.bootstrap, "waves", group="sine", group_mode="assign")
        monitor = Monitor(
            StreamingClassifier(model, inv),
            source,
            [JsonLinesSink(str(tmp_path / "o.jsonl"))],
            state=state,
        )
        t0 = time.monotonic()
        try:
            summary = monitor.run(stop_when_idle_s=2.0, max_seconds=60.0)
        finally:
            monitor.close()
        return summary, time.monotonic() - t0

    first, _ = run()
    assert first["messages"] == len(split_packets(stream, 2.0)) and first["events"] >= 1
    assert state.load() is not None
    again, wall = run()  # everything committed: nothing left to read
    assert again["messages"] == 0
    assert wall < 30.0, f"the restarted monitor did not stop when idle ({wall:.0f} s)"


# ---------------------------------------------------------------------------------------------------------------
# Packet preparation (the cause of the Kafka benchmark's spin at 50 and 100 stations)
# ---------------------------------------------------------------------------------------------------------------
def test_packets_do_not_copy_the_record_or_its_response():
    """ObsPy's example record carries an instrument response in its stats; cutting 20 stations x 60 s into
    3600 packets and encoding them used to deep-copy the whole record and the response for every packet (minutes
    and gigabytes at 50 stations x 180 s)."""
    stream, _ = network_stream(20, repeat=2)
    assert "response" in stream[0].stats
    t0 = time.perf_counter()
    packets = split_packets(stream, 1.0)
    encoded = [encode_packet(p, "mseed") for p in packets]
    elapsed = time.perf_counter() - t0
    assert len(encoded) == 3600
    assert "response" not in packets[0].stats and packets[0].data.base is None
    assert elapsed < 30.0, f"{elapsed:.0f} s to cut and encode 3600 packets"
