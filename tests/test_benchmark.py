from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from sine_seisbench.bench import harness
from sine_seisbench.bench.harness import refresh_readme, run_benchmark
from sine_seisbench.data.layout import LAYOUT, DataLayout, as_layout
from sine_seisbench.example import network_stream


@pytest.fixture
def data_dir(tmp_path):
    """A tiny data folder in the benchmark data's layout (:data:`sine_seisbench.data.layout.LAYOUT`): PNW-style
    records with manual picks and stations."""
    root = tmp_path / "data"
    pnw = root / "continuous" / "pnw_2022-02-06"
    pnw.mkdir(parents=True)
    st, inv = network_stream(4, repeat=8, network="UW")  # 4 min
    for sta in {tr.stats.station for tr in st}:
        st.select(station=sta).write(str(pnw / f"UW.{sta}..HH.ms"), format="MSEED")
    t0 = st[0].stats.starttime
    pd.DataFrame(
        [
            dict(
                pick_id=i,
                source_id="uw1",
                network="UW",
                station=tr_sta,
                location="--",
                channel="HHZ",
                timestamp=(t0 + 30 + i).timestamp,
                phase="P",
                uncertainty=0.1,
            )
            for i, tr_sta in enumerate(sorted({tr.stats.station for tr in st}))
        ]
    ).to_csv(pnw / "UW.picks.2022.037.csv", index=False)
    stations = root / "stations"
    stations.mkdir()
    pd.DataFrame(
        [
            dict(
                network_code="UW",
                station_code=s.code,
                latitude=s.latitude,
                longitude=s.longitude,
                elevation=s.elevation,
            )
            for s in inv[0]
        ]
    ).to_csv(stations / "western_us_stations.csv", index=False)
    return root


def test_quick_suite_on_tiny_fixtures(data_dir, tmp_path, tt):
    out = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    torch.manual_seed(
        0
    )  # untrained SINE: the same random weights in both runs (results are keyed by them)
    report = run_benchmark(
        suite="quick",
        data_dir=data_dir,
        out=out,
        models=["SINE"],
        sine_weights=None,
        stages=["continuous", "location", "speed"],
        readme=readme,
        tt=tt,
    )
    text = report.read_text()
    assert (
        "## Continuous records" in text
        and "## Location and magnitude" in text
        and "## Annotate speed" in text
    )
    assert "Ridgecrest skipped" in text  # absent data is reported, not silently dropped
    cont = pd.read_csv(out / "continuous.csv")
    assert cont["P_references"].iloc[0] == 4
    loc = pd.read_csv(out / "location.csv")
    # SINE's own events, and SINE's picks through the classical chain (no published picker in this run);
    # the tiny fixture has only the demo geometry (3 events in the quick suite)
    assert set(loc["method"]) == {"SINE", "SINE picks → chain"} and loc["events"].min() == 3
    assert set(loc["geometry"]) == {"demo"}
    # the dependence figure is drawn exactly when SINE or the chain located some event (the figure's test on a
    # synthetic summary is test_dependence_figure_only_with_located_events)
    pngs = sorted(p.name for p in out.glob("dependence*.png"))
    assert bool(pngs) == bool(loc["located"].max() > 0)
    if pngs:
        assert pngs == ["dependence.png", "dependence_demo.png"]
    assert "benchmark-summary:start" in readme.read_text()
    # Resumable: a second run reads the cached JSON instead of recomputing
    cached = sorted(p.name for p in (out / "raw").glob("*.json"))
    assert cached
    mtimes = {p.name: p.stat().st_mtime for p in (out / "raw").glob("*.json")}
    torch.manual_seed(0)
    run_benchmark(
        suite="quick",
        data_dir=data_dir,
        out=out,
        models=["SINE"],
        sine_weights=None,
        stages=["continuous", "location"],
        readme=None,
        tt=tt,
    )
    assert {p.name: p.stat().st_mtime for p in (out / "raw").glob("*.json")} == mtimes


