"""Archive processing (``sine annotate --archive``): chunking, ownership, Dask, resumability, killed workers.

The archive is written by the test: 26 minutes of simulated continuous records (the project's simulator,
coloured noise and earthquakes) on 8 stations, crossing midnight, with earthquakes placed next to chunk
boundaries. The span processed is the middle 16 minutes, so the pads read around it hold data.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import torch
from obspy.clients.filesystem.sds import Client as SDSClient

from sine_seisbench import DEFAULT_WEIGHTS, archive
from sine_seisbench.archive import (
    annotate_archive,
    chunk_spans,
    first_p,
    get_model,
    model_loads,
    parse_duration,
    station_blocks,
    write_example_archive,
)
from sine_seisbench.cli import main
from sine_seisbench.geometry import Coordinates
from sine_seisbench.pipeline.publish import PICK_COLUMNS, read_picks_csv

T0 = obspy.UTCDateTime("2009-08-24T23:52:00")
T1 = T0 + 16 * 60
WEIGHTS = DEFAULT_WEIGHTS
#: Origin times: one before the span, several a few seconds before chunk boundaries of 4 and 2 minutes (their
#: picks straddle the boundary), one at midnight, one whose P arrives after the span's end.
EVENTS = [
    T0 - 100,
    T0 + 60,
    T0 + 4 * 60 - 8,
    T0 + 8 * 60 - 6,
    T0 + 8 * 60 + 30,
    T0 + 11 * 60,
    T0 + 12 * 60 - 9,
    T0 + 15 * 60 - 20,
    T1 - 3,
]


@pytest.fixture(scope="module")
def sim_archive(tmp_path_factory, tt) -> tuple[Path, Path, obspy.Inventory]:
    root = tmp_path_factory.mktemp("sds")
    inventory, _ = write_example_archive(root, T0 - 300, 26 * 60, EVENTS, n_stations=8, tt=tt)
    xml = root.parent / f"{root.name}_stations.xml"
    inventory.write(str(xml), format="STATIONXML")
    return root, xml, inventory


@pytest.fixture(scope="module")
def reference(sim_archive, tmp_path_factory) -> Path:
    """A single-process run: 4 chunks of 4 minutes, the whole network in every task."""
    root, xml, _ = sim_archive
    out = tmp_path_factory.mktemp("reference")
    result = annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="4min", progress=False)
    assert result.tasks == 4 and result.computed == 4
    assert result.days == ["2009-08-24", "2009-08-25"]
    return out


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def outputs(out: Path) -> dict[str, bytes]:
    """The daily files (what users read), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("picks", "events")
        for p in sorted((out / sub).glob("*"))
    }


def read_picks(out: Path) -> pd.DataFrame:
    files = sorted((out / "picks").glob("*.csv"))
    frame = pd.concat([read_picks_csv(f) for f in files], ignore_index=True)
    frame["trace_id"] = frame["network"] + "." + frame["station"] + "." + frame["location"]
    return frame


def read_events(out: Path) -> obspy.Catalog:
    catalog = obspy.Catalog()
    for f in sorted((out / "events").glob("*.xml")):
        catalog += obspy.read_events(str(f))
    return catalog


def assert_complete_and_unique(out: Path, tasks: int) -> None:
    picks = read_picks(out)
    assert not picks.duplicated(["trace_id", "phase", "time"]).any()
    events = read_events(out)
    ids = [str(e.resource_id) for e in events]
    assert len(ids) == len(set(ids))
    # every pick linked to an event links to one in the daily QuakeML files
    linked = set(picks["event_id"]) - {""}
    assert linked and linked <= set(ids), linked - set(ids)
    manifest = pd.read_json(out / "manifest.json", typ="series")
    assert len(manifest["finished"]) == tasks and not manifest["failed"]
    assert not [p for p in out.rglob("*") if archive._TMP_MARK in p.name]


