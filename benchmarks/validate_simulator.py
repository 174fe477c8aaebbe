"""Validate the earthquake simulator (``sine_seisbench.data.simulate``) against real records (a benchmark, not a test).

Compares, on real data read at run time from ``../shared/data`` (never copied into the project):

1. S-P times: manual picks of the 50 STEAD traces at TA.109C (``datasets/stead50``) vs the simulator's
   :class:`TravelTimes` (plus its station-elevation correction) for the same distance and depth.
2. Amplitudes: peak vertical ground velocity of Ridgecrest aftershocks (ComCat, M >= 1.5) cut from 1 h of EHZ
   records at CI.WNM/WRV2/WVP2 (m/s) vs :func:`simulate_station` for the same magnitude, distance, depth and
   station elevation (random mechanisms, stress drops and site terms; several realisations), and the
   simulator's own ML self-consistency (:func:`calibrate`).
3. Average amplitude spectra and smoothed envelopes of the same real and simulated vertical traces in
   distance/magnitude bins; P/S and horizontal/vertical peak ratios on the three-component STEAD traces.
   The surface incidence angles the simulator projects P and S with are measured on its output; a what-if
   (diagnostic only) re-runs the comparisons with a near-surface layer slower than ``SURFACE_VP``/``SURFACE_VS``.
4. SNR distributions: STEAD's ``trace_snr_db`` vs a small :func:`simulate_dataset` run (Ridgecrest catalogue,
   CI stations, real noise; written to a temporary folder), with the same measured definitions applied to both.
5. Checks of the noise bank (earthquakes left in :meth:`NoiseBank.window` output, component order of the
   windows) and of :func:`simulate_dataset` (catalogue-time parsing, metadata times).

Statements about the simulator in the report are measured in the run or read from the module, not hard-coded.

Writes PNG figures to ``OUT/figures`` and the report ``OUT/simulator_validation.md``. Light: about two thousand
short simulated traces (each a few FFTs), one process, well under a minute on a laptop CPU once the travel-time
table is cached (building it the first time takes ~25 s).

Usage::

    .venv/bin/python benchmarks/validate_simulator.py --out benchmarks/results --tt-cache /tmp/ttcache
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import math
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import obspy  # noqa: E402
import pandas as pd  # noqa: E402
import seisbench.data as sbd  # noqa: E402
from obspy.geodetics import gps2dist_azimuth  # noqa: E402
from scipy.signal import butter, hilbert, sosfiltfilt  # noqa: E402

from sine_seisbench.data import simulate as simmod  # noqa: E402

FS = simmod.SAMPLING_RATE
RIDGECREST = "continuous/ridgecrest_2019-07-06T08"
RC_STATIONS = ("WNM", "WRV2", "WVP2")
#: Window cut around each Ridgecrest event at each station: seconds before and after the predicted P
PRE_S, POST_S = 20.0, 40.0
#: Real/simulated noise window (s relative to P) and end of the signal window after S (s)
NOISE_WIN = (-12.0, -2.0)
SIGNAL_AFTER_S = 15.0
DPI = 120


@dataclass
class Report:
    """Numbers and text collected by the sections, written to Markdown at the end."""

    sections: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Append a block of Markdown."""
        self.sections.append(text.strip() + "\n")


# --------------------------------------------------------------------------------------------- helpers


def highpass(x: np.ndarray, freq: float) -> np.ndarray:
    """Demeaned, zero-phase 2-pole Butterworth high-pass along the last axis."""
    sos = butter(2, freq, "highpass", fs=FS, output="sos")
    x = np.asarray(x, dtype=float)
    return sosfiltfilt(sos, x - x.mean(axis=-1, keepdims=True), axis=-1)


def utc(text: str) -> obspy.UTCDateTime:
    """A catalogue time (ISO or ``YYYY-MM-DD hh:mm:ss+00:00``) as UTCDateTime."""
    return obspy.UTCDateTime(pd.Timestamp(text).tz_convert("UTC").tz_localize(None).isoformat())


def mad(x: np.ndarray) -> float:
    """Median absolute deviation (unscaled)."""
    x = np.asarray(x, dtype=float)
    return float(np.median(np.abs(x - np.median(x))))


def random_source(rng: np.random.Generator) -> tuple[tuple[float, float, float], float, float]:
    """A random mechanism, stress drop (MPa) and site term (log10), drawn as ``simulate_dataset`` draws them."""
    mech = (rng.uniform(0, 360), rng.uniform(20, 90), rng.uniform(-180, 180))
    stress = float(np.exp(rng.normal(math.log(3.0), simmod.STRESS_DROP_SIGMA_LN)))
    site = float(rng.normal(0, simmod.SITE_SIGMA_LOG10))
    return mech, stress, site


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Moving average of ``n`` samples along the last axis (same length)."""
    kernel = np.ones(n) / n
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), -1, x)


def log_smooth_spectrum(f: np.ndarray, a: np.ndarray, fraction: float = 1 / 6) -> np.ndarray:
    """Geometric-mean smoothing of an amplitude spectrum over ``fraction`` of an octave."""
    out = np.empty_like(a)
    for i, fi in enumerate(f):
        if fi <= 0:
            out[i] = a[i]
            continue
        sel = (f >= fi * 2 ** (-fraction / 2)) & (f <= fi * 2 ** (fraction / 2))
        out[i] = np.exp(np.mean(np.log(np.maximum(a[sel], 1e-30))))
    return out


def stead_snr_values(text: str) -> list[float]:
    """STEAD's ``trace_snr_db`` string (e.g. ``"[np.float64(56.8), ...]"``) as floats (E, N, Z order)."""
    vals = re.findall(r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?", text.replace("np.float64", ""))
    return [float(v) for v in vals]


def snr_peak_over_rms(z: np.ndarray, p: int, s: int) -> float:
    """The simulator's definition measured on a record: 20 log10(peak |Z| from P to S+15 s / RMS before P)."""
    noise = z[max(0, p - 600) : max(p - 20, 1)]
    sig = z[p : min(len(z), int(s + SIGNAL_AFTER_S * FS))]
    return 20 * math.log10(np.abs(sig).max() / max(noise.std(), 1e-30))


def snr_eqt(z: np.ndarray, p: int, window: int = 200) -> float:
    """EQTransformer's estimate: 10 log10((95th percentile 2 s after P / same 2 s before P)^2)."""
    w = min(window, p)
    nw, sw = z[p - w : p], z[p : p + w]
    return 10 * math.log10((np.percentile(sw, 95) / np.percentile(nw, 95)) ** 2)


# ------------------------------------------------------------------------------------- 1. S-P times


def section_sp(
    tt: simmod.TravelTimes, stead: sbd.WaveformDataset, rep: Report, figdir: Path
) -> None:
    """S-P and P travel times of the STEAD manual picks vs the simulator's travel-time table."""
    m = stead.metadata
    dist = m["path_ep_distance_km"].to_numpy(float)
    depth = m["source_depth_km"].to_numpy(float)
    elev_km = m["station_elevation_m"].to_numpy(float) / 1000.0
    vp, vs = simmod.SOCAL_LAYERS[0][1], simmod.SOCAL_LAYERS[0][1] / simmod.VP_VS
    sp_real = (m["trace_s_arrival_sample"] - m["trace_p_arrival_sample"]).to_numpy(float) / FS
    tp = np.array([float(tt(np.array([d]), z)["tp"][0]) for d, z in zip(dist, depth, strict=True)])
    ts = np.array([float(tt(np.array([d]), z)["ts"][0]) for d, z in zip(dist, depth, strict=True)])
    tp_sim = tp + elev_km / vp
    sp_sim = ts + elev_km / vs - tp_sim
    res = sp_sim - sp_real
    p_res = tp_sim - m["path_p_travel_sec"].to_numpy(float)
    # Apparent Vp/Vs of the real picks: S-P = T_P (Vp/Vs - 1)
    vpvs_real = float(np.median(1 + sp_real / m["path_p_travel_sec"].to_numpy(float)))
    vpvs_sim = float(np.median(1 + sp_sim / tp_sim))
    rep.numbers.update(
        sp_median=float(np.median(res)),
        sp_mad=mad(res),
        sp_rel_median=float(np.median(res / sp_real)),
        p_median=float(np.median(p_res)),
        p_mad=mad(p_res),
        vpvs_real=vpvs_real,
        vpvs_sim=vpvs_sim,
    )
    near, far = dist < 60, dist >= 60
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.linspace(0, 120, 121)
    for z, c in ((5, "C0"), (12, "C1")):
        g = tt(grid, z)
        ax[0].plot(grid, g["ts"] - g["tp"], color=c, lw=1, label=f"simulator, depth {z} km")
    sc = ax[0].scatter(dist, sp_real, c=depth, cmap="viridis", s=18, label="STEAD manual picks")
    ax[0].set(xlabel="epicentral distance (km)", ylabel="S - P (s)", title="S-P time, TA.109C")
    fig.colorbar(sc, ax=ax[0], label="source depth (km)")
    ax[0].legend(fontsize=8)
    ax[1].scatter(dist, res, s=18, label="S-P: simulated - real")
    ax[1].scatter(dist, p_res, s=18, marker="x", label="P travel time: simulated - real")
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set(xlabel="epicentral distance (km)", ylabel="residual (s)", title="residuals")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "sp_time.png", dpi=DPI)
    plt.close(fig)
    rep.add(
        f"""
## 1. S-P time vs epicentral distance

50 STEAD traces at TA.109C (manual P and S picks, {dist.min():.0f}-{dist.max():.0f} km, depth
{depth.min():.1f}-{depth.max():.1f} km) against the simulator's `TravelTimes` (TauP, Hadley & Kanamori 1977 over
IASP91, Vp/Vs = {simmod.VP_VS}) for the same distance and depth, with the simulator's station-elevation
correction (elevation/Vp and elevation/Vs of the {simmod.SOCAL_LAYERS[0][1]} km/s top layer; station at
{np.median(elev_km) * 1000:.0f} m). P travel time is checked against STEAD's `path_p_travel_sec` (P pick - catalogue origin).

| quantity (simulated - real) | median (s) | MAD (s) |
|---|---|---|
| S-P time, all 50 | {np.median(res):+.2f} | {mad(res):.2f} |
| S-P time, < 60 km ({near.sum()}) | {np.median(res[near]):+.2f} | {mad(res[near]):.2f} |
| S-P time, >= 60 km ({far.sum()}) | {np.median(res[far]):+.2f} | {mad(res[far]):.2f} |
| P travel time | {np.median(p_res):+.2f} | {mad(p_res):.2f} |

Median relative S-P error {100 * np.median(res / sp_real):+.1f} %. Apparent Vp/Vs from the picks,
1 + (S-P)/T_P: real {vpvs_real:.3f}, simulated {vpvs_sim:.3f}.

![S-P](figures/sp_time.png)
"""
    )
    rel = 100 * np.median(res / sp_real)
    rep.findings.append(
        f"S-P times: simulated - STEAD manual picks median {np.median(res):+.2f} s (MAD {mad(res):.2f} s; "
        f"{rel:+.1f} % of S-P), {np.median(res[far]):+.2f} s beyond 60 km, where {far.sum()} of the {len(res)} "
        f"traces lie: the 1-D model's Vp/Vs {vpvs_sim:.3f} vs an apparent {vpvs_real:.3f} on this path. P travel "
        f"times {np.median(p_res):+.2f} s (MAD {mad(p_res):.2f} s; includes catalogue origin-time error). One "
        f"station (TA.109C) only; the S-P bias is {abs(np.median(res)) / mad(p_res):.1f} times the MAD of the P "
        "travel-time residuals."
    )


# ------------------------------------------------------------------------- 2. Ridgecrest amplitudes


