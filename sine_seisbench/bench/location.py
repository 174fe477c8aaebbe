"""Joint location and magnitude of SINE against the classical chain (picker → associate/locate → ML), and how
both degrade when stations are lost or noise grows (the paper's inter-task dependence claim).

Methods compared on every event (rows of :func:`location_benchmark`):

- ``"SINE"``: SINE's own events (``classify(...).events``), with the coverage of its uncertainty ellipse;
- ``"<picker> chain"`` and ``"<picker> chain (PyOcto)"``: each published picker's picks through
  :func:`~sine_seisbench.chain.run_chain` with the greedy and with PyOcto's associator;
- ``"SINE picks → chain"``: SINE's own picks (``classify(...).picks``) through the chain with PyOcto, which
  separates what SINE's picks are worth from what its joint event head adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import obspy
import seisbench.data as sbd
import seisbench.util as sbu
from obspy.geodetics import gps2dist_azimuth

from ..chain import run_chain
from ..demo import dataset_to_stream
from ..geometry import Coordinates
from ..progress import progress
from ..stations import inventory_frame, read_stations

#: Method name of SINE's own picks fed to the classical chain (PyOcto association)
SINE_PICKS_CHAIN = "SINE picks → chain"
#: Row-name suffix and associator name per associator of the classical chain
CHAIN_VARIANTS = {"greedy": "chain", "pyocto": "chain (PyOcto)"}


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


def uncertainty_ellipse(origin) -> tuple[float, float, float] | None:
    """The 1-sigma horizontal uncertainty of an ObsPy Origin as ``(semi_major_m, semi_minor_m, azimuth_deg)``.

    From ``origin.origin_uncertainty``: the ellipse of ``max_horizontal_uncertainty`` and
    ``min_horizontal_uncertainty`` (m) with the major axis at ``azimuth_max_horizontal_uncertainty`` (degrees
    from north; 0 where absent) when both axes are given, otherwise a circle of radius
    ``horizontal_uncertainty``; None without either or with non-positive or non-finite values.
    """
    unc = getattr(origin, "origin_uncertainty", None)
    if unc is None:
        return None

    def value(name: str) -> float | None:
        v = getattr(unc, name, None)
        return float(v) if v is not None and math.isfinite(float(v)) else None

    major = value("max_horizontal_uncertainty")
    minor = value("min_horizontal_uncertainty")
    if major is not None and minor is not None and major > 0 and minor > 0:
        azimuth = value("azimuth_max_horizontal_uncertainty") or 0.0
        if minor > major:
            major, minor, azimuth = minor, major, azimuth + 90.0
        return major, minor, azimuth % 180.0
    radius = value("horizontal_uncertainty")
    if radius is not None and radius > 0:
        return radius, radius, 0.0
    return None


def inside_ellipse(
    latitude: float,
    longitude: float,
    centre_latitude: float,
    centre_longitude: float,
    semi_major_m: float,
    semi_minor_m: float,
    azimuth_deg: float,
    scale: float = 1.0,
) -> bool:
    """Whether a point lies inside (or on) the ellipse centred at ``(centre_latitude, centre_longitude)`` with
    semi-axes ``scale * semi_major_m`` along the azimuth ``azimuth_deg`` (degrees from north) and ``scale *
    semi_minor_m`` across it; ``scale`` 2 gives the 2-sigma ellipse of a 1-sigma one. Distances and azimuths are
    geodesic (WGS84) from the centre.
    """
    if not (semi_major_m > 0 and semi_minor_m > 0 and scale > 0):
        raise ValueError(
            f"Ellipse axes and scale must be positive, got {semi_major_m}, {semi_minor_m}, {scale}."
        )
    dist_m, az, _ = gps2dist_azimuth(centre_latitude, centre_longitude, latitude, longitude)
    if dist_m == 0:
        return True
    angle = math.radians(az - azimuth_deg)
    along = dist_m * math.cos(angle) / (scale * semi_major_m)
    across = dist_m * math.sin(angle) / (scale * semi_minor_m)
    return along**2 + across**2 <= 1.0 + 1e-9


def _errors(truth: dict, est: dict | None) -> dict:
    if est is None:
        return {"found": False}
    epi = (
        gps2dist_azimuth(truth["latitude"], truth["longitude"], est["latitude"], est["longitude"])[
            0
        ]
        / 1000
    )
    out = {
        "found": True,
        "epicentral_error_km": epi,
        "depth_error_km": est["depth_km"] - truth["depth_km"],
        "magnitude_error": (est["magnitude"] - truth["magnitude"])
        if est.get("magnitude") is not None
        else math.nan,
        "origin_time_error_s": est["time"] - truth["time"],
    }
    ellipse = est.get("ellipse")
    if ellipse is not None:
        major, minor, azimuth = ellipse
        for k in (1, 2):
            out[f"in_{k}sigma"] = inside_ellipse(
                truth["latitude"],
                truth["longitude"],
                est["latitude"],
                est["longitude"],
                major,
                minor,
                azimuth,
                scale=float(k),
            )
        out["uncertainty_major_km"] = major / 1000.0
        out["uncertainty_minor_km"] = minor / 1000.0
    return out


def _nearest_sine_event(catalog: Iterable, truth: dict) -> dict | None:
    """SINE's event of a catalogue nearest to the true origin time (within 10 s), as an estimate dict."""
    best = None
    for ev in catalog:
        o, m = ev.preferred_origin() or ev.origins[0], ev.preferred_magnitude()
        if abs(o.time - truth["time"]) <= 10 and (
            best is None or abs(o.time - truth["time"]) < abs(best["time"] - truth["time"])
        ):
            best = {
                "latitude": o.latitude,
                "longitude": o.longitude,
                "depth_km": o.depth / 1000,
                "magnitude": m.mag if m else None,
                "time": o.time,
                "ellipse": uncertainty_ellipse(o),
            }
    return best


