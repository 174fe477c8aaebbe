"""SeisBench's (and ObsPy's) private names that sine_seisbench relies on, all behind
:mod:`sine_seisbench.seisbench_adapter`: each must exist with the parameters and the behaviour the adapter
assumes. A failure here names what changed in SeisBench and which adapter function to fix."""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import re
from pathlib import Path

import numpy as np
import obspy
import pytest
import seisbench
from seisbench.models.base import GroupingHelper, SeisBenchModel, WaveformModel

import sine_seisbench
from sine_seisbench import seisbench_adapter as sba
from sine_seisbench.geometry import GeographicGroupingHelper
from sine_seisbench.model import SINE

VERSIONS = f"seisbench {seisbench.__version__}, obspy {obspy.__version__}"


def changed(what: str, fix: str) -> str:
    return f"{what} ({VERSIONS}): fix sine_seisbench.seisbench_adapter.{fix}"


@pytest.fixture(scope="module")
def model() -> SINE:
    return SINE(max_stations=4)


def _owner(path: str):
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return importlib.import_module(path)


# ----------------------------------------------------------------------------------------------------
# Every private name: present, of the expected kind, with the expected parameters
# ----------------------------------------------------------------------------------------------------
_KINDS = {
    "_model_path": classmethod,
    "_parse_weight_filename": staticmethod,
    "_assemble_groups": staticmethod,
}


@pytest.mark.parametrize(
    "owner,name,params,fix", sba.PRIVATE_NAMES, ids=[n[1] for n in sba.PRIVATE_NAMES]
)
def test_private_name_exists_with_expected_parameters(owner, name, params, fix):
    assert hasattr(sba, fix), f"PRIVATE_NAMES names adapter function {fix!r}, which does not exist"
    where = _owner(owner)
    if name == "_grouping":  # an instance attribute set by WaveformModel.__init__
        helper = GeographicGroupingHelper(3)
        wm = WaveformModel(grouping=helper)
        assert getattr(wm, name, None) is helper, changed(
            f"WaveformModel(grouping=helper) no longer keeps the helper as .{name}", fix
        )
        return
    assert hasattr(where, name), changed(f"{owner}.{name} is gone", fix)
    value = inspect.getattr_static(where, name)
    if name == "_annotate_args":
        assert isinstance(value, dict), changed(
            f"{owner}.{name} is a {type(value).__name__}, no longer a dict", fix
        )
        return
    kind = _KINDS.get(name)
    if kind is not None:
        assert isinstance(value, kind), changed(
            f"{owner}.{name} is no longer a {kind.__name__} (now {type(value).__name__})", fix
        )
    signature = inspect.signature(getattr(where, name))
    found = list(signature.parameters.values())
    names = tuple(p.name for p in found)
    if name == "_model_path":  # bound classmethod: no parameters
        assert names == (), changed(f"{owner}.{name}{signature} now takes parameters", fix)
        return
    assert names[: len(params)] == params, changed(
        f"{owner}.{name} parameters are {names}, expected {params} first", fix
    )
    extra = [
        p.name
        for p in found[len(params) :]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not extra, changed(f"{owner}.{name} has new required parameters {extra}", fix)


# ----------------------------------------------------------------------------------------------------
# Behaviour the adapter relies on
# ----------------------------------------------------------------------------------------------------
def test_annotate_args_is_a_dict_of_documented_defaults(model):
    base = sba.annotate_args(WaveformModel)
    for key in ("batch_size", "overlap", "stacking", "flexible_horizontal_components"):
        assert key in base, changed(
            f"WaveformModel._annotate_args no longer declares {key!r}", "annotate_args"
        )
    for key, value in base.items():
        assert isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str), changed(
            f"WaveformModel._annotate_args[{key!r}] is {value!r}, not (doc, default)",
            "annotate_arg_default",
        )
    # SINE extends SeisBench's dict in its class body (SeisBench's convention) without changing it
    assert sba.annotate_args(model) is SINE._annotate_args
    assert set(base) <= set(sba.annotate_arg_names(SINE))
    assert "min_stations" not in base
    assert sba.annotate_arg_default(SINE, "*_threshold") == 0.3
    assert sba.annotate_arg_default(model, "overlap") == 1500
    assert base["overlap"][1] == 0, changed(
        "WaveformModel's overlap default is no longer 0", "annotate_args"
    )
    with pytest.raises(KeyError, match="no_such_argument"):
        sba.annotate_arg_default(model, "no_such_argument")


