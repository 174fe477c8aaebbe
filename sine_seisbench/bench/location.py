"""Joint location and magnitude of SINE against the classical chain (picker → associate/locate → ML), and how
both degrade when stations are lost or noise grows (the paper's inter-task dependence claim)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import obspy
import seisbench.data as sbd
from obspy.geodetics import gps2dist_azimuth
from tqdm.auto import tqdm

from ..demo import dataset_to_stream
from ..geometry import Coordinates


def event_streams(dataset: sbd.WaveformDataset, max_events: int | None = None):
    """Yields (truth dict, Stream, Inventory) per event of a simulated SeisBench dataset."""
    meta = dataset.metadata
    for n, (event_id, rows) in enumerate(meta.groupby("source_id", sort=True)):
        if max_events is not None and n >= max_events:
            break
        sub = dataset.filter(meta["source_id"] == event_id, inplace=False)
        stream, inventory = dataset_to_stream(sub)
        # Records start at different times: zero-pad them to one span (zeros are masked as missing data)
        stream.trim(
            min(tr.stats.starttime for tr in stream),
            max(tr.stats.endtime for tr in stream),
            pad=True,
            fill_value=0.0,
        )
        r = rows.iloc[0]
        truth = {
            "event": event_id,
            "time": obspy.UTCDateTime(r["source_origin_time"]),
            "latitude": float(r["source_latitude_deg"]),
            "longitude": float(r["source_longitude_deg"]),
            "depth_km": float(r["source_depth_km"]),
            "magnitude": float(r["source_magnitude"]),
            "stations": len(rows),
        }
        yield truth, stream, inventory


def _errors(truth: dict, est: dict | None) -> dict:
    if est is None:
        return {"found": False}
    epi = (
        gps2dist_azimuth(truth["latitude"], truth["longitude"], est["latitude"], est["longitude"])[
            0
        ]
        / 1000
    )
    return {
        "found": True,
        "epicentral_error_km": epi,
        "depth_error_km": est["depth_km"] - truth["depth_km"],
        "magnitude_error": (est["magnitude"] - truth["magnitude"])
        if est.get("magnitude") is not None
        else math.nan,
        "origin_time_error_s": est["time"] - truth["time"],
    }


def sine_estimate(model, stream: obspy.Stream, inventory, truth: dict, **kwargs) -> dict | None:
    """SINE's event nearest to the true origin time (within 10 s)."""
    out = model.classify(stream, inventory=inventory, **kwargs)
    best = None
    for ev in out.events:
        o, m = ev.preferred_origin(), ev.preferred_magnitude()
        if abs(o.time - truth["time"]) <= 10 and (
            best is None or abs(o.time - truth["time"]) < abs(best["time"] - truth["time"])
        ):
            best = {
                "latitude": o.latitude,
                "longitude": o.longitude,
                "depth_km": o.depth / 1000,
                "magnitude": m.mag if m else None,
                "time": o.time,
            }
    return best


def chain_estimate(
    picker,
    stream: obspy.Stream,
    inventory,
    truth: dict,
    tt,
    pick_perturbation: Callable | None = None,
) -> dict | None:
    """The classical chain: the picker's picks → association → grid-search location → ML."""
    from .chain import run_chain

    coordinates = {
        f"{n.code}.{s.code}.": Coordinates(s.latitude, s.longitude, s.elevation)
        for n in inventory
        for s in n
    }
    picks = picker.classify(stream).picks
    if pick_perturbation is not None:
        picks = pick_perturbation(picks)
    try:
        events = run_chain(stream, picks, coordinates, tt)
    except ValueError:
        return None
    best = None
    for ev in events:
        t = ev["origin_time"]
        if abs(t - truth["time"]) <= 10 and (
            best is None or abs(t - truth["time"]) < abs(best["time"] - truth["time"])
        ):
            best = {
                "latitude": ev["latitude"],
                "longitude": ev["longitude"],
                "depth_km": ev["depth_km"],
                "magnitude": ev.get("magnitude"),
                "time": t,
            }
    return best