def tile_noise(seg: np.ndarray, n: int) -> np.ndarray:
    """A noise segment extended to ``n`` samples by alternating time-reversed copies (no jumps at the joins)."""
    reps = [seg if k % 2 == 0 else seg[::-1] for k in range(n // seg.size + 1)]
    return np.concatenate(reps)[:n]


def ridgecrest_pairs(
    tt: simmod.TravelTimes, data: Path, min_mag: float
) -> tuple[pd.DataFrame, list[str]]:
    """Event-station windows (predicted P at sample ``PRE_S*FS``) of catalogued Ridgecrest events, m/s, with
    isolation from other catalogued events, SNR, peak vertical velocity (0.5 Hz high-passed) and the window's
    own pre-event noise tiled to the window length; also a clipping note per record."""
    folder = data / RIDGECREST
    cat = simmod.load_catalog(folder / "catalog_comcat_2019-07-06T08.csv")
    cat["t"] = [utc(t) for t in cat["time"]]
    elev = pd.read_csv(data / "stations/ridgecrest_stations.tsv", sep="\t")
    sens = pd.read_csv(folder / "stations_phaseno.csv")
    rows, clip_notes = [], []
    n = int((PRE_S + POST_S) * FS)
    p = int(PRE_S * FS)
    for sta in RC_STATIONS:
        tr = obspy.read(str(next(folder.glob(f"CI.{sta}.EH.*.mseed"))))[0]
        gain = float(str(sens.loc[sens["id"] == f"CI.{sta}..EH", "response"].iloc[0]).split(",")[0])
        counts = np.round(tr.data * gain)
        peak_c = np.abs(counts).max()
        clip_notes.append(
            f"CI.{sta}: max |counts| {peak_c:.0f}, {int(np.sum(np.abs(counts) >= 0.99 * peak_c))} sample(s) within 1 % of it"
        )
        srow = elev[elev["station"] == f"CI.{sta}..EH"].iloc[0]
        slat, slon, selev = (
            float(srow["latitude"]),
            float(srow["longitude"]),
            float(srow["elevation(m)"]),
        )
        info = []
        for _, ev in cat.iterrows():
            epi, az, _ = gps2dist_azimuth(ev["latitude"], ev["longitude"], slat, slon)
            depth = float(np.clip(ev["depth"], 0.5, 29.0))
            t = tt(np.array([epi / 1000]), depth)
            tp = float(t["tp"][0]) + selev / 1000 / simmod.SOCAL_LAYERS[0][1]
            ts = float(t["ts"][0]) + selev / 1000 / (simmod.SOCAL_LAYERS[0][1] / simmod.VP_VS)
            info.append((ev["t"] + tp - tr.stats.starttime, ts - tp, epi / 1000, az, depth))
        p_abs = np.array([i[0] for i in info])  # s after record start
        mags = cat["magnitude"].to_numpy(float)
        for k, (_, sp, epi, az, depth) in enumerate(info):
            start = int(round((p_abs[k] - PRE_S) * FS))
            if mags[k] < min_mag or start < 0 or start + n > tr.stats.npts:
                continue
            end_sig = sp + SIGNAL_AFTER_S
            others = np.arange(len(cat)) != k
            dt = p_abs - p_abs[k]
            # another catalogued event whose P falls in the noise or signal window, unless much smaller ...
            overlap = others & (dt > NOISE_WIN[0] - 2) & (dt < end_sig) & (mags >= mags[k] - 1.0)
            # ... or the coda of a clearly larger event that arrived up to 90 s earlier
            coda = others & (dt > -90) & (dt <= NOISE_WIN[0] - 2) & (mags >= mags[k] + 0.5)
            x = highpass(tr.data[start : start + n], 0.5)
            noise = x[p + int(NOISE_WIN[0] * FS) : p + int(NOISE_WIN[1] * FS)]
            peak = float(np.abs(x[p - int(FS) : p + int(end_sig * FS)]).max())
            rows.append(
                dict(
                    station=sta,
                    event=k,
                    magnitude=mags[k],
                    depth=depth,
                    epi_km=epi,
                    hyp_km=math.hypot(epi, depth),
                    azimuth=az,
                    elevation_m=selev,
                    sp=sp,
                    isolated=not (overlap.any() or coda.any()),
                    snr=peak / max(noise.std(), 1e-30),
                    noise_rms=float(noise.std()),
                    peak=peak,
                    wave=x,
                    noise_tile=tile_noise(x[int(FS) : p + int(NOISE_WIN[1] * FS)], n),
                )
            )
    return pd.DataFrame(rows), clip_notes


class NearSurfaceIncidence:
    """What-if wrapper of :class:`TravelTimes` for a near-surface layer of ``vp_km_s`` / ``vs_km_s``.

    ``simulate_station`` refracts the table's top-layer incidence angles into its ``SURFACE_VP``/``SURFACE_VS``
    layer (ray parameter conserved). This wrapper scales the sine of the table's angles by ``v / SURFACE_V`` so
    that, after the simulator's own refraction, P and S leave the surface as they would through the what-if layer;
    times unchanged. Used only to test an explanation."""

    def __init__(self, tt: simmod.TravelTimes, vp_km_s: float, vs_km_s: float) -> None:
        self.tt, self.vp, self.vs = tt, vp_km_s, vs_km_s

    def __call__(self, distance_km: np.ndarray, depth_km: float) -> dict[str, np.ndarray]:
        """As ``TravelTimes.__call__`` with the incidence angles replaced."""
        t = dict(self.tt(distance_km, depth_km))
        for key, v_surf, v_new in (
            ("incidence_p", simmod.SURFACE_VP, self.vp),
            ("incidence_s", simmod.SURFACE_VS, self.vs),
        ):
            sin_i = np.sin(np.radians(t[key])) * v_new / v_surf
            t[key] = np.degrees(np.arcsin(np.clip(sin_i, -1.0, 1.0)))
        return t


class SeparatedPhases:
    """Probe wrapper of a travel-time object: S arrives ``gap_s`` after P (angles unchanged), so that P, its coda
    and S can be measured apart on ``simulate_station``'s output."""

    def __init__(self, tt: simmod.TravelTimes | NearSurfaceIncidence, gap_s: float = 60.0) -> None:
        self.tt, self.gap = tt, gap_s

    def __call__(self, distance_km: np.ndarray, depth_km: float) -> dict[str, np.ndarray]:
        t = dict(self.tt(distance_km, depth_km))
        t["ts"] = t["tp"] + self.gap
        return t


def measured_incidence(
    tt: simmod.TravelTimes | NearSurfaceIncidence,
    distances: tuple[float, ...] = (20.0, 50.0, 100.0),
    depth: float = 8.0,
    seed: int = 0,
) -> np.ndarray:
    """Surface incidence angles (deg from vertical) of P and S as ``simulate_station`` projects them, measured
    on its noise-free output: station due north (radial = N, transverse = E), S delayed by 60 s so that P and S
    do not overlap; P: atan of the least-squares slope N/Z over 20 s from P; S (SV, on Z and N): atan of the
    slope Z/N over 20 s from S. Rows: distance; columns: P, S."""
    rng = np.random.default_rng(seed)
    probe = SeparatedPhases(tt)
    p0, n = 1000, 16000
    out = []
    for d in distances:
        sig, s_sample = simmod.simulate_station(
            rng, probe, 3.0, depth, d, 0.0, 0.0, (30.0, 60.0, 45.0), 3.0, n, float(p0)
        )
        s0 = int(round(s_sample))
        z, r = sig[0, p0 : p0 + 2000], sig[1, p0 : p0 + 2000]
        zs, rs = sig[0, s0 : s0 + 2000], sig[1, s0 : s0 + 2000]
        out.append(
            (
                math.degrees(math.atan(abs(np.dot(r, z) / np.dot(z, z)))),
                math.degrees(math.atan(abs(np.dot(zs, rs) / np.dot(rs, rs)))),
            )
        )
    return np.array(out)


def snell_incidence(
    tt: simmod.TravelTimes, distances: np.ndarray, depth: float, vp: float, vs: float
) -> np.ndarray:
    """Incidence (deg) expected from the table's top-layer angles refracted into a layer of ``vp`` / ``vs``."""
    t = tt(np.asarray(distances, dtype=float), depth)
    vp_top = simmod.SOCAL_LAYERS[0][1]
    cols = []
    for key, v_top, v in (("incidence_p", vp_top, vp), ("incidence_s", vp_top / simmod.VP_VS, vs)):
        cols.append(np.degrees(np.arcsin(np.clip(np.sin(np.radians(t[key])) * v / v_top, -1, 1))))
    return np.stack(cols, axis=-1)


def simulate_pairs(
    rng: np.random.Generator,
    tt: simmod.TravelTimes | NearSurfaceIncidence,
    pairs: pd.DataFrame,
    n_real: int,
    site_offset: float = 0.0,
) -> np.ndarray:
    """``n_real`` noise-free vertical simulations (0.5 Hz high-passed, short-period sensor) per real window."""
    n = int((PRE_S + POST_S) * FS)
    out = np.zeros((len(pairs), n_real, n))
    for i, (_, row) in enumerate(pairs.iterrows()):
        for r in range(n_real):
            mech, stress, site = random_source(rng)
            sig, _ = simmod.simulate_station(
                rng,
                tt,
                row["magnitude"],
                row["depth"],
                row["epi_km"],
                row["azimuth"],
                row["elevation_m"],
                mech,
                stress,
                n,
                PRE_S * FS,
                sensor_corner=1.0,
                site_log10=site + site_offset,
            )
            out[i, r] = highpass(sig[0], 0.5)
    return out


def fit_scaling(mag: np.ndarray, hyp: np.ndarray, logpeak: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares log10 PGV = a + b M + c log10 R; returns (a, b, c) and the residual std."""
    g = np.column_stack([np.ones_like(mag), mag, np.log10(hyp)])
    coef, *_ = np.linalg.lstsq(g, logpeak, rcond=None)
    return coef, float(np.std(logpeak - g @ coef))


def peak_residuals(pairs: pd.DataFrame, sims: np.ndarray) -> dict[str, np.ndarray | float]:
    """Simulated peaks in the real signal window and their log10 residuals against the real peaks."""
    p = int(PRE_S * FS)
    sim_peak = np.zeros(sims.shape[:2])
    for i, row in pairs.iterrows():
        end = p + int((row["sp"] + SIGNAL_AFTER_S) * FS)
        sim_peak[i] = np.abs(sims[i, :, p - int(FS) : end]).max(axis=-1)
    real_log = np.log10(pairs["peak"].to_numpy(float))
    mag, hyp = pairs["magnitude"].to_numpy(float), pairs["hyp_km"].to_numpy(float)
    k = sims.shape[1]
    coef, sd = fit_scaling(np.repeat(mag, k), np.repeat(hyp, k), np.log10(sim_peak).ravel())
    res_all = (np.log10(sim_peak) - real_log[:, None]).ravel()
    res_pair = np.median(np.log10(sim_peak), axis=1) - real_log
    return dict(
        sim_peak=sim_peak,
        res_all=res_all,
        res_pair=res_pair,
        median=float(np.median(res_all)),
        std=float(np.std(res_all)),
        b=float(coef[1]),
        c=float(coef[2]),
        sd=sd,
    )


def calibrate_sensor(
    rng: np.random.Generator,
    tt: simmod.TravelTimes | NearSurfaceIncidence,
    n: int,
    sensor_corner: float,
) -> np.ndarray:
    """``simulate.calibrate`` with another sensor corner or travel-time object; rows (ML(sim) - M, M)."""
    seed = int(rng.integers(2**31))
    return simmod.calibrate(n, seed=seed, tt=tt, sensor_corner=sensor_corner, with_magnitudes=True)


def section_amplitude(
    rng: np.random.Generator,
    tt: simmod.TravelTimes,
    data: Path,
    args: argparse.Namespace,
    rep: Report,
    figdir: Path,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Peak vertical velocity of real Ridgecrest windows vs simulations; ML self-consistency."""
    allpairs, clip_notes = ridgecrest_pairs(tt, data, args.min_mag)
    pairs = allpairs[allpairs["isolated"] & (allpairs["snr"] > args.min_snr)].reset_index(drop=True)
    sims = simulate_pairs(rng, tt, pairs, args.realisations)
    noisy = sims + np.stack(pairs["noise_tile"].to_list())[:, None, :]
    rep.numbers["n_sim_amplitude"] = sims.shape[0] * sims.shape[1]
    clean, with_noise = peak_residuals(pairs, sims), peak_residuals(pairs, noisy)
    sim_peak, res_all, res_pair = clean["sim_peak"], clean["res_all"], clean["res_pair"]
    real_log = np.log10(pairs["peak"].to_numpy(float))
    mag, hyp = pairs["magnitude"].to_numpy(float), pairs["hyp_km"].to_numpy(float)
    coef_r, sd_r = fit_scaling(mag, hyp, real_log)
    bin_rows = []
    for lo, hi in [(1.5, 2.0), (2.0, 2.5), (2.5, 3.0), (3.0, 5.0)]:
        sel = (mag >= lo) & (mag < hi)
        if sel.sum():
            r = (np.log10(sim_peak[sel]) - real_log[sel, None]).ravel()
            bin_rows.append(f"| {lo}-{hi} | {sel.sum()} | {np.median(r):+.2f} | {np.std(r):.2f} |")
    cal = simmod.calibrate(n=args.calibrate_n, seed=args.seed, tt=tt)
    cal_bb = calibrate_sensor(rng, tt, args.calibrate_bb_n, sensor_corner=0.033)
    big, small = cal_bb[:, 1] >= 3.0, cal_bb[:, 1] < 2.0
    rep.numbers.update(
        n_pairs=len(pairs),
        n_events=int(pairs["event"].nunique()),
        amp_res_median=clean["median"],
        amp_res_std=clean["std"],
        amp_res_pair_median=float(np.median(res_pair)),
        amp_res_pair_std=float(np.std(res_pair)),
        amp_res_noisy_median=with_noise["median"],
        amp_res_noisy_std=with_noise["std"],
        b_real=float(coef_r[1]),
        b_sim=clean["b"],
        c_real=float(coef_r[2]),
        c_sim=clean["c"],
        sd_real=sd_r,
        sd_sim=clean["sd"],
        amp_res_m3=float(np.median(np.log10(sim_peak[mag >= 3]) - real_log[mag >= 3, None])),
        amp_res_m25=float(np.median(np.log10(sim_peak[mag < 2.5]) - real_log[mag < 2.5, None])),
        ml_median=float(np.median(cal)),
        ml_std=float(np.std(cal)),
        ml_bb_median=float(np.median(cal_bb[:, 0])),
        ml_bb_std=float(np.std(cal_bb[:, 0])),
        ml_bb_big=float(np.median(cal_bb[big, 0])) if big.any() else float("nan"),
        ml_bb_slope=float(np.polyfit(cal_bb[:, 1], cal_bb[:, 0], 1)[0]),
    )

    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    vmin, vmax = args.min_mag, float(max(mag.max(), 3.5))
    ax[0].scatter(pairs["epi_km"], real_log, c=mag, cmap="plasma", vmin=vmin, vmax=vmax, s=16)
    ax[0].set(
        title=f"real (CI EHZ, {len(pairs)} windows)", ylabel="log10 peak vertical velocity (m/s)"
    )
    epi_rep = np.repeat(pairs["epi_km"].to_numpy(float), sims.shape[1])
    sc = ax[1].scatter(
        epi_rep + rng.uniform(-0.4, 0.4, epi_rep.size),
        np.log10(sim_peak).ravel(),
        c=np.repeat(mag, sims.shape[1]),
        cmap="plasma",
        vmin=vmin,
        vmax=vmax,
        s=8,
    )
    ax[1].set(title=f"simulated, noise-free ({sims.shape[1]} realisations each)")
    fig.colorbar(sc, ax=ax[1], label="catalogue magnitude")
    lo = min(real_log.min(), np.log10(sim_peak).min()) - 0.2
    hi = max(real_log.max(), np.log10(sim_peak).max()) + 0.2
    for a in ax[:2]:
        a.set(xlabel="epicentral distance (km)", ylim=(lo, hi))
    ax[2].scatter(mag, res_pair, c=pairs["epi_km"], cmap="viridis", s=16)
    ax[2].axhline(0, color="k", lw=0.8)
    ax[2].axhline(np.median(res_pair), color="r", lw=1, ls="--", label="median")
    ax[2].set(
        xlabel="catalogue magnitude",
        ylabel="log10(simulated / real), median of realisations",
        title="residual (colour: distance)",
    )
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "amplitude_ridgecrest.png", dpi=DPI)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(cal, bins=20, alpha=0.6, label="calibrate(): short-period (1 Hz)")
    ax.hist(cal_bb[:, 0], bins=20, alpha=0.6, label="same loop, broadband (0.033 Hz)")
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="ML(simulated) - M", ylabel="count", title="ML self-consistency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "ml_calibration.png", dpi=DPI)
    plt.close(fig)

    rep.add(
        f"""
## 2. Amplitude vs distance and magnitude (Ridgecrest, absolute)

Real: `{RIDGECREST}`, 1 h of EHZ at CI.{", CI.".join(RC_STATIONS)} in m/s (counts / overall sensitivity; 1 Hz
short-period sensors, not deconvolved below 1 Hz; no clipping: {"; ".join(clip_notes)}). For every ComCat event
with M >= {args.min_mag}, a {PRE_S + POST_S:.0f} s window is cut around the P time predicted with the simulator's
own `TravelTimes` (+ station-elevation correction). Windows are kept when no other catalogued event of
M >= M - 1 has its P in the noise or signal window and no event of M >= M + 0.5 arrived in the 90 s before
({int(allpairs["isolated"].sum())} of {len(allpairs)} event-station windows: this is the first hours of the
M7.1 aftershock sequence), and when SNR = peak / noise RMS > {args.min_snr} (noise {-NOISE_WIN[0]:.0f} to
{-NOISE_WIN[1]:.0f} s before P; signal from P - 1 s to S + {SIGNAL_AFTER_S:.0f} s): **{len(pairs)} windows,
{pairs["event"].nunique()} events, M{mag.min():.2f}-{mag.max():.2f}, {pairs["epi_km"].min():.0f}-{pairs["epi_km"].max():.0f} km**.
Real and simulated traces are high-passed at 0.5 Hz (2 poles, zero phase) before the peak is taken.
Simulated: `simulate_station` with the same magnitude, depth, distance, azimuth and station elevation,
short-period sensor (`sensor_corner=1.0`), {sims.shape[1]} realisations per window, each with a random
mechanism, log-normal stress drop (median 3 MPa) and site term (sigma {simmod.SITE_SIGMA_LOG10} log10) drawn as
`simulate_dataset` draws them.

| log10(simulated / real) peak vertical velocity | median | std |
|---|---|---|
| noise-free simulations, all realisations ({res_all.size}) | **{clean["median"]:+.2f}** | **{clean["std"]:.2f}** |
| noise-free, median of realisations per window ({len(pairs)}) | {np.median(res_pair):+.2f} | {np.std(res_pair):.2f} |
| simulations + the window's own real pre-event noise | {with_noise["median"]:+.2f} | {with_noise["std"]:.2f} |

A median of {clean["median"]:+.2f} is a factor {10 ** clean["median"]:.2f} in amplitude.

| magnitude bin | windows | median residual | std |
|---|---|---|---|
{chr(10).join(bin_rows)}

Fit log10 PGV = a + b M + c log10 R_hyp (R_hyp {hyp.min():.0f}-{hyp.max():.0f} km, so c is poorly constrained):

| | b (magnitude) | c (distance) | residual std |
|---|---|---|---|
| real | {coef_r[1]:.2f} | {coef_r[2]:.2f} | {sd_r:.2f} |
| simulated (noise-free) | {clean["b"]:.2f} | {clean["c"]:.2f} | {clean["sd"]:.2f} |

![amplitude](figures/amplitude_ridgecrest.png)

### ML calibration (simulator self-consistency)

`calibrate(n={args.calibrate_n}, seed={args.seed})` (M1-4, 10-120 km, short-period 1 Hz sensor, Wood-Anderson
on the horizontals, Hutton & Boore 1987): ML(sim) - M median **{np.median(cal):+.3f}**, std **{np.std(cal):.3f}**.
The same loop with the broadband sensor (`sensor_corner=0.033`, used for half of the traces `simulate_dataset`
writes; {args.calibrate_bb_n} pairs): median {np.median(cal_bb[:, 0]):+.3f}, std {np.std(cal_bb[:, 0]):.3f};
M >= 3: {rep.numbers["ml_bb_big"]:+.3f} ({int(big.sum())}), M < 2:
{np.median(cal_bb[small, 0]) if small.any() else float("nan"):+.3f} ({int(small.sum())}). This checks the
simulator against its own ML formula (on the horizontals); the real-data check is the vertical-amplitude table
above.

![ML](figures/ml_calibration.png)
"""
    )
    pairs = pairs.assign(sim_peak_median=np.median(sim_peak, axis=1))
    return pairs, sims


# -------------------------------------------------------------------- 3. spectra, envelopes, ratios


def band_mean(f: np.ndarray, spec: np.ndarray, lo: float, hi: float) -> float:
    """Geometric mean of a spectrum between ``lo`` and ``hi`` Hz."""
    return float(np.exp(np.mean(np.log(spec[(f >= lo) & (f < hi)] + 1e-30))))


def envelope(x: np.ndarray) -> np.ndarray:
    """|Hilbert transform| smoothed over 0.5 s, geometric mean over the first axis."""
    env = smooth(np.abs(hilbert(x, axis=-1)), int(0.5 * FS))
    return np.exp(np.mean(np.log(env + 1e-30), axis=0))


def section_spectra(pairs: pd.DataFrame, sims: np.ndarray, rep: Report, figdir: Path) -> None:
    """Average spectra and envelopes of real vs simulated vertical traces in distance/magnitude bins."""
    p = int(PRE_S * FS)
    nfft = 1024
    f = np.fft.rfftfreq(nfft, 1 / FS)
    taper = np.hanning(nfft)
    noise = np.stack(pairs["noise_tile"].to_list())
    bins = []
    for d0, d1 in ((0, 30), (30, 200)):
        for m0, m1 in ((1.5, 2.5), (2.5, 6.0)):
            sel = (
                (pairs["epi_km"] >= d0)
                & (pairs["epi_km"] < d1)
                & (pairs["magnitude"] >= m0)
                & (pairs["magnitude"] < m1)
            ).to_numpy()
            if sel.sum() >= 3:
                bins.append((d0, d1, m0, m1, sel))
    if not bins:
        rep.add("## 3. Spectra and envelopes\n\nToo few windows per bin.\n")
        return
    fig, ax = plt.subplots(2, len(bins), figsize=(3.6 * len(bins), 6.4), squeeze=False)
    t = (np.arange(sims.shape[-1]) - p) / FS
    rows, gaps, codas, ps, bands = [], [], [], [], []
    rows2, bands_clean, peaks, efolds = [], [], [], []
    in_band = (f >= 1.0) & (f <= 40.0)

    def peak_freq(spec: np.ndarray) -> float:
        """Frequency (1-40 Hz) of the maximum of the smoothed spectrum."""
        return float(f[in_band][np.argmax(log_smooth_spectrum(f, spec)[in_band])])

    def efold(g: np.ndarray, ks: int) -> float:
        """E-folding time (s) of an envelope from a straight-line fit of ln(env) over S + 2 s to S + 15 s."""
        seg = np.arange(ks + int(2 * FS), min(ks + int(15 * FS), g.size))
        slope = np.polyfit(seg / FS, np.log(g[seg]), 1)[0]
        return float(-1 / slope) if slope < 0 else float("inf")

    s0 = p - int(0.5 * FS)
    for j, (d0, d1, m0, m1, sel) in enumerate(bins):
        real = np.stack(pairs.loc[sel, "wave"].to_list())
        clean = sims[sel].reshape(-1, sims.shape[-1])
        noisy = (sims[sel] + noise[sel][:, None, :]).reshape(-1, sims.shape[-1])
        spec = {
            name: np.exp(
                np.mean(
                    np.log(np.abs(np.fft.rfft(x[:, a : a + nfft] * taper, axis=-1)) / FS + 1e-30),
                    axis=0,
                )
            )
            for name, x, a in (
                ("real", real, s0),
                ("sim", clean, s0),
                ("simn", noisy, s0),
                ("noise", real, int(FS)),
            )
        }
        a = ax[0, j]
        a.loglog(f[1:], log_smooth_spectrum(f, spec["real"])[1:], "k", label="real")
        a.loglog(
            f[1:], log_smooth_spectrum(f, spec["simn"])[1:], "C3", label="simulated + real noise"
        )
        a.loglog(
            f[1:],
            log_smooth_spectrum(f, spec["sim"])[1:],
            "C3",
            lw=0.7,
            ls=":",
            label="simulated, noise-free",
        )
        a.loglog(
            f[1:],
            log_smooth_spectrum(f, spec["noise"])[1:],
            "0.6",
            ls="--",
            label="real pre-event noise",
        )
        a.set(
            xlim=(0.5, 45),
            xlabel="frequency (Hz)",
            title=f"{d0}-{d1} km, M{m0}-{min(m1, 5)} (n={sel.sum()})",
        )
        if j == 0:
            a.set_ylabel("amplitude spectrum, Z (m)")
            a.legend(fontsize=6)
        g_r, g_s, g_c = envelope(real), envelope(noisy), envelope(clean)
        sp = float(pairs.loc[sel, "sp"].median())
        a = ax[1, j]
        a.semilogy(t, g_r, "k", label="real")
        a.semilogy(t, g_s, "C3", label="simulated + real noise")
        a.semilogy(t, g_c, "C3", lw=0.7, ls=":", label="simulated, noise-free")
        a.axvline(0, color="0.5", lw=0.6)
        a.axvline(sp, color="0.5", lw=0.6, ls=":")
        a.set(xlim=(-5, 35), xlabel="time after predicted P (s)")
        if j == 0:
            a.set_ylabel("smoothed envelope, Z (m/s)")
            a.legend(fontsize=6)
        ratios = [
            math.log10(band_mean(f, spec["simn"], lo, hi) / band_mean(f, spec["real"], lo, hi))
            for lo, hi in ((1, 3), (3, 10), (10, 30))
        ]
        ks = p + int(sp * FS)
        mid = p + int(0.6 * sp * FS)
        late = min(ks + int(20 * FS), g_r.size - 1)

        def shape(
            g: np.ndarray, ks: int = ks, mid: int = mid, late: int = late
        ) -> tuple[float, float, float]:
            """log10 P peak / S peak, envelope 60 % of the way from P to S / P peak, S + 20 s / S peak."""
            p_peak, s_peak = g[p : ks - 10].max(), g[ks - 10 : ks + 500].max()
            return (
                math.log10(p_peak / s_peak),
                math.log10(g[mid] / p_peak),
                math.log10(g[late] / s_peak),
            )

        sr, ss, sc = shape(g_r), shape(g_s), shape(g_c)
        noise_floor = math.log10(
            envelope(real[:, int(FS) : p - int(2 * FS)]).mean() / g_r[ks - 10 : ks + 500].max()
        )
        ps.append((sr[0], ss[0]))
        gaps.append((sr[1], ss[1]))
        codas.append((sr[2], ss[2], sc[2], noise_floor))
        bands.append(ratios)
        ratios_clean = [
            math.log10(band_mean(f, spec["sim"], lo, hi) / band_mean(f, spec["real"], lo, hi))
            for lo, hi in ((1, 3), (3, 10), (10, 30))
        ]
        bands_clean.append(ratios_clean)
        pk = (
            peak_freq(spec["real"]),
            peak_freq(spec["noise"]),
            peak_freq(spec["simn"]),
            peak_freq(spec["sim"]),
        )
        peaks.append(pk)
        ef = (efold(g_r, ks), efold(g_s, ks), efold(g_c, ks))
        efolds.append(ef)
        rows2.append(
            f"| {d0}-{d1} km, M{m0}-{min(m1, 5)} | {ratios_clean[0]:+.2f} | {ratios_clean[1]:+.2f} | "
            f"{ratios_clean[2]:+.2f} | {pk[0]:.1f} / {pk[1]:.1f} / {pk[2]:.1f} / {pk[3]:.1f} | "
            f"{ef[0]:.1f} / {ef[1]:.1f} / {ef[2]:.1f} |"
        )
        rows.append(
            f"| {d0}-{d1} km, M{m0}-{min(m1, 5)} | {sel.sum()} | {ratios[0]:+.2f} | {ratios[1]:+.2f} | {ratios[2]:+.2f} | "
            f"{sr[0]:+.2f} / {ss[0]:+.2f} | {sr[1]:+.2f} / {ss[1]:+.2f} | {sr[2]:+.2f} ({noise_floor:+.2f}) / "
            f"{ss[2]:+.2f} / {sc[2]:+.2f} |"
        )
    fig.tight_layout()
    fig.savefig(figdir / "spectra_envelopes.png", dpi=DPI)
    plt.close(fig)
    gaps_a, codas_a, ps_a, bands_a = np.array(gaps), np.array(codas), np.array(ps), np.array(bands)
    rep.numbers.update(
        band_lo_min=float(bands_a[:, :2].min()),
        band_lo_max=float(bands_a[:, :2].max()),
        band_hi_min=float(bands_a[:, 2].min()),
        band_hi_max=float(bands_a[:, 2].max()),
        env_coda_clean_min=float(codas_a[:, 2].min()),
        env_coda_clean_max=float(codas_a[:, 2].max()),
        env_coda_above_floor=float(np.median(codas_a[:, 0] - codas_a[:, 3])),
        env_coda_sim_above_floor=float(np.median(codas_a[:, 1] - codas_a[:, 3])),
        env_gap_real=float(np.median(gaps_a[:, 0])),
        env_gap_sim=float(np.median(gaps_a[:, 1])),
        env_coda_real=float(np.median(codas_a[:, 0])),
        env_coda_sim=float(np.median(codas_a[:, 1])),
        env_ps_real=float(np.median(ps_a[:, 0])),
        env_ps_sim=float(np.median(ps_a[:, 1])),
        band_clean_lo_min=float(np.array(bands_clean)[:, :2].min()),
        band_clean_lo_max=float(np.array(bands_clean)[:, :2].max()),
        band_clean_hi_min=float(np.array(bands_clean)[:, 2].min()),
        band_clean_hi_max=float(np.array(bands_clean)[:, 2].max()),
        fpeak_real_min=float(np.min(np.array(peaks)[:, 0])),
        fpeak_real_max=float(np.max(np.array(peaks)[:, 0])),
        fpeak_noise_min=float(np.min(np.array(peaks)[:, 1])),
        fpeak_noise_max=float(np.max(np.array(peaks)[:, 1])),
        fpeak_sim_min=float(np.min(np.array(peaks)[:, 3])),
        fpeak_sim_max=float(np.max(np.array(peaks)[:, 3])),
        efold_real=float(np.median(np.array(efolds)[:, 0])),
        efold_simn=float(np.median(np.array(efolds)[:, 1])),
        efold_clean=float(np.median(np.array(efolds)[:, 2])),
        efold_clean_min=float(np.min(np.array(efolds)[:, 2])),
        efold_clean_max=float(np.max(np.array(efolds)[:, 2])),
        noise_pre_event_median=float(pairs["noise_rms"].median()),
    )
    rep.add(
        f"""
## 3. Spectra and envelopes

Same Ridgecrest windows and simulations as section 2 (vertical, m/s, 0.5 Hz high-pass). The simulated traces are
shown noise-free (dotted) and with the real window's own pre-event noise added (solid; median pre-event noise
RMS of these windows {pairs["noise_rms"].median():.1e} m/s, during the aftershock sequence). Spectra: 10.24 s from 0.5 s before the predicted P (Hann
taper; covers P and S up to ~60 km), geometric mean over traces, 1/6-octave smoothing; grey dashed: real pre-event
noise, same length. Envelopes: |Hilbert| smoothed over 0.5 s, geometric mean, aligned on the predicted P (dotted
line: median S). Ratios below use the simulations with real noise added.

| bin | windows | log10 sim/real 1-3 Hz | 3-10 Hz | 10-30 Hz | log10 P/S peak, real / sim | log10 env. 60 % of P->S / P peak, real / sim | log10 env. S+20 s / S peak: real (its noise floor) / sim + noise / sim noise-free |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Noise-free simulations against the same real spectra, peak frequencies (1-40 Hz, smoothed spectra) and the S-coda
decay (e-folding time of the envelope from a straight-line fit of ln(envelope) from S + 2 s to S + 15 s; the real
envelope, and the simulated one with noise, flatten where they reach the noise floor):

| bin | log10 sim noise-free / real 1-3 Hz | 3-10 Hz | 10-30 Hz | peak frequency (Hz): real / real noise / sim + noise / sim noise-free | S-coda e-folding (s): real / sim + noise / sim noise-free |
|---|---|---|---|---|---|
{chr(10).join(rows2)}

![spectra and envelopes](figures/spectra_envelopes.png)
"""
    )


def phase_ratios(x: np.ndarray, p: int, s: int) -> tuple[float, float, float, float]:
    """log10 peak P/S on Z and on the horizontals, H/Z in the S and in the P window; ``x`` is ZNE."""
    pe = min(s - 20, p + 300)
    pz, sz = np.abs(x[0, p:pe]).max(), np.abs(x[0, s : s + 500]).max()
    ph, sh = np.abs(x[1:, p:pe]).max(), np.abs(x[1:, s : s + 500]).max()
    return (
        math.log10(pz / sz),
        math.log10(ph / sh),
        math.log10(sh / sz),
        math.log10(ph / pz),
    )


RATIO_NAMES = (
    "log10 P/S peak, Z",
    "log10 P/S peak, horizontals",
    "log10 H/Z peak in S window",
    "log10 H/Z peak in P window",
)


def stead_ratios(
    rng: np.random.Generator,
    tt: simmod.TravelTimes | NearSurfaceIncidence,
    stead: sbd.WaveformDataset,
    n_real: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase ratios of the STEAD traces and of ``n_real`` broadband simulations of each."""
    m = stead.metadata
    real_rows, sim_rows = [], []
    for i in range(len(m)):
        row = m.iloc[i]
        x = highpass(stead.get_waveforms(i), 1.0)
        p, s = int(row["trace_p_arrival_sample"]), int(row["trace_s_arrival_sample"])
        real_rows.append(phase_ratios(x, p, s))
        _, az, _ = gps2dist_azimuth(
            row["source_latitude_deg"],
            row["source_longitude_deg"],
            row["station_latitude_deg"],
            row["station_longitude_deg"],
        )
        for _ in range(n_real):
            mech, stress, site = random_source(rng)
            sig, s_sim = simmod.simulate_station(
                rng,
                tt,
                float(row["source_magnitude"]),
                float(row["source_depth_km"]),
                float(row["path_ep_distance_km"]),
                az,
                float(row["station_elevation_m"]),
                mech,
                stress,
                x.shape[-1],
                float(p),
                sensor_corner=0.033,
                site_log10=site,
            )
            sim_rows.append(phase_ratios(highpass(sig, 1.0), p, int(round(s_sim))))
    return np.array(real_rows), np.array(sim_rows)


def section_stead_ratios(
    rng: np.random.Generator,
    tt: simmod.TravelTimes,
    stead: sbd.WaveformDataset,
    args: argparse.Namespace,
    rep: Report,
    figdir: Path,
) -> np.ndarray:
    """P/S and horizontal/vertical peak ratios (gain-free) on the 3-C STEAD traces vs simulations."""
    real, simr = stead_ratios(rng, tt, stead, args.stead_realisations)
    fig, ax = plt.subplots(1, 4, figsize=(14, 3.2))
    lines = []
    for k, name in enumerate(RATIO_NAMES):
        ax[k].hist(real[:, k], bins=15, alpha=0.6, density=True, label="STEAD TA.109C")
        ax[k].hist(simr[:, k], bins=15, alpha=0.6, density=True, label="simulated")
        ax[k].set(xlabel=name)
        lines.append(
            f"| {name} | {np.median(real[:, k]):+.2f} ({np.std(real[:, k]):.2f}) | "
            f"{np.median(simr[:, k]):+.2f} ({np.std(simr[:, k]):.2f}) |"
        )
        rep.numbers[f"ratio{k}_real"] = float(np.median(real[:, k]))
        rep.numbers[f"ratio{k}_sim"] = float(np.median(simr[:, k]))
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figdir / "phase_ratios_stead.png", dpi=DPI)
    plt.close(fig)
    rep.numbers["n_sim_stead"] = len(simr)
    dists = np.array([20.0, 50.0, 100.0])
    top = tt(dists, 8.0)
    inc = measured_incidence(tt, tuple(dists), 8.0, seed=args.seed)
    expected = snell_incidence(tt, dists, 8.0, simmod.SURFACE_VP, simmod.SURFACE_VS)
    inc_dev = float(np.abs(inc - expected).max())
    rep.numbers.update(
        incidence_p_50=float(inc[1, 0]),
        incidence_s_50=float(inc[1, 1]),
        incidence_top_p_50=float(top["incidence_p"][1]),
        incidence_top_s_50=float(top["incidence_s"][1]),
        incidence_dev=inc_dev,
    )

    def angles(values: np.ndarray) -> str:
        return ", ".join(f"{v:.0f}" for v in values)

    rep.add(
        f"""
### P/S and H/Z ratios (three components, STEAD)

Gain-free ratios of peak amplitudes on the 50 STEAD traces (BH broadband, counts, 1 Hz high-pass) vs
`simulate_station` for the same magnitude, distance, depth and azimuth (broadband sensor,
{args.stead_realisations} realisations each, random mechanisms). P window: P to S - 0.2 s (at most 3 s);
S window: S to S + 5 s; H = larger horizontal.

| ratio | real median (std) | simulated median (std) |
|---|---|---|
{chr(10).join(lines)}

Surface incidence angles (deg from vertical) of an 8 km deep source at 20 / 50 / 100 km, measured on the
noise-free output of `simulate_station` (station due north, S delayed by 60 s so that P and S do not overlap;
P: atan(N/Z) in the P window, S: atan(Z/N) of the SV motion): P {angles(inc[:, 0])}, S {angles(inc[:, 1])}.
TauP's angles in the model's {simmod.SOCAL_LAYERS[0][1]} km/s top layer are P {angles(top["incidence_p"])},
S {angles(top["incidence_s"])}; refracted with conserved ray parameter into the module's near-surface layer
(`SURFACE_VP` = {simmod.SURFACE_VP}, `SURFACE_VS` = {simmod.SURFACE_VS} km/s) they are
P {angles(expected[:, 0])}, S {angles(expected[:, 1])}: max |measured - expected| {inc_dev:.2f} deg
({"PASS" if inc_dev < 0.5 else "FAIL"}).

![phase ratios](figures/phase_ratios_stead.png)
"""
    )
    return real


def section_whatif(
    rng: np.random.Generator,
    tt: simmod.TravelTimes,
    stead: sbd.WaveformDataset,
    pairs: pd.DataFrame,
    real_ratios: np.ndarray,
    args: argparse.Namespace,
    rep: Report,
) -> None:
    """What-if: incidence angles refracted into a slow near-surface layer (amplitudes re-calibrated on ML)."""
    n = rep.numbers
    layers = [tuple(float(v) for v in item.split("/")) for item in args.surface.split(",")]
    cols, heads, notes = [], [], []
    n["n_sim_whatif"] = 0
    for j, (vp, vs) in enumerate(layers):
        wtt = NearSurfaceIncidence(tt, vp, vs)
        cal = calibrate_sensor(
            np.random.default_rng(args.seed), wtt, args.calibrate_n, sensor_corner=1.0
        )
        offset = -float(
            np.median(cal[:, 0])
        )  # log10 factor that brings the ML residual back to zero
        _, simr = stead_ratios(rng, wtt, stead, args.stead_realisations)
        sims = simulate_pairs(rng, wtt, pairs, args.realisations, site_offset=offset)
        res = peak_residuals(pairs, sims)
        n["n_sim_whatif"] += len(cal) + len(simr) + sims.shape[0] * sims.shape[1]
        inc = measured_incidence(wtt, seed=args.seed)
        heads.append(f"what-if Vp {vp:g} / Vs {vs:g}")
        notes.append(
            f"Vp {vp:g} / Vs {vs:g} km/s: P {', '.join(f'{v:.0f}' for v in inc[:, 0])} deg, "
            f"S {', '.join(f'{v:.0f}' for v in inc[:, 1])} deg; ML residual before re-calibration "
            f"{-offset:+.3f}"
        )
        n[f"whatif{j}_inc_p_50"], n[f"whatif{j}_inc_s_50"] = float(inc[1, 0]), float(inc[1, 1])
        col = [f"{np.median(simr[:, k]):+.2f}" for k in range(4)]
        col += [f"{res['median']:+.2f} ({res['std']:.2f})", f"{res['b']:.2f}"]
        cols.append(col)
        n[f"whatif{j}_amp_median"] = res["median"]
        for k in range(4):
            n[f"whatif{j}_ratio{k}"] = float(np.median(simr[:, k]))
    rep.extra["whatif_layers"] = "; ".join(f"{vp:g}/{vs:g}" for vp, vs in layers)
    labels = [
        *RATIO_NAMES,
        "Ridgecrest log10(sim/real) peak Z, median (std)",
        "Ridgecrest magnitude scaling b",
    ]
    real_col = [f"{np.median(real_ratios[:, k]):+.2f}" for k in range(4)] + [
        "0",
        f"{n['b_real']:.2f}",
    ]
    base_col = [f"{n[f'ratio{k}_sim']:+.2f}" for k in range(4)]
    base_head = f"simulator (Vp {simmod.SURFACE_VP:g} / Vs {simmod.SURFACE_VS:g})"
    base_col += [f"{n['amp_res_median']:+.2f} ({n['amp_res_std']:.2f})", f"{n['b_sim']:.2f}"]
    table = [
        f"| quantity | real | {base_head} | {' | '.join(heads)} |",
        "|---" * (3 + len(heads)) + "|",
    ]
    for i, label in enumerate(labels):
        table.append(
            f"| {label} | {real_col[i]} | {base_col[i]} | {' | '.join(c[i] for c in cols)} |"
        )
    rep.add(
        f"""
### What-if: a slower near-surface layer (diagnostic, not the simulator's behaviour)

The simulator refracts P and S into a near-surface layer of Vp {simmod.SURFACE_VP:g} / Vs {simmod.SURFACE_VS:g}
km/s (measured angles above). To test whether a slower layer (steeper incidence) would close the remaining
polarisation and amplitude differences, the same simulations are repeated with the angles the simulator would
get from the what-if layer (ray parameter conserved; times unchanged), and the overall amplitude re-calibrated on
ML as `AMPLITUDE_CALIBRATION` was (the `calibrate` loop, {args.calibrate_n} pairs, short-period sensor).
Incidence measured on the output as above, 20 / 50 / 100 km, 8 km depth: {"; ".join(notes)}. The wrapper lives
in this script only.

{chr(10).join(table)}
"""
    )


# ------------------------------------------------------------------------------------------ 4. SNR


def section_snr(
    tt: simmod.TravelTimes,
    stead: sbd.WaveformDataset,
    data: Path,
    args: argparse.Namespace,
    rep: Report,
    figdir: Path,
) -> pd.DataFrame:
    """SNR of the STEAD traces vs a small simulated dataset, as stored and with common measured definitions."""
    m = stead.metadata
    stead_meta = np.array([stead_snr_values(v)[2] for v in m["trace_snr_db"]])  # E, N, Z order: Z
    stead_peak, stead_eqt = [], []
    for i in range(len(m)):
        z = highpass(stead.get_waveforms(i)[0], 1.0)
        p, s = int(m["trace_p_arrival_sample"].iloc[i]), int(m["trace_s_arrival_sample"].iloc[i])
        stead_peak.append(snr_peak_over_rms(z, p, s))
        stead_eqt.append(snr_eqt(z, p))
    stations = simmod.load_stations(data / "stations/western_us_stations.csv", time=2019.5)
    stations = stations[stations["network"] == "CI"].reset_index(drop=True)
    catalog = simmod.load_catalog(data / "catalogs/comcat_reviewed_ridgecrest_2019-07-01_12.csv")
    noise_paths = sorted((data / "continuous").glob("*/*.mseed")) + sorted(
        (data / "continuous").glob("*/*.ms")
    )
    cfg = simmod.SimulationConfig(n_events=args.sim_events, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        simmod.simulate_dataset(
            tmp, stations, catalog=catalog, noise_paths=noise_paths, config=cfg, tt=tt
        )
        ds = sbd.WaveformDataset(tmp, component_order="ZNE", sampling_rate=100)
        meta = ds.metadata.copy()
        sim_peak, sim_eqt = [], []
        for i in range(len(meta)):
            z = highpass(ds.get_waveforms(i)[0], 1.0)
            p = int(meta["trace_p_arrival_sample"].iloc[i])
            s = int(meta["trace_s_arrival_sample"].iloc[i])
            sim_peak.append(snr_peak_over_rms(z, p, s) if np.abs(z).max() > 0 else np.nan)
            sim_eqt.append(snr_eqt(z, p) if np.abs(z).max() > 0 else np.nan)
    meta["snr_peak_measured"] = sim_peak
    meta["snr_eqt_measured"] = sim_eqt
    sim_meta = meta["trace_snr_db"].to_numpy(float)
    sim_peak_a, sim_eqt_a = np.array(sim_peak), np.array(sim_eqt)
    rep.numbers["n_sim_dataset"] = len(meta)

    def q(x: np.ndarray) -> str:
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        return f"{np.median(x):.1f} [{np.percentile(x, 25):.1f}, {np.percentile(x, 75):.1f}]"

    def frac(x: np.ndarray, thr: float) -> str:
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        return f"{100 * np.mean(x < thr):.0f} %"

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    pairs = (
        ("as stored: STEAD trace_snr_db (Z) vs simulator trace_snr_db", stead_meta, sim_meta),
        ("measured: 20 log10(peak |Z| / RMS pre-P)", np.array(stead_peak), sim_peak_a),
        ("measured: EQTransformer 2 s p95 ratio", np.array(stead_eqt), sim_eqt_a),
    )
    for a, (title, r, s) in zip(ax, pairs, strict=True):
        edges = np.linspace(
            min(np.nanmin(r), np.nanmin(s)) - 1, max(np.nanmax(r), np.nanmax(s)) + 1, 25
        )
        a.hist(r, bins=edges, alpha=0.6, density=True, label=f"STEAD TA.109C ({len(r)})")
        a.hist(
            s[np.isfinite(s)],
            bins=edges,
            alpha=0.6,
            density=True,
            label=f"simulated ({np.isfinite(s).sum()})",
        )
        a.set(xlabel="SNR (dB)", title=title)
        a.title.set_fontsize(8)
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figdir / "snr.png", dpi=DPI)
    plt.close(fig)
    mags = meta.drop_duplicates("source_id")["source_magnitude"]
    rep.numbers.update(
        snr_stead_meta=float(np.median(stead_meta)),
        snr_sim_meta=float(np.median(sim_meta)),
        snr_stead_peak=float(np.median(stead_peak)),
        snr_sim_peak=float(np.nanmedian(sim_peak_a)),
        snr_stead_eqt=float(np.median(stead_eqt)),
        snr_sim_eqt=float(np.nanmedian(sim_eqt_a)),
        snr_sim_below0=float(np.mean(sim_meta < 0)),
        snr_stead_mag=float(m["source_magnitude"].median()),
        snr_sim_mag=float(meta["source_magnitude"].median()),
        snr_stead_dist=float(m["path_ep_distance_km"].median()),
        snr_sim_dist=float(meta["path_ep_distance_km"].median()),
        snr_sim_noise=float(meta["trace_noise_rms_mps"].median()),
    )
    rep.add(
        f"""
## 4. SNR distributions

Simulated: `simulate_dataset` with `SimulationConfig(n_events={args.sim_events}, seed={args.seed})` (defaults
otherwise: up to {cfg.max_stations} stations within {cfg.max_distance_km:g} km, noise RMS log-normal with median
{cfg.noise_rms_median:g} m/s and sigma_ln {cfg.noise_rms_sigma_ln}), the {len(stations)} CI stations of
`stations/western_us_stations.csv` active at 2019.5, hypocentres and magnitudes drawn from
`catalogs/comcat_reviewed_ridgecrest_2019-07-01_12.csv` (event magnitudes drawn: median
{mags.median():.2f}, range {mags.min():.2f}-{mags.max():.2f}), noise from the {len(noise_paths)} continuous
miniSEED files; written to a temporary folder and deleted. {len(meta)} traces.
Real: the {len(m)} STEAD traces (one station, M{m["source_magnitude"].min():.2f}-{m["source_magnitude"].max():.1f},
{m["path_ep_distance_km"].min():.0f}-{m["path_ep_distance_km"].max():.0f} km, selected into STEAD). Trace medians,
STEAD vs simulated: magnitude {m["source_magnitude"].median():.2f} vs {meta["source_magnitude"].median():.2f},
epicentral distance {m["path_ep_distance_km"].median():.0f} vs {meta["path_ep_distance_km"].median():.0f} km.

**The definitions differ.** The simulator stores 20 log10(peak |Z| of the noise-free signal / nominal noise
RMS). STEAD's `trace_snr_db` is a per-component value (E, N, Z order; Z used here) whose exact recipe is not in
the metadata; on these 50 traces it lies a median {np.median(np.array(stead_peak) - stead_meta):.1f} dB below
the measured peak / pre-P RMS value of the next table and correlates with it (r = {np.corrcoef(stead_peak, stead_meta)[0, 1]:.2f}). To compare like with like, two definitions are measured the
same way on the waveforms of both sets (Z, 1 Hz high-pass): peak |Z| from P to S + 15 s over the RMS of up to
6 s before P, and EQTransformer's `_get_snr` (95th percentiles of 2 s after / before P).

| SNR (dB), median [IQR] | STEAD (Z) | simulated | simulated < 10 dB |
|---|---|---|---|
| as stored in the metadata | {q(stead_meta)} | {q(sim_meta)} | {frac(sim_meta, 10)} |
| measured peak / pre-P RMS | {q(np.array(stead_peak))} | {q(sim_peak_a)} | {frac(sim_peak_a, 10)} |
| measured EQTransformer p95 ratio | {q(np.array(stead_eqt))} | {q(sim_eqt_a)} | {frac(sim_eqt_a, 10)} |

The two sets differ in magnitude and distance mix by construction, so the distributions are not expected to
coincide; the stored-vs-measured difference on the simulated traces is the useful check of the metadata.

![SNR](figures/snr.png)
"""
    )
    return meta


# ------------------------------------------------------------------------- 5. noise and metadata checks

#: Noise window length of ``simulate_dataset`` (samples) and the peak/RMS ratio taken as "contains a transient"
NOISE_SAMPLES = simmod.SimulationConfig().samples
SPIKE_RATIO = 8.0


def spike_fraction(windows: np.ndarray) -> float:
    """Share of windows (rows) whose peak exceeds ``SPIKE_RATIO`` times their RMS (Gaussian noise of a few
    thousand samples: practically never)."""
    rms = np.maximum(windows.std(axis=-1), 1e-30)
    return float(np.mean(np.abs(windows).max(axis=-1) > SPIKE_RATIO * rms))


def bank_channels(path: Path) -> dict[str, np.ndarray]:
    """The channels of a noise file preprocessed as ``NoiseBank`` does (merge, 100 Hz, demean, 1 Hz high-pass),
    keyed by channel code."""
    st = simmod.NoiseBank.read_record(path)
    return {tr.stats.channel: tr.data.astype(np.float64) for tr in st}


def window_sources(window: np.ndarray, channels: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """For each component of a ``NoiseBank.window`` output, the channel (and correlation) of the file whose
    10 s chunk matches its first, un-faded 9.5 s best."""
    m = simmod.CHUNK - 50
    out = []
    for comp in window:
        seg = comp[:m] - comp[:m].mean()
        best = ("?", -1.0)
        for name, x in channels.items():
            n = x.size // simmod.CHUNK
            chunks = x[: n * simmod.CHUNK].reshape(n, simmod.CHUNK)[:, :m]
            chunks = chunks - chunks.mean(axis=1, keepdims=True)
            r = (
                chunks
                @ seg
                / np.maximum(np.linalg.norm(chunks, axis=1) * np.linalg.norm(seg), 1e-30)
            )
            if r.max() > best[1]:
                best = (name, float(r.max()))
        out.append(best)
    return out


def section_noise(
    tt: simmod.TravelTimes,
    data: Path,
    pairs: pd.DataFrame,
    sim_meta: pd.DataFrame,
    args: argparse.Namespace,
    rep: Report,
) -> None:
    """Noise levels; earthquakes in the noise records and in ``NoiseBank.window`` output; component order of the
    windows; catalogue-time parsing of ``simulate_dataset``; metadata time consistency."""
    folder = data / RIDGECREST
    cat = simmod.load_catalog(folder / "catalog_comcat_2019-07-06T08.csv")
    elev = pd.read_csv(data / "stations/ridgecrest_stations.tsv", sep="\t")
    lines, cover, rms_all, p_all = [], [], [], {}
    for sta in RC_STATIONS:
        tr = obspy.read(str(next(folder.glob(f"CI.{sta}.EH.*.mseed"))))[0]
        x = highpass(tr.data, 1.0)
        win = int(10 * FS)
        rms = np.array([x[k : k + win].std() for k in range(0, x.size - win, win)])
        rms_all.append(rms)
        srow = elev[elev["station"] == f"CI.{sta}..EH"].iloc[0]
        p_rel, mags = [], []
        for _, ev in cat.iterrows():
            epi = (
                gps2dist_azimuth(
                    ev["latitude"], ev["longitude"], srow["latitude"], srow["longitude"]
                )[0]
                / 1000
            )
            tp = float(tt(np.array([epi]), float(np.clip(ev["depth"], 0.5, 29)))["tp"][0])
            p_rel.append(utc(ev["time"]) + tp - tr.stats.starttime)
            mags.append(float(ev["magnitude"]))
        p_rel, mags = np.array(p_rel), np.array(mags)
        p_all[sta] = (p_rel, mags)
        p15 = p_rel[mags >= 1.5]
        starts = np.arange(0, tr.stats.npts / FS - 60, 1.0)
        hit = np.array([np.any((p15 >= s) & (p15 < s + 60)) for s in starts])
        cover.append(hit.mean())
        lines.append(
            f"| CI.{sta} EHZ | {np.percentile(rms, 10):.2e} | {np.median(rms):.2e} | {np.percentile(rms, 90):.2e} | "
            f"{100 * hit.mean():.0f} % |"
        )
    rms_all = np.concatenate(rms_all)
    cfg = simmod.SimulationConfig()
    level_ratio = float(np.median(rms_all) / cfg.noise_rms_median)

    # Earthquakes in the raw records vs in NoiseBank windows, quiet-chunk screening, component order
    paths = sorted((data / "continuous").glob("*/*.mseed")) + sorted(
        (data / "continuous").glob("*/*.ms")
    )
    n_win = 200
    rec_rows, order_rows = [], []
    raw_z, bank_z, bank_h, order_ok, order_r = [], [], [], [], []
    rc_quiet_touched, rc_all_touched, rc_quiet_big, rc_all_big, is_rc = [], [], [], [], []
    gauss_z = []
    control_rng = np.random.default_rng(args.seed)
    for path in paths:
        bank = simmod.NoiseBank([path], seed=args.seed)
        if not bank.stations:
            rec_rows.append(f"| `{path.name}` | no usable record | | | | |")
            continue
        stored, quiet = bank.stations[0]
        n_chunks = stored.shape[1] // simmod.CHUNK
        w = NOISE_SAMPLES
        raw = stored[:, : stored.shape[1] // w * w].reshape(stored.shape[0], -1, w)
        raw_share = [spike_fraction(raw[c]) for c in range(stored.shape[0])]
        wins = np.stack([bank.window(NOISE_SAMPLES) for _ in range(n_win)])
        win_share = [spike_fraction(wins[:, c]) for c in range(3)]
        # Control: Gaussian chunks with the RMS values of the kept Z chunks, joined at random (level mixing only)
        chunk_rms = np.sqrt(
            np.mean(stored[0, : n_chunks * simmod.CHUNK].reshape(n_chunks, -1)[quiet] ** 2, axis=1)
        )
        k = NOISE_SAMPLES // simmod.CHUNK
        gauss = control_rng.standard_normal((n_win, k, simmod.CHUNK))
        gauss *= control_rng.choice(chunk_rms, size=(n_win, k))[:, :, None]
        gauss_share = spike_fraction(gauss.reshape(n_win, -1))
        gauss_z.append(gauss_share)
        is_rc.append(RIDGECREST.split("/")[-1] in str(path))
        raw_z.append(raw_share[0])
        bank_z.append(win_share[0])
        bank_h.append(max(win_share[1:]))
        extra = ""
        sta = next((s for s in RC_STATIONS if f"CI.{s}." in path.name), None)
        # Catalogued Ridgecrest events in the kept chunks: predicted P inside the chunk or up to 20 s before it
        if sta is not None:
            p_rel, p_mag = p_all[sta]
            chunk_t = np.arange(n_chunks)[:, None] * simmod.CHUNK / FS
            inside = (p_rel[None] < chunk_t + simmod.CHUNK / FS) & (p_rel[None] > chunk_t - 20.0)
            touched, big = inside.any(axis=1), (inside & (p_mag[None] >= 2.5)).any(axis=1)
            extra = (
                f"; any M: {100 * touched[quiet].mean():.0f} % of kept, {100 * touched.mean():.0f} % of all; "
                f"M >= 2.5: {100 * big[quiet].mean():.0f} % / {100 * big.mean():.0f} %"
            )
            rc_quiet_touched.append(float(touched[quiet].mean()))
            rc_all_touched.append(float(touched.mean()))
            rc_quiet_big.append(float(big[quiet].mean()))
            rc_all_big.append(float(big.mean()))
        comps = "Z" if stored.shape[0] == 1 else "Z, N/1, E/2"
        rec_rows.append(
            f"| `{path.name}` | {comps} | {quiet.size} of {n_chunks} ({100 * quiet.size / n_chunks:.0f} %){extra} | "
            f"{', '.join(f'{100 * v:.1f}' for v in raw_share)} % | "
            f"{', '.join(f'{100 * v:.1f}' for v in win_share)} % | {100 * gauss_share:.1f} % |"
        )
        if stored.shape[0] == 3:
            channels = bank_channels(path)
            expected = ("Z", "N1", "E2")
            matches = [window_sources(bank.window(NOISE_SAMPLES), channels) for _ in range(20)]
            good = [
                all(name[-1] in expected[c] for c, (name, _) in enumerate(mt)) for mt in matches
            ]
            r_min = min(r for mt in matches for _, r in mt)
            order_ok.append(all(good))
            order_r.append(r_min)
            counts = [
                "/".join(sorted({mt[c][0] for mt in matches})) for c in range(3)
            ]  # channels seen per component
            order_rows.append(
                f"`{path.name}`: Z <- {counts[0]}, N <- {counts[1]}, E <- {counts[2]} "
                f"({sum(good)}/{len(good)} windows as expected, min r {r_min:.3f})"
            )
    all_bank = simmod.NoiseBank(paths, seed=args.seed)
    all_wins = np.stack([all_bank.window(NOISE_SAMPLES) for _ in range(2 * n_win)])
    bank_any = float(np.mean([spike_fraction(w_) > 0 for w_ in all_wins]))
    bank_all_z = spike_fraction(all_wins[:, 0])

    # simulate_dataset on the Ridgecrest hour catalogue (text times with a '+00:00' offset)
    stations = simmod.load_stations(data / "stations/western_us_stations.csv", time=2019.5)
    stations = stations[stations["network"] == "CI"].reset_index(drop=True)
    cat_cfg = simmod.SimulationConfig(n_events=2, max_stations=4, seed=args.seed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            simmod.simulate_dataset(tmp, stations, catalog=cat, config=cat_cfg, tt=tt)
            meta = pd.read_csv(Path(tmp) / "metadata.csv")
        events = meta.drop_duplicates("source_id")
        diffs = []
        for _, ev in events.iterrows():
            match = cat[
                np.isclose(cat["latitude"], ev["source_latitude_deg"])
                & np.isclose(cat["longitude"], ev["source_longitude_deg"])
            ]
            diffs.append(
                min(
                    abs(obspy.UTCDateTime(ev["source_origin_time"]) - utc(t)) for t in match["time"]
                )
            )
        cat_ok = len(events) == cat_cfg.n_events and max(diffs) < 0.001
        cat_msg = (
            f"{len(events)} events, {len(meta)} traces written; max |`source_origin_time` - catalogue time| "
            f"{max(diffs):.3f} s"
        )
    except Exception as exc:  # a failure is the finding
        cat_ok = False
        cat_msg = f"`simulate_dataset` raises `{type(exc).__name__}: {exc}`"

    # Start-time consistency of the simulated metadata: P implied by start + P sample vs origin + TT + elevation
    implied = []
    for _, row in sim_meta.iterrows():
        t_start = obspy.UTCDateTime(row["trace_start_time"])
        t_p = (
            t_start
            + row["trace_p_arrival_sample"] / FS
            - obspy.UTCDateTime(row["source_origin_time"])
        )
        tp = float(tt(np.array([row["path_ep_distance_km"]]), row["source_depth_km"])["tp"][0])
        delay = row["station_elevation_m"] / 1000 / simmod.SOCAL_LAYERS[0][1]
        implied.append((t_p - tp - delay, delay))
    implied = np.array(implied)
    start_ok = float(np.abs(implied[:, 0]).max())
    n_rc = sum(1 for q in paths if RIDGECREST.split("/")[-1] in str(q))
    is_rc = np.array(is_rc, dtype=bool)
    raw_z, bank_z = np.array(raw_z), np.array(bank_z)

    def share(values: np.ndarray, sel: np.ndarray) -> float:
        return float(values[sel].mean()) if sel.any() else float("nan")

    rep.numbers.update(
        noise_rc_p10=float(np.percentile(rms_all, 10)),
        noise_rc_median=float(np.median(rms_all)),
        noise_level_ratio=level_ratio,
        noise_window_event_fraction=float(np.mean(cover)),
        noise_pre_event_median=float(pairs["noise_rms"].median()),
        spikes_raw_rc=share(raw_z, is_rc),
        spikes_raw_pnw=share(raw_z, ~is_rc),
        spikes_bank_rc=share(bank_z, is_rc),
        spikes_bank_pnw=share(bank_z, ~is_rc),
        spikes_bank_h_max=float(max(bank_h)),
        spikes_bank_all_z=bank_all_z,
        spikes_bank_all_any=bank_any,
        spikes_raw_mean=float(np.mean(raw_z)),
        n_bank_windows=len(all_wins),
        start_time_offset_max=start_ok,
        elev_delay_max=float(implied[:, 1].max()),
        noise_files=len(paths),
        noise_files_rc=n_rc,
        order_ok=float(bool(order_ok) and all(order_ok)),
        order_r_min=float(min(order_r)) if order_r else float("nan"),
        catalog_ok=float(cat_ok),
    )
    rep.numbers["rc_quiet_touched"] = float(np.mean(rc_quiet_touched or [np.nan]))
    rep.numbers["rc_all_touched"] = float(np.mean(rc_all_touched or [np.nan]))
    rep.numbers["rc_quiet_big"] = float(np.mean(rc_quiet_big or [np.nan]))
    rep.numbers["rc_all_big"] = float(np.mean(rc_all_big or [np.nan]))
    rep.numbers["spikes_gauss_max"] = float(max(gauss_z))
    rep.extra["order_lines"] = "; ".join(order_rows)
    rep.extra["cat_msg"] = cat_msg
    rep.add(
        f"""
## 5. Noise and metadata checks

**Noise level.** RMS of the real Ridgecrest EHZ records (1 Hz high-pass) in 10 s windows over the whole hour
(aftershock sequence: includes events), m/s; last column: share of 60 s windows that contain the predicted P of
at least one catalogued M >= 1.5 event.

| record | 10th pct | median | 90th pct | 60 s windows with a catalogued M >= 1.5 P |
|---|---|---|---|---|
{chr(10).join(lines)}

Median pre-event noise RMS of the {len(pairs)} selected windows (0.5 Hz high-pass): {pairs["noise_rms"].median():.2e} m/s.
`SimulationConfig` draws noise RMS log-normally around {cfg.noise_rms_median:g} m/s
(sigma_ln {cfg.noise_rms_sigma_ln}); the median 10 s RMS of these records is {level_ratio:.1f} times that, the
median pre-event RMS of the selected windows {pairs["noise_rms"].median() / cfg.noise_rms_median:.1f} times.

**Earthquakes in the noise.** `NoiseBank` keeps only 10 s chunks (`CHUNK` = {simmod.CHUNK} samples) it screens
as quiet on Z and joins random ones into each window. Per noise file: chunks kept (for the Ridgecrest records also
the share of kept and of all chunks that hold the predicted P of a catalogued event, or lie within 20 s after it),
and the share of {NOISE_SAMPLES}-sample windows whose peak exceeds {SPIKE_RATIO:g} times their RMS (Gaussian
noise: practically never), in consecutive windows of the preprocessed record (as `NoiseBank` stores it) and in
{n_win} `NoiseBank.window({NOISE_SAMPLES})` outputs of a bank built from that file alone; components Z, N/1, E/2
(a Z-only record's "horizontals" are other Z chunks). Control: the same share for Gaussian noise chunks carrying
the RMS values of the kept Z chunks, joined at random, i.e. what the mixing of chunk levels alone produces.

| file | components | chunks kept (Ridgecrest: with a catalogued event) | raw windows > {SPIKE_RATIO:g} x RMS | `NoiseBank.window` > {SPIKE_RATIO:g} x RMS | control |
|---|---|---|---|---|---|
{chr(10).join(rec_rows)}

A bank of all {len(paths)} files, as `simulate_dataset` uses it ({n_rc} of them from the Ridgecrest aftershock
hour), {len(all_wins)} windows: {100 * bank_all_z:.1f} % have such a peak on Z, {100 * bank_any:.1f} % on any
component; the raw records average {100 * np.mean(raw_z):.1f} % on Z.

**Component order of the noise windows.** Each component of 20 `NoiseBank.window` outputs per three-component
file is matched (correlation of its first, un-faded 9.5 s) against every 10 s chunk of every channel of the file,
preprocessed as `NoiseBank` does; expected Z <- Z, N <- N/1, E <- E/2: {"; ".join(order_rows)}:
**{"PASS" if rep.numbers["order_ok"] else "FAIL"}**.

**Catalogue times.** `load_catalog` returns the `time` column as text; the shared Ridgecrest hour catalogue
(`{RIDGECREST}/catalog_comcat_2019-07-06T08.csv`) writes it as `{cat["time"].iloc[0]}`.
`simulate_dataset(catalog=<that catalogue>, SimulationConfig(n_events={cat_cfg.n_events},
max_stations={cat_cfg.max_stations}))` (coloured Gaussian noise): {cat_msg}: **{"PASS" if cat_ok else "FAIL"}**.

**Absolute times in the simulated metadata.** `trace_start_time + trace_p_arrival_sample / 100 - origin` minus
(table P time + station-elevation delay): max |difference| {start_ok:.3f} s over {len(sim_meta)} traces
(start times are rounded to the 10 ms sample grid), elevation delays up to {implied[:, 1].max():.2f} s:
**{"PASS" if start_ok <= 0.011 else "FAIL"}**.
"""
    )


# ----------------------------------------------------------------------------------------- findings

#: Differences (log10) below this are reported as agreement
TOL = 0.1


def compare(sim: float, real: float, tol: float = TOL) -> int:
    """+1 / -1 when ``sim`` is above / below ``real`` by more than ``tol``, else 0."""
    return 0 if abs(sim - real) <= tol else (1 if sim > real else -1)


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def write_findings(rep: Report, args: argparse.Namespace) -> None:
    """The 'Where the simulator differs from reality' section, every statement from a number of this run."""
    n = rep.numbers
    f = rep.findings

    # Amplitudes
    level = {0: "about right", 1: "too large", -1: "too small"}[compare(n["amp_res_median"], 0.0)]
    scaling = {0: "as in the data", 1: "steeper than real", -1: "shallower than real"}[
        compare(n["b_sim"], n["b_real"])
    ]
    ml_flat = abs(n["ml_bb_slope"]) < 0.05
    text = (
        f"**Vertical amplitudes: level {level}, magnitude scaling {scaling}.** Ridgecrest peak vertical velocity "
        f"({int(n['n_pairs'])} windows, {int(n['n_events'])} events): log10(simulated / real) median "
        f"{n['amp_res_median']:+.2f} (factor {10 ** n['amp_res_median']:.2f}), std {n['amp_res_std']:.2f} "
        f"({n['amp_res_noisy_median']:+.2f} / {n['amp_res_noisy_std']:.2f} with real noise added); "
        f"{n['amp_res_m25']:+.2f} below M2.5 and {n['amp_res_m3']:+.2f} from M3. Magnitude scaling b: real "
        f"{n['b_real']:.2f}, simulated {n['b_sim']:.2f}; scatter about a (M, log R) fit: real {n['sd_real']:.2f}, "
        f"simulated {n['sd_sim']:.2f} log10. The simulator's ML residual (broadband loop) has a slope of "
        f"{n['ml_bb_slope']:+.3f} per unit M"
    )
    if ml_flat and compare(n["b_sim"], n["b_real"]) != 0:
        text += (
            ", i.e. its horizontal Wood-Anderson amplitudes scale as Hutton & Boore, so the different scaling is in "
            "the peak vertical velocity relative to them (candidates: the constant median stress drop, the ML-to-Mw "
            f"relation), not separable with {int(n['n_events'])} events."
        )
    else:
        text += "."
    f.append(text)

    # Polarisation
    short = ("P/S Z", "P/S H", "H/Z S", "H/Z P", "Ridgecrest level")
    words = {
        (0, 1): "P too strong relative to S on Z",
        (0, -1): "P too weak relative to S on Z",
        (1, 1): "P too strong relative to S on the horizontals",
        (1, -1): "P too weak relative to S on the horizontals",
        (2, 1): "S too horizontal",
        (2, -1): "S too vertical (H/Z too small)",
        (3, 1): "P too horizontal",
        (3, -1): "P too vertical",
    }
    descs = [
        words[(k, c)]
        for k in range(4)
        if (c := compare(n[f"ratio{k}_sim"], n[f"ratio{k}_real"])) != 0
    ]
    layers = rep.extra["whatif_layers"].split("; ")
    real_vals = [n[f"ratio{k}_real"] for k in range(4)] + [0.0]
    base_vals = [n[f"ratio{k}_sim"] for k in range(4)] + [n["amp_res_median"]]
    whatif_parts = []
    for j, lay in enumerate(layers):
        vals = [n[f"whatif{j}_ratio{k}"] for k in range(4)] + [n[f"whatif{j}_amp_median"]]
        closer = [
            short[k]
            for k in range(5)
            if abs(vals[k] - real_vals[k]) < abs(base_vals[k] - real_vals[k]) - 0.02
        ]
        worse = [
            short[k]
            for k in range(5)
            if abs(vals[k] - real_vals[k]) > abs(base_vals[k] - real_vals[k]) + 0.02
        ]
        whatif_parts.append(
            f"Vp/Vs {lay} km/s (P {n[f'whatif{j}_inc_p_50']:.0f}, S {n[f'whatif{j}_inc_s_50']:.0f} deg at 50 km): "
            f"{', '.join(f'{v:+.2f}' for v in vals)}; closer to real: {', '.join(closer) or 'none'}; further: "
            f"{', '.join(worse) or 'none'}"
        )
    f.append(
        f"**Polarisation: {'; '.join(descs) or f'within {TOL} log10 of the data'}.** STEAD (gain-free, log10) P/S on "
        f"Z: real {n['ratio0_real']:+.2f}, simulated {n['ratio0_sim']:+.2f}; P/S on the horizontals "
        f"{n['ratio1_real']:+.2f} vs {n['ratio1_sim']:+.2f}; H/Z in the S window {n['ratio2_real']:+.2f} vs "
        f"{n['ratio2_sim']:+.2f}; H/Z in the P window {n['ratio3_real']:+.2f} vs {n['ratio3_sim']:+.2f}. The "
        f"simulator projects P and S with incidence angles refracted into its Vp {simmod.SURFACE_VP:g} / Vs "
        f"{simmod.SURFACE_VS:g} km/s near-surface layer: measured on its output at 50 km (8 km depth) P "
        f"{n['incidence_p_50']:.0f} and S {n['incidence_s_50']:.0f} deg from vertical (TauP top layer: "
        f"{n['incidence_top_p_50']:.0f}, {n['incidence_top_s_50']:.0f} deg). What-if with slower layers "
        f"(section 3; the four ratios and the Ridgecrest level, in that order; changes under 0.02 ignored): "
        + "; ".join(whatif_parts)
        + "."
    )

    # Envelopes
    gap_c = compare(n["env_gap_sim"], n["env_gap_real"])
    coda_c = compare(n["env_coda_sim_above_floor"], n["env_coda_above_floor"])
    gap_word = {
        0: "P-to-S envelope about right",
        -1: "too deep a trough between P and S",
        1: "too much energy between P and S",
    }
    coda_word = {
        0: "S coda 20 s after S about right",
        -1: "S coda too weak 20 s after S",
        1: "S coda too strong 20 s after S",
    }
    f.append(
        f"**Envelopes: {gap_word[gap_c]}; {coda_word[coda_c]}.** Ridgecrest vertical envelopes, medians over the "
        f"bins (simulations with the real noise added): envelope 60 % of the way from P to S relative to the P peak "
        f"real {n['env_gap_real']:+.2f}, simulated {n['env_gap_sim']:+.2f} log10; envelope 20 s after S relative "
        f"to the S peak real {n['env_coda_real']:+.2f}, simulated {n['env_coda_sim']:+.2f} with noise and "
        f"{n['env_coda_clean_min']:+.2f} to {n['env_coda_clean_max']:+.2f} noise-free; relative to the real "
        f"pre-event noise floor (the same noise is in both) real {n['env_coda_above_floor']:+.2f}, simulated "
        f"{n['env_coda_sim_above_floor']:+.2f}. S-coda e-folding time (S + 2 to S + 15 s): real "
        f"{n['efold_real']:.1f} s, simulated {n['efold_simn']:.1f} s with noise and {n['efold_clean']:.1f} s "
        f"noise-free ({n['efold_clean_min']:.1f}-{n['efold_clean_max']:.1f} s over the bins; the real and noisy "
        "values are lengthened by the noise floor)."
    )

    # Spectra
    hf_short = n["band_hi_max"] < n["band_lo_min"]
    text = (
        f"**Spectral shape.** Simulated / real vertical spectra in the four bins: with real noise "
        f"{n['band_lo_min']:+.2f} to {n['band_lo_max']:+.2f} log10 at 1-10 Hz and {n['band_hi_min']:+.2f} to "
        f"{n['band_hi_max']:+.2f} at 10-30 Hz; noise-free {n['band_clean_lo_min']:+.2f} to "
        f"{n['band_clean_lo_max']:+.2f} and {n['band_clean_hi_min']:+.2f} to {n['band_clean_hi_max']:+.2f}."
    )
    if hf_short:
        text += (
            " Relative to 1-10 Hz the simulations lack high frequencies at these stations (the simulator's "
            f"high-frequency fall-off: kappa filter, Q(f) = {simmod.Q_S:g} f^{simmod.Q_EXPONENT:g} for S, and the "
            "source corner; which one is not separable here)."
        )
    text += (
        f" Peak frequencies of the smoothed spectra: real signal {n['fpeak_real_min']:.1f}-"
        f"{n['fpeak_real_max']:.1f} Hz, real pre-event noise {n['fpeak_noise_min']:.1f}-{n['fpeak_noise_max']:.1f} "
        f"Hz, noise-free simulations {n['fpeak_sim_min']:.1f}-{n['fpeak_sim_max']:.1f} Hz."
    )
    overlap = max(n["fpeak_real_min"], n["fpeak_noise_min"]) <= 1.5 * min(
        n["fpeak_real_max"], n["fpeak_noise_max"]
    )
    if overlap and n["fpeak_sim_max"] < n["fpeak_real_min"]:
        text += (
            " Real signal and real noise peak in the same band, above the simulations: a site response at these "
            f"stations, which the simulator models only as a frequency-independent factor (sigma "
            f"{simmod.SITE_SIGMA_LOG10} log10)."
        )
    f.append(text)

    # ML
    sp_default = inspect.signature(simmod.simulate_station).parameters["sensor_corner"].default
    ok = abs(n["ml_median"]) < 0.05
    f.append(
        f"**ML self-consistency** {'is fine' if ok else 'is off'}: `calibrate()` median {n['ml_median']:+.3f}, std "
        f"{n['ml_std']:.3f} (`simulate_station`'s default sensor, corner {sp_default:g} Hz); with the broadband "
        f"sensor used for half of `simulate_dataset`'s traces {n['ml_bb_median']:+.3f} (std {n['ml_bb_std']:.3f}; "
        f"{n['ml_bb_big']:+.3f} from M3). It validates the code against its own ML formula, not against data."
    )

    # Noise
    screen = (
        "barely selects against"
        if n["rc_quiet_big"] > 0.8 * n["rc_all_big"]
        else "removes only part of the"
    )
    f.append(
        f"**Noise level and content.** Default noise median {simmod.SimulationConfig().noise_rms_median:g} m/s vs "
        f"{n['noise_rc_median']:.1e} m/s (10th pct {n['noise_rc_p10']:.1e}; {n['noise_level_ratio']:.1f} times "
        f"the default) on the real Ridgecrest EHZ records the catalogue comes from, where "
        f"{100 * n['noise_window_event_fraction']:.0f} % of 60 s windows contain the P of a catalogued M >= 1.5 "
        f"aftershock. Windows with peak > {SPIKE_RATIO:g} x RMS on Z: raw records {100 * n['spikes_raw_rc']:.0f} % "
        f"(Ridgecrest) and {100 * n['spikes_raw_pnw']:.1f} % (PNW); `NoiseBank.window({NOISE_SAMPLES})` "
        f"{100 * n['spikes_bank_rc']:.1f} % and {100 * n['spikes_bank_pnw']:.1f} % (largest share on a "
        f"horizontal {100 * n['spikes_bank_h_max']:.1f} %; Gaussian control with the same chunk levels at most "
        f"{100 * n['spikes_gauss_max']:.1f} %); for the bank of all {int(n['noise_files'])} files "
        f"{100 * n['spikes_bank_all_z']:.1f} % on Z and {100 * n['spikes_bank_all_any']:.1f} % on any component. "
        f"The quiet-chunk screen {screen} catalogued events in the Ridgecrest records: "
        f"{100 * n['rc_quiet_big']:.0f} % of the kept chunks hold the predicted P of an M >= 2.5 event or lie "
        f"within 20 s after it, {100 * n['rc_all_big']:.0f} % of all chunks (any magnitude: "
        f"{100 * n['rc_quiet_touched']:.0f} % vs {100 * n['rc_all_touched']:.0f} %), so that part of the bank "
        "still carries unlabelled aftershock signal."
    )

    # Checks of fixed behaviour
    f.append(
        f"**Checks (section 5)**: noise-window component order {pass_fail(bool(n['order_ok']))} (min correlation "
        f"{n['order_r_min']:.3f}); `simulate_dataset` on the Ridgecrest hour catalogue "
        f"{pass_fail(bool(n['catalog_ok']))} ({rep.extra['cat_msg']}); metadata start times "
        f"{pass_fail(n['start_time_offset_max'] <= 0.011)} (max offset {n['start_time_offset_max']:.3f} s); "
        f"incidence angles as `SURFACE_VP`/`SURFACE_VS` imply {pass_fail(n['incidence_dev'] < 0.5)} "
        f"(max deviation {n['incidence_dev']:.2f} deg)."
    )

    # SNR
    d_stead = n["snr_stead_peak"] - n["snr_stead_eqt"]
    d_sim = n["snr_sim_peak"] - n["snr_sim_eqt"]
    onset = (
        "the first 2 s after P are weaker relative to the peak than in STEAD"
        if d_sim > d_stead + 3
        else "relative to its own peak the simulated P onset is not weaker than STEAD's, so the gap is in the "
        "overall signal level relative to the noise"
    )
    f.append(
        f"**SNR.** Medians (dB), STEAD vs simulated: stored metadata {n['snr_stead_meta']:.1f} vs "
        f"{n['snr_sim_meta']:.1f} (different definitions); measured peak / pre-P RMS {n['snr_stead_peak']:.1f} vs "
        f"{n['snr_sim_peak']:.1f}; EQTransformer-style 2 s ratio {n['snr_stead_eqt']:.1f} vs "
        f"{n['snr_sim_eqt']:.1f}. Peak-based minus 2 s SNR: STEAD {d_stead:.1f} dB, simulated {d_sim:.1f} dB: "
        f"{onset}. The sets differ (trace medians M{n['snr_stead_mag']:.2f} at {n['snr_stead_dist']:.0f} km vs "
        f"M{n['snr_sim_mag']:.2f} at {n['snr_sim_dist']:.0f} km), so this is not a like-for-like comparison. On "
        f"the simulated traces the measured peak SNR is {n['snr_sim_peak'] - n['snr_sim_meta']:+.1f} dB from the "
        "stored value (median)."
    )


def limitations() -> str:
    """Structural limitations of the simulator, independent of the numbers."""
    return f"""
Structural limitations (by design, not measured here):

- 1-D layered velocity model (Hadley & Kanamori 1977) for all of the western US; no 3-D structure, basins or
  station corrections, so real P and S times scatter around the table by more than the table's own error.
- Point source with a Brune omega-squared spectrum and a single corner frequency; no directivity, finite-fault or
  rupture-duration effects for the M4+ events in the catalogue.
- Geometric spreading 1/r at every distance (no Moho-reflection bump or 1/sqrt(r) Lg regime beyond ~50-100 km),
  one Q(f) and one kappa for every path and site; no path-specific attenuation.
- Site effects only as a random log-normal scalar (sigma {simmod.SITE_SIGMA_LOG10} log10): no site resonance or frequency-dependent
  amplification, no station-specific terms.
- The waveform is windowed Gaussian noise (stochastic method): no coherent phases besides the first P and S
  (no Pn/Pg/PmP or Sn/Sg/Lg pairs, no converted phases, no surface waves), an emergent onset set by the
  Saragoni-Hart envelope rather than an impulsive first motion, and polarisation from ray theory without the
  free-surface conversion (SV beyond the critical angle is not modelled).
- Noise is real only above 1 Hz (the noise bank high-passes at 1 Hz): broadband traces lack microseisms; the
  noise level is a log-normal draw, not tied to station or time.
- Magnitudes are ML converted to Mw with one relation (Ross et al. 2016); ML is checked only against the
  simulator's own Wood-Anderson/Hutton & Boore computation.
"""


def write_report(rep: Report, args: argparse.Namespace, out: Path, elapsed: float) -> None:
    """Write the Markdown report."""
    write_findings(rep, args)
    command = " ".join([".venv/bin/python", "benchmarks/validate_simulator.py", *sys.argv[1:]])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n = rep.numbers
    n_sim = int(
        n["n_sim_amplitude"]
        + n["n_sim_stead"]
        + n["n_sim_dataset"]
        + n["n_sim_whatif"]
        + args.calibrate_n
        + args.calibrate_bb_n
    )
    head = f"""# Simulator validation against real data

Validation of `sine_seisbench.data.simulate` (stochastic-method synthetics on real station geometry with real
noise) against real records. Generated by `benchmarks/validate_simulator.py`.

- Command: `{command}`
- Date: {now}; {platform.platform()}, Python {platform.python_version()}; run time {elapsed:.0f} s;
  about {n_sim} simulated traces in total; seed {args.seed}.
- Data (read at run time from `{args.data}`, not copied into the project; see `DATA.md` there):
  STEAD (Mousavi et al. 2019, doi:10.1109/ACCESS.2019.2947848; CC BY 4.0), 50 traces via
  smousavi05/EQTransformer; Ridgecrest 2019 continuous EHZ records and ComCat catalogue via the
  sun-hongyu/PhaseNO example and SeisSCOPED/QuakeScope; waveforms and catalogue from the Southern California
  Earthquake Data Center (SCEDC, doi:10.7909/C3WD3XH1) and the USGS ComCat (public domain); station list via
  SeisSCOPED/QuakeScope; PNW noise records (PB.B204, UW.SHW; PNSN/UW) via congcy/ELEP.
"""
    summary = (
        "\n## Where the simulator differs from reality\n\nMeasured in this run:\n\n"
        + "\n".join(f"- {line}" for line in rep.findings)
    )
    text = head + "\n" + "\n".join(rep.sections) + summary + "\n" + limitations()
    (out / "simulator_validation.md").write_text(text)


def main() -> None:
    """Parse arguments, run the sections, write figures and the report."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=here / "results")
    parser.add_argument("--data", type=Path, default=here.parent.parent / "shared" / "data")
    parser.add_argument("--tt-cache", type=Path, default=None, help="TravelTimes cache folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-mag", type=float, default=1.5)
    parser.add_argument("--min-snr", type=float, default=5.0, help="peak / noise RMS (linear)")
    parser.add_argument(
        "--realisations", type=int, default=3, help="simulations per Ridgecrest window"
    )
    parser.add_argument("--stead-realisations", type=int, default=2)
    parser.add_argument("--calibrate-n", type=int, default=200)
    parser.add_argument("--calibrate-bb-n", type=int, default=100)
    parser.add_argument("--sim-events", type=int, default=20)
    parser.add_argument(
        "--surface",
        default="3.0/1.5,2.0/1.0",
        help="what-if near-surface layers (slower than SURFACE_VP/SURFACE_VS), Vp/Vs in km/s, comma-separated",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    out: Path = args.out
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tt = simmod.TravelTimes(cache_dir=args.tt_cache)
    stead = sbd.WaveformDataset(
        args.data / "datasets/stead50", component_order="ZNE", sampling_rate=100
    )
    rep = Report()
    print("1. S-P times", flush=True)
    section_sp(tt, stead, rep, figdir)
    print("2. amplitudes", flush=True)
    pairs, sims = section_amplitude(rng, tt, args.data, args, rep, figdir)
    print("3. spectra, envelopes, ratios", flush=True)
    section_spectra(pairs, sims, rep, figdir)
    real_ratios = section_stead_ratios(rng, tt, stead, args, rep, figdir)
    section_whatif(rng, tt, stead, pairs, real_ratios, args, rep)
    print("4. SNR", flush=True)
    sim_meta = section_snr(tt, stead, args.data, args, rep, figdir)
    print("5. noise and metadata", flush=True)
    section_noise(tt, args.data, pairs, sim_meta, args, rep)
    write_report(rep, args, out, time.perf_counter() - t0)
    print(f"wrote {out / 'simulator_validation.md'} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
