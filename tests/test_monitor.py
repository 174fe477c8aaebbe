"""The monitoring engine and service on files: parity with classify, packet handling, restarts, shutdown."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import obspy
import pytest

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.example import network_stream
from sine_seisbench.monitor.base import MalformedPacket
from sine_seisbench.monitor.config import parse_spec
from sine_seisbench.monitor.engine import LatePacket, StreamingClassifier
from sine_seisbench.monitor.replay import FileSource, SDSSource
from sine_seisbench.monitor.schema import decode_packet, encode_packet, split_packets
from sine_seisbench.monitor.service import FileStateStore, JsonLinesSink, Monitor, QuakeMLSink

WINDOW_S = 30.0


@pytest.fixture(scope="module")
def model() -> SINE:
    return SINE.from_pretrained(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def record():
    """8 virtual stations, 4 minutes, the real RJOB earthquake 8 times (generated, always available)."""
    stream, inv = network_stream(8, repeat=8)
    return stream, inv


@pytest.fixture(scope="module")
def offline(model, record):
    stream, inv = record
    return model.classify(stream.copy(), inventory=inv)


@pytest.fixture(scope="module")
def streamed(model, record):
    """The engine (no anchor) fed the whole record in 1 s packets, and what it published (shared by the tests
    that run exactly this; none of them changes either)."""
    stream, inv = record
    engine = StreamingClassifier(model, inv)
    return engine, stream_through(engine, split_packets(stream, 1.0))


@pytest.fixture(scope="module")
def anchored(model, record):
    """What the engine anchored at the record's start publishes when fed the record in time order: the
    reference of the tests that reorder or delay packets."""
    stream, inv = record
    engine = StreamingClassifier(model, inv, anchor=stream[0].stats.starttime)
    return stream_through(engine, split_packets(stream, 1.0))


def pick_keys(picks, before=None):
    out = set()
    for p in picks:
        if isinstance(p, dict):
            key = (p["trace_id"], p["phase"], round(obspy.UTCDateTime(p["time"]).timestamp, 2))
        else:
            key = (p.trace_id, p.phase, round(p.peak_time.timestamp, 2))
        if before is None or key[2] < before:
            out.add(key)
    return out


def final_events(messages):
    """Latest version of every event id, retracted ones dropped."""
    latest = {}
    for m in messages:
        if m["type"] == "event" and m["version"] >= latest.get(m["id"], {"version": 0})["version"]:
            latest[m["id"]] = m
    return sorted(
        (m for m in latest.values() if m.get("status") != "retracted"),
        key=lambda m: m["origin_time"],
    )


def assert_events_match(
    offline_catalog, events, time_tol=0.05, km_tol=0.5, mag_tol=0.05, before=None
):
    """``before``: compare only events with origin time before this (picks in a record's last window may
    differ, see test_streaming_equals_classify_on_the_whole_record)."""
    if before is not None:
        offline_catalog = [e for e in offline_catalog if e.origins[0].time.timestamp < before]
        events = [e for e in events if obspy.UTCDateTime(e["origin_time"]).timestamp < before]
    assert len(events) == len(offline_catalog), (len(events), len(offline_catalog))
    ref = sorted(offline_catalog, key=lambda e: e.origins[0].time)
    for ev, msg in zip(ref, events, strict=True):
        o = ev.origins[0]
        assert abs(obspy.UTCDateTime(msg["origin_time"]) - o.time) <= time_tol
        assert abs(msg["latitude"] - o.latitude) * 111.2 <= km_tol
        assert (
            abs(msg["longitude"] - o.longitude) * 111.2 * np.cos(np.radians(o.latitude)) <= km_tol
        )
        if ev.magnitudes:
            assert abs(msg["magnitude"] - ev.magnitudes[0].mag) <= mag_tol
        else:  # no responses: no ML on either side (uncalibrated)
            assert msg["magnitude"] is None
        assert msg["stations"] == ev.origins[0].quality.associated_station_count


def stream_through(engine, packets, every=24, flush=True):
    out = []
    for i, p in enumerate(packets):
        engine.ingest(p)
        if i % every == every - 1:
            out += engine.step()
    if flush:
        out += engine.step(flush=True)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------------
def test_packets_round_trip_json_and_miniseed():
    tr = obspy.read()[0]
    for fmt in ("json", "mseed"):
        (back,) = decode_packet(encode_packet(tr, fmt))
        assert back.id == tr.id and back.stats.starttime == tr.stats.starttime
        np.testing.assert_allclose(back.data, tr.data, rtol=1e-6)
    plain = json.dumps(
        {"id": "XX.S01..HHZ", "starttime": 1.5e9, "sampling_rate": 100, "samples": [1, 2, 3]}
    )
    (tr2,) = decode_packet(plain.encode())
    assert tr2.id == "XX.S01..HHZ" and list(tr2.data) == [1, 2, 3]


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\x00\x01", "too short"),
        (b"{not json", "JSON"),
        (b'{"id": "XX.S01.HHZ", "starttime": 0, "sampling_rate": 100, "samples": [1]}', "NET.STA"),
        (b'{"id": "XX.S01..HHZ", "starttime": 0, "sampling_rate": -1, "samples": [1]}', "positive"),
        (
            b'{"id": "XX.S01..HHZ", "starttime": "x", "sampling_rate": 100, "samples": [1]}',
            "starttime",
        ),
        (b'{"id": "XX.S01..HHZ", "starttime": 0, "sampling_rate": 100}', "samples"),
        (b"\x00" * 600, "miniSEED"),
    ],
)
def test_malformed_packets_say_what_is_wrong(payload, words):
    with pytest.raises(MalformedPacket, match=words):
        decode_packet(payload)


def test_source_and_sink_specs():
    assert parse_spec("kafka://127.0.0.1:9092/wave?group=g", "source") == {
        "type": "kafka",
        "bootstrap": "127.0.0.1:9092",
        "topic": "wave",
        "group": "g",
    }
    spec = parse_spec("redis://127.0.0.1:6379/0?stream=w&block_ms=100", "source")
    assert spec == {
        "type": "redis",
        "url": "redis://127.0.0.1:6379/0",
        "stream": "w",
        "block_ms": 100,
    }
    assert parse_spec("files:/data/*.mseed?speed=2", "source") == {
        "type": "files",
        "pattern": "/data/*.mseed",
        "speed": 2,
    }
    assert parse_spec("quakeml:out", "sink") == {"type": "quakeml", "folder": "out"}
    with pytest.raises(ValueError, match="unknown sink"):
        parse_spec("ftp://x", "sink")


# ---------------------------------------------------------------------------------------------------------------
# Engine: parity with classify
# ---------------------------------------------------------------------------------------------------------------
def test_streaming_equals_classify_on_the_whole_record(record, offline, streamed):
    """Windows on classify's grid: the same picks (except in the last window, where classify adds a window
    aligned to the end of the record that a stream cannot know) and the same events."""
    stream, _ = record
    engine, out = streamed
    end = stream[0].stats.endtime.timestamp - WINDOW_S
    picks = [m for m in out if m["type"] == "pick"]
    assert len(offline.picks) > 50
    assert pick_keys(picks, end) == pick_keys(offline.picks, end)
    assert len(pick_keys(picks)) == len(picks), "a pick was published twice"
    events = final_events(out)
    assert len(events) == 8  # the earthquake repeats 8 times; all are found
    assert_events_match(offline.events, events, time_tol=0.011, km_tol=0.01, mag_tol=0.001)
    # one id scheme: the monitor publishes each earthquake under classify's event id
    assert sorted(m["id"] for m in events) == sorted(str(e.resource_id) for e in offline.events)
    assert engine.stats["late"] == 0


def test_monitor_started_mid_record_equals_classify_from_there(model, record):
    """Without an anchor, windows start at the first sample received: a monitor that joins a stream late
    gives what classify gives on the record from that moment."""
    stream, inv = record
    t_join = stream[0].stats.starttime + 47.3
    later = stream.copy().trim(t_join, None)
    expected = model.classify(later.copy(), inventory=inv)
    engine = StreamingClassifier(model, inv)
    out = stream_through(engine, split_packets(later, 1.0))
    end = later[0].stats.endtime.timestamp - WINDOW_S
    assert pick_keys([m for m in out if m["type"] == "pick"], end) == pick_keys(expected.picks, end)
    assert_events_match(
        expected.events, final_events(out), time_tol=0.011, km_tol=0.01, mag_tol=0.001, before=end
    )
    assert engine.checkpoint()["anchor"] == round(t_join.timestamp * 100)


def test_out_of_order_packets_within_latency_give_the_same_result(model, record, anchored):
    stream, inv = record
    packets = split_packets(stream, 1.0)
    t0 = stream[0].stats.starttime
    reference = anchored
    rng = random.Random(1)
    shuffled = list(packets)
    # every packet displaced by up to ~3 s of data (8 stations x 3 channels per second)
    for i in range(0, len(shuffled), 48):
        block = shuffled[i : i + 72]
        rng.shuffle(block)
        shuffled[i : i + 72] = block
    engine = StreamingClassifier(model, inv, max_latency_s=10, anchor=t0)
    out = stream_through(engine, shuffled)
    assert engine.stats["late"] == 0
    assert pick_keys([m for m in out if m["type"] == "pick"]) == pick_keys(
        [m for m in reference if m["type"] == "pick"]
    )
    assert [e["id"] for e in final_events(out)] == [e["id"] for e in final_events(reference)]


def test_one_event_per_earthquake_updated_not_duplicated(model, record):
    """With a 1 s stride each earthquake keeps one id, and its versions run 1, 2, ... without gaps. (With the
    event step's migration and travel-time fit, the estimate from an early, partly zeroed window equals the
    complete one on this record, so events are usually published once; with the former event head they were
    updated as the window filled.)"""
    stream, inv = record
    engine = StreamingClassifier(model, inv, stride_s=1.0)
    out = stream_through(engine, split_packets(stream, 1.0), every=24)
    events = final_events(out)
    assert len(events) == 8  # the earthquake repeats 8 times; all are found
    versions = Counter(m["id"] for m in out if m["type"] == "event")
    assert set(versions) == {e["id"] for e in events}
    for ev in events:
        seq = [m["version"] for m in out if m["type"] == "event" and m["id"] == ev["id"]]
        assert seq == list(range(1, len(seq) + 1))
    times = sorted(obspy.UTCDateTime(e["origin_time"]).timestamp for e in events)
    assert np.allclose(np.diff(times), 30.0, atol=0.1)  # one event per repeat, none twice


def test_a_delayed_station_is_waited_for(model, record, anchored):
    """One station's packets arrive 20 s late (within max_latency_s): windows wait, nothing is late and the
    result equals the on-time run."""
    stream, inv = record
    t0 = stream[0].stats.starttime
    packets = split_packets(stream, 1.0)
    reference = anchored
    delayed = [p for p in packets if p.stats.station == "S05"]
    others = [p for p in packets if p.stats.station != "S05"]
    arrival = [(p.stats.starttime.timestamp, i, p) for i, p in enumerate(others)]
    arrival += [(p.stats.starttime.timestamp + 20.0, i, p) for i, p in enumerate(delayed)]
    order = [p for _, _, p in sorted(arrival, key=lambda a: (a[0], a[1]))]
    engine = StreamingClassifier(model, inv, anchor=t0, max_latency_s=60)
    out = stream_through(engine, order)
    assert engine.stats["late"] == 0
    assert pick_keys([m for m in out if m["type"] == "pick"]) == pick_keys(
        [m for m in reference if m["type"] == "pick"]
    )
    assert [e["id"] for e in final_events(out)] == [e["id"] for e in final_events(reference)]


def test_late_and_foreign_packets_are_refused_with_a_reason(model, record):
    stream, inv = record
    engine = StreamingClassifier(model, inv, max_latency_s=2)
    packets = split_packets(stream, 1.0)
    stream_through(engine, packets[:2000], flush=False)
    with pytest.raises(
        LatePacket, match=r"XX\.S00\.\.HH.: .*arrived after its windows.*max_latency_s"
    ):
        engine.ingest(packets[0])
    stranger = packets[-1].copy()
    stranger.stats.station = "NOPE"
    with pytest.raises(MalformedPacket, match="XX.NOPE.*StationXML"):
        engine.ingest(stranger)
    other = packets[-1].copy()
    other.stats.channel = "BHZ"
    with pytest.raises(MalformedPacket, match="already streams instrument HH"):
        engine.ingest(other)
    weird = packets[-1].copy()
    weird.stats.channel = "HHX"
    with pytest.raises(MalformedPacket, match="component 'X'"):
        engine.ingest(weird)


def test_gaps_are_filled_and_do_not_block(model, record):
    """A station that loses 20 s of data (a dropped packet run): windows wait at most max_latency_s of data
    time, then run with the gap; nothing raises and the other stations' events still come."""
    stream, inv = record
    t0 = stream[0].stats.starttime
    packets = [
        p
        for p in split_packets(stream, 1.0)
        if not (p.stats.station == "S02" and t0 + 60 <= p.stats.starttime < t0 + 80)
    ]
    engine = StreamingClassifier(model, inv, max_latency_s=5)
    out = stream_through(engine, packets)
    assert len(final_events(out)) >= 6