def sine_estimate(model, stream: obspy.Stream, inventory, truth: dict, **kwargs) -> dict | None:
    """SINE's event nearest to the true origin time (within 10 s), with its 1-sigma ``ellipse``
    (:func:`uncertainty_ellipse`)."""
    return _nearest_sine_event(model.classify(stream, inventory=inventory, **kwargs).events, truth)


def inventory_coordinates(inventory) -> dict[str, Coordinates]:
    """``NET.STA.`` → coordinates of every station of an Inventory (the simulated records have no location
    code), or of anything else :func:`~sine_seisbench.stations.read_stations` reads."""
    stations = read_stations(inventory)
    frame = inventory_frame(stations) if isinstance(stations, obspy.Inventory) else stations
    return {
        f"{r.network}.{r.station}.": Coordinates(
            float(r.latitude), float(r.longitude), float(r.elevation)
        )
        for r in frame.itertuples(index=False)
    }


def chain_estimate(
    picker,
    stream: obspy.Stream,
    inventory,
    truth: dict,
    tt,
    pick_perturbation: Callable | None = None,
    *,
    associator: str = "greedy",
    picks: Sequence[sbu.Pick] | None = None,
) -> dict | None:
    """The classical chain: the picker's picks → association → grid-search location → ML; the located event
    nearest to the true origin time (within 10 s).

    :param associator: ``"greedy"`` or ``"pyocto"`` (see :func:`~sine_seisbench.chain.run_chain`).
    :param picks: Picks already made on ``stream`` (``picker`` is then not run; it may be None).
    """
    coordinates = inventory_coordinates(inventory)
    if picks is None:
        picks = picker.classify(stream).picks
    if pick_perturbation is not None:
        picks = pick_perturbation(picks)
    try:
        events = run_chain(stream, picks, coordinates, tt, associator=associator)
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


def _flag(value) -> bool | None:
    """A row's ``in_Ksigma`` as a bool, None where it is absent (missing, None or NaN after a DataFrame)."""
    if value is None or isinstance(value, str):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else bool(v)


def summarise(rows: list[dict]) -> dict:
    """Counts, epicentral/depth/magnitude errors of the located events and the coverage of the uncertainty
    ellipses: ``coverage_1sigma``/``coverage_2sigma`` = fraction of the located events with an ellipse whose
    1-sigma/2-sigma ellipse holds the true epicentre (NaN without any ellipse; a calibrated 2-D Gaussian gives
    0.39 and 0.86)."""
    found = [r for r in rows if _flag(r.get("found"))]
    if not found:
        return {
            "events": len(rows),
            "located": 0,
            "coverage_1sigma": math.nan,
            "coverage_2sigma": math.nan,
        }
    epi = np.array([r["epicentral_error_km"] for r in found])
    depth = np.array([r["depth_error_km"] for r in found])
    mag = np.array([r["magnitude_error"] for r in found], dtype=float)
    out = {
        "events": len(rows),
        "located": len(found),
        "epicentral_median_km": float(np.median(epi)),
        "epicentral_mean_km": float(np.mean(epi)),
        "epicentral_p90_km": float(np.percentile(epi, 90)),
        "depth_mae_km": float(np.mean(np.abs(depth))),
        "magnitude_mae": float(np.nanmean(np.abs(mag))) if np.isfinite(mag).any() else math.nan,
    }
    for k in (1, 2):
        flags = [f for f in (_flag(r.get(f"in_{k}sigma")) for r in found) if f is not None]
        out[f"coverage_{k}sigma"] = float(np.mean(flags)) if flags else math.nan
    return out


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


