"""Speed-up of ``sine annotate --archive`` with 1 vs 2 Dask worker processes on the same archive, side by side.

Writes a simulated SDS archive (``sine_seisbench.archive.write_example_archive``: the project's simulator,
coloured noise and earthquakes on the ``demo_network`` stations), then processes the same span with

* a ``LocalCluster`` of 1 worker process × 1 thread, torch threads 1 (the baseline),
* a ``LocalCluster`` of 2 worker processes × 1 thread each, torch threads 1 (scale-out),
* for context, a ``LocalCluster`` of 1 worker process with 2 torch threads (one process using both cores),

in interleaved repeats (fresh output folders, clusters started and warmed up before the timer: the model is
loaded on every worker first). It checks that every run writes identical daily files, records the load average
and the workers' peak RSS, and writes a markdown report.

Run from the repository root on an otherwise idle machine::

    .venv/bin/python benchmarks/archive_speedup.py --stations 16 --hours 2 --chunk 10min --repeats 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Workers inherit the environment: a private SeisBench cache, no downloads.
os.environ.setdefault("SEISBENCH_CACHE_ROOT", tempfile.mkdtemp(prefix="sine-archive-bench-cache-"))

import obspy  # noqa: E402
import torch  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from sine_seisbench.archive import (  # noqa: E402
    annotate_archive,
    get_model,
    write_example_archive,
)
from sine_seisbench.model import DEFAULT_WEIGHTS  # noqa: E402

START = obspy.UTCDateTime("2019-07-06T00:00:00")


def peak_rss_mib() -> float:
    """Peak resident set of this process (MiB); run on every worker."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Current resident set of this process (MiB); run on every worker."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def warm(weights: str, threads: int) -> int:
    """Loads the model on a worker (and sets its torch threads) before the timer starts."""
    get_model(weights, threads)
    return os.getpid()


