from __future__ import annotations

import numpy as np
import obspy
import pandas as pd
import pytest
import torch

from sine_seisbench import SINE
from sine_seisbench.example import network_stream

LABELS = ("SINE_P", "SINE_S", "SINE_N")


@pytest.fixture(scope="module")
def model() -> SINE:
    torch.manual_seed(0)
    return SINE(max_stations=4)


def station_ids(stream):
    return sorted({f"{tr.stats.network}.{tr.stats.station}.{tr.stats.location}" for tr in stream})


def test_annotate_names_and_covers_every_station(model):
    st, inv = network_stream(10, repeat=2)
    ann = model.annotate(st, inventory=inv, batch_size=8)
    # 10 stations in groups of at most 4 (overlapping), yet exactly one trace per station and label
    assert len(ann) == 10 * 3
    assert station_ids(ann) == station_ids(st)
    assert sorted({tr.stats.channel for tr in ann}) == sorted(LABELS)
    for tr in ann:
        assert tr.stats.sampling_rate == 100
        assert np.all(np.isfinite(tr.data)) and tr.data.min() >= 0 and tr.data.max() <= 1
        # Blinding trims 2.5 s at both ends of the record only
        assert tr.stats.endtime - tr.stats.starttime > 50
    p, s, n = (ann.select(station="S03", channel=c)[0].data for c in LABELS)
    assert np.allclose(p + s + n, 1.0, atol=1e-4)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_small_batch_sizes_finish_and_agree(model, batch_size):
    """SeisBench hangs when a batch's station axis is not a fixed size; SINE pads to max_stations."""
    st, inv = network_stream(6)
    reference = model.annotate(st, inventory=inv, batch_size=64)
    small = model.annotate(st, inventory=inv, batch_size=batch_size)
    assert len(small) == len(reference) == 18
    for a in reference:
        b = small.select(id=a.id)[0]
        assert a.stats.starttime == b.stats.starttime
        np.testing.assert_allclose(a.data, b.data, atol=1e-5)


def test_batch_post_returns_one_array(model):
    """A tuple from annotate_batch_post makes SeisBench hang: SINE returns a single array."""
    x = torch.randn(2, 4, 3, model.in_samples)
    x, piggy = model.annotate_batch_pre(x, {})
    with torch.no_grad():
        out = model(x)
    post = model.annotate_batch_post(out, piggy, {})
    assert isinstance(post, torch.Tensor)
    assert post.shape == (2, 4, model.in_samples, 3)
    assert torch.isnan(post[:, :, :250]).all() and torch.isfinite(post[:, :, 250:-250]).all()


@pytest.mark.timeout(60)
def test_errors_inside_the_pipeline_are_raised_not_hung(model, monkeypatch):
    st, inv = network_stream(4)

    def broken(*args, **kwargs):
        raise RuntimeError("boom in forward")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(RuntimeError, match="boom in forward"):
        model.annotate(st, inventory=inv, batch_size=2)


def test_dataframe_and_stats_coordinates_equal_inventory(model):
    st, inv = network_stream(5)
    rows = [
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
    a = model.annotate(st, inventory=inv)
    b = model.annotate(st, inventory=pd.DataFrame(rows))
    st2 = st.copy()
    for tr in st2:
        # as ObsPy's Inventory.get_coordinates returns them (with local_depth)
        tr.stats.coordinates = inv.get_coordinates(tr.id, tr.stats.starttime)
    c = model.annotate(st2)
    for other in (b, c):
        for tr in a:
            np.testing.assert_allclose(tr.data, other.select(id=tr.id)[0].data, atol=1e-6)


def test_missing_coordinates_are_named(model, sb_log):
    st, inv = network_stream(5)
    for tr in st.select(station="S02"):
        tr.stats.network = "YY"
    with pytest.raises(ValueError, match=r"YY\.S02\.") as err:
        model.annotate(st, inventory=inv)
    assert "drop_unlocated=True" in str(err.value)
    ann = model.annotate(st, inventory=inv, drop_unlocated=True)
    assert "YY.S02." not in station_ids(ann)
    assert len(station_ids(ann)) == 4
    assert "YY.S02." in sb_log.text


def test_gaps_and_nans(model, sb_log):
    st, inv = network_stream(5, repeat=2)
    tr = st.select(station="S01", channel="HHZ")[0]
    tr.data[1000:1500] = np.nan
    gap = st.select(station="S03", channel="HHN")[0]
    st.remove(gap)
    st += gap.slice(gap.stats.starttime, gap.stats.starttime + 10)
    st += gap.slice(gap.stats.starttime + 20, gap.stats.endtime)
    ann = model.annotate(st, inventory=inv)
    assert len(ann) == 15
    assert all(np.all(np.isfinite(t.data)) for t in ann)
    assert "XX.S01..HHZ has 500 NaN" in sb_log.text


def test_mixed_sampling_rates_are_resampled(model):
    st, inv = network_stream(4, repeat=2)
    for tr in st.select(station="S00"):
        tr.resample(200.0)
    for tr in st.select(station="S01"):
        tr.decimate(2)
    ann = model.annotate(st, inventory=inv)
    assert {tr.stats.sampling_rate for tr in ann} == {100.0}
    assert len(ann) == 12


def test_z_only_stations(model):
    st, inv = network_stream(5)
    for tr in st.select(station="S01", channel="HH[NE]"):
        st.remove(tr)
    for tr in st.select(station="S04", channel="HH[NE]"):
        st.remove(tr)
    ann = model.annotate(st, inventory=inv)
    assert len(ann) == 15


def test_duplicate_traces(model, sb_log):
    st, inv = network_stream(4)
    reference = model.annotate(st, inventory=inv)
    dup = st.copy() + st.select(station="S00").copy()  # identical duplicates: merged
    ann = model.annotate(dup, inventory=inv)
    assert len(ann) == len(reference)
    for tr in reference:
        np.testing.assert_allclose(tr.data, ann.select(id=tr.id)[0].data, atol=1e-6)
    conflict = st.copy()
    bad = st.select(station="S02", channel="HHZ")[0].copy()
    bad.data = bad.data * -1
    conflict += bad
    model.annotate(conflict, inventory=inv)
    assert "XX.S02..HHZ" in sb_log.text and "disagree" in sb_log.text


def test_empty_stream(model, sb_log):
    assert len(model.annotate(obspy.Stream())) == 0
    out = model.classify(obspy.Stream())
    assert len(out.picks) == 0 and len(out.events) == 0
    assert "empty" in sb_log.text


def test_real_ridgecrest_records_z_only(model, shared):
    """Three real CI stations (EHZ only) with coordinates from a CSV table."""
    folder = shared / "continuous" / "ridgecrest_2019-07-06T08"
    st = obspy.Stream()
    for path in sorted(folder.glob("*.mseed")):
        st += obspy.read(str(path))
    t0 = st[0].stats.starttime
    st.trim(t0, t0 + 300)
    stations = pd.read_csv(folder / "stations_phaseno.csv")
    assert {"network", "station", "latitude", "longitude"} <= set(stations.columns)
    if "elevation" not in stations.columns:
        stations["elevation"] = stations.get("elevation_m", 0.0)
    ann = model.annotate(st, inventory=stations)
    assert station_ids(ann) == station_ids(st)
    assert len(ann) == 3 * len(station_ids(st))
    assert min(tr.stats.npts for tr in ann) > 250 * 100