# ----------------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------------
def test_parse_duration():
    assert parse_duration("1h") == 3600
    assert parse_duration("30min") == 1800
    assert parse_duration("90s") == 90
    assert parse_duration("1D") == 86400
    assert parse_duration("600") == 600
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")
    with pytest.raises(ValueError, match="positive"):
        parse_duration("0")


@pytest.mark.parametrize(
    "start, end, chunk",
    [
        ("2019-07-06T00:00:00", "2019-07-07T00:00:00", 3600.0),
        ("2019-07-06T07:13:21.37", "2019-07-06T09:01:00", 1800.0),
        ("2019-12-31T23:00:00", "2020-01-01T01:30:00", 600.0),
    ],
)
def test_chunks_partition_the_span_with_padded_reads_on_the_window_grid(start, end, chunk):
    start, end = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
    step, pad = 1501, 120.0
    spans = chunk_spans(start, end, chunk, pad, 100.0, step)
    assert spans[0].start_ns == start.ns and spans[-1].end_ns == end.ns
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end_ns == b.start_ns  # contiguous: every time is owned by exactly one chunk
        assert b.start_ns % int(chunk * 1e9) == 0  # boundaries on the chunk grid
    for s in spans:
        assert s.start_ns < s.end_ns <= s.start_ns + chunk * 1e9
        assert s.read_start_ns % (step * 10**7) == 0  # the model's window grid since the epoch
        assert s.start_ns - s.read_start_ns >= pad * 1e9
        assert s.read_end_ns - s.end_ns >= pad * 1e9


def test_station_blocks_own_every_station_once():
    rng = np.random.default_rng(1)
    names = [f"XX.S{i:02d}." for i in range(23)]
    coords = [Coordinates(35 + rng.uniform(0, 1), -117 + rng.uniform(0, 1), 0.0) for _ in names]
    assert station_blocks(names, coords, None) == [(sorted(names), sorted(names))]
    assert station_blocks(names, coords, 40) == [(sorted(names), sorted(names))]
    blocks = station_blocks(names, coords, 8)
    assert len(blocks) > 2
    owned = [s for _, own in blocks for s in own]
    assert sorted(owned) == sorted(names)
    for group, own in blocks:
        assert len(group) <= 8 and set(own) <= set(group)


# ----------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------
def test_chunked_run_equals_a_whole_record_classify(sim_archive, reference):
    """Padded chunks on the window grid give exactly the picks and events of classify on the whole record."""
    root, _, inventory = sim_archive
    model = get_model(WEIGHTS)
    spans = chunk_spans(T0, T1, 240, 120, model.sampling_rate, archive.window_step(model))
    stream = SDSClient(str(root)).get_waveforms(
        "*", "*", "*", "*", spans[0].read_start, spans[-1].read_end
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every task (archive processing's default)
    try:
        whole = model.classify(stream, inventory=inventory)
    finally:
        torch.set_num_threads(threads)
    expected = sorted(
        (p.trace_id, p.phase, str(p.peak_time), float(p.peak_value))
        for p in whole.picks
        if T0 <= p.peak_time < T1
    )
    picks = read_picks(reference)
    got = sorted(
        picks[["trace_id", "phase", "time", "probability"]].itertuples(index=False, name=None)
    )
    assert len(got) > 50
    assert got == expected
    events = read_events(reference)
    expected_events = [e for e in whole.events if T0 <= first_p(e) < T1]
    assert len(events) >= 5
    assert [str(e.resource_id) for e in events] == [str(e.resource_id) for e in expected_events]
    # an earthquake whose picks straddle the 23:56 chunk boundary is one event
    boundary = T0 + 240
    straddling = [
        e
        for e in events
        if first_p(e) < boundary < max(p.time for p in e.picks if p.phase_hint == "P")
    ]
    assert straddling
    # the daily files split at midnight
    assert (picks["time"].str.slice(0, 10).isin(["2009-08-24", "2009-08-25"])).all()
    day1 = pd.read_csv(reference / "picks" / "2009-08-24.csv")
    assert (day1["time"] < "2009-08-25").all() and len(day1) > 0
    assert_complete_and_unique(reference, 4)


def test_rerun_skips_finished_chunks_and_recomputes_missing_ones(sim_archive, reference, tmp_path):
    root, xml, _ = sim_archive
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = outputs(out)
    result = annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="4min", progress=False)
    assert (result.computed, result.skipped) == (0, 4)
    assert outputs(out) == before
    record = sorted((out / "chunks").glob("*.json"))[1]
    record.unlink()
    result = annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="4min", progress=False)
    assert (result.computed, result.skipped) == (1, 3)
    assert outputs(out) == before
    with pytest.raises(ValueError, match="other settings.*chunk_s"):
        annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="2min", progress=False)