# ---------------------------------------------------------------------------------------------------------------
# Service on files
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def record_files(record, tmp_path_factory):
    stream, inv = record
    folder = tmp_path_factory.mktemp("record")
    for tr in stream:
        tr.write(str(folder / f"{tr.id}.mseed"), format="MSEED")
    inv.write(str(folder.parent / "stations.xml"), format="STATIONXML")
    return folder, folder.parent / "stations.xml"


def run_monitor(model, inv, anchor, source, out_path, state_path, crash_after_polls=None):
    engine = StreamingClassifier(model, inv, anchor=anchor)
    if crash_after_polls is not None:
        poll, calls = source.poll, [0]

        def crashing_poll(timeout):
            calls[0] += 1
            if calls[0] > crash_after_polls:
                raise KeyboardInterrupt("simulated crash")
            return poll(timeout)

        source.poll = crashing_poll
    monitor = Monitor(
        engine, source, [JsonLinesSink(str(out_path))], state=FileStateStore(state_path)
    )
    try:
        return monitor.run()
    except KeyboardInterrupt:
        return None


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_monitor_on_files_equals_classify_and_survives_a_crash(
    model, record, offline, record_files, tmp_path
):
    stream, inv = record
    folder, _ = record_files
    anchor = stream[0].stats.starttime
    clean = tmp_path / "clean.jsonl"
    summary = run_monitor(
        model, inv, anchor, FileSource(str(folder)), clean, tmp_path / "clean.state"
    )
    assert summary["messages"] == len(split_packets(stream, 1.0))
    ref = read_jsonl(clean)
    assert_events_match(
        offline.events, final_events(ref), time_tol=0.011, km_tol=0.01, mag_tol=0.001
    )

    out, state = tmp_path / "crash.jsonl", tmp_path / "crash.state"
    for crash in (7, 15):  # crash twice, then run to the end
        src = FileSource(str(folder), state_path=str(state) + ".source")
        assert run_monitor(model, inv, anchor, src, out, state, crash_after_polls=crash) is None
    src = FileSource(str(folder), state_path=str(state) + ".source")
    run_monitor(model, inv, anchor, src, out, state)
    got = read_jsonl(out)
    # the same picks and event versions, none lost; repeats are identical re-publications
    assert {(m["id"], m.get("version")) for m in got} == {(m["id"], m.get("version")) for m in ref}
    by_key = {}
    for m in got:
        key = (m["id"], m.get("version"))
        assert by_key.setdefault(key, m) == m, f"{key} re-published with other content"
    assert [e["id"] for e in final_events(got)] == [e["id"] for e in final_events(ref)]


