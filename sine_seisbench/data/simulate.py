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
- Noise: windows cut from real records (any miniSEED files, e.g. ``../shared/data/continuous``) or, without
  records, coloured Gaussian noise; noise levels drawn from a log-normal distribution in m/s. Random gaps, dead
  components and Z-only stations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench
import seisbench.data as sbd
from obspy.geodetics import gps2dist_azimuth, kilometer2degrees
from scipy.interpolate import RegularGridInterpolator

#: Hadley & Kanamori (1977) Southern California model: (top depth km, Vp km/s)
SOCAL_LAYERS = ((0.0, 5.5), (5.5, 6.3), (16.0, 6.7), (32.0, 7.8))
VP_VS = 1.73
DENSITY = 2700.0  # kg/m^3
SAMPLING_RATE = 100.0
CHUNK = 1000  # samples per chunk when screening noise records for earthquakes
#: Near-surface velocities (km/s) that bend rays towards vertical at the free surface
SURFACE_VP, SURFACE_VS = 4.0, 2.3

#: Wood-Anderson seismometer (poles/zeros as used by SCSN, static gain 2080)
WOOD_ANDERSON = {
    "poles": [-6.283 + 4.7124j, -6.283 - 4.7124j],
    "zeros": [0j, 0j],
    "gain": 1.0,
    "sensitivity": 2080,
}

#: Overall amplitude factor of the synthetics, calibrated with :func:`calibrate` so that the median of
#: ML(simulated) - M is zero over events of M1-4 at 10-120 km.
AMPLITUDE_CALIBRATION = 1.44
#: Log10 scatter of the site amplification of every trace
SITE_SIGMA_LOG10 = 0.15
#: Anelastic attenuation Q(f) = Q0 f^eta for S and P
Q_S, Q_P, Q_EXPONENT = 350.0, 525.0, 0.45
#: Event-to-event scatter of the stress drop (natural log; median 3 MPa)
STRESS_DROP_SIGMA_LN = 0.4


def _tvel_lines() -> list[str]:
    """The SoCal crust over IASP91's mantle and core, in TauP's .tvel format."""
    iasp = Path(obspy.taup.__file__).parent / "data" / "iasp91.tvel"
    rows = [line.split() for line in iasp.read_text().splitlines()[2:] if line.strip()]
    rows = [[float(v) for v in r] for r in rows]
    moho = SOCAL_LAYERS[-1][0]
    out = []
    for (top, vp), nxt in zip(SOCAL_LAYERS[:-1], SOCAL_LAYERS[1:], strict=True):
        vs = vp / VP_VS
        out += [(top, vp, vs, 2.7), (nxt[0], vp, vs, 2.7)]
    vp = SOCAL_LAYERS[-1][1]
    mantle_top = next(r for r in rows if r[0] >= 35.0)
    out += [(moho, vp, vp / VP_VS, 3.3), (mantle_top[0], vp, vp / VP_VS, 3.3)]
    out += [tuple(r) for r in rows if r[0] >= mantle_top[0]]
    return ["SoCal HK1977 P", "SoCal HK1977 S"] + [
        f"{d:10.3f}{a:10.4f}{b:10.4f}{c:10.4f}" for d, a, b, c in out
    ]


