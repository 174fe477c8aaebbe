"""Throughput (station-hours per second) of SINE ``classify`` (picks + events, shipped default weights) and
PhaseNet ``annotate`` against the number of stations, with the network's FLOPs per station-hour and the fraction
of this CPU's peak they reach.

For each N of ``--stations`` (default 1, 2, 4, 8, 16, 32, 64, 128, 300) a network of N virtual stations is built
as in ``annotate_speed.py`` (ObsPy's real BW.RJOB record, tiled, stations scattered within 50 km), with a record
length of ``--station-minutes / N`` minutes clipped to ``[--min-minutes, --max-minutes]`` (default 480 station-
minutes: 60 min up to 8 stations, 30 min at 16, 15 at 32, 10 min from 48 stations up), so that large networks fit
in memory and the whole curve runs in minutes. (Until 2026-12-02 SINE's event step also reran the network on
every candidate window, 16 stations x 30 s each, twice the annotate pass on 32 stations x 2 min; with the shipped
weights it now takes the annotation's stacked curves.) Both models are warmed up on the network's first 2 minutes, then timed
alternating (``--repeats``, median).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one batch of windows (SINE: one group of
``max_stations`` stations through ``run_groups`` as ``annotate`` runs it; PhaseNet: the same number of
single-station windows) and scaled to a station-hour by the windows per station-hour at each model's stride
(window length minus overlap). They count the network's annotate pass only: with the shipped weights SINE's event
step runs no network (it takes the annotation's curves) and spends its time in numpy. The
CPU's peak is estimated in the same run as the float32 GFLOP/s of a large ``torch.matmul`` with the same number
of threads (a practical peak, below the data-sheet one).

Run from the repository root::

    python benchmarks/throughput_curve.py --threads 2
    python benchmarks/throughput_curve.py --stations 1,2,4 --station-minutes 20 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_speed import WARMUP_SECONDS, build_network, cpu_model, setup_cache  # noqa: E402

DEFAULT_STATIONS = "1,2,4,8,16,32,64,128,300"


def matmul_peak_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """Float32 GFLOP/s of ``size`` x ``size`` matrix products (best of repeated runs over ``seconds``)."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


def count_flops(fn: Any) -> int:
    """FLOPs of ``fn()`` (torch operators only)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def sine_flops_per_station_window(model: Any) -> float:
    """FLOPs per station of one SINE annotate window (a full group through ``run_groups``, event branch off)."""
    n_st = model.max_stations
    names = [f"XX.S{i:02d}." for i in range(n_st)]
    # counted in torch: FlopCounterMode sees torch's operations, not ONNX Runtime's
    argdict = dict(model.default_args, inference_backend="torch")
    from sine_seisbench.geometry import Coordinates
    from sine_seisbench.pipeline.prepare import StationSet
    from sine_seisbench.pipeline.run import run_groups

    stations = StationSet(
        {name: Coordinates(47.0 + 0.05 * i, 12.0 + 0.03 * i, 500.0) for i, name in enumerate(names)}
    )
    rng = np.random.default_rng(0)
    window = rng.normal(size=(n_st, model.in_channels, model.in_samples)).astype(np.float32)
    flops = count_flops(
        lambda: run_groups(model, stations, [window], [names], argdict, event=False)
    )
    return flops / n_st


def phasenet_flops_per_window(model: Any, batch: int = 16) -> float:
    x = torch.randn(batch, model.in_channels, model.in_samples)
    with torch.no_grad():
        flops = count_flops(lambda: model(x))
    return flops / batch


def windows_per_station_hour(model: Any) -> float:
    """Windows per station-hour at the model's default overlap."""
    overlap = model.default_args.get("overlap", model._annotate_args.get("overlap", (None, 0))[1])
    stride = model.in_samples - int(overlap)
    return 3600.0 * model.sampling_rate / stride


def minutes_for(n: int, args: argparse.Namespace) -> float:
    return float(np.clip(args.station_minutes / n, args.min_minutes, args.max_minutes))


