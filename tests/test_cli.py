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
    st, inv = network_stream(5)
    wave = tmp_path / "waves.mseed"
    st.write(str(wave), format="MSEED")
    xml = tmp_path / "stations.xml"
    inv.write(str(xml), format="STATIONXML")
    picks, events = tmp_path / "picks.csv", tmp_path / "events.xml"
    code = main(
        [
            "classify",
            str(wave),
            "--inventory",
            str(xml),
            "--picks-out",
            str(picks),
            "--events-out",
            str(events),
            "--p-threshold",
            "0.01",
        ]
    )
    assert code == 0
    table = pd.read_csv(picks)
    assert list(table.columns) == [
        "trace_id",
        "phase",
        "time",
        "probability",
        "start_time",
        "end_time",
    ]
    assert len(table) > 0  # threshold below the untrained model's floor
    assert isinstance(obspy.read_events(str(events)), obspy.Catalog)
    ann = tmp_path / "ann.mseed"
    assert main(["annotate", str(wave), "--inventory", str(xml), "--out", str(ann)]) == 0
    assert len(obspy.read(str(ann))) == 15


def test_classify_example(capsys):
    assert main(["classify", "--example", "--example-stations", "4"]) == 0
    assert "example" in capsys.readouterr().out