def test_arg_returns_the_argdict_value_or_the_declared_default(model):
    assert sba.arg(model, {}, "overlap") == 1500, changed(
        "WaveformModel._argdict_get_with_default no longer falls back to _annotate_args", "arg"
    )
    assert sba.arg(model, {"overlap": 7}, "overlap") == 7
    assert sba.arg(model, {}, "min_stations") == 3
    assert sba.arg(model, {"batch_size": None}, "batch_size") is None  # a given None is kept
    # default_args are merged into argdict by the caller, not looked up here
    assert sba.arg(model, {}, "stacking") == "avg"
    with pytest.raises(KeyError, match="no_such_argument"):
        sba.arg(model, {}, "no_such_argument")


def test_threshold_per_phase(model):
    assert sba.threshold(model, {}, "P") == 0.3
    args = {"P_threshold": 0.5}
    assert sba.threshold(model, args, "P") == 0.5
    assert sba.threshold(model, args, "S") == 0.3


def test_verify_args_warns_for_unknown_keys_only(model, caplog):
    with caplog.at_level(logging.WARNING, logger="seisbench"):
        sba.verify_args(
            model,
            {"P_threshold": 0.4, "overlap": 100, "inventory": None, "min_stations": 2},
        )
    assert not caplog.records, changed(
        f"WaveformModel._verify_argdict warned about known keys: {caplog.text}", "verify_args"
    )
    with caplog.at_level(logging.WARNING, logger="seisbench"):
        sba.verify_args(model, {"no_such_argument": 1})
    assert "no_such_argument" in caplog.text, changed(
        "WaveformModel._verify_argdict no longer warns about an unknown argument", "verify_args"
    )


def test_overlap_and_window_stride(model):
    assert WaveformModel._get_overlap(model, 3001, {"overlap": 0.5}) == 1500, changed(
        "WaveformModel._get_overlap(3001, {'overlap': 0.5}) is no longer 1500", "overlap_samples"
    )
    assert sba.overlap_samples(model, {"overlap": 0.5}) == 1500
    assert sba.overlap_samples(model, {"overlap": 0.5}, in_samples=1001) == 500
    assert sba.overlap_samples(model, {"overlap": 1200}) == 1200
    assert sba.overlap_samples(model, {}) == 1500  # SINE's default
    assert sba.window_stride(model, {}) == 1501
    assert sba.window_stride(model, {"overlap": 0}) == 3001
    assert isinstance(sba.overlap_samples(model, {"overlap": 0.25}), int)


def test_component_index_maps_z_n_e_1_2(model, caplog):
    index = sba.component_index(model)
    assert index == {"Z": 0, "N": 1, "E": 2, "1": 1, "2": 2}, changed(
        f"WaveformModel._build_comp_dict(Stream(), True)[0] is {index}, SINE needs Z0 N1 E2 1->N 2->E",
        "component_index",
    )
    assert sba.component_index(model, flexible=False) == {"Z": 0, "N": 1, "E": 2}
    # with a stream, SeisBench warns about a station with both N and 1
    st = obspy.Stream(
        [
            obspy.Trace(np.ones(10), header={"station": "A", "channel": f"HH{c}"})
            for c in ("Z", "N", "1")
        ]
    )
    with caplog.at_level(logging.WARNING, logger="seisbench"):
        assert sba.component_index(model, st) == index
    assert "both 1 and N" in caplog.text or "both N and 1" in caplog.text, changed(
        "WaveformModel._build_comp_dict no longer warns about mixed N/1 components",
        "component_index",
    )


def test_grouping_helper_is_the_one_given_to_the_model():
    model = SINE(max_stations=5)
    helper = sba.grouping_helper(model)
    assert isinstance(helper, GeographicGroupingHelper)
    assert helper.max_stations == 5 and helper.min_neighbours is None
    assert helper.grouping == "full"


def test_apply_model_filter_uses_filter_args_and_kwargs(model):
    st = obspy.read()
    before = st.copy()
    sba.apply_model_filter(model, st)  # SINE has no filter
    assert all(np.array_equal(a.data, b.data) for a, b in zip(st, before, strict=True))

    filtered = SINE(max_stations=4, filter_args=("highpass",), filter_kwargs={"freq": 1.0})
    st = obspy.read()
    sba.apply_model_filter(filtered, st)
    expected = before.copy().filter("highpass", freq=1.0)
    assert all(np.allclose(a.data, b.data) for a, b in zip(st, expected, strict=True)), changed(
        "WaveformModel._filter_stream no longer applies stream.filter(*filter_args, **filter_kwargs)",
        "apply_model_filter",
    )


def test_model_cache_folder_is_under_seisbench_cache():
    folder = sba.model_cache_folder(SINE)
    assert folder == Path(seisbench.cache_model_root) / "sine", changed(
        f"SeisBenchModel._model_path() is {folder}, expected seisbench.cache_model_root/sine",
        "model_cache_folder",
    )
    assert sba.model_cache_folder(SINE(max_stations=4)) == folder


