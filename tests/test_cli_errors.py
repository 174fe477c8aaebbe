"""The ``sine`` command's error layer: a user's mistake is one line on stderr and exit status 2 (a traceback
only with ``--debug``), checked before any work starts; ``--weights`` names and paths; monitor config keys;
``sine annotate --drop-unlocated``; ``sine benchmark`` writes only into ``--out``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
from cli_util import one_error_line
from test_benchmark import data_dir  # noqa: F401 - the tiny benchmark data folder fixture

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.cli import main
from sine_seisbench.errors import UserError
from sine_seisbench.example import network_stream
from sine_seisbench.monitor.config import engine_options, validate_config


@pytest.fixture
def network(tmp_path):
    """Five stations: a miniSEED file, their StationXML and a CSV station file."""
    st, inv = network_stream(5)
    wave = tmp_path / "waves.mseed"
    st.write(str(wave), format="MSEED")
    xml = tmp_path / "stations.xml"
    inv.write(str(xml), format="STATIONXML")
    csv = tmp_path / "stations.csv"
    pd.DataFrame(
        [
            dict(
                network=n.code,
                station=s.code,
                latitude=s.latitude,
                longitude=s.longitude,
                elevation=s.elevation,
            )
            for n in inv
            for s in n
        ]
    ).to_csv(csv, index=False)
    return wave, xml, csv


# ---------------------------------------------------------------------------------------------------------------
# Missing or unreadable inputs
# ---------------------------------------------------------------------------------------------------------------
def test_missing_waveform_file(tmp_path, network, capsys):
    _, xml, _ = network
    missing = tmp_path / "nowhere.mseed"
    code = main(["classify", str(missing), "--inventory", str(xml)])
    one_error_line(code, capsys.readouterr().err, str(missing), "does not exist")


def test_unreadable_waveform_file(tmp_path, network, capsys):
    _, xml, _ = network
    bad = tmp_path / "bad.mseed"
    bad.write_text("not a seismogram\n")
    code = main(["classify", str(bad), "--inventory", str(xml)])
    one_error_line(code, capsys.readouterr().err, str(bad), "cannot read waveform file")


def test_missing_inventory_file(tmp_path, network, capsys):
    wave, _, _ = network
    missing = tmp_path / "stations_missing.xml"
    code = main(
        ["annotate", str(wave), "--inventory", str(missing), "--out", str(tmp_path / "a.mseed")]
    )
    one_error_line(code, capsys.readouterr().err, str(missing), "--inventory")


def test_station_file_without_a_needed_column(tmp_path, network, capsys):
    wave, _, csv = network
    pd.read_csv(csv).drop(columns=["latitude"]).to_csv(csv, index=False)
    code = main(["classify", str(wave), "--inventory", str(csv)])
    one_error_line(code, capsys.readouterr().err, str(csv), "latitude", "lat/", "--inventory")


def test_publish_missing_file(tmp_path, capsys):
    missing = tmp_path / "none.mseed"
    code = main(["publish", str(missing), "--to", "redis://127.0.0.1:1/0"])
    one_error_line(code, capsys.readouterr().err, str(missing))


# ---------------------------------------------------------------------------------------------------------------
# --weights
# ---------------------------------------------------------------------------------------------------------------
def test_unknown_weights_name_lists_the_names_without_network(offline, capsys):
    code = main(["info", "--weights", "sine_pn_orignal"])
    line = one_error_line(
        code, capsys.readouterr().err, "'sine_pn_orignal'", f"did you mean '{DEFAULT_WEIGHTS}'"
    )
    assert f"available names: {DEFAULT_WEIGHTS}" in line


@pytest.mark.parametrize("suffix", ["", ".json", ".pt"])
def test_weights_path_with_or_without_suffix(offline, tmp_path, capsys, suffix):
    shipped = SINE.shipped_weights()[DEFAULT_WEIGHTS]
    for ext in (".json", ".pt"):
        shutil.copyfile(f"{shipped}{ext}", tmp_path / f"mine{ext}")
    assert main(["info", "--weights", str(tmp_path / f"mine{suffix}")]) == 0
    params = sum(p.numel() for p in SINE.load(shipped).parameters())
    assert f"{params:,} parameters" in capsys.readouterr().out


def test_weights_path_missing_one_file(offline, tmp_path, capsys):
    shipped = SINE.shipped_weights()[DEFAULT_WEIGHTS]
    shutil.copyfile(f"{shipped}.pt", tmp_path / "half.pt")
    code = main(["info", "--weights", str(tmp_path / "half.pt")])
    one_error_line(code, capsys.readouterr().err, str(tmp_path / "half.json"), "does not exist")


# ---------------------------------------------------------------------------------------------------------------
# Monitor config files
# ---------------------------------------------------------------------------------------------------------------
def test_malformed_config(tmp_path, capsys):
    cfg = tmp_path / "monitor.toml"
    cfg.write_text("stride_s = = 15\n")
    code = main(["monitor", "--config", str(cfg)])
    one_error_line(code, capsys.readouterr().err, str(cfg), "not valid TOML")


@pytest.mark.parametrize(
    ("text", "key", "closest"),
    [
        ("strid_s = 15\n", "'strid_s'", "'stride_s'"),
        ("[classify]\nP_treshold = 0.3\n", "'P_treshold'", "'P_threshold'"),
        ('[source]\ntype = "files"\npatern = "data/"\n', "'patern'", "'pattern'"),
        ('source = "redis://127.0.0.1:6379/0?gruop=sine"\n', "'gruop'", "'group'"),
        ('[[sinks]]\ntype = "jsonl"\npaht = "-"\n', "'paht'", "'path'"),
    ],
)
def test_misspelled_config_key_names_the_closest_key(tmp_path, capsys, text, key, closest):
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(text)
    code = main(["monitor", "--config", str(cfg)])
    one_error_line(code, capsys.readouterr().err, str(cfg), key, f"did you mean {closest}")


def test_misspelled_config_key_in_yaml(tmp_path, capsys):
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("max_latency: 5\n")
    code = main(["monitor", "--config", str(cfg)])
    one_error_line(code, capsys.readouterr().err, str(cfg), "'max_latency'", "'max_latency_s'")


def test_every_engine_option_is_a_valid_config_key():
    """The valid keys come from the engine's signature: an option added there is accepted without a list to
    update."""
    from sine_seisbench.monitor.engine import StreamingClassifier

    options = engine_options()
    assert {"stride_s", "max_latency_s", "anchor"} <= set(options)
    import inspect

    params = inspect.signature(StreamingClassifier.__init__).parameters
    assert set(options) == {
        n
        for n, p in params.items()
        if n not in ("self", "model", "inventory", "live") and p.kind is not p.VAR_KEYWORD
    }
    validate_config({k: 1 for k in options} | {"classify": {"S_threshold": 0.2}}, "monitor.toml")


def test_documented_example_config_is_valid():
    import textwrap

    import tomllib

    from sine_seisbench.monitor import config

    example = config.__doc__.split("::", 1)[1].split("Sources and sinks")[0]
    validate_config(tomllib.loads(textwrap.dedent(example)), "monitor.toml")


def test_monitor_set_unknown_key(tmp_path, network, capsys):
    _, xml, _ = network
    code = main(
        [
            "monitor",
            "--inventory",
            str(xml),
            "--source",
            f"files:{tmp_path}",
            "--set",
            "min_station=3",
        ]
    )
    one_error_line(code, capsys.readouterr().err, "'min_station'", "did you mean 'min_stations'")


# ---------------------------------------------------------------------------------------------------------------
# Output folders, checked before any work starts
# ---------------------------------------------------------------------------------------------------------------
def test_missing_output_folder_is_reported_before_any_work(tmp_path, network, capsys):
    wave, xml, _ = network
    picks = tmp_path / "no_such_folder" / "picks.csv"
    code = main(["classify", str(wave), "--inventory", str(xml), "--picks-out", str(picks)])
    captured = capsys.readouterr()
    one_error_line(code, captured.err, str(picks.parent), "does not exist")
    assert captured.out == ""  # nothing classified


def test_annotate_missing_output_folder(tmp_path, network, capsys):
    wave, xml, _ = network
    out = tmp_path / "no_such_folder" / "ann.mseed"
    code = main(["annotate", str(wave), "--inventory", str(xml), "--out", str(out)])
    one_error_line(code, capsys.readouterr().err, str(out.parent), "mkdir -p")


def test_monitor_missing_sink_folder(tmp_path, network, capsys):
    wave, xml, _ = network
    out = tmp_path / "no_such_folder" / "out.jsonl"
    code = main(
        ["monitor", "--inventory", str(xml), "--source", f"files:{wave}", "--sink", f"jsonl:{out}"]
    )
    one_error_line(code, capsys.readouterr().err, str(out.parent), "does not exist")


# ---------------------------------------------------------------------------------------------------------------
# --debug
# ---------------------------------------------------------------------------------------------------------------
def test_debug_raises_with_traceback():
    with pytest.raises(UserError, match="socal_sm"):
        main(["--debug", "info", "--weights", "socal_sm"])
    with pytest.raises(UserError, match="socal_sm"):
        main(["info", "--weights", "socal_sm", "--debug"])


def test_command_line_mistake_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", "waves.mseed"])
    assert exit_info.value.code == 2
    one_error_line(2, capsys.readouterr().err, "--out", "sine annotate --help")


def test_real_process_prints_one_line_and_a_traceback_only_with_debug(tmp_path):
    cmd = [sys.executable, "-m", "sine_seisbench.cli", "info", "--weights", str(tmp_path / "w.pt")]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    one_error_line(plain.returncode, plain.stderr, str(tmp_path / "w.json"))
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# ---------------------------------------------------------------------------------------------------------------
# sine annotate --drop-unlocated
# ---------------------------------------------------------------------------------------------------------------
def test_annotate_drop_unlocated_works_like_the_api(tmp_path, network, capsys, sb_log):
    wave, _, csv = network
    frame = pd.read_csv(csv)
    frame[frame.station != "S04"].to_csv(csv, index=False)
    out = tmp_path / "ann.mseed"
    argv = [
        "annotate",
        str(wave),
        "--inventory",
        str(csv),
        "--weights",
        DEFAULT_WEIGHTS,
        "--out",
        str(out),
    ]
    code = main(argv)
    one_error_line(code, capsys.readouterr().err, str(csv), "XX.S04.", "--drop-unlocated")
    assert not out.exists()

    assert main(argv + ["--drop-unlocated"]) == 0
    assert "S04" in sb_log.text and "left out" in sb_log.text
    cli = obspy.read(str(out))
    model = SINE.load(SINE.shipped_weights()[DEFAULT_WEIGHTS])
    api = model.annotate(
        obspy.read(str(wave)), inventory=pd.read_csv(csv), batch_size=64, drop_unlocated=True
    )
    # the same traces (miniSEED keeps 3 letters of the SINE_P/_S/_N channel names), in the same order
    assert len(cli) == len(api) == 12
    assert [tr.stats.station for tr in cli] == [tr.stats.station for tr in api]
    assert "S04" not in {tr.stats.station for tr in cli}
    for ref, tr in zip(cli, api, strict=True):
        np.testing.assert_allclose(ref.data, tr.data.astype("float32"), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# sine benchmark writes only into --out
# ---------------------------------------------------------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_benchmark_writes_only_into_out(data_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text(
        "# project\n\n<!-- benchmark-summary:start -->\nold\n<!-- benchmark-summary:end -->\n"
    )
    monkeypatch.chdir(project)  # where README.md was edited before
    before = _snapshot(project)
    out = tmp_path / "results"
    argv = [
        "benchmark",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--models",
        "SINE",
        "--sine-weights",
        "untrained",
        "--stages",
        "speed",
        "--print-summary",
    ]
    assert main(argv) == 0
    assert _snapshot(project) == before
    printed = capsys.readouterr().out
    summary = (out / "summary_quick.md").read_text()
    assert "<!-- benchmark-summary:start -->" in printed and "station_hours_per_s" in printed
    assert summary.strip() in printed
    assert (out / "benchmark_quick.md").exists()


def test_benchmark_unknown_stage(tmp_path, capsys):
    code = main(["benchmark", "--out", str(tmp_path / "r"), "--stages", "sped"])
    one_error_line(code, capsys.readouterr().err, "'sped'", "did you mean 'speed'")


def test_benchmark_needs_a_data_folder(tmp_path, capsys, monkeypatch):
    """The installed package names no development folder: --data or SINE_DATA, else one line."""
    from sine_seisbench.cli import DATA_ENV, build_parser

    monkeypatch.delenv(DATA_ENV, raising=False)
    assert build_parser().parse_args(["benchmark"]).data is None
    out = str(tmp_path / "r")
    code = main(["benchmark", "--out", out, "--stages", "speed"])
    one_error_line(code, capsys.readouterr().err, "--data DIR", DATA_ENV)
    code = main(["benchmark", "--data", str(tmp_path / "nowhere"), "--out", out])
    one_error_line(
        code, capsys.readouterr().err, str(tmp_path / "nowhere"), "does not exist", "--data"
    )
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    code = main(["benchmark", "--out", out])
    one_error_line(code, capsys.readouterr().err, str(tmp_path / "elsewhere"), DATA_ENV)