def summarise(rows: list[dict]) -> dict:
    found = [r for r in rows if r.get("found")]
    if not found:
        return {"events": len(rows), "located": 0}
    epi = np.array([r["epicentral_error_km"] for r in found])
    depth = np.array([r["depth_error_km"] for r in found])
    mag = np.array([r["magnitude_error"] for r in found], dtype=float)
    return {
        "events": len(rows),
        "located": len(found),
        "epicentral_median_km": float(np.median(epi)),
        "epicentral_mean_km": float(np.mean(epi)),
        "epicentral_p90_km": float(np.percentile(epi, 90)),
        "depth_mae_km": float(np.mean(np.abs(depth))),
        "magnitude_mae": float(np.nanmean(np.abs(mag))) if np.isfinite(mag).any() else math.nan,
    }


def degrade(
    stream: obspy.Stream,
    rng: np.random.Generator,
    drop_fraction: float = 0.0,
    noise_factor: float = 0.0,
) -> obspy.Stream:
    """Drops a fraction of the stations (keeping at least 3) and adds Gaussian noise scaled to each trace's
    pre-event RMS times ``noise_factor``."""
    stations = sorted({tr.id.rsplit(".", 1)[0] for tr in stream})
    n_drop = min(int(round(drop_fraction * len(stations))), max(0, len(stations) - 3))
    dropped = set(rng.choice(stations, size=n_drop, replace=False)) if n_drop else set()
    out = obspy.Stream([tr.copy() for tr in stream if tr.id.rsplit(".", 1)[0] not in dropped])
    if noise_factor > 0:
        for tr in out:
            recorded = tr.data[tr.data != 0]  # skip zero padding
            ref = np.sqrt(np.mean(recorded[:500] ** 2)) + 1e-12 if recorded.size else 1e-12
            tr.data = tr.data + rng.normal(0, noise_factor * ref, tr.data.size)
    return out


def location_benchmark(
    dataset: sbd.WaveformDataset,
    sine,
    pickers: dict,
    tt,
    max_events: int | None = None,
    drop_fractions: tuple[float, ...] = (0.0,),
    noise_factors: tuple[float, ...] = (0.0,),
    seed: int = 0,
    pick_jitters: tuple[float, ...] = (),
) -> list[dict]:
    """Rows of per-event errors for SINE and each picker's chain under every degradation.

    ``pick_jitters`` (s) additionally perturbs the chain's picks (Gaussian, and a third of them removed) without
    degrading the waveforms: the chain's location depends on its picks, SINE's does not take picks as input."""
    rng = np.random.default_rng(seed)
    rows = []
    events = list(event_streams(dataset, max_events))
    for truth, stream, inventory in tqdm(events, desc="location"):
        for drop in drop_fractions:
            for noise in noise_factors:
                st = degrade(stream, rng, drop, noise)
                base = {
                    "event": truth["event"],
                    "drop_fraction": drop,
                    "noise_factor": noise,
                    "magnitude": truth["magnitude"],
                }
                rows.append(
                    {
                        **base,
                        "method": "SINE",
                        **_errors(truth, sine_estimate(sine, st, inventory, truth)),
                    }
                )
                for name, picker in pickers.items():
                    est = chain_estimate(picker, st, inventory, truth, tt)
                    rows.append({**base, "method": f"{name} chain", **_errors(truth, est)})
        for jitter in pick_jitters:
            for name, picker in pickers.items():
                perturb = _pick_perturbation(rng, jitter, drop=1 / 3)
                est = chain_estimate(
                    picker, stream, inventory, truth, tt, pick_perturbation=perturb
                )
                rows.append(
                    {
                        "event": truth["event"],
                        "drop_fraction": 0.0,
                        "noise_factor": 0.0,
                        "pick_jitter_s": jitter,
                        "magnitude": truth["magnitude"],
                        "method": f"{name} chain",
                        **_errors(truth, est),
                    }
                )
    return rows


def _pick_perturbation(rng: np.random.Generator, jitter_s: float, drop: float) -> Callable:
    def perturb(picks):
        import seisbench.util as sbu

        out = sbu.PickList()
        for p in picks:
            if rng.uniform() < drop:
                continue
            dt = float(rng.normal(0, jitter_s))
            out.append(
                sbu.Pick(
                    p.trace_id,
                    p.start_time + dt,
                    p.end_time + dt,
                    p.peak_time + dt,
                    p.peak_value,
                    p.phase,
                )
            )
        return out

    return perturb
