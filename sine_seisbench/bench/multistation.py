"""Multi-station benchmark stages: every loaded model (SINE, PhaseNet, EQTransformer) side by side on

* ``iceland``: 27 QuakeMigrate-located events at 12 stations (``DATA/events/iceland_qm_2014-08-24``). Agreement
  with QuakeMigrate's **automatic** P and S picks (not ground truth) at an equal false-pick rate: each model's
  threshold is the lowest one whose picks matching no QuakeMigrate pick number at most
  :data:`ICELAND_FALSE_RATE` per station-window and phase; agreement at the default threshold 0.3 alongside.
* ``colombia``: the last 2 h (23:00-01:00 UTC) of the Mesetas aftershock records
  (``DATA/continuous/colombia_2019-12-24``; the first 4 h are training data and are never read here). Reference
  picks: the teacher (PhaseNet ``original`` at threshold 0.3 on the same data) and SeisMonitor's automatic
  PhaseNet and EQTransformer picks of the same span.
* ``simulated_low_snr``: simulated multi-station events with real noise scaled to a low P signal-to-noise ratio;
  P recall at a fixed precision (:data:`TARGET_PRECISION`).

Every stage annotates once per model and reads picks from the probability traces with SeisBench's trigger
(:meth:`seisbench.models.WaveformModel.picks_from_annotations`, the rule of every model's ``classify``) at each
threshold of a sweep. SINE gets the station coordinates (``inventory=``); the single-station pickers do not need
them. Matching (:func:`match_times`): a reference is matched when a pick of the same station (and window) and
phase lies within the tolerance; a pick is unmatched when no reference lies within the tolerance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import obspy
import pandas as pd
import seisbench.models as sbm

from ..data.layout import DataLayout, as_layout
from ..geometry import station_key
from ..stations import read_stations

#: Threshold sweep of every stage.
THRESHOLDS: tuple[float, ...] = tuple(round(float(t), 2) for t in np.arange(0.02, 0.985, 0.01))
#: Default pick threshold of all three models.
DEFAULT_THRESHOLD = 0.3
#: Iceland: tolerance (s) to count a pick as agreeing with a QuakeMigrate pick.
ICELAND_TOLERANCE_S = 0.5
#: Iceland: the common false-pick rate, unmatched picks per station-window and phase.
ICELAND_FALSE_RATE = 0.1
#: Iceland: seconds of zero padding (after demeaning and a 0.5 s taper) on both sides of each 32.5 s window, so
#: that every model sees it whole (EQTransformer's input is 60 s); picks are counted only inside the window.
ICELAND_PAD_S = 15.0
#: Colombia: start of the evaluation span. Earlier data are training data and must never be read.
COLOMBIA_START = obspy.UTCDateTime("2019-12-24T23:00:00")
COLOMBIA_END = obspy.UTCDateTime("2019-12-25T01:00:00")
COLOMBIA_QUICK_S = 20 * 60.0
COLOMBIA_TOLERANCE_S = 0.2
#: Colombia: reference picks of one station and phase closer than this are one pick (SeisMonitor's PhaseNet
#: file repeats picks from overlapping windows).
DEDUPLICATE_S = 0.5
#: Simulated: precision target and tolerance (s) for a P pick to be true.
TARGET_PRECISION = 0.9
SIM_TOLERANCE_S = 0.2
#: Simulated: per-station P signal-to-noise ratios (peak |Z signal| in the 2 s after P over the RMS of the Z
#: noise) are drawn log-uniformly from this range (about two thirds below 5).
SIM_SNR_RANGE = (2.0, 8.0)
#: Seconds at each edge of a record where picks and references are not counted (model blinding).
EDGE_S = 5.0


class ResultCache(Protocol):
    """The harness's JSON cache (``harness.Cache``)."""

    def get(self, *key: str, compute: Callable[[], Any]) -> Any: ...


Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------------------------------
# Matching and threshold selection
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Match:
    """Matching counts of one phase."""

    references: int
    matched_references: int
    picks: int
    unmatched_picks: int
    residuals: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched_references / self.references if self.references else math.nan

    @property
    def precision(self) -> float:
        return (self.picks - self.unmatched_picks) / self.picks if self.picks else math.nan


