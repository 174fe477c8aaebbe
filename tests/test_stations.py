"""Station files as they come (issue 14): sine_seisbench.stations.read_stations on generated tables in many
spellings and layouts, on StationXML, and on every station file in ../shared/data."""

from __future__ import annotations

import warnings

import numpy as np
import obspy
import pandas as pd
import pytest

from sine_seisbench.errors import MissingFileError, UserError
from sine_seisbench.example import network_stream
from sine_seisbench.geometry import StationTable
from sine_seisbench.stations import StationFileError, fdsn_inventory, read_stations

ROWS = [
    ("XX", "S01", 47.1, 11.2, 812.0),
    ("XX", "S02", 47.3, 11.5, 1400.5),
    ("YY", "S03", 47.0, 11.9, 0.0),
]


def _write(path, header, rows, sep=","):
    lines = [sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _coords(result):
    table = StationTable.from_any(result)
    out = {}
    for net, sta, *_ in ROWS:
        c = table.get(f"{net}.{sta}.00")
        out[f"{net}.{sta}"] = (
            None
            if c is None
            else tuple(round(v, 6) for v in (c.latitude, c.longitude, c.elevation))
        )
    return out


EXPECTED = {f"{n}.{s}": (lat, lon, el) for n, s, lat, lon, el in ROWS}


@pytest.mark.parametrize(
    "header,sep,suffix",
    [
        (["network", "station", "latitude", "longitude", "elevation"], ",", ".csv"),
        (["Net", "Sta", "Lat", "Lon", "Elev"], ",", ".csv"),
        (["NETWORK", "STATION", "LATITUDE", "LONGITUDE", "ELEVATION_M"], "\t", ".tsv"),
        (["network_code", "station_code", "lat", "long", "elev_m"], ";", ".txt"),
        (
            ["net", "sta", "station_latitude_deg", "station_longitude_deg", "elevation(m)"],
            " ",
            ".dat",
        ),
        (
            ["Network Code", "Station Code", "Latitude [deg]", "Longitude", "Elevation [m]"],
            "\t",
            ".tsv",
        ),
        (["network", "station", "latitude", "longitude", "elevation"], "|", ".txt"),
    ],
)
def test_table_spellings(tmp_path, header, sep, suffix):
    path = _write(tmp_path / f"stations{suffix}", header, ROWS, sep)
    frame = read_stations(path)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:5]) == ["network", "station", "latitude", "longitude", "elevation"]
    assert _coords(frame) == EXPECTED


def test_elevation_in_km_is_converted(tmp_path):
    rows = [(n, s, lat, lon, el / 1000) for n, s, lat, lon, el in ROWS]
    for name in ("elev_km", "Elevation_km", "elevation(km)"):
        path = _write(tmp_path / "s.csv", ["net", "sta", "lat", "lon", name], rows)
        got = _coords(read_stations(path))
        for key, (lat, lon, el) in EXPECTED.items():
            assert got[key][:2] == (lat, lon)
            assert got[key][2] == pytest.approx(el)
    path = _write(tmp_path / "m.csv", ["net", "sta", "lat", "lon", "elevation"], rows)
    assert read_stations(path, elevation_unit="km")["elevation"].tolist() == pytest.approx(
        [r[4] for r in ROWS]
    )


def test_missing_elevation_is_zero_with_a_warning_naming_the_file(tmp_path):
    path = _write(tmp_path / "noelev.csv", ["net", "sta", "lat", "lon"], [r[:4] for r in ROWS])
    with pytest.warns(UserWarning, match="noelev.csv.*no elevation column.*0 m"):
        frame = read_stations(path)
    assert (frame["elevation"] == 0).all()


@pytest.mark.parametrize("drop", ["latitude", "longitude", "station"])
def test_missing_column_names_file_column_and_spellings(tmp_path, drop):
    header = ["network", "station", "latitude", "longitude", "elevation"]
    keep = [i for i, h in enumerate(header) if h != drop]
    path = _write(
        tmp_path / "bad.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in ROWS]
    )
    with pytest.raises(StationFileError) as info:
        read_stations(path)
    message = str(info.value)
    assert (
        "bad.csv" in message and f"no {drop} column" in message and "accepted spellings" in message
    )
    assert "\n" not in message
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_non_numeric_coordinate_is_one_clear_error(tmp_path):
    path = _write(
        tmp_path / "s.csv", ["net", "sta", "lat", "lon", "elev"], [("XX", "A", "north", 3, 9)]
    )
    with pytest.raises(StationFileError, match="s.csv: column latitude holds a non-number"):
        read_stations(path)


def test_missing_file():
    with pytest.raises(MissingFileError, match="does not exist"):
        read_stations("/nonexistent/stations.csv")


