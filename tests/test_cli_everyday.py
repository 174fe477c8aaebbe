"""The everyday tools of issue 14 (part A): progress bars and ``--quiet``, devices, help texts with their
defaults, the shipped default weights on every entry point, ``--fdsn``."""

from __future__ import annotations

import argparse
import inspect
import io
import re
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import torch
from cli_util import one_error_line

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench import progress as progress_mod
from sine_seisbench.cli import build_parser, main, resolve_device
from sine_seisbench.errors import UserError
from sine_seisbench.example import network_stream
from sine_seisbench.progress import is_quiet, progress, set_quiet


@pytest.fixture
def loud(monkeypatch):
    """Progress bars shown (whatever the environment says); the switch is reset afterwards."""
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    set_quiet(None)
    yield
    set_quiet(None)


# ---------------------------------------------------------------------------------------------------------------
# Progress bars
# ---------------------------------------------------------------------------------------------------------------
def test_progress_writes_to_stderr_and_quiet_silences_it(loud, capsys):
    assert list(progress(range(3), desc="things", unit="thing")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert "things" in captured.err and "3/3" in captured.err and captured.out == ""
    set_quiet(True)
    assert is_quiet()
    assert list(progress(range(3), desc="things")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_progress_environment_variable_and_manual_updates(loud, monkeypatch):
    monkeypatch.setenv(progress_mod.QUIET_ENV, "1")
    assert is_quiet()
    set_quiet(False)  # the explicit switch wins over the environment
    assert not is_quiet()
    buf = io.StringIO()
    with progress(total=4, desc="chunks", unit="chunk", file=buf) as bar:
        bar.update(4)
    assert "4/4" in buf.getvalue()
    set_quiet(None)
    assert is_quiet()
    buf = io.StringIO()
    with progress(total=4, desc="chunks", file=buf) as bar:
        bar.update(4)
    assert buf.getvalue() == ""


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def network(tmp_path):
    """Five stations: a miniSEED file, their StationXML and a CSV station table in other spellings
    (lat/lon/elev_km, no location)."""
    st, inv = network_stream(5)
    wave = tmp_path / "waves.mseed"
    st.write(str(wave), format="MSEED")
    xml = tmp_path / "stations.xml"
    inv.write(str(xml), format="STATIONXML")
    csv = tmp_path / "stations.tsv"
    pd.DataFrame(
        [
            {
                "Net": n.code,
                "Sta": s.code,
                "Lat": s.latitude,
                "Lon": s.longitude,
                "Elev_km": s.elevation / 1e3,
            }
            for n in inv
            for s in n
        ]
    ).to_csv(csv, sep="\t", index=False)
    return wave, xml, csv


def _options(parser: argparse.ArgumentParser):
    """(command, action) of every option of every subcommand."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            yield name, command, action


# ---------------------------------------------------------------------------------------------------------------
# Help: every option states its default
# ---------------------------------------------------------------------------------------------------------------
def test_every_option_has_help_with_its_default():
    parser = build_parser()
    commands = set()
    for name, command, action in _options(parser):
        commands.add(name)
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        assert action.help, f"sine {name} {action.option_strings[0]} has no help text"
        if (
            action.nargs == 0 or action.required
        ):  # flags and required options have no default to show
            continue
        text = command._get_formatter()._expand_help(action)
        where = f"sine {name} {action.option_strings[0]}: {text!r}"
        assert "default" in text.lower(), where
        if action.default not in (None, [], argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, where
    assert {"classify", "annotate", "monitor", "publish", "simulate", "train", "info"} <= commands


def test_help_is_printed_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    assert (
        f"(default: {DEFAULT_WEIGHTS})" in out
        and "(default: auto)" in out
        and "(default: 64)" in out
    )


# ---------------------------------------------------------------------------------------------------------------
# One default weights
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["classify", "w.mseed"],
        ["annotate", "w.mseed", "--out", "a.mseed"],
        ["annotate", "--archive", "sds", "--out", "o"],
        ["demo"],
        ["info"],
    ],
)
def test_commands_default_to_the_shipped_weights(argv):
    assert build_parser().parse_args(argv).weights == DEFAULT_WEIGHTS
    assert build_parser().parse_args(["benchmark"]).sine_weights == DEFAULT_WEIGHTS


def test_monitor_and_archive_default_to_the_shipped_weights(monkeypatch):
    from sine_seisbench import archive
    from sine_seisbench.monitor import cli as monitor_cli

    assert (
        inspect.signature(archive.annotate_archive).parameters["weights"].default == DEFAULT_WEIGHTS
    )
    loaded = []
    monkeypatch.setattr(
        "sine_seisbench.monitor.cli.load_weights",
        lambda spec, **kw: loaded.append(spec) or SINE(max_stations=4),
    )
    monitor_cli._model(None)
    assert loaded == [DEFAULT_WEIGHTS]


def test_classify_without_weights_uses_the_shipped_ones(network, tmp_path, capsys):
    wave, xml, _ = network
    picks = tmp_path / "p.csv"
    code = main(
        ["--quiet", "classify", str(wave), "--inventory", str(xml), "--picks-out", str(picks)]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "untrained" not in err
    code = main(
        ["classify", str(wave), "--inventory", str(xml), "--weights", "untrained", "--quiet"]
    )
    assert code == 0
    assert "untrained SINE weights" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="--device tpu: not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="no GPU 99|CUDA is not available"):
        resolve_device("cuda:99")


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA GPU is available: cuda is not an error here"
)
@pytest.mark.parametrize("command", ["classify", "annotate", "annotate-archive", "monitor"])
def test_unavailable_device_is_one_line(network, tmp_path, capsys, command):
    wave, xml, _ = network
    argv = {
        "classify": ["classify", str(wave), "--inventory", str(xml)],
        "annotate": [
            "annotate",
            str(wave),
            "--inventory",
            str(xml),
            "--out",
            str(tmp_path / "a.mseed"),
        ],
        "annotate-archive": [
            "annotate",
            "--archive",
            str(tmp_path),
            "--inventory",
            str(xml),
            "--start",
            "2009-08-24",
            "--end",
            "2009-08-25",
            "--out",
            str(tmp_path / "out"),
        ],
        "monitor": ["monitor", "--inventory", str(xml), "--source", f"files:{wave}"],
    }[command]
    code = main(argv + ["--device", "cuda"])
    one_error_line(
        code, capsys.readouterr().err, "--device cuda", "CUDA is not available", "--device cpu"
    )
    assert not (tmp_path / "a.mseed").exists() and not (tmp_path / "out").exists()


def test_classify_on_cpu_device(capsys):
    assert (
        main(["classify", "--example", "--example-stations", "4", "--device", "cpu", "--quiet"])
        == 0
    )


def test_info_shows_devices_threads_and_default_weights(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "devices cpu" in out and f"{torch.get_num_threads()} CPU threads" in out
    assert f"default weights: {DEFAULT_WEIGHTS}" in out
    assert "--device auto uses" in out


# ---------------------------------------------------------------------------------------------------------------
# Station files and --fdsn through the CLI
# ---------------------------------------------------------------------------------------------------------------
def test_classify_and_annotate_with_a_table_in_other_spellings(network, tmp_path, capsys):
    wave, xml, tsv = network
    a, b = tmp_path / "a.mseed", tmp_path / "b.mseed"
    assert main(["--quiet", "annotate", str(wave), "--inventory", str(tsv), "--out", str(a)]) == 0
    assert main(["--quiet", "annotate", str(wave), "--inventory", str(xml), "--out", str(b)]) == 0
    ta, tb = obspy.read(str(a)), obspy.read(str(b))
    assert len(ta) == len(tb) > 0
    for x, y in zip(ta, tb, strict=True):  # the same coordinates give the same annotations
        np.testing.assert_allclose(x.data, y.data, atol=1e-5)


def test_station_table_without_elevation_warns_on_one_line(network, tmp_path, capsys):
    wave, _, tsv = network
    frame = pd.read_csv(tsv, sep="\t").drop(columns=["Elev_km"])
    frame.to_csv(tsv, sep="\t", index=False)
    assert main(["--quiet", "classify", str(wave), "--inventory", str(tsv)]) == 0
    err = capsys.readouterr().err
    warning = [ln for ln in err.splitlines() if "elevation" in ln]
    assert len(warning) == 1 and warning[0].startswith("sine: warning: station file")
    assert str(tsv) in warning[0] and "0 m" in warning[0]


def test_station_table_without_network_takes_it_from_the_waveforms(network, tmp_path, capsys):
    wave, xml, tsv = network
    frame = pd.read_csv(tsv, sep="\t")
    qm = tmp_path / "qm_stations.txt"  # QuakeMigrate: Latitude, Longitude, Elevation (km), Name
    pd.DataFrame(
        {
            "Latitude": frame.Lat,
            "Longitude": frame.Lon,
            "Elevation": frame.Elev_km,
            "Name": frame.Sta,
        }
    ).to_csv(qm, index=False)
    a, b = tmp_path / "a.mseed", tmp_path / "b.mseed"
    assert main(["--quiet", "annotate", str(wave), "--inventory", str(qm), "--out", str(a)]) == 0
    assert main(["--quiet", "annotate", str(wave), "--inventory", str(xml), "--out", str(b)]) == 0
    for x, y in zip(obspy.read(str(a)), obspy.read(str(b)), strict=True):
        np.testing.assert_allclose(x.data, y.data, atol=1e-5)


@pytest.mark.parametrize("command", ["classify", "annotate"])
def test_fdsn_offline_is_one_line(network, tmp_path, capsys, command):
    wave, xml, _ = network
    argv = [command, str(wave), "--fdsn", "http://127.0.0.1:9"]
    if command == "annotate":
        argv += ["--out", str(tmp_path / "a.mseed")]
    code = main(argv)
    one_error_line(
        code, capsys.readouterr().err, "--fdsn http://127.0.0.1:9", "cannot get the stations"
    )
    code = main(argv + ["--inventory", str(xml)])
    one_error_line(code, capsys.readouterr().err, "--inventory or --fdsn, not both")


def test_fdsn_builds_the_inventory_of_the_streams_stations(network, monkeypatch, capsys):
    """The FDSN client is asked for the stream's networks, stations and time span (no network used)."""
    wave, xml, _ = network
    asked = {}

    class FakeClient:
        def __init__(self, url, timeout=None):
            asked["url"] = url

        def get_stations(self, **kwargs):
            asked.update(kwargs)
            return obspy.read_inventory(str(xml))

    monkeypatch.setattr("obspy.clients.fdsn.Client", FakeClient)
    assert main(["--quiet", "classify", str(wave), "--fdsn", "https://example.invalid"]) == 0
    st = obspy.read(str(wave))
    assert asked["network"] == "XX" and asked["station"] == ",".join(
        sorted({t.stats.station for t in st})
    )
    assert asked["level"] == "response"
    assert asked["starttime"] == min(t.stats.starttime for t in st)


# ---------------------------------------------------------------------------------------------------------------
# Progress bars through the CLI: an archive run, --quiet
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_archive(tmp_path_factory, tt):
    from sine_seisbench.archive import write_example_archive

    root = tmp_path_factory.mktemp("sds")
    t0 = obspy.UTCDateTime("2009-08-24T23:50:00")
    inventory, _ = write_example_archive(root, t0, 6 * 60, [t0 + 120], n_stations=4, tt=tt)
    return root, inventory, t0


def test_archive_progress_quiet_device_and_a_table_without_networks(
    small_archive, tmp_path, capsys, loud
):
    root, inventory, t0 = small_archive
    qm = tmp_path / "stations.txt"  # no network column: the archive's folders give it
    pd.DataFrame(
        [
            {
                "Latitude": s.latitude,
                "Longitude": s.longitude,
                "Elevation": s.elevation / 1e3,
                "Name": s.code,
            }
            for n in inventory
            for s in n
        ]
    ).to_csv(qm, index=False)
    base = ["annotate", "--archive", str(root), "--inventory", str(qm), "--start", str(t0 + 60)]
    base += ["--end", str(t0 + 300), "--chunk", "2min", "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert re.search(
        r"chunks: 100%.* 3/3 ", captured.err
    )  # chunks on the 2-min grid: 51-52, 52-54, 54-55
    assert "3 task(s) computed" in captured.out
    assert main(["--quiet"] + base + ["--out", str(tmp_path / "b")]) == 0
    assert "chunks" not in capsys.readouterr().err
    assert not is_quiet()  # --quiet holds for its command only
    a = pd.read_csv(tmp_path / "a" / "picks" / "2009-08-24.csv")
    b = pd.read_csv(tmp_path / "b" / "picks" / "2009-08-24.csv")
    pd.testing.assert_frame_equal(a, b)
    # the same with the StationXML
    xml = tmp_path / "stations.xml"
    inventory.write(str(xml), format="STATIONXML")
    base[4] = str(xml)
    assert main(["--quiet"] + base + ["--out", str(tmp_path / "c")]) == 0
    c = pd.read_csv(tmp_path / "c" / "picks" / "2009-08-24.csv")
    pd.testing.assert_frame_equal(a, c, atol=1e-5)


def test_simulate_progress_and_quiet(tmp_path, capsys, loud):
    stations = tmp_path / "stations.csv"
    _, inv = network_stream(6)
    pd.DataFrame(
        [
            {
                "net": n.code,
                "sta": s.code,
                "lat": s.latitude,
                "lon": s.longitude,
                "elev": s.elevation,
            }
            for n in inv
            for s in n
        ]
    ).to_csv(stations, index=False)
    lat = [s.latitude for n in inv for s in n]
    lon = [s.longitude for n in inv for s in n]
    region = [str(min(lat)), str(max(lat)), str(min(lon)), str(max(lon))]
    argv = [
        "simulate",
        "--stations",
        str(stations),
        "--region",
        *region,
        "--events",
        "2",
        "--samples",
        "3001",
    ]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "simulate" in err and "2/2" in err
    assert main(argv + ["--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "2/2" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Real records from ../shared/data
# ---------------------------------------------------------------------------------------------------------------
def test_real_iceland_event_with_each_of_its_station_files(shared, tmp_path, capsys):
    """The Iceland event with QuakeMigrate's station file as it is (no network column, elevation in km) and
    with stations.csv: the same picks."""
    folder = shared / "events" / "iceland_qm_2014-08-24"
    waves = sorted((folder / "benchmark").glob("*.mseed"))
    if not waves:
        pytest.skip(f"{folder} not found: real-data test skipped")
    tables = []
    for name in ("inputs/iceland_stations.txt", "stations.csv"):
        picks = tmp_path / f"{Path(name).stem}.csv"
        argv = ["--quiet", "classify", str(waves[0]), "--inventory", str(folder / name)]
        assert main(argv + ["--picks-out", str(picks)]) == 0, capsys.readouterr().err
        assert "warning" not in capsys.readouterr().err
        tables.append(pd.read_csv(picks))
    assert len(tables[0]) > 0
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_real_gmprocess_folder_of_stationxml(shared, tmp_path, capsys):
    """A folder of per-station StationXML files (gmprocess's Hawaii event) as --inventory."""
    folder = shared / "events" / "gmprocess_multi" / "hv70907436"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: real-data test skipped")
    out = tmp_path / "ann.mseed"
    argv = [
        "--quiet",
        "annotate",
        str(folder / "*.mseed"),
        "--inventory",
        str(folder),
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert {tr.stats.station for tr in obspy.read(str(out))} == {
        "HOVE",
        "HSSD",
        "HUAD",
        "MLOD",
        "MOKD",
        "TOUO",
    }


def test_sine_constructor_stays_untrained():
    shipped = SINE.load(SINE.shipped_weights()[DEFAULT_WEIGHTS]).state_dict()
    fresh = SINE().state_dict()
    common = [k for k in fresh if k in shipped and fresh[k].shape == shipped[k].shape]
    assert common and any(not torch.equal(fresh[k], shipped[k]) for k in common)


def test_publish_progress_and_quiet(network, monkeypatch, capsys, loud):
    """sine publish shows a bar over its packets (the broker replaced by a list)."""
    from sine_seisbench.monitor import redis_io

    wave, _, _ = network
    sent = []
    monkeypatch.setattr(redis_io, "publish_packets", lambda url, stream, batch: sent.extend(batch))
    argv = ["publish", str(wave), "--to", "redis://127.0.0.1:1/0?stream=w", "--packet", "10"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    n = len(sent)
    assert n > 0 and re.search(rf"publish: 100%.* {n}/{n} ", err) and f"{n} packets sent" in err
    assert main(["--quiet"] + argv) == 0
    assert "100%" not in capsys.readouterr().err and len(sent) == 2 * n
