"""Configuration of ``sine monitor``: a TOML or YAML file, overridden by command-line flags.

Example (``monitor.toml``)::

    weights = "socal_sim"              # name for SINE.from_pretrained or a path given to SINE.load
    inventory = "stations.xml"         # StationXML (coordinates; responses used for remove_sensitivity)
    stride_s = 15.01                   # seconds between window starts (default: window - overlap)
    max_latency_s = 10                 # how long a window waits for late stations
    state = "state/monitor.json"       # engine checkpoint (or "redis://host:6379/0?key=sine:state")

    [classify]                         # any SINE annotate/classify argument
    P_threshold = 0.3
    min_stations = 3

    [source]                           # or source = "kafka://127.0.0.1:9092/waveforms?group=sine"
    type = "redis"
    url = "redis://127.0.0.1:6379/0"
    stream = "waveforms"

    [[sinks]]
    type = "jsonl"
    path = "-"

    [[sinks]]
    type = "kafka"
    bootstrap = "127.0.0.1:9092"
    topic = "sine.events"

Sources and sinks can also be written as one string (CLI ``--source`` / ``--sink``):

* ``files:PATTERN`` (a folder or glob of miniSEED files), options ``?speed=1&packet_s=1``
* ``sds:ROOT?start=2022-02-06T00:00&end=2022-02-06T04:00&streams=UW.SHW..HH?``
* ``seedlink://HOST:PORT?streams=UW_SHW:HH?,PB_B204:EH?``
* ``redis://HOST:PORT/DB?stream=waveforms&group=sine&consumer=sine-1``
* ``kafka://HOST:PORT/TOPIC?group=sine``
* sinks: ``jsonl:-`` (stdout), ``jsonl:PATH``, ``quakeml:FOLDER``, ``redis://HOST:PORT/DB?stream=sine.out``,
  ``kafka://HOST:PORT/TOPIC``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_config(path: str | None) -> dict[str, Any]:
    """A config file as a dict (``.toml``, ``.yaml``/``.yml`` or ``.json``); ``{}`` without a path."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"monitor config {path!r} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".toml":
        return tomllib.loads(text)
    if p.suffix in (".yaml", ".yml", ".json"):
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"monitor config {path!r} must hold a mapping at the top level")
        return data
    raise ValueError(f"monitor config {path!r}: use a .toml, .yaml, .yml or .json file")


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def parse_spec(spec: str | dict[str, Any], kind: str) -> dict[str, Any]:
    """A source/sink string (see the module docstring) or dict as a dict with ``type``."""
    if isinstance(spec, dict):
        if "type" not in spec:
            raise ValueError(f"{kind} {spec!r} has no 'type'")
        return dict(spec)
    parts = urlsplit(spec)
    query = {k: _number(v) for k, v in parse_qsl(parts.query)}
    scheme = parts.scheme
    if scheme in ("redis", "rediss"):
        url = f"{scheme}://{parts.netloc}{parts.path or ''}"
        return {"type": "redis", "url": url, **query}
    if scheme == "kafka":
        topic = parts.path.lstrip("/")
        return {"type": "kafka", "bootstrap": parts.netloc, "topic": topic, **query}
    if scheme == "seedlink":
        streams = str(query.pop("streams", "")).split(",") if "streams" in query else []
        return {"type": "seedlink", "server": parts.netloc, "streams": streams, **query}
    if scheme in ("files", "sds", "jsonl", "quakeml"):
        target = spec.split(":", 1)[1].split("?", 1)[0]
        key = {"files": "pattern", "sds": "root", "jsonl": "path", "quakeml": "folder"}[scheme]
        return {"type": scheme, key: target, **query}
    if not scheme and kind == "source":
        return {"type": "files", "pattern": spec}
    raise ValueError(
        f"unknown {kind} {spec!r}: use files:, sds:, seedlink://, redis:// or kafka:// (sources) or jsonl:, "
        "quakeml:, redis://, kafka:// (sinks)"
    )


def build_source(spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "files":
        from .replay import FileSource

        return FileSource(spec.pop("pattern"), **spec)
    if kind == "sds":
        from .replay import SDSSource

        streams = spec.pop("streams", None)
        if isinstance(streams, str):
            streams = streams.split(",")
        return SDSSource(
            spec.pop("root"), spec.pop("start"), spec.pop("end"), streams=streams, **spec
        )
    if kind == "seedlink":
        from .replay import SeedLinkSource

        return SeedLinkSource(spec.pop("server"), spec.pop("streams"), **spec)
    if kind == "redis":
        from .redis_io import RedisSource

        return RedisSource(spec.pop("url"), spec.pop("stream", "waveforms"), **spec)
    if kind == "kafka":
        from .kafka_io import KafkaSource

        return KafkaSource(spec.pop("bootstrap"), spec.pop("topic"), **spec)
    raise ValueError(f"unknown source type {kind!r}")


def build_sink(spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "jsonl":
        from .service import JsonLinesSink

        return JsonLinesSink(spec.pop("path", "-"), **spec)
    if kind == "quakeml":
        from .service import QuakeMLSink

        return QuakeMLSink(spec.pop("folder"))
    if kind == "redis":
        from .redis_io import RedisSink

        return RedisSink(spec.pop("url"), spec.pop("stream", "sine.out"), **spec)
    if kind == "kafka":
        from .kafka_io import KafkaSink

        return KafkaSink(spec.pop("bootstrap"), spec.pop("topic"), **spec)
    raise ValueError(f"unknown sink type {kind!r}")


def build_state(spec: str | None) -> Any:
    if not spec:
        return None
    if spec.startswith(("redis://", "rediss://")):
        from .service import RedisStateStore

        parts = urlsplit(spec)
        query = dict(parse_qsl(parts.query))
        key = query.get("key", "sine:monitor:state")
        return RedisStateStore(f"{parts.scheme}://{parts.netloc}{parts.path}", key)
    from .service import FileStateStore

    return FileStateStore(spec)
