"""Real-time factor and end-to-end latency of ``sine monitor`` for 10, 50 and 100 stations at 100 Hz.

The data: ObsPy's real BW.RJOB record (an earthquake every 30 s) on N virtual stations
(:func:`sine_seisbench.example.network_stream`), 3 components at 100 Hz, cut into 1 s packets.

* **Real-time factor** (data seconds processed per wall second, > 1 keeps up) per source: files as fast as
  possible; Redis and Kafka with every packet published first, then consumed as fast as possible (so the figure
  includes decoding and the broker round trips).
* **Latency** per source at real-time speed: a publisher (thread) sends 1 s packets as the data's clock
  advances; latency = wall time an event's first version is published − publish time of the newest packet the
  monitor had ingested when it ran the step that produced it (Redis entry id / Kafka timestamp / replay clock).

Redis (Debian's redis-server) and the tansu Kafka-protocol broker run on 127.0.0.1 only, started here.

Run from the repository root::

    .venv/bin/python benchmarks/monitor_speed.py --stations 10 50 100 --seconds 240 --latency-seconds 120
    # only the Kafka replays at 50 and 100 stations (once 100 % CPU and 3.6 GB for minutes), no latency runs
    .venv/bin/python benchmarks/monitor_speed.py --cases kafka:50 kafka:100 --latency-stations

The packets are cut and encoded before the clock starts; that step is timed too ("prepare (s)"): it once
deep-copied the whole record and its instrument response for every packet (minutes and gigabytes at 50 and
100 stations, the Kafka replay's "spin").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sine_seisbench import SINE  # noqa: E402
from sine_seisbench.example import network_stream  # noqa: E402
from sine_seisbench.model import DEFAULT_WEIGHTS  # noqa: E402
from sine_seisbench.monitor.engine import StreamingClassifier  # noqa: E402
from sine_seisbench.monitor.replay import FileSource  # noqa: E402
from sine_seisbench.monitor.schema import encode_packet, split_packets  # noqa: E402
from sine_seisbench.monitor.service import Monitor  # noqa: E402


class NullSink:
    name = "null"

    def publish(self, messages):
        pass

    def dead_letter(self, payload, reason, position):
        pass

    def close(self):
        pass


def make_record(n: int, seconds: float):
    stream, inv = network_stream(n, repeat=int(np.ceil(seconds / 30.0)))
    return stream, inv


def monitor(model, inv, source, anchor=None):
    engine = StreamingClassifier(model, inv, anchor=anchor)
    return Monitor(engine, source, [NullSink()], commit_interval_s=1.0)


def run_files(model, stream, inv, speed):
    folder = Path(tempfile.mkdtemp())
    for tr in stream:
        tr.write(str(folder / f"{tr.id}.mseed"), format="MSEED")
    t0 = time.perf_counter()
    summary = monitor(model, inv, FileSource(str(folder), speed=speed)).run()
    return time.perf_counter() - t0, summary


def run_broker(kind, server, model, stream, inv, realtime: bool):
    t_prep = time.perf_counter()
    packets = split_packets(stream, 1.0)
    topic = f"bench{time.time_ns()}"
    if kind == "redis":
        from sine_seisbench.monitor.redis_io import RedisSource, publish_packets

        def publish(batch):
            publish_packets(server.url, topic, batch)

        def source():
            return RedisSource(server.url, topic, block_ms=200)
    else:
        from sine_seisbench.monitor.kafka_io import KafkaSource, ensure_topic, publish_packets

        ensure_topic(server.bootstrap, topic, partitions=1)

        def publish(batch):
            publish_packets(server.bootstrap, topic, batch)

        def source():
            return KafkaSource(server.bootstrap, topic, group=topic, group_mode="assign")

    encoded = [(p, encode_packet(p, "mseed")) for p in packets]
    if not realtime:
        for i in range(0, len(encoded), 1000):
            publish([b for _, b in encoded[i : i + 1000]])
        PREPARE[(kind, len(stream) // 3)] = time.perf_counter() - t_prep
        before = _status_mb("VmRSS") if _reset_peak() else None
        t0 = time.perf_counter()
        summary = monitor(model, inv, source()).run(stop_when_idle_s=3.0)
        wall = time.perf_counter() - t0 - 3.0
        peak = _status_mb("VmHWM")
        if before is not None and peak is not None:
            GROWTH[(kind, len(stream) // 3)] = (before, peak)
        return wall, summary

    def publisher():
        t_wall = time.time()
        t_data = packets[0].stats.starttime.timestamp
        batch = []
        for p, b in encoded:
            due = t_wall + (p.stats.endtime.timestamp + p.stats.delta - t_data)
            if due > time.time() and batch:
                publish(batch)
                batch = []
            if due > time.time():
                time.sleep(due - time.time())
            batch.append(b)
        if batch:
            publish(batch)

    mon = monitor(model, inv, source())
    threading.Thread(target=publisher, daemon=True).start()
    t0 = time.perf_counter()
    summary = mon.run(stop_when_idle_s=5.0)
    return time.perf_counter() - t0, summary


PREPARE: dict[
    tuple[str, int], float
] = {}  # (source, stations) -> seconds to cut, encode and publish


def _status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process in MB (Linux), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Resets the process's peak RSS mark (``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


#: (source, stations) -> (RSS before the monitor ran, peak RSS while it ran) in MB: the monitor's own growth
GROWTH: dict[tuple[str, int], tuple[float, float]] = {}


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--seconds", type=float, default=240.0, help="data per real-time-factor run")
    ap.add_argument("--latency-seconds", type=float, default=120.0, help="data per latency run")
    ap.add_argument("--latency-stations", type=int, nargs="*", default=[50])
    ap.add_argument("--sources", nargs="+", default=["files", "redis", "kafka"])
    ap.add_argument(
        "--cases",
        nargs="+",
        metavar="SOURCE:STATIONS",
        help="real-time-factor runs instead of --stations x --sources, e.g. kafka:50 kafka:100",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/monitor_speed.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    if args.cases:
        cases = [(int(c.split(":")[1]), c.split(":")[0]) for c in args.cases]
        args.sources = sorted({src for _, src in cases})
    else:
        cases = [(n, src) for n in args.stations for src in args.sources]

    import services

    servers = {}
    if "redis" in args.sources:
        servers["redis"] = services.redis_server(tempfile.mkdtemp(), appendonly=False)
    if "kafka" in args.sources:
        servers["kafka"] = services.tansu_broker()
    live = {k: ctx.__enter__() for k, ctx in servers.items()}
    rows, lat_rows = [], []
    try:
        records = {}
        for n, src in cases:
            if n not in records:
                records = {n: make_record(n, args.seconds)}
            stream, inv = records[n]
            data_s = stream[0].stats.endtime - stream[0].stats.starttime
            if src == "files":
                wall, summary = run_files(model, stream, inv, speed=None)
            else:
                wall, summary = run_broker(src, live[src], model, stream, inv, realtime=False)
            prep = PREPARE.get((src, n))
            rows.append(
                (n, src, data_s, wall, data_s / wall, summary["events"], prep, _max_rss_mb())
            )
            print(
                f"RTF {n:4d} stations {src:6s}: {data_s:.0f} s of data in {wall:.1f} s -> "
                f"{data_s / wall:.2f}x real time, {summary['events']} events"
                + ("" if prep is None else f", packets prepared in {prep:.1f} s")
                + f", peak RSS {_max_rss_mb():.0f} MB",
                flush=True,
            )
        for n in args.latency_stations:
            stream, inv = make_record(n, args.latency_seconds)
            for src in args.sources:
                if src == "files":
                    wall, summary = run_files(model, stream, inv, speed=1.0)
                else:
                    wall, summary = run_broker(src, live[src], model, stream, inv, realtime=True)
                lat_rows.append(
                    (
                        n,
                        src,
                        summary["latency_median_s"],
                        summary["latency_p95_s"],
                        summary["events"],
                    )
                )
                print(
                    f"latency {n} stations {src}: median {summary['latency_median_s']}, p95 "
                    f"{summary['latency_p95_s']}, {summary['events']} events",
                    flush=True,
                )
    finally:
        for ctx in servers.values():
            ctx.__exit__(None, None, None)

    stride = (model.in_samples - model.default_args.get("overlap", 1500)) / model.sampling_rate
    lines = [
        "# sine monitor: real-time factor and latency",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{args.threads} torch threads, CPU only; `{' '.join(sys.argv)}`.",
        "Data: ObsPy's real BW.RJOB record on N virtual stations, 3 components at 100 Hz, 1 s packets; "
        f"SINE {DEFAULT_WEIGHTS}, stride {stride:.2f} s (default), max_latency 10 s.",
        "",
        "## Real-time factor (data seconds per wall second; > 1 keeps up)",
        "",
        "| stations | source | data (s) | wall (s) | real-time factor | events | prepare (s) | peak RSS (MB) "
        "| monitor's RSS growth (MB) | per station (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s, d, w, r, e, p, m in rows:
        before, peak = GROWTH.get((s, n), (None, None))
        growth = "-" if before is None else f"{peak - before:.0f}"
        per_station = "-" if before is None else f"{(peak - before) / n:.2f}"
        lines.append(
            f"| {n} | {s} | {d:.0f} | {w:.1f} | {r:.2f} | {e} | {'-' if p is None else f'{p:.1f}'} | {m:.0f} "
            f"| {growth} | {per_station} |"
        )
    lines += [
        "",
        "Peak RSS: the whole process's high-water mark (it holds every prepared packet, decoded and encoded, "
        "besides the monitor). Monitor's RSS growth: peak RSS while the monitor ran (mark reset just before) minus "
        "the RSS just before it started; per station: that growth / stations.",
    ]
    lines += [
        "",
        "## Latency at real-time speed (packet published → first event version published)",
        "",
        "| stations | source | median (s) | p95 (s) | events |",
        "|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {s} | {'-' if m is None else f'{m:.2f}'} | {'-' if p is None else f'{p:.2f}'} | {e} |"
        for n, s, m, p, e in lat_rows
    ]
    lines += [
        "",
        f"Target (issue 16): 300 stations in real time through Redis on 2 cores, median latency ≤ stride + 1 s = "
        f"{stride + 1:.2f} s; Kafka at 100 stations measured.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(json.dumps({"rtf": rows, "latency": lat_rows}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