def _chain_rows(
    picks_by_method: Mapping[str, tuple[sbu.PickList, tuple[str, ...]]],
    stream: obspy.Stream,
    inventory,
    truth: dict,
    tt,
    base: dict,
    perturb: Callable | None = None,
) -> list[dict]:
    """One row per (picks, associator): ``"<name> chain"``/``"<name> chain (PyOcto)"``, or ``name`` itself for
    SINE's picks. Perturbed picks are drawn once per picker, so both associators get the same picks."""
    rows = []
    for name, (picks, associators) in picks_by_method.items():
        used = perturb(picks) if perturb is not None else picks
        for associator in associators:
            method = name if name == SINE_PICKS_CHAIN else f"{name} {CHAIN_VARIANTS[associator]}"
            est = chain_estimate(
                None, stream, inventory, truth, tt, associator=associator, picks=used
            )
            rows.append({**base, "method": method, **_errors(truth, est)})
    return rows


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
    *,
    conditions: Sequence[tuple[float, float]] | None = None,
    geometry: str | None = None,
    associators: tuple[str, ...] = ("greedy", "pyocto"),
    pick_drop: float = 1 / 3,
) -> list[dict]:
    """Rows of per-event errors for SINE, each picker's chain (per associator) and SINE's picks through the
    chain (PyOcto), under every degradation.

    The waveforms are degraded for every ``(drop_fraction, noise_factor)`` of ``conditions`` (default: the grid
    of ``drop_fractions`` × ``noise_factors``) with :func:`degrade`. ``pick_jitters`` (s) additionally perturbs
    the chains' picks on the undegraded waveforms (Gaussian, and ``pick_drop`` of them removed): the chain's
    location depends on its picks, SINE's own events do not take picks as input. SINE's rows carry ``in_1sigma``
    and ``in_2sigma`` (true epicentre inside its 1-/2-sigma ellipse) where its origin has an uncertainty.

    :param sine: A SINE model, or None for the pickers' chains only.
    :param geometry: Name stored in every row's ``geometry`` column (None: no such column).
    :param associators: The chain's associators for the pickers' picks (``"greedy"``, ``"pyocto"``).
    """
    rng = np.random.default_rng(seed)
    if conditions is None:
        conditions = [(d, n) for d in drop_fractions for n in noise_factors]
    conditions = [(float(d), float(n)) for d, n in conditions]
    extra = {} if geometry is None else {"geometry": geometry}
    rows = []
    events = list(event_streams(dataset, max_events))
    for truth, stream, inventory in progress(
        events, desc=f"location {geometry or ''}".strip(), unit="event"
    ):
        clean_picks: dict[str, tuple[sbu.PickList, tuple[str, ...]]] | None = None
        for drop, noise in conditions:
            st = degrade(stream, rng, drop, noise)
            base = {
                "event": truth["event"],
                **extra,
                "drop_fraction": drop,
                "noise_factor": noise,
                "magnitude": truth["magnitude"],
            }
            picks_by_method: dict[str, tuple[sbu.PickList, tuple[str, ...]]] = {}
            if sine is not None:
                out = sine.classify(st, inventory=inventory)
                rows.append(
                    {
                        **base,
                        "method": "SINE",
                        **_errors(truth, _nearest_sine_event(out.events, truth)),
                    }
                )
                picks_by_method[SINE_PICKS_CHAIN] = (out.picks, ("pyocto",))
            for name, picker in pickers.items():
                picks_by_method[name] = (picker.classify(st).picks, tuple(associators))
            rows += _chain_rows(picks_by_method, st, inventory, truth, tt, base)
            if drop == 0 and noise == 0:
                clean_picks = picks_by_method
        for jitter in pick_jitters:
            if clean_picks is None:
                clean_picks = {}
                if sine is not None:
                    clean_picks[SINE_PICKS_CHAIN] = (
                        sine.classify(stream, inventory=inventory).picks,
                        ("pyocto",),
                    )
                for name, picker in pickers.items():
                    clean_picks[name] = (picker.classify(stream).picks, tuple(associators))
            base = {
                "event": truth["event"],
                **extra,
                "drop_fraction": 0.0,
                "noise_factor": 0.0,
                "pick_jitter_s": jitter,
                "magnitude": truth["magnitude"],
            }
            perturb = _pick_perturbation(rng, jitter, drop=pick_drop)
            rows += _chain_rows(clean_picks, stream, inventory, truth, tt, base, perturb)
    return rows


def _pick_perturbation(rng: np.random.Generator, jitter_s: float, drop: float) -> Callable:
    def perturb(picks):
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