def match_times(
    picks: dict[str, Sequence[float]],
    references: dict[str, Sequence[float]],
    tolerance_s: float,
) -> Match:
    """Matches picks and references keyed alike (station, or window and station) by time (s).

    A reference is matched when a pick of its key lies within ``tolerance_s``; its residual is that of the nearest
    such pick (pick - reference). A pick is unmatched when no reference of its key lies within ``tolerance_s``.
    """
    n_refs = matched = n_picks = unmatched = 0
    residuals: list[float] = []
    for key in set(picks) | set(references):
        p = np.sort(np.asarray(picks.get(key, ()), dtype=float))
        r = np.sort(np.asarray(references.get(key, ()), dtype=float))
        n_refs += r.size
        n_picks += p.size
        if p.size == 0:
            continue
        if r.size == 0:
            unmatched += p.size
            continue
        diff = p[None, :] - r[:, None]  # (refs, picks)
        nearest = np.abs(diff).argmin(axis=1)
        best = diff[np.arange(r.size), nearest]
        ok = np.abs(best) <= tolerance_s
        matched += int(ok.sum())
        residuals += [float(x) for x in best[ok]]
        unmatched += int((np.abs(diff).min(axis=0) > tolerance_s).sum())
    return Match(n_refs, matched, n_picks, unmatched, residuals)


def threshold_at_false_rate(curve: list[dict], target_rate: float) -> dict | None:
    """The row of ``curve`` (rows with ``threshold`` and ``unmatched_rate``) with the lowest threshold whose
    unmatched rate is at most ``target_rate``; None if none is."""
    ok = [r for r in curve if r["unmatched_rate"] <= target_rate]
    return min(ok, key=lambda r: r["threshold"]) if ok else None


def threshold_at_precision(curve: list[dict], target_precision: float) -> dict | None:
    """The row of ``curve`` (rows with ``threshold``, ``precision``, ``recall``) with the highest recall among
    those with precision at least ``target_precision`` (the lowest threshold among equal recalls); None if none."""
    ok = [
        r
        for r in curve
        if not math.isnan(r["precision"]) and r["precision"] >= target_precision - 1e-12
    ]
    return max(ok, key=lambda r: (r["recall"], -r["threshold"])) if ok else None


def pick_times(
    annotations: obspy.Stream,
    phase: str,
    threshold: float,
    span: tuple[obspy.UTCDateTime, obspy.UTCDateTime] | None = None,
    prefix: str = "",
) -> dict[str, list[float]]:
    """Pick times (UNIX s) of ``phase`` per ``prefix + NET.STA.LOC`` from annotation traces ``*_{phase}``, with
    SeisBench's trigger (``threshold`` on, half of it off; the peak time), inside ``span`` when given."""
    out: dict[str, list[float]] = {}
    traces = annotations.select(channel=f"*_{phase}")
    for p in sbm.WaveformModel.picks_from_annotations(traces, threshold, phase):
        if span is not None and not span[0] <= p.peak_time <= span[1]:
            continue
        out.setdefault(prefix + station_key(p.trace_id), []).append(float(p.peak_time.timestamp))
    return out


def _merge(into: dict[str, list[float]], other: dict[str, list[float]]) -> None:
    for k, v in other.items():
        into.setdefault(k, []).extend(v)


def sweep(
    annotated: Iterable[tuple[str, obspy.Stream, tuple[obspy.UTCDateTime, obspy.UTCDateTime]]],
    references: dict[str, dict[str, list[float]]],
    tolerance_s: float,
    phases: Sequence[str] = ("P", "S"),
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, list[dict]]:
    """Per phase, one row per threshold: references, matched, recall, picks, unmatched, precision, residual mean and
    std (s), for annotations ``(prefix, stream, span)`` against ``references[phase][prefix + NET.STA.LOC]``."""
    annotated = list(annotated)
    out: dict[str, list[dict]] = {}
    for phase in phases:
        rows = []
        for thr in thresholds:
            picks: dict[str, list[float]] = {}
            for prefix, ann, span in annotated:
                _merge(picks, pick_times(ann, phase, thr, span, prefix))
            m = match_times(picks, references.get(phase, {}), tolerance_s)
            res = np.asarray(m.residuals)
            rows.append(
                {
                    "threshold": float(thr),
                    "references": m.references,
                    "matched": m.matched_references,
                    "recall": m.recall,
                    "picks": m.picks,
                    "unmatched": m.unmatched_picks,
                    "precision": m.precision,
                    "residual_mean_s": float(res.mean()) if res.size else math.nan,
                    "residual_std_s": float(res.std()) if res.size else math.nan,
                }
            )
        out[phase] = rows
    return out


