"""Importer for the original SINE data format (the authors' ``ExampleData``) into a SeisBench dataset.

Each ``.npy`` file holds a 0-d object array that unpickles to a dict with ``input_data`` (stations x 1500 samples,
100 Hz, vertical only, min-max scaled; the window starts at the first P of the nearest station),
``station_list`` (stations x [lat, lon, elevation km, 1.0]), ``P_point`` (P sample per station) and ``label``
([lat, lon, depth, magnitude] min-max normalised with the ranges of the original ``config.ini``, longitude stored
west-positive). A training set is one such file whose dict maps event ids to event dicts. Values are pickled torch
tensors or numpy arrays.

Files are read with a restricted unpickler that rebuilds only numpy arrays and torch tensors (the latter through
``torch.load(weights_only=True)``) and refuses every other object, so a crafted file cannot run code.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import seisbench
import seisbench.data as sbd
import torch

SAMPLING_RATE = 100.0

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("collections", "OrderedDict"),
}


def _load_tensor_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, numpy scalars and torch tensors, and nothing else."""

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_tensor_bytes
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{self.source}: refusing to load '{module}.{name}'. Only numpy arrays and torch tensors are accepted "
            "in SINE data files; this file holds another object and may not be what it claims to be."
        )


def load_npy(path: str | Path) -> Any:
    """Reads a ``.npy`` file; object arrays go through :class:`RestrictedUnpickler`. A 0-d object array returns
    its item."""
    path = Path(path)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        array = RestrictedUnpickler(f, str(path)).load()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a pickled numpy array, found {type(array).__name__}")
    return array.item() if array.shape == () else array


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def read_ranges(config_path: str | Path) -> dict[str, tuple[float, float]]:
    """Min/max of latitude, longitude, depth and magnitude from the original ``config.ini``.

    Keys are matched loosely in any section, e.g. ``lat_min``/``lat_max``, ``min_lat``, ``latitude_min``,
    ``depth_max``, ``mag_min``.
    """
    parser = configparser.ConfigParser()
    if not parser.read(config_path):
        raise FileNotFoundError(f"Cannot read ranges file {config_path}")
    names = {
        "lat": "latitude",
        "latitude": "latitude",
        "lon": "longitude",
        "lng": "longitude",
        "longitude": "longitude",
        "dep": "depth",
        "depth": "depth",
        "mag": "magnitude",
        "magnitude": "magnitude",
    }
    pattern = re.compile(r"^(?:(?P<b1>min|max)_?(?P<n1>[a-z]+)|(?P<n2>[a-z]+?)_?(?P<b2>min|max))$")
    found: dict[str, dict[str, float]] = {}
    for section in parser.sections():
        for key, value in parser[section].items():
            m = pattern.match(key.lower())
            if not m:
                continue
            name = names.get(m.group("n1") or m.group("n2"))
            bound = m.group("b1") or m.group("b2")
            if name:
                found.setdefault(name, {})[bound] = float(value)
    ranges = {}
    missing = []
    for name in ("latitude", "longitude", "depth", "magnitude"):
        b = found.get(name, {})
        if "min" in b and "max" in b:
            ranges[name] = (b["min"], b["max"])
        else:
            missing.append(name)
    if missing:
        raise ValueError(
            f"{config_path}: no min/max for {', '.join(missing)} (expected keys such as lat_min, lat_max, "
            "lon_min, lon_max, depth_min, depth_max, mag_min, mag_max)"
        )
    return ranges


def _events(obj: Any, source: str) -> dict[str, dict]:
    if isinstance(obj, dict) and "input_data" in obj:
        return {Path(source).stem: obj}
    if (
        isinstance(obj, dict)
        and obj
        and all(isinstance(v, dict) and "input_data" in v for v in obj.values())
    ):
        return {str(k): v for k, v in obj.items()}
    raise ValueError(f"{source}: not a SINE event dict (no 'input_data') nor a dict of event dicts")


def import_sine(
    source: str | Path,
    out: str | Path,
    ranges: dict[str, tuple[float, float]],
    longitude_west_positive: bool = True,
) -> sbd.WaveformDataset:
    """Converts SINE ``.npy`` files (one file or a folder of them) into a SeisBench dataset at ``out``.

    Every station becomes a trace (component Z; N and E are absent and zero-filled on loading) with the event's
    hypocentre and magnitude, the station position and the P arrival sample. The original format holds no
    absolute times: each event gets a nominal start time (event index hours after 2000-01-01) shared by its
    stations, which keeps the stations of an event aligned. Station longitudes are taken west-positive too when
    that puts them near the event (checked per event).
    """
    source = Path(source)
    files = sorted(source.glob("*.npy")) if source.is_dir() else [source]
    if not files:
        raise FileNotFoundError(f"No .npy files in {source}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def denorm(value: float, name: str) -> float:
        lo, hi = ranges[name]
        return lo + float(value) * (hi - lo)

    base_time = obspy.UTCDateTime(2000, 1, 1)
    n_events = 0
    with sbd.WaveformDataWriter(out / "metadata.csv", out / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "Z",
            "sampling_rate": SAMPLING_RATE,
            "measurement": "velocity",
            "unit": "min-max scaled",
            "instrument_response": "unknown",
        }
        for path in files:
            for event_id, event in _events(load_npy(path), str(path)).items():
                waves = _np(event["input_data"]).astype(np.float32)
                stations = _np(event["station_list"]).astype(float)
                p_points = _np(event["P_point"]).astype(float).ravel()
                label = _np(event["label"]).astype(float).ravel()
                if (
                    waves.ndim != 2
                    or stations.shape[0] != waves.shape[0]
                    or p_points.size != waves.shape[0]
                ):
                    raise ValueError(
                        f"{path} event {event_id}: input_data {waves.shape}, station_list {stations.shape} and "
                        f"P_point {p_points.shape} disagree on the number of stations"
                    )
                lat = denorm(label[0], "latitude")
                lon = denorm(label[1], "longitude")
                if longitude_west_positive:
                    lon = -lon
                depth = denorm(label[2], "depth")
                mag = denorm(label[3], "magnitude")
                st_lon = stations[:, 1]
                if np.median(np.abs(-st_lon - lon)) < np.median(np.abs(st_lon - lon)):
                    st_lon = -st_lon
                start = base_time + 3600.0 * n_events
                for j in range(waves.shape[0]):
                    key = f"{stations[j, 0]:.4f},{st_lon[j]:.4f}"
                    code = "S" + hashlib.sha1(key.encode()).hexdigest()[:4].upper()
                    writer.add_trace(
                        {
                            "source_id": f"sine_{event_id}",
                            "source_latitude_deg": lat,
                            "source_longitude_deg": lon,
                            "source_depth_km": depth,
                            "source_magnitude": mag,
                            "station_network_code": "SN",
                            "station_code": code,
                            "station_location_code": "",
                            "station_latitude_deg": float(stations[j, 0]),
                            "station_longitude_deg": float(st_lon[j]),
                            "station_elevation_m": float(stations[j, 2]) * 1000.0,
                            "trace_sampling_rate_hz": SAMPLING_RATE,
                            "trace_start_time": str(start),
                            "trace_component_order": "Z",
                            "trace_P_arrival_sample": float(p_points[j]),
                        },
                        waves[j][None, :],
                    )
                n_events += 1
    seisbench.logger.info(f"Imported {n_events} SINE events into {out}")
    return sbd.WaveformDataset(out, component_order="ZNE", sampling_rate=SAMPLING_RATE)