def test_task_killed_before_its_record_is_recomputed_without_duplicates(
    sim_archive, reference, tmp_path, monkeypatch
):
    """A task dies after writing its picks and events but before its record: the chunk counts as unfinished,
    and the rerun replaces its files."""
    root, xml, _ = sim_archive
    out = tmp_path / "out"
    write = archive.atomic_write
    calls = {"records": 0}

    def crash_on_second_record(path: Path, data: bytes) -> None:
        if path.parent.name == "chunks" and path.suffix == ".json":
            calls["records"] += 1
            if calls["records"] == 2:
                raise OSError("simulated crash before the record")
        write(path, data)

    monkeypatch.setattr(archive, "atomic_write", crash_on_second_record)
    with pytest.raises(OSError, match="simulated crash"):
        annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="4min", progress=False)
    assert len(list((out / "chunks").glob("*.picks.csv"))) == 2
    assert len(list((out / "chunks").glob("*.json"))) == 1
    monkeypatch.setattr(archive, "atomic_write", write)
    result = annotate_archive(root, xml, T0, T1, out, weights=WEIGHTS, chunk="4min", progress=False)
    assert (result.computed, result.skipped) == (3, 1)
    assert outputs(out) == outputs(reference)
    assert_complete_and_unique(out, 4)


def test_errors_name_the_problem(sim_archive, tmp_path):
    root, xml, inventory = sim_archive
    with pytest.raises(FileNotFoundError, match="no_such_archive"):
        annotate_archive(tmp_path / "no_such_archive", xml, T0, T1, tmp_path / "o", weights=WEIGHTS)
    with pytest.raises(ValueError, match="No data in the SDS archive"):
        annotate_archive(root, xml, "2011-01-01", "2011-01-02", tmp_path / "o", weights=WEIGHTS)
    with pytest.raises(ValueError, match="must be after"):
        annotate_archive(root, xml, T1, T0, tmp_path / "o", weights=WEIGHTS)
    partial = inventory.copy()
    partial[0].stations = [s for s in partial[0].stations if s.code not in ("D03", "D05")]
    with pytest.raises(ValueError, match=r"lacks station\(s\) DM\.D03\., DM\.D05\."):
        annotate_archive(root, partial, T0, T1, tmp_path / "o", weights=WEIGHTS)
    result = annotate_archive(
        root,
        partial,
        T0,
        T0 + 120,
        tmp_path / "dropped",
        weights=WEIGHTS,
        chunk="2min",
        drop_unlocated=True,
        progress=False,
    )
    assert result.tasks == 1
    picks = read_picks(tmp_path / "dropped")
    assert not picks["trace_id"].isin(["DM.D03.", "DM.D05."]).any()


# ----------------------------------------------------------------------------------------------------
# Dask
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stations_per_task", [None, 5])
def test_dask_local_cluster_equals_the_single_process_run(
    sim_archive, reference, dask_client, tmp_path, stations_per_task
):
    root, xml, _ = sim_archive
    kwargs = dict(
        weights=WEIGHTS, chunk="4min", stations_per_task=stations_per_task, progress=False
    )
    if stations_per_task is None:
        start, end, single = T0, T1, reference
    else:
        # station groups: two chunks across midnight (x 3 groups) against a synchronous run of the same
        start, end = T0 + 240, T0 + 720
        single = tmp_path / "single"
        annotate_archive(root, xml, start, end, single, scheduler="synchronous", **kwargs)
    out = tmp_path / "dask"
    result = annotate_archive(root, xml, start, end, out, scheduler=dask_client, **kwargs)
    assert result.computed == result.tasks
    if stations_per_task is not None:
        assert result.tasks > 4  # chunks x station groups
    assert outputs(out) == outputs(single)
    assert_complete_and_unique(out, result.tasks)
    # the work was spread over both workers, each loading the model once
    workers = {r["pid"] for r in pd.read_json(out / "manifest.json", typ="series")["finished"]}
    assert len(workers) == 2
    loads = dask_client.run(model_loads)
    assert set(loads.values()) == {1}