def test_malformed_messages_go_to_the_dead_letters_and_the_service_goes_on(model, record, tmp_path):
    stream, inv = record

    class ListSource:
        name = "list"
        live = False

        def __init__(self, payloads):
            self.payloads = list(enumerate(payloads))
            self.committed = []

        @property
        def finished(self):
            return not self.payloads

        def poll(self, timeout):
            from sine_seisbench.monitor.base import Message

            batch, self.payloads = self.payloads[:100], self.payloads[100:]
            return [Message(position=i, payload=p) for i, p in batch]

        def commit(self, positions):
            self.committed += positions

        def close(self):
            pass

    packets = [encode_packet(p) for p in split_packets(stream, 1.0)]
    bad = [
        b"garbage",
        b'{"id": "XX.NOPE..HHZ", "starttime": 0, "sampling_rate": 100, "samples": [1]}',
    ]
    payloads = packets[:500] + bad + packets[500:]
    source = ListSource(payloads)
    sink = JsonLinesSink(str(tmp_path / "out.jsonl"))
    summary = Monitor(StreamingClassifier(model, inv), source, [sink]).run()
    assert summary["malformed"] == 2
    dead = read_jsonl(tmp_path / "out.jsonl.dead")
    assert len(dead) == 2
    assert "miniSEED" in dead[0]["reason"] and "XX.NOPE" in dead[1]["reason"]
    assert sorted(source.committed) == list(range(len(payloads)))
    assert summary["events"] == 8


