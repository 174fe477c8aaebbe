"""One check of SINE on a GPU (or, with ``--device cpu --quick``, of this script on a CPU): throughput and the
``--device`` paths of the CLI, within about 5 minutes.

Measures, writing ``gpu_check.md``, ``gpu_check.json`` and the CLI logs to ``--out``:

1. **Inference throughput** (station-hours per second) on one virtual network (``annotate_speed.build_network``,
   ObsPy's real BW.RJOB record): SINE ``annotate`` and ``classify`` (shipped default weights), PhaseNet and
   EQTransformer ``annotate`` (published ``original`` weights from the SeisBench cache, else random ones), each
   warmed up, then timed once; with the per-model peak GPU memory (``torch.cuda.max_memory_allocated``).
2. **Device agreement**: SINE ``classify`` on the device and on the CPU over the first minutes of the network:
   numbers of picks and events, the largest pick-time and probability difference of matched picks.
3. **Training throughput**: SINE training steps (forward, backward, AdamW; mixed precision on CUDA) on a fixture
   event dataset in memory, in events per second, with the peak memory.
4. **CLI**: ``sine info``, ``sine classify --device D``, ``sine annotate --device D`` on the network written as
   miniSEED + StationXML, and ``sine train --device D`` for a few steps on the fixture dataset: exit status,
   wall time, the outputs written.

Run (on a lent GPU, from the repository root)::

    bash benchmarks/gpu_check.sh            # results to $OUT, else benchmarks/results/gpu_check
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # the same steps, small, on CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_speed import WARMUP_SECONDS, build_network, cpu_model, setup_cache  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def timed(device: torch.device, fn: Any) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def inference(args: argparse.Namespace, device: torch.device, cache_ok: bool) -> dict[str, Any]:
    """Step 1 and 2."""
    import seisbench.models as sbm

    from sine_seisbench.loader import load_weights

    stream, inventory = build_network(args.stations, args.hours, seed=0)
    warm = stream.slice(
        stream[0].stats.starttime, stream[0].stats.starttime + WARMUP_SECONDS
    ).copy()
    sh = args.stations * args.hours
    sine = load_weights(None, device=device).eval()
    models: dict[str, Any] = {"SINE": sine}
    for name, cls in (("PhaseNet", sbm.PhaseNet), ("EQTransformer", sbm.EQTransformer)):
        model = cls.from_pretrained("original") if cache_ok else cls()
        models[name] = model.to(device).eval()
    runs: dict[str, dict[str, Any]] = {}
    cases = [
        (
            "SINE annotate",
            lambda s: sine.annotate(s, inventory=inventory, batch_size=args.sine_batch),
        ),
        (
            "SINE classify",
            lambda s: sine.classify(s, inventory=inventory, batch_size=args.sine_batch),
        ),
        ("PhaseNet annotate", lambda s: models["PhaseNet"].annotate(s, batch_size=args.batch)),
        (
            "EQTransformer annotate",
            lambda s: models["EQTransformer"].annotate(s, batch_size=args.batch),
        ),
    ]
    for name, fn in cases:
        fn(warm)
        reset_memory(device)
        seconds, out = timed(device, lambda fn=fn: fn(stream))
        extra = {}
        if hasattr(out, "events"):
            extra = {"picks": len(out.picks), "events": len(out.events)}
        runs[name] = {
            "seconds": seconds,
            "station_hours_per_s": sh / seconds,
            "peak_memory_mib": peak_memory_mib(device),
            **extra,
        }
        print(f"{name:24s} {seconds:7.2f} s  {sh / seconds:8.2f} station-h/s  {extra}", flush=True)
    agreement = None
    if device.type != "cpu":
        short = stream.slice(
            stream[0].stats.starttime, stream[0].stats.starttime + 60 * args.agreement_minutes
        ).copy()
        on_device = sine.classify(short, inventory=inventory)
        on_cpu = load_weights(None, device="cpu").eval().classify(short, inventory=inventory)
        agreement = compare_picks(on_cpu, on_device)
        print(f"device vs cpu: {agreement}", flush=True)
    return {"station_hours": sh, "runs": runs, "agreement": agreement}


def compare_picks(a: Any, b: Any, tolerance_s: float = 0.5) -> dict[str, Any]:
    """Picks and events of two classify outputs: counts, unmatched picks, largest time/probability difference."""
    pa = [(p.trace_id, p.phase, p.peak_time.timestamp, float(p.peak_value)) for p in a.picks]
    pb = [(p.trace_id, p.phase, p.peak_time.timestamp, float(p.peak_value)) for p in b.picks]
    left, dt_max, dp_max, matched = list(pb), 0.0, 0.0, 0
    for sid, phase, t, v in pa:
        near = [q for q in left if q[0] == sid and q[1] == phase and abs(q[2] - t) < tolerance_s]
        if near:
            q = min(near, key=lambda q: abs(q[2] - t))
            left.remove(q)
            matched += 1
            dt_max, dp_max = max(dt_max, abs(q[2] - t)), max(dp_max, abs(q[3] - v))
    return {
        "picks": [len(pa), len(pb)],
        "events": [len(a.events), len(b.events)],
        "unmatched": len(pa) - matched + len(left),
        "max_pick_time_diff_s": dt_max,
        "max_pick_prob_diff": dp_max,
    }


def training(args: argparse.Namespace, device: torch.device, folder: Path) -> dict[str, Any]:
    """Step 3 (the dataset is kept in ``folder`` for the CLI's train)."""
    import seisbench.data as sbd
    from torch.utils.data import DataLoader
    from train_speed import training_rate

    from sine_seisbench import SINE
    from sine_seisbench.data.fixture import write_event_dataset
    from sine_seisbench.data.pipeline import build_generator, prepare_dataset

    path = write_event_dataset(folder / "events", n_events=args.train_events, n_stations=16, seed=0)
    ds = prepare_dataset(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    )
    model = SINE(max_stations=16).to(device)
    generator = build_generator(ds.train(), model.max_stations, model.in_samples, training=True)
    batch = next(iter(DataLoader(generator, batch_size=args.train_batch)))
    rate, memory = training_rate(model, batch, device, args.train_steps, amp=device.type == "cuda")
    print(f"training: {rate:.1f} events/s, peak memory {memory:.0f} MiB (nan: CPU)", flush=True)
    return {
        "events_per_s": rate,
        "peak_memory_mib": None if np.isnan(memory) else memory,
        "batch": args.train_batch,
        "steps": args.train_steps,
        "mixed_precision": device.type == "cuda",
        "dataset": str(path),
    }


def cli(args: argparse.Namespace, device: str, folder: Path, out: Path, dataset: str) -> list[dict]:
    """Step 4: the CLI with ``--device``; logs to ``out``."""
    stream, inventory = build_network(args.stations, args.cli_minutes / 60.0, seed=1)
    waveforms = folder / "network.mseed"
    stations = folder / "stations.xml"
    stream.write(str(waveforms), format="MSEED")
    inventory.write(str(stations), format="STATIONXML")
    sine = [sys.executable, "-m", "sine_seisbench.cli", "--quiet"]
    commands = {
        "info": [*sine, "info"],  # lists the torch devices
        "classify": [
            *sine,
            "classify",
            str(waveforms),
            "--inventory",
            str(stations),
            "--device",
            device,
            "--picks",
            str(folder / "picks.csv"),
            "--quakeml",
            str(folder / "events.xml"),
        ],
        "annotate": [
            *sine,
            "annotate",
            str(waveforms),
            "--inventory",
            str(stations),
            "--device",
            device,
            "--out",
            str(folder / "annotations.mseed"),
        ],
        "train": [
            *sine,
            "train",
            "--dataset",
            dataset,
            "--out",
            str(folder / "trained" / "sine_check"),
            "--device",
            device,
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            str(args.cli_train_steps),
            "--batch-size",
            str(args.train_batch),
        ],
    }
    if args.quick:
        del commands["info"]  # no --device; 30 s of start-up and FLOP counting on 2 busy cores
    (folder / "trained").mkdir(exist_ok=True)
    results = []
    for name, command in commands.items():
        before = {p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.cli_timeout)
        seconds = time.perf_counter() - t0
        log = out / f"cli_{name}.log"
        log.write_text(
            f"$ {' '.join(command)}\n# exit {proc.returncode}, {seconds:.1f} s\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        written = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and before.get(p) != p.stat().st_mtime
        )
        results.append(
            {"command": name, "exit": proc.returncode, "seconds": seconds, "written": written}
        )
        print(f"sine {name}: exit {proc.returncode}, {seconds:.1f} s, wrote {written}", flush=True)
    return results


def report(args: argparse.Namespace, device: torch.device, result: dict[str, Any]) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    inf = result["inference"]
    lines = [
        f"# GPU check ({device}: {name})",
        "",
        f"- Date: {result['date']}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
        f"{os.cpu_count()} CPUs, 1-min load average at the end {os.getloadavg()[0]:.2f}; "
        f"{'quick settings' if args.quick else 'full settings'}; total {result['total_s']:.0f} s",
        f"- Inference: {args.stations} virtual stations x {args.hours:g} h ({inf['station_hours']:g} station-hours), "
        f"batch_size SINE {args.sine_batch} groups, others {args.batch} windows; SINE shipped default weights, "
        f"PhaseNet/EQTransformer {result['phasenet_weights']}",
        "",
        "| Run | Wall s | Station-hours/s | Peak GPU memory MiB | Picks | Events |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, r in inf["runs"].items():
        mem = "" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        lines.append(
            f"| {key} | {r['seconds']:.2f} | {r['station_hours_per_s']:.2f} | {mem} | "
            f"{r.get('picks', '')} | {r.get('events', '')} |"
        )
    if inf["agreement"] is not None:
        a = inf["agreement"]
        lines += [
            "",
            f"- SINE classify on {device} vs CPU ({args.agreement_minutes:g} min): picks {a['picks'][0]} / "
            f"{a['picks'][1]}, events {a['events'][0]} / {a['events'][1]}, unmatched picks {a['unmatched']}, "
            f"largest pick time difference {a['max_pick_time_diff_s']:.3f} s, probability "
            f"{a['max_pick_prob_diff']:.2e}",
        ]
    tr = result["training"]
    mem = "n/a (CPU)" if tr["peak_memory_mib"] is None else f"{tr['peak_memory_mib']:.0f} MiB"
    lines += [
        "",
        f"- Training: {tr['events_per_s']:.1f} events/s (batch {tr['batch']} events of 16 stations, "
        f"{tr['steps']} steps, mixed precision {tr['mixed_precision']}), peak memory {mem}",
        "",
        "| CLI (`--device " + result["cli_device"] + "`) | Exit | Wall s | Written |",
        "|---|---:|---:|---|",
    ]
    for c in result["cli"]:
        lines.append(
            f"| sine {c['command']} | {c['exit']} | {c['seconds']:.1f} | {', '.join(c['written'][:6])} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small settings (a CPU check in < 2 min)")
    p.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results/gpu_check")
    p.add_argument("--seisbench-cache", default=None, help="default $SEISBENCH_CACHE_ROOT")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    quick = args.quick
    # sizes: full ~5 min on a GPU machine (the stream's preparation is on the CPU), quick < 2 min on 2 CPU cores
    args.stations = 4 if quick else 16
    args.hours = 5 / 60 if quick else 1.0
    args.sine_batch = 16 if quick else 64
    args.batch = 256 if quick else 1024
    args.agreement_minutes = 3.0
    args.train_events = 16 if quick else 64
    args.train_batch = 2 if quick else 16
    args.train_steps = 2 if quick else 20
    args.cli_minutes = 1.0 if quick else 10.0
    args.cli_train_steps = 1 if quick else 10
    args.cli_timeout = 300
    if args.threads:
        torch.set_num_threads(args.threads)
    cache_ok = setup_cache(args.seisbench_cache)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --quick to check the script", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="sine_gpu_check_"))
    try:
        result: dict[str, Any] = {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": str(device),
            "quick": quick,
            "phasenet_weights": "original" if cache_ok else "random init",
        }
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
            (out / "nvidia-smi.txt").write_text(smi.stdout + smi.stderr)
        result["inference"] = inference(args, device, cache_ok)
        result["training"] = training(args, device, folder)
        result["cli_device"] = args.device
        result["cli"] = cli(args, args.device, folder, out, result["training"]["dataset"])
        result["total_s"] = time.perf_counter() - t_start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    text = report(args, device, result)
    (out / "gpu_check.md").write_text(text)
    print(text)
    failed = [c["command"] for c in result["cli"] if c["exit"] != 0]
    if failed:
        print(f"CLI commands failed: {', '.join(failed)} (logs in {out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
