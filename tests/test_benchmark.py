from __future__ import annotations

import pandas as pd
import pytest
import torch

from sine_seisbench.bench.harness import refresh_readme, run_benchmark
from sine_seisbench.example import network_stream


@pytest.fixture
def data_dir(tmp_path):
    """A tiny data folder in the layout of ../shared/data: PNW-style records with manual picks and stations."""
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
    assert list(out.glob("dependence*.png")) or loc["located"].max() == 0
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
