"""Configuration of ``sine monitor``: a TOML or YAML file, overridden by command-line flags.

Example (``monitor.toml``)::

    weights = "sine_pn_original"       # the shipped default; a name for SINE.from_pretrained or a path
    inventory = "stations.xml"         # StationXML (responses used for remove_sensitivity) or a CSV/TSV table
    device = "auto"                    # cuda when a GPU is available, else cpu (or cpu, cuda:1, mps)
    stride_s = 15.01                   # seconds between window starts (default: window - overlap)
    max_latency_s = 10                 # how long a window waits for late stations
    max_packet_skew_s = 86400          # packets dated further from the stream's time are dead-lettered
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

import inspect
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from ..errors import ConfigError, MissingFileError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_config(path: str | None, validate: bool = True) -> dict[str, Any]:
    """A config file as a dict (``.toml``, ``.yaml``/``.yml`` or ``.json``); ``{}`` without a path.

    :param path: The config file.
    :param validate: Check every key with :func:`validate_config` (unknown keys are errors).
    :raises MissingFileError: The file does not exist.
    :raises ConfigError: The file is malformed or holds an unknown key.
    """
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(
            f"monitor config {path!r} does not exist; check the path given to --config"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"monitor config {path!r} cannot be read ({e}); give a UTF-8 text file"
        ) from e
    if p.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(
                f"monitor config {path!r} is not valid TOML: {e}; fix the syntax"
            ) from e
    elif p.suffix in (".yaml", ".yml", ".json"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(
                f"monitor config {path!r} is not valid YAML/JSON: {' '.join(str(e).split())}; fix the syntax"
            ) from e
        if not isinstance(data, dict):
            raise ConfigError(
                f"monitor config {path!r} must hold a mapping (key: value lines) at the top level"
            )
    else:
        raise ConfigError(f"monitor config {path!r}: use a .toml, .yaml, .yml or .json file")
    if validate:
        validate_config(data, str(path))
    return data


# ----------------------------------------------------------------------------------------------------
# Valid keys, derived from the declared options
# ----------------------------------------------------------------------------------------------------
#: Top-level config keys of the service itself; the engine's options (see :func:`engine_options`) are valid
#: top-level keys too.
SERVICE_KEYS = {
    "weights": "shipped/pretrained name or a weights path (default: sine_seisbench.DEFAULT_WEIGHTS)",
    "inventory": "station file: StationXML or a CSV/TSV table (see sine_seisbench.stations)",
    "device": "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps",
    "state": "engine checkpoint file or redis://...?key=",
    "source": "the source (a table or a string)",
    "sinks": "the sinks (a list of tables or strings)",
    "classify": "SINE annotate/classify arguments",
}
#: Engine arguments that a config file does not set (given by the service itself).
_ENGINE_INTERNAL = ("self", "model", "inventory", "live")


def engine_options() -> list[str]:
    """The :class:`~sine_seisbench.monitor.engine.StreamingClassifier` options a config file may set at its top
    level: read from the engine's signature, so a new engine option is accepted without changes here."""
    from .engine import StreamingClassifier

    params = inspect.signature(StreamingClassifier.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name not in _ENGINE_INTERNAL
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def classify_patterns() -> list[str]:
    """Keys of the ``[classify]`` table (and of ``--set``): SINE's annotate/classify arguments, as SeisBench
    patterns (``*_threshold`` stands for ``P_threshold``, ``S_threshold``, ...)."""
    from ..model import SINE
    from ..seisbench_adapter import annotate_arg_names

    return [k for k in annotate_arg_names(SINE) if k != "inventory"]


def check_classify_key(key: str, where: str) -> None:
    """Raises :class:`ConfigError` unless ``key`` is one of :func:`classify_patterns`.

    :param key: The key.
    :param where: Where the key was given (for the message), e.g. ``"monitor.toml [classify]"``.
    """
    patterns = classify_patterns()
    if any(re.fullmatch(p.replace("*", ".*"), key) for p in patterns):
        return
    names = [
        n
        for p in patterns
        for n in ((p.replace("*", "P"), p.replace("*", "S")) if "*" in p else (p,))
    ]
    raise ConfigError(
        f"{where}: unknown SINE argument {key!r}{did_you_mean(key, names)} (valid: {', '.join(sorted(patterns))})"
    )


def _keyword_names(cls: type) -> set[str]:
    """Keyword arguments of ``cls(...)``, following ``**kwargs`` passed on to base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names |= {
            p.name
            for p in params
            if p.name != "self"
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return names


def _spec_class(kind: str, type_: str) -> type | None:
    """The class built for a source/sink ``type`` (imported lazily), or None for an unknown type."""
    if kind == "source":
        if type_ in ("files", "sds", "seedlink"):
            from . import replay

            return {
                "files": replay.FileSource,
                "sds": replay.SDSSource,
                "seedlink": replay.SeedLinkSource,
            }[type_]
        if type_ == "redis":
            from .redis_io import RedisSource

            return RedisSource
        if type_ == "kafka":
            from .kafka_io import KafkaSource

            return KafkaSource
        return None
    if type_ in ("jsonl", "quakeml"):
        from . import service

        return {"jsonl": service.JsonLinesSink, "quakeml": service.QuakeMLSink}[type_]
    if type_ == "redis":
        from .redis_io import RedisSink

        return RedisSink
    if type_ == "kafka":
        from .kafka_io import KafkaSink

        return KafkaSink
    return None


def check_spec(spec: dict[str, Any], kind: str, where: str) -> None:
    """Raises :class:`ConfigError` for an unknown ``type`` or key of a source/sink dict (from
    :func:`parse_spec`); the valid keys are the arguments of the class the type builds.

    :param spec: The source/sink as a dict with ``type``.
    :param kind: ``"source"`` or ``"sink"``.
    :param where: Where it was given (for the message), e.g. ``"monitor.toml [source]"`` or ``"--sink"``.
    """
    types = (
        ("files", "sds", "seedlink", "redis", "kafka")
        if kind == "source"
        else ("jsonl", "quakeml", "redis", "kafka")
    )
    type_ = spec.get("type")
    cls = _spec_class(kind, str(type_))
    if cls is None:
        raise ConfigError(
            f"{where}: unknown {kind} type {type_!r}{did_you_mean(str(type_), types)} (valid: {', '.join(types)})"
        )
    valid = _keyword_names(cls) | {"type"}
    for key in spec:
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown {type_} {kind} key {key!r}{did_you_mean(key, valid)} "
                f"(valid: {', '.join(sorted(valid))})"
            )


def validate_config(cfg: dict[str, Any], path: str = "config") -> None:
    """Checks every key of a config (top level, ``[classify]``, ``[source]``, ``[[sinks]]``).

    :param cfg: The config as loaded by :func:`load_config`.
    :param path: The file name, for the messages.
    :raises ConfigError: For the first unknown key, naming the file, the key and the closest valid key.
    """
    valid = set(SERVICE_KEYS) | set(engine_options())
    for key in cfg:
        if key not in valid:
            raise ConfigError(
                f"{path}: unknown key {key!r}{did_you_mean(str(key), valid)} (valid: {', '.join(sorted(valid))})"
            )
    classify = cfg.get("classify", {})
    if not isinstance(classify, dict):
        raise ConfigError(
            f"{path}: 'classify' must be a table of SINE arguments, e.g. [classify] P_threshold = 0.3"
        )
    for key in classify:
        check_classify_key(str(key), f"{path} [classify]")
    if "source" in cfg:
        if not isinstance(cfg["source"], (str, dict)):
            raise ConfigError(
                f"{path}: 'source' must be a string such as 'files:data/' or a [source] table"
            )
        check_spec(parse_spec(cfg["source"], "source"), "source", f"{path} [source]")
    sinks = cfg.get("sinks", [])
    if not isinstance(sinks, list):
        raise ConfigError(
            f"{path}: 'sinks' must be a list ([[sinks]] tables or strings such as 'jsonl:-')"
        )
    for i, sink in enumerate(sinks):
        if not isinstance(sink, (str, dict)):
            raise ConfigError(
                f"{path}: sinks[{i}] must be a string such as 'jsonl:-' or a table with 'type'"
            )
        check_spec(parse_spec(sink, "sink"), "sink", f"{path} [[sinks]] #{i + 1}")


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
            raise ConfigError(f'{kind} {spec!r} has no \'type\'; add type = "files", "redis", ...')
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
    raise ConfigError(
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
