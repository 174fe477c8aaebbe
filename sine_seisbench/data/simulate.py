"""Simulated multi-station earthquakes on real station geometry with real noise (``sine simulate``).

Physics, per event and station:

- P and S first-arrival times and take-off angles from ``obspy.taup`` in a 1-D Southern California model
  (Hadley & Kanamori, 1977, over IASP91 below the Moho; Vp/Vs = 1.73), tabulated once and interpolated; station
  elevation adds a vertical-path correction.
- Ground velocity by the stochastic method (Boore, 2003): windowed Gaussian noise shaped in the frequency domain by
  a Brune omega-squared source spectrum (corner frequency from seismic moment and a log-normal stress drop; the
  P corner 1.5 times the S corner), random focal-mechanism radiation (Aki & Richards), 1/r geometric spreading,
  frequency-dependent anelastic attenuation Q(f), a near-surface kappa filter, and an S coda envelope.
- Three components: P along the ray, SV and SH, projected with the incidence angle and rotated into N and E by
  the event-station azimuth; band-limited like a velocity sensor (2-pole high-pass, 1 Hz short-period or
  0.03 Hz broadband, and a 40 Hz low-pass).
- Amplitudes calibrated so that the local magnitude measured on a Wood-Anderson simulation of the output with the
  Southern California relation of Hutton & Boore (1987) matches the event magnitude (see :func:`local_magnitude`).
- Noise: windows cut from real records (any miniSEED files, e.g. the benchmark data's ``continuous/``) or, without
  records, coloured Gaussian noise; noise levels drawn from a log-normal distribution in m/s. Random gaps, dead
  components and Z-only stations.

Geometry: :func:`simulate_dataset` records catalogue/region events at the nearest stations of one list;
:func:`simulate_geometries` draws every event on its own random subset (3-16 stations, 5-150 km aperture) of one
of many real station lists (:func:`load_station_list` reads every station file of the benchmark data,
:func:`default_station_lists`), with noise from records outside the evaluation data (:func:`default_noise_paths`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench
import seisbench.data as sbd
from obspy.geodetics import gps2dist_azimuth

from ..pipeline.locate import HUTTON_BOORE, WOOD_ANDERSON, ml_from_amplitude, wood_anderson_mm  # noqa: F401 (re-exported)
from ..progress import progress
from ..traveltimes import SOCAL_LAYERS, VP_VS, TravelTimes
from .evaluation import check_not_evaluation
from .layout import DataLayout, as_layout

DENSITY = 2700.0  # kg/m^3
SAMPLING_RATE = 100.0
CHUNK = 1000  # samples per chunk when screening noise records for earthquakes
#: Near-surface velocities (km/s) that bend rays towards vertical at the free surface
SURFACE_VP, SURFACE_VS = 4.0, 2.3


#: Overall amplitude factor of the synthetics, calibrated with :func:`calibrate` so that the median of
#: ML(simulated) - M is zero over events of M1-4 at 10-120 km.
AMPLITUDE_CALIBRATION = 1.44
#: Log10 scatter of the site amplification of every trace
SITE_SIGMA_LOG10 = 0.15
#: Anelastic attenuation Q(f) = Q0 f^eta for S and P
Q_S, Q_P, Q_EXPONENT = 350.0, 525.0, 0.45
#: Event-to-event scatter of the stress drop (natural log; median 3 MPa)
STRESS_DROP_SIGMA_LN = 0.4


def radiation(strike: float, dip: float, rake: float, azimuth: np.ndarray, takeoff: np.ndarray):
    """P, SV and SH radiation coefficients (Aki & Richards 4.89) for a double couple; angles in degrees."""
    s, d, r = np.radians([strike, dip, rake])
    phi = np.radians(azimuth) - s
    i = np.radians(takeoff)
    rp = (
        np.cos(r) * np.sin(d) * np.sin(i) ** 2 * np.sin(2 * phi)
        - np.cos(r) * np.cos(d) * np.sin(2 * i) * np.cos(phi)
        + np.sin(r) * np.sin(2 * d) * (np.cos(i) ** 2 - np.sin(i) ** 2 * np.sin(phi) ** 2)
        + np.sin(r) * np.cos(2 * d) * np.sin(2 * i) * np.sin(phi)
    )
    rsv = (
        np.sin(r) * np.cos(2 * d) * np.cos(2 * i) * np.sin(phi)
        - np.cos(r) * np.cos(d) * np.cos(2 * i) * np.cos(phi)
        + 0.5 * np.cos(r) * np.sin(d) * np.sin(2 * i) * np.sin(2 * phi)
        - 0.5 * np.sin(r) * np.sin(2 * d) * np.sin(2 * i) * (1 + np.sin(phi) ** 2)
    )
    rsh = (
        np.cos(r) * np.cos(d) * np.cos(i) * np.sin(phi)
        + np.cos(r) * np.sin(d) * np.sin(i) * np.cos(2 * phi)
        + np.sin(r) * np.cos(2 * d) * np.cos(i) * np.cos(phi)
        - 0.5 * np.sin(r) * np.sin(2 * d) * np.sin(i) * np.sin(2 * phi)
    )
    return rp, rsv, rsh


def _sensor_response(freqs: np.ndarray, corner: float) -> np.ndarray:
    """2-pole Butterworth high-pass at ``corner`` and 4-pole low-pass at 40 Hz (velocity sensor + anti-alias)."""
    f = np.maximum(freqs, 1e-6)
    hp = (f / corner) ** 2 / np.sqrt(1 + (f / corner) ** 4)
    lp = 1 / np.sqrt(1 + (f / 40.0) ** 8)
    return hp * lp


def _shaped_noise(
    n: int,
    onset: float,
    duration: float,
    coda: float,
    spectrum: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stochastic-method time series: Gaussian noise under an envelope, its spectrum normalised and shaped."""
    t = (np.arange(n) - onset) / SAMPLING_RATE
    tau = np.maximum(t, 0)
    eps, eta = 0.2, 0.05
    b = -eps * math.log(eta) / (1 + eps * (math.log(eps) - 1))
    c = b / (eps * duration)
    a = (math.e / (eps * duration)) ** b
    env = a * tau**b * np.exp(-c * tau)
    if coda > 0:
        env += 0.3 * np.exp(-np.maximum(t - duration, 0) / coda) * (t > duration)
    env[t < 0] = 0
    x = rng.standard_normal(n) * env
    spec = np.fft.rfft(x)
    rms = np.sqrt(np.mean(np.abs(spec[1:]) ** 2)) + 1e-30
    return np.fft.irfft(spec / rms * spectrum, n)


