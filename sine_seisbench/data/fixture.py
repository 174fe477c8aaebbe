"""A small multi-station event dataset in SeisBench format (SCEDC column schema) for tests and pipeline
benchmarks.

Waveforms are simple but consistent with the metadata: P and S wavelets at straight-ray travel times in a
constant-velocity medium over Gaussian noise, amplitudes growing with magnitude and falling with distance. It is a
plumbing fixture, not a seismological simulator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import obspy
import seisbench.data as sbd

from ..geometry import EARTH_KM_PER_DEG

#: The ``data_format`` of fixture datasets (ZNE counts at 100 Hz)
DATA_FORMAT = {
    "dimension_order": "CW",
    "component_order": "ZNE",
    "sampling_rate": 100,
    "measurement": "velocity",
    "unit": "counts",
    "instrument_response": "not restituted",
}


def _wavelet(
    n: int, onset: float, freq: float, decay: float, rng: np.random.Generator
) -> np.ndarray:
    t = (np.arange(n) - onset) / 100.0
    w = np.where(
        t >= 0, np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * decay), 0.0
    )
    return w * (t >= 0) * np.minimum(1.0, np.maximum(t, 0) * 20)


def write_event_dataset(
    path: str | Path,
    n_events: int = 24,
    n_stations: int = 8,
    seed: int = 0,
    samples: int = 6000,
    p_column: str = "trace_p_arrival_sample",
    s_column: str = "trace_s_arrival_sample",
    with_split: bool = True,
    with_source_id: bool = True,
    center: tuple[float, float] = (35.7, -117.6),
    vp: float = 6.0,
    vs: float = 3.46,
) -> Path:
    """Writes ``metadata.csv`` and ``waveforms.hdf5`` into ``path`` and returns it.

    Each event is recorded at ``n_stations`` of a fixed network around ``center`` (ZNE, 100 Hz, ``samples``
    long), with station-specific start times so that groups need wall-time alignment.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coslat = math.cos(math.radians(center[0]))
    net_xy = rng.uniform(-40, 40, size=(n_stations + 4, 2))
    net_elev = rng.uniform(0, 1500, size=n_stations + 4)
    splits = ["train"] * max(1, int(0.7 * n_events))
    splits += ["dev"] * max(1, (n_events - len(splits)) // 2)
    splits += ["test"] * (n_events - len(splits))

    with sbd.WaveformDataWriter(path / "metadata.csv", path / "waveforms.hdf5") as writer:
        writer.data_format = dict(DATA_FORMAT)
        for ev in range(n_events):
            ex, ey = rng.uniform(-30, 30, size=2)
            depth = float(rng.uniform(2, 15))
            mag = float(rng.uniform(1.0, 3.5))
            origin = obspy.UTCDateTime(2019, 7, 6) + ev * 600.0 + float(rng.uniform(0, 60))
            src_lat = center[0] + ey / EARTH_KM_PER_DEG
            src_lon = center[1] + ex / (EARTH_KM_PER_DEG * coslat)
            stations = rng.choice(len(net_xy), size=n_stations, replace=False)
            for s in sorted(stations):
                sx, sy = net_xy[s]
                dist = math.hypot(math.hypot(sx - ex, sy - ey), depth + net_elev[s] / 1000)
                tp, ts = dist / vp, dist / vs
                start = origin + tp - float(rng.uniform(5, 25))
                p_sample = (origin + tp - start) * 100
                s_sample = (origin + ts - start) * 100
                amp = 10 ** (mag - 1.5 * math.log10(max(dist, 1.0)) + 2)
                data = rng.normal(0, 1.0, size=(3, samples))
                for c in range(3):
                    data[c] += (
                        amp * (0.6 if c == 0 else 0.3) * _wavelet(samples, p_sample, 6.0, 3.0, rng)
                    )
                    data[c] += (
                        amp * (0.4 if c == 0 else 1.0) * _wavelet(samples, s_sample, 3.0, 1.5, rng)
                    )
                meta = {
                    "source_origin_time": str(origin),
                    "source_latitude_deg": src_lat,
                    "source_longitude_deg": src_lon,
                    "source_depth_km": depth,
                    "source_magnitude": mag,
                    "source_magnitude_type": "ml",
                    "station_network_code": "CI",
                    "station_code": f"S{s:02d}",
                    "station_location_code": "",
                    "station_latitude_deg": center[0] + sy / EARTH_KM_PER_DEG,
                    "station_longitude_deg": center[1] + sx / (EARTH_KM_PER_DEG * coslat),
                    "station_elevation_m": float(net_elev[s]),
                    "trace_channel": "HH",
                    "trace_sampling_rate_hz": 100.0,
                    "trace_start_time": str(start),
                    p_column: float(p_sample),
                    s_column: float(s_sample),
                }
                if with_source_id:
                    meta["source_id"] = f"ci{ev:08d}"
                if with_split:
                    meta["split"] = splits[ev]
                writer.add_trace(meta, data.astype(np.float32))
    return path
