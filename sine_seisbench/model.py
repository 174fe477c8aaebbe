"""SINE: multi-station joint picking, location and magnitude estimation as a SeisBench WaveformModel."""

from __future__ import annotations

import shutil
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
from seisbench.models.base import WaveformModel

from . import seisbench_adapter as sba
from .geometry import (
    GeographicGroupingHelper,
    StationTable,
    attach_coordinates,
    build_station_graph,
)
from .nn.encoder import StationGraphBranch
from .nn.heads import ArrivalHead, EventHead
from .nn.onnx_backend import OnnxBackbone, wants_onnxruntime
from .nn.phasenet import PhaseNetBackbone
from .pipeline.locate import EarlyEvents, event_curves_from_annotation, locate_record
from .pipeline.pick import picks_from_annotations, sorted_picks
from .pipeline.prepare import (
    GridRecord,
    Stack,
    StationSet,
    prepare_stream,
    remove_sensitivity,
    split_invalid_samples,
)
from .pipeline.run import annotate_record, stacks_to_stream

#: Name of the shipped weights every entry point uses by default (``weights/README.md`` is their model card).
DEFAULT_WEIGHTS = "sine_pn_original"

def n_station_features(in_channels: int) -> int:
    """Per-station scalar features given to the event and arrival heads: east, north, up (scaled), log
    amplitude, amplitude calibrated flag, and one presence flag per component (``in_channels``)."""
    return 5 + in_channels


