"""A small multi-station example built from the real record shipped with ObsPy (BW.RJOB, 2009-08-24).

Used by ``sine classify --example``, the tests and the benchmarks. The waveforms are real; the network is
virtual: every station gets the RJOB record delayed by distance / vp and scaled by 1 / distance, so that
geometry, inventory and arrival times are consistent.
"""

from __future__ import annotations

import math

import numpy as np
import obspy
from obspy.core.inventory import Channel, Inventory, Network, Site, Station

#: Epicentre of the virtual network: the position of BW.RJOB (the record holds a local event)
SOURCE = (47.737, 12.796)


def station_positions(
    n: int, radius_km: float = 30.0, seed: int = 0
) -> list[tuple[float, float, float]]:
    """Latitude, longitude, elevation (m) of ``n`` stations scattered around :data:`SOURCE`."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        az = 2 * math.pi * i / n + rng.uniform(-0.3, 0.3)
        r = radius_km * (0.3 + 0.7 * rng.uniform())
        lat = SOURCE[0] + r * math.cos(az) / 111.19
        lon = SOURCE[1] + r * math.sin(az) / (111.19 * math.cos(math.radians(SOURCE[0])))
        out.append((lat, lon, float(rng.uniform(300, 1500))))
    return out


def make_inventory(
    names: list[str], positions, network: str = "XX", channels: str = "ZNE"
) -> Inventory:
    """An Inventory with one station per name at the given (lat, lon, elevation m) positions."""
    stations = []
    for name, (lat, lon, elev) in zip(names, positions, strict=True):
        chans = [Channel(f"HH{c}", "", lat, lon, elev, 0.0, sample_rate=100.0) for c in channels]
        stations.append(Station(name, lat, lon, elev, channels=chans, site=Site(name=name)))
    return Inventory(
        networks=[Network(network, stations=stations)], source="sine-seisbench example"
    )


def network_stream(
    n: int = 6, seed: int = 0, network: str = "XX", vp: float = 6.0, repeat: int = 2
) -> tuple[obspy.Stream, Inventory]:
    """A consistent multi-station stream: ObsPy's real RJOB record, delayed by distance / vp and scaled by
    1 / distance for each virtual station of :func:`station_positions`. ``repeat`` concatenates the record
    that many times (the default gives 60 s, longer than one 30 s window)."""
    base = obspy.read()
    base.detrend("demean")
    names = [f"S{i:02d}" for i in range(n)]
    positions = station_positions(n, seed=seed)
    out = obspy.Stream()
    for name, (lat, lon, _elev) in zip(names, positions, strict=True):
        dist = math.hypot(
            (lat - SOURCE[0]) * 111.19,
            (lon - SOURCE[1]) * 111.19 * math.cos(math.radians(SOURCE[0])),
        )
        shift = int(round(dist / vp * 100))
        for tr in base:
            data = np.tile(tr.data.astype(np.float64), repeat)
            data = np.concatenate([np.full(shift, data[0]), data])[: data.size]
            data *= 10.0 / max(dist, 1.0)
            new = tr.copy()
            new.data = data
            new.stats.network = network
            new.stats.station = name
            new.stats.channel = "HH" + tr.stats.channel[-1]
            out += new
    return out, make_inventory(names, positions, network)


def delays(stream: obspy.Stream, vp: float = 6.0) -> dict[str, float]:
    """Delay (s) of every station of :func:`network_stream` relative to the RJOB record."""
    out = {}
    for tr in stream:
        lat, lon = tr.stats.coordinates.latitude, tr.stats.coordinates.longitude
        dist = math.hypot(
            (lat - SOURCE[0]) * 111.19,
            (lon - SOURCE[1]) * 111.19 * math.cos(math.radians(SOURCE[0])),
        )
        out[f"{tr.stats.network}.{tr.stats.station}.{tr.stats.location}"] = (
            round(dist / vp * 100) / 100
        )
    return out