@pytest.mark.parametrize(
    "name,expected",
    [
        ("x.json.v1", ("x", "json", "1")),
        ("sine_pn_original.pt.v3", ("sine_pn_original", "pt", "3")),
        ("x.json", ("x", "json", None)),
        ("README.md", (None, None, None)),
        ("x.json.backup", (None, None, None)),
    ],
)
def test_parse_weight_filename(name, expected):
    assert sba.parse_weight_filename(name) == expected, changed(
        f"SeisBenchModel._parse_weight_filename({name!r}) is "
        f"{SeisBenchModel._parse_weight_filename(name)}, expected {expected}",
        "parse_weight_filename",
    )
    assert sba.parse_weight_filename(Path("/somewhere") / name) == expected


def _three_stations() -> obspy.Stream:
    t0 = obspy.UTCDateTime(2020, 1, 1)
    st = obspy.Stream()
    for sta, start, lat in [("A", 0, 0.0), ("B", 0, 0.01), ("C", 5, 0.02)]:
        for c in "ZNE":
            tr = obspy.Trace(
                np.ones(1001 - start * 100),
                header={
                    "network": "XX",
                    "station": sta,
                    "channel": f"HH{c}",
                    "sampling_rate": 100,
                    "starttime": t0 + start,
                },
            )
            tr.stats.coordinates = {"latitude": lat, "longitude": 0.0, "elevation": 0.0}
            st += tr
    return st


def test_station_intervals_and_assemble_groups():
    t0 = obspy.UTCDateTime(2020, 1, 1)
    comp = {"Z": 0, "N": 1, "E": 2}
    st = _three_stations()
    intervals = sba.station_intervals(GroupingHelper("full"), st, False, 1.0, comp)
    assert [(sorted(s), a - t0, b - t0) for s, a, b in intervals] == [
        (["XX.A.", "XX.B."], 0.0, 5.0),
        (["XX.A.", "XX.B.", "XX.C."], 5.0, 10.0),
    ], changed(
        f"GroupingHelper._get_intervals returned {intervals}, expected (station ids, t0, t1) per "
        "constant station set",
        "station_intervals",
    )
    groups = sba.assemble_groups(st, intervals)
    assert [sorted({tr.stats.station for tr in g}) for g in groups] == [["A", "B"], ["A", "B", "C"]]
    assert all(tr.stats.starttime == t0 + 5 for tr in groups[1]), changed(
        "GroupingHelper._assemble_groups no longer slices traces to the interval", "assemble_groups"
    )
    # SINE's grouping helper on top: compact groups of at most max_stations per interval
    grouped = GeographicGroupingHelper(2).group_stream(_three_stations(), False, 1.0, comp)
    assert [sorted({tr.stats.station for tr in g}) for g in grouped] == [
        ["A", "B"],
        ["A", "B"],
        ["B", "C"],
    ]


def test_read_mseed_bytes_round_trip():
    tr = obspy.Trace(
        np.arange(100, dtype=np.int32),
        header={"network": "XX", "station": "A", "channel": "HHZ", "sampling_rate": 100},
    )
    buf = io.BytesIO()
    tr.write(buf, format="MSEED", reclen=4096)
    st = sba.read_mseed_bytes(buf.getvalue())
    assert len(st) == 1 and st[0].id == tr.id and st[0].stats.sampling_rate == 100
    assert np.array_equal(st[0].data, tr.data)
    # the private reader is what the adapter uses (obspy.read() is ~3.5x slower per packet)
    from obspy.io.mseed import core

    assert callable(getattr(core, "_read_mseed", None)), changed(
        "obspy.io.mseed.core._read_mseed is gone (read_mseed_bytes falls back to obspy.read)",
        "read_mseed_bytes",
    )


# ----------------------------------------------------------------------------------------------------
# No private name outside the adapter
# ----------------------------------------------------------------------------------------------------
#: Modules allowed to use a private name outside the adapter (none: every use goes through the adapter)
PENDING: set[str] = set()


def test_private_names_only_in_the_adapter():
    package = Path(sine_seisbench.__file__).parent
    names = sorted({name for _, name, _, _ in sba.PRIVATE_NAMES})
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    # SINE declares its annotate arguments by extending _annotate_args in its class body (SeisBench's
    # documented convention); those lines are allowed
    declaration = re.compile(r"^\s*_annotate_args(\[.*\])?\s*=")
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "seisbench_adapter.py" or rel in PENDING:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not (rel == "model.py" and declaration.match(line)):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, (
        "SeisBench/ObsPy private names outside sine_seisbench/seisbench_adapter.py (call the adapter's "
        "function instead):\n" + "\n".join(found)
    )