def test_killed_worker_chunk_is_recomputed(sim_archive, reference, dask_client, tmp_path):
    """SIGKILL a worker while it runs a chunk: Dask reruns the chunk elsewhere, the output is complete,
    duplicate-free and identical to the single-process run (the module's reference, same chunks)."""
    root, xml, _ = sim_archive
    kwargs = dict(weights=WEIGHTS, chunk="4min", progress=False)
    single = reference

    pids = dask_client.run(os.getpid)
    out = tmp_path / "dask"
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = annotate_archive(
                root, xml, T0, T1, out, scheduler=dask_client, **kwargs
            )
        except BaseException as e:  # noqa: BLE001 - checked below
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and thread.is_alive() and time.time() < deadline:
        if (out / "chunks").is_dir() and list((out / "chunks").glob("*.json")):
            busy = {
                addr: [str(k) for k in keys if str(k).startswith("sine-chunk-")]
                for addr, keys in dask_client.processing().items()
            }
            busy = {a: k for a, k in busy.items() if k and a in pids}
            if busy:
                addr = sorted(busy)[0]
                os.kill(pids[addr], signal.SIGKILL)
                killed = busy[addr]
                break
        time.sleep(0.02)
    thread.join(240)
    assert not thread.is_alive()
    assert killed, "no worker was running a chunk to kill"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.computed == result.tasks == 4
    # the killed chunks were finished by someone else
    records = pd.read_json(out / "manifest.json", typ="series")["finished"]
    finished = {r["task_id"] for r in records}
    for key in killed:
        task_id = key[len("sine-chunk-") :].rsplit("-", 1)[0]
        assert task_id in finished
    assert outputs(out) == outputs(single)
    assert_complete_and_unique(out, 4)
    dask_client.wait_for_workers(2, timeout=120)


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_cli_archive_local_cluster_parquet(sim_archive, reference, tmp_path, capsys):
    root, xml, _ = sim_archive
    out = tmp_path / "cli"
    argv = [
        "annotate",
        "--archive",
        str(root),
        "--inventory",
        str(xml),
        "--start",
        str(T0),
        "--end",
        str(T0 + 480),
        "--out",
        str(out),
        "--weights",
        WEIGHTS,
        "--chunk",
        "2min",
        "--scheduler",
        "local",
        "--workers",
        "2",
        "--picks-format",
        "parquet",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "4 task(s) computed" in capsys.readouterr().out
    table = pd.read_parquet(out / "picks" / "2009-08-24.parquet")
    assert list(table.columns) == PICK_COLUMNS
    assert str(table["time"].dtype).startswith("datetime64")
    # other chunk lengths give the same picks (the chunks of the reference run were 4 minutes)
    ref = read_picks(reference)
    ref = ref[ref["time"] < str(T0 + 480)]
    assert len(table) == len(ref) > 0
    assert (
        table["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy() == ref["time"].to_numpy()
    ).all()
    assert main(argv) == 0  # resumes: nothing to do
    assert "0 task(s) computed, 4 already finished" in capsys.readouterr().out
    assert (
        main(
            [
                "annotate",
                "--archive",
                str(tmp_path / "missing"),
                "--inventory",
                str(xml),
                "--start",
                str(T0),
                "--end",
                str(T1),
                "--out",
                str(out),
            ]
        )
        == 2  # a user's mistake: one line, exit status 2
    )
    assert "does not exist" in capsys.readouterr().err
