"""Multi-station training samples from SeisBench datasets, grouped by event, built on ``seisbench.generate``.

A sample is one event seen by up to ``max_stations`` stations: waveforms aligned in wall time, a window placed so
that the first P arrival falls at a random position, probabilistic P/S/noise labels, station positions relative to
the group's reference point (as :class:`~sine_seisbench.model.SINE` computes them in ``annotate``), and the event
targets (east/north offset of the epicentre, depth, magnitude) relative to the same point.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np
import pandas as pd
import seisbench.data as sbd
import seisbench.generate as sbg

from ..geometry import Coordinates, local_positions, project

#: Metadata columns of first-arriving P and S phases across SeisBench datasets, in order of preference.
P_COLUMNS = (
    "trace_p_arrival_sample",
    "trace_P_arrival_sample",
    "trace_P1_arrival_sample",
    "trace_Pg_arrival_sample",
    "trace_Pn_arrival_sample",
)
S_COLUMNS = (
    "trace_s_arrival_sample",
    "trace_S_arrival_sample",
    "trace_S1_arrival_sample",
    "trace_Sg_arrival_sample",
    "trace_Sn_arrival_sample",
)
EVENT_ID = "sine_event_id"
SOURCE_COLUMNS = (
    "source_latitude_deg",
    "source_longitude_deg",
    "source_depth_km",
    "source_magnitude",
)


def phase_dict(columns) -> dict[str, str]:
    """The label columns present in a dataset, mapped to "P" or "S" (the one place that knows the variants)."""
    columns = set(columns)
    out = {c: "P" for c in P_COLUMNS if c in columns}
    out.update({c: "S" for c in S_COLUMNS if c in columns})
    return out


def event_ids(metadata: pd.DataFrame) -> pd.Series:
    """Event id of every trace.

    ``source_id`` where present (SeisBench convention). CEED has none: its ``trace_name`` is
    ``EVENT/STATION``, so the part before the slash is the event. Otherwise origin time and hypocentre identify
    the event.
    """
    if "source_id" in metadata.columns and metadata["source_id"].notna().all():
        return metadata["source_id"].astype(str)
    if (
        "trace_name" in metadata.columns
        and metadata["trace_name"].astype(str).str.contains("/").all()
    ):
        return metadata["trace_name"].astype(str).str.split("/").str[0]
    keys = [c for c in ("source_origin_time", *SOURCE_COLUMNS[:3]) if c in metadata.columns]
    if not keys:
        raise ValueError(
            "Cannot group traces by event: the dataset has no source_id, no EVENT/STATION trace names and no "
            "source_origin_time/source_latitude_deg columns."
        )
    return metadata[keys].astype(str).agg("|".join, axis=1)


def _split_of(event: str, fractions: tuple[float, float]) -> str:
    h = int(hashlib.sha1(event.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < fractions[0]:
        return "train"
    if h < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def prepare_dataset(
    dataset: sbd.WaveformDataset | sbd.MultiWaveformDataset,
    split_fractions: tuple[float, float] = (0.8, 0.1),
) -> sbd.WaveformDataset | sbd.MultiWaveformDataset:
    """Adds the event id column, a deterministic split by event where the dataset has no ``split`` column,
    and groups the dataset by event. Modifies and returns ``dataset`` (a new ``MultiWaveformDataset`` of the
    prepared members for a ``MultiWaveformDataset``: SeisBench builds its splits from the members, so each
    member carries its own event ids, prefixed with the member's index so that they never collide)."""
    if isinstance(dataset, sbd.MultiWaveformDataset):
        members = []
        for i, member in enumerate(dataset.datasets):
            member = prepare_dataset(member, split_fractions)
            member.metadata[EVENT_ID] = f"{i}:" + member.metadata[EVENT_ID].astype(str)
            member.grouping = EVENT_ID
            members.append(member)
        return sbd.MultiWaveformDataset(members)
    meta = dataset.metadata
    meta[EVENT_ID] = event_ids(meta).to_numpy()
    if "split" not in meta.columns or meta["split"].isna().all():
        meta["split"] = [_split_of(e, split_fractions) for e in meta[EVENT_ID]]
    dataset.grouping = EVENT_ID
    return dataset


def _station_meta(metadata: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        k: (v[i] if isinstance(v, np.ndarray) and v.ndim >= 1 else v) for k, v in metadata.items()
    }


class PerStation:
    """Applies a single-trace SeisBench augmentation (e.g. ``AddGap``, ``GaussianNoise``, ``RealNoise``) to every
    station of a group independently. Label arrays named in ``label_keys`` are passed along per station."""

    def __init__(self, augmentation, key: str = "X", label_keys: tuple[str, ...] = ()) -> None:
        self.augmentation = augmentation
        self.key = key
        self.label_keys = label_keys

    def __call__(self, state_dict: dict) -> None:
        x, metadata = state_dict[self.key]
        labels = {k: state_dict[k] for k in self.label_keys if k in state_dict}
        for i in range(x.shape[0]):
            if not np.any(x[i]):
                continue  # padding
            sub = {self.key: (x[i].copy(), _station_meta(metadata, i))}
            for k, (y, meta) in labels.items():
                sub[k] = (y[i].copy(), meta)
            self.augmentation(sub)
            x[i] = sub[self.key][0]
            for k in labels:
                labels[k][0][i] = sub[k][0]
        state_dict[self.key] = (x, metadata)

    def __str__(self) -> str:
        return f"PerStation ({self.augmentation})"


class StationDropout:
    """Zeroes whole stations with probability ``p`` (keeping at least ``keep`` stations with data); with
    probability ``subset_p`` keeps instead only a random subset of ``keep``..all of them (groups as small as
    a user's network or a station's sparse neighbourhood).

    Dropped stations also lose their picks in the metadata, so labels and masks treat them as absent."""

    def __init__(
        self, p: float = 0.1, keep: int = 1, key: str = "X", subset_p: float = 0.0
    ) -> None:
        self.p = p
        self.keep = keep
        self.key = key
        self.subset_p = subset_p

    def __call__(self, state_dict: dict) -> None:
        x, metadata = state_dict[self.key]
        present = np.flatnonzero(np.any(x != 0, axis=tuple(range(1, x.ndim))))
        if len(present) > self.keep and np.random.random() < self.subset_p:
            kept = np.random.randint(self.keep, len(present) + 1)
            drop = np.random.permutation(present)[kept:]
        else:
            drop = present[np.random.random(len(present)) < self.p]
        drop = drop[: max(0, len(present) - self.keep)]
        if len(drop):
            x = x.copy()
            x[drop] = 0
            metadata = copy.copy(metadata)
            for col in (*P_COLUMNS, *S_COLUMNS):
                if col in metadata:
                    values = np.asarray(metadata[col], dtype=float).copy()
                    values[drop] = np.nan
                    metadata[col] = values
        state_dict[self.key] = (x, metadata)


class FirstPWindow:
    """Cuts ``samples`` from an aligned group so that the group's first P falls at a random position.

    :param samples: Window length.
    :param p_range: Range of the first P position as fractions of the window (uniform).
    :param random: If false, the first P is put at the middle of ``p_range`` (deterministic evaluation).
    """

    def __init__(
        self,
        samples: int,
        p_range: tuple[float, float] = (0.05, 0.6),
        random: bool = True,
        key: str = "X",
    ) -> None:
        self.samples = samples
        self.p_range = p_range
        self.random = random
        self.key = key

    def __call__(self, state_dict: dict) -> None:
        x, metadata = state_dict[self.key]
        n = x.shape[-1]
        p = [np.asarray(metadata[c], dtype=float) for c in P_COLUMNS if c in metadata]
        first_p = np.nanmin(np.stack(p)) if p and np.isfinite(np.stack(p)).any() else np.nan
        if np.isfinite(first_p):
            frac = np.random.uniform(*self.p_range) if self.random else float(np.mean(self.p_range))
            start = int(round(first_p - frac * self.samples))
        else:
            start = np.random.randint(0, max(1, n - self.samples + 1)) if self.random else 0
        start = int(np.clip(start, 0, max(0, n - self.samples)))
        window = np.zeros(x.shape[:-1] + (self.samples,), dtype=x.dtype)
        chunk = x[..., start : start + self.samples]
        window[..., : chunk.shape[-1]] = chunk
        metadata = copy.copy(metadata)
        for key, value in metadata.items():
            if key.endswith("_sample"):
                try:
                    metadata[key] = np.asarray(value, dtype=float) - start
                except (TypeError, ValueError):
                    continue
        state_dict[self.key] = (window, metadata)


#: Metadata column naming where a trace's pick labels come from (see :func:`label_weights`).
LABEL_SOURCE = "trace_label_source"


def label_weights(metadata: dict[str, Any], stations: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-station weights of the pick cross-entropy and of the distillation term, from ``trace_label_source``:

    - ``simulated`` (or no such column: a labelled dataset): every station's labels are true, arrivals and
      noise alike: cross-entropy 1, distillation 0;
    - ``pseudo``: a real window where the teacher's picks were confirmed by at least 3 stations of one located
      event: cross-entropy 1 on the stations with a confirmed P or S, 0 elsewhere (an unconfirmed arrival may
      be there); distillation 1 everywhere (the window is real);
    - ``none``: a real window without confirmed labels: distillation only.
    """
    source = metadata.get(LABEL_SOURCE)
    if source is None:
        return np.ones(stations, dtype=np.float32), np.zeros(stations, dtype=np.float32)
    source = np.broadcast_to(np.asarray(source, dtype=object), (stations,))
    arrivals = [
        np.asarray(metadata[c], dtype=float).reshape(-1)
        for c in (*P_COLUMNS, *S_COLUMNS)
        if c in metadata
    ]
    has_label = (
        np.any([np.isfinite(np.broadcast_to(a, (stations,))) for a in arrivals], axis=0)
        if arrivals
        else np.zeros(stations, dtype=bool)
    )
    simulated = np.array([str(v) not in ("pseudo", "none") for v in source])
    pseudo = np.array([str(v) == "pseudo" for v in source])
    pick_weight = (simulated | (pseudo & has_label)).astype(np.float32)
    return pick_weight, (~simulated).astype(np.float32)


class EventTargets:
    """Station positions, masks and event targets relative to the group's reference point.

    Writes ``positions`` (S, 3) east/north/up km, ``station_mask`` (S,), ``calibrated`` (S,) (metadata column
    ``trace_calibrated``: the waveforms are ground velocity in m/s), ``event_target`` (4,) east km, north km,
    depth km, magnitude, ``event_mask`` (4,) (False where the metadata lack a value), and the per-station loss
    weights ``pick_weight`` and ``distill`` (S,) of :func:`label_weights`.
    """

    def __init__(self, key: str = "X") -> None:
        self.key = key

    def __call__(self, state_dict: dict) -> None:
        x, metadata = state_dict[self.key]
        s = x.shape[0]
        lat = np.asarray(metadata.get("station_latitude_deg", np.full(s, np.nan)), dtype=float)
        lon = np.asarray(metadata.get("station_longitude_deg", np.full(s, np.nan)), dtype=float)
        elev = np.asarray(metadata.get("station_elevation_m", np.zeros(s)), dtype=float)
        elev = np.where(np.isfinite(elev), elev, 0.0)
        mask = np.isfinite(lat) & np.isfinite(lon) & np.any(x != 0, axis=tuple(range(1, x.ndim)))
        positions = np.zeros((s, 3), dtype=np.float32)
        target = np.full(4, np.nan, dtype=np.float32)
        if mask.any():
            coords = [
                Coordinates(a, b, c)
                for a, b, c in zip(lat[mask], lon[mask], elev[mask], strict=True)
            ]
            pos, (lat0, lon0) = local_positions(coords)
            positions[mask] = pos
            src = [self._first_finite(metadata.get(c)) for c in SOURCE_COLUMNS]
            if np.isfinite(src[0]) and np.isfinite(src[1]):
                east, north = project(np.array([src[0]]), np.array([src[1]]), lat0, lon0)
                target[0], target[1] = east[0], north[0]
            target[2], target[3] = src[2], src[3]
        state_dict["positions"] = (positions, None)
        state_dict["station_mask"] = (mask, None)
        # amplitudes in physical units (m/s): the same flag inference sets where a response is known; used by
        # the event head only for models built with calibrated_amplitudes=True
        calibrated = np.asarray(metadata.get("trace_calibrated", np.zeros(s)), dtype=float)
        state_dict["calibrated"] = (mask & (np.nan_to_num(calibrated) > 0), None)
        state_dict["event_mask"] = (np.isfinite(target), None)
        state_dict["event_target"] = (np.nan_to_num(target), None)
        pick_weight, distill = label_weights(metadata, s)
        state_dict["pick_weight"] = (pick_weight * mask, None)
        state_dict["distill"] = (distill * mask, None)

    @staticmethod
    def _first_finite(values) -> float:
        if values is None:
            return np.nan
        values = np.asarray(values, dtype=float).ravel()
        finite = values[np.isfinite(values)]
        return float(finite[0]) if finite.size else np.nan


def build_generator(
    dataset: sbd.WaveformDataset | sbd.MultiWaveformDataset,
    max_stations: int,
    samples: int,
    training: bool,
    noise_dataset: sbd.WaveformDataset | None = None,
    sigma: int = 20,
) -> sbg.GroupGenerator:
    """The grouped generator with SINE's augmentation chain.

    :param dataset: A dataset (or split) prepared with :func:`prepare_dataset`.
    :param max_stations: Station axis length; groups are randomly sub-sampled or zero-padded to it.
    :param samples: Window length.
    :param training: Adds the random window position and the training-time noise (Gaussian noise, channel
                     dropout, gaps, whole-station dropout, real noise if ``noise_dataset`` is given).
    :param noise_dataset: Optional dataset of noise traces for ``RealNoise``.
    :param sigma: Width (samples) of the probabilistic pick labels.
    """
    generator = sbg.GroupGenerator(dataset)
    labels = phase_dict(dataset.metadata.columns)
    # The labeller sizes its output by the phases it is given: name both, even if a dataset lacks one
    for default, phase in ((P_COLUMNS[0], "P"), (S_COLUMNS[0], "S")):
        if phase not in labels.values():
            labels[default] = phase
    augmentations: list = [
        sbg.UTCOffsets(),
        sbg.AlignGroupsOnKey("trace_offset_sample", fill_value=0),
        sbg.SelectOrPadAlongAxis(max_stations, repeat=False),
    ]
    if training:
        augmentations.append(StationDropout(p=0.1, keep=1, subset_p=0.25))
    augmentations += [
        FirstPWindow(samples, random=True) if training else FirstPWindow(samples, random=False),
        sbg.Normalize(demean_axis=-1),
        sbg.ProbabilisticLabeller(label_columns=labels, model_labels="PSN", sigma=sigma, dim=1),
    ]
    if training:
        per_station = [
            sbg.OneOf([sbg.GaussianNoise(scale=(0, 0.1)), sbg.NullAugmentation()], [0.3, 0.7]),
            sbg.OneOf([sbg.ChannelDropout(), sbg.NullAugmentation()], [0.15, 0.85]),
            sbg.OneOf([sbg.AddGap(), sbg.NullAugmentation()], [0.05, 0.95]),
        ]
        if noise_dataset is not None:
            per_station.insert(
                0,
                sbg.OneOf(
                    [sbg.RealNoise(noise_dataset, scale=(0, 0.5)), sbg.NullAugmentation()],
                    [0.5, 0.5],
                ),
            )
        augmentations += [PerStation(a, label_keys=("y",)) for a in per_station]
    augmentations += [
        EventTargets(),
        sbg.ChangeDtype(np.float32, key="X"),
        sbg.ChangeDtype(np.float32, key="y"),
    ]
    generator.add_augmentations(augmentations)
    return generator
