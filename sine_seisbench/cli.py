"""The ``sine`` command.

Errors: a mistake in the user's input (a missing or unreadable file, an unknown weights name, a malformed config,
a misspelled config key, a missing output folder, a station file without a needed column) is printed as one line
``sine COMMAND: error: ...`` that names the file or key and says what to do, and the command exits with status 2
before any work starts. ``sine --debug COMMAND ...`` shows the traceback instead. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import obspy
import pandas as pd
import torch

from .cli_support import (  # noqa: F401 - the shared helpers, re-exported for callers of the old place
    DEVICE_HELP,
    FDSN_HELP,
    PUBLISHED_WEIGHTS,
    STATIONS_HELP,
    UNTRAINED,
    WEIGHT_SUFFIXES,
    WEIGHTS_HELP,
    available_devices,
    check_input_file,
    check_located,
    check_output_file,
    check_output_folder,
    load_weights,
    read_inventory,
    read_waveforms,
    resolve_device,
    resolve_weights,
    waveform_files,
    weight_names,
)
from .errors import MissingFileError, UserError, did_you_mean, one_line
from .model import DEFAULT_WEIGHTS, SINE
from .monitor.cli import add_parsers as add_monitor_parsers
from .nn.onnx_backend import BACKENDS
from .plot import add_plot_parser
from .progress import is_quiet, set_quiet
from .stations import STATION_COLUMNS, fdsn_inventory  # noqa: F401 - STATION_COLUMNS re-exported


def _classify_kwargs(args: argparse.Namespace) -> dict:
    """--min-stations / --p-threshold / --s-threshold / --velocity-model / --station-corrections as SINE
    arguments (only those given; the files are read and checked here, so a mistake is one line)."""
    given = {
        "min_stations": args.min_stations,
        "P_threshold": args.p_threshold,
        "S_threshold": args.s_threshold,
        "inference_backend": getattr(args, "inference_backend", None),
    }
    out = {k: v for k, v in given.items() if v is not None}
    if getattr(args, "velocity_model", None):
        from .pipeline.locate import traveltimes_for

        try:
            traveltimes_for(args.velocity_model)
        except ValueError as e:
            raise UserError(f"--velocity-model {args.velocity_model}: {e}") from e
        out["velocity_model"] = args.velocity_model
    if getattr(args, "station_corrections", None):
        from .pipeline.locate import read_station_corrections

        try:
            out["station_corrections"] = read_station_corrections(args.station_corrections)
        except (ValueError, KeyError, pd.errors.ParserError) as e:
            raise UserError(f"--station-corrections {args.station_corrections}: {e}") from e
    return out


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
    lstm = model.branch.lstm
    with torch.no_grad():  # steps of the bottleneck, where the BiLSTM runs
        steps = model.backbone.encode(torch.zeros(1, model.in_channels, model.in_samples))[0].shape[
            -1
        ]
    lstm_flops = steps * 2 * 4 * (lstm.input_size + lstm.hidden_size) * lstm.hidden_size * 2
    return counter.get_total_flops() / stations + lstm_flops


def cmd_info(args: argparse.Namespace) -> int:
    model = load_weights(args.weights, command="sine info")
    params = sum(p.numel() for p in model.parameters())
    weights = args.weights or DEFAULT_WEIGHTS
    print(f"SINE: {params:,} parameters (weights: {weights}; default weights: {DEFAULT_WEIGHTS})")
    print(
        f"torch {torch.__version__}: devices {', '.join(available_devices())}; --device auto uses "
        f"{resolve_device('auto')}; {torch.get_num_threads()} CPU threads"
    )
    print(
        f"window: {model.in_samples} samples at {model.sampling_rate} Hz, groups of {model.max_stations}"
    )
    print(f"FLOPs per station-window: {count_flops(model) / 1e6:.1f} M")
    return 0


def _read_network(args: argparse.Namespace) -> tuple[Any, Any]:
    """Checks and reads ``args.waveforms`` and the stations (``--inventory`` or ``--fdsn``; and that
    ``--weights`` names weights) before any work; every station must be located unless ``--drop-unlocated``."""
    files = waveform_files(args.waveforms)
    fdsn = getattr(args, "fdsn", None)
    if fdsn and args.inventory:
        raise UserError("give --inventory or --fdsn, not both")
    if not fdsn and not args.inventory:
        raise UserError("give the stations with --inventory FILE (or --fdsn URL)")
    if args.inventory and not glob.has_magic(args.inventory) and not Path(args.inventory).is_dir():
        check_input_file(args.inventory, "station file", "--inventory")
    if args.weights:
        resolve_weights(args.weights)
    stream = read_waveforms(files)
    if fdsn:
        inventory = fdsn_inventory(fdsn, stream)
        where = f"the FDSN service {fdsn}"
    else:
        inventory = read_inventory(args.inventory, stream=stream)
        where = f"station file {args.inventory}"
    check_located(stream, inventory, where, args.drop_unlocated)
    return stream, inventory


def cmd_classify(args: argparse.Namespace) -> int:
    outputs = (
        ("--picks", args.picks_out),
        ("--events-csv", args.events_csv),
        ("--quakeml", args.events_out),
    )
    for option, path in outputs:
        if path:
            check_output_file(path, option)
    device = resolve_device(args.device)
    if args.example:
        from .example import network_stream

        if args.weights:
            resolve_weights(args.weights)
        stream, inventory = network_stream(args.example_stations)
        print(f"example: {len(stream)} traces of ObsPy's real BW.RJOB record on a virtual network")
    else:
        if not args.waveforms or not (args.inventory or args.fdsn):
            raise UserError("give waveform files and --inventory (or --fdsn), or --example")
        stream, inventory = _read_network(args)
    model = load_weights(args.weights, device=device, command="sine classify")
    kwargs = {
        "inventory": inventory,
        "batch_size": args.batch_size,
        "drop_unlocated": args.drop_unlocated,
    }
    kwargs.update(_classify_kwargs(args))
    out = model.classify(stream, **kwargs)
    print(out.picks)
    print(out.events)
    from .pipeline.publish import write_events_csv, write_picks_csv, write_quakeml

    if args.picks_out:
        write_picks_csv(out.picks, args.picks_out, catalog=out.events, stream=stream)
        print(f"picks written to {args.picks_out}")
    if args.events_csv:
        write_events_csv(out.events, args.events_csv)
        print(f"events written to {args.events_csv}")
    if args.events_out:
        write_quakeml(out.events, args.events_out)
        print(f"events written to {args.events_out}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    if args.archive:
        return _annotate_archive(args)
    if not args.waveforms:
        raise UserError("give waveform files, or --archive SDS_ROOT")
    check_output_file(args.out, "--out")
    device = resolve_device(args.device)
    stream, inventory = _read_network(args)
    model = load_weights(args.weights, device=device, command="sine annotate")
    annotations = model.annotate(
        stream,
        inventory=inventory,
        batch_size=args.batch_size,
        drop_unlocated=args.drop_unlocated,
    )
    from .pipeline.publish import write_annotations

    written = write_annotations(annotations, args.out)
    codes = ", ".join(sorted({tr.stats.channel for tr in written}))
    print(f"{len(written)} annotation traces written to {args.out} (channels {codes})")
    return 0


def _annotate_archive(args: argparse.Namespace) -> int:
    """``sine annotate --archive``: picks and events of an SDS archive per day, optionally on Dask."""
    from .archive import annotate_archive

    if not (args.start and args.end):
        raise UserError("with --archive give --start and --end")
    if args.waveforms:
        raise UserError("give waveform files or --archive SDS_ROOT, not both")
    if not Path(args.archive).is_dir():
        raise MissingFileError(
            f"SDS archive {args.archive} does not exist or is not a folder; check the path given to --archive"
        )
    if args.fdsn:
        raise UserError("--fdsn works on waveform files; with --archive give --inventory")
    if not args.inventory:
        raise UserError("with --archive give the stations with --inventory FILE")
    check_output_folder(args.out, "--out")
    device = resolve_device(args.device)
    weights = resolve_weights(
        args.weights
    )  # the archive loads them once per worker (seeded if untrained)
    if weights == UNTRAINED:
        print(
            "sine annotate: using untrained SINE weights (outputs are not meaningful).",
            file=sys.stderr,
        )
    inventory = read_inventory(args.inventory, stream=_ArchiveIds(args))
    kwargs = {"batch_size": args.batch_size}
    kwargs.update(_classify_kwargs(args))
    try:
        result = annotate_archive(
            args.archive,
            inventory,
            args.start,
            args.end,
            args.out,
            weights=weights,
            scheduler=args.scheduler,
            workers=args.workers,
            chunk=args.chunk,
            pad=args.pad,
            stations_per_task=args.stations_per_task,
            channels=args.channels,
            picks_format=args.picks_format,
            torch_threads=args.torch_threads,
            retries=args.retries,
            progress=not (args.no_progress or is_quiet()),
            drop_unlocated=args.drop_unlocated,
            memory_limit=args.memory_limit,
            device=str(device),
            **kwargs,
        )
    except ValueError as e:  # a bad time, duration, or stations missing from the inventory
        raise UserError(one_line(e)) from e
    except (
        OSError,
        RuntimeError,
    ) as e:  # OSError: also an unreachable scheduler; RuntimeError: failed tasks
        print(f"sine annotate: {one_line(e)}", file=sys.stderr)
        return 1
    print(
        f"{result.computed} task(s) computed, {result.skipped} already finished; {result.picks} picks and "
        f"{result.events} events in {len(result.days)} day file(s) under {result.out} "
        f"({result.seconds:.1f} s)"
    )
    return 0


class _ArchiveIds:
    """The ``NET.STA.LOC`` ids of an SDS archive's stations in ``--start``..``--end``, listed only when a station
    file without a network column needs them (see :func:`read_inventory`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def __iter__(self) -> Any:
        from .archive import scan_archive

        try:
            start, end = obspy.UTCDateTime(self.args.start), obspy.UTCDateTime(self.args.end)
        except (TypeError, ValueError) as e:
            raise UserError(f"--start/--end: {one_line(e)}; give times such as 2019-07-06") from e
        return iter(scan_archive(self.args.archive, start, end, self.args.channels))


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    check_output_folder(Path(args.out).parent, "--out")
    resolve_device(args.device)
    init = resolve_weights(args.init, "--init") if args.init else None
    init = None if init == UNTRAINED else init
    parts = ("backbone", "branch", "event_head", "arrival_head")
    unknown = [p for p in args.trainable or [] if p not in parts]
    if unknown:
        raise UserError(
            f"--trainable: unknown part(s) {', '.join(unknown)}; choose among {', '.join(parts)}"
        )
    config = TrainConfig(
        dataset=args.dataset,
        out=args.out,
        init=init,
        picker=args.picker,
        freeze_backbone=args.freeze_backbone,
        distill_weight=args.distill_weight,
        real_dataset=args.real_dataset,
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
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
        location_weight=args.location_weight,
        arrival_head=args.arrival_head,
        trainable=args.trainable,
        graph_picks=None if args.graph_picks is None else args.graph_picks == "on",
    )
    best = train(config)
    print(
        f"weights written to {args.out}.json / {args.out}.pt; best dev loss {best.get('loss', float('nan')):.4f}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train import METRIC_COLUMNS, evaluate

    weights = resolve_weights(args.weights)
    if weights == UNTRAINED:
        raise UserError(
            "--weights: sine evaluate needs trained weights (a name or NAME.json/NAME.pt)"
        )
    resolve_device(args.device)
    out = args.out or f"{weights}.{args.split}.metrics.csv"
    check_output_file(out, "--out")
    metrics = evaluate(
        args.dataset, weights, args.split, args.batch_size, args.device, args.workers
    )
    row = {"split": args.split, **metrics}
    table = pd.DataFrame([{k: row.get(k) for k in METRIC_COLUMNS if k != "epoch"}])
    print(table.T.to_string(header=False))
    table.to_csv(out, index=False)
    print(f"metrics written to {out}")
    return 0


def cmd_import_sine(args: argparse.Namespace) -> int:
    from .data.legacy import import_sine, read_ranges

    if not Path(args.source).exists():
        raise MissingFileError(
            f"source {args.source} does not exist; give a .npy file or a folder of them"
        )
    check_input_file(args.ranges, "ranges file", "--ranges")
    check_output_folder(args.out, "OUT")
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

    check_output_folder(args.out, "--out")
    if args.catalog:
        check_input_file(args.catalog, "catalog", "--catalog")
    for path in args.noise:
        check_input_file(path, "noise file", "--noise")
    table = read_inventory(args.stations, "--stations")
    try:
        stations = load_stations(table, time=args.station_year)
    except UserError as e:
        raise UserError(f"--stations: {e}") from e
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(
            f"cannot use station file {args.stations} ({one_line(e)}); give StationXML or a table with network, "
            "station, latitude, longitude, elevation"
        ) from e
    if args.bbox:
        lat0, lat1, lon0, lon1 = args.bbox
        stations = stations[
            stations.latitude.between(lat0, lat1) & stations.longitude.between(lon0, lon1)
        ]
    if len(stations) < 3:
        raise UserError(
            f"only {len(stations)} stations selected from {args.stations}; at least 3 are needed (widen --bbox "
            "or --station-year)"
        )
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

    check_output_file(args.out, "--out")
    model = load_weights(UNTRAINED if args.untrained else args.weights, command="sine demo")
    run_demo(weights=model, out=args.out, seed=args.seed, magnitude=args.magnitude)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench.harness import PUBLISHED, SINE_VARIANTS, STAGES, run_benchmark

    check_output_folder(args.out, "--out")
    models = _check_names(args.models, [*SINE_VARIANTS, *PUBLISHED], "--models")
    stages = _check_names(args.stages, list(STAGES), "--stages")
    data = args.data or os.environ.get(DATA_ENV)
    if not data:
        raise UserError(
            f"give the benchmark data folder (datasets/, continuous/, events/, stations/) with --data DIR or "
            f"the environment variable {DATA_ENV}"
        )
    if not Path(data).is_dir():
        where = "--data" if args.data else f"the environment variable {DATA_ENV}"
        raise MissingFileError(f"benchmark data folder {data} does not exist; check {where}")
    if args.sim_data and not Path(args.sim_data).exists():
        raise MissingFileError(
            f"simulated dataset {args.sim_data} does not exist; check --sim-data"
        )
    weights = None if args.sine_weights == "untrained" else args.sine_weights
    if weights is not None:
        weights = resolve_weights(weights, "--sine-weights")
    report = run_benchmark(
        suite=args.suite,
        data_dir=data,
        out=args.out,
        models=models,
        datasets=args.datasets.split(",") if args.datasets else None,
        stages=stages,
        sine_weights=weights,
        sim_data=args.sim_data,
        force=args.force,
        seed=args.seed,
    )
    if args.print_summary:
        summary = report.with_name(report.name.replace("benchmark_", "summary_"))
        if summary.exists():
            print(summary.read_text().rstrip())
    return 0


#: The environment variable ``sine benchmark`` reads its data folder from when ``--data`` is not given.
DATA_ENV = "SINE_DATA"


def _check_names(given: str | None, valid: list[str], option: str) -> list[str] | None:
    """The comma-separated ``given`` as a list, each checked against ``valid``."""
    if not given:
        return None
    names = [n.strip() for n in given.split(",") if n.strip()]
    for n in names:
        if n not in valid:
            raise UserError(
                f"{option}: unknown name {n!r}{did_you_mean(n, valid)} (valid: {', '.join(valid)})"
            )
    return names


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to the help of every option with a default value (flags, positionals and
    options without a default state theirs in words, e.g. ``(default: not written)``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reporting a command-line mistake as one line (with a pointer to ``--help``) and exit
    status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _add_event_options(parser: Any) -> None:
    """The pick and event options shared by ``classify`` and ``annotate --archive`` (a parser or group)."""
    parser.add_argument(
        "--min-stations", type=int, help="stations needed for an event (default: SINE's, 3)"
    )
    parser.add_argument("--p-threshold", type=float, help="P pick threshold (default: SINE's, 0.3)")
    parser.add_argument("--s-threshold", type=float, help="S pick threshold (default: SINE's, 0.3)")
    parser.add_argument(
        "--inference-backend",
        choices=BACKENDS,
        help="engine of the network's per-station path (default: auto, ONNX Runtime on the CPU when installed)",
    )
    parser.add_argument(
        "--velocity-model",
        help="1-D velocity model of the event step: a text table depth_km, vp, vs (e.g. QuakeMigrate's) or a "
        "TauP .tvel/.nd file (default: Southern California, Hadley & Kanamori 1977)",
    )
    parser.add_argument(
        "--station-corrections",
        help="CSV of static station corrections: station (NET.STA.LOC), P, S (s), ML (default: none)",
    )


def _add_weights(parser: Any, device: bool = True) -> None:
    """``--weights`` (the shipped default weights unless told otherwise) and ``--device``."""
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help=WEIGHTS_HELP)
    if device:
        parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sine",
        description="SINE multi-station earthquake monitoring. Every command uses the shipped "
        f"'{DEFAULT_WEIGHTS}' weights unless --weights says otherwise. A mistake in the input is reported as "
        "one line and exit status 2.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of any error (also after the command)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (also after the command, or with the environment variable SINE_QUIET=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="simulate an earthquake, classify it, compare with the truth, plot"
    )
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help=WEIGHTS_HELP)
    p.add_argument("--untrained", action="store_true", help="use untrained weights")
    p.add_argument("--out", default="sine_demo.png", help="figure file (its folder must exist)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulated event")
    p.add_argument("--magnitude", type=float, default=2.8, help="magnitude of the event")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "benchmark",
        help="SINE vs PhaseNet, EQTransformer and the classical chain (writes only under --out)",
    )
    p.add_argument(
        "--suite", choices=["quick", "full"], default="quick", help="quick (minutes) or full suite"
    )
    p.add_argument(
        "--data",
        default=None,
        help="benchmark data folder with datasets/, continuous/, events/, stations/ (default: the environment "
        f"variable {DATA_ENV}; one of them is needed)",
    )
    p.add_argument(
        "--out",
        default="benchmarks/results",
        help="output folder (created if missing): report, CSVs, figures, cached results, summary_SUITE.md",
    )
    p.add_argument(
        "--models",
        help="comma-separated subset of SINE,SINE-graph,PhaseNet,EQTransformer (SINE-graph: the same weights "
        "with graph_picks=True; default: SINE,PhaseNet,EQTransformer)",
    )
    p.add_argument(
        "--datasets",
        help="comma-separated labelled dataset names under DATA/datasets (default: all there)",
    )
    p.add_argument(
        "--stages",
        help="comma-separated subset of picks,continuous,location,speed,iceland,colombia,"
        "simulated_low_snr,real_events (default: all)",
    )
    p.add_argument("--sine-weights", default=DEFAULT_WEIGHTS, help=WEIGHTS_HELP)
    p.add_argument(
        "--sim-data",
        help="simulated SeisBench dataset whose test split is used for location (default: simulated on the "
        "fly)",
    )
    p.add_argument(
        "--print-summary",
        action="store_true",
        help="print the README-ready summary (also in OUT/summary_SUITE.md) for pasting; nothing outside "
        "--out is edited",
    )
    p.add_argument("--force", action="store_true", help="recompute cached results")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "info", help="parameter count, FLOPs, torch devices and threads, default weights"
    )
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help=WEIGHTS_HELP)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("classify", help="picks and located events for a multi-station stream")
    p.add_argument(
        "waveforms", nargs="*", help="waveform files readable by ObsPy (or glob patterns)"
    )
    p.add_argument("--inventory", help=STATIONS_HELP + " (default: none; give it or --fdsn)")
    p.add_argument("--fdsn", metavar="URL", help=FDSN_HELP + " (default: none)")
    p.add_argument("--example", action="store_true", help="run on the built-in example network")
    p.add_argument(
        "--example-stations", type=int, default=8, help="stations of the example network"
    )
    _add_weights(p)
    p.add_argument("--batch-size", type=int, default=64, help="station groups per batch")
    _add_event_options(p)
    p.add_argument(
        "--drop-unlocated",
        action="store_true",
        help="leave out stations missing from the inventory (with a warning) instead of failing",
    )
    p.add_argument(
        "--picks",
        "--picks-out",
        dest="picks_out",
        help="CSV file for the picks: network, station, location, channel, phase, time, probability, "
        "uncertainty_s, event_id (its folder must exist; default: not written)",
    )
    p.add_argument(
        "--events-csv",
        help="CSV file for the events: id, origin time, latitude, longitude, depth and their errors, "
        "magnitude, type, stations, gap, RMS (its folder must exist; default: not written)",
    )
    p.add_argument(
        "--quakeml",
        "--events-out",
        dest="events_out",
        help="QuakeML file for the events, with creation info (its folder must exist; default: not "
        "written)",
    )
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "annotate",
        help="P/S/noise probability traces as miniSEED; with --archive, picks and events of an SDS "
        "archive per day (optionally on Dask)",
    )
    p.add_argument(
        "waveforms", nargs="*", help="waveform files or glob patterns (not with --archive)"
    )
    p.add_argument(
        "--inventory", help=STATIONS_HELP + " (default: none; give it, or --fdsn without --archive)"
    )
    p.add_argument("--fdsn", metavar="URL", help=FDSN_HELP + " (default: none; not with --archive)")
    _add_weights(p)
    p.add_argument("--batch-size", type=int, default=64, help="station groups per batch")
    p.add_argument(
        "--out",
        required=True,
        help="output miniSEED file (its folder must exist); with --archive an output folder (created if "
        "missing)",
    )
    p.add_argument(
        "--drop-unlocated",
        action="store_true",
        help="leave out stations missing from the inventory (with a warning) instead of failing, as "
        "annotate(drop_unlocated=True)",
    )
    g = p.add_argument_group("archive processing (sine annotate --archive)")
    g.add_argument(
        "--archive",
        help="SDS archive root: picks and events per day instead of traces (default: none, files are "
        "annotated)",
    )
    g.add_argument(
        "--start", help="start time (UTC), e.g. 2019-07-06 (default: none; needed with --archive)"
    )
    g.add_argument("--end", help="end time (UTC, exclusive) (default: none; needed with --archive)")
    g.add_argument(
        "--scheduler",
        default="synchronous",
        help="synchronous (this process), local (a Dask LocalCluster of --workers processes) or a Dask "
        "scheduler address such as tcp://host:8786",
    )
    g.add_argument(
        "--workers", type=int, help="worker processes of --scheduler local (default: the cores)"
    )
    g.add_argument("--chunk", default="1h", help="chunk length, e.g. 1h, 30min, 600s")
    g.add_argument(
        "--pad", help="data read on each side of a chunk (default: 4 model windows, 120 s)"
    )
    g.add_argument(
        "--stations-per-task",
        type=int,
        help="split the network into station groups of at most this many stations (default: all in one)",
    )
    g.add_argument("--channels", default="*", help="channel patterns, e.g. 'HH?,EH?'")
    g.add_argument(
        "--picks-format", choices=["csv", "parquet"], default="csv", help="picks file format"
    )
    _add_event_options(g)
    g.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads per task (the same value gives bit-identical results on any scheduler)",
    )
    g.add_argument("--retries", type=int, default=2, help="Dask retries of a failing task")
    g.add_argument(
        "--memory-limit",
        help="memory per worker of --scheduler local, e.g. 4GiB (default: Dask's 'auto')",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar (as sine --quiet)")
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
    p.add_argument(
        "--init", help="start from these weights: " + WEIGHTS_HELP + " (default: a new model)"
    )
    p.add_argument(
        "--picker",
        help="start from a published PhaseNet's weights (seisbench PhaseNet.from_pretrained name, e.g. "
        "original, instance, stead, scedc, ethz; default: none)",
    )
    p.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="keep the per-station (PhaseNet) path as it is; train only the graph branch and the event head",
    )
    p.add_argument(
        "--real-dataset",
        help="SeisBench dataset of real windows with trace_label_source 'pseudo'/'none' "
        "(benchmarks/build_training_data.py), trained with distillation (default: none)",
    )
    p.add_argument(
        "--distill-weight",
        type=float,
        default=1.0,
        help="weight of the distillation term on real windows",
    )
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=8, help="events (station groups) per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint.pt")
    p.add_argument(
        "--patience", type=int, default=5, help="early stopping: epochs without dev improvement"
    )
    p.add_argument("--pick-weight", type=float, default=1.0, help="weight of the pick loss")
    p.add_argument("--event-weight", type=float, default=0.1, help="weight of the event loss")
    p.add_argument("--uncertainty-weighting", action="store_true", help="learn the task weights")
    p.add_argument(
        "--location-weight",
        type=float,
        default=0.0,
        help="weight of the location loss: the event step's soft-arrival misfit at the true hypocentre, "
        "through the pick curves and the arrival head (0: off)",
    )
    p.add_argument(
        "--arrival-head",
        action="store_true",
        help="add an arrival head (per-station P/S timing errors weighting the event step) if the model has "
        "none",
    )
    p.add_argument(
        "--trainable",
        nargs="+",
        metavar="PART",
        help="train only these parts (backbone, branch, event_head, arrival_head); default: all but a "
        "frozen backbone",
    )
    p.add_argument(
        "--graph-picks",
        choices=("on", "off"),
        help="whether the losses see picks with the graph branch's residual (default: on, as before; 'off' "
        "as the shipped weights make picks)",
    )
    p.add_argument(
        "--max-stations", type=int, default=16, help="stations per group (new models only)"
    )
    p.add_argument(
        "--noise-dataset",
        help="SeisBench dataset of noise traces for RealNoise augmentation (default: none)",
    )
    p.add_argument(
        "--max-steps-per-epoch",
        type=int,
        help="cap on training steps per epoch (default: no cap)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        help="minutes of training steps; then the epoch is evaluated, saved if best, and training stops "
        "(default: no limit)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of weights on a dataset split")
    p.add_argument("--dataset", required=True, help="dataset name or folder (as for sine train)")
    p.add_argument("--weights", required=True, help=WEIGHTS_HELP)
    p.add_argument(
        "--split", default="test", choices=["train", "dev", "test"], help="dataset split"
    )
    p.add_argument("--batch-size", type=int, default=8, help="events (station groups) per batch")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--out", help="CSV file for the metrics (default: WEIGHTS.SPLIT.metrics.csv)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "simulate", help="simulated multi-station events on real geometry with real noise"
    )
    p.add_argument(
        "--stations",
        required=True,
        help=STATIONS_HELP + "; e.g. western_us_stations.csv",
    )
    p.add_argument(
        "--station-year",
        type=float,
        help="decimal year: keep stations operating then (tables with start_date/end_date; default: all)",
    )
    p.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        metavar=("LAT0", "LAT1", "LON0", "LON1"),
        help="keep stations inside this box (default: all)",
    )
    p.add_argument(
        "--catalog",
        help="ComCat-style CSV to draw hypocentres and magnitudes from (default: none; give it or --region)",
    )
    p.add_argument(
        "--region",
        type=float,
        nargs=4,
        metavar=("LAT0", "LAT1", "LON0", "LON1"),
        help="draw hypocentres uniformly in this box (Gutenberg-Richter magnitudes; default: none)",
    )
    p.add_argument(
        "--region-fraction",
        type=float,
        default=0.5,
        help="fraction of events drawn in --region rather than from --catalog",
    )
    p.add_argument(
        "--noise",
        nargs="*",
        default=[],
        help="miniSEED files to cut real noise from (default: none, coloured Gaussian noise)",
    )
    p.add_argument("--events", type=int, default=200, help="number of events")
    p.add_argument("--max-stations", type=int, default=16, help="stations per event")
    p.add_argument(
        "--max-distance", type=float, default=120.0, help="maximum epicentral distance (km)"
    )
    p.add_argument("--samples", type=int, default=6000, help="samples per trace")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, help="output dataset folder (created if missing)")
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

    add_monitor_parsers(sub)
    add_plot_parser(sub)
    for (
        command
    ) in sub.choices.values():  # also after the command: sine classify ... --debug --quiet
        command.formatter_class = _HelpFormatter
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback of any error",
        )
        if "--quiet" not in command._option_string_actions:
            command.add_argument(
                "--quiet",
                action="store_true",
                default=argparse.SUPPRESS,
                help="no progress bars",
            )
    return parser


def _error(command: str, message: str) -> int:
    print(f"sine {command}: error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Runs ``sine``; a :class:`UserError` (or an OSError naming a file) becomes one line on stderr and exit
    status 2 unless ``--debug`` is given."""
    args = build_parser().parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    previous = set_quiet(True) if quiet else None
    try:
        return args.func(args)
    except UserError as e:
        if args.debug:
            raise
        return _error(args.command, str(e))
    except OSError as e:  # a file the user named: missing, a folder, no permission
        if args.debug or not e.filename:
            raise
        return _error(args.command, f"{e.filename}: {e.strerror or e}; check the path")
    finally:
        if quiet:
            set_quiet(previous)


if __name__ == "__main__":
    sys.exit(main())