def _annotate(name: str, model: Any, stream: obspy.Stream, inventory: Any) -> obspy.Stream:
    """Annotation traces of one model: SINE with the station coordinates, the SeisBench pickers without."""
    if name.startswith("SINE"):
        return model.annotate(stream, inventory=inventory)
    return model.annotate(stream)


def _row_at(curve: list[dict], threshold: float) -> dict:
    return min(curve, key=lambda r: abs(r["threshold"] - threshold))


# ----------------------------------------------------------------------------------------------------------------
# Iceland
# ----------------------------------------------------------------------------------------------------------------
def iceland_inventory(folder: Path) -> pd.DataFrame:
    """Station coordinates of the Iceland set (``stations.csv``, read with
    :func:`~sine_seisbench.stations.read_stations`) in the DataFrame form SINE takes (elevation in m), location
    code empty."""
    return read_stations(folder / "stations.csv").assign(location="")


def iceland_references(folder: Path) -> pd.DataFrame:
    """QuakeMigrate's automatic picks: event_id, station, phase, time (UNIX s)."""
    picks = pd.read_csv(folder / "picks.csv", dtype={"event_id": str, "station": str})
    picks["t"] = [obspy.UTCDateTime(t).timestamp for t in picks["time"]]
    return picks


def _padded(stream: obspy.Stream, pad_s: float) -> obspy.Stream:
    st = stream.copy()
    st.detrend("demean")
    st.taper(max_percentage=None, max_length=0.5)
    for tr in st:
        tr.data = tr.data.astype(np.float64)
        tr.trim(tr.stats.starttime - pad_s, tr.stats.endtime + pad_s, pad=True, fill_value=0.0)
    return st


