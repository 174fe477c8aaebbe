"""Picking on real continuous records against reference picks (manual, or TauP times of catalogued events)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import seisbench.util as sbu
from obspy.geodetics import gps2dist_azimuth

from ..geometry import station_key
from ..stations import read_stations


@dataclass
class Reference:
    """One reference arrival: station ``NET.STA.LOC``, phase and time."""

    station: str
    phase: str
    time: obspy.UTCDateTime
    event: str = ""


def match_picks(
    picks: list[sbu.Pick], references: list[Reference], tolerance_s: float
) -> dict[str, float]:
    """Matches each reference to the nearest pick of the same station and phase within ``tolerance_s``.

    :return: recall, residual mean/std/MAE (pick − reference, s) for P and S, and the number of picks matching no
             reference ("unmatched").
    """
    by_key: dict[tuple[str, str], list[sbu.Pick]] = {}
    for p in picks:
        by_key.setdefault((station_key(p.trace_id), p.phase), []).append(p)
    used: set[int] = set()
    out: dict[str, float] = {}
    for phase in ("P", "S"):
        refs = [r for r in references if r.phase == phase]
        residuals = []
        for ref in refs:
            cands = by_key.get((ref.station, phase), [])
            best = min(cands, key=lambda p: abs(p.peak_time - ref.time), default=None)
            if best is not None and abs(best.peak_time - ref.time) <= tolerance_s:
                residuals.append(best.peak_time - ref.time)
                used.add(id(best))
        res = np.array(residuals)
        out[f"{phase}_references"] = len(refs)
        out[f"{phase}_recall"] = len(res) / len(refs) if refs else float("nan")
        out[f"{phase}_residual_mean_s"] = float(res.mean()) if res.size else float("nan")
        out[f"{phase}_residual_std_s"] = float(res.std()) if res.size else float("nan")
        out[f"{phase}_residual_mae_s"] = float(np.abs(res).mean()) if res.size else float("nan")
    out["picks"] = len(picks)
    out["unmatched_picks"] = sum(1 for p in picks if id(p) not in used and p.phase in ("P", "S"))
    return out


def pnw_references(folder: Path) -> list[Reference]:
    """Manual PNSN P and S picks of the ``pnw_2022-02-06`` records (``*.2022.037.csv``)."""
    refs = []
    for path in sorted(folder.glob("*.csv")):
        frame = pd.read_csv(path)
        for row in frame.itertuples():
            loc = "" if str(row.location) in ("--", "nan") else str(row.location)
            refs.append(
                Reference(
                    f"{row.network}.{row.station}.{loc}",
                    str(row.phase).upper()[:1],
                    obspy.UTCDateTime(float(row.timestamp)),
                    str(row.source_id),
                )
            )
    return refs


def phaseno_stations(folder: Path) -> pd.DataFrame:
    """Coordinates of the Ridgecrest record's stations from its ``stations_phaseno.csv`` (read with
    :func:`~sine_seisbench.stations.read_stations`), one row per network and station, elevation 0 m (the file
    has none); the file's other columns (``id``, ``channel``, ...) are kept."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"station file .* has no elevation column")
        frame = read_stations(folder / "stations_phaseno.csv")
    return frame.drop_duplicates(subset=["network", "station"]).assign(elevation=0.0)


def read_records(folder: Path, patterns: tuple[str, ...] = ("*.ms", "*.mseed")) -> obspy.Stream:
    stream = obspy.Stream()
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            stream += obspy.read(str(path))
    return stream


def ridgecrest_references(
    folder: Path,
    stream: obspy.Stream,
    coordinates: dict[str, tuple[float, float, float]],
    tt,
    min_snr: float = 5.0,
) -> list[Reference]:
    """TauP P times of the catalogued events at the recording stations, kept where the record's SNR > ``min_snr``
    (peak in 2 s after the predicted P over the RMS of the 5 s before it, 2-20 Hz)."""
    catalog = pd.read_csv(folder / "catalog_comcat_2019-07-06T08.csv")
    filtered = stream.copy().detrend("demean").filter("bandpass", freqmin=2.0, freqmax=20.0)
    refs = []
    for ev in catalog.itertuples():
        origin = obspy.UTCDateTime(pd.Timestamp(ev.time).timestamp())
        for tr in filtered:
            key = station_key(tr.id)
            if key not in coordinates:
                continue
            lat, lon, elev = coordinates[key]
            dist = gps2dist_azimuth(ev.latitude, ev.longitude, lat, lon)[0] / 1000
            if dist > tt.max_distance_km:
                continue
            tp = float(tt(np.array([dist]), float(ev.depth))["tp"][0]) + elev / 1000 / 5.5
            t = origin + tp
            sig = tr.slice(t, t + 2).data
            noise = tr.slice(t - 5, t - 0.5).data
            if sig.size < 100 or noise.size < 100:
                continue
            snr = np.abs(sig).max() / (np.sqrt(np.mean(noise**2)) + 1e-30)
            if snr > min_snr:
                refs.append(Reference(key, "P", t, str(ev.id)))
    return refs


def phaseno_picks(folder: Path, stations: set[str]) -> list[sbu.Pick]:
    """PhaseNO's published model picks (another multi-station picker) for the given ``NET.STA.LOC`` stations."""
    picks = []
    for item in json.loads((folder / "picks_phaseno_model_output.json").read_text()):
        net, sta = item["id"].split(".")[:2]
        key = f"{net}.{sta}."
        if key not in stations:
            continue
        t = obspy.UTCDateTime(item["timestamp"])
        picks.append(sbu.Pick(key, t, t, t, item["prob"], item["type"].upper()))
    return picks


def events_seen(
    picks: list[sbu.Pick], references: list[Reference], tolerance_s: float, min_stations: int
) -> dict:
    """How many reference events have matched P picks at ``min_stations`` or more stations."""
    per_event: dict[str, set[str]] = {}
    events = {r.event for r in references}
    for ref in references:
        for p in picks:
            if (
                p.phase == "P"
                and station_key(p.trace_id) == ref.station
                and abs(p.peak_time - ref.time) <= tolerance_s
            ):
                per_event.setdefault(ref.event, set()).add(ref.station)
                break
    seen = sum(1 for s in per_event.values() if len(s) >= min_stations)
    return {"events_with_references": len(events), f"events_seen_by_{min_stations}": seen}