#: :func:`n_station_features` of a three-component model (the shipped weights)
N_STATION_FEATURES = n_station_features(3)


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
        "to station magnitudes), a DataFrame or a dict; see sine_seisbench.pipeline.locate.estimate_station_corrections.",
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
    _annotate_args["inference_backend"] = (
        "Engine of the network's per-station path: 'auto' (ONNX Runtime on the CPU when onnxruntime and onnx "
        "are installed, faster on CPUs; else torch), 'onnxruntime' or 'torch'. ONNX Runtime's "
        "probabilities differ from torch's by float32 rounding (below 1e-5).",
        "auto",
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
            n_station_features(in_channels),
            scales=self.event_scales,
            offsets=self.event_offsets,
        )
        # per-station P/S timing errors for the event step (None: every station and phase weighs the same)
        self.arrival_head = (
            ArrivalHead(
                self.backbone.bottleneck_channels + self.branch.out_features,
                n_station_features(in_channels),
            )
            if arrival_head
            else None
        )
        # the per-station path in ONNX Runtime, made on first use (inference_backend)
        self._onnx: OnnxBackbone | None = None

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
        backend: str = "torch",
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
        :param backend: Engine of the per-station path at inference (``annotate``'s ``inference_backend``:
                        ``"torch"``, ``"onnxruntime"`` or ``"auto"``, see :mod:`sine_seisbench.nn.onnx_backend`);
                        training and gradients always use torch.
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
        # every station with data (most batches): the stations as they are, no gather and scatter copies
        every = valid.numel() == b * s
        x_valid = x.reshape(b * s, c, t) if every else x.reshape(b * s, c, t)[valid]
        branch = graph_picks or event  # the station graph is needed only for the branch

        def scatter_back(pick_logits: torch.Tensor) -> torch.Tensor:
            picks = pick_logits if logits else torch.softmax(pick_logits, dim=1)
            if every:
                return picks.to(x.dtype).view(b, s, -1, t)
            out = x.new_zeros(b * s, picks.shape[1], t)
            out[valid] = picks.to(out.dtype)
            return out.view(b, s, -1, t)

        path = self.backbone
        if wants_onnxruntime(backend, x, self.training):
            if self._onnx is None:
                self._onnx = OnnxBackbone(self.backbone)
            if self._onnx.usable(t, c, required=backend == "onnxruntime", split=branch):
                path = self._onnx
        if path is self._onnx and not branch:
            # the per-station path alone: encoder and decoder in one session
            result = {"picks": scatter_back(self._onnx.logits(x_valid))}
            if teacher:
                result["teacher_picks"] = result["picks"]
            return result
        h, skips = path.encode(x_valid)

        residual = graph_features = None
        if branch:
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

        result = {
            "picks": scatter_back(path.decode(h + residual if graph_picks else h, skips))
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
            remove_sensitivity(stream, argdict.get("inventory"))
        super().annotate_stream_pre(stream, argdict)
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
        batch, log_scale = self.normalise(batch)
        if batch.shape[1] < self.max_stations:
            missing = self.max_stations - batch.shape[1]
            batch = F.pad(batch, (0, 0, 0, 0, 0, missing))
            log_scale = F.pad(log_scale, (0, missing))
        return batch, log_scale

    def normalise(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`annotate_batch_pre` without padding the station axis: each station's components normalised
        and the log10 of its largest component scale."""
        batch = batch - batch.mean(dim=-1, keepdim=True)
        if self.norm == "std":
            comp_scale = batch.std(dim=-1, keepdim=True)
        else:
            comp_scale = batch.abs().amax(dim=-1, keepdim=True)
        batch = batch / (comp_scale + 1e-10)
        scale = comp_scale[..., 0].amax(dim=-1)
        return batch, torch.log10(scale.clamp(min=1e-30))

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

    def _annotate_stream(
        self, stream: obspy.Stream, argdict: dict[str, Any], events: bool = False
    ) -> tuple[GridRecord, StationSet, dict[str, Stack], EarlyEvents | None] | None:
        """The prepare and run steps on a private copy of a stream: the record, its stations, the stacked
        predictions per station and, with ``events`` (``classify``) where the event step takes the annotation's
        curves, that step started during the annotation (:class:`~sine_seisbench.pipeline.locate.EarlyEvents`,
        to be closed by the caller); None (with a warning) when the stream holds no usable data."""
        prepared = prepare_stream(self, stream, argdict)
        if prepared is None:
            seisbench.logger.warning("SINE: no usable Z/N/E/1/2 data in the stream.")
            return None
        record, stations = prepared
        if argdict.get("batch_size") is None:  # about 256 station-windows per batch
            n = min(len(record.stations), self.max_stations)
            argdict["batch_size"] = max(1, 256 // max(1, n))
        early = None
        if events and event_curves_from_annotation(self, argdict):
            early = EarlyEvents(self, record, stations, argdict)
        try:
            stacks = annotate_record(
                self, record, stations, argdict, None if early is None else early.advance
            )
        except BaseException:
            if early is not None:
                early.close()
            raise
        return record, stations, stacks, early

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
        return obspy.Stream() if done is None else stacks_to_stream(self, done[2])

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

        done = self._annotate_stream(_copy_stream(stream), argdict, events=True)
        if done is None:
            return sbu.ClassifyOutput(self.name, picks=sbu.PickList(), events=Catalog())
        record, stations, stacks, early = done
        try:
            # traces of the picked labels only (the coverage is that of every label: the network gives all
            # or none of a sample's probabilities)
            picked = [label for label in self.labels if label != "N"]
            picks = self.classify_aggregate(stacks_to_stream(self, stacks, picked), argdict).picks
            events = locate_record(self, record, stations, picks, argdict, stacks, early)
        finally:
            if early is not None:
                early.close()
        return sbu.ClassifyOutput(self.name, picks=picks, events=events)

    def classify_aggregate(
        self, annotations: obspy.Stream, argdict: dict[str, Any]
    ) -> sbu.ClassifyOutput:
        """Picks from annotations alone (no waveforms, hence no events)."""
        picks = sbu.PickList()
        for phase in self.labels:
            if phase == "N":
                continue
            picks += picks_from_annotations(
                annotations.select(channel=f"{self.__class__.__name__}_{phase}"),
                sba.threshold(self, argdict, phase),
                phase,
            )
        return sbu.ClassifyOutput(self.name, picks=sorted_picks(picks), events=Catalog())

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


__all__ = ["DEFAULT_WEIGHTS", "SINE"]
