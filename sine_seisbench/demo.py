"""``sine demo``: simulate one earthquake on a network, run ``classify`` and compare with the truth."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench.data as sbd
from obspy.core.inventory import (
    Channel,
    InstrumentSensitivity,
    Inventory,
    Network,
    Response,
    Site,
    Station,
)
from obspy.geodetics import gps2dist_azimuth

from .data.simulate import SimulationConfig, TravelTimes, simulate_dataset
from .loader import load_weights
from .model import DEFAULT_WEIGHTS, SINE

#: Centre of the demo network (the 2019 Ridgecrest sequence)
CENTRE = (35.7, -117.6)


def demo_network(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """A virtual network of ``n`` stations scattered within about 60 km of :data:`CENTRE`."""
    rng = np.random.default_rng(seed)
    r = 60 * np.sqrt(rng.uniform(0.02, 1, n))
    az = rng.uniform(0, 2 * np.pi, n)
    return pd.DataFrame(
        {
            "network": "DM",
            "station": [f"D{i:02d}" for i in range(n)],
            "latitude": CENTRE[0] + r * np.cos(az) / 111.19,
            "longitude": CENTRE[1] + r * np.sin(az) / (111.19 * math.cos(math.radians(CENTRE[0]))),
            "elevation": rng.uniform(600, 1500, n),
        }
    )


def dataset_to_stream(dataset: sbd.WaveformDataset) -> tuple[obspy.Stream, Inventory]:
    """The traces of a SeisBench dataset as an ObsPy Stream (ZNE channels) and a matching Inventory."""
    stream = obspy.Stream()
    stations = {}
    for i, (_, row) in enumerate(dataset.metadata.iterrows()):
        data = dataset.get_waveforms(i)
        comps = str(row.get("trace_available_components", "ZNE"))
        for c, comp in enumerate("ZNE"):
            if comp not in comps or not np.any(data[c]):
                continue
            stream += obspy.Trace(
                data[c].astype(np.float64),
                {
                    "network": row["station_network_code"],
                    "station": row["station_code"],
                    "location": "",
                    "channel": f"{row.get('trace_channel', 'HH')}{comp}",
                    "sampling_rate": row["trace_sampling_rate_hz"],
                    "starttime": obspy.UTCDateTime(row["trace_start_time"]),
                },
            )
        stations[(row["station_network_code"], row["station_code"])] = (
            row["station_latitude_deg"],
            row["station_longitude_deg"],
            row["station_elevation_m"],
        )
    nets: dict[str, list[Station]] = {}
    for (net, sta), (lat, lon, elev) in stations.items():
        # the simulated traces are ground velocity in m/s: a flat response of sensitivity 1 (M/S)
        chans = [
            Channel(
                f"HH{c}",
                "",
                lat,
                lon,
                elev,
                0.0,
                sample_rate=100.0,
                response=Response(
                    instrument_sensitivity=InstrumentSensitivity(1.0, 1.0, "M/S", "M/S")
                ),
            )
            for c in "ZNE"
        ]
        nets.setdefault(net, []).append(
            Station(sta, lat, lon, elev, channels=chans, site=Site(name=sta))
        )
    inventory = Inventory(
        networks=[Network(n, stations=s) for n, s in nets.items()], source="sine demo"
    )
    return stream, inventory


def run_demo(
    weights: str | SINE | None = DEFAULT_WEIGHTS,
    out: str | Path = "sine_demo.png",
    seed: int = 7,
    magnitude: float = 2.8,
) -> dict:
    """Simulates an event, classifies it and writes a figure; returns the truth and the estimate.

    :param weights: A SINE, or weights for :func:`sine_seisbench.loader.load_weights`: a shipped or published
                    name, the path of ``NAME.json``/``NAME.pt``, ``"untrained"``, or None for the default weights.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(weights, SINE):
        model = weights
    else:
        model = load_weights(weights)
    model.eval()
    stations = demo_network(seed=seed)
    rng = np.random.default_rng(seed)
    truth = {
        "time": "2019-07-06T08:00:00",
        "latitude": CENTRE[0] + rng.uniform(-0.2, 0.2),
        "longitude": CENTRE[1] + rng.uniform(-0.2, 0.2),
        "depth": float(rng.uniform(4, 12)),
        "magnitude": magnitude,
    }
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig(
            n_events=1,
            max_stations=12,
            samples=6000,
            seed=seed,
            z_only_fraction=0.0,
            gap_fraction=0.0,
            dead_component_fraction=0.0,
            p_sample_range=(1500, 2500),
        )
        path = simulate_dataset(
            Path(tmp) / "demo",
            stations,
            catalog=pd.DataFrame([truth]),
            config=config,
            tt=TravelTimes(),
        )
        ds = sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)
        meta = ds.metadata.copy()
        stream, inventory = dataset_to_stream(ds)
    # One common time span for all stations (each simulated record starts at its own time)
    stream.trim(max(tr.stats.starttime for tr in stream), min(tr.stats.endtime for tr in stream))
    result = model.classify(stream, inventory=inventory)
    true_p = {
        f"{r.station_network_code}.{r.station_code}.": obspy.UTCDateTime(r.trace_start_time)
        + r.trace_p_arrival_sample / 100
        for r in meta.itertuples()
    }
    print(
        f"True event: {truth['time']}  lat {truth['latitude']:.3f}  lon {truth['longitude']:.3f}  "
        f"depth {truth['depth']:.1f} km  M {truth['magnitude']:.1f}"
    )
    p_picks = [p for p in result.picks if p.phase == "P"]
    residuals = []
    for sid, t in sorted(true_p.items()):
        picks = [p for p in p_picks if p.trace_id == sid and abs(p.peak_time - t) < 2]
        if picks:
            best = min(picks, key=lambda p: abs(p.peak_time - t))
            residuals.append(best.peak_time - t)
            print(
                f"  {sid:<10} P true {t}  picked {best.peak_time}  residual {best.peak_time - t:+.2f} s"
            )
        else:
            print(f"  {sid:<10} P true {t}  not picked")
    estimate = None
    if len(result.events):
        ev = result.events[0]
        o, m = ev.preferred_origin(), ev.preferred_magnitude()
        dist = (
            gps2dist_azimuth(truth["latitude"], truth["longitude"], o.latitude, o.longitude)[0]
            / 1000
        )
        estimate = {
            "latitude": o.latitude,
            "longitude": o.longitude,
            "depth": o.depth / 1000,
            "magnitude": None if m is None else m.mag,
            "epicentral_error_km": dist,
        }
        magnitude = (
            "no ML (uncalibrated)"
            if m is None
            else f"ML {m.mag:.1f} (magnitude error {m.mag - truth['magnitude']:+.2f})"
        )
        print(
            f"SINE event:  {o.time}  lat {o.latitude:.3f}  lon {o.longitude:.3f}  depth {o.depth / 1000:.1f} km "
            f"{magnitude}  (epicentral error {dist:.1f} km, depth error {o.depth / 1000 - truth['depth']:+.1f} km); "
            f"{len(result.events)} event(s) in the catalogue"
        )
    else:
        print(
            "SINE formed no event (fewer than min_stations P picks, or too few P and S phases for the "
            "acceptance rule)."
        )

    fig = plt.figure(figsize=(12, 6))
    ax_w = fig.add_axes([0.09, 0.08, 0.52, 0.85])
    ax_m = fig.add_axes([0.66, 0.12, 0.32, 0.75])
    order = sorted(true_p, key=lambda s: true_p[s])
    t0 = min(true_p.values()) - 10
    for k, sid in enumerate(order):
        tr = stream.select(id=sid + "*Z")
        if not len(tr):
            continue
        tr = tr[0]
        x = tr.times(reftime=t0)
        y = tr.data / (np.abs(tr.data).max() + 1e-30)
        ax_w.plot(x, k + 0.45 * y, "k", lw=0.4)
        ax_w.plot([true_p[sid] - t0] * 2, [k - 0.45, k + 0.45], "b", lw=1.5)
        for p in result.picks:
            if p.trace_id == sid:
                ax_w.plot(
                    [p.peak_time - t0] * 2,
                    [k - 0.45, k + 0.45],
                    "r--" if p.phase == "P" else "m--",
                    lw=1.2,
                )
    ax_w.set_yticks(range(len(order)), order)
    ax_w.set_xlim(0, 60)
    ax_w.set_xlabel(f"seconds after {t0}")
    ax_w.set_title("Z velocity; blue: true P, red: SINE P, magenta: SINE S")
    ax_m.plot(stations.longitude, stations.latitude, "k^", label="stations")
    ax_m.plot(truth["longitude"], truth["latitude"], "b*", ms=15, label="true epicentre")
    if estimate:
        ax_m.plot(estimate["longitude"], estimate["latitude"], "r*", ms=15, label="SINE epicentre")
    ax_m.set_xlabel("longitude")
    ax_m.set_ylabel("latitude")
    ax_m.legend(loc="best", fontsize=8)
    ax_m.set_aspect(1 / math.cos(math.radians(CENTRE[0])))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"figure written to {out}")
    return {
        "truth": truth,
        "estimate": estimate,
        "p_residuals_s": residuals,
        "events": len(result.events),
    }