class NoiseBank:
    """Real noise windows from miniSEED files (three components where the station has them)."""

    def __init__(self, paths: list[str | Path] | None = None, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        #: per station: (components ordered Z, N/1, E/2 with unit RMS, indices of quiet chunks)
        self.stations: list[tuple[np.ndarray, np.ndarray]] = []
        order = {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}
        for path in paths or []:
            st = self.read_record(path)
            groups: dict[str, list[obspy.Trace]] = {}
            for tr in st:
                if tr.stats.channel[-1:] in order and tr.stats.npts >= 12000:
                    groups.setdefault(tr.id[:-1], []).append(tr)
            for traces in groups.values():
                traces.sort(key=lambda tr: order[tr.stats.channel[-1]])
                length = min(tr.stats.npts for tr in traces)
                data = np.stack([tr.data[:length].astype(np.float64) for tr in traces])
                quiet = self._quiet_chunks(data[0])
                if quiet.size:
                    rms = np.sqrt(
                        np.mean(
                            np.concatenate(
                                [data[:, i * CHUNK : (i + 1) * CHUNK] for i in quiet], axis=1
                            )
                            ** 2,
                            axis=1,
                        )
                    )
                    self.stations.append((data / np.maximum(rms[:, None], 1e-30), quiet))

    @staticmethod
    def read_record(path: str | Path) -> obspy.Stream:
        """A noise record as the bank uses it: merged (gaps zero), 100 Hz, demeaned, 1 Hz high-passed."""
        st = obspy.read(str(path))
        st.merge(fill_value=0)
        for tr in st:
            if tr.stats.sampling_rate != SAMPLING_RATE:
                tr.resample(SAMPLING_RATE)
        st.detrend("demean")
        st.filter("highpass", freq=1.0)
        return st

    @staticmethod
    def _quiet_chunks(z: np.ndarray) -> np.ndarray:
        """Indices of 10 s chunks free of earthquakes: RMS within 1.5x the median chunk RMS and no peak above
        6x the chunk's RMS (records from active sequences are full of small events)."""
        n = z.size // CHUNK
        chunks = z[: n * CHUNK].reshape(n, CHUNK)
        rms = np.sqrt(np.mean(chunks**2, axis=1))
        peak = np.abs(chunks).max(axis=1)
        med = np.median(rms)
        return np.flatnonzero((rms > 0) & (rms <= 1.5 * med) & (peak <= 6 * rms))

    @property
    def real(self) -> bool:
        return bool(self.stations)

    def window(self, n: int) -> np.ndarray:
        """A (3, n) noise window with unit RMS per component."""
        if not self.stations:
            white = self.rng.standard_normal((3, n))
            spec = np.fft.rfft(white, axis=-1)
            f = np.fft.rfftfreq(n, 1 / SAMPLING_RATE)
            spec *= 1 / np.sqrt(np.maximum(f, 0.5))  # pink-ish
            spec *= _sensor_response(f, 1.0)
            out = np.fft.irfft(spec, n, axis=-1)
            return out / out.std(axis=-1, keepdims=True)
        data, quiet = self.stations[self.rng.integers(len(self.stations))]
        fade = np.sin(np.linspace(0, np.pi / 2, 50)) ** 2
        out = np.zeros((data.shape[0], n + CHUNK))
        pos = 0
        while pos < n:  # quiet 10 s chunks joined with 0.5 s cross-fades
            i = int(self.rng.choice(quiet))
            chunk = data[:, i * CHUNK : (i + 1) * CHUNK].copy()
            if pos:
                chunk[:, :50] *= fade
                out[:, pos - 50 : pos] *= fade[::-1]
                pos -= 50
            out[:, pos : pos + CHUNK] += chunk
            pos += CHUNK
        out = out[:, :n]
        if out.shape[0] < 3:  # single-component station: horizontals from other quiet chunks of it
            extra = np.stack(
                [self.window_single(data[0], quiet, n) for _ in range(3 - out.shape[0])]
            )
            out = np.concatenate([out, extra])
        return out / np.maximum(out.std(axis=-1, keepdims=True), 1e-12)

    def window_single(self, z: np.ndarray, quiet: np.ndarray, n: int) -> np.ndarray:
        picks = self.rng.choice(quiet, size=n // CHUNK + 1)
        return np.concatenate([z[i * CHUNK : (i + 1) * CHUNK] for i in picks])[:n]


def simulate_station(
    rng: np.random.Generator,
    tt: TravelTimes,
    magnitude: float,
    depth_km: float,
    epi_km: float,
    azimuth: float,
    elevation_m: float,
    mechanism: tuple[float, float, float],
    stress_drop_mpa: float,
    samples: int,
    p_sample: float,
    sensor_corner: float = 1.0,
    site_log10: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Noise-free ground velocity (3, samples) in m/s, ZNE, with P at ``p_sample``; returns it and the S sample.

    ``site_log10`` is the site amplification (log10)."""
    t = tt(np.array([epi_km]), depth_km)
    elev_km = elevation_m / 1000.0
    vp_top, vs_top = SOCAL_LAYERS[0][1], SOCAL_LAYERS[0][1] / VP_VS
    tp = float(t["tp"][0]) + elev_km / vp_top
    ts = float(t["ts"][0]) + elev_km / vs_top
    s_sample = p_sample + (ts - tp) * SAMPLING_RATE
    r_km = math.hypot(epi_km, depth_km + elev_km)
    m0 = 10 ** (1.5 * moment_magnitude(magnitude) + 9.1)  # N m
    beta = 3500.0
    fc_s = 0.4906 * beta * (stress_drop_mpa * 1e6 / m0) ** (1 / 3)
    fc_p = 1.5 * fc_s
    rp, _, _ = radiation(*mechanism, np.array([azimuth]), np.array([t["takeoff_p"][0]]))
    _, rsv_s, rsh_s = radiation(*mechanism, np.array([azimuth]), np.array([t["takeoff_s"][0]]))
    # High frequencies show blurred nodal planes: blend the double-couple pattern with its average
    rp, rsv_s, rsh_s = (
        np.sign(r) * np.sqrt(0.5 * r**2 + 0.5 * avg**2)
        for r, avg in ((rp, 0.52), (rsv_s, 0.44), (rsh_s, 0.44))
    )
    n_fft = samples
    f = np.fft.rfftfreq(n_fft, 1 / SAMPLING_RATE)
    response = _sensor_response(f, sensor_corner)
    out = np.zeros((3, samples))
    r_m = r_km * 1000.0
    kappa = np.exp(-np.pi * 0.03 * f)
    for phase, fc, v, travel, rad_parts, onset in (
        ("P", fc_p, beta * VP_VS, tp, (float(rp[0]),), p_sample),
        ("S", fc_s, beta, ts, (float(rsv_s[0]), float(rsh_s[0])), s_sample),
    ):
        q = (Q_S if phase == "S" else Q_P) * np.maximum(f, 0.1) ** Q_EXPONENT
        source = m0 / (1 + (f / fc) ** 2)
        path = np.exp(-np.pi * f * travel / q) / r_m
        scale = AMPLITUDE_CALIBRATION * 10**site_log10 * 0.707 * 2.0 / (4 * np.pi * DENSITY * v**3)
        spectrum = scale * source * path * kappa * (2 * np.pi * f) * response  # velocity, m
        duration = 1.0 / fc + 0.05 * r_km
        coda = 1.0 + 0.04 * r_km if phase == "P" else 3.0 + 0.15 * r_km
        # Boore (2003): the normalised noise spectrum times the Fourier amplitude, / dt for the discrete transform
        base = _shaped_noise(samples, onset, duration, coda, spectrum, rng) * SAMPLING_RATE
        # Ray parameter conserved: the incidence in the slower near-surface layer is steeper than TauP's
        top = math.radians(float(t["incidence_p" if phase == "P" else "incidence_s"][0]))
        surface = SURFACE_VP / vp_top if phase == "P" else SURFACE_VS / vs_top
        incidence = math.asin(min(1.0, math.sin(top) * surface))
        az = math.radians(azimuth)
        if phase == "P":
            vert, radial, trans = (
                rad_parts[0] * math.cos(incidence),
                rad_parts[0] * math.sin(incidence),
                0.0,
            )
            comps = [(base, vert, radial, trans)]
        else:
            base_sh = _shaped_noise(samples, onset, duration, coda, spectrum, rng) * SAMPLING_RATE
            comps = [
                (base, rad_parts[0] * math.sin(incidence), rad_parts[0] * math.cos(incidence), 0.0),
                (base_sh, 0.0, 0.0, rad_parts[1]),
            ]
        for series, vert, radial, trans in comps:
            out[0] += vert * series
            out[1] += (radial * math.cos(az) - trans * math.sin(az)) * series
            out[2] += (radial * math.sin(az) + trans * math.cos(az)) * series
    return out, s_sample


def moment_magnitude(ml: float) -> float:
    """Mw of a Southern California ML: Mw = 0.754 ML + 0.88 (Ross et al., 2016) for small events, Mw = ML from
    M 3.58 up (where the two relations cross)."""
    return 0.754 * ml + 0.88 if ml < 3.58 else ml


def wood_anderson_amplitude_mm(velocity: np.ndarray) -> float:
    """Peak Wood-Anderson amplitude (mm) of ground velocity (m/s) at 100 Hz, mean of the two horizontals
    (:func:`sine_seisbench.pipeline.locate.wood_anderson_mm`, the event step's measurement)."""
    return wood_anderson_mm(velocity, SAMPLING_RATE)


def local_magnitude(amplitude_mm: float, hypocentral_km: float) -> float:
    """Southern California ML (Hutton & Boore, 1987): :func:`sine_seisbench.pipeline.locate.ml_from_amplitude`."""
    return ml_from_amplitude(amplitude_mm, hypocentral_km, HUTTON_BOORE)


@dataclass
class SimulationConfig:
    """Settings of :func:`simulate_dataset`."""

    n_events: int = 200
    max_stations: int = 16
    max_distance_km: float = 120.0
    samples: int = 6000
    seed: int = 0
    noise_rms_median: float = 3e-7  # m/s
    noise_rms_sigma_ln: float = 1.0
    z_only_fraction: float = 0.1
    dead_component_fraction: float = 0.03
    gap_fraction: float = 0.02
    broadband_fraction: float = 0.5
    split_fractions: tuple[float, float] = (0.8, 0.1)
    #: Fraction of events drawn over ``region`` when both a catalogue and a region are given
    region_fraction: float = 0.5
    p_sample_range: tuple[float, float] = (500.0, 2500.0)


STATION_COLUMNS = ["network", "station", "latitude", "longitude", "elevation"]


def _inventory_frame(inv: obspy.Inventory) -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                network=n.code,
                station=s.code,
                latitude=s.latitude,
                longitude=s.longitude,
                elevation=s.elevation,
            )
            for n in inv
            for s in n
        ],
        columns=STATION_COLUMNS,
    )


def load_station_list(path: str | Path | obspy.Inventory | pd.DataFrame) -> pd.DataFrame:
    """Stations of a station list, one row per station: anything :func:`sine_seisbench.stations.read_stations`
    reads (StationXML or a folder of it, CSV/TSV/whitespace tables with the usual column spellings, REAL's
    ``lon lat net sta chan elev_km`` list, SeisMonitor's ``stations.json``; every station file of the
    benchmark data), an Inventory or a DataFrame.

    :return: Columns network, station, latitude, longitude, elevation (m), plus start_date and end_date (decimal
             years) where the list has them (``western_us_stations.csv``); duplicates of one network.station are
             merged (the earliest start, the latest end).
    :raises ValueError: For a file that cannot be read or lacks a column (a
                        :class:`~sine_seisbench.stations.StationFileError` naming the file and the column).
    """
    from ..stations import read_stations

    if isinstance(path, obspy.Inventory):
        frame = _inventory_frame(path)
    else:
        stations = read_stations(
            path
        )  # every layout; StationFileError (a ValueError) names the file
        frame = _inventory_frame(stations) if isinstance(stations, obspy.Inventory) else stations
    frame["network"] = frame["network"].astype(str)
    frame["station"] = frame["station"].astype(str)
    frame["elevation"] = pd.to_numeric(frame["elevation"], errors="coerce").fillna(0.0)
    frame = frame.dropna(subset=["latitude", "longitude"])
    columns = list(STATION_COLUMNS)
    if {"start_date", "end_date"} <= set(frame.columns):
        columns += ["start_date", "end_date"]
        agg = {c: "first" for c in ("latitude", "longitude", "elevation")}
        agg.update(start_date="min", end_date="max")
        frame = frame.groupby(["network", "station"], as_index=False, sort=False).agg(agg)
    else:
        frame = frame.drop_duplicates(subset=["network", "station"])
    return frame[columns].reset_index(drop=True)


def load_stations(
    source: str | Path | obspy.Inventory | pd.DataFrame, time: float | None = None
) -> pd.DataFrame:
    """Stations as a DataFrame (network, station, latitude, longitude, elevation m) from any station list that
    :func:`load_station_list` reads (an Inventory, StationXML, the ``western_us_stations.csv`` layout, ...);
    ``time`` in decimal years selects the stations active then, where the list has start and end dates."""
    from ..stations import read_stations

    if isinstance(source, obspy.Inventory):
        return load_station_list(source)[STATION_COLUMNS]
    frame = read_stations(source)
    if isinstance(frame, obspy.Inventory):
        return load_station_list(frame)[STATION_COLUMNS]
    if time is not None and {"start_date", "end_date"} <= set(frame.columns):
        frame = frame[(frame["start_date"] <= time) & (frame["end_date"] >= time)]
    return load_station_list(frame)[STATION_COLUMNS]


def load_catalog(path: str | Path) -> pd.DataFrame:
    """A ComCat-style CSV (time, latitude, longitude, depth, mag) as time, latitude, longitude, depth, magnitude."""
    frame = pd.read_csv(path, sep=None, engine="python")
    frame = frame.rename(columns={"mag": "magnitude"})
    return (
        frame[["time", "latitude", "longitude", "depth", "magnitude"]]
        .dropna()
        .reset_index(drop=True)
    )


def simulate_dataset(
    out: str | Path,
    stations: pd.DataFrame,
    catalog: pd.DataFrame | None = None,
    region: tuple[float, float, float, float] | None = None,
    noise_paths: list[str | Path] | None = None,
    config: SimulationConfig | None = None,
    tt: TravelTimes | None = None,
) -> Path:
    """Writes a SeisBench dataset of simulated events to ``out`` (SCEDC-like columns, ``split``, ``source_id``).

    Hypocentres and magnitudes are sampled from ``catalog`` (with replacement) and/or drawn over ``region``
    (lat0, lat1, lon0, lon1) with depths uniform in 2-20 km and Gutenberg-Richter magnitudes (b = 1, M1-4.5);
    with both, ``config.region_fraction`` of the events come from the region.
    Each event is recorded at its ``max_stations`` nearest stations within ``max_distance_km``.
    """
    config = config or SimulationConfig()
    rng = np.random.default_rng(config.seed)
    tt = tt or TravelTimes(max_distance_km=max(200.0, config.max_distance_km))
    noise = NoiseBank(noise_paths, seed=config.seed)
    if not noise.real:
        seisbench.logger.warning(
            "sine simulate: no noise records given; using coloured Gaussian noise."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    st_lat = stations["latitude"].to_numpy(float)
    st_lon = stations["longitude"].to_numpy(float)
    base_time = obspy.UTCDateTime(2019, 7, 6)

    with sbd.WaveformDataWriter(out / "metadata.csv", out / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": SAMPLING_RATE,
            "measurement": "velocity",
            "unit": "m/s",
            "instrument_response": "restituted to ground velocity (band-limited)",
        }
        written = 0
        attempts = 0
        bar = progress(total=config.n_events, desc="simulate", unit="event")
        while written < config.n_events and attempts < 20 * config.n_events:
            attempts += 1
            from_region = region is not None and (
                catalog is None or rng.uniform() < config.region_fraction
            )
            if catalog is None and region is None:
                raise ValueError(
                    "Give a catalogue or a region (lat0, lat1, lon0, lon1) to draw events from."
                )
            if not from_region:
                row = catalog.iloc[rng.integers(len(catalog))]
                lat, lon = float(row["latitude"]), float(row["longitude"])
                depth, mag = float(np.clip(row["depth"], 0.5, 29.0)), float(row["magnitude"])
                origin = (
                    obspy.UTCDateTime(pd.Timestamp(row["time"]).timestamp())
                    if "time" in row
                    else base_time
                )
            else:
                lat = float(rng.uniform(region[0], region[1]))
                lon = float(rng.uniform(region[2], region[3]))
                depth = float(rng.uniform(2, 20))
                mag = float(1.0 - np.log10(1 - rng.uniform() * (1 - 10**-3.5)))
                origin = base_time + float(rng.uniform(0, 86400 * 30))
            dists = np.array(
                [
                    gps2dist_azimuth(lat, lon, a, b)[0] / 1000
                    for a, b in zip(st_lat, st_lon, strict=True)
                ]
            )
            near = np.argsort(dists)[: config.max_stations]
            near = near[dists[near] <= config.max_distance_km]
            if len(near) < 3:
                continue
            mechanism = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
            stress = float(np.exp(rng.normal(math.log(3.0), STRESS_DROP_SIGMA_LN)))
            event_id = f"sim{config.seed:04d}_{written:06d}"
            split = (
                "train"
                if rng.uniform() < config.split_fractions[0]
                else "dev"
                if rng.uniform() < config.split_fractions[1] / (1 - config.split_fractions[0])
                else "test"
            )
            _write_event(
                writer,
                rng,
                tt,
                noise,
                config,
                stations,
                near,
                dists,
                dict(
                    event_id=event_id,
                    origin=origin,
                    latitude=lat,
                    longitude=lon,
                    depth=depth,
                    magnitude=mag,
                    mechanism=mechanism,
                    stress=stress,
                    split=split,
                ),
            )
            written += 1
            bar.update(1)
        bar.close()
    if written < config.n_events:
        raise ValueError(
            f"Only {written} of {config.n_events} events have at least 3 stations within "
            f"{config.max_distance_km} km; check the station list and the catalogue/region."
        )
    return out


def _write_event(
    writer: sbd.WaveformDataWriter,
    rng: np.random.Generator,
    tt: TravelTimes,
    noise: NoiseBank,
    config: SimulationConfig,
    stations: pd.DataFrame,
    near: np.ndarray,
    dists: np.ndarray,
    event: dict,
    extra: dict | None = None,
) -> None:
    """Simulates one event at the stations ``near`` (indices into ``stations``; ``dists`` epicentral km of all
    stations) and writes one trace per station. ``event`` holds event_id, origin, latitude, longitude, depth,
    magnitude, mechanism, stress and split; ``extra`` columns are added to every trace's metadata."""
    event_id, origin, split = event["event_id"], event["origin"], event["split"]
    lat, lon, depth, mag = event["latitude"], event["longitude"], event["depth"], event["magnitude"]
    mechanism, stress = event["mechanism"], event["stress"]
    st_lat = stations["latitude"].to_numpy(float)
    st_lon = stations["longitude"].to_numpy(float)
    st_elev = stations["elevation"].to_numpy(float)
    for s in near:
        _, az, _ = gps2dist_azimuth(lat, lon, st_lat[s], st_lon[s])
        p_sample = float(rng.uniform(*config.p_sample_range))
        elev_km = st_elev[s] / 1000.0
        tt_p = tt(np.array([dists[s]]), depth)["tp"][0] + elev_km / SOCAL_LAYERS[0][1]
        broadband = rng.uniform() < config.broadband_fraction
        signal, s_sample = simulate_station(
            rng,
            tt,
            mag,
            depth,
            float(dists[s]),
            az,
            st_elev[s],
            mechanism,
            stress,
            config.samples,
            p_sample,
            sensor_corner=0.033 if broadband else 1.0,
            site_log10=float(rng.normal(0, SITE_SIGMA_LOG10)),
        )
        noise_rms = config.noise_rms_median * math.exp(rng.normal(0, config.noise_rms_sigma_ln))
        data = signal + noise.window(config.samples) * noise_rms
        components = "ZNE"
        if rng.uniform() < config.z_only_fraction:
            data[1:] = 0
            components = "Z"
        elif rng.uniform() < config.dead_component_fraction:
            data[rng.integers(1, 3)] = 0
        if rng.uniform() < config.gap_fraction:
            g0 = int(rng.integers(0, config.samples - 500))
            data[:, g0 : g0 + int(rng.integers(100, 500))] = 0
        snr = 20 * math.log10(max(np.abs(signal[0]).max(), 1e-30) / max(noise_rms, 1e-30))
        start = obspy.UTCDateTime(
            round((origin.timestamp + float(tt_p) - p_sample / SAMPLING_RATE) * SAMPLING_RATE)
            / SAMPLING_RATE
        )  # on the common sample grid, as records of one network are
        writer.add_trace(
            {
                "source_id": event_id,
                "source_origin_time": str(origin),
                "source_latitude_deg": lat,
                "source_longitude_deg": lon,
                "source_depth_km": depth,
                "source_magnitude": mag,
                "source_magnitude_type": "ml",
                "source_strike": mechanism[0],
                "source_dip": mechanism[1],
                "source_rake": mechanism[2],
                "source_stress_drop_mpa": stress,
                "station_network_code": stations["network"].iloc[s],
                "station_code": stations["station"].iloc[s],
                "station_location_code": "",
                "station_latitude_deg": st_lat[s],
                "station_longitude_deg": st_lon[s],
                "station_elevation_m": st_elev[s],
                "path_ep_distance_km": float(dists[s]),
                "path_azimuth_deg": az,
                "trace_channel": "HH" if broadband else "EH",
                "trace_component_order": "ZNE",
                "trace_available_components": components,
                "trace_sampling_rate_hz": SAMPLING_RATE,
                "trace_start_time": str(start),
                "trace_p_arrival_sample": p_sample,
                "trace_s_arrival_sample": s_sample,
                "trace_snr_db": snr,
                "trace_noise_rms_mps": noise_rms,
                "trace_calibrated": True,
                "split": split,
                **(extra or {}),
            },
            data.astype(np.float32),
        )


def calibrate(
    n: int = 200,
    seed: int = 0,
    tt: TravelTimes | None = None,
    sensor_corner: float = 1.0,
    with_magnitudes: bool = False,
) -> np.ndarray:
    """ML(simulated) - M for ``n`` random event-station pairs (M1-4, 10-120 km); used to set
    :data:`AMPLITUDE_CALIBRATION`, by the tests and by the validation report. With ``with_magnitudes`` the rows
    are (residual, M)."""
    rng = np.random.default_rng(seed)
    tt = tt or TravelTimes()
    residuals = []
    for _ in range(n):
        mag = rng.uniform(1, 4)
        depth = rng.uniform(2, 15)
        epi = rng.uniform(10, 120)
        mech = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
        stress = float(np.exp(rng.normal(math.log(3.0), STRESS_DROP_SIGMA_LN)))
        signal, _ = simulate_station(
            rng,
            tt,
            mag,
            depth,
            epi,
            rng.uniform(0, 360),
            0.0,
            mech,
            stress,
            8000,
            1000.0,
            sensor_corner=sensor_corner,
            site_log10=float(rng.normal(0, SITE_SIGMA_LOG10)),
        )
        amp = wood_anderson_amplitude_mm(signal)
        residual = local_magnitude(amp, math.hypot(epi, depth)) - mag
        residuals.append((residual, mag) if with_magnitudes else residual)
    return np.array(residuals)


def _haversine_km(lat0: float, lon0: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle distances (km, sphere of radius 6371 km) from one point to many."""
    p0, p1 = math.radians(lat0), np.radians(np.asarray(lat, dtype=float))
    dlat = p1 - p0
    dlon = np.radians(np.asarray(lon, dtype=float) - lon0)
    a = np.sin(dlat / 2) ** 2 + math.cos(p0) * np.cos(p1) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def aperture_km(latitude: np.ndarray, longitude: np.ndarray) -> float:
    """Largest station-to-station distance (km) of a group."""
    lat = np.asarray(latitude, dtype=float)
    lon = np.asarray(longitude, dtype=float)
    if lat.size < 2:
        return 0.0
    return float(max(_haversine_km(a, b, lat, lon).max() for a, b in zip(lat, lon, strict=True)))


def default_station_lists(data_dir: DataLayout | str | Path) -> dict[str, Path]:
    """Every real station list of the benchmark data (name → path), for :func:`simulate_geometries`; lists
    that are absent are left out. The Iceland station list is geometry only (its waveforms are evaluation
    data).

    :param data_dir: The data's :class:`~sine_seisbench.data.layout.DataLayout`, or its root folder.
    """
    layout = as_layout(data_dir)
    lists = {
        "western_us": layout.western_us_stations,
        "ridgecrest": layout.ridgecrest_stations,
        "central_italy": layout.central_italy_stations,
        "iceland_dyke": layout.iceland / "stations.csv",
        "hengill": layout.hengill / "stations.csv",
        "colombia": layout.colombia / "stations" / "stations.json",
        "hawaii_gmprocess": layout.gmprocess / "hv70907436",
    }
    return {k: v for k, v in lists.items() if v.exists()}


def default_noise_paths(data_dir: DataLayout | str | Path) -> list[str]:
    """Noise records for :class:`NoiseBank` outside every evaluation record: the Colombia HH stations from
    21:00 to 23:00 (one glob per station, so that the three components stay together; the 19-21 h files hold
    the Mw 6.0 mainshock) and the 20 Hengill stations (5 min, 200 Hz, resampled by the bank). Each file is
    checked with :func:`sine_seisbench.data.evaluation.check_not_evaluation`.

    :param data_dir: The data's :class:`~sine_seisbench.data.layout.DataLayout`, or its root folder.
    """
    layout = as_layout(data_dir)
    out: list[str] = []
    colombia = layout.colombia / "waveforms"
    for folder in sorted(colombia.glob("*")) if colombia.is_dir() else []:
        files = sorted(folder.glob("CM.*.HH?__20191224T2[01]*__20191224T2[23]*.mseed"))
        for f in files:
            check_not_evaluation(f)
        if files:
            head, *tail = files[0].name.split("__")
            out.append(str(folder / "__".join([head[:-1] + "?", *tail])))
    hengill = layout.hengill / "waveforms"
    if hengill.is_dir():
        stations = sorted({f.name.split("__")[0][:-1] for f in hengill.glob("*.mseed")})
        for sta in stations:
            for f in hengill.glob(f"{sta}?__*.mseed"):
                check_not_evaluation(f)
            out.append(str(hengill / f"{sta}?__*.mseed"))
    return out


@dataclass
class GeometryConfig:
    """How :func:`simulate_geometries` draws station groups and events.

    :param stations: Inclusive range of the number of stations per event.
    :param aperture_km: Range of the drawn aperture (log-uniform); a group is drawn within a circle of that
                        diameter and kept when its real aperture (largest station distance) lies in the range.
    :param near_fraction: Fraction of epicentres within half the aperture (+ ``margin_km``) of the group's
                          centre; the others lie up to one aperture (+ 2 ``margin_km``) away.
    :param depth_median_km: Median of the log-normal depth distribution (clipped to 0.3-29 km).
    :param max_magnitude: Largest magnitude (Gutenberg-Richter, b = 1, from a smallest magnitude that grows
                          with the median station distance, so that most events are seen at several stations).
    """

    stations: tuple[int, int] = (3, 16)
    aperture_km: tuple[float, float] = (5.0, 150.0)
    near_fraction: float = 0.8
    margin_km: float = 10.0
    depth_median_km: float = 8.0
    depth_sigma_ln: float = 0.6
    max_magnitude: float = 4.5


def _draw_group(
    rng: np.random.Generator,
    frame: pd.DataFrame,
    lat: np.ndarray,
    lon: np.ndarray,
    geometry: GeometryConfig,
) -> np.ndarray | None:
    """Indices of a random station group of ``frame`` (None when this draw fails)."""
    lo, hi = geometry.aperture_km
    target = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    centre = int(rng.integers(len(frame)))
    active = np.ones(len(frame), dtype=bool)
    if "start_date" in frame.columns:  # stations that operated together
        start = float(frame["start_date"].iloc[centre])
        end = min(float(frame["end_date"].iloc[centre]), 2026.0)
        t = float(rng.uniform(start, max(start, end)))
        active = (frame["start_date"].to_numpy(float) <= t) & (
            frame["end_date"].to_numpy(float) >= t
        )
    dist = _haversine_km(lat[centre], lon[centre], lat, lon)
    candidates = np.flatnonzero(active & (dist <= target / 2))
    candidates = candidates[candidates != centre]
    n = int(rng.integers(geometry.stations[0], geometry.stations[1] + 1))
    if len(candidates) + 1 < geometry.stations[0]:
        return None
    chosen = rng.choice(candidates, size=min(n - 1, len(candidates)), replace=False)
    group = np.concatenate([[centre], chosen]).astype(int)
    ap = aperture_km(lat[group], lon[group])
    if not (lo <= ap <= hi):
        return None
    return group


def simulate_geometries(
    out: str | Path,
    station_lists: dict[str, str | Path | pd.DataFrame] | list[str | Path],
    n_events: int,
    noise_paths: list[str | Path] | None = None,
    config: SimulationConfig | None = None,
    geometry: GeometryConfig | None = None,
    list_weights: dict[str, float] | None = None,
    tt: TravelTimes | None = None,
) -> Path:
    """Writes a SeisBench dataset of simulated events, each on its own random subset of a real station list.

    Per event: a station list is chosen (weights ``list_weights``, by default proportional to log(1 + number
    of stations), so that the large western-US list does not swamp the small dense networks); an aperture is
    drawn log-uniformly in ``geometry.aperture_km`` and a group of ``geometry.stations`` stations (as many as
    the list offers, at least the minimum) around a random station within a circle of that diameter (for lists
    with start/end dates, stations that operated at a common time); groups whose real aperture falls outside
    the range are drawn again. The epicentre lies inside or near the group (see :class:`GeometryConfig`), all
    stations within the travel-time table; depth log-normal; magnitude Gutenberg-Richter from a smallest
    magnitude ``1 + 1.5 log10(d / 30 km)`` (clipped to 0.3-2.5; d the median epicentral distance) to
    ``geometry.max_magnitude``. Each event is then simulated exactly as :func:`simulate_dataset` does (same
    physics, noise from ``noise_paths``, gaps, dead components, Z-only stations, split by
    ``config.split_fractions``).

    Extra metadata columns: ``trace_label_source`` = ``"simulated"``, ``source_geometry`` (the list's name)
    and ``source_aperture_km`` (the group's largest station distance).

    :param station_lists: Name → path (anything :func:`load_station_list` reads) or DataFrame; a list of
                          paths is named by file (or folder) name.
    :param n_events: Number of events; ``config.n_events`` is ignored.
    :raises ValueError: Without any usable list, or when groups cannot be drawn.
    """
    config = config or SimulationConfig()
    geometry = geometry or GeometryConfig()
    rng = np.random.default_rng(config.seed)
    tt = tt or TravelTimes(max_distance_km=200.0)
    if not isinstance(station_lists, dict):
        station_lists = {Path(p).stem or Path(p).name: p for p in station_lists}
    frames = {}
    for name, source in station_lists.items():
        frame = load_station_list(source)
        if len(frame) >= geometry.stations[0]:
            frames[name] = frame
        else:
            seisbench.logger.warning(
                f"simulate_geometries: station list {name} has only {len(frame)} stations; left out."
            )
    if not frames:
        raise ValueError("No station list with enough stations to draw groups from.")
    names = list(frames)
    weights = np.array(
        [
            math.log1p(len(frames[n])) if list_weights is None else list_weights.get(n, 0.0)
            for n in names
        ],
        dtype=float,
    )
    if not weights.sum() > 0:
        raise ValueError(f"list_weights {list_weights} give no weight to any of {names}.")
    weights = weights / weights.sum()
    coords = {
        n: (f["latitude"].to_numpy(float), f["longitude"].to_numpy(float))
        for n, f in frames.items()
    }
    noise = NoiseBank(noise_paths, seed=config.seed)
    if not noise.real:
        seisbench.logger.warning(
            "simulate_geometries: no noise records given; using coloured Gaussian noise."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_time = obspy.UTCDateTime(2020, 1, 1)
    max_dist = tt.max_distance_km - 1.0

    with sbd.WaveformDataWriter(out / "metadata.csv", out / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": SAMPLING_RATE,
            "measurement": "velocity",
            "unit": "m/s",
            "instrument_response": "restituted to ground velocity (band-limited)",
        }
        written = attempts = 0
        bar = progress(total=n_events, desc="simulate geometries", unit="event")
        while written < n_events:
            attempts += 1
            if attempts > 200 * n_events + 1000:
                raise ValueError(
                    f"Could draw only {written} of {n_events} station groups with "
                    f"{geometry.stations} stations and apertures {geometry.aperture_km} km."
                )
            name = names[int(rng.choice(len(names), p=weights))]
            frame = frames[name]
            lat_all, lon_all = coords[name]
            group = _draw_group(rng, frame, lat_all, lon_all, geometry)
            if group is None:
                continue
            glat, glon = lat_all[group], lon_all[group]
            ap = aperture_km(glat, glon)
            lat0, lon0 = float(np.mean(glat)), float(np.mean(glon))
            for _ in range(20):
                near = rng.uniform() < geometry.near_fraction
                radius = (
                    0.5 * ap + geometry.margin_km if near else ap + 2 * geometry.margin_km
                ) * math.sqrt(rng.uniform())
                azimuth = rng.uniform(0, 2 * math.pi)
                lat = lat0 + radius * math.cos(azimuth) / 111.195
                lon = lon0 + radius * math.sin(azimuth) / (
                    111.195 * max(math.cos(math.radians(lat0)), 0.05)
                )
                dists = _haversine_km(lat, lon, glat, glon)
                if dists.max() <= max_dist:
                    break
            else:
                continue
            depth = float(
                np.clip(
                    geometry.depth_median_km * math.exp(rng.normal(0, geometry.depth_sigma_ln)),
                    0.3,
                    min(29.0, tt.max_depth_km - 0.5),
                )
            )
            m_lo = float(
                np.clip(1.0 + 1.5 * math.log10(max(np.median(dists), 1.0) / 30.0), 0.3, 2.5)
            )
            span = geometry.max_magnitude - m_lo
            mag = float(m_lo - np.log10(1 - rng.uniform() * (1 - 10**-span)))
            origin = base_time + float(rng.uniform(0, 86400 * 365))
            mechanism = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
            stress = float(np.exp(rng.normal(math.log(3.0), STRESS_DROP_SIGMA_LN)))
            split = (
                "train"
                if rng.uniform() < config.split_fractions[0]
                else "dev"
                if rng.uniform() < config.split_fractions[1] / (1 - config.split_fractions[0])
                else "test"
            )
            sub = frame.iloc[group].reset_index(drop=True)
            _write_event(
                writer,
                rng,
                tt,
                noise,
                config,
                sub,
                np.arange(len(sub)),
                dists,
                dict(
                    event_id=f"geo{config.seed:04d}_{written:06d}",
                    origin=origin,
                    latitude=lat,
                    longitude=lon,
                    depth=depth,
                    magnitude=mag,
                    mechanism=mechanism,
                    stress=stress,
                    split=split,
                ),
                extra={
                    "trace_label_source": "simulated",
                    "source_geometry": name,
                    "source_aperture_km": ap,
                },
            )
            written += 1
            bar.update(1)
        bar.close()
    return out
