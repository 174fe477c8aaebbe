"""``sine plot``: a record section and a map of SINE's picks and events on one's own data.

* :func:`record_section`: one vertical (or chosen component) trace per station, ordered by epicentral distance
  from the first event (or from the station centroid without events), P and S picks marked, the P and S
  probability curves shaded under each trace when annotations are given.
* :func:`event_map`: stations and epicentres with their 1-sigma error ellipses (Origin.origin_uncertainty, else
  the latitude/longitude errors).
* :func:`overview`: both side by side (what ``sine plot`` draws by default).

Figures are drawn with matplotlib's Agg canvas (no pyplot, no display, the global backend is left alone) and
written as PNG or PDF by the file's suffix. Inputs are the files ``sine classify`` and ``sine annotate`` write
(:mod:`sine_seisbench.pipeline.publish`) or the Python objects themselves.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import obspy
import pandas as pd
import seisbench.util as sbu
from obspy.core.event import Catalog, Event, Origin
from obspy.core.inventory import Inventory
from obspy.geodetics import gps2dist_azimuth

from .cli_support import check_input_file, read_inventory, read_waveforms, waveform_files
from .errors import UserError
from .geometry import Coordinates, StationTable, reference_point
from .pipeline.publish import (
    annotations_by_station,
    picks_frame,
    preferred_magnitude,
    preferred_origin,
    read_annotations,
    read_catalog,
    read_picks_csv,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Suffixes ``sine plot --out`` and the ``path=`` arguments accept.
FIGURE_SUFFIXES = (".png", ".pdf")
#: Colours of the P and S picks and probability curves.
PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}
_KM_PER_DEGREE = 111.19492664455873


# ------------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------------
def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def check_figure_path(path: str | os.PathLike, option: str = "path") -> Path:
    """``path`` as a Path if its suffix is ``.png`` or ``.pdf`` and its folder exists.

    :raises UserError: Otherwise (one line naming ``option``).
    """
    p = Path(path)
    if p.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(
            f"{option} {path}: the figure file must end in .png or .pdf (the suffix chooses the format)"
        )
    if p.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name ending in .png or .pdf")
    if not p.parent.is_dir():
        raise UserError(
            f"the folder {p.parent} of {option} {path} does not exist; create it first (mkdir -p {p.parent})"
        )
    return p


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    p = check_figure_path(path)
    fig.savefig(p, dpi=150 if p.suffix.lower() == ".png" else None, bbox_inches="tight")


def station_points(inventory: Inventory | pd.DataFrame | None) -> dict[str, Coordinates]:
    """``NET.STA`` → coordinates of every station of an ObsPy Inventory or a station DataFrame (columns
    ``network``, ``station``, ``latitude``, ``longitude``, optionally ``elevation`` in m)."""
    out: dict[str, Coordinates] = {}
    if inventory is None:
        return out
    if isinstance(inventory, Inventory):
        for net in inventory:
            for sta in net:
                out.setdefault(
                    f"{net.code}.{sta.code}",
                    Coordinates(
                        float(sta.latitude), float(sta.longitude), float(sta.elevation or 0.0)
                    ),
                )
        return out
    if isinstance(inventory, pd.DataFrame):
        missing = [c for c in ("network", "station", "latitude", "longitude") if c not in inventory]
        if missing:
            raise UserError(f"the station table lacks the column(s) {', '.join(missing)}")
        for row in inventory.to_dict("records"):
            elevation = row.get("elevation", 0.0)
            try:
                elevation = float(elevation)
            except (TypeError, ValueError):
                elevation = 0.0
            out.setdefault(
                f"{row['network']}.{row['station']}",
                Coordinates(
                    float(row["latitude"]),
                    float(row["longitude"]),
                    0.0 if math.isnan(elevation) else elevation,
                ),
            )
        return out
    raise TypeError(
        f"inventory must be an obspy Inventory or a pandas DataFrame, got {type(inventory).__name__}"
    )


def _as_picks_frame(
    picks: pd.DataFrame | Iterable[sbu.Pick] | None, catalog: Catalog | None
) -> pd.DataFrame:
    """A picks table (:data:`~sine_seisbench.pipeline.publish.PICK_COLUMNS`); without picks, the events' arrivals."""
    if isinstance(picks, pd.DataFrame):
        return picks
    return picks_frame(picks, catalog)


