"""How much SINE's events move between inference engines: ``classify`` on the 27 Iceland windows of QuakeMigrate's
catalogue (``events/iceland_qm_2014-08-24`` of the shared data, as ``sine benchmark``'s ``real_events`` stage
reads them) once with ``inference_backend="torch"`` and once with ``"onnxruntime"`` (what ``"auto"`` runs on a
CPU), shipped default weights. ONNX Runtime's probabilities differ from torch's by float32 rounding; this
measures what that does to the event step's output: events paired within 3 s, epicentre, depth and origin
differences, and each engine's agreement with QuakeMigrate (:func:`sine_seisbench.bench.real_events.iceland_rows`).

Run from the repository root::

    python benchmarks/backend_events.py --data ../shared/data --out benchmarks/results/backend_events.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from sine_seisbench import DEFAULT_WEIGHTS
from sine_seisbench.bench import real_events as re_bench
from sine_seisbench.loader import load_weights

BACKENDS = ("torch", "onnxruntime")
KEYS = [
    "method",
    "events",
    "matched",
    "origin_dt_median_s",
    "epicentre_median_km",
    "epicentre_p90_km",
    "depth_median_abs_diff_km",
]


def differences(
    a: dict[str, dict], b: dict[str, dict], ids: list[str]
) -> tuple[int, int, int, np.ndarray]:
    """Events of ``a`` and ``b`` per window, paired by origin time within 3 s: counts and ``(pairs, 3)``
    epicentre km, |depth| km, |origin| s differences."""
    rows = []
    for eid in ids:
        for event in a[eid]["events"]:
            other = re_bench.nearest_in_time(b[eid]["events"], event["time"])
            if other is not None and abs(other["time"] - event["time"]) < 3.0:
                rows.append(
                    (
                        re_bench.epicentral_km(event, other),
                        abs(event["depth_km"] - other["depth_km"]),
                        abs(event["time"] - other["time"]),
                    )
                )
    n_a = sum(len(a[eid]["events"]) for eid in ids)
    n_b = sum(len(b[eid]["events"]) for eid in ids)
    return n_a, n_b, len(rows), np.array(rows).reshape(-1, 3)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data", help="the shared data folder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/backend_events.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = re_bench.as_layout(args.data).iceland
    if not (folder / "catalog.csv").exists() or not (folder / "benchmark").is_dir():
        sys.exit(f"backend_events: {folder} (catalog.csv, benchmark/) not found")
    catalogue = re_bench.iceland_catalogue(folder)
    ids = sorted(f.stem for f in (folder / "benchmark").glob("*.mseed") if f.stem in catalogue)
    model = load_weights(DEFAULT_WEIGHTS).eval()
    results = {}
    for backend in BACKENDS:
        model.default_args["inference_backend"] = backend
        results[backend] = re_bench.iceland_events("SINE", {"SINE": model}, folder, ids)
    n_torch, n_ort, n_pairs, diff = differences(results["torch"], results["onnxruntime"], ids)
    rows = re_bench.iceland_rows(results, catalogue)
    lines = [
        "# SINE events, torch vs ONNX Runtime",
        "",
        f"- Command: `{shlex.join(['python', *sys.argv])}`",
        f"- Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}; torch {torch.__version__}, "
        f"{args.threads} threads; weights {DEFAULT_WEIGHTS}",
        f"- Iceland: {len(ids)} QuakeMigrate windows (`{Path(folder).name}`), velocity model of the record",
        "",
        "| events torch | events onnxruntime | paired (3 s) | epicentre diff median / p90 / max km "
        "| depth diff max km | origin diff max s |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    if len(diff):
        e = diff[:, 0]
        lines.append(
            f"| {n_torch} | {n_ort} | {n_pairs} | {np.median(e):.4f} / {np.percentile(e, 90):.4f} / "
            f"{e.max():.4f} | {diff[:, 1].max():.4f} | {diff[:, 2].max():.4f} |"
        )
    else:
        lines.append(f"| {n_torch} | {n_ort} | 0 | | | |")
    lines += ["", "Agreement with QuakeMigrate (`real_events`' Iceland columns):", ""]
    lines += ["| " + " | ".join(KEYS) + " |", "|" + "---|" * len(KEYS)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in KEYS
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