def iceland_curves(
    name: str,
    model: Any,
    folder: Path,
    events: Sequence[str] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict:
    """Threshold sweep of one model on the Iceland windows against all QuakeMigrate picks inside each window
    (windows of neighbouring events overlap, so a window holds other events' picks too).

    :param events: Event ids to use (default: every ``benchmark/*.mseed``).
    :return: ``{"station_windows": n, "events": n, "P": curve, "S": curve}``.
    """
    qm = iceland_references(folder)
    inventory = iceland_inventory(folder)
    files = sorted((folder / "benchmark").glob("*.mseed"))
    if events is not None:
        files = [f for f in files if f.stem in set(events)]
    annotated = []
    references: dict[str, dict[str, list[float]]] = {"P": {}, "S": {}}
    station_windows = 0
    for path in files:
        stream = obspy.read(str(path))
        t0 = min(tr.stats.starttime for tr in stream) + 1.0
        t1 = max(tr.stats.endtime for tr in stream) - 1.0
        stations = sorted({(tr.stats.network, tr.stats.station) for tr in stream})
        station_windows += len(stations)
        prefix = f"{path.stem}|"
        ann = _annotate(name, model, _padded(stream, ICELAND_PAD_S), inventory)
        annotated.append((prefix, ann, (t0, t1)))
        inside = qm[(qm.t >= t0.timestamp) & (qm.t <= t1.timestamp)]
        codes = {sta: f"{net}.{sta}." for net, sta in stations}
        for row in inside.itertuples():
            if row.station in codes and row.phase in references:
                references[row.phase].setdefault(prefix + codes[row.station], []).append(row.t)
    curves = sweep(annotated, references, ICELAND_TOLERANCE_S, thresholds=thresholds)
    for rows in curves.values():
        for r in rows:
            r["unmatched_rate"] = r["unmatched"] / station_windows if station_windows else math.nan
    return {"station_windows": station_windows, "events": len(files), **curves}


def iceland_rows(
    curves: dict[str, dict], target_rate: float = ICELAND_FALSE_RATE
) -> list[dict[str, Any]]:
    """Table rows (model, phase) from :func:`iceland_curves` results per model: agreement at the threshold giving
    ``target_rate`` unmatched picks per station-window, and at the default threshold."""
    rows = []
    for name, result in curves.items():
        for phase in ("P", "S"):
            curve = result[phase]
            at = threshold_at_false_rate(curve, target_rate)
            default = _row_at(curve, DEFAULT_THRESHOLD)
            rows.append(
                {
                    "model": name,
                    "phase": phase,
                    "events": result["events"],
                    "station_windows": result["station_windows"],
                    "qm_picks": curve[0]["references"],
                    "target_unmatched_per_window": target_rate,
                    "threshold": at["threshold"] if at else math.nan,
                    "agreement": at["recall"] if at else math.nan,
                    "unmatched_per_window": at["unmatched_rate"] if at else math.nan,
                    "picks": at["picks"] if at else math.nan,
                    "residual_mean_s": at["residual_mean_s"] if at else math.nan,
                    "residual_std_s": at["residual_std_s"] if at else math.nan,
                    "agreement_at_0.3": default["recall"],
                    "unmatched_per_window_at_0.3": default["unmatched_rate"],
                    "residual_mean_s_at_0.3": default["residual_mean_s"],
                    "residual_std_s_at_0.3": default["residual_std_s"],
                }
            )
    return rows


def stage_iceland(
    models: dict[str, Any], data: DataLayout | str | Path, cache: ResultCache, log: Log
) -> list[dict[str, Any]]:
    """The ``iceland`` stage: rows of :func:`iceland_rows` for every model (cached per model)."""
    folder = as_layout(data).iceland
    if not (folder / "picks.csv").exists() or not (folder / "benchmark").is_dir():
        log(f"iceland: {folder} (picks.csv, benchmark/) not found; stage skipped")
        return []
    curves = {
        name: cache.get(
            "iceland",
            name,
            "all",
            compute=lambda name=name, model=model: iceland_curves(name, model, folder),
        )
        for name, model in models.items()
    }
    return iceland_rows(curves)


# ----------------------------------------------------------------------------------------------------------------
# Colombia
# ----------------------------------------------------------------------------------------------------------------
_FILE_SPAN = re.compile(r"__(\d{8}T\d{6})Z?__(\d{8}T\d{6})Z?")


def read_colombia(
    folder: Path, start: obspy.UTCDateTime = COLOMBIA_START, end: obspy.UTCDateTime = COLOMBIA_END
) -> obspy.Stream:
    """The Colombia records from ``start`` to ``end``, trimmed at read time. Files whose names
    (``...__YYYYMMDDTHHMMSSZ__YYYYMMDDTHHMMSSZ.mseed``) end at or before ``start`` are never opened; a file whose
    name gives no span is not read at all. ``start`` earlier than :data:`COLOMBIA_START` is refused (training
    data).

    :raises ValueError: For ``start`` before :data:`COLOMBIA_START`, or (never expected) data before it.
    """
    if start < COLOMBIA_START:
        raise ValueError(
            f"colombia: data before {COLOMBIA_START} are training data and are never read (asked from {start})"
        )
    stream = obspy.Stream()
    for path in sorted((folder / "waveforms").glob("*/*.mseed")):
        m = _FILE_SPAN.search(path.name)
        if m is None:
            continue
        f0, f1 = (obspy.UTCDateTime(x) for x in m.groups())
        if f1 <= start or f0 >= end:
            continue
        stream += obspy.read(str(path), starttime=start, endtime=end, nearest_sample=False)
    stream.merge(method=1)
    if len(stream) and min(tr.stats.starttime for tr in stream) < COLOMBIA_START:
        raise ValueError("colombia: data before the evaluation span were read")
    return stream


def seismonitor_references(
    path: Path, t0: obspy.UTCDateTime, t1: obspy.UTCDateTime
) -> dict[str, dict[str, list[float]]]:
    """SeisMonitor's automatic picks between ``t0`` and ``t1`` per phase and ``NET.STA.LOC``, picks of one station
    and phase closer than :data:`DEDUPLICATE_S` merged (the first kept)."""
    frame = pd.read_csv(
        path, dtype={"network": str, "station": str, "location": str}, keep_default_na=False
    )
    times = pd.to_datetime(frame["arrival_time"], utc=True)
    frame["t"] = (times - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    frame = frame[(frame.t >= t0.timestamp) & (frame.t <= t1.timestamp)]
    refs: dict[str, dict[str, list[float]]] = {"P": {}, "S": {}}
    for (net, sta, loc, phase), group in frame.groupby(
        ["network", "station", "location", "phasehint"]
    ):
        if phase not in refs:
            continue
        kept: list[float] = []
        for t in np.sort(group.t.to_numpy(float)):
            if not kept or t - kept[-1] >= DEDUPLICATE_S:
                kept.append(float(t))
        refs[phase][f"{net}.{sta}.{loc}"] = kept
    return refs


def colombia_picks(
    name: str, model: Any, stream: obspy.Stream, inventory: Any, threshold: float
) -> dict[str, dict[str, list[float]]]:
    """P and S pick times of one model at ``threshold`` per ``NET.STA.LOC``, ``EDGE_S`` from the record's ends."""
    t0 = min(tr.stats.starttime for tr in stream) + EDGE_S
    t1 = max(tr.stats.endtime for tr in stream) - EDGE_S
    ann = _annotate(name, model, stream, inventory)
    return {phase: pick_times(ann, phase, threshold, (t0, t1)) for phase in ("P", "S")}


def colombia_rows(
    picks: dict[str, dict[str, dict[str, list[float]]]],
    references: dict[str, dict[str, dict[str, list[float]]]],
    label: str,
) -> list[dict[str, Any]]:
    """One row per (reference, model): per phase the matched fraction of the reference picks, the model's picks
    and its unmatched picks."""
    rows = []
    for ref_name, refs in references.items():
        for name, model_picks in picks.items():
            row: dict[str, Any] = {"span": label, "reference": ref_name, "model": name}
            for phase in ("P", "S"):
                m = match_times(model_picks[phase], refs[phase], COLOMBIA_TOLERANCE_S)
                row[f"{phase}_references"] = m.references
                row[f"{phase}_matched_fraction"] = m.recall
                row[f"{phase}_picks"] = m.picks
                row[f"{phase}_unmatched"] = m.unmatched_picks
            rows.append(row)
    return rows


def stage_colombia(
    models: dict[str, Any],
    data: DataLayout | str | Path,
    cache: ResultCache,
    quick: bool,
    log: Log,
) -> list[dict[str, Any]]:
    """The ``colombia`` stage (23:00-01:00 UTC only; 23:00-23:20 in the quick suite) at threshold 0.3."""
    folder = as_layout(data).colombia
    if not (folder / "waveforms").is_dir():
        log(f"colombia: {folder / 'waveforms'} not found; stage skipped")
        return []
    end = COLOMBIA_START + COLOMBIA_QUICK_S if quick else COLOMBIA_END
    suite = "quick" if quick else "full"
    label = f"{COLOMBIA_START.strftime('%H:%M')}-{end.strftime('%H:%M')} UTC"
    state: dict[str, Any] = {}

    def stream() -> obspy.Stream:  # read once, only when some result is not cached
        if "stream" not in state:
            state["stream"] = read_colombia(folder, COLOMBIA_START, end)
        return state["stream"]

    inv_path = folder / "stations" / "inv.xml"
    inventory = read_stations(inv_path) if inv_path.exists() else None
    if any(n.startswith("SINE") for n in models) and inventory is None:
        log(f"colombia: {inv_path} not found; SINE left out (it needs station coordinates)")
    picks = {}
    for name, model in models.items():
        if name.startswith("SINE") and inventory is None:
            continue
        picks[name] = cache.get(
            "colombia",
            name,
            suite,
            compute=lambda name=name, model=model: colombia_picks(
                name, model, stream(), inventory, DEFAULT_THRESHOLD
            ),
        )

    def teacher() -> dict:
        pn = models.get("PhaseNet") or sbm.PhaseNet.from_pretrained("original").eval()
        return colombia_picks("PhaseNet", pn, stream(), None, DEFAULT_THRESHOLD)

    references = {
        "teacher PhaseNet original @0.3": picks.get("PhaseNet")
        or cache.get("colombia", "PhaseNet", suite, compute=teacher)
    }
    t0, t1 = COLOMBIA_START + EDGE_S, end - EDGE_S
    for kind in ("pnet", "eqt"):
        path = folder / "automatic" / "picks" / f"{kind}_seismonitor_picks.csv"
        if path.exists():
            references[f"SeisMonitor {kind} picks"] = seismonitor_references(path, t0, t1)
        else:
            log(f"colombia: {path} not found; that reference left out")
    if not picks:
        return []
    return colombia_rows(picks, references, label)


# ----------------------------------------------------------------------------------------------------------------
# Simulated, low SNR
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SimEvent:
    """One simulated event as a network stream with its true P times (UNIX s) per ``NET.STA.LOC``."""

    stream: obspy.Stream
    inventory: pd.DataFrame
    p_times: dict[str, list[float]]
    snr: list[float]


def ridgecrest_stations(path: Path) -> pd.DataFrame:
    """The real CI/PB/NP stations around Ridgecrest (``DATA/stations/ridgecrest_stations.tsv``, read with
    :func:`~sine_seisbench.stations.read_stations`), one row per station: network, station, latitude,
    longitude, elevation (m)."""
    frame = read_stations(path)[["network", "station", "latitude", "longitude", "elevation"]]
    return frame.drop_duplicates(subset=["network", "station"]).reset_index(drop=True)


def low_snr_events(
    n_events: int,
    stations: pd.DataFrame,
    tt: Any,
    noise_paths: Sequence[Path],
    work: Path,
    seed: int = 0,
    snr_range: tuple[float, float] = SIM_SNR_RANGE,
) -> list[SimEvent]:
    """Simulated events (60 s at 100 Hz) recorded at the 12 nearest of ``stations`` with real noise at a low SNR;
    epicentres uniform over the stations' bounding box, depths 2-20 km.

    The project's simulator writes the signals almost noise-free; each station then gets a real noise window
    (:class:`~sine_seisbench.data.simulate.NoiseBank`, unit RMS per component) scaled so that its P SNR (peak |Z|
    in the 2 s after P over the noise RMS) is drawn log-uniformly from ``snr_range``.
    """
    import seisbench.data as sbd

    from ..data.simulate import NoiseBank, SimulationConfig, simulate_dataset

    region = (
        float(stations.latitude.min()),
        float(stations.latitude.max()),
        float(stations.longitude.min()),
        float(stations.longitude.max()),
    )
    path = simulate_dataset(
        work / f"low_snr_{n_events}_{seed}",
        stations,
        region=region,
        noise_paths=None,
        config=SimulationConfig(
            n_events=n_events,
            max_stations=12,
            samples=6000,
            seed=1000 + seed,
            p_sample_range=(1500, 2500),
            noise_rms_median=1e-15,
            noise_rms_sigma_ln=0.0,
            z_only_fraction=0.0,
            dead_component_fraction=0.0,
            gap_fraction=0.0,
        ),
        tt=tt,
    )
    ds = sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)
    bank = NoiseBank([str(p) for p in noise_paths], seed=seed)
    rng = np.random.default_rng(seed)
    meta = ds.metadata
    events = []
    for _, group in meta.groupby("source_id", sort=True):
        stream = obspy.Stream()
        p_times: dict[str, list[float]] = {}
        snrs = []
        for idx, row in group.iterrows():
            data = ds.get_waveforms(int(idx)).astype(np.float64)
            p = int(round(row["trace_p_arrival_sample"]))
            peak = float(np.abs(data[0, p : p + 200]).max())
            snr = float(np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]))))
            data = data + bank.window(data.shape[1]) * (peak / snr)
            snrs.append(snr)
            start = obspy.UTCDateTime(row["trace_start_time"])
            net, sta = row["station_network_code"], row["station_code"]
            for i, comp in enumerate("ZNE"):
                stats = {
                    "network": net,
                    "station": sta,
                    "location": "",
                    "channel": f"HH{comp}",
                    "sampling_rate": 100.0,
                    "starttime": start,
                }
                stream += obspy.Trace(data[i].astype(np.float32), header=stats)
            p_times[f"{net}.{sta}."] = [start.timestamp + row["trace_p_arrival_sample"] / 100.0]
        inventory = pd.DataFrame(
            {
                "network": group["station_network_code"].to_numpy(),
                "station": group["station_code"].to_numpy(),
                "location": "",
                "latitude": group["station_latitude_deg"].to_numpy(float),
                "longitude": group["station_longitude_deg"].to_numpy(float),
                "elevation": group["station_elevation_m"].to_numpy(float),
            }
        )
        events.append(SimEvent(stream, inventory, p_times, snrs))
    return events