def _event_label(event: Event) -> str:
    origin = preferred_origin(event)
    if origin is None:
        return "event without origin"
    magnitude = preferred_magnitude(event)
    if magnitude is not None and magnitude.mag is not None:
        mag = f"{magnitude.magnitude_type or 'M'} {magnitude.mag:.1f}"
    elif any((c.text or "").startswith("uncalibrated") for c in event.comments):
        mag = "no ML (no instrument response)"
    else:
        mag = "no magnitude"
    depth = f"{origin.depth / 1000:.1f} km" if origin.depth is not None else "depth ?"
    return f"{str(origin.time)[:22]}  {origin.latitude:.3f}°, {origin.longitude:.3f}°  depth {depth}  {mag}"


# ------------------------------------------------------------------------------------------------------------
# Record section
# ------------------------------------------------------------------------------------------------------------
def _station_key(tr: obspy.Trace) -> str:
    return f"{tr.stats.network}.{tr.stats.station}.{tr.stats.location}"


def _section_traces(stream: obspy.Stream, component: str) -> dict[str, obspy.Stream]:
    """NET.STA.LOC → the traces of the chosen component (else of the station's first channel, sorted)."""
    by_station: dict[str, dict[str, obspy.Stream]] = {}
    for tr in stream:
        by_station.setdefault(_station_key(tr), {}).setdefault(
            tr.stats.channel, obspy.Stream()
        ).append(tr)
    out = {}
    for key, channels in by_station.items():
        chosen = [c for c in sorted(channels) if c.endswith(component)] or sorted(channels)
        out[key] = channels[chosen[0]]
    return out


def _prepared(traces: obspy.Stream, bandpass: tuple[float, float] | None) -> obspy.Stream:
    out = obspy.Stream()
    for tr in traces:
        tr = tr.copy()
        data = np.asarray(np.ma.filled(np.ma.masked_invalid(tr.data.astype(float)), np.nan))
        finite = np.isfinite(data)
        if not finite.any():
            continue
        data = np.where(finite, data - np.nanmean(data), 0.0)
        tr.data = data
        if bandpass is not None:
            fmin, fmax = bandpass
            fmax = min(fmax, 0.45 * tr.stats.sampling_rate)
            tr.taper(0.02)
            tr.filter("bandpass", freqmin=fmin, freqmax=fmax, corners=4, zerophase=True)
        tr.data = np.where(finite, tr.data, np.nan)
        out += tr
    return out


def _trace_coordinates(
    tr: obspy.Trace, table: StationTable, points: dict[str, Coordinates]
) -> Coordinates | None:
    if "coordinates" in tr.stats:
        return Coordinates.from_stats(tr.stats.coordinates)
    coords = table.get(_station_key(tr), tr.stats.starttime)
    if coords is None:
        coords = points.get(f"{tr.stats.network}.{tr.stats.station}")
    return coords


