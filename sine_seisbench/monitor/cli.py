"""``sine monitor`` (run the service) and ``sine publish`` (feed recorded data into Redis or Kafka)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import obspy

from ..cli_support import (
    check_output_file,
    check_output_folder,
    load_weights,
    read_inventory,
    read_waveforms,
    resolve_device,
    resolve_weights,
    waveform_files,
)
from ..errors import UserError, one_line
from ..model import DEFAULT_WEIGHTS
from ..progress import progress
from .config import (
    build_sink,
    build_source,
    build_state,
    check_classify_key,
    check_spec,
    engine_options,
    load_config,
    parse_spec,
)


def _model(weights: str | None, device: Any = "cpu") -> Any:
    """The weights (default: the shipped :data:`~sine_seisbench.DEFAULT_WEIGHTS`) on ``device``."""
    return load_weights(weights or DEFAULT_WEIGHTS, device=device, command="sine monitor")


def _check_outputs(sinks: list[dict[str, Any]], state: str | None) -> None:
    """Output files and folders of the sinks and the checkpoint, checked before the service starts."""
    for sink in sinks:
        if sink["type"] == "jsonl" and sink.get("path", "-") != "-":
            check_output_file(sink["path"], "--sink jsonl:")
        elif sink["type"] == "quakeml":
            check_output_folder(sink["folder"], "--sink quakeml:")
    if state and not state.startswith(("redis://", "rediss://")):
        check_output_file(state, "--state")


def cmd_monitor(args: argparse.Namespace) -> int:
    from .engine import StreamingClassifier
    from .service import Monitor

    quiet = bool(getattr(args, "quiet", False))
    logging.basicConfig(
        level=logging.INFO if not quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cfg = load_config(args.config)
    inventory = args.inventory or cfg.get("inventory")
    if not inventory:
        raise UserError(
            "give station coordinates with --inventory (StationXML or CSV) or in the config file"
        )
    source_spec = args.source or cfg.get("source")
    if not source_spec:
        raise UserError("give a source with --source or in the config file")
    source_cfg = parse_spec(source_spec, "source")
    check_spec(source_cfg, "source", "--source" if args.source else f"{args.config} [source]")
    if args.speed is not None and source_cfg["type"] in ("files", "sds"):
        source_cfg["speed"] = None if args.speed <= 0 else args.speed
    if source_cfg["type"] in ("files", "sds") and args.state and "state_path" not in source_cfg:
        source_cfg["state_path"] = args.state + ".source"
    sink_specs = args.sink or cfg.get("sinks") or ["jsonl:-"]
    sink_cfgs = [parse_spec(s, "sink") for s in sink_specs]
    for s in sink_cfgs:
        check_spec(s, "sink", "--sink" if args.sink else f"{args.config} [[sinks]]")
    classify_args = dict(cfg.get("classify", {}))
    for item in args.set or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--set {item}: give KEY=VALUE, e.g. --set P_threshold=0.4")
        check_classify_key(key, f"--set {item}")
        classify_args[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    state_spec = args.state or cfg.get("state")
    _check_outputs(sink_cfgs, state_spec)
    weights = args.weights or cfg.get("weights") or DEFAULT_WEIGHTS
    resolve_weights(weights)
    device_spec = args.device or cfg.get("device") or "auto"
    device = resolve_device(device_spec, "--device" if args.device else f"{args.config} device")
    # every engine option of the config file (a new engine option needs no change here); flags override
    engine_args = {k: cfg[k] for k in engine_options() if k in cfg}
    flags = {
        "stride_s": args.stride,
        "max_latency_s": args.max_latency,
        "max_packet_skew_s": args.max_packet_skew,
        "anchor": args.anchor,
    }
    engine_args.update({k: v for k, v in flags.items() if v is not None})
    if engine_args.get("anchor") is not None:
        try:
            engine_args["anchor"] = obspy.UTCDateTime(engine_args["anchor"])
        except (TypeError, ValueError) as e:
            raise UserError(
                f"anchor {engine_args['anchor']!r} is not a time; give e.g. 2022-02-06T00:00:00"
            ) from e
    table = read_inventory(
        inventory, "--inventory" if args.inventory else f"{args.config} inventory"
    )
    try:
        source = build_source(source_cfg)
    except FileNotFoundError as e:  # no waveform files match / no SDS archive
        raise UserError(f"source {source_spec}: {one_line(e)}; check the path") from e
    model = _model(weights, device)
    engine = StreamingClassifier(model, table, live=False, **engine_args, **classify_args)
    engine.live = bool(getattr(source, "live", False))
    sinks = [build_sink(s) for s in sink_cfgs]
    state = build_state(state_spec)
    monitor = Monitor(engine, source, sinks, state=state)
    try:
        summary = monitor.run(
            max_seconds=args.max_seconds,
            install_signals=True,
            stop_when_idle_s=args.stop_when_idle,
        )
    finally:
        monitor.close()
    print(json.dumps({"summary": summary}), file=sys.stderr)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Cuts records into packets and publishes them to Redis or Kafka (optionally at real-time speed)."""
    from .schema import encode_packet, split_packets

    target = parse_spec(args.to, "sink")
    if target["type"] not in ("redis", "kafka"):
        raise UserError(
            f"--to {args.to}: give redis://HOST:PORT/DB?stream=NAME or kafka://HOST:PORT/TOPIC"
        )
    stream = read_waveforms(waveform_files(args.files, "FILES"))
    stream.merge(method=1)
    stream = stream.split()
    packets = split_packets(stream, args.packet)
    if target["type"] == "redis":
        from .redis_io import publish_packets

        def send(batch: list[bytes]) -> None:
            publish_packets(target["url"], target.get("stream", "waveforms"), batch)
    elif target["type"] == "kafka":
        from .kafka_io import ensure_topic
        from .kafka_io import publish_packets as kafka_publish

        # an existing topic keeps its partitions; a new one gets one (per-station order is kept either way)
        ensure_topic(
            target["bootstrap"], target["topic"], partitions=int(target.get("partitions", 1))
        )

        def send(batch: list[bytes]) -> None:
            kafka_publish(target["bootstrap"], target["topic"], batch)
    else:  # checked above
        raise AssertionError(target["type"])
    t0_wall = time.time()
    t0_data = min(p.stats.starttime for p in packets).timestamp if packets else 0.0
    batch: list[bytes] = []
    for p in progress(packets, desc="publish", unit="packet"):
        if args.speed:
            due = t0_wall + (p.stats.endtime.timestamp + p.stats.delta - t0_data) / args.speed
            if due > time.time():
                if batch:
                    send(batch)
                    batch = []
                time.sleep(due - time.time())
        batch.append(encode_packet(p, args.format))
        if len(batch) >= 500:
            send(batch)
            batch = []
    if batch:
        send(batch)
    print(f"sine publish: {len(packets)} packets sent to {args.to}", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "monitor",
        help="continuous monitoring: picks and events from files, SDS, SeedLink, Redis or Kafka",
        description="Runs SINE in overlapping windows over incoming multi-station data and publishes picks "
        "and events as they happen (see sine_seisbench.monitor.config for the config file and the "
        "source/sink syntax). Flags override the config file.",
    )
    p.add_argument("--config", help="TOML/YAML config file (default: none, flags only)")
    p.add_argument(
        "--inventory",
        help="station file: StationXML or a CSV/TSV table with network, station, latitude, longitude, "
        "elevation in the usual spellings (default: the config's inventory)",
    )
    p.add_argument(
        "--weights",
        help=f"weights name or path, or 'untrained' (default: the config's weights, else {DEFAULT_WEIGHTS})",
    )
    p.add_argument(
        "--device",
        help="torch device: auto (cuda when a GPU is available, else cpu), cpu, cuda, cuda:N or mps "
        "(default: the config's device, else auto)",
    )
    p.add_argument(
        "--source",
        help="files:GLOB, sds:ROOT?start=..&end=.., seedlink://, redis://, kafka:// (default: the config's "
        "source)",
    )
    p.add_argument(
        "--sink",
        action="append",
        help="jsonl:-, jsonl:PATH, quakeml:DIR, redis://, kafka:// (repeat; default: the config's sinks, "
        "else jsonl:-)",
    )
    p.add_argument(
        "--state",
        help="checkpoint file (or redis://...?key=) for restarts (default: the config's state, else none)",
    )
    p.add_argument(
        "--stride",
        type=float,
        help="seconds between window starts (default: config stride_s, else the window minus its overlap)",
    )
    p.add_argument(
        "--max-latency",
        type=float,
        help="seconds a window waits for late stations (default: config max_latency_s, else the engine's)",
    )
    p.add_argument(
        "--max-packet-skew",
        type=float,
        help="dead-letter packets dated more than this many seconds from the stream's newest data "
        "(default: config max_packet_skew_s, else 86400)",
    )
    p.add_argument(
        "--anchor", help="time of window 0 (default: config anchor, else the UNIX epoch grid)"
    )
    p.add_argument(
        "--speed",
        type=float,
        help="replay speed for files/sds: 1 = real time, 0 = fastest (default: the source's speed option)",
    )
    p.add_argument(
        "--set",
        action="append",
        help="SINE argument KEY=VALUE, e.g. P_threshold=0.4 (repeat; default: the config's [classify])",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        help="stop after this many seconds (default: run until stopped)",
    )
    p.add_argument(
        "--stop-when-idle",
        type=float,
        help="finish (flush, commit, exit) once the source sent nothing for this many seconds (default: "
        "never)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log warnings only, no progress bars",
    )
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "publish", help="publish miniSEED files as waveform packets to Redis or Kafka"
    )
    p.add_argument("files", nargs="+", help="miniSEED files")
    p.add_argument(
        "--to", required=True, help="redis://HOST:PORT/DB?stream=NAME or kafka://HOST:PORT/TOPIC"
    )
    p.add_argument("--packet", type=float, default=1.0, help="packet length (s)")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="1 = real time (default: as fast as possible)",
    )
    p.add_argument(
        "--format",
        choices=["json", "mseed"],
        default="mseed",
        help="packet encoding",
    )
    p.set_defaults(func=cmd_publish)