def daily_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("picks", "events")
        for p in sorted((out / sub).glob("*"))
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=16)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--chunk", default="10min")
    parser.add_argument("--events-per-hour", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--out", default="benchmarks/results/archive_speedup.md")
    parser.add_argument(
        "--workdir", help="folder for the archive and outputs (default: a temp folder)"
    )
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sine-archive-bench-"))
    root = work / "sds"
    duration = args.hours * 3600
    n_events = int(round(args.events_per_hour * args.hours))
    pad = 300.0
    event_times = [
        START + pad + (duration - 2 * pad) * (i + 0.5) / n_events for i in range(n_events)
    ]
    t = time.perf_counter()
    inventory, _ = write_example_archive(
        root, START - pad, duration + 2 * pad, event_times, n_stations=args.stations, seed=3
    )
    xml = work / "stations.xml"
    inventory.write(str(xml), format="STATIONXML")
    print(
        f"archive: {args.stations} stations x {args.hours:g} h (+ pads) in {time.perf_counter() - t:.1f} s"
    )
    get_model(args.weights)  # the client loads it once too (validation, plan)

    configs = [
        ("1 worker x 1 torch thread", 1, 1),
        ("2 workers x 1 torch thread", 2, 1),
        ("1 worker x 2 torch threads", 1, 2),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    rss: dict[str, tuple[float, float]] = {}
    loads: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    startup: dict[str, float] = {}
    reference: dict[
        int, dict[str, bytes]
    ] = {}  # torch threads -> daily files of the first such run
    identical = True
    tasks = picks = events = 0
    for repeat in range(args.repeats):
        for name, n_workers, threads in configs:
            t = time.perf_counter()
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            client = Client(cluster)
            client.run(warm, args.weights, threads)  # warm: the model is loaded on every worker
            base = client.run(rss_mib)
            startup[name] = time.perf_counter() - t
            out = work / f"out_{repeat}_{n_workers}w{threads}t"
            loads[name].append(os.getloadavg()[0])
            t = time.perf_counter()
            result = annotate_archive(
                root,
                xml,
                START,
                START + duration,
                out,
                weights=args.weights,
                scheduler=client,
                chunk=args.chunk,
                torch_threads=threads,
                progress=False,
            )
            elapsed = time.perf_counter() - t
            times[name].append(elapsed)
            peak = client.run(peak_rss_mib)
            rss[name] = (max(peak.values()), max(peak[w] - base[w] for w in peak))
            client.close()
            cluster.close()
            files = daily_files(out)
            identical &= files == reference.setdefault(threads, files)
            tasks, picks, events = result.tasks, result.picks, result.events
            print(
                f"repeat {repeat + 1}: {name}: {elapsed:.1f} s ({result.tasks} tasks, "
                f"{result.picks} picks, {result.events} events)",
                flush=True,
            )

    one, two = reference[1], reference[2]
    same_picks = {k: v for k, v in one.items() if k.startswith("picks")} == {
        k: v for k, v in two.items() if k.startswith("picks")
    }
    same_events = {k: v for k, v in one.items() if k.startswith("events")} == {
        k: v for k, v in two.items() if k.startswith("events")
    }
    med = {name: statistics.median(v) for name, v in times.items()}
    base_name, scale_name, threads_name = (c[0] for c in configs)
    speedup = med[base_name] / med[scale_name]
    station_hours = args.stations * args.hours
    lines = [
        "# Archive processing on Dask: speed-up with 1 vs 2 worker processes",
        "",
        f"- Command: `{' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}`",
        f"- Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- Machine: nproc={os.cpu_count()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, torch {torch.__version__}",
        f"- Archive: simulated SDS, {args.stations} stations x 3 channels x {args.hours:g} h at 100 Hz "
        f"({station_hours:g} station-hours), {n_events} earthquakes; chunks of {args.chunk} with 120 s pads "
        f"-> {tasks} tasks; weights `{args.weights}`",
        f"- Output: {picks} picks, {events} events per run; daily files byte-identical across worker counts "
        f"and repeats with the same torch threads: **{'yes' if identical else 'NO'}**; 2 vs 1 torch "
        f"thread(s): picks {'identical' if same_picks else 'DIFFERENT'}, events "
        f"{'identical' if same_events else 'differ (float32 rounding of the event head)'}",
        f"- Timed: `annotate_archive` on a started, warmed-up `LocalCluster` (model loaded on every worker), "
        f"{args.repeats} interleaved repeat(s), median shown; cluster start-up and warm-up not timed",
        "",
        "| configuration | wall s (median) | all runs s | station-hours/s | speed-up vs 1 worker x 1 thread "
        "| 1-min load before runs | worker peak RSS MiB | peak growth MiB |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for name, _, _ in configs:
        lines.append(
            f"| {name} | {med[name]:.1f} | {', '.join(f'{v:.1f}' for v in times[name])} | "
            f"{station_hours / med[name]:.2f} | {med[base_name] / med[name]:.2f}x | "
            f"{', '.join(f'{v:.2f}' for v in loads[name])} | {rss[name][0]:.0f} | {rss[name][1]:.0f} |"
        )
    lines += [
        "",
        f"**Speed-up, 2 worker processes vs 1 (1 torch thread each): {speedup:.2f}x** "
        f"(target >= 1.7x: {'met' if speedup >= 1.7 else 'not met'}).",
        "",
        f"For context, one worker process with 2 torch threads (intra-op parallelism instead of processes) "
        f"runs at {med[base_name] / med[threads_name]:.2f}x the single-thread baseline, against "
        f"{speedup:.2f}x for two single-thread processes.",
        "",
        "- Peak RSS: the largest worker high-water mark (ru_maxrss) after the run; growth: that minus the "
        "worker's RSS after loading the model.",
        "- Cluster start-up + model warm-up (not timed above): "
        + ", ".join(f"{name}: {startup[name]:.1f} s" for name, _, _ in configs),
        "- The machine is shared; the load average before each run is listed. Rerun on an idle machine for "
        "cleaner numbers.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"report written to {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