def snr_summary(events: Sequence[SimEvent]) -> dict[str, float]:
    """The P SNR distribution of the simulated station records."""
    snr = np.concatenate([e.snr for e in events]) if events else np.array([])
    if not snr.size:
        return {"stations": 0}
    return {
        "station_records": int(snr.size),
        "snr_p10": float(np.percentile(snr, 10)),
        "snr_median": float(np.median(snr)),
        "snr_p90": float(np.percentile(snr, 90)),
        "fraction_snr_below_5": float(np.mean(snr < 5)),
    }


def low_snr_curve(name: str, model: Any, events: Sequence[SimEvent]) -> list[dict]:
    """P threshold sweep of one model over the simulated events (picks within ``SIM_TOLERANCE_S`` of the true P)."""
    annotated = []
    refs: dict[str, list[float]] = {}
    for i, ev in enumerate(events):
        t0 = min(tr.stats.starttime for tr in ev.stream) + EDGE_S
        t1 = max(tr.stats.endtime for tr in ev.stream) - EDGE_S
        prefix = f"{i}|"
        annotated.append((prefix, _annotate(name, model, ev.stream, ev.inventory), (t0, t1)))
        for key, times in ev.p_times.items():
            refs[prefix + key] = list(times)
    return sweep(annotated, {"P": refs}, SIM_TOLERANCE_S, phases=("P",))["P"]


