"""A virtual network for tests: ObsPy's bundled real BW.RJOB record (30 s, an earthquake) on N stations."""

from __future__ import annotations

import numpy as np
import obspy
import pandas as pd


def rjob_network(
    n_stations: int,
    samples: int,
    seed: int,
    max_shift: int,
    lat_span: float = 0.1,
    lon_span: float = 0.1,
) -> tuple[obspy.Stream, pd.DataFrame]:
    """``n_stations`` stations ``XX.S00..`` of the record tiled to ``samples`` samples at 100 Hz, each shifted
    by up to ``max_shift`` samples, scaled and with seeded noise, scattered over ``lat_span x lon_span`` degrees
    from (47.5, 12.5); and their station table."""
    rng = np.random.default_rng(seed)
    base = obspy.read()
    base.detrend("demean")
    reps = (samples + max_shift) // base[0].stats.npts + 1
    stream = obspy.Stream()
    rows = []
    for i in range(n_stations):
        shift = int(rng.integers(0, max_shift))
        for tr in base:
            data = np.tile(tr.data.astype(np.float64), reps)[shift : shift + samples]
            data = data * 10 ** rng.uniform(-0.5, 0.5) + rng.normal(0, 5.0, data.size)
            header = dict(
                network="XX",
                station=f"S{i:02d}",
                location="",
                channel="HH" + tr.stats.channel[-1],
                sampling_rate=100.0,
                starttime=tr.stats.starttime,
            )
            stream += obspy.Trace(data.astype(np.float32), header)
        rows.append(
            dict(
                network="XX",
                station=f"S{i:02d}",
                location="",
                latitude=47.5 + lat_span * rng.uniform(),
                longitude=12.5 + lon_span * rng.uniform(),
                elevation=500.0,
            )
        )
    return stream, pd.DataFrame(rows)
