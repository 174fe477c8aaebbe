"""Shipped weights against the jointly trained arrival head, side by side in one run.

Both SINE variants locate the same events: simulated events on the three geometries of issue 13's targets (demo,
central Italy, Iceland; all stations, 50 % removed, 8x noise) and the 27 real Iceland windows against
QuakeMigrate (Iceland velocity model). Writes ``OUT/joint_compare.md`` and the per-event CSVs.

Usage::

    SEISBENCH_CACHE_ROOT=... python benchmarks/joint_compare.py --data ../shared/data \\
        --joint runs/joint/sine_pn_joint --events 24 --out OUT
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> None:
    from sine_seisbench import DEFAULT_WEIGHTS, SINE
    from sine_seisbench.bench import real_events as re_
    from sine_seisbench.bench.harness import markdown_table, simulated_test_set
    from sine_seisbench.bench.location import location_benchmark, summarise
    from sine_seisbench.data.layout import as_layout
    from sine_seisbench.traveltimes import TravelTimes

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the shared data folder")
    parser.add_argument("--joint", required=True, help="path of the joint weights (without suffix)")
    parser.add_argument("--events", type=int, default=24, help="simulated events per geometry")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--skip-sim", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {
        f"SINE ({DEFAULT_WEIGHTS})": SINE.from_pretrained(DEFAULT_WEIGHTS),
        "SINE (joint arrival head)": SINE.load(args.joint),
    }
    started = time.time()
    lines = [
        "# Joint arrival head vs shipped weights",
        "",
        f"Same events for both; `--events {args.events}` per simulated geometry; weights `{args.joint}`.",
        "",
    ]
    if not args.skip_sim:
        tt = TravelTimes()
        rows: list[dict] = []
        for geometry in ("demo", "central_italy", "iceland"):
            dataset = simulated_test_set(
                None,
                args.events,
                out / f"sim_{geometry}",
                tt,
                geometry=geometry,
                data_dir=Path(args.data),
            )
            for name, model in models.items():
                for row in location_benchmark(
                    dataset,
                    model,
                    {},
                    tt,
                    args.events,
                    conditions=[(0.0, 0.0), (0.5, 0.0), (0.0, 8.0)],
                    geometry=geometry,
                    associators=(),
                ):
                    if row["method"] == "SINE":
                        rows.append({**row, "method": name})
        frame = pd.DataFrame(rows)
        frame.to_csv(out / "joint_compare_events.csv", index=False)
        keys = ["geometry", "method", "drop_fraction", "noise_factor"]
        summary = pd.DataFrame(
            [
                {**dict(zip(keys, v, strict=True)), **summarise(g.to_dict("records"))}
                for v, g in frame.groupby(keys)
            ]
        )
        summary.to_csv(out / "joint_compare_summary.csv", index=False)
        lines += [
            "## Simulated events",
            "",
            markdown_table(summary.round(3).to_dict("records"), list(summary.columns)),
            "",
        ]
    folder = as_layout(args.data).iceland
    if (folder / "catalog.csv").exists():
        catalogue = re_.iceland_catalogue(folder)
        ids = sorted(p.stem for p in (folder / "benchmark").glob("*.mseed") if p.stem in catalogue)
        results = {name: re_.iceland_events(name, models, folder, ids) for name in models}
        iceland = pd.DataFrame(re_.iceland_rows(results, catalogue))
        iceland.to_csv(out / "joint_compare_iceland.csv", index=False)
        lines += [
            f"## Iceland, {len(ids)} windows vs QuakeMigrate (Iceland velocity model)",
            "",
            markdown_table(iceland.round(3).to_dict("records"), list(iceland.columns)),
            "",
        ]
    else:
        lines += [f"Iceland skipped: {folder} not found.", ""]
    lines.insert(3, f"One run, {time.time() - started:.0f} s.")
    (out / "joint_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