def time_point(sine: Any, phasenet: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    minutes = minutes_for(n, args)
    t0 = time.perf_counter()
    stream, inventory = build_network(n, minutes / 60.0, args.seed)
    build_s = time.perf_counter() - t0
    warm = stream.slice(
        stream[0].stats.starttime, stream[0].stats.starttime + WARMUP_SECONDS
    ).copy()
    sine.classify(warm, inventory=inventory)
    phasenet.annotate(warm)
    times: dict[str, list[float]] = {"sine": [], "phasenet": []}
    load_before = os.getloadavg()[0]
    events = picks = 0
    for _ in range(args.repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = sine.classify(stream, inventory=inventory)
        times["sine"].append(time.perf_counter() - t0)
        events, picks = len(result.events), len(result.picks)
        del result
        gc.collect()
        t0 = time.perf_counter()
        out = phasenet.annotate(stream)
        times["phasenet"].append(time.perf_counter() - t0)
        del out
    sh = n * minutes / 60.0
    row = {
        "stations": n,
        "minutes": minutes,
        "station_hours": sh,
        "build_s": build_s,
        "sine_s": statistics.median(times["sine"]),
        "phasenet_s": statistics.median(times["phasenet"]),
        "sine_runs": times["sine"],
        "phasenet_runs": times["phasenet"],
        "events": events,
        "picks": picks,
        "load": [load_before, os.getloadavg()[0]],
    }
    row["sine_sh_per_s"] = sh / row["sine_s"]
    row["phasenet_sh_per_s"] = sh / row["phasenet_s"]
    print(
        f"{n:4d} stations x {minutes:5.1f} min: SINE classify {row['sine_sh_per_s']:7.2f} station-h/s, "
        f"PhaseNet annotate {row['phasenet_sh_per_s']:7.2f} station-h/s, ratio "
        f"{row['sine_sh_per_s'] / row['phasenet_sh_per_s']:.2f}; {events} events; load {load_before:.2f}",
        flush=True,
    )
    del stream
    gc.collect()
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = [r["stations"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [r["sine_sh_per_s"] for r in rows], "o-", label="SINE classify (picks + events)")
    ax.plot(n, [r["phasenet_sh_per_s"] for r in rows], "s-", label="PhaseNet annotate")
    ax.set_xscale("log")
    ax.set_xlabel("stations")
    ax.set_ylabel("station-hours per second")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", default=DEFAULT_STATIONS, help="comma-separated station counts")
    p.add_argument("--station-minutes", type=float, default=480.0)
    p.add_argument("--min-minutes", type=float, default=10.0)
    p.add_argument("--max-minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seisbench-cache", default=None, help="default $SEISBENCH_CACHE_ROOT")
    p.add_argument("--out", default="benchmarks/results/throughput_curve")
    args = p.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    torch.set_num_threads(args.threads)
    cache_ok = setup_cache(args.seisbench_cache)

    import seisbench
    import seisbench.models as sbm

    from sine_seisbench.loader import load_weights

    sine = load_weights(None).eval()
    phasenet = (sbm.PhaseNet.from_pretrained("original") if cache_ok else sbm.PhaseNet()).eval()
    peak = matmul_peak_gflops()
    sine_fpw = sine_flops_per_station_window(sine)
    pn_fpw = phasenet_flops_per_window(phasenet)
    sine_fpsh = sine_fpw * windows_per_station_hour(sine)
    pn_fpsh = pn_fpw * windows_per_station_hour(phasenet)
    print(
        f"peak (matmul) {peak:.1f} GFLOP/s; FLOPs per station-hour: SINE annotate {sine_fpsh / 1e9:.1f} G, "
        f"PhaseNet {pn_fpsh / 1e9:.1f} G",
        flush=True,
    )
    rows = [time_point(sine, phasenet, int(n), args) for n in args.stations.split(",") if n.strip()]
    for r in rows:
        r["sine_gflops_per_s"] = sine_fpsh * r["sine_sh_per_s"] / 1e9
        r["phasenet_gflops_per_s"] = pn_fpsh * r["phasenet_sh_per_s"] / 1e9
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "seisbench": seisbench.__version__,
        "python": platform.python_version(),
        "peak_gflops_matmul": peak,
        "sine_flops_per_station_hour": sine_fpsh,
        "phasenet_flops_per_station_hour": pn_fpsh,
        "phasenet_weights": "original" if cache_ok else "random init",
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    plotted = plot(rows, out.with_suffix(".png"))
    lines = [
        "# Throughput vs number of stations: SINE classify and PhaseNet annotate",
        "",
        f"- Command: `{command}`",
        f"- Date: {meta['date']}; CPU: {meta['cpu']}, nproc {meta['nproc']}, torch threads {args.threads}; "
        f"torch {torch.__version__}, seisbench {seisbench.__version__}",
        f"- SINE: shipped default weights; PhaseNet: {meta['phasenet_weights']}. Record length per point: "
        f"{args.station_minutes:g} station-minutes / N, clipped to [{args.min_minutes:g}, {args.max_minutes:g}] "
        f"min; {args.repeats} alternating repeat(s), median",
        f"- CPU peak estimate: {peak:.1f} GFLOP/s (float32 2048x2048 matmul, {args.threads} threads, best of 2 s, "
        "measured in this run)",
        f"- FLOPs per station-hour (network annotate pass, FlopCounterMode on one batch): SINE "
        f"{sine_fpsh / 1e9:.1f} GFLOP, PhaseNet {pn_fpsh / 1e9:.1f} GFLOP. SINE classify's event step "
        "(shipped weights) takes the annotation's curves and runs in numpy (not counted).",
        "",
        "| Stations | Minutes | Station-hours | SINE classify station-h/s | PhaseNet annotate station-h/s | "
        "Ratio | SINE GFLOP/s (% peak) | PhaseNet GFLOP/s (% peak) | Events | Load before/after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stations']} | {r['minutes']:.1f} | {r['station_hours']:.2f} | {r['sine_sh_per_s']:.2f} | "
            f"{r['phasenet_sh_per_s']:.2f} | {r['sine_sh_per_s'] / r['phasenet_sh_per_s']:.2f}x | "
            f"{r['sine_gflops_per_s']:.1f} ({100 * r['sine_gflops_per_s'] / peak:.0f} %) | "
            f"{r['phasenet_gflops_per_s']:.1f} ({100 * r['phasenet_gflops_per_s'] / peak:.0f} %) | "
            f"{r['events']} | {r['load'][0]:.2f} / {r['load'][1]:.2f} |"
        )
    lines += [
        "",
        "- GFLOP/s = FLOPs per station-hour x station-hours per second (the network's useful work; SINE's "
        "includes the whole classify wall time, so its share of peak is lower by the event step's share).",
        f"- Raw numbers: `{out.with_suffix('.json').name}`"
        + (f"; plot: `{out.with_suffix('.png').name}`" if plotted else ""),
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