def test_quakeml_sink_writes_one_file_per_event(streamed, tmp_path):
    _, out = streamed
    sink = QuakeMLSink(str(tmp_path / "qml"))
    sink.publish(out)
    files = sorted((tmp_path / "qml").glob("*.xml"))
    assert len(files) == len(final_events(out))
    cat = obspy.read_events(str(files[0]))
    assert len(cat) == 1 and cat[0].origins[0].arrivals


def test_sds_source_replays_an_archive(model, record, tmp_path):
    stream, inv = record
    root = tmp_path / "sds"
    for tr in stream:
        t = tr.stats.starttime
        d = root / str(t.year) / tr.stats.network / tr.stats.station / f"{tr.stats.channel}.D"
        d.mkdir(parents=True, exist_ok=True)
        tr.write(str(d / f"{tr.id}.D.{t.year}.{t.julday:03d}"), format="MSEED")
    t0 = stream[0].stats.starttime
    src = SDSSource(str(root), t0, stream[0].stats.endtime + 1, chunk_s=60)
    engine = StreamingClassifier(model, inv, anchor=t0)
    summary = Monitor(engine, src, [JsonLinesSink(str(tmp_path / "o.jsonl"))]).run()
    assert summary["events"] == 8
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SDSSource(str(tmp_path / "nowhere"), t0, t0 + 10)


