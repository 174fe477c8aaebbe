"""Simulator throughput in station-traces per second on one core (a benchmark, not a test).

Usage::

    python benchmarks/simulate_speed.py --events 100 --out benchmarks/results/simulate_speed.md
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--out", default="benchmarks/results/simulate_speed.md")
    args = parser.parse_args()

    import pandas as pd
    import torch

    from sine_seisbench.data.simulate import (
        SimulationConfig,
        TravelTimes,
        load_catalog,
        load_stations,
        simulate_dataset,
    )

    torch.set_num_threads(1)
    tt = TravelTimes()  # built (or read from the cache) before timing
    stations_csv = SHARED / "stations" / "western_us_stations.csv"
    if stations_csv.exists():
        stations = load_stations(stations_csv, time=2019.5)
        stations = stations[
            stations.latitude.between(34.5, 37.0) & stations.longitude.between(-119.0, -116.0)
        ]
        catalog = load_catalog(SHARED / "catalogs" / "comcat_reviewed_ridgecrest_2019-07-01_12.csv")
        noise = sorted(glob.glob(str(SHARED / "continuous" / "*" / "*.m*s*")))
        source = "CI stations, Ridgecrest catalogue, real noise from ../shared/data/continuous"
    else:
        from sine_seisbench.demo import demo_network

        stations, catalog, noise = demo_network(16), None, []
        source = "virtual network, region sampling, coloured Gaussian noise (../shared absent)"
    region = (35.4, 36.0, -118.0, -117.2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = simulate_dataset(
            Path(tmp) / "ds",
            stations,
            catalog=catalog,
            region=region,
            noise_paths=noise,
            config=SimulationConfig(n_events=args.events, samples=args.samples, seed=0),
            tt=tt,
        )
        seconds = time.perf_counter() - t0
        traces = len(pd.read_csv(path / "metadata.csv"))
    text = (
        "# Simulator throughput\n\n"
        f"- Command: `python benchmarks/simulate_speed.py --events {args.events} --samples {args.samples}`\n"
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}\n"
        f"- Setup: {source}; one thread; includes reading the noise records and writing HDF5\n\n"
        f"| events | station-traces | seconds | station-traces / s |\n|---:|---:|---:|---:|\n"
        f"| {args.events} | {traces} | {seconds:.1f} | {traces / seconds:.0f} |\n"
    )
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
