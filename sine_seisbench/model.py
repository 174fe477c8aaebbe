"""SINE: multi-station joint picking, location and magnitude estimation as a SeisBench WaveformModel."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from copy import deepcopy
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import seisbench
import seisbench.util as sbu
import torch
import torch.nn as nn
import torch.nn.functional as F
from obspy.core.event import Catalog
from obspy.signal.trigger import trigger_onset
from seisbench.models.base import WaveformModel

from . import seisbench_adapter as sba
from .events import (
    Candidate,
    associate,
    candidate_to_event,
    drop_implausible,
    merge_candidates,
)
from .geometry import (
    Coordinates,
    GeographicGroupingHelper,
    StationTable,
    attach_coordinates,
    build_station_graph,
    compact_groups,
    local_positions,
    station_key,
    warn_far_stations,
)
from .locate import (
    LocatorConfig,
    locate_window,
    read_station_corrections,
    station_gains,
    traveltimes_for,
)
from .nn.encoder import StationGraphBranch
from .nn.heads import ArrivalHead, EventHead
from .nn.phasenet import PhaseNetBackbone
from .prepare import (
    GridRecord,
    OutageLog,
    Stack,
    WindowItem,
    cut_window,
    mask_prediction,
    split_invalid_samples,
    stack_to_traces,
    usable_windows,
    window_starts,
)
from .progress import progress

#: Name of the shipped weights every entry point uses by default (``weights/README.md`` is their model card).
DEFAULT_WEIGHTS = "sine_pn_original"

#: Per-station scalar features given to the event head: east, north, up (scaled), log amplitude, amplitude
#: calibrated flag, and the three component-presence flags.
N_STATION_FEATURES = 8


class SINE(WaveformModel):
    """
    SINE (Meng et al., 2025): a spatio-temporal network with feature disentangling that estimates, from the
    waveforms of a group of stations at once, per-station P/S/noise probabilities and the event's epicentre,
    depth and magnitude with uncertainties.

    Every station goes through a picker in the layout of SeisBench's ``PhaseNet`` (a CNN encoder down to a
    bottleneck of 12 steps of 2.56 s and a U-Net decoder back to sample resolution), so that a published
    picker's weights can be copied in (:meth:`from_picker`). At the bottleneck, SINE's spatio-temporal branch --
    a BiLSTM over time and disentangled graph layers over a station graph built from the stations' coordinates
    (k nearest neighbours, edge attributes from distance, azimuth and elevation difference; each layer splits
    the features into K latent channels, routes every edge to the channels by neighbourhood routing and passes
    messages per channel) -- adds a residual whose output projection starts at zero: a SINE built from a picker
    and not trained yet returns exactly that picker's probabilities. The event head parses the bottleneck and
    graph features of the group's stations and regresses the event parameters.

    ``annotate`` and ``classify`` take an ObsPy Stream of a whole network plus station coordinates
    (``inventory=`` an ObsPy Inventory or a DataFrame); the network is split into compact overlapping groups of
    at most ``max_stations``. ``classify`` returns P/S picks and an ObsPy Catalog of located events.

    .. document_args:: sine_seisbench SINE

    :param in_channels: Number of components (3: ZNE; missing components are zero-filled).
    :param phases: Output labels, P, S and noise.
    :param sampling_rate: Sampling rate in Hz.
    :param in_samples: Window length in samples (PhaseNet's 3001).
    :param max_stations: Stations per group (the padded station axis).
    :param filter_factor: Width multiplier of the PhaseNet layout (SeisBench's ``filter_factor``).
    :param lstm_hidden: Hidden size of each BiLSTM direction of the bottleneck branch.
    :param latent_channels: Number of disentangled latent channels K.
    :param routing_iterations: Neighbourhood routing iterations.
    :param graph_layers: Number of disentangled graph layers.
    :param k_neighbours: Neighbours per station in the station graph.
    :param radius_km: Optional largest edge length of the station graph.
    :param event_scales: Output scales of east, north, depth and magnitude.
    :param event_offsets: Output offsets of east, north, depth and magnitude.
    :param norm: Waveform normalisation of each component, "std" or "peak", as the picker's (PhaseNet: demean,
                 divide by the standard deviation + 1e-10). The event head receives log10 of each station's
                 largest component scale as its amplitude level.
    :param picker: The published picker the per-station path was copied from (set by :meth:`from_picker`;
                   kept in the saved weights for the model card), or None.
    :param calibrated_amplitudes: Whether the event head uses the amplitude level of stations whose response
                                  is known (``remove_sensitivity``). Training and inference follow this one
                                  switch: weights trained without amplitudes (``sine_pn_original``) never see them at
                                  inference either, whatever the inventory holds.
    :param arrival_head: Whether the network predicts every station's P and S timing errors from the graph
                         features (:class:`~sine_seisbench.nn.heads.ArrivalHead`), by which the event step weights
                         stations and phases; without it every station and phase weighs the same.
    """

    _annotate_args = sba.annotate_args(WaveformModel).copy()
    _annotate_args["batch_size"] = (
        "Station groups per batch. Default: as many groups as make about 256 station-windows "
        "(16 groups of 16 stations; more groups for smaller networks).",
        16,
    )
    _annotate_args["*_threshold"] = ("Detection threshold for the provided phase", 0.3)
    _annotate_args["blinding"] = (
        "Number of prediction samples to discard on each side of each window prediction",
        (250, 250),
    )
    _annotate_args["overlap"] = (_annotate_args["overlap"][0], 1500)
    _annotate_args["inventory"] = (
        "Station coordinates: an obspy Inventory or a pandas DataFrame with network, station, latitude, "
        "longitude, elevation (m) and optionally location. May be omitted if every trace has "
        "stats.coordinates.",
        None,
    )
    _annotate_args["drop_unlocated"] = (
        "If true, stations without coordinates are left out with a warning instead of raising an error.",
        False,
    )
    _annotate_args["remove_sensitivity"] = (
        "If true, the inventory holds responses and the model uses physical amplitudes "
        "(calibrated_amplitudes=True), divide traces by their overall sensitivity so that the amplitude "
        "feature used for magnitude is in physical units.",
        True,
    )
    _annotate_args["min_stations"] = (
        "Least number of stations with a P pick needed to form an event.",
        3,
    )
    _annotate_args["association_window"] = (
        "Longest time (s) between the first and the last P pick of one event within a group. "
        "Default: the group's largest station distance / 5 km/s + 2 s, capped at 80% of the window.",
        None,
    )
    _annotate_args["event_pre_p"] = (
        "Seconds of signal before the first P pick in the window used for the event estimate.",
        5.0,
    )
    _annotate_args["vp"] = (
        "P velocity (km/s) of the default association window and of the monitor's waiting time.",
        6.0,
    )
    _annotate_args["vp_vs"] = ("Vp/Vs ratio used with vp.", 1.73)
    _annotate_args["velocity_model"] = (
        "1-D velocity model of the event step (travel times by obspy.taup, tabulated once and cached): None "
        "for Southern California (Hadley & Kanamori 1977), rows of (top_depth_km, vp, vs), a TauP .tvel/.nd "
        "file or a text table depth_km, vp, vs.",
        None,
    )
    _annotate_args["station_corrections"] = (
        "Static station corrections: a CSV (station NET.STA.LOC, P, S in s added to predicted times, ML added "
        "to station magnitudes), a DataFrame or a dict; see sine_seisbench.locate.estimate_station_corrections.",
        None,
    )
    _annotate_args["min_p_stations"] = (
        "Least P phases (stations) an event needs at the migration's best point.",
        3,
    )
    _annotate_args["min_phases"] = ("Least P and S phases in all an event needs.", 5)
    _annotate_args["soft_floor"] = (
        "Least curve peak near a predicted arrival for the arrival to enter the location fit.",
        0.1,
    )
    _annotate_args["model_error_s"] = (
        "Travel-time model error (s) added to every arrival's spread.",
        0.05,
    )
    _annotate_args["model_error_fraction"] = (
        "Travel-time model error as a fraction of the travel time, added to model_error_s.",
        0.02,
    )
    _annotate_args["uncertainty_scale"] = (
        "Factor on the location standard errors, calibrated on simulated events so that the 1-sigma ellipse "
        "holds the true epicentre ~39 % of the time (benchmarks/results/location.csv).",
        0.3,
    )
    _annotate_args["ml_relation"] = (
        "(a, b, c) of -log A0 = a log10(r/100) + b (r - 100) + c; default Hutton & Boore (1987).",
        (1.110, 0.00189, 3.0),
    )
    _annotate_args["ml_min_snr"] = (
        "Least ratio of a station's Wood-Anderson amplitude to that of its pre-P noise for its ML to count "
        "(a higher value leaves out more distant stations of small events and biases ML upwards).",
        1.0,
    )
    _annotate_args["ml_saturation"] = (
        "ML at and above which the magnitude is flagged as saturated.",
        6.0,
    )
    _annotate_args["merge_time"] = (
        "Events closer in origin time than this (s) and closer than merge_distance are merged.",
        2.0,
    )
    _annotate_args["merge_distance"] = ("See merge_time (km).", 20.0)
    _annotate_args["graph_picks"] = (
        "If true, the station-graph branch's residual changes the picks (what the other stations saw enters "
        "each station's probabilities); if false, the picks are the per-station path's alone (the published "
        "picker's for weights made with from_picker and a frozen backbone) and the branch serves only the event "
        "estimates. The shipped sine_pn_original weights default to false: see weights/README.md for the "
        "measured trade-off.",
        True,
    )
    _annotate_args["max_abs_amplitude"] = (
        "Samples with a larger absolute value (before the sensitivity is removed) are corrupt: they are left "
        "out as gaps, with a warning naming the trace and the span.",
        1e15,
    )

    def __init__(
        self,
        in_channels: int = 3,
        phases: str = "PSN",
        sampling_rate: float = 100,
        in_samples: int = 3001,
        max_stations: int = 16,
        filter_factor: int = 1,
        lstm_hidden: int = 32,
        latent_channels: int = 4,
        routing_iterations: int = 3,
        graph_layers: int = 2,
        k_neighbours: int = 6,
        radius_km: float | None = None,
        event_scales: tuple[float, ...] = (50.0, 50.0, 10.0, 1.0),
        event_offsets: tuple[float, ...] = (0.0, 0.0, 10.0, 2.0),
        norm: str = "std",
        calibrated_amplitudes: bool = False,
        picker: str | None = None,
        arrival_head: bool = False,
        **kwargs,
    ) -> None:
        citation = (
            "Meng, X., et al. (2025). Spatio-temporal deep networks with feature disentangling for advancing "
            "earthquake monitoring. Computers & Geosciences, 204."
        )
        if norm not in ("std", "peak"):
            raise ValueError(f"norm must be 'std' or 'peak', got {norm!r}")
        if max_stations < 1:
            raise ValueError("max_stations must be at least 1")
        super().__init__(
            citation=citation,
            in_samples=in_samples,
            output_type="array",
            pred_sample=(0, in_samples),
            labels=phases,
            sampling_rate=sampling_rate,
            component_order="ZNE",
            grouping=GeographicGroupingHelper(max_stations=max_stations),
            allow_padding=True,
            **kwargs,
        )
        self.in_channels = in_channels
        self.max_stations = max_stations
        self.filter_factor = int(filter_factor)
        self.lstm_hidden = lstm_hidden
        self.latent_channels = latent_channels
        self.routing_iterations = routing_iterations
        self.k_neighbours = k_neighbours
        self.radius_km = radius_km
        self.event_scales = tuple(event_scales)
        self.event_offsets = tuple(event_offsets)
        self.norm = norm
        self.calibrated_amplitudes = bool(calibrated_amplitudes)
        self.picker = picker

        self.backbone = PhaseNetBackbone(in_channels, phases, self.filter_factor)
        self.branch = StationGraphBranch(
            self.backbone.bottleneck_channels,
            lstm_hidden,
            latent_channels,
            routing_iterations,
            graph_layers,
        )
        self.event_head = EventHead(
            self.backbone.bottleneck_channels + self.branch.out_features,
            N_STATION_FEATURES,
            scales=self.event_scales,
            offsets=self.event_offsets,
        )
        # per-station P/S timing errors for the event step (None: every station and phase weighs the same)
        self.arrival_head = (
            ArrivalHead(
                self.backbone.bottleneck_channels + self.branch.out_features, N_STATION_FEATURES
            )
            if arrival_head
            else None
        )

    # ------------------------------------------------------------------------------------------------
    # Network
    # ------------------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor | None = None,
        station_mask: torch.Tensor | None = None,
        amplitude: torch.Tensor | None = None,
        calibrated: torch.Tensor | None = None,
        logits: bool = False,
        event: bool = True,
        teacher: bool = False,
        graph_picks: bool = True,
    ) -> dict[str, torch.Tensor]:
        """
        :param x: Normalised waveforms ``(batch, stations, components, samples)``; absent components and
                  padded stations are zero.
        :param positions: ``(batch, stations, 3)`` east, north, up in km relative to the group's reference
                          point. Zeros if omitted (then the graph has no geometry).
        :param station_mask: ``(batch, stations)`` True for real stations. Default: stations with any non-zero
                             sample.
        :param amplitude: ``(batch, stations)`` log10 of the normalisation scale of each station.
        :param calibrated: ``(batch, stations)`` True where ``amplitude`` is in physical units (m/s). Ignored
                           (all False) unless the model was built with ``calibrated_amplitudes=True``.
        :param logits: Return logits instead of probabilities for the picks.
        :param event: Run the event head (``annotate`` needs only the picks and skips it).
        :param teacher: Also return ``teacher_picks``: the per-station path without the graph branch's residual
                        (the picker SINE started from, while the backbone is frozen), for distillation.
        :param graph_picks: Add the graph branch's residual to the picks (otherwise the picks are the
                            per-station path's; the branch then runs only for the event head).
        :return: ``picks`` ``(batch, stations, len(phases), samples)`` (zero for padded stations), and unless
                 ``event`` is false, ``event_mean`` and ``event_std`` ``(batch, 4)`` for east km, north km,
                 depth km, magnitude, and for models with an arrival head ``arrival_sigma``
                 ``(batch, stations, 2)``, the P and S timing errors (s) the event step weights stations by
                 (NaN for padded stations).
        """
        b, s, c, t = x.shape
        component_mask = (x != 0).any(-1)
        if station_mask is None:
            station_mask = component_mask.any(-1)
        station_mask = station_mask & component_mask.any(-1)
        if positions is None:
            positions = x.new_zeros(b, s, 3)
        if amplitude is None:
            amplitude = x.new_zeros(b, s)
        if calibrated is None or not self.calibrated_amplitudes:
            calibrated = torch.zeros(b, s, dtype=torch.bool, device=x.device)

        valid = station_mask.reshape(-1).nonzero().squeeze(1)
        # no station with data in the whole batch (an outage): nothing to run
        if valid.numel() == 0:
            result = {"picks": x.new_zeros(b, s, len(self.labels), t)}
            if teacher:
                result["teacher_picks"] = result["picks"]
            if event:
                result["event_mean"] = x.new_full((b, 4), float("nan"))
                result["event_std"] = x.new_full((b, 4), float("nan"))
            return result
        batch = torch.div(valid, s, rounding_mode="floor")
        comp = component_mask.reshape(b * s, c)[valid].to(x.dtype)
        h, skips = self.backbone.encode(x.reshape(b * s, c, t)[valid])

        residual = graph_features = None
        if graph_picks or event:  # the station graph is needed only for the branch
            edge_index, edge_attr = build_station_graph(
                positions, station_mask, self.k_neighbours, self.radius_km
            )
            remap = torch.full((b * s,), -1, dtype=torch.long, device=x.device)
            remap[valid] = torch.arange(valid.numel(), device=x.device)
            edge_index = remap[edge_index]
            residual, graph_features = self.branch(h, edge_index, edge_attr)
            # A station without neighbours in its group keeps the picker's picks: the branch exists to bring in
            # what the other stations saw, and alone it would only apply what it learned on groups (tested).
            connected = torch.zeros(valid.numel(), dtype=torch.bool, device=x.device)
            connected[edge_index[1]] = True
            residual = residual * connected.to(residual.dtype)[:, None, None]

        def scatter_back(pick_logits: torch.Tensor) -> torch.Tensor:
            picks = pick_logits if logits else torch.softmax(pick_logits, dim=1)
            out = x.new_zeros(b * s, picks.shape[1], t)
            out[valid] = picks.to(out.dtype)
            return out.view(b, s, -1, t)

        result = {
            "picks": scatter_back(self.backbone.decode(h + residual if graph_picks else h, skips))
        }
        if teacher:  # without the residual the picks are the teacher's already
            if graph_picks:
                with torch.no_grad():
                    result["teacher_picks"] = scatter_back(self.backbone.decode(h, skips))
            else:
                result["teacher_picks"] = result["picks"].detach()
        if event:
            pos_v = positions.reshape(b * s, 3)[valid]
            amp_v = amplitude.reshape(b * s)[valid]
            cal_v = calibrated.reshape(b * s)[valid].to(x.dtype)
            station_features = torch.cat(
                [
                    pos_v / pos_v.new_tensor([100.0, 100.0, 1.0]),
                    ((amp_v + 5.0) / 2.0 * cal_v).unsqueeze(-1),
                    cal_v.unsqueeze(-1),
                    comp,
                ],
                dim=-1,
            )
            features = torch.cat([h, graph_features], dim=1)
            mean, std = self.event_head(features, station_features, batch, b)
            if self.arrival_head is not None:
                sigma = x.new_full((b * s, 2), float("nan"))
                sigma[valid] = self.arrival_head(features, station_features).to(x.dtype)
                result["arrival_sigma"] = sigma.view(b, s, 2)
            empty = ~station_mask.any(-1)  # groups without any station with data: no estimate
            if empty.any():
                mean = mean.masked_fill(empty.unsqueeze(-1), float("nan"))
                std = std.masked_fill(empty.unsqueeze(-1), float("nan"))
            result["event_mean"], result["event_std"] = mean, std
        return result

    # ------------------------------------------------------------------------------------------------
    # SeisBench annotate hooks
    # ------------------------------------------------------------------------------------------------
    def annotate_stream_pre(self, stream: obspy.Stream, argdict: dict[str, Any]) -> obspy.Stream:
        """Cleans the stream (corrupt samples become gaps), attaches coordinates, removes sensitivity and
        resamples (SeisBench's way)."""
        table = StationTable.from_any(argdict.get("inventory"))
        split_invalid_samples(stream, sba.arg(self, argdict, "max_abs_amplitude"))
        _warn_unused_components(stream)
        dropped = attach_coordinates(
            stream, table, drop_unlocated=sba.arg(self, argdict, "drop_unlocated")
        )
        if dropped:
            seisbench.logger.warning(
                f"SINE: no coordinates for {', '.join(dropped)}; these stations are left out "
                "(drop_unlocated=True)."
            )
        # Only models that use physical amplitudes see responses: the picker's path is then fed what the
        # picker was trained on (counts), and its eps (1e-10) stays negligible.
        if self.calibrated_amplitudes and sba.arg(self, argdict, "remove_sensitivity"):
            _remove_sensitivity(stream, argdict.get("inventory"))
        super().annotate_stream_pre(stream, argdict)

        argdict["_coordinates"] = {
            station_key(tr.id): Coordinates.from_stats(tr.stats.coordinates) for tr in stream
        }
        calibrated: dict[str, bool] = {}
        for tr in stream:
            key = station_key(tr.id)
            calibrated[key] = calibrated.get(key, True) and bool(tr.stats.get("sine_calibrated"))
        argdict["_calibrated"] = calibrated
        return stream

    def annotate_stream_validate(
        self, stream: obspy.Stream, argdict: dict[str, Any]
    ) -> obspy.Stream:
        """Checks the sampling rate. Overlapping records that disagree are not removed here: only their
        disagreeing samples are left out when the record is placed on the grid (:class:`GridRecord`)."""
        wrong = sorted({tr.id for tr in stream if tr.stats.sampling_rate != self.sampling_rate})
        if wrong:
            raise ValueError(
                f"Traces {', '.join(wrong)} are not at {self.sampling_rate} Hz after resampling."
            )
        return stream

    def annotate_batch_pre(
        self, batch: torch.Tensor, argdict: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalises as the picker does (PhaseNet: each component demeaned and divided by its standard
        deviation + 1e-10, or its peak) and pads the station axis to ``max_stations``. The piggyback is log10 of
        each station's largest component scale (the amplitude level given to the event head)."""
        batch = batch - batch.mean(dim=-1, keepdim=True)
        if self.norm == "std":
            comp_scale = batch.std(dim=-1, keepdim=True)
        else:
            comp_scale = batch.abs().amax(dim=-1, keepdim=True)
        batch = batch / (comp_scale + 1e-10)
        scale = comp_scale[..., 0].amax(dim=-1)
        log_scale = torch.log10(scale.clamp(min=1e-30))
        if batch.shape[1] < self.max_stations:
            missing = self.max_stations - batch.shape[1]
            batch = F.pad(batch, (0, 0, 0, 0, 0, missing))
            log_scale = F.pad(log_scale, (0, missing))
        return batch, log_scale

    def annotate_batch_post(
        self, batch: dict[str, torch.Tensor], piggyback: Any, argdict: dict[str, Any]
    ) -> torch.Tensor:
        """Pick probabilities as one array ``(batch, stations, samples, phases)`` with blinded edges."""
        picks = batch["picks"].transpose(-1, -2).clone()
        prenan, postnan = sba.arg(self, argdict, "blinding")
        if prenan > 0:
            picks[:, :, :prenan] = np.nan
        if postnan > 0:
            picks[:, :, -postnan:] = np.nan
        return picks

    def _group_inputs(
        self, stations: list[str], argdict: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """Positions (S, 3), calibration flags (S,) and reference point of a station group."""
        cache = argdict.setdefault("_group_cache", {})
        key = tuple(stations)
        if key not in cache:
            coords = [argdict["_coordinates"][station_key(s)] for s in stations]
            positions, ref = local_positions(coords)
            calibrated = np.array(
                [argdict["_calibrated"].get(station_key(s), False) for s in stations]
            )
            cache[key] = (positions, calibrated, ref)
        return cache[key]

    def run_groups(
        self,
        windows: list[np.ndarray],
        groups: list[list[str]],
        argdict: dict[str, Any],
        event: bool = True,
    ) -> tuple[dict[str, torch.Tensor], Any]:
        """The *run* step on a batch: the network on windows ``(stations, components, samples)`` of the given
        station groups (every group at most ``max_stations``; ``argdict`` holds ``_coordinates`` and
        ``_calibrated`` as :meth:`annotate_stream_pre` leaves them). Pads the station axis, normalises
        (:meth:`annotate_batch_pre`), leaves stations with non-finite values out, runs in eval mode without
        gradients. Used by ``classify``/``annotate`` and the monitor engine.

        :return: The network's outputs (see :meth:`forward`) and the log10 amplitude scales
                 ``(batch, max_stations)``.
        """
        n_st = self.max_stations
        for stations in groups:
            if len(stations) > n_st:
                raise ValueError(
                    f"A group of {len(stations)} stations exceeds max_stations={n_st}: {stations}"
                )
        n_samples = windows[0].shape[-1]
        data = np.zeros((len(windows), n_st, self.in_channels, n_samples), dtype=np.float32)
        positions = np.zeros((len(windows), n_st, 3), dtype=np.float32)
        calibrated = np.zeros((len(windows), n_st), dtype=bool)
        mask = np.zeros((len(windows), n_st), dtype=bool)
        for i, (window, stations) in enumerate(zip(windows, groups, strict=True)):
            data[i, : window.shape[0]] = window
            pos, cal, _ = self._group_inputs(stations, argdict)
            positions[i, : len(stations)] = pos
            calibrated[i, : len(stations)] = cal
            mask[i, : len(stations)] = True
        device = self.device
        x = torch.as_tensor(data, device=device)
        x, log_scale = self.annotate_batch_pre(x, argdict)
        finite = torch.isfinite(x).all(-1).all(-1) & torch.isfinite(log_scale)
        # numerically unusable windows never reach the network (through the graph they would spread NaN to
        # every station of the group)
        if not bool(finite.all()):
            bad = (~finite).nonzero().tolist()
            names = sorted({groups[i][j] for i, j in bad if j < len(groups[i])})
            seisbench.logger.warning(
                f"SINE: non-finite values after normalisation for {', '.join(names)}; these stations are "
                "left out of the affected windows."
            )
            x = torch.where(finite[..., None, None], x, torch.zeros_like(x))
            log_scale = torch.where(finite, log_scale, torch.zeros_like(log_scale))
            mask &= finite.cpu().numpy()
        # Inference always in eval mode: in train mode BatchNorm would use batch statistics and update its
        # running statistics, so results would depend on the batch and change the model.
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self(
                    x,
                    positions=torch.as_tensor(positions, device=device),
                    station_mask=torch.as_tensor(mask, device=device),
                    amplitude=log_scale,
                    calibrated=torch.as_tensor(calibrated, device=device),
                    event=event,
                    graph_picks=bool(sba.arg(self, argdict, "graph_picks")),
                )
        finally:
            self.train(was_training)
        return out, log_scale

    def _prepare(self, stream: obspy.Stream, argdict: dict[str, Any]) -> GridRecord | None:
        """The *prepare* step: cleans a private copy of the stream in place (see :meth:`annotate_stream_pre`)
        and places it on the sampling grid. None when nothing usable is left."""
        stream.merge(-1)
        self.annotate_stream_pre(stream, argdict)
        stream = self.annotate_stream_validate(stream, argdict)
        comp_dict = sba.component_index(
            self, stream, sba.arg(self, argdict, "flexible_horizontal_components")
        )
        record = GridRecord.from_stream(
            stream, self.sampling_rate, comp_dict, self.in_channels, argdict["_calibrated"]
        )
        if not record.stations:
            return None
        argdict["_coordinates"] = {k: s.coordinates for k, s in record.stations.items()}
        argdict.pop("_group_cache", None)
        warn_far_stations(argdict["_coordinates"], seisbench.logger)
        return record

    def groups_of(self, stations: list[str], argdict: dict[str, Any]) -> list[list[str]]:
        """The compact station groups of one window: the stations with data in it split into groups of at most
        ``max_stations`` (cached per station set in ``argdict``, whose ``_coordinates`` hold the stations'
        coordinates). Used by ``classify``/``annotate`` and the monitor engine."""
        cache = argdict.setdefault("_window_groups", {})
        key = frozenset(stations)
        if key not in cache:
            names = sorted(stations)
            coords = argdict["_coordinates"]
            cache[key] = compact_groups(
                names,
                [coords[s] for s in names],
                self.max_stations,
                getattr(sba.grouping_helper(self), "min_neighbours", None),
            )
        return cache[key]

    def window_items(
        self,
        start: int,
        raw: dict[str, np.ndarray],
        outages: OutageLog,
        argdict: dict[str, Any],
    ) -> tuple[list[WindowItem], list[tuple[str, int]]]:
        """The *prepare* step of one window from grid index ``start``: the stations' raw windows
        ``(components, in_samples)`` (NaN where there is no sample) filled and masked (:func:`usable_windows`)
        and split into station groups (:meth:`groups_of`).

        :return: One ``(start, group, windows (stations, components, samples), sample masks)`` per group, and
                 the stations whose outage starts a new span in ``outages`` (see :func:`usable_windows`).
        """
        windows, have, new_outages = usable_windows(raw, start, outages)
        items = [
            (start, group, np.stack([windows[s] for s in group]), [have[s] for s in group])
            for group in (self.groups_of(list(windows), argdict) if windows else [])
        ]
        return items, new_outages

    def run_and_stack(
        self,
        items: list[WindowItem],
        stacks: dict[str, Stack],
        argdict: dict[str, Any],
        new_stack: Callable[[str, int], Stack],
    ) -> None:
        """The *run* step on one batch of :meth:`window_items`: the network (:meth:`run_groups`), blinded edges
        (:meth:`annotate_batch_post`), each station's prediction masked where it had no sample and added to its
        stack in ``stacks`` (``new_stack(station, window start)`` makes a missing one)."""
        out, log_scale = self.run_groups(
            [item[2] for item in items], [item[1] for item in items], argdict, event=False
        )
        preds = self.annotate_batch_post(out, log_scale, argdict).cpu().numpy()
        for (start, group, _, haves), pred in zip(items, preds, strict=True):
            for j, key in enumerate(group):
                stack = stacks.get(key)
                if stack is None:
                    stack = stacks[key] = new_stack(key, start)
                stack.add(start, mask_prediction(pred[j].T.astype(np.float64), haves[j]))

    def _annotate_record(self, record: GridRecord, argdict: dict[str, Any]) -> dict[str, Stack]:
        """The *run* step over a whole record: windows on one grid from the record's first sample, every
        station with data in a window taking part (gaps filled, its output masked there), predictions of
        overlapping windows and of overlapping groups stacked per station."""
        n = self.in_samples
        stride = sba.window_stride(self, argdict)
        if stride < 1:
            raise ValueError(f"overlap must be smaller than the window ({n} samples)")
        batch_size = int(sba.arg(self, argdict, "batch_size"))
        method = sba.arg(self, argdict, "stacking").lower()
        if method not in ("avg", "max"):
            raise ValueError(f"Stacking method {method!r} unknown; use 'avg' or 'max'.")
        stacks: dict[str, Stack] = {}
        outages = OutageLog()
        pending: list[WindowItem] = []

        def new_stack(key: str, start: int) -> Stack:
            return Stack(len(self.labels), start, method)

        starts = list(window_starts(record.start, record.end, n, stride))
        # a bar only for long records (sine --quiet / SINE_QUIET=1 silence it)
        for start in progress(
            starts, desc="SINE windows", unit="window", disable=len(starts) < 20, leave=False
        ):
            raw = {
                key: station.read(start, n)
                for key, station in record.stations.items()
                if station.base < start + n and station.end > start
            }
            # outages are reported at the end
            items, _ = self.window_items(start, raw, outages, argdict)
            for item in items:
                pending.append(item)
                if len(pending) >= batch_size:
                    self.run_and_stack(pending, stacks, argdict, new_stack)
                    pending = []
        if pending:
            self.run_and_stack(pending, stacks, argdict, new_stack)
        outages.report(self.sampling_rate)
        return stacks

    def _stacks_to_stream(self, stacks: dict[str, Stack]) -> obspy.Stream:
        out = obspy.Stream()
        for key in sorted(stacks):
            out += stack_to_traces(
                key, stacks[key], self.labels, self.sampling_rate, self.__class__.__name__
            )
        return out

    def _annotate_stream(
        self, stream: obspy.Stream, argdict: dict[str, Any]
    ) -> tuple[GridRecord, obspy.Stream] | None:
        """prepare + run on a private copy of a stream: the record and its annotation traces; None (with a
        warning) when the stream holds no usable data."""
        record = self._prepare(stream, argdict)
        if record is None:
            seisbench.logger.warning("SINE: no usable Z/N/E/1/2 data in the stream.")
            return None
        if argdict.get("batch_size") is None:  # about 256 station-windows per batch
            stations = min(len(record.stations), self.max_stations)
            argdict["batch_size"] = max(1, 256 // max(1, stations))
        return record, self._stacks_to_stream(self._annotate_record(record, argdict))

    async def annotate_async(
        self, stream: obspy.Stream, copy: bool = True, **kwargs
    ) -> obspy.Stream:
        """Annotates a multi-station stream; see :meth:`seisbench.models.WaveformModel.annotate`.

        Station coordinates come from ``inventory=`` (or ``stats.coordinates``). The network's windows lie on
        one grid from its first sample; each window's stations with data are split into compact groups, and a
        station's probabilities are stacked over its windows and groups. A station's output covers exactly the
        samples where it has data (less SeisBench's ``blinding`` at the start and end of the whole record):
        a neighbour starting late or with gaps does not change it. Output traces are
        ``NET.STA.LOC.SINE_P/_S/_N``, one per contiguous span of data.
        """
        sba.verify_args(self, kwargs)
        argdict = self.default_args.copy()
        argdict.update(kwargs)
        if len(stream) == 0:
            seisbench.logger.warning("SINE: the stream is empty; nothing to annotate.")
            return obspy.Stream()
        done = self._annotate_stream(_copy_stream(stream) if copy else stream, argdict)
        return obspy.Stream() if done is None else done[1]

    # ------------------------------------------------------------------------------------------------
    # classify
    # ------------------------------------------------------------------------------------------------
    async def classify_async(self, stream: obspy.Stream, **kwargs) -> sbu.ClassifyOutput:
        """Picks P and S at every station and locates events seen by at least ``min_stations`` stations.

        :return: ``ClassifyOutput`` with ``picks`` (a SeisBench PickList) and ``events`` (an ObsPy Catalog whose
                 events hold an Origin with uncertainties and Arrivals, a Magnitude and the Picks).
        """
        sba.verify_args(self, kwargs)
        argdict = self.default_args.copy()
        argdict.update(kwargs)
        if len(stream) == 0:
            seisbench.logger.warning("SINE: the stream is empty; no picks and no events.")
            return sbu.ClassifyOutput(self.name, picks=sbu.PickList(), events=Catalog())

        done = self._annotate_stream(_copy_stream(stream), argdict)
        if done is None:
            return sbu.ClassifyOutput(self.name, picks=sbu.PickList(), events=Catalog())
        record, annotations = done
        picks = self.classify_aggregate(annotations, argdict).picks
        events = self._locate(record, picks, argdict)
        return sbu.ClassifyOutput(self.name, picks=picks, events=events)

    def classify_aggregate(
        self, annotations: obspy.Stream, argdict: dict[str, Any]
    ) -> sbu.ClassifyOutput:
        """Picks from annotations alone (no waveforms, hence no events)."""
        picks = sbu.PickList()
        for phase in self.labels:
            if phase == "N":
                continue
            picks += self.picks_from_annotations(
                annotations.select(channel=f"{self.__class__.__name__}_{phase}"),
                sba.threshold(self, argdict, phase),
                phase,
            )
        return sbu.ClassifyOutput(self.name, picks=sbu.PickList(sorted(picks)), events=Catalog())

    @staticmethod
    def picks_from_curve(
        values: np.ndarray,
        threshold: float,
        trace_id: str,
        phase: str,
        time_of: Callable[[int], obspy.UTCDateTime],
    ) -> list[sbu.Pick]:
        """The *pick* step on one station's probability curve of one phase, SeisBench's rule: ObsPy's
        ``trigger_onset`` on at ``threshold`` and off below half of it, the peak the largest value between on
        and off (the first of equal ones). ``time_of(i)`` is the time of sample ``i``. Used by
        :meth:`picks_from_annotations` (``classify``) and the monitor engine."""
        picks = []
        for s0, s1 in trigger_onset(values, threshold, threshold / 2):
            segment = values[s0 : s1 + 1]
            picks.append(
                sbu.Pick(
                    trace_id=trace_id,
                    start_time=time_of(s0),
                    end_time=time_of(s1),
                    peak_time=time_of(s0 + np.argmax(segment)),
                    peak_value=np.max(segment),
                    phase=phase,
                )
            )
        return picks

    @staticmethod
    def picks_from_annotations(
        annotations: obspy.Stream, threshold: float, phase: str
    ) -> sbu.PickList:
        """SeisBench's ``picks_from_annotations`` (the same picks, tested against it) through
        :meth:`picks_from_curve`, the rule the monitor engine shares."""
        picks = []
        for trace in annotations:
            stats = trace.stats
            start, times = stats.starttime, trace.times()
            picks += SINE.picks_from_curve(
                trace.data,
                threshold,
                f"{stats.network}.{stats.station}.{stats.location}",
                phase,
                lambda i, start=start, times=times: start + times[i],
            )
        return sbu.PickList(sorted(picks))

    def _locate(self, record: GridRecord, picks: sbu.PickList, argdict: dict[str, Any]) -> Catalog:
        coordinates: dict[str, Coordinates] = argdict["_coordinates"]
        min_stations = sba.arg(self, argdict, "min_stations")
        stations = sorted(coordinates)
        if len(stations) < min_stations:
            seisbench.logger.warning(
                f"SINE: only {len(stations)} located station(s) with data, fewer than "
                f"min_stations={min_stations}; returning picks only, no events."
            )
            return Catalog()

        p_picks = sbu.PickList(p for p in picks if p.phase == "P")
        window_len = (self.in_samples - 1) / self.sampling_rate
        candidates: list[Candidate] = []
        for group in self.event_groups(argdict):
            window_s = self.association_window(group, argdict)
            candidates += associate(p_picks, group, window_s, min_stations)
        if not candidates:
            return Catalog()

        pre_p = sba.arg(self, argdict, "event_pre_p")
        windows = [
            cut_window(
                record.read,
                cand.group,
                record.index(cand.first_p - pre_p),
                self.in_samples,
                self.in_channels,
            )
            for cand in candidates
        ]
        self.estimate_candidates(candidates, windows, argdict)
        candidates = drop_implausible(
            candidates, coordinates, record.time(record.start), window_len, seisbench.logger
        )
        if not candidates:
            return Catalog()
        merged = merge_candidates(
            candidates,
            sba.arg(self, argdict, "merge_time"),
            sba.arg(self, argdict, "merge_distance"),
        )
        channels = {
            key: station.channels.get(0) or next(iter(station.channels.values()))
            for key, station in record.stations.items()
        }
        return Catalog(
            [candidate_to_event(cand, coordinates, channels, self.name) for cand in merged]
        )

    def event_groups(self, argdict: dict[str, Any]) -> list[list[str]]:
        """The station groups of association and the event step: every station of ``argdict["_coordinates"]``
        in compact groups of at most ``max_stations``. Used by ``classify`` and the monitor engine."""
        coordinates: dict[str, Coordinates] = argdict["_coordinates"]
        stations = sorted(coordinates)
        return compact_groups(stations, [coordinates[s] for s in stations], self.max_stations)

    def association_window(self, group: list[str], argdict: dict[str, Any]) -> float:
        """Association window (s) of a station group: ``association_window`` or the group's largest station
        distance / 5 km/s + 2 s, capped at 80% of the model window."""
        window_s = sba.arg(self, argdict, "association_window")
        if window_s is not None:
            return float(window_s)
        coordinates: dict[str, Coordinates] = argdict["_coordinates"]
        pos, _ = local_positions([coordinates[s] for s in group])
        span = float(np.max(np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1)))
        return min(span / 5.0 + 2.0, 0.8 * (self.in_samples - 1) / self.sampling_rate)

    def estimate_candidates(
        self, candidates: list[Candidate], windows: list[np.ndarray], argdict: dict[str, Any]
    ) -> None:
        """The event step (:mod:`sine_seisbench.locate`) on each candidate's window ``(stations, components,
        samples)`` starting ``event_pre_p`` before its first P: the network's P and S curves over the window are
        migrated, accepted or rejected, their soft arrival times fitted and ML measured. Fills in location,
        magnitude, uncertainties and origin time, or ``rejected`` with the reason."""
        batch_size = sba.arg(self, argdict, "batch_size")
        config = self._locator_config(argdict)
        tt = traveltimes_for(sba.arg(self, argdict, "velocity_model"))
        corrections = read_station_corrections(sba.arg(self, argdict, "station_corrections"))
        pre_p = sba.arg(self, argdict, "event_pre_p")
        phase_index = [self.labels.index("P"), self.labels.index("S")]
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start : start + batch_size]
            chunk_windows = windows[start : start + batch_size]
            # the event head's graph features are run only where they give the arrival weights
            out, _ = self.run_groups(
                chunk_windows,
                [c.group for c in chunk],
                argdict,
                event=self.arrival_head is not None,
            )
            picks = out["picks"].cpu().numpy()
            sigmas = out["arrival_sigma"].cpu().numpy() if "arrival_sigma" in out else None
            for i, cand in enumerate(chunk):
                positions, _, ref = self._group_inputs(cand.group, argdict)
                window = chunk_windows[i]
                n_st = len(cand.group)
                cand.reference = ref
                curves = np.nan_to_num(picks[i, :n_st][:, phase_index])
                available = np.any(window != 0, axis=(1, 2)) & np.all(
                    np.isfinite(window), axis=(1, 2)
                )
                gains = station_gains(argdict, cand.group)
                result = locate_window(
                    curves,
                    window,
                    self.sampling_rate,
                    list(cand.group),
                    positions,
                    available,
                    pre_p,
                    tt,
                    config,
                    gains,
                    corrections,
                    None if sigmas is None else np.nan_to_num(sigmas[i, :n_st], nan=0.0),
                )
                window_start = cand.first_p - pre_p
                cand.set_estimate(result, window_start, tt)

    def _locator_config(self, argdict: dict[str, Any]) -> LocatorConfig:
        def get(name: str):
            if name == "p_threshold":
                return sba.threshold(self, argdict, "P")
            if name == "s_threshold":
                return sba.threshold(self, argdict, "S")
            if name in sba.annotate_args(self):
                return sba.arg(self, argdict, name)
            return None

        return LocatorConfig.from_argdict(get)

    # ------------------------------------------------------------------------------------------------
    # Saving and loading
    # ------------------------------------------------------------------------------------------------
    def get_model_args(self) -> dict[str, Any]:
        model_args = super().get_model_args()
        for key in [
            "citation",
            "output_type",
            "default_args",
            "pred_sample",
            "labels",
            "grouping",
            "component_order",
            "filter_args",
            "filter_kwargs",
        ]:
            model_args.pop(key, None)
        model_args.update(
            in_channels=self.in_channels,
            phases=self.labels,
            sampling_rate=self.sampling_rate,
            in_samples=self.in_samples,
            max_stations=self.max_stations,
            filter_factor=self.filter_factor,
            lstm_hidden=self.lstm_hidden,
            latent_channels=self.latent_channels,
            routing_iterations=self.routing_iterations,
            graph_layers=len(self.branch.graph),
            k_neighbours=self.k_neighbours,
            radius_km=self.radius_km,
            event_scales=list(self.event_scales),
            event_offsets=list(self.event_offsets),
            norm=self.norm,
            calibrated_amplitudes=self.calibrated_amplitudes,
            picker=self.picker,
            arrival_head=self.arrival_head is not None,
        )
        return model_args

    @classmethod
    def from_picker(cls, picker: nn.Module, weights_name: str | None = None, **kwargs) -> SINE:
        """A SINE whose per-station path is a copy of a published picker's weights.

        ``SINE.from_picker(seisbench.models.PhaseNet.from_pretrained("original"))`` (or 'instance', 'stead',
        'scedc', 'ethz', ...). The picker's input components and output labels are re-ordered into SINE's ZNE and
        P/S/N (a permutation of the first and last layers' weights, which changes no result), its normalisation
        and its annotate defaults (``overlap``, ``blinding``, ``stacking``) are taken over. The graph branch's
        output starts at zero and the event head is untrained: until SINE is trained, its pick probabilities
        are the picker's, and its event estimates mean nothing.

        :param picker: A ``seisbench.models.PhaseNet`` (3 components, P, S and noise labels).
        :param weights_name: The picker's weights name (e.g. 'original'), recorded in SINE's ``picker`` argument.
        :param kwargs: Further SINE arguments (e.g. ``max_stations``, ``lstm_hidden``).
        """
        import seisbench.models as sbm

        if type(picker) is not sbm.PhaseNet:
            raise TypeError(
                f"SINE.from_picker takes a seisbench.models.PhaseNet, got {type(picker).__name__}; other "
                "layouts (PhaseNetLight, EQTransformer, ...) cannot be copied into SINE's per-station path."
            )
        if getattr(picker, "norm_amp_per_comp", False) or getattr(picker, "norm_detrend", False):
            raise ValueError(
                "SINE.from_picker: pickers with PickBlue normalisation (norm_amp_per_comp/norm_detrend) are "
                "not supported."
            )
        order, labels = picker.component_order, "".join(picker.labels)
        if (
            picker.in_channels != 3
            or sorted(order) != sorted("ZNE")
            or sorted(labels) != sorted("PSN")
        ):
            raise ValueError(
                f"SINE.from_picker needs a 3-component ZNE picker with P, S and N labels; this one has "
                f"components {order!r} and labels {labels!r}."
            )
        kwargs.setdefault(
            "picker",
            f"{type(picker).__name__}"
            + (f" '{weights_name}'" if weights_name else "")
            + (f" (weights v{picker.weights_version})" if picker.weights_version else "")
            + f"; {picker.citation}",
        )
        model = cls(
            in_channels=3,
            phases="PSN",
            sampling_rate=picker.sampling_rate,
            norm=picker.norm,
            filter_factor=getattr(picker, "filter_factor", 1),
            **kwargs,
        )
        state = picker.state_dict()
        comp = [order.index(c) for c in "ZNE"]
        out = [labels.index(c) for c in "PSN"]
        state["inc.weight"] = state["inc.weight"][:, comp]
        state["out.weight"] = state["out.weight"][out]
        state["out.bias"] = state["out.bias"][out]
        model.backbone.load_state_dict(state)
        for key in ("overlap", "blinding", "stacking"):
            if key in picker.default_args:
                model.default_args[key] = picker.default_args[key]
        return model

    @classmethod
    def shipped_weights(cls) -> dict[str, Path]:
        """Weights shipped inside the package (the project's ``weights/`` folder): name -> path without suffix."""
        folder = Path(str(resources.files("sine_seisbench.weights")))
        return {p.name[: -len(".json")]: p.with_suffix("") for p in sorted(folder.glob("*.json"))}

    @classmethod
    def from_pretrained(
        cls, name, version_str="latest", update=False, force=False, wait_for_file=False
    ) -> SINE:
        """SeisBench's ``from_pretrained``; weights shipped with the package are placed in the SeisBench cache
        first, so they load without network access."""
        shipped = cls.shipped_weights()
        if name in shipped and not update:
            target = sba.model_cache_folder(cls)
            target.mkdir(parents=True, exist_ok=True)
            for suffix in (".json", ".pt"):
                src = shipped[name].with_name(shipped[name].name + suffix)
                dst = target / f"{name}{suffix}.v1"
                if not dst.exists() or dst.read_bytes() != src.read_bytes():
                    shutil.copyfile(src, dst)
        return super().from_pretrained(
            name, version_str=version_str, update=update, force=force, wait_for_file=wait_for_file
        )

    @classmethod
    def load(cls, path, version_str=None, **kwargs) -> SINE:
        """Loads weights saved by :meth:`save`; the tensors are read with ``torch.load(weights_only=True)``."""
        kwargs.setdefault("weights_only", True)
        kwargs.setdefault("map_location", "cpu")
        return super().load(path, version_str=version_str, **kwargs)


# ----------------------------------------------------------------------------------------------------
# Stream helpers
# ----------------------------------------------------------------------------------------------------
def _copy_stream(stream: obspy.Stream) -> obspy.Stream:
    """``stream.copy()`` whose traces share the originals' instrument responses (``stats.response``, read only
    here): deep-copying a response took 0.15-0.3 s per call on the example records, more than the data."""
    memo: dict[int, Any] = {}
    for tr in stream:
        response = tr.stats.get("response")
        if response is not None:
            memo[id(response)] = response
    return deepcopy(stream, memo)


def _warn_unused_components(stream: obspy.Stream) -> None:
    unused = sorted(
        {tr.id for tr in stream if tr.stats.channel[-1:] not in "ZNE12" or not tr.stats.channel}
    )
    if unused:
        seisbench.logger.warning(
            f"SINE: trace(s) {', '.join(unused)} are not Z, N, E, 1 or 2 components and are ignored."
        )


def _remove_sensitivity(stream: obspy.Stream, inventory: Any) -> None:
    """Divides traces by their overall sensitivity where the inventory has a response; flags them."""
    if not isinstance(inventory, obspy.Inventory):
        return
    for tr in stream:
        if tr.stats.get("sine_calibrated"):
            continue
        try:
            tr.remove_sensitivity(inventory)
        except Exception:  # noqa: BLE001 - no response for this channel: stays uncalibrated
            continue
        tr.stats.sine_calibrated = True


__all__ = ["DEFAULT_WEIGHTS", "SINE"]
