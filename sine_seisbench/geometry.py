"""Station coordinates, local projection, the station graph and geographic grouping of a network."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import obspy
import pandas as pd
import torch
from obspy.core.inventory import Inventory
from seisbench.models.base import GroupingHelper

from .seisbench_adapter import assemble_groups, station_intervals

EARTH_RADIUS_KM = 6371.0
EARTH_KM_PER_DEG = 111.19492664455873  # great-circle km per degree on a sphere of radius 6371 km


@dataclass(frozen=True)
class Coordinates:
    """Station position: degrees and metres above sea level."""

    latitude: float
    longitude: float
    elevation: float

    @classmethod
    def from_stats(cls, coordinates: Mapping) -> Coordinates:
        """From ``trace.stats.coordinates`` (latitude, longitude, optional elevation in m; other keys such as
        ObsPy's ``local_depth`` are ignored)."""
        return cls(
            float(coordinates["latitude"]),
            float(coordinates["longitude"]),
            float(coordinates.get("elevation", 0.0) or 0.0),
        )


def station_key(trace_id: str) -> str:
    """``NET.STA.LOC`` of a ``NET.STA.LOC.CHA`` id (or of a ``NET.STA.LOC`` id)."""
    return ".".join(trace_id.split(".")[:3])


class StationTable:
    """Coordinates of stations keyed ``NET.STA.LOC``, built from an ObsPy Inventory or a pandas DataFrame.

    A DataFrame needs the columns ``network``, ``station``, ``latitude``, ``longitude``, ``elevation`` (m); a
    ``location`` column is optional (without it the coordinates hold for every location code). An Inventory's
    channel coordinates are used, taking the epoch that covers the requested time where several exist.
    """

    def __init__(self, entries: Mapping[str, list[tuple[float, float, Coordinates]]]) -> None:
        self._entries = dict(entries)

    @classmethod
    def from_any(cls, source: Inventory | pd.DataFrame | StationTable | None) -> StationTable:
        if source is None:
            return cls({})
        if isinstance(source, StationTable):
            return source
        if isinstance(source, Inventory):
            return cls.from_inventory(source)
        if isinstance(source, pd.DataFrame):
            return cls.from_dataframe(source)
        raise TypeError(
            f"Station coordinates must be an obspy Inventory or a pandas DataFrame, got {type(source).__name__}."
        )

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> StationTable:
        entries: dict[str, list[tuple[float, float, Coordinates]]] = {}
        for net in inventory:
            for sta in net:
                channels = sta.channels or []
                for cha in channels:
                    start = cha.start_date.timestamp if cha.start_date else -np.inf
                    end = cha.end_date.timestamp if cha.end_date else np.inf
                    coords = Coordinates(
                        float(cha.latitude), float(cha.longitude), float(cha.elevation or 0.0)
                    )
                    entries.setdefault(f"{net.code}.{sta.code}.{cha.location_code}", []).append(
                        (start, end, coords)
                    )
                start = sta.start_date.timestamp if sta.start_date else -np.inf
                end = sta.end_date.timestamp if sta.end_date else np.inf
                coords = Coordinates(
                    float(sta.latitude), float(sta.longitude), float(sta.elevation or 0.0)
                )
                entries.setdefault(f"{net.code}.{sta.code}.*", []).append((start, end, coords))
        return cls(entries)

    @classmethod
    def from_dataframe(cls, frame: pd.DataFrame) -> StationTable:
        required = {"network", "station", "latitude", "longitude", "elevation"}
        missing = required - set(frame.columns)
        if missing:
            raise ValueError(
                f"Station DataFrame lacks the column(s) {sorted(missing)}; it needs {sorted(required)} "
                "(elevation in metres) and optionally 'location'."
            )
        entries: dict[str, list[tuple[float, float, Coordinates]]] = {}
        for row in frame.itertuples(index=False):
            loc = getattr(row, "location", "*")
            loc = "" if loc is None or (isinstance(loc, float) and math.isnan(loc)) else str(loc)
            coords = Coordinates(float(row.latitude), float(row.longitude), float(row.elevation))
            if not all(
                math.isfinite(v) for v in (coords.latitude, coords.longitude, coords.elevation)
            ):
                continue
            entries.setdefault(f"{row.network}.{row.station}.{loc}", []).append(
                (-np.inf, np.inf, coords)
            )
        return cls(entries)

    def get(self, key: str, time: obspy.UTCDateTime | None = None) -> Coordinates | None:
        """Coordinates of ``NET.STA.LOC`` at ``time``, or None when unknown."""
        net, sta, _loc = key.split(".")[:3]
        for candidate in (key, f"{net}.{sta}.*"):
            epochs = self._entries.get(candidate)
            if not epochs:
                continue
            if time is not None:
                t = time.timestamp
                for start, end, coords in epochs:
                    if start <= t <= end:
                        return coords
            return epochs[-1][2]
        return None

    def __len__(self) -> int:
        return len(self._entries)


def attach_coordinates(
    stream: obspy.Stream, table: StationTable, drop_unlocated: bool = False
) -> list[str]:
    """Set ``trace.stats.coordinates`` (ObsPy's convention) on every trace from ``table``.

    Traces that already carry ``stats.coordinates`` keep them.

    :return: Sorted ids ``NET.STA.LOC`` of stations without coordinates; their traces are removed when
             ``drop_unlocated`` is true, otherwise a :class:`ValueError` names them.
    """
    missing: set[str] = set()
    for trace in stream:
        if "coordinates" in trace.stats:
            continue
        key = station_key(trace.id)
        coords = table.get(key, trace.stats.starttime)
        if coords is None:
            missing.add(key)
            continue
        trace.stats.coordinates = obspy.core.AttribDict(
            latitude=coords.latitude, longitude=coords.longitude, elevation=coords.elevation
        )
    if missing and not drop_unlocated:
        raise ValueError(
            f"No coordinates for station(s) {', '.join(sorted(missing))}. Add them to the inventory "
            "(an obspy Inventory or a DataFrame with network, station, latitude, longitude, elevation), "
            "or pass drop_unlocated=True to annotate without them."
        )
    for trace in [tr for tr in stream if station_key(tr.id) in missing]:
        stream.remove(trace)
    return sorted(missing)


def wrap_longitude(degrees: np.ndarray | float) -> np.ndarray | float:
    """Longitude (or longitude difference) wrapped into [-180, 180) degrees."""
    wrapped = np.mod(np.asarray(degrees, dtype=float) + 180.0, 360.0) - 180.0
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


def project(
    lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Local east/north coordinates (km) around ``(lat0, lon0)`` (equirectangular; fine for a few 100 km).

    Longitude differences are wrapped into [-180, 180) degrees, so a network across the antimeridian (stations
    at 179.9° and -179.9°) projects to positions a few km apart, not 40,000 km.
    """
    east = (
        wrap_longitude(np.asarray(lon, dtype=float) - lon0)
        * EARTH_KM_PER_DEG
        * math.cos(math.radians(lat0))
    )
    north = (np.asarray(lat) - lat0) * EARTH_KM_PER_DEG
    return east, north


def unproject(east_km: float, north_km: float, lat0: float, lon0: float) -> tuple[float, float]:
    """Inverse of :func:`project`: latitude and longitude of a local offset."""
    lat = lat0 + north_km / EARTH_KM_PER_DEG
    lon = lon0 + east_km / (EARTH_KM_PER_DEG * math.cos(math.radians(lat0)))
    return lat, float(wrap_longitude(lon))


def reference_point(coords: Iterable[Coordinates]) -> tuple[float, float]:
    """Reference point of a group: the mean latitude and the circular mean longitude of its stations."""
    coords = list(coords)
    lat = float(np.mean([c.latitude for c in coords]))
    lon_rad = np.radians([c.longitude for c in coords])
    lon = float(np.degrees(np.arctan2(np.sin(lon_rad).mean(), np.cos(lon_rad).mean())))
    return lat, lon


def local_positions(coords: list[Coordinates]) -> tuple[np.ndarray, tuple[float, float]]:
    """East, north, up (km) of stations relative to their reference point, and the reference point."""
    lat0, lon0 = reference_point(coords)
    east, north = project(
        np.array([c.latitude for c in coords]), np.array([c.longitude for c in coords]), lat0, lon0
    )
    up = np.array([c.elevation for c in coords]) / 1000.0
    return np.stack([east, north, up], axis=-1), (lat0, lon0)


#: A station is *far* when it is more than this many times the network's typical station spacing (median
#: nearest-neighbour distance) away from the main body of the network ...
FAR_STATION_SPACING_FACTOR = 10.0
#: ... and more than this many km: a station that far from every other station hardly shares an event with
#: them within the 120 km epicentral distance of SINE's training records. A sparse regional network, or a
#: dense array next to regional stations (checked on the western US, Ridgecrest and central Italy station
#: lists), is not flagged, while a station 300 km off a 20 km network is.
FAR_STATION_MIN_KM = 200.0
#: Stations cut off from the main body of the network are flagged only when they are at most this fraction of
#: the network (two networks of similar size far apart are two networks, not outliers).
FAR_STATION_MAX_FRACTION = 0.25


class FarStation(NamedTuple):
    """A station implausibly far from the rest of its network (see :func:`far_stations`)."""

    station: str
    distance_km: float
    reason: str


def _unit_vectors(coords: list[Coordinates]) -> np.ndarray:
    lat = np.radians([c.latitude for c in coords])
    lon = np.radians([c.longitude for c in coords])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _chord_to_km(chord: np.ndarray | float) -> np.ndarray | float:
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))


def _km_to_chord(km: float) -> float:
    return 2.0 * math.sin(min(km / EARTH_RADIUS_KM, math.pi) / 2.0)


def far_stations(
    keys: list[str],
    coords: list[Coordinates],
    spacing_factor: float = FAR_STATION_SPACING_FACTOR,
    min_km: float = FAR_STATION_MIN_KM,
    max_fraction: float = FAR_STATION_MAX_FRACTION,
) -> list[FarStation]:
    """Stations implausibly far from the rest of their network, typically a coordinate error (a sign-flipped
    longitude, swapped latitude and longitude, a typo in a degree).

    Distances are great-circle distances, so the test works anywhere on the globe (antimeridian, poles). The
    network's typical spacing is the median distance of its stations to their nearest neighbour. Stations are
    linked when they are closer than ``threshold = max(spacing_factor * spacing, min_km)``; the largest set of
    linked stations is the main body of the network. Every other linked set holding at most ``max_fraction``
    of the stations is flagged, each of its stations with its distance to the nearest station of the main
    body (a single cut-off station is always flagged). Several stations with the same wrong coordinates are
    hence flagged too, while a network of two far apart clusters of similar size is not. Fewer than three
    stations are never flagged (no majority).

    :param keys: Station ids (``NET.STA.LOC``), parallel to ``coords``.
    :param coords: Station coordinates.
    :param spacing_factor: See :data:`FAR_STATION_SPACING_FACTOR`.
    :param min_km: See :data:`FAR_STATION_MIN_KM`.
    :param max_fraction: See :data:`FAR_STATION_MAX_FRACTION`.
    :return: Flagged stations (sorted by id) with their distance (km) and a human-readable reason.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(keys)
    if n != len(coords):
        raise ValueError(f"{n} station ids but {len(coords)} coordinates")
    if n < 3:
        return []
    xyz = _unit_vectors(coords)
    tree = cKDTree(xyz)
    chord, _ = tree.query(xyz, k=2)
    nearest_km = _chord_to_km(chord[:, 1])
    spacing = float(np.median(nearest_km))
    threshold = max(spacing_factor * spacing, min_km)
    links = tree.sparse_distance_matrix(tree, _km_to_chord(threshold), output_type="coo_matrix")
    n_sets, labels = connected_components(links, directed=False)
    if n_sets == 1:
        return []
    sizes = np.bincount(labels, minlength=n_sets)
    main = int(np.argmax(sizes))
    main_idx = np.nonzero(labels == main)[0]
    main_tree = cKDTree(xyz[main_idx])
    out = []
    for i in np.nonzero(labels != main)[0]:
        if sizes[labels[i]] > max(1.0, max_fraction * n):
            continue
        d, j = main_tree.query(xyz[i])
        distance = float(_chord_to_km(d))
        nearest = keys[int(main_idx[j])]
        others = int(sizes[labels[i]]) - 1
        together = f" (together with {others} other station(s) equally far off)" if others else ""
        out.append(
            FarStation(
                keys[i],
                distance,
                f"station {keys[i]} at ({coords[i].latitude:.4f}, {coords[i].longitude:.4f}) is "
                f"implausibly far from its network: {distance:.0f} km from the nearest other station "
                f"({nearest}){together}, "
                f"while the network's stations are typically {spacing:.1f} km apart (limit "
                f"{threshold:.0f} km); check its coordinates (a sign-flipped or swapped latitude/longitude?)",
            )
        )
    return sorted(out)


def warn_far_stations(
    coordinates: Mapping[str, Coordinates],
    logger: logging.Logger,
    warned: set[str] | None = None,
) -> list[str]:
    """Logs one warning per station of ``coordinates`` that :func:`far_stations` flags.

    :param warned: Stations already warned about (a caller that checks again as stations join); the newly
                   warned ones are added.
    :return: The flagged station ids, sorted.
    """
    keys = sorted(coordinates)
    flagged = far_stations(keys, [coordinates[k] for k in keys])
    for far in flagged:
        if warned is None or far.station not in warned:
            logger.warning(f"SINE: {far.reason}.")
        if warned is not None:
            warned.add(far.station)
    return [far.station for far in flagged]


def build_station_graph(
    positions: torch.Tensor,
    station_mask: torch.Tensor,
    k: int = 6,
    radius_km: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed k-nearest-neighbour graph (optionally capped by a radius) for a batch of station groups.

    :param positions: ``(B, S, 3)`` east, north, up in km.
    :param station_mask: ``(B, S)`` True for real stations; padded stations get no edges.
    :param k: Neighbours per station.
    :param radius_km: If given, neighbours farther away are not connected.
    :return: ``edge_index`` ``(2, E)`` over flattened ``B * S`` nodes (source → target) and ``edge_attr``
             ``(E, 4)``: distance / 100 km, sine and cosine of the azimuth to the neighbour, height difference
             in km.
    """
    b, s, _ = positions.shape
    device = positions.device
    if s < 2 or k < 1:
        return torch.empty(2, 0, dtype=torch.long, device=device), positions.new_empty(0, 4)
    horizontal = positions[..., :2]
    dist = torch.cdist(horizontal, horizontal)
    pair_ok = station_mask.unsqueeze(1) & station_mask.unsqueeze(2)
    pair_ok &= ~torch.eye(s, dtype=torch.bool, device=device)
    if radius_km is not None:
        pair_ok &= dist <= radius_km
    dist = dist.masked_fill(~pair_ok, float("inf"))
    kk = min(k, s - 1)
    nn_dist, nn_idx = torch.topk(dist, kk, dim=-1, largest=False)
    valid = torch.isfinite(nn_dist)
    offsets = (torch.arange(b, device=device) * s).view(b, 1, 1)
    dst = (torch.arange(s, device=device).view(1, s, 1) + offsets).expand(b, s, kk)
    src = nn_idx + offsets
    edge_index = torch.stack([src[valid], dst[valid]])
    flat = positions.reshape(b * s, 3)
    delta = flat[edge_index[0]] - flat[edge_index[1]]
    distance = torch.linalg.vector_norm(delta[:, :2], dim=-1)
    azimuth = torch.atan2(delta[:, 0], delta[:, 1])
    edge_attr = torch.stack(
        [distance / 100.0, torch.sin(azimuth), torch.cos(azimuth), delta[:, 2]], dim=-1
    )
    return edge_index, edge_attr


def compact_groups(
    names: list[str],
    coords: list[Coordinates],
    max_stations: int,
    min_neighbours: int | None = None,
) -> list[list[str]]:
    """Split stations into geographically compact, overlapping groups of at most ``max_stations``.

    Every station is *served* by a group that holds it together with its ``min_neighbours`` nearest
    neighbours (default ``max_stations // 2``). Groups are formed greedily around unserved stations in id
    order, each group being the seed's ``max_stations`` nearest stations, until all stations are served.
    The result depends only on the station set, not on the order of the input.

    :return: Groups as sorted lists of station names.
    """
    order = np.argsort(names)
    names = [names[i] for i in order]
    coords = [coords[i] for i in order]
    n = len(names)
    if n <= max_stations:
        return [names]
    if min_neighbours is None:
        min_neighbours = max_stations // 2
    min_neighbours = min(min_neighbours, max_stations - 1)
    pos, _ = local_positions(coords)
    dist = np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1)
    # Stable sort on (distance, name order) keeps ties deterministic
    ranked = np.argsort(dist, axis=1, kind="stable")
    needed = [set(ranked[i, : min_neighbours + 1].tolist()) for i in range(n)]
    served = np.zeros(n, dtype=bool)
    groups: list[list[str]] = []
    for seed in range(n):
        if served[seed]:
            continue
        members = set(ranked[seed, :max_stations].tolist())
        for i in members:
            if needed[i] <= members:
                served[i] = True
        served[seed] = True
        groups.append(sorted(names[i] for i in members))
    return groups


class GeographicGroupingHelper(GroupingHelper):
    """Groups a network into compact, overlapping station groups for :class:`~sine_seisbench.model.SINE`.

    Needs ``trace.stats.coordinates`` on every trace (set by ``SINE.annotate_stream_pre`` from the inventory).
    Within every time interval with a constant set of available stations (SeisBench's interval logic), the
    stations are split with :func:`compact_groups`. SINE's own ``annotate``/``classify`` group each window's
    stations themselves (with ``min_neighbours`` from here) and do not call :meth:`group_stream`.

    :param max_stations: Largest group size (the network's station axis).
    :param min_neighbours: Nearest neighbours a station's serving group must contain.
    """

    def __init__(self, max_stations: int, min_neighbours: int | None = None) -> None:
        super().__init__("full")
        self.max_stations = max_stations
        self.min_neighbours = min_neighbours

    def group_stream(
        self,
        stream: obspy.Stream,
        strict: bool,
        min_length_s: float,
        comp_dict: dict[str, int],
    ) -> list[list[obspy.Trace]]:
        coords = {
            self.trace_id_without_component(tr): Coordinates.from_stats(tr.stats.coordinates)
            for tr in stream
        }
        intervals = station_intervals(self, stream, strict, min_length_s, comp_dict)
        split = []
        for stations, t0, t1 in intervals:
            for group in compact_groups(
                stations, [coords[s] for s in stations], self.max_stations, self.min_neighbours
            ):
                split.append((group, t0, t1))
        return assemble_groups(stream, split)