# ---------------------------------------------------------------------------------------------------------------
# The command line: a real process killed with SIGKILL, and SIGTERM
# ---------------------------------------------------------------------------------------------------------------
def _monitor_cmd(folder, stations, out, state, speed="0"):
    return [
        sys.executable,
        "-m",
        "sine_seisbench.cli",
        "monitor",
        "--inventory",
        str(stations),
        "--source",
        f"files:{folder}",
        "--sink",
        f"jsonl:{out}",
        "--state",
        str(state),
        "--speed",
        speed,
        "--quiet",
    ]


def _committed(source_state: Path) -> int:
    """The committed position in a file source's state (0 while there is none)."""
    try:
        return int(json.loads(source_state.read_text())["committed"])
    except (OSError, ValueError, KeyError):  # not written yet (it is replaced atomically)
        return 0


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_cli_monitor_killed_and_restarted_loses_and_duplicates_no_event(record_files, tmp_path):
    folder, stations = record_files
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    clean = tmp_path / "clean.jsonl"
    out, state = tmp_path / "out.jsonl", tmp_path / "s.state"
    # The uninterrupted reference (as fast as possible) runs beside the run that is killed, which mostly waits:
    # real time x 8, the 4-minute record takes 30 s; it is killed hard after its first event came out.
    reference = subprocess.Popen(
        _monitor_cmd(folder, stations, clean, tmp_path / "c.state"), env=env
    )
    proc = subprocess.Popen(_monitor_cmd(folder, stations, out, state, speed="8"), env=env)
    try:
        deadline = time.monotonic() + 240
        while (
            time.monotonic() < deadline
            and proc.poll() is None
            and not (
                out.exists() and any('"event"' in line for line in out.read_text().splitlines())
            )
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert reference.wait(timeout=300) == 0
    finally:
        _stop(proc, reference)
    ref = read_jsonl(clean)
    assert len(final_events(ref)) == 8

    before = len(final_events(read_jsonl(out)))
    assert 1 <= before < 7
    subprocess.run(_monitor_cmd(folder, stations, out, state), check=True, env=env, timeout=300)
    got = read_jsonl(out)
    assert [e["id"] for e in final_events(got)] == [e["id"] for e in final_events(ref)]
    assert {(m["id"], m.get("version")) for m in got} == {(m["id"], m.get("version")) for m in ref}
    # re-published messages are identical to the uninterrupted run's (same location, magnitude, picks)
    expected = {(m["id"], m.get("version")): m for m in ref}
    for m in got:
        assert m == expected[(m["id"], m.get("version"))], f"{m['id']} v{m.get('version')} differs"


def test_cli_monitor_sigterm_commits_and_exits_cleanly(record_files, tmp_path):
    folder, stations = record_files
    out, state = tmp_path / "out.jsonl", tmp_path / "s.state"
    source_state = Path(str(state) + ".source")
    proc = subprocess.Popen(
        _monitor_cmd(folder, stations, out, state, speed="8"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # signalled mid-record, once it has committed progress (model loaded, windows run); at 8x the record
        # takes 30 s
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not _committed(source_state):
            time.sleep(0.1)
        assert proc.poll() is None, "the monitor finished (or died) before it was signalled"
        progress = _committed(source_state)
        assert progress > 0, "no progress committed within 240 s"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "summary" in err
    assert state.exists() and source_state.exists()
    committed = json.loads(source_state.read_text())["committed"]
    assert committed >= progress > 0
