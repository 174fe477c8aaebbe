from __future__ import annotations

import obspy
import pandas as pd

from sine_seisbench import SINE
from sine_seisbench.cli import count_flops, main
from sine_seisbench.example import network_stream


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "FLOPs per station-window" in out


def test_flops_scale_with_window_length():
    a = count_flops(SINE(in_samples=1001, max_stations=4))
    b = count_flops(SINE(in_samples=2001, max_stations=4))
    assert 1.8 < b / a < 2.2


def test_classify_files(tmp_path, capsys):
    """classify writes picks CSV, events CSV and QuakeML through sine_seisbench.pipeline.publish; annotate's file keeps
    every station's P, S and noise apart; sine plot draws the files."""
    from sine_seisbench.pipeline.publish import read_annotations, read_catalog, read_picks_csv

    st, inv = network_stream(5)
    wave = tmp_path / "waves.mseed"
    st.write(str(wave), format="MSEED")
    xml = tmp_path / "stations.xml"
    inv.write(str(xml), format="STATIONXML")
    picks, events_csv, quakeml = (
        tmp_path / "picks.csv",
        tmp_path / "events.csv",
        tmp_path / "ev.xml",
    )
    code = main(
        [
            "classify",
            str(wave),
            "--inventory",
            str(xml),
            "--picks",
            str(picks),
            "--events-csv",
            str(events_csv),
            "--quakeml",
            str(quakeml),
            "--p-threshold",
            "0.01",
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(picks)
    for column in (
        "network",
        "station",
        "location",
        "channel",
        "phase",
        "time",
        "probability",
        "uncertainty_s",
        "event_id",
    ):
        assert column in table.columns
    assert len(table) > 0 and set(table["phase"]) <= {"P", "S"}
    assert len(read_picks_csv(picks)) == len(table)
    catalog = obspy.read_events(str(quakeml))
    assert isinstance(catalog, obspy.Catalog)
    assert len(read_catalog(events_csv)) == len(catalog)
    ann = tmp_path / "ann.mseed"
    assert main(["annotate", str(wave), "--inventory", str(xml), "--out", str(ann)]) == 0
    raw = obspy.read(str(ann))
    assert len(raw) == 15 and len({tr.id for tr in raw}) == 15  # 5 stations x P/S/N, all apart
    back = read_annotations(ann)
    assert sorted({tr.stats.channel for tr in back}) == ["SINE_N", "SINE_P", "SINE_S"]
    figure = tmp_path / "figure.png"
    argv = ["plot", str(wave), "--inventory", str(xml), "--picks", str(picks)]
    argv += ["--events", str(quakeml), "--annotations", str(ann), "--out", str(figure)]
    assert main(argv) == 0, capsys.readouterr().err
    assert figure.stat().st_size > 10_000


def test_classify_example(capsys):
    assert main(["classify", "--example", "--example-stations", "4"]) == 0
    assert "example" in capsys.readouterr().out