def test_location_and_channel_columns(tmp_path):
    rows = [
        ("XX", "S01", "00", "HHZ", 47.1, 11.2, 812.0),
        ("XX", "S01", "10", "HNZ", 47.2, 11.2, 5.0),
    ]
    path = _write(tmp_path / "s.csv", ["net", "sta", "loc", "cha", "lat", "lon", "elev"], rows)
    frame = read_stations(path)
    assert frame["location"].tolist() == ["00", "10"]  # read as text: "00" stays "00"
    assert frame["channel"].tolist() == ["HHZ", "HNZ"]
    table = StationTable.from_any(frame)
    assert table.get("XX.S01.00").latitude == 47.1
    assert table.get("XX.S01.10").latitude == 47.2


def test_empty_location_holds_for_every_location_code(tmp_path):
    path = _write(
        tmp_path / "s.csv",
        ["net", "sta", "location", "lat", "lon", "elev"],
        [("XX", "S01", "", 47.1, 11.2, 500), ("XX", "S02", "--", 47.2, 11.3, 500)],
    )
    table = StationTable.from_any(read_stations(path))
    assert table.get("XX.S01.00") is not None and table.get("XX.S02.") is not None


def test_station_ids_give_network_location_channel(tmp_path):
    """GaMMA's layout: station = NET.STA.LOC.CHA-prefix, no network column."""
    path = _write(
        tmp_path / "gamma.tsv",
        ["station", "longitude", "latitude", "elevation(m)"],
        [("CI.CCC..BH", -117.365, 35.525, 670.0), ("PB.B916..EH", -117.7, 36.2, 1859.0)],
        "\t",
    )
    frame = read_stations(path)
    assert frame[["network", "station", "channel"]].values.tolist() == [
        ["CI", "CCC", "BH"],
        ["PB", "B916", "EH"],
    ]
    assert frame["elevation"].tolist() == [670.0, 1859.0]


def test_table_without_network_takes_it_from_the_waveforms(tmp_path):
    """QuakeMigrate's station file: Latitude, Longitude, Elevation (km), Name."""
    path = _write(
        tmp_path / "qm.txt",
        ["Latitude", "Longitude", "Elevation", "Name"],
        [(r[2], r[3], r[4] / 1000, r[1]) for r in ROWS],
    )
    with pytest.raises(StationFileError, match="qm.txt has no network column.*give the waveforms"):
        read_stations(path)
    ids = ["XX.S01.00.HHZ", "XX.S02..HHZ", "YY.S03.00.EHZ", "ZZ.OTHER..HHZ"]
    assert _coords(read_stations(path, stream=ids)) == EXPECTED
    frame = read_stations(path, network="XX")
    assert set(frame["network"]) == {"XX"} and frame["elevation"].max() == pytest.approx(1400.5)
    with pytest.raises(StationFileError, match="several networks"):
        read_stations(path, stream=["XX.S01..HHZ", "AA.S01..HHZ"])


def test_real_headerless_list(tmp_path):
    """REAL's station file: lon lat net sta chan elev_km, no header."""
    path = tmp_path / "station.dat"
    path.write_text(
        "".join(f"{lon} {lat} {n} {s} HHZ {el / 1000}\n" for n, s, lat, lon, el in ROWS)
    )
    assert _coords(read_stations(path)) == EXPECTED


def test_json_layouts(tmp_path):
    seismonitor = {
        s: {"network": n, "channels": ["HHZ"], "coords": [lat, lon, el]}
        for n, s, lat, lon, el in ROWS
    }
    path = tmp_path / "stations.json"
    path.write_text(pd.io.json.ujson_dumps(seismonitor))
    assert _coords(read_stations(path)) == EXPECTED
    records = [dict(net=n, sta=s, lat=lat, lon=lon, elev=el) for n, s, lat, lon, el in ROWS]
    path.write_text(pd.io.json.ujson_dumps(records))
    assert _coords(read_stations(path)) == EXPECTED


def test_stationxml_folder_glob_and_fdsn_text(tmp_path):
    _, inv = network_stream(4)
    xml = tmp_path / "all.xml"
    inv.write(str(xml), format="STATIONXML")
    assert isinstance(read_stations(xml), obspy.Inventory)
    folder = tmp_path / "per_station"
    folder.mkdir()
    for net in inv:
        for sta in net:
            inv.select(network=net.code, station=sta.code).write(
                str(folder / f"{net.code}.{sta.code}.xml"), format="STATIONXML"
            )
    for source in (folder, str(folder / "*.xml"), sorted(folder.glob("*.xml"))):
        merged = read_stations(source)
        assert isinstance(merged, obspy.Inventory)
        assert sum(len(n) for n in merged) == 4
    # FDSN station text: read by ObsPy when it has start times, else as a '|' table
    text = tmp_path / "fdsn.txt"
    inv.write(str(text), format="STATIONTXT", level="station")
    as_table = read_stations(text)
    assert isinstance(as_table, pd.DataFrame) and len(as_table) == 4
    for net in inv:
        for sta in net:
            sta.start_date = obspy.UTCDateTime(2020, 1, 1)
    inv.write(str(text), format="STATIONTXT", level="station")
    as_inventory = read_stations(text)
    assert isinstance(as_inventory, obspy.Inventory) and sum(len(n) for n in as_inventory) == 4
    reference = StationTable.from_any(inv)
    for got in (as_table, as_inventory):  # the same coordinates from each
        table = StationTable.from_any(got)
        for net in inv:
            for sta in net:
                key = f"{net.code}.{sta.code}.00"
                a, b = reference.get(key), table.get(key)
                assert (a.latitude, a.longitude, a.elevation) == pytest.approx(
                    (b.latitude, b.longitude, b.elevation), abs=1e-4
                )


