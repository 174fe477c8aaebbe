"""Times ``annotate`` of SINE, PhaseNet and EQTransformer on the same multi-station stream (N stations x T hours),
or (``--mode classify``) SINE's ``classify`` (picks and events) against PhaseNet's ``annotate``.

The stream is built from ObsPy's bundled real record BW.RJOB (30 s, 100 Hz), tiled to T hours and copied to N
virtual stations with per-station shifts, amplitudes and seeded noise. Every model is warmed up once on a
2-minute stream, then timed with ``time.perf_counter`` on the full stream. Prints wall seconds, station-hours per
second and the throughput ratio to PhaseNet, and writes a markdown report.

SINE runs with the shipped default weights (``--sine-weights``, a spec of :func:`sine_seisbench.loader.load_weights`).
PhaseNet/EQTransformer load their published ``original`` weights from the SeisBench cache given by
``--seisbench-cache`` (default ``$SEISBENCH_CACHE_ROOT``; used in place, only read), with random weights of the
same architecture when they are not there.

Run from the repository root::

    python benchmarks/annotate_speed.py --stations 16 --hours 1.0 --threads 2
    # SINE classify vs PhaseNet annotate at 16 stations x 1 h and 2 stations x 1 h, alternating, median of 3:
    python benchmarks/annotate_speed.py --mode classify --configs 16x1,2x1 --repeats 3 \
        --out benchmarks/results/classify_speed.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import torch
from obspy.core.inventory import Channel, Inventory, Network, Site, Station

#: Location of BW.RJOB; the virtual network is scattered around it.
CENTRE = (47.737, 12.796)
SAMPLING_RATE = 100.0
KM_PER_DEG = 111.19
WARMUP_SECONDS = 120.0


@dataclass
class Result:
    """Timing of one model."""

    model: str
    times: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    rss_before_mib: float = 0.0
    out_traces: int = 0
    weights: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


# ------------------------------------------------------------------------------------------------
# Input data
# ------------------------------------------------------------------------------------------------
def station_positions(
    n: int, radius_km: float = 50.0, seed: int = 0
) -> list[tuple[float, float, float]]:
    """Latitude, longitude and elevation (m) of ``n`` stations scattered uniformly within ``radius_km``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = radius_km * math.sqrt(rng.uniform())
        az = rng.uniform(0.0, 2.0 * math.pi)
        lat = CENTRE[0] + r * math.cos(az) / KM_PER_DEG
        lon = CENTRE[1] + r * math.sin(az) / (KM_PER_DEG * math.cos(math.radians(CENTRE[0])))
        out.append((lat, lon, float(rng.uniform(300.0, 1500.0))))
    return out


def make_inventory(
    names: list[str], positions: list[tuple[float, float, float]], network: str = "XX"
) -> Inventory:
    """Inventory with HHZ/HHN/HHE channels (no responses) for the virtual stations."""
    stations = []
    for name, (lat, lon, elev) in zip(names, positions, strict=True):
        channels = [
            Channel(
                f"HH{c}", "", lat, lon, elev, 0.0, azimuth=az, dip=dip, sample_rate=SAMPLING_RATE
            )
            for c, az, dip in (("Z", 0.0, -90.0), ("N", 0.0, 0.0), ("E", 90.0, 0.0))
        ]
        stations.append(Station(name, lat, lon, elev, channels=channels, site=Site(name=name)))
    return Inventory(
        networks=[Network(network, stations=stations)], source="sine-seisbench benchmark"
    )