def low_snr_rows(
    curves: dict[str, list[dict]], snr: dict[str, float], n_events: int
) -> list[dict[str, Any]]:
    """Rows per model: P recall at precision >= :data:`TARGET_PRECISION` (recall 0 and threshold NaN when no
    threshold reaches it; ``P_max_precision`` says how close it came), and at the default threshold."""
    rows = []
    for name, curve in curves.items():
        at = threshold_at_precision(curve, TARGET_PRECISION)
        default = _row_at(curve, DEFAULT_THRESHOLD)
        rows.append(
            {
                "model": name,
                "events": n_events,
                "true_P": curve[0]["references"],
                "target_precision": TARGET_PRECISION,
                "threshold": at["threshold"] if at else math.nan,
                "P_recall": at["recall"] if at else 0.0,
                "P_precision": at["precision"] if at else math.nan,
                "P_residual_mean_s": at["residual_mean_s"] if at else math.nan,
                "P_residual_std_s": at["residual_std_s"] if at else math.nan,
                "P_max_precision": max(
                    (r["precision"] for r in curve if not math.isnan(r["precision"])),
                    default=math.nan,
                ),
                "P_recall_at_0.3": default["recall"],
                "P_precision_at_0.3": default["precision"],
                **snr,
            }
        )
    return rows