def test_dataframe_and_inventory_pass_through():
    _, inv = network_stream(3)
    assert read_stations(inv) is inv
    frame = pd.DataFrame([dict(Net="XX", Sta="S01", Lat=1.0, Lon=2.0, Elev_km=0.5)])
    got = read_stations(frame)
    assert got[["network", "station", "elevation"]].values.tolist() == [["XX", "S01", 500.0]]


def test_fdsn_offline_is_one_clear_error():
    st, _ = network_stream(3)
    with pytest.raises(UserError) as info:
        fdsn_inventory("http://127.0.0.1:9", st, timeout=5)
    message = str(info.value)
    assert message.startswith("--fdsn http://127.0.0.1:9: cannot get the stations")
    assert "\n" not in message and "--inventory" in message


# ---------------------------------------------------------------------------------------------------------------
# Every station file in ../shared/data
# ---------------------------------------------------------------------------------------------------------------
REAL_FILES = {
    # path: (type, located NET.STA, (NET.STA, latitude, longitude, elevation m) of one station, elevation warning)
    "stations/western_us_stations.csv": (
        pd.DataFrame,
        None,
        ("CI", "WNM", 35.8422, -117.90616, 974.3),
        False,
    ),
    "stations/ridgecrest_stations.tsv": (
        pd.DataFrame,
        23,
        ("CI", "CCC", 35.525, -117.365, 670.0),
        False,
    ),
    "stations/central_italy_stations_2016.dat": (
        pd.DataFrame,
        None,
        ("XO", "AM05", 42.9773, 13.3528, 464.0),
        False,
    ),
    "continuous/ridgecrest_2019-07-06T08/stations_phaseno.csv": (
        pd.DataFrame,
        None,
        ("CI", "CCC", 35.525, -117.365, 0.0),
        True,
    ),
    "continuous/hengill_2018-12-30/stations.csv": (pd.DataFrame, 20, None, False),
    "events/iceland_qm_2014-08-24/stations.csv": (
        pd.DataFrame,
        12,
        ("Z7", "DYJN", 64.68360, -17.13372, 1381.0),
        False,
    ),
    "continuous/colombia_2019-12-24/stations/inv.xml": (obspy.Inventory, 8, None, False),
    "continuous/colombia_2019-12-24/stations/stations.json": (
        pd.DataFrame,
        8,
        ("CM", "YOT", 3.9835, -76.345, 1040.0),
        False,
    ),
    "events/gmprocess_multi/hv70907436": (obspy.Inventory, 6, None, False),
    "events/gmprocess_multi/nc51194936": (obspy.Inventory, 3, None, False),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_every_real_station_file_reads_as_it_is(shared, name):
    kind, count, probe, warns = REAL_FILES[name]
    path = shared / name
    if not path.exists():
        pytest.skip(f"{path} not found: real station file test skipped")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = read_stations(path)
    elevation_warnings = [w for w in caught if "elevation" in str(w.message)]
    assert bool(elevation_warnings) == warns, [str(w.message) for w in caught]
    if warns:
        assert str(path) in str(elevation_warnings[0].message)
    assert isinstance(result, kind)
    stations = (
        {f"{n.code}.{s.code}" for n in result for s in n}
        if isinstance(result, obspy.Inventory)
        else set(result["network"] + "." + result["station"])
    )
    if count is not None:
        assert len(stations) == count
    if name.startswith("stations/western"):  # one row per station epoch and location
        assert len(result) == 24113 and sum(s.startswith("CI.") for s in stations) == 790
    table = StationTable.from_any(result)
    assert len(table) > 0
    if probe is not None:
        net, sta, lat, lon, elev = probe
        c = table.get(f"{net}.{sta}.")
        assert c is not None
        assert (c.latitude, c.longitude) == pytest.approx((lat, lon), abs=1e-3)
        if elev is not None:
            assert c.elevation == pytest.approx(elev)


def test_quakemigrate_station_file_with_the_waveforms(shared):
    """inputs/iceland_stations.txt has no network column and elevation in km: the waveforms give Z7."""
    folder = shared / "events" / "iceland_qm_2014-08-24"
    path = folder / "inputs" / "iceland_stations.txt"
    if not path.exists():
        pytest.skip(f"{path} not found: real station file test skipped")
    stream = obspy.read(str(sorted((folder / "benchmark").glob("*.mseed"))[0]), headonly=True)
    frame = read_stations(path, stream=stream)
    reference = read_stations(folder / "stations.csv")
    merged = frame.merge(reference, on=["network", "station"], suffixes=("", "_ref"))
    assert len(merged) == 12
    np.testing.assert_allclose(merged["elevation"], merged["elevation_ref"])
    np.testing.assert_allclose(merged["latitude"], merged["latitude_ref"])
