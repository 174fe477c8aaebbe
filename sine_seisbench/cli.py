"""The ``sine`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import obspy
import pandas as pd
import torch

from .model import SINE


def _load_model(weights: str | None) -> SINE:
    if weights is None:
        print(
            "sine: no --weights given; using untrained SINE weights (outputs are not meaningful).",
            file=sys.stderr,
        )
        return SINE()
    path = Path(weights)
    if path.with_name(path.name + ".json").exists():
        return SINE.load(path)
    return SINE.from_pretrained(weights)


def _classify_kwargs(args: argparse.Namespace) -> dict:
    """--min-stations / --p-threshold / --s-threshold as SINE arguments (only those given)."""
    given = {
        "min_stations": args.min_stations,
        "P_threshold": args.p_threshold,
        "S_threshold": args.s_threshold,
    }
    return {k: v for k, v in given.items() if v is not None}


def _read_inventory(path: str) -> obspy.Inventory | pd.DataFrame:
    if path.lower().endswith((".csv", ".tsv", ".txt")):
        return pd.read_csv(path, sep=None, engine="python")
    return obspy.read_inventory(path)


def count_flops(model: SINE, stations: int | None = None) -> float:
    """FLOPs of one forward pass per station-window (convolutions and linear layers counted by PyTorch's
    FlopCounterMode, plus the BiLSTM counted analytically: 2 directions x 4 gates x (in + hidden) x hidden x
    2 FLOPs per step)."""
    from torch.utils.flop_counter import FlopCounterMode

    stations = stations or model.max_stations
    x = torch.randn(1, stations, model.in_channels, model.in_samples)
    positions = torch.randn(1, stations, 3) * 20
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, positions=positions)
    model.train(was_training)
    lstm = model.encoder.lstm
    steps = -(-model.in_samples // model.encoder.downsampling)
    lstm_flops = steps * 2 * 4 * (lstm.input_size + lstm.hidden_size) * lstm.hidden_size * 2
    return counter.get_total_flops() / stations + lstm_flops


def cmd_info(args: argparse.Namespace) -> int:
    model = _load_model(args.weights) if args.weights else SINE()
    params = sum(p.numel() for p in model.parameters())
    print(f"SINE: {params:,} parameters")
    print(
        f"window: {model.in_samples} samples at {model.sampling_rate} Hz, groups of {model.max_stations}"
    )
    print(f"FLOPs per station-window: {count_flops(model) / 1e6:.1f} M")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    if args.example:
        from .example import network_stream

        stream, inventory = network_stream(args.example_stations)
        print(f"example: {len(stream)} traces of ObsPy's real BW.RJOB record on a virtual network")
    else:
        if not args.waveforms or not args.inventory:
            print(
                "sine classify: give waveform files and --inventory, or --example", file=sys.stderr
            )
            return 2
        stream = obspy.Stream()
        for path in args.waveforms:
            stream += obspy.read(path)
        inventory = _read_inventory(args.inventory)
    model = _load_model(args.weights)
    kwargs = {"inventory": inventory, "batch_size": args.batch_size}
    kwargs.update(_classify_kwargs(args))
    out = model.classify(stream, **kwargs)
    print(out.picks)
    print(out.events)
    if args.picks_out:
        rows = [
            {
                "trace_id": p.trace_id,
                "phase": p.phase,
                "time": str(p.peak_time),
                "probability": p.peak_value,
                "start_time": str(p.start_time),
                "end_time": str(p.end_time),
            }
            for p in out.picks
        ]
        pd.DataFrame(
            rows, columns=["trace_id", "phase", "time", "probability", "start_time", "end_time"]
        ).to_csv(args.picks_out, index=False)
        print(f"picks written to {args.picks_out}")
    if args.events_out:
        out.events.write(args.events_out, format="QUAKEML")
        print(f"events written to {args.events_out}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    if args.archive:
        return _annotate_archive(args)
    if not args.waveforms:
        print("sine annotate: give waveform files, or --archive SDS_ROOT", file=sys.stderr)
        return 2
    stream = obspy.Stream()
    for path in args.waveforms:
        stream += obspy.read(path)
    model = _load_model(args.weights)
    annotations = model.annotate(
        stream, inventory=_read_inventory(args.inventory), batch_size=args.batch_size
    )
    for tr in annotations:
        tr.data = tr.data.astype("float32")
    annotations.write(args.out, format="MSEED")
    print(f"{len(annotations)} annotation traces written to {args.out}")
    return 0


def _annotate_archive(args: argparse.Namespace) -> int:
    """``sine annotate --archive``: picks and events of an SDS archive per day, optionally on Dask."""
    from .archive import annotate_archive

    if not (args.start and args.end):
        print("sine annotate --archive: give --start and --end", file=sys.stderr)
        return 2
    kwargs = {"batch_size": args.batch_size}
    kwargs.update(_classify_kwargs(args))
    if args.weights is None:
        print(
            "sine: no --weights given; using untrained SINE weights (outputs are not meaningful).",
            file=sys.stderr,
        )
    try:
        result = annotate_archive(
            args.archive,
            args.inventory,
            args.start,
            args.end,
            args.out,
            weights=args.weights,
            scheduler=args.scheduler,
            workers=args.workers,
            chunk=args.chunk,
            pad=args.pad,
            stations_per_task=args.stations_per_task,
            channels=args.channels,
            picks_format=args.picks_format,
            torch_threads=args.torch_threads,
            retries=args.retries,
            progress=not args.no_progress,
            drop_unlocated=args.drop_unlocated,
            memory_limit=args.memory_limit,
            **kwargs,
        )
    except (OSError, ValueError, RuntimeError) as e:  # OSError: also an unreachable scheduler
        print(f"sine annotate: {e}", file=sys.stderr)
        return 1
    print(
        f"{result.computed} task(s) computed, {result.skipped} already finished; {result.picks} picks and "
        f"{result.events} events in {len(result.days)} day file(s) under {result.out} "
        f"({result.seconds:.1f} s)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    config = TrainConfig(
        dataset=args.dataset,
        out=args.out,
        init=args.init,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        resume=args.resume,
        patience=args.patience,
        pick_weight=args.pick_weight,
        event_weight=args.event_weight,
        uncertainty_weighting=args.uncertainty_weighting,
        max_stations=args.max_stations,
        noise_dataset=args.noise_dataset,
        max_steps_per_epoch=args.max_steps_per_epoch,
    )
    best = train(config)
    print(
        f"weights written to {args.out}.json / {args.out}.pt; best dev loss {best.get('loss', float('nan')):.4f}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train import METRIC_COLUMNS, evaluate

    metrics = evaluate(
        args.dataset, args.weights, args.split, args.batch_size, args.device, args.workers
    )
    row = {"split": args.split, **metrics}
    table = pd.DataFrame([{k: row.get(k) for k in METRIC_COLUMNS if k != "epoch"}])
    print(table.T.to_string(header=False))
    out = args.out or f"{args.weights}.{args.split}.metrics.csv"
    table.to_csv(out, index=False)
    print(f"metrics written to {out}")
    return 0


def cmd_import_sine(args: argparse.Namespace) -> int:
    from .data.legacy import import_sine, read_ranges

    dataset = import_sine(
        args.source,
        args.out,
        read_ranges(args.ranges),
        longitude_west_positive=not args.east_positive,
    )
    print(
        f"{len(dataset)} traces of {dataset.metadata['source_id'].nunique()} events written to {args.out}"
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .data.simulate import SimulationConfig, load_catalog, load_stations, simulate_dataset

    stations = load_stations(args.stations, time=args.station_year)
    if args.bbox:
        lat0, lat1, lon0, lon1 = args.bbox
        stations = stations[
            stations.latitude.between(lat0, lat1) & stations.longitude.between(lon0, lon1)
        ]
    if len(stations) < 3:
        print(
            f"sine simulate: only {len(stations)} stations selected from {args.stations}",
            file=sys.stderr,
        )
        return 2
    catalog = load_catalog(args.catalog) if args.catalog else None
    config = SimulationConfig(
        n_events=args.events,
        max_stations=args.max_stations,
        max_distance_km=args.max_distance,
        samples=args.samples,
        seed=args.seed,
        region_fraction=args.region_fraction,
    )
    out = simulate_dataset(
        args.out, stations, catalog, tuple(args.region) if args.region else None, args.noise, config
    )
    print(f"{args.events} simulated events on {len(stations)} stations written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        weights=None if args.untrained else args.weights,
        out=args.out,
        seed=args.seed,
        magnitude=args.magnitude,
    )
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench.harness import run_benchmark

    run_benchmark(
        suite=args.suite,
        data_dir=args.data,
        out=args.out,
        models=args.models.split(",") if args.models else None,
        datasets=args.datasets.split(",") if args.datasets else None,
        stages=args.stages.split(",") if args.stages else None,
        sine_weights=None if args.sine_weights == "untrained" else args.sine_weights,
        sim_data=args.sim_data,
        readme=args.readme,
        force=args.force,
        seed=args.seed,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sine", description="SINE multi-station earthquake monitoring"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="simulate an earthquake, classify it, compare with the truth, plot"
    )
    p.add_argument(
        "--weights", default="socal_sim", help="pretrained name or path (default: shipped weights)"
    )
    p.add_argument("--untrained", action="store_true", help="use untrained weights")
    p.add_argument("--out", default="sine_demo.png", help="figure file")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--magnitude", type=float, default=2.8)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("benchmark", help="SINE vs PhaseNet, EQTransformer and the classical chain")
    p.add_argument("--suite", choices=["quick", "full"], default="quick")
    p.add_argument(
        "--data", default="../shared/data", help="folder with datasets/, continuous/, stations/"
    )
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--models", help="comma-separated subset of SINE,PhaseNet,EQTransformer")
    p.add_argument("--datasets", help="comma-separated labelled dataset names under DATA/datasets")
    p.add_argument("--stages", help="comma-separated subset of picks,continuous,location,speed")
    p.add_argument(
        "--sine-weights", default="socal_sim", help="pretrained name, path, or 'untrained'"
    )
    p.add_argument(
        "--sim-data", help="simulated SeisBench dataset whose test split is used for location"
    )
    p.add_argument(
        "--readme", default="README.md", help="README whose summary table is refreshed ('' to skip)"
    )
    p.add_argument("--force", action="store_true", help="recompute cached results")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("info", help="parameter count and FLOPs")
    p.add_argument("--weights", help="weights path (without .json/.pt) or pretrained name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("classify", help="picks and located events for a multi-station stream")
    p.add_argument("waveforms", nargs="*", help="waveform files readable by ObsPy")
    p.add_argument(
        "--inventory", help="StationXML, or CSV with network,station,latitude,longitude,elevation"
    )
    p.add_argument("--example", action="store_true", help="run on the built-in example network")
    p.add_argument("--example-stations", type=int, default=8)
    p.add_argument("--weights", help="weights path (without .json/.pt) or pretrained name")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--min-stations", type=int)
    p.add_argument("--p-threshold", type=float)
    p.add_argument("--s-threshold", type=float)
    p.add_argument("--picks-out", help="CSV file for the picks")
    p.add_argument("--events-out", help="QuakeML file for the events")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "annotate",
        help="P/S/noise probability traces as miniSEED; with --archive, picks and events of an SDS "
        "archive per day (optionally on Dask)",
    )
    p.add_argument("waveforms", nargs="*", help="waveform files (not with --archive)")
    p.add_argument("--inventory", required=True)
    p.add_argument("--weights")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--out", required=True, help="output miniSEED file; with --archive an output folder"
    )
    g = p.add_argument_group("archive processing (sine annotate --archive)")
    g.add_argument("--archive", help="SDS archive root: picks and events per day instead of traces")
    g.add_argument("--start", help="start time (UTC), e.g. 2019-07-06")
    g.add_argument("--end", help="end time (UTC, exclusive)")
    g.add_argument(
        "--scheduler",
        default="synchronous",
        help="synchronous (this process, default), local (a Dask LocalCluster of --workers "
        "processes) or a Dask scheduler address such as tcp://host:8786",
    )
    g.add_argument(
        "--workers", type=int, help="worker processes of --scheduler local (default: cores)"
    )
    g.add_argument("--chunk", default="1h", help="chunk length, e.g. 1h, 30min, 600s (default 1h)")
    g.add_argument(
        "--pad", help="data read on each side of a chunk (default: 4 model windows, 120 s)"
    )
    g.add_argument(
        "--stations-per-task",
        type=int,
        help="split the network into station groups of at most this many stations (default: all)",
    )
    g.add_argument("--channels", default="*", help="channel patterns, e.g. 'HH?,EH?' (default all)")
    g.add_argument("--picks-format", choices=["csv", "parquet"], default="csv")
    g.add_argument("--min-stations", type=int)
    g.add_argument("--p-threshold", type=float)
    g.add_argument("--s-threshold", type=float)
    g.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads per task (default 1; the same value gives bit-identical results on any "
        "scheduler)",
    )
    g.add_argument("--retries", type=int, default=2, help="Dask retries of a failing task")
    g.add_argument("--memory-limit", help="memory per worker of --scheduler local, e.g. 4GiB")
    g.add_argument(
        "--drop-unlocated",
        action="store_true",
        help="leave out archive stations missing from the inventory instead of failing",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("train", help="train or fine-tune SINE on a SeisBench dataset")
    p.add_argument(
        "--dataset",
        required=True,
        help="SCEDC, InstanceCounts, CEED, ETHZ, STEAD or a dataset folder",
    )
    p.add_argument(
        "--out", required=True, help="output weights path without suffix, e.g. weights/NAME"
    )
    p.add_argument("--init", help="start from these weights (path or pretrained name)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8, help="events (station groups) per batch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint.pt")
    p.add_argument(
        "--patience", type=int, default=5, help="early stopping: epochs without dev improvement"
    )
    p.add_argument("--pick-weight", type=float, default=1.0)
    p.add_argument("--event-weight", type=float, default=0.1)
    p.add_argument("--uncertainty-weighting", action="store_true", help="learn the task weights")
    p.add_argument(
        "--max-stations", type=int, default=16, help="stations per group (new models only)"
    )
    p.add_argument(
        "--noise-dataset", help="SeisBench dataset of noise traces for RealNoise augmentation"
    )
    p.add_argument("--max-steps-per-epoch", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of weights on a dataset split")
    p.add_argument("--dataset", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", help="CSV file for the metrics (default WEIGHTS.SPLIT.metrics.csv)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "simulate", help="simulated multi-station events on real geometry with real noise"
    )
    p.add_argument(
        "--stations", required=True, help="StationXML or CSV (e.g. western_us_stations.csv)"
    )
    p.add_argument(
        "--station-year", type=float, help="decimal year: keep stations operating then (CSV)"
    )
    p.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        metavar=("LAT0", "LAT1", "LON0", "LON1"),
        help="keep stations inside this box",
    )
    p.add_argument("--catalog", help="ComCat-style CSV to draw hypocentres and magnitudes from")
    p.add_argument(
        "--region",
        type=float,
        nargs=4,
        metavar=("LAT0", "LAT1", "LON0", "LON1"),
        help="draw hypocentres uniformly in this box (Gutenberg-Richter magnitudes)",
    )
    p.add_argument("--region-fraction", type=float, default=0.5)
    p.add_argument("--noise", nargs="*", default=[], help="miniSEED files to cut real noise from")
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--max-stations", type=int, default=16)
    p.add_argument("--max-distance", type=float, default=120.0)
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "import-sine", help="convert the original SINE .npy data to a SeisBench dataset"
    )
    p.add_argument("source", help=".npy file or folder of .npy files")
    p.add_argument("out", help="output dataset folder")
    p.add_argument(
        "--ranges", required=True, help="the original config.ini with the label min/max ranges"
    )
    p.add_argument(
        "--east-positive", action="store_true", help="label longitudes are east-positive"
    )
    p.set_defaults(func=cmd_import_sine)

    from .monitor.cli import add_parsers as add_monitor_parsers

    add_monitor_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