def build_network(
    n_stations: int, hours: float, seed: int = 0, event_every_s: float | None = None
) -> tuple[obspy.Stream, Inventory]:
    """A real-data stream of ``n_stations`` virtual stations, ``hours`` long, and their inventory.

    :param event_every_s: Keep the earthquake of only every ``event_every_s / 30``-th copy of the 30 s record
                          (the others become the seeded background noise alone): a realistic event rate instead
                          of one earthquake every 30 s.
    """
    rng = np.random.default_rng(seed)
    base = obspy.read()  # BW.RJOB..EH[ZNE], 30 s at 100 Hz
    base.detrend("demean")
    npts = int(round(hours * 3600 * SAMPLING_RATE))
    reps = math.ceil(npts / base[0].stats.npts) + 1
    tiled = {tr.stats.channel[-1]: np.tile(tr.data.astype(np.float64), reps) for tr in base}
    if event_every_s is not None:
        period = base[0].stats.npts
        keep = max(int(round(event_every_s * SAMPLING_RATE / period)), 1)
        quiet = (np.arange(reps * period) // period) % keep != 0
        for values in tiled.values():
            values[quiet] = 0.0
    noise_level = 0.01 * float(np.std(np.concatenate([tr.data for tr in base])))
    start = base[0].stats.starttime
    names = [f"S{i:02d}" for i in range(n_stations)]
    stream = obspy.Stream()
    for name in names:
        shift = int(rng.integers(0, 10 * int(SAMPLING_RATE)))  # up to 10 s
        scale = float(10.0 ** rng.uniform(-0.5, 0.5))
        for comp in "ZNE":
            data = tiled[comp][shift : shift + npts] * scale + rng.normal(
                0.0, noise_level * scale, npts
            )
            header = {
                "network": "XX",
                "station": name,
                "location": "",
                "channel": f"HH{comp}",
                "sampling_rate": SAMPLING_RATE,
                "starttime": start,
            }
            stream += obspy.Trace(data=data.astype(np.float32), header=header)
    return stream, make_inventory(names, station_positions(n_stations, seed=seed))


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def setup_cache(folder: str | None) -> bool:
    """Points ``SEISBENCH_CACHE_ROOT`` at ``folder`` (default: its current value); must run before ``seisbench``
    is imported. True when the folder holds published weights (``models/v3``), i.e. PhaseNet and EQTransformer
    can load theirs without network access."""
    folder = folder or os.environ.get("SEISBENCH_CACHE_ROOT")
    if not folder:
        return False
    if "seisbench" in sys.modules and os.environ.get("SEISBENCH_CACHE_ROOT") != folder:
        print("warning: seisbench was imported before the cache folder was set", file=sys.stderr)
    os.environ["SEISBENCH_CACHE_ROOT"] = str(folder)
    return (Path(folder) / "models").is_dir()


def load_model(name: str, cache_ok: bool, sine_weights: str | None = None) -> tuple[Any, str]:
    """The model called ``name`` in eval mode and a description of its weights (SINE: ``sine_weights``, a
    weights spec, None for the shipped default)."""
    import seisbench.models as sbm

    if name == "SINE":
        from sine_seisbench import DEFAULT_WEIGHTS
        from sine_seisbench.loader import load_weights

        spec = sine_weights or DEFAULT_WEIGHTS
        return load_weights(spec).eval(), f"{spec}" + (
            " (shipped default)" if sine_weights is None else ""
        )
    cls = {"PhaseNet": sbm.PhaseNet, "EQTransformer": sbm.EQTransformer}[name]
    if cache_ok:
        try:
            return cls.from_pretrained("original").eval(), "pretrained 'original'"
        except Exception as e:  # noqa: BLE001 - fall back to random weights, same architecture
            print(
                f"{name}: could not load pretrained weights ({e}); using random init",
                file=sys.stderr,
            )
    return cls().eval(), "random init (pretrained weights unavailable; same architecture)"


def run_annotate(
    model: Any, name: str, stream: obspy.Stream, inventory: Inventory, args: argparse.Namespace
) -> obspy.Stream:
    kwargs: dict[str, Any] = {"batch_size": args.batch_size}
    if name == "SINE":
        kwargs["inventory"] = inventory
        if args.sine_batch_size is not None:
            kwargs["batch_size"] = args.sine_batch_size
    return model.annotate(stream, **kwargs)


def reset_peak_rss() -> bool:
    """Resets the process's peak-RSS mark (Linux ``/proc/self/clear_refs``); False where that is unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib(reset_ok: bool) -> float:
    """Process-wide peak RSS in MiB since the last reset (``VmHWM``), or ``ru_maxrss`` since process start."""
    if reset_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def source_digest() -> str:
    """Short sha256 over the ``sine_seisbench`` sources, to tie results to a code state."""
    import hashlib

    import sine_seisbench

    root = Path(sine_seisbench.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _ort_versions() -> str:
    """``onnxruntime X, onnx Y`` or ``no``."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return "no"
    return f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(
    args: argparse.Namespace,
    results: list[Result],
    command: str,
    build_s: float,
    load: tuple[float, float],
    rss_mode: str,
) -> str:
    import seisbench

    station_hours = args.stations * args.hours
    ref = {r.model: station_hours / r.seconds for r in results}
    pn = ref.get("PhaseNet")
    eqt = ref.get("EQTransformer")
    lines = [
        f"## {args.stations} stations x {args.hours:g} h, {args.threads} torch thread(s), batch_size {args.batch_size}"
        + (f" (SINE: {args.sine_batch_size})" if args.sine_batch_size is not None else "")
        + (f", {args.repeats} repeats" if args.repeats > 1 else ""),
        "",
        f"- Command: `{command}`",
        f"- Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- Machine: nproc={os.cpu_count()}, CPU: {cpu_model()}, torch threads={torch.get_num_threads()}, "
        f"torch interop threads={torch.get_num_interop_threads()}",
        f"- Versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"seisbench {seisbench.__version__}, obspy {obspy.__version__}, numpy {np.__version__}; "
        f"sine_seisbench sources sha256 {source_digest()}",
        f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} (set in this machine's "
        "environment; left as is)",
        f"- Input: {args.stations} virtual stations x 3 channels x {args.hours:g} h at 100 Hz from ObsPy's real "
        f"BW.RJOB record ({station_hours:g} station-hours; stream built in {build_s:.1f} s, not timed)",
        f"- 1-min load average before / after the run: {load[0]:.2f} / {load[1]:.2f} (other processes on the "
        "machine distort the timings; rerun if the load before is well above 0)",
        f"- Repeats: {args.repeats} (median wall time shown); each model warmed up once on a 2-minute stream",
        "",
        "| Model | Weights | Wall s | Station-hours/s | Ratio to PhaseNet | Output traces | Peak RSS (MiB) "
        "| Peak RSS growth (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        thr = ref[r.model]
        ratio = f"{thr / pn:.2f}x" if pn else "n/a"
        lines.append(
            f"| {r.model} | {r.weights} | {r.seconds:.1f} | {thr:.2f} | {ratio} | {r.out_traces} | "
            f"{r.peak_rss_mib:.0f} | {r.peak_rss_mib - r.rss_before_mib:.0f} |"
        )
    lines.append("")
    if "SINE" in ref:
        if pn:
            lines.append(
                f"- Target SINE >= 0.5x PhaseNet: {ref['SINE'] / pn:.2f}x -> "
                f"{'met' if ref['SINE'] >= 0.5 * pn else 'NOT met'}"
            )
        if eqt:
            lines.append(
                f"- Target SINE >= 1x EQTransformer: {ref['SINE'] / eqt:.2f}x -> "
                f"{'met' if ref['SINE'] >= eqt else 'NOT met'}"
            )
    lines += [
        f"- Peak RSS: process-wide resident-set high-water mark during that model's timed run(s) ({rss_mode}); "
        "it includes the input stream and everything else the process holds. Growth: that peak minus the RSS "
        "just before the timed run(s).",
        "- Timing covers the whole `annotate` call (pre-processing, windowing, inference, stacking).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--mode",
        choices=("annotate", "classify"),
        default="annotate",
        help="annotate: annotate of every --models model; classify: SINE classify (picks + events) against "
        "PhaseNet annotate on each of --configs",
    )
    p.add_argument("--stations", type=int, default=16, help="number of virtual stations")
    p.add_argument("--hours", type=float, default=1.0, help="stream length in hours")
    p.add_argument(
        "--configs",
        default="16x1,2x1",
        help="classify mode: comma-separated STATIONSxHOURS networks, each timed side by side",
    )
    p.add_argument(
        "--event-every",
        type=float,
        default=None,
        help="classify mode: one earthquake every this many seconds (default: every 30 s, the record tiled as "
        "it is); the other copies of the record become background noise",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch-size", type=int, default=256, help="annotate batch_size")
    p.add_argument(
        "--sine-batch-size",
        type=int,
        default=None,
        help="batch_size for SINE only (default: SINE's own, about 256 station-windows per forward pass: "
        "256 // group size windows of a station group)",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed runs per model (median reported)")
    p.add_argument("--models", default="SINE,PhaseNet,EQTransformer", help="comma-separated models")
    p.add_argument(
        "--sine-weights",
        default=None,
        help="SINE weights spec (default: the shipped default weights; 'untrained' for random ones)",
    )
    p.add_argument(
        "--seisbench-cache",
        default=None,
        help="SeisBench cache folder with the published PhaseNet/EQTransformer weights (default "
        "$SEISBENCH_CACHE_ROOT); only read",
    )
    p.add_argument("--out", default=None, help="markdown report path (default by mode)")
    p.add_argument("--append", action="store_true", help="append to --out instead of overwriting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = (
            f"benchmarks/results/{'annotate' if args.mode == 'annotate' else 'classify'}_speed.md"
        )
    return args


def write_report(args: argparse.Namespace, title: str, text: str) -> None:
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and out.exists():
        out.write_text(out.read_text().rstrip("\n") + "\n\n" + text)
    else:
        out.write_text(f"# {title}\n\n" + text)
    print(f"report written to {out}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    torch.set_num_threads(args.threads)
    cache_ok = setup_cache(args.seisbench_cache)  # before seisbench is imported
    if not cache_ok:
        print(
            "SeisBench cache with published weights not found (--seisbench-cache / SEISBENCH_CACHE_ROOT): "
            "PhaseNet/EQTransformer use random weights",
            file=sys.stderr,
        )
    if args.mode == "classify":
        main_classify(args, command, cache_ok)
        return

    t0 = time.perf_counter()
    stream, inventory = build_network(args.stations, args.hours, args.seed)
    build_s = time.perf_counter() - t0
    warm = stream.slice(
        stream[0].stats.starttime, stream[0].stats.starttime + WARMUP_SECONDS
    ).copy()
    print(
        f"stream: {len(stream)} traces, {args.stations * args.hours:g} station-hours "
        f"(built in {build_s:.1f} s); torch threads {torch.get_num_threads()}"
    )

    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(
            f"warning: 1-min load average is {load_before:.2f}; other processes may distort the timings",
            file=sys.stderr,
        )
    results = []
    rss_mode = ""
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, weights = load_model(name, cache_ok, args.sine_weights)
        run_annotate(model, name, warm, inventory, args)  # warm-up
        res = Result(name, weights=weights)
        gc.collect()
        reset_ok = reset_peak_rss()
        res.rss_before_mib = peak_rss_mib(reset_ok)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = run_annotate(model, name, stream, inventory, args)
            res.times.append(time.perf_counter() - t0)
            res.out_traces = len(out)
            del out
        res.peak_rss_mib = peak_rss_mib(reset_ok)
        rss_mode = "VmHWM reset per model" if reset_ok else "ru_maxrss since process start"
        thr = args.stations * args.hours / res.seconds
        print(
            f"{name:14s} {res.seconds:8.1f} s  {thr:7.2f} station-hours/s  "
            f"(runs: {', '.join(f'{t:.1f}' for t in res.times)}; weights: {weights})",
            flush=True,
        )
        results.append(res)
        del model

    text = report(args, results, command, build_s, (load_before, os.getloadavg()[0]), rss_mode)
    write_report(args, "annotate speed benchmark", text)


# ------------------------------------------------------------------------------------------------
# classify mode
# ------------------------------------------------------------------------------------------------
def parse_configs(text: str) -> list[tuple[int, float]]:
    """``"16x1,2x0.5"`` -> ``[(16, 1.0), (2, 0.5)]`` (stations, hours)."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        stations, _, hours = part.strip().lower().partition("x")
        out.append((int(stations), float(hours or 1.0)))
    return out


def time_classify_config(
    sine: Any, phasenet: Any, n_stations: int, hours: float, args: argparse.Namespace
) -> dict[str, Any]:
    """SINE ``classify`` and PhaseNet ``annotate`` on one network, warmed up, then alternating ``--repeats``
    times (the load of the machine hits both alike); medians."""
    stream, inventory = build_network(n_stations, hours, args.seed, args.event_every)
    warm = stream.slice(
        stream[0].stats.starttime, stream[0].stats.starttime + WARMUP_SECONDS
    ).copy()
    sine_kwargs = {"inventory": inventory}
    if args.sine_batch_size is not None:
        sine_kwargs["batch_size"] = args.sine_batch_size
    sine.classify(warm, **sine_kwargs)
    phasenet.annotate(warm, batch_size=args.batch_size)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"SINE classify": [], "PhaseNet annotate": []}
    n_picks = n_events = 0
    for _ in range(args.repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = sine.classify(stream, **sine_kwargs)
        times["SINE classify"].append(time.perf_counter() - t0)
        n_picks, n_events = len(result.picks), len(result.events)
        del result
        gc.collect()
        t0 = time.perf_counter()
        out = phasenet.annotate(stream, batch_size=args.batch_size)
        times["PhaseNet annotate"].append(time.perf_counter() - t0)
        del out
    row = {
        "stations": n_stations,
        "hours": hours,
        "times": times,
        "picks": n_picks,
        "events": n_events,
        "load": (load_before, os.getloadavg()[0]),
    }
    sh = n_stations * hours
    print(
        f"{n_stations} stations x {hours:g} h: "
        + "; ".join(
            f"{k} {statistics.median(v):.1f} s ({sh / statistics.median(v):.2f} station-h/s)"
            for k, v in times.items()
        )
        + f"; {n_picks} picks, {n_events} events; load {row['load'][0]:.2f}/{row['load'][1]:.2f}",
        flush=True,
    )
    return row


def main_classify(args: argparse.Namespace, command: str, cache_ok: bool) -> None:
    import seisbench

    sine, sine_weights = load_model("SINE", cache_ok, args.sine_weights)
    phasenet, pn_weights = load_model("PhaseNet", cache_ok)
    rows = [
        time_classify_config(sine, phasenet, n, h, args) for n, h in parse_configs(args.configs)
    ]
    lines = [
        f"## SINE classify vs PhaseNet annotate, {args.threads} torch thread(s), {args.repeats} "
        "alternating repeat(s)",
        "",
        f"- Command: `{command}`",
        f"- Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- Machine: nproc={os.cpu_count()}, CPU: {cpu_model()}, torch threads={torch.get_num_threads()}",
        f"- Versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"seisbench {seisbench.__version__}; sine_seisbench sources sha256 {source_digest()}",
        f"- Weights: SINE {sine_weights}; PhaseNet {pn_weights}. batch_size: SINE {args.sine_batch_size or 'default (256 // group size)'} "
        f"groups, PhaseNet {args.batch_size} windows",
        f"- SINE inference_backend: default 'auto' (ONNX Runtime installed: {_ort_versions()}); PhaseNet: torch "
        "(SeisBench)",
        "- Input: virtual stations x 3 channels at 100 Hz from ObsPy's real BW.RJOB record (see the module "
        f"docstring), one earthquake every {args.event_every or 30:g} s; each model warmed up on 2 minutes; SINE classify = annotate + picks + association + event "
        "step (location, magnitude); PhaseNet annotate = probabilities only",
        "",
        "| Stations | Hours | SINE classify s | PhaseNet annotate s | SINE station-h/s | PhaseNet station-h/s "
        "| Ratio SINE/PhaseNet | Picks | Events | Load before/after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        sh = row["stations"] * row["hours"]
        ts = statistics.median(row["times"]["SINE classify"])
        tp = statistics.median(row["times"]["PhaseNet annotate"])
        lines.append(
            f"| {row['stations']} | {row['hours']:g} | {ts:.1f} | {tp:.1f} | {sh / ts:.2f} | {sh / tp:.2f} | "
            f"{tp / ts:.2f}x | {row['picks']} | {row['events']} | {row['load'][0]:.2f} / "
            f"{row['load'][1]:.2f} |"
        )
    lines += [
        "",
        "- Targets (issue 16): >= 1.0x at 16 stations x 1 h, >= 0.8x at 2 stations. Runs alternate SINE and "
        "PhaseNet, so load from other processes hits both; the 1-min load average is given per network.",
        "- Per-run wall seconds: "
        + "; ".join(
            f"{r['stations']} st: "
            + ", ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)}" for k, v in r["times"].items())
            for r in rows
        ),
        "",
    ]
    write_report(args, "SINE classify vs PhaseNet annotate", "\n".join(lines))


if __name__ == "__main__":
    main()