def stage_simulated_low_snr(
    models: dict[str, Any],
    data: DataLayout | str | Path,
    cache: ResultCache,
    quick: bool,
    tt: Any,
    seed: int,
    work: Path,
    log: Log,
) -> list[dict[str, Any]]:
    """The ``simulated_low_snr`` stage: 10 (quick) or 60 (full) events on the real Ridgecrest station geometry
    (the travel-time model is Southern California's), noise from the PNW records."""
    layout = as_layout(data)
    noise_dir = layout.pnw
    noise_paths = sorted(noise_dir.glob("*.ms"))
    stations_path = layout.ridgecrest_stations
    if not noise_paths or not stations_path.exists():
        log(
            f"simulated_low_snr: real noise records ({noise_dir}/*.ms) or station geometry ({stations_path}) "
            "not found; stage skipped"
        )
        return []
    n_events = 10 if quick else 60
    suite = f"{'quick' if quick else 'full'}_seed{seed}"
    state: dict[str, Any] = {}

    def events() -> list[SimEvent]:
        if "events" not in state:
            stations = ridgecrest_stations(stations_path)
            state["events"] = low_snr_events(n_events, stations, tt, noise_paths, work, seed)
        return state["events"]

    snr = cache.get("simulated_low_snr", "snr", suite, compute=lambda: snr_summary(events()))
    curves = {
        name: cache.get(
            "simulated_low_snr",
            name,
            suite,
            compute=lambda name=name, model=model: low_snr_curve(name, model, events()),
        )
        for name, model in models.items()
    }
    return low_snr_rows(curves, snr, n_events)
