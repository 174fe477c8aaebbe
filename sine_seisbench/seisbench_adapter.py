"""The one place where sine-seisbench touches SeisBench's (and ObsPy's) private names.

SeisBench's ``WaveformModel`` keeps useful helpers under private names (argument defaults, overlap, the
component map, the weights cache folder, ...). Everything else in the package calls the functions here, so a
SeisBench release that renames or changes one of them breaks exactly one function of this module, and
``tests/test_seisbench_adapter.py`` says which (each name's existence, signature and assumed behaviour is
checked there; :data:`PRIVATE_NAMES` lists them).

Extending ``_annotate_args`` in a subclass body is SeisBench's documented convention for declaring annotate
arguments and stays in :class:`~sine_seisbench.model.SINE`; reading it goes through :func:`annotate_args`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import obspy
from seisbench.models.base import GroupingHelper, SeisBenchModel, WaveformModel

#: Every private name used, as (owner, name, expected parameters, adapter function using it). The adapter
#: tests check each against the installed SeisBench/ObsPy.
PRIVATE_NAMES: list[tuple[str, str, tuple[str, ...], str]] = [
    ("seisbench.models.base.WaveformModel", "_annotate_args", (), "annotate_args"),
    (
        "seisbench.models.base.WaveformModel",
        "_argdict_get_with_default",
        ("self", "argdict", "key"),
        "arg",
    ),
    ("seisbench.models.base.WaveformModel", "_verify_argdict", ("self", "argdict"), "verify_args"),
    (
        "seisbench.models.base.WaveformModel",
        "_get_overlap",
        ("self", "in_samples", "argdict"),
        "overlap_samples",
    ),
    (
        "seisbench.models.base.WaveformModel",
        "_build_comp_dict",
        ("self", "stream", "flexible_horizontal_components"),
        "component_index",
    ),
    ("seisbench.models.base.WaveformModel", "_grouping", (), "grouping_helper"),
    (
        "seisbench.models.base.WaveformModel",
        "_filter_stream",
        ("self", "stream"),
        "apply_model_filter",
    ),
    ("seisbench.models.base.SeisBenchModel", "_model_path", (), "model_cache_folder"),
    (
        "seisbench.models.base.SeisBenchModel",
        "_parse_weight_filename",
        ("filename",),
        "parse_weight_filename",
    ),
    (
        "seisbench.models.base.GroupingHelper",
        "_get_intervals",
        ("self", "stream", "strict", "min_length_s", "comp_dict", "channel"),
        "station_intervals",
    ),
    (
        "seisbench.models.base.GroupingHelper",
        "_assemble_groups",
        ("stream", "intervals"),
        "assemble_groups",
    ),
    ("obspy.io.mseed.core", "_read_mseed", ("mseed_object",), "read_mseed_bytes"),
]


# ----------------------------------------------------------------------------------------------------
# annotate/classify arguments
# ----------------------------------------------------------------------------------------------------
def annotate_args(model: WaveformModel | type[WaveformModel]) -> dict[str, tuple[str, Any]]:
    """A model's (or model class's) declared annotate arguments: name or pattern (``*_threshold``) ->
    (documentation, default). The dict itself; do not modify it."""
    return model._annotate_args


def annotate_arg_names(model: WaveformModel | type[WaveformModel]) -> list[str]:
    """The declared annotate argument names and patterns, in declaration order."""
    return list(annotate_args(model))


def annotate_arg_default(model: WaveformModel | type[WaveformModel], name: str) -> Any:
    """The declared default of an annotate argument (or pattern such as ``*_threshold``)."""
    declared = annotate_args(model)
    if name not in declared:
        raise KeyError(f"{name!r} is not an annotate argument of {_class_name(model)}")
    return declared[name][1]


def arg(model: WaveformModel, argdict: dict[str, Any], name: str) -> Any:
    """``argdict[name]`` or the declared default (SeisBench's rule for annotate arguments)."""
    if name not in annotate_args(model):
        raise KeyError(f"{name!r} is not an annotate argument of {_class_name(model)}")
    return model._argdict_get_with_default(argdict, name)


def threshold(model: WaveformModel, argdict: dict[str, Any], phase: str) -> float:
    """Detection threshold of a phase: ``argdict["<phase>_threshold"]`` or the ``*_threshold`` default."""
    return argdict.get(f"{phase}_threshold", annotate_arg_default(model, "*_threshold"))


def verify_args(model: WaveformModel, argdict: dict[str, Any]) -> None:
    """SeisBench's check of annotate arguments (a warning for each unknown one)."""
    WaveformModel._verify_argdict(model, argdict)


def overlap_samples(
    model: WaveformModel, argdict: dict[str, Any], in_samples: int | None = None
) -> int:
    """Window overlap in samples: ``overlap`` below 1 is a fraction of the window (``in_samples``, default
    the model's), otherwise a sample count (SeisBench's rule)."""
    n = model.in_samples if in_samples is None else in_samples
    return int(model._get_overlap(n, argdict))


def window_stride(model: WaveformModel, argdict: dict[str, Any]) -> int:
    """Samples between consecutive windows: ``in_samples - overlap_samples``."""
    return int(model.in_samples) - overlap_samples(model, argdict)


def component_index(
    model: WaveformModel, stream: obspy.Stream | None = None, flexible: bool = True
) -> dict[str, int]:
    """Component letter -> model input channel, SeisBench's way: the model's ``component_order``, and with
    ``flexible`` (``flexible_horizontal_components``) 1 -> N and 2 -> E. With a stream, SeisBench warns about
    stations that have both N and 1 (or E and 2)."""
    comp_dict, _ = model._build_comp_dict(obspy.Stream() if stream is None else stream, flexible)
    return dict(comp_dict)


def grouping_helper(model: WaveformModel) -> GroupingHelper:
    """The ``GroupingHelper`` the model was built with (``grouping=`` of ``WaveformModel.__init__``)."""
    return model._grouping


def apply_model_filter(model: WaveformModel, stream: obspy.Stream) -> None:
    """Filters ``stream`` in place with the model's ``filter_args``/``filter_kwargs`` (what ``annotate`` does
    after resampling); nothing for models without a filter."""
    model._filter_stream(stream)


# ----------------------------------------------------------------------------------------------------
# Weights cache
# ----------------------------------------------------------------------------------------------------
def model_cache_folder(cls: type[SeisBenchModel] | SeisBenchModel) -> Path:
    """The folder of a model class's weights in SeisBench's cache (``seisbench.cache_model_root/<name>``)."""
    return Path(cls._model_path())


def parse_weight_filename(name: str | Path) -> tuple[str | None, str | None, str | None]:
    """``"x.json.v1"`` -> ``("x", "json", "1")``: weights name, file type (json/pt) and version (None when
    unversioned); ``(None, None, None)`` for names that are not weights files."""
    return SeisBenchModel._parse_weight_filename(name)


# ----------------------------------------------------------------------------------------------------
# GroupingHelper internals (for GroupingHelper subclasses)
# ----------------------------------------------------------------------------------------------------
def station_intervals(
    helper: GroupingHelper,
    stream: obspy.Stream,
    strict: bool,
    min_length_s: float,
    comp_dict: dict[str, int],
) -> list[tuple[list[str], obspy.UTCDateTime, obspy.UTCDateTime]]:
    """SeisBench's split of a stream into time intervals with a constant set of stations (ids without
    component): ``[(stations, t0, t1), ...]``."""
    return helper._get_intervals(stream, strict, min_length_s, comp_dict)


def assemble_groups(
    stream: obspy.Stream,
    intervals: list[tuple[list[str], obspy.UTCDateTime, obspy.UTCDateTime]],
) -> list[list[obspy.Trace]]:
    """The traces of each ``(stations, t0, t1)``, sliced to the interval (SeisBench's grouping output)."""
    return GroupingHelper._assemble_groups(stream, intervals)


# ----------------------------------------------------------------------------------------------------
# ObsPy
# ----------------------------------------------------------------------------------------------------
def read_mseed_bytes(raw: bytes) -> obspy.Stream:
    """Decodes miniSEED bytes. ObsPy's reader itself (``obspy.io.mseed.core._read_mseed``): ``obspy.read``
    spends ~1.5 ms per call on plugin lookup and argument handling, ~3.5x what decoding a 1 s packet takes.
    Falls back to ``obspy.read`` should ObsPy move it (the adapter tests then fail)."""
    try:
        from obspy.io.mseed.core import _read_mseed
    except ImportError:  # pragma: no cover - only with an ObsPy that moved it
        return obspy.read(io.BytesIO(raw), format="MSEED")
    return _read_mseed(io.BytesIO(raw))


def _class_name(model: Any) -> str:
    return model.__name__ if isinstance(model, type) else type(model).__name__


__all__ = [
    "PRIVATE_NAMES",
    "annotate_arg_default",
    "annotate_arg_names",
    "annotate_args",
    "apply_model_filter",
    "arg",
    "assemble_groups",
    "component_index",
    "grouping_helper",
    "model_cache_folder",
    "overlap_samples",
    "parse_weight_filename",
    "read_mseed_bytes",
    "station_intervals",
    "threshold",
    "verify_args",
    "window_stride",
]