def test_readme_summary_is_replaced_not_appended(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n")
    refresh_readme(readme, "table one")
    refresh_readme(readme, "table two")
    text = readme.read_text()
    assert (
        "table two" in text
        and "table one" not in text
        and text.count("benchmark-summary:start") == 1
    )


def test_cached_results_are_keyed_by_the_weights(tmp_path):
    """Results of other weights under the same model name are never reused."""
    import copy

    import torch

    from sine_seisbench import SINE
    from sine_seisbench.bench.harness import Cache, weights_digest

    a = SINE(max_stations=4)
    b = copy.deepcopy(a)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.branch.proj_out.bias.add_(1.0)
    assert weights_digest(a) != weights_digest(b)
    calls = []
    for model, value in ((a, 1), (a, 2), (b, 3)):
        cache = Cache(tmp_path, force=False, versions={"SINE": weights_digest(model)})
        calls.append(cache.get("picks", "SINE+PhaseNet", "stead50", compute=lambda v=value: v))
    assert calls == [1, 1, 3]  # the second run reuses the first; other weights compute anew
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert names == sorted(
        f"picks__SINE@{weights_digest(m)}+PhaseNet__stead50.json" for m in (a, b)
    )


def _summary_rows(located: int) -> list[dict]:
    """Summary rows of one geometry as :func:`stage_location` writes them (via ``summarise``)."""
    rows = []
    for method, base in (("SINE", 2.0), ("chain+PhaseNet", 5.0)):
        for drop, noise in ((0.0, 0.0), (0.5, 0.0), (0.0, 8.0)):
            row = {
                "geometry": "demo",
                "method": method,
                "drop_fraction": drop,
                "noise_factor": noise,
                "pick_jitter_s": 0.0,
                "events": 3,
                "located": located,
            }
            if located:
                row["epicentral_median_km"] = base * (1 + drop + noise / 8)
            rows.append(row)
    return rows


def test_dependence_figure_only_with_located_events(tmp_path):
    """``_plot_dependence`` draws the degradation figure from a summary with located events and draws nothing
    without any (no epicentral errors) or for an empty summary."""
    path = tmp_path / "dependence.png"
    harness._plot_dependence(pd.DataFrame(_summary_rows(located=2)), path)
    assert path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    for frame in (pd.DataFrame(_summary_rows(located=0)), pd.DataFrame()):
        empty = tmp_path / "nothing.png"
        harness._plot_dependence(frame, empty)
        assert not empty.exists()


def test_data_layout_from_a_root_with_parts_moved(tmp_path):
    layout = as_layout(tmp_path)
    assert layout == DataLayout.from_root(tmp_path) and as_layout(layout) is layout
    assert layout.root == tmp_path
    assert layout.parts() == {name: tmp_path / rel for name, rel in LAYOUT.items()}
    assert layout.pnw == tmp_path / "continuous" / "pnw_2022-02-06"
    moved = DataLayout.from_root(tmp_path, pnw=tmp_path / "x" / "pnw", colombia=None)
    assert moved.pnw == tmp_path / "x" / "pnw" and moved.colombia == layout.colombia
    with pytest.raises(TypeError, match="pnw_records"):
        DataLayout.from_root(tmp_path, pnw_records="x")
    with pytest.raises(TypeError, match="No data folder"):
        as_layout(None)


def test_no_default_names_a_data_folder():
    """The installed package names no development data folder: no parameter default of the harness, its stages
    or the data tools is a path, and run_benchmark needs its data and output folders."""
    import importlib
    import inspect
    import pkgutil

    import sine_seisbench.bench
    import sine_seisbench.data

    for package in (sine_seisbench.bench, sine_seisbench.data):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, func in inspect.getmembers(module, inspect.isfunction):
                if func.__module__ != module.__name__:
                    continue
                for p in inspect.signature(func).parameters.values():
                    default = p.default
                    assert not (
                        isinstance(default, (str, Path))
                        and ("shared" in str(default) or "/" in str(default))
                    ), f"{module.__name__}.{name}({p.name}={default!r})"
    params = inspect.signature(run_benchmark).parameters
    assert params["data_dir"].default is inspect.Parameter.empty
    assert params["out"].default is inspect.Parameter.empty


def test_stages_read_a_moved_part(data_dir, tmp_path, tt):
    """A part of the layout moved out of the root (here the PNW records) is read where the layout says."""
    moved = tmp_path / "pnw_elsewhere"
    (data_dir / "continuous" / "pnw_2022-02-06").rename(moved)
    layout = DataLayout.from_root(data_dir, pnw=moved)
    messages: list[str] = []
    rows = harness.stage_speed(harness.load_models(["SINE"], None), layout, True, messages.append)
    assert [r["model"] for r in rows] == ["SINE"] and rows[0]["station_hours"] > 0
    assert harness.stage_speed({}, data_dir, True, messages.append) == []  # the root alone lacks it
    assert messages == ["speed: no continuous records; stage skipped"]