@dataclass
class TravelTimes:
    """First-arrival P and S times and take-off angles, tabulated from TauP and interpolated.

    :param max_distance_km: Largest epicentral distance of the table.
    :param max_depth_km: Largest source depth of the table.
    """

    max_distance_km: float = 200.0
    max_depth_km: float = 30.0
    distance_step_km: float = 2.5
    depth_step_km: float = 2.0
    cache_dir: Path | None = None
    _interp: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        cache = Path(self.cache_dir or Path(seisbench.cache_aux_root) / "sine_seisbench")
        cache.mkdir(parents=True, exist_ok=True)
        dist = np.arange(0.0, self.max_distance_km + 1e-6, self.distance_step_km)
        depth = np.arange(0.0, self.max_depth_km + 1e-6, self.depth_step_km)
        key = f"tt_socal_{self.max_distance_km:g}_{self.max_depth_km:g}_{self.distance_step_km:g}_{self.depth_step_km:g}"
        table_path = cache / f"{key}.npz"
        if table_path.exists():
            table = dict(np.load(table_path))
        else:
            table = self._build(cache, dist, depth)
            np.savez(table_path, **table)
        for name in ("tp", "ts", "takeoff_p", "takeoff_s", "incidence_p", "incidence_s"):
            self._interp[name] = RegularGridInterpolator((depth, dist), table[name])

    def _build(self, cache: Path, dist: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
        from obspy.taup import TauPyModel
        from obspy.taup.taup_create import build_taup_model

        tvel = cache / "socal_hk1977.tvel"
        tvel.write_text("\n".join(_tvel_lines()) + "\n")
        build_taup_model(str(tvel), output_folder=str(cache), verbose=False)
        model = TauPyModel(model=str(cache / "socal_hk1977.npz"))
        table = {
            k: np.zeros((len(depth), len(dist)))
            for k in ("tp", "ts", "takeoff_p", "takeoff_s", "incidence_p", "incidence_s")
        }
        for i, z in enumerate(depth):
            for j, d in enumerate(dist):
                deg = kilometer2degrees(max(d, 0.05))
                for phase, names in (("p", ["p", "P", "Pn"]), ("s", ["s", "S", "Sn"])):
                    arrivals = model.get_travel_times(
                        source_depth_in_km=max(z, 0.01), distance_in_degree=deg, phase_list=names
                    )
                    first = min(arrivals, key=lambda a: a.time)
                    table[f"t{phase}"][i, j] = first.time
                    table[f"takeoff_{phase}"][i, j] = first.takeoff_angle
                    table[f"incidence_{phase}"][i, j] = first.incident_angle
        return table

    def __call__(self, distance_km: np.ndarray, depth_km: float) -> dict[str, np.ndarray]:
        d = np.clip(np.asarray(distance_km, dtype=float), 0, self.max_distance_km)
        z = np.full_like(d, min(max(depth_km, 0.0), self.max_depth_km))
        pts = np.stack([z, d], axis=-1)
        return {k: f(pts) for k, f in self._interp.items()}


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
    """Peak Wood-Anderson amplitude (mm) of ground velocity (m/s) at 100 Hz, mean of the two horizontals."""
    n = velocity.shape[-1]
    f = np.fft.rfftfreq(n, 1 / SAMPLING_RATE)
    s = 2j * np.pi * f
    poles, zeros = WOOD_ANDERSON["poles"], WOOD_ANDERSON["zeros"]
    h = np.ones_like(s) * WOOD_ANDERSON["sensitivity"]
    for z in zeros:
        h = h * (s - z)
    for p in poles:
        h = h / (s - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp_to_wa = np.where(f > 0, h / s, 0)  # velocity -> displacement -> WA
    wa = np.fft.irfft(np.fft.rfft(velocity, axis=-1) * disp_to_wa, n, axis=-1)
    return float(np.mean(np.abs(wa[1:3]).max(axis=-1)) * 1000.0)


def local_magnitude(amplitude_mm: float, hypocentral_km: float) -> float:
    """Southern California ML (Hutton & Boore, 1987)."""
    r = hypocentral_km
    return math.log10(amplitude_mm) + 1.110 * math.log10(r / 100.0) + 0.00189 * (r - 100.0) + 3.0


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


def load_stations(
    source: str | Path | obspy.Inventory | pd.DataFrame, time: float | None = None
) -> pd.DataFrame:
    """Stations as a DataFrame (network, station, latitude, longitude, elevation m) from an Inventory, a StationXML
    file or a CSV (the ``western_us_stations.csv`` layout with ``network_code``/``station_code`` and decimal-year
    ``start_date``/``end_date`` is understood; ``time`` in decimal years selects active stations)."""
    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, obspy.Inventory) or str(source).lower().endswith(".xml"):
        inv = source if isinstance(source, obspy.Inventory) else obspy.read_inventory(str(source))
        frame = pd.DataFrame(
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
            ]
        )
    else:
        frame = pd.read_csv(source, sep=None, engine="python")
    frame = frame.rename(columns={"network_code": "network", "station_code": "station"})
    if time is not None and {"start_date", "end_date"} <= set(frame.columns):
        frame = frame[(frame["start_date"] <= time) & (frame["end_date"] >= time)]
    frame = frame.drop_duplicates(subset=["network", "station"])
    return frame[["network", "station", "latitude", "longitude", "elevation"]].reset_index(
        drop=True
    )


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
    st_elev = stations["elevation"].to_numpy(float)
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
                noise_rms = config.noise_rms_median * math.exp(
                    rng.normal(0, config.noise_rms_sigma_ln)
                )
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
                    round(
                        (origin.timestamp + float(tt_p) - p_sample / SAMPLING_RATE) * SAMPLING_RATE
                    )
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
                    },
                    data.astype(np.float32),
                )
            written += 1
    if written < config.n_events:
        raise ValueError(
            f"Only {written} of {config.n_events} events have at least 3 stations within "
            f"{config.max_distance_km} km; check the station list and the catalogue/region."
        )
    return out


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