def record_section(
    stream: obspy.Stream,
    inventory: Inventory | pd.DataFrame | None = None,
    picks: pd.DataFrame | Iterable[sbu.Pick] | None = None,
    catalog: Catalog | None = None,
    annotations: obspy.Stream | None = None,
    path: str | os.PathLike | None = None,
    *,
    event_index: int = 0,
    component: str = "Z",
    bandpass: tuple[float, float] | None = None,
    start: obspy.UTCDateTime | None = None,
    end: obspy.UTCDateTime | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A record section: one trace per station (component ``component``, else the station's first channel),
    demeaned (and band-passed with ``bandpass``), each scaled to its own largest amplitude, ordered by
    epicentral distance from event ``event_index`` of ``catalog`` (from the stations' centroid without events);
    stations without coordinates come last. Time is in seconds after the event's origin time (after the
    stream's first sample without events).

    P and S picks are vertical bars (blue, red): solid when associated with an event (``event_id``), dashed
    otherwise; with ``picks=None`` the catalog's arrivals are drawn. Annotations (``SINE_P``/``SINE_S`` or the
    ``?XP``/``?XS`` codes of :func:`~sine_seisbench.pipeline.publish.write_annotations`) are shaded under each trace,
    0 to 1 over the trace's height.

    :param picks: A picks table (:func:`~sine_seisbench.pipeline.publish.read_picks_csv`), SeisBench picks, or None.
    :param path: PNG or PDF file to write, or None (only return the figure).
    :param start: Plot from this time (default: the data's start).
    :param end: Plot until this time (default: the data's end).
    :param ax: Axes to draw into (the figure is then the axes' figure).
    :return: The matplotlib Figure.
    """
    if start is not None or end is not None:
        stream = stream.slice(start, end)
    traces = _section_traces(stream, component)
    if not traces:
        raise UserError("no waveform data to plot (the stream is empty in the chosen time span)")
    table = StationTable.from_any(inventory)
    points = station_points(inventory)
    coordinates = {key: _trace_coordinates(st[0], table, points) for key, st in traces.items()}

    events = list(catalog or [])
    origin: Origin | None = None
    if events:
        if not 0 <= event_index < len(events):
            raise UserError(
                f"event index {event_index} is out of range; the events file holds {len(events)} event(s)"
            )
        origin = preferred_origin(events[event_index])
    located = [c for c in coordinates.values() if c is not None]
    if origin is not None and origin.latitude is not None:
        centre = (origin.latitude, origin.longitude)
        centre_name = "epicentre"
    elif located:
        centre = reference_point(located)
        centre_name = "station centroid"
    else:
        centre, centre_name = None, ""

    def distance(key: str) -> float:
        c = coordinates[key]
        if c is None or centre is None:
            return math.inf
        return gps2dist_azimuth(centre[0], centre[1], c.latitude, c.longitude)[0] / 1000.0

    order = sorted(traces, key=lambda k: (distance(k), k))
    if origin is not None and origin.time is not None:
        t0, t0_name = origin.time, "origin time"
    else:
        t0 = min(tr.stats.starttime for st in traces.values() for tr in st)
        t0_name = str(t0)[:22]

    fig = _new_figure((9, 1.2 + 0.45 * len(order))) if ax is None else ax.figure
    if ax is None:
        ax = fig.add_subplot(1, 1, 1)
    curves = annotations_by_station(annotations)
    frame = _as_picks_frame(picks, catalog)
    half = 0.45
    xmin, xmax = math.inf, -math.inf
    for k, key in enumerate(order):
        prepared = _prepared(traces[key], bandpass)
        peak = max((np.nanmax(np.abs(tr.data)) for tr in prepared), default=0.0)
        scale = half / peak if peak > 0 else 0.0
        for tr in prepared:
            x = tr.times(reftime=t0)
            xmin, xmax = min(xmin, x[0]), max(xmax, x[-1])
            ax.plot(x, k + scale * tr.data, color="k", lw=0.5, zorder=3)
        for phase, colour in PHASE_COLOURS.items():
            for tr in curves.get(key, {}).get(phase, []):
                if start is not None or end is not None:
                    tr = tr.slice(start, end)
                if not tr.stats.npts:
                    continue
                x = tr.times(reftime=t0)
                p = np.clip(np.nan_to_num(np.asarray(tr.data, dtype=float)), 0.0, 1.0)
                ax.fill_between(
                    x, k - half, k - half + 2 * half * p, color=colour, alpha=0.3, lw=0, zorder=1
                )
    rows = {key: k for k, key in enumerate(order)}
    for pick in frame.to_dict("records"):
        key = f"{pick['network']}.{pick['station']}.{pick['location'] or ''}"
        phase = str(pick["phase"]).upper()[:1]
        if key not in rows or phase not in PHASE_COLOURS:
            continue
        t = obspy.UTCDateTime(pick["time"])
        if (start is not None and t < start) or (end is not None and t > end):
            continue
        k = rows[key]
        ax.plot(
            [t - t0] * 2,
            [k - half, k + half],
            color=PHASE_COLOURS[phase],
            lw=1.6,
            ls="-" if pick.get("event_id") else "--",
            zorder=4,
        )
    if origin is not None:
        ax.axvline(0.0, color="0.4", lw=0.8, ls=":", zorder=2)
    labels = []
    for key in order:
        d = distance(key)
        name = key.rstrip(".")
        labels.append(f"{name}  {d:.0f} km" if math.isfinite(d) else f"{name}  (no coordinates)")
    ax.set_yticks(range(len(order)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(order) - 0.3)
    if math.isfinite(xmin):
        ax.set_xlim(xmin, xmax)
    ax.set_xlabel(f"seconds after {t0_name}" + (f" ({str(t0)[:22]})" if origin is not None else ""))
    if centre_name:
        ax.set_ylabel(f"station, distance from the {centre_name}")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=PHASE_COLOURS["P"], lw=1.6, label="P pick"),
        Line2D([], [], color=PHASE_COLOURS["S"], lw=1.6, label="S pick"),
        Line2D([], [], color="0.3", lw=1.6, ls="--", label="pick without event"),
    ]
    if curves:
        handles += [
            Patch(color=PHASE_COLOURS["P"], alpha=0.3, label="P probability"),
            Patch(color=PHASE_COLOURS["S"], alpha=0.3, label="S probability"),
        ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=len(handles),
        fontsize=7,
        frameon=False,
    )
    if title is None:
        title = (
            f"{_event_label(events[event_index])}"
            if origin is not None
            else f"{len(order)} stations"
        )
        if bandpass is not None:
            title += f"  ({bandpass[0]:g}-{bandpass[1]:g} Hz)"
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------------------------
# Map
# ------------------------------------------------------------------------------------------------------------
def error_ellipse(origin: Origin, n: int = 73) -> tuple[np.ndarray, np.ndarray] | None:
    """Longitudes and latitudes of the 1-sigma horizontal error ellipse of an origin: from
    ``origin_uncertainty`` (max/min horizontal uncertainty, azimuth of the major axis from north), else an
    axis-aligned ellipse from the latitude/longitude errors; None when neither is given."""
    lat, lon = origin.latitude, origin.longitude
    if lat is None or lon is None:
        return None
    ou = origin.origin_uncertainty
    major = minor = azimuth = None
    if ou is not None:
        major, minor = ou.max_horizontal_uncertainty, ou.min_horizontal_uncertainty
        azimuth = ou.azimuth_max_horizontal_uncertainty
        if major is None and ou.horizontal_uncertainty is not None:
            major = minor = ou.horizontal_uncertainty
            azimuth = 0.0
    if major is not None:
        major_km, minor_km = major / 1000.0, (major if minor is None else minor) / 1000.0
        phi = math.radians(azimuth or 0.0)
    else:
        lat_err = origin.latitude_errors.uncertainty if origin.latitude_errors else None
        lon_err = origin.longitude_errors.uncertainty if origin.longitude_errors else None
        if lat_err is None or lon_err is None:
            return None
        north_km = lat_err * _KM_PER_DEGREE
        east_km = lon_err * _KM_PER_DEGREE * math.cos(math.radians(lat))
        # axis-aligned: the major axis along north (azimuth 0) or east (90)
        if north_km >= east_km:
            major_km, minor_km, phi = north_km, east_km, 0.0
        else:
            major_km, minor_km, phi = east_km, north_km, math.pi / 2
    t = np.linspace(0.0, 2 * math.pi, n)
    # major axis along azimuth phi (clockwise from north): unit vector (east, north) = (sin phi, cos phi)
    east = major_km * np.cos(t) * math.sin(phi) + minor_km * np.sin(t) * math.cos(phi)
    north = major_km * np.cos(t) * math.cos(phi) - minor_km * np.sin(t) * math.sin(phi)
    lats = lat + north / _KM_PER_DEGREE
    lons = lon + east / (_KM_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
    return lons, lats


def event_map(
    inventory: Inventory | pd.DataFrame | None,
    catalog: Catalog | None = None,
    path: str | os.PathLike | None = None,
    *,
    stations_with_data: Iterable[str] | None = None,
    highlight: int | None = None,
    reference: Catalog | None = None,
    reference_label: str = "reference",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A map of the stations (triangles with their codes) and the epicentres (stars) with their 1-sigma error
    ellipses (:func:`error_ellipse`), in longitude and latitude with a locally true aspect ratio.

    :param stations_with_data: ``NET.STA`` of the stations that recorded (filled triangles; the others open).
                               None: all filled.
    :param highlight: Index of an event drawn larger (the one of the record section), or None.
    :param reference: Events to compare with (e.g. a catalogue's), drawn as open circles with their error
                      ellipses dashed, or None.
    :param reference_label: Legend text of the reference events.
    :param title: Title; default: the numbers of stations and events, and the error ellipse and depth error of
                  the ``highlight`` event.
    :param path: PNG or PDF file to write, or None (only return the figure).
    :param ax: Axes to draw into.
    :return: The matplotlib Figure.
    """
    points = station_points(inventory)
    events = list(catalog or [])
    origins = [(i, preferred_origin(e)) for i, e in enumerate(events)]
    origins = [(i, o) for i, o in origins if o is not None and o.latitude is not None]
    if not points and not origins and not reference:
        raise UserError("nothing to map: no station coordinates and no located events")
    fig = _new_figure((6, 6)) if ax is None else ax.figure
    if ax is None:
        ax = fig.add_subplot(1, 1, 1)
    have = None if stations_with_data is None else set(stations_with_data)
    lats: list[float] = []
    lons: list[float] = []
    for code, c in sorted(points.items()):
        filled = have is None or code in have
        ax.plot(
            c.longitude,
            c.latitude,
            "^",
            ms=7,
            mec="k",
            mfc="0.35" if filled else "none",
            zorder=3,
        )
        ax.annotate(
            code.split(".", 1)[1],
            (c.longitude, c.latitude),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
        )
        lats.append(c.latitude)
        lons.append(c.longitude)
    confidence = None
    for i, origin in origins:
        ellipse = error_ellipse(origin)
        big = highlight is not None and i == highlight
        if ellipse is not None:
            ax.plot(*ellipse, color="tab:red", lw=1.2 if big else 0.8, zorder=4)
            lons += list(ellipse[0])
            lats += list(ellipse[1])
            ou = origin.origin_uncertainty
            if ou is not None and ou.confidence_level:
                confidence = ou.confidence_level
        ax.plot(
            origin.longitude,
            origin.latitude,
            "*",
            color="tab:red",
            mec="k",
            mew=0.5,
            ms=14 if big else 9,
            zorder=5,
        )
        lats.append(origin.latitude)
        lons.append(origin.longitude)
    references = [preferred_origin(e) for e in reference or []]
    references = [o for o in references if o is not None and o.latitude is not None]
    for origin in references:
        ellipse = error_ellipse(origin)
        if ellipse is not None:
            ax.plot(*ellipse, color="k", lw=0.7, ls="--", zorder=4)
        ax.plot(origin.longitude, origin.latitude, "o", mfc="none", mec="k", ms=7, zorder=5)
        lats.append(origin.latitude)
        lons.append(origin.longitude)
    lat0 = float(np.mean(lats))
    pad_lat = max(0.1 * (max(lats) - min(lats)), 0.02)
    pad_lon = max(0.1 * (max(lons) - min(lons)), 0.02 / max(math.cos(math.radians(lat0)), 0.1))
    ax.set_xlim(min(lons) - pad_lon, max(lons) + pad_lon)
    ax.set_ylim(min(lats) - pad_lat, max(lats) + pad_lat)
    ax.set_aspect(1.0 / max(math.cos(math.radians(lat0)), 0.05), adjustable="box")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(True, lw=0.3, color="0.8")
    from matplotlib.lines import Line2D

    handles = []
    if points:
        handles.append(
            Line2D([], [], ls="", marker="^", mec="k", mfc="0.35", ms=7, label="station")
        )
    if origins:
        handles.append(
            Line2D([], [], ls="", marker="*", color="tab:red", mec="k", ms=10, label="epicentre")
        )
        level = f" ({confidence:.0f} % confidence)" if confidence else ""
        handles.append(Line2D([], [], color="tab:red", lw=1, label=f"1σ error ellipse{level}"))
    if references:
        handles.append(
            Line2D(
                [], [], ls="--", marker="o", mfc="none", color="k", lw=0.7, label=reference_label
            )
        )
    ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.9)
    if title is None:
        title = f"{len(points)} stations, {len(origins)} event(s)"
        chosen = [o for i, o in origins if i == highlight]
        if chosen and chosen[0].origin_uncertainty is not None:
            ou = chosen[0].origin_uncertainty
            if ou.max_horizontal_uncertainty is not None:
                minor = ou.min_horizontal_uncertainty or ou.max_horizontal_uncertainty
                title += f"\n1σ ellipse {ou.max_horizontal_uncertainty / 1000:.2f} × {minor / 1000:.2f} km"
            depth_error = chosen[0].depth_errors.uncertainty if chosen[0].depth_errors else None
            if depth_error is not None:
                title += f", depth ± {depth_error / 1000:.1f} km"
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    return fig


def events_within(
    catalog: Catalog | None, start: obspy.UTCDateTime | None, end: obspy.UTCDateTime | None
) -> Catalog | None:
    """The events of ``catalog`` whose preferred origin time lies within ``[start, end]`` (None: open)."""
    if catalog is None:
        return None
    kept = []
    for event in catalog:
        origin = preferred_origin(event)
        if origin is None or origin.time is None:
            continue
        if (start is None or origin.time >= start) and (end is None or origin.time <= end):
            kept.append(event)
    return Catalog(kept)


def _stream_span(
    stream: obspy.Stream, start: obspy.UTCDateTime | None, end: obspy.UTCDateTime | None
) -> tuple[obspy.UTCDateTime | None, obspy.UTCDateTime | None]:
    if len(stream):
        first = min(tr.stats.starttime for tr in stream)
        last = max(tr.stats.endtime for tr in stream)
        start = first if start is None else max(start, first)
        end = last if end is None else min(end, last)
    return start, end


def overview(
    stream: obspy.Stream,
    inventory: Inventory | pd.DataFrame | None = None,
    picks: pd.DataFrame | Iterable[sbu.Pick] | None = None,
    catalog: Catalog | None = None,
    annotations: obspy.Stream | None = None,
    path: str | os.PathLike | None = None,
    reference: Catalog | None = None,
    reference_label: str = "reference",
    **section_kwargs: Any,
) -> Figure:
    """:func:`record_section` (left) and :func:`event_map` (right) in one figure; ``section_kwargs`` go to
    :func:`record_section` (``event_index``, ``component``, ``bandpass``, ``start``, ``end``, ``title``).

    :param reference: Events to compare with on the map (:func:`event_map`); only those with an origin time
                      within the plotted waveforms' time span are drawn.
    """
    from matplotlib.gridspec import GridSpec

    n_stations = len({_station_key(tr) for tr in stream})
    fig = _new_figure((14, max(5.0, 1.2 + 0.45 * n_stations)))
    grid = GridSpec(1, 2, width_ratios=[1.7, 1.0], figure=fig, wspace=0.25)
    record_section(
        stream,
        inventory,
        picks,
        catalog,
        annotations,
        ax=fig.add_subplot(grid[0]),
        **section_kwargs,
    )
    event_map(
        inventory,
        catalog,
        stations_with_data={f"{tr.stats.network}.{tr.stats.station}" for tr in stream},
        highlight=section_kwargs.get("event_index", 0) if catalog else None,
        reference=events_within(
            reference, *_stream_span(stream, section_kwargs.get("start"), section_kwargs.get("end"))
        ),
        reference_label=reference_label,
        ax=fig.add_subplot(grid[1]),
    )
    _save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------
PLOT_KINDS = ("overview", "section", "map")


def add_plot_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``sine plot`` to the ``sine`` command's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "plot",
        help="record section (traces by distance, picks, probability curves) and map (stations, epicentres "
        "with error ellipses) as PNG or PDF",
        description="Plots waveforms with SINE's picks and events: a record section ordered by distance from "
        "the event and a map with 1-sigma error ellipses. Inputs are the files sine classify and sine annotate "
        "write.",
    )
    p.add_argument(
        "waveforms",
        nargs="*",
        help="waveform files readable by ObsPy, or glob patterns (not needed for --kind map)",
    )
    p.add_argument(
        "--inventory",
        required=True,
        help="station file: StationXML or a CSV/TSV station table (as for sine classify)",
    )
    p.add_argument(
        "--picks", help="picks CSV of sine classify (default: none; the events' arrivals are drawn)"
    )
    p.add_argument(
        "--events", help="events file: QuakeML, or the events CSV of sine classify (default: none)"
    )
    p.add_argument(
        "--reference",
        help="events to compare with on the map (e.g. a catalogue), those within the waveforms' time span: "
        "QuakeML or a CSV with time, latitude, longitude (default: none)",
    )
    p.add_argument(
        "--reference-label",
        default="reference",
        help="legend text of the --reference events (default: reference)",
    )
    p.add_argument(
        "--annotations",
        help="probability traces of sine annotate --out, shaded under the traces (default: none)",
    )
    p.add_argument("--out", required=True, help="figure file, .png or .pdf (its folder must exist)")
    p.add_argument(
        "--kind",
        choices=PLOT_KINDS,
        default="overview",
        help="overview (section and map), section or map (default: overview)",
    )
    p.add_argument(
        "--event",
        type=int,
        default=0,
        help="index of the event the distances and times refer to, in origin-time order (default: 0, the first)",
    )
    p.add_argument(
        "--component",
        default="Z",
        help="component drawn per station; a station without it shows its first channel (default: Z)",
    )
    p.add_argument(
        "--bandpass",
        type=float,
        nargs=2,
        metavar=("FMIN", "FMAX"),
        help="band-pass filter (Hz) of the drawn traces (default: none, only demeaned)",
    )
    p.add_argument("--start", help="plot from this time, ISO UTC (default: the data's start)")
    p.add_argument("--end", help="plot until this time, ISO UTC (default: the data's end)")
    p.set_defaults(func=cmd_plot)
    return p


def _time_option(value: str | None, option: str) -> obspy.UTCDateTime | None:
    if value is None:
        return None
    try:
        return obspy.UTCDateTime(value)
    except Exception as e:  # noqa: BLE001 - ObsPy raises several types for a bad time
        raise UserError(
            f"{option} {value!r} is not a time; give ISO 8601 UTC, e.g. 2014-08-24T00:01:50"
        ) from e


def _sorted_catalog(catalog: Catalog) -> Catalog:
    def key(event: Event) -> float:
        origin = preferred_origin(event)
        return math.inf if origin is None or origin.time is None else origin.time.timestamp

    return Catalog(sorted(catalog, key=key))


def cmd_plot(args: argparse.Namespace) -> int:
    """``sine plot``: checks every input and the output before reading anything heavy; mistakes raise
    :class:`~sine_seisbench.errors.UserError`."""
    out = check_figure_path(args.out, "--out")
    start = _time_option(args.start, "--start")
    end = _time_option(args.end, "--end")
    if start is not None and end is not None and end <= start:
        raise UserError(f"--end {args.end} is not after --start {args.start}")
    if args.bandpass is not None:
        fmin, fmax = args.bandpass
        if not 0 < fmin < fmax:
            raise UserError(f"--bandpass {fmin:g} {fmax:g}: give 0 < FMIN < FMAX (Hz)")
    if args.kind != "map" and not args.waveforms:
        raise UserError(f"--kind {args.kind} needs waveform files; give them, or use --kind map")
    files = waveform_files(args.waveforms) if args.waveforms else []
    for option, path in (
        ("--picks", args.picks),
        ("--events", args.events),
        ("--reference", args.reference),
        ("--annotations", args.annotations),
    ):
        if path:
            check_input_file(path, option.lstrip("-") + " file", option)
    picks = read_picks_csv(args.picks) if args.picks else None
    catalog = _sorted_catalog(read_catalog(args.events)) if args.events else None
    annotations = read_annotations(args.annotations) if args.annotations else None
    reference = read_catalog(args.reference) if args.reference else None
    stream = read_waveforms(files) if files else obspy.Stream()
    # the waveforms give the networks of a station table without a network column
    inventory = read_inventory(args.inventory, stream=stream if len(stream) else None)
    if catalog is not None and len(catalog) and not 0 <= args.event < len(catalog):
        raise UserError(
            f"--event {args.event} is out of range; {args.events} holds {len(catalog)} event(s) "
            f"(0 to {len(catalog) - 1})"
        )
    section = {
        "event_index": args.event,
        "component": args.component,
        "bandpass": tuple(args.bandpass) if args.bandpass else None,
        "start": start,
        "end": end,
    }
    if args.kind == "map":
        event_map(
            inventory,
            catalog,
            out,
            stations_with_data=(
                {f"{tr.stats.network}.{tr.stats.station}" for tr in stream} if files else None
            ),
            highlight=args.event if catalog else None,
            reference=events_within(reference, *_stream_span(stream, start, end)),
            reference_label=args.reference_label,
        )
    elif args.kind == "section":
        record_section(stream, inventory, picks, catalog, annotations, out, **section)
    else:
        overview(
            stream,
            inventory,
            picks,
            catalog,
            annotations,
            out,
            reference,
            args.reference_label,
            **section,
        )
    print(f"figure written to {out}")
    return 0


__all__ = [
    "add_plot_parser",
    "cmd_plot",
    "error_ellipse",
    "events_within",
    "event_map",
    "overview",
    "record_section",
    "station_points",
]
