"""Builds SINE's training data: simulated events on many real geometries and real windows with PhaseNet labels.

Writes two SeisBench datasets (one row per station trace, grouped by ``source_id``, 100 Hz, ZNE, ``split``,
``trace_label_source``):

- ``OUT/sim``: :func:`sine_seisbench.data.simulate.simulate_geometries` on every station list of ``--data``
  with real noise outside the evaluation records (``trace_label_source = "simulated"``);
- ``OUT/real``: :func:`sine_seisbench.data.realdata.build_real_dataset` on the allowed real records with
  PhaseNet ("original") as the teacher (``"pseudo"`` and ``"none"`` windows).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/build_training_data.py --data ../shared/data --out /tmp/sine_train_data \\
        --sim-events 3000 --seed 0

SeisBench's cache (PhaseNet weights, the travel-time table) is taken from ``SEISBENCH_CACHE_ROOT`` when set,
otherwise from a temporary copy of ``DATA/seisbench_cache``; the first run in a fresh cache spends about a minute
building the travel-time table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _seed_cache(data: Path) -> None:
    """Point SeisBench at a writable copy of the shared cache (before seisbench is imported)."""
    src = data / "seisbench_cache"
    if "SEISBENCH_CACHE_ROOT" not in os.environ and src.is_dir():
        dst = Path(tempfile.mkdtemp(prefix="sb-cache-"))
        shutil.copytree(src, dst, dirs_exist_ok=True)
        os.environ["SEISBENCH_CACHE_ROOT"] = str(dst)


def _count_metadata(path: Path) -> dict:
    import pandas as pd

    meta = pd.read_csv(path / "metadata.csv", low_memory=False)
    out = {
        "groups": int(meta["source_id"].nunique()),
        "traces": len(meta),
        "groups_by_split": meta.groupby("split")["source_id"].nunique().to_dict(),
        "groups_by_label_source": meta.groupby("trace_label_source")["source_id"]
        .nunique()
        .to_dict(),
        "p_labels": int(meta["trace_p_arrival_sample"].notna().sum()),
        "s_labels": int(meta["trace_s_arrival_sample"].notna().sum()),
    }
    if "source_geometry" in meta.columns:
        out["events_by_geometry"] = meta.groupby("source_geometry")["source_id"].nunique().to_dict()
        per_event = meta.groupby("source_id").agg(
            n=("station_code", "size"), ap=("source_aperture_km", "first")
        )
        out["stations_per_event"] = [int(per_event["n"].min()), int(per_event["n"].max())]
        out["aperture_km"] = [
            round(float(per_event["ap"].min()), 1),
            round(float(per_event["ap"].max()), 1),
        ]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", required=True, help="output folder (gets sim/ and real/)")
    parser.add_argument("--sim-events", type=int, default=200, help="number of simulated events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-s", type=float, default=45.0, help="real window length (s)")
    parser.add_argument(
        "--min-stations", type=int, default=3, help="stations confirming a pseudo-label"
    )
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sim/ and real/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("numba", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)

    data = Path(args.data).resolve()
    if not data.is_dir():
        sys.exit(f"Data folder {data} not found.")
    _seed_cache(data)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from sine_seisbench.data.simulate import (
        SimulationConfig,
        TravelTimes,
        default_noise_paths,
        default_station_lists,
        simulate_geometries,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("sim", "real"):
        if (out / sub).exists() and not (args.skip_sim if sub == "sim" else args.skip_real):
            if not args.overwrite:
                sys.exit(f"{out / sub} exists; use --overwrite to replace it.")
            shutil.rmtree(out / sub)
    report: dict = {"args": vars(args)}
    t0 = time.perf_counter()
    tt = TravelTimes(max_distance_km=200.0)
    report["seconds_travel_times"] = round(time.perf_counter() - t0, 1)

    if not args.skip_sim:
        t = time.perf_counter()
        lists = default_station_lists(data)
        noise = default_noise_paths(data)
        simulate_geometries(
            out / "sim",
            lists,
            args.sim_events,
            noise_paths=noise,
            config=SimulationConfig(seed=args.seed),
            tt=tt,
        )
        elapsed = time.perf_counter() - t
        report["sim"] = {
            "station_lists": {k: str(v) for k, v in lists.items()},
            "noise_records": noise,
            **_count_metadata(out / "sim"),
            "seconds": round(elapsed, 1),
            "seconds_per_event": round(elapsed / max(args.sim_events, 1), 3),
        }
        print(json.dumps({"sim": report["sim"]}, indent=1, default=str), flush=True)

    if not args.skip_real:
        import seisbench.models as sbm

        from sine_seisbench.data.realdata import build_real_dataset, default_training_records

        t = time.perf_counter()
        teacher = sbm.PhaseNet.from_pretrained("original")
        teacher.eval()
        records = default_training_records(data)
        stats = build_real_dataset(
            out / "real",
            records,
            teacher,
            window_s=args.window_s,
            min_stations=args.min_stations,
            tt=tt,
        )
        report["real"] = {
            **stats,
            **{f"metadata_{k}": v for k, v in _count_metadata(out / "real").items()},
            "seconds": round(time.perf_counter() - t, 1),
        }
        print(json.dumps({"real": report["real"]}, indent=1, default=str), flush=True)

    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    (out / "build_report.json").write_text(json.dumps(report, indent=1, default=str))
    print(
        f"total {report['seconds_total']} s; report in {out / 'build_report.json'}",
        flush=True,
    )
    return report


if __name__ == "__main__":
    main()
