"""``sine plot``: record section and map files (PNG, PDF) on generated data and on the Iceland records."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import obspy
import pytest
from obspy.core.event import Catalog, Event, Origin, OriginUncertainty, QuantityError
from test_outputs import STATIONS, synthetic_network

from sine_seisbench.errors import UserError
from sine_seisbench.pipeline.publish import (
    read_picks_csv,
    write_annotations,
    write_events_csv,
    write_picks_csv,
    write_quakeml,
)
from sine_seisbench.plot import (
    add_plot_parser,
    cmd_plot,
    error_ellipse,
    event_map,
    events_within,
    overview,
    record_section,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def network() -> dict:
    return synthetic_network()


def assert_figure(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000
    head = path.read_bytes()[:8]
    assert head == PNG if path.suffix == ".png" else head.startswith(b"%PDF")


def plot_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sine")
    add_plot_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["plot", *argv])


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_record_section_map_and_overview_files(network, tmp_path, suffix):
    section = tmp_path / f"section{suffix}"
    fig = record_section(
        network["stream"],
        network["inventory"],
        network["picks"],
        network["catalog"],
        network["annotations"],
        section,
        bandpass=(1.0, 20.0),
    )
    assert_figure(section)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # ordered by distance from the epicentre, nearest at the bottom (row 0)
    distances = [float(label.split()[-2]) for label in labels]
    assert distances == sorted(distances) and len(labels) == len(STATIONS)
    assert ax.get_xlabel().startswith("seconds after origin time")
    assert len(ax.collections) == 2 * len(STATIONS)  # P and S probability shading per station
    map_path = tmp_path / f"map{suffix}"
    event_map(network["inventory"], network["catalog"], map_path, highlight=0)
    assert_figure(map_path)
    both = tmp_path / f"overview{suffix}"
    overview(
        network["stream"],
        network["inventory"],
        network["picks"],
        network["catalog"],
        network["annotations"],
        both,
    )
    assert_figure(both)


def test_section_without_events_uses_the_station_centroid(network, tmp_path):
    path = tmp_path / "noevent.png"
    fig = record_section(network["stream"], network["inventory"], path=path)
    assert_figure(path)
    ax = fig.axes[0]
    assert ax.get_ylabel().endswith("station centroid")
    assert not ax.get_xlabel().startswith("seconds after origin")
    # without coordinates the stations are listed by name, last
    fig = record_section(network["stream"], None)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all(label.endswith("(no coordinates)") for label in labels)


def test_error_ellipse_axes_and_azimuth():
    lat, lon = 60.0, 10.0
    origin = Origin(latitude=lat, longitude=lon)
    origin.origin_uncertainty = OriginUncertainty(
        max_horizontal_uncertainty=2000.0,
        min_horizontal_uncertainty=1000.0,
        azimuth_max_horizontal_uncertainty=90.0,
    )
    lons, lats = error_ellipse(origin)
    east = (lons - lon) * 111.19 * math.cos(math.radians(lat))
    north = (lats - lat) * 111.19
    assert np.max(np.abs(east)) == pytest.approx(2.0, rel=1e-3)  # major axis east-west
    assert np.max(np.abs(north)) == pytest.approx(1.0, rel=1e-3)
    origin.origin_uncertainty.azimuth_max_horizontal_uncertainty = 45.0
    lons, lats = error_ellipse(origin)
    east = (lons - lon) * 111.19 * math.cos(math.radians(lat))
    north = (lats - lat) * 111.19
    far = np.argmax(np.hypot(east, north))
    assert math.degrees(math.atan2(east[far], north[far])) % 180 == pytest.approx(45.0, abs=3)
    # without origin_uncertainty: the latitude/longitude errors
    plain = Origin(
        latitude=lat,
        longitude=lon,
        latitude_errors=QuantityError(uncertainty=3.0 / 111.19),
        longitude_errors=QuantityError(uncertainty=1.0 / (111.19 * math.cos(math.radians(lat)))),
    )
    lons, lats = error_ellipse(plain)
    assert np.max(np.abs(lats - lat)) * 111.19 == pytest.approx(3.0, rel=1e-3)
    assert error_ellipse(Origin(latitude=lat, longitude=lon)) is None


def test_events_within_the_plotted_span():
    t = obspy.UTCDateTime(2020, 1, 1)
    catalog = Catalog(
        [Event(origins=[Origin(time=t + dt, latitude=0, longitude=0)]) for dt in (0, 50, 100)]
    )
    assert len(events_within(catalog, t + 10, t + 60)) == 1
    assert len(events_within(catalog, None, None)) == 3
    assert events_within(None, t, t) is None


def write_inputs(network: dict, folder: Path) -> dict[str, str]:
    files = {
        "waveforms": str(folder / "waveforms.mseed"),
        "stations": str(folder / "stations.csv"),
        "picks": str(folder / "picks.csv"),
        "events": str(folder / "events.xml"),
        "events_csv": str(folder / "events.csv"),
        "annotations": str(folder / "annotations.mseed"),
    }
    network["stream"].write(files["waveforms"], format="MSEED")
    network["inventory"].to_csv(files["stations"], index=False)
    write_picks_csv(network["picks"], files["picks"], network["catalog"], network["stream"])
    write_quakeml(network["catalog"], files["events"])
    write_events_csv(network["catalog"], files["events_csv"])
    write_annotations(network["annotations"], files["annotations"])
    return files


def test_cli_plot_from_the_files_sine_writes(network, tmp_path, capsys):
    f = write_inputs(network, tmp_path)
    for kind, events, suffix in (
        ("overview", f["events"], ".png"),
        ("section", f["events_csv"], ".pdf"),
        ("map", f["events_csv"], ".png"),
    ):
        out = tmp_path / f"{kind}{suffix}"
        argv = [f["waveforms"], "--inventory", f["stations"], "--picks", f["picks"]]
        argv += ["--events", events, "--annotations", f["annotations"], "--kind", kind]
        argv += ["--bandpass", "1", "20", "--reference", f["events_csv"], "--out", str(out)]
        assert cmd_plot(plot_args(argv)) == 0
        assert_figure(out)
        assert f"figure written to {out}" in capsys.readouterr().out
    # a map needs no waveforms
    out = tmp_path / "map_only.pdf"
    argv = [
        "--inventory",
        f["stations"],
        "--events",
        f["events"],
        "--kind",
        "map",
        "--out",
        str(out),
    ]
    assert cmd_plot(plot_args(argv)) == 0
    assert_figure(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "{tmp}/figure.jpg"], "must end in .png or .pdf"),
        (["--out", "{tmp}/missing/figure.png"], "does not exist; create it first"),
        (["--out", "{tmp}/f.png", "--events", "{tmp}/nothing.xml"], "does not exist"),
        (["--out", "{tmp}/f.png", "--picks", "{tmp}/stations.csv"], "lacks the column"),
        (["--out", "{tmp}/f.png", "--bandpass", "20", "1"], "0 < FMIN < FMAX"),
        (["--out", "{tmp}/f.png", "--start", "soon"], "--start 'soon' is not a time"),
        (["--out", "{tmp}/f.png", "--events", "{tmp}/events.xml", "--event", "3"], "out of range"),
        (["--out", "{tmp}/f.png", "--annotations", "{tmp}/stations.csv"], "annotations file"),
    ],
)
def test_cli_plot_mistakes_are_one_line(network, tmp_path, extra, message):
    f = write_inputs(network, tmp_path)
    argv = [f["waveforms"], "--inventory", f["stations"]]
    argv += [a.format(tmp=tmp_path) for a in extra]
    with pytest.raises(UserError, match=message) as info:
        cmd_plot(plot_args(argv))
    assert "\n" not in str(info.value)


def test_cli_plot_section_needs_waveforms(network, tmp_path):
    f = write_inputs(network, tmp_path)
    with pytest.raises(UserError, match="needs waveform files"):
        cmd_plot(plot_args(["--inventory", f["stations"], "--out", str(tmp_path / "x.png")]))


@pytest.mark.shared
def test_iceland_window_classified_written_and_plotted(shared, tmp_path, monkeypatch):
    """SINE (shipped weights, the Iceland velocity model) on one QuakeMigrate window: the files read back and
    ``sine plot`` draws them; the event is near QuakeMigrate's epicentre."""
    from obspy.geodetics import gps2dist_azimuth

    from sine_seisbench import DEFAULT_WEIGHTS, SINE
    from sine_seisbench.pipeline.publish import read_catalog, read_events_csv
    from sine_seisbench.stations import read_stations

    folder = shared / "events" / "iceland_qm_2014-08-24"
    window = folder / "benchmark" / "20140824000154000.mseed"
    if not window.is_file():
        pytest.skip(f"{window} not found: Iceland events absent")
    stream = obspy.read(str(window))
    stations = read_stations(folder / "stations.csv", stream=stream)
    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    out = model.classify(
        stream, inventory=stations, velocity_model=str(folder / "inputs" / "iceland_vmodel.txt")
    )
    assert len(out.events) == 1
    picks_path, events_path = tmp_path / "picks.csv", tmp_path / "events.xml"
    write_picks_csv(out.picks, picks_path, out.events, stream)
    write_quakeml(out.events, events_path)
    write_events_csv(out.events, tmp_path / "events.csv")
    picks = read_picks_csv(picks_path)
    assert set(picks.channel) == {"HHZ"} and set(picks.network) == {"Z7"}
    associated = picks[picks.event_id != ""]
    assert len(associated) >= 10 and (associated.event_id == str(out.events[0].resource_id)).all()
    assert associated.uncertainty_s.between(0.01, 0.5).all()
    (row,) = read_events_csv(tmp_path / "events.csv").to_dict("records")
    assert row["uncalibrated"]  # raw counts, no responses: no ML
    reference = read_catalog(folder / "catalog.csv")
    qm = min(
        (e.preferred_origin() for e in reference),
        key=lambda o: abs(o.time - obspy.UTCDateTime(row["time"])),
    )
    assert gps2dist_azimuth(row["latitude"], row["longitude"], qm.latitude, qm.longitude)[0] < 5000
    figure = tmp_path / "iceland.png"
    argv = [str(window), "--inventory", str(folder / "stations.csv"), "--picks", str(picks_path)]
    argv += ["--events", str(events_path), "--reference", str(folder / "catalog.csv")]
    argv += ["--bandpass", "2", "20", "--out", str(figure)]
    assert cmd_plot(plot_args(argv)) == 0
    assert_figure(figure)
