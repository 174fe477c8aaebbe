"""Parsing head: event regression with uncertainty from the stations' bottleneck and graph features."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.utils import scatter

#: Order of the event parameters returned by :class:`EventHead`.
EVENT_PARAMETERS = ("east_km", "north_km", "depth_km", "magnitude")


class EventHead(nn.Module):
    """Regresses epicentre offset, depth and magnitude with a standard deviation for each.

    A small CNN parses every station's feature sequence together with its geometry (local east/north/up
    coordinates and amplitude level); station summaries are pooled per group with a mean and a max, so the result does
    not depend on the order of the stations; padded stations never enter.

    :param in_features: Channels of the station feature sequences.
    :param station_features: Number of per-station scalar features broadcast over time.
    :param hidden: Hidden width.
    :param scales: Output scale for each parameter (km, km, km, magnitude units).
    :param offsets: Output offset for each parameter.
    :param min_std: Lower bound of the predicted standard deviation for each parameter.
    """

    def __init__(
        self,
        in_features: int,
        station_features: int,
        hidden: int = 64,
        scales: tuple[float, ...] = (50.0, 50.0, 10.0, 1.0),
        offsets: tuple[float, ...] = (0.0, 0.0, 10.0, 2.0),
        min_std: tuple[float, ...] = (0.1, 0.1, 0.1, 0.01),
    ) -> None:
        super().__init__()
        self.parse = nn.Sequential(
            nn.Conv1d(in_features + station_features, hidden, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.mlp = nn.Sequential(
            nn.Linear(4 * hidden, 2 * hidden),
            nn.ReLU(),
            nn.Linear(2 * hidden, 2 * len(EVENT_PARAMETERS)),
        )
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "offsets", torch.tensor(offsets, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "min_std", torch.tensor(min_std, dtype=torch.float32), persistent=False
        )

    def forward(
        self,
        x: torch.Tensor,
        station_features: torch.Tensor,
        batch: torch.Tensor,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        :param x: Feature sequences of the real (unpadded) stations of all groups, ``(N, F, T)``.
        :param station_features: ``(N, G)`` scalar features per station.
        :param batch: ``(N,)`` index of the group each station belongs to.
        :param batch_size: Number of groups.
        :return: Mean and standard deviation, each ``(batch_size, 4)`` in the order of
                 :data:`EVENT_PARAMETERS`.
        """
        t = x.shape[-1]
        geo = station_features.unsqueeze(-1).expand(-1, -1, t)
        h = self.parse(torch.cat([x, geo], dim=1))
        h = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)
        pooled = torch.cat(
            [
                scatter(h, batch, dim=0, dim_size=batch_size, reduce="mean"),
                scatter(h, batch, dim=0, dim_size=batch_size, reduce="max"),
            ],
            dim=-1,
        )
        raw_mean, raw_std = self.mlp(pooled).chunk(2, dim=-1)
        mean = raw_mean * self.scales + self.offsets
        std = F.softplus(raw_std) * self.scales + self.min_std
        return mean, std


class ArrivalHead(nn.Module):
    """Predicts, for every station, the timing error (s) of its P and S arrivals beyond their curves' spread.

    The event step (:mod:`sine_seisbench.pipeline.locate`) weights each station and phase by it: in the migration (weight
    ``1 / (1 + (sigma / reference)^2)``) and in the travel-time fit (added in quadrature to the arrival's spread).
    It parses the same station features as :class:`EventHead` (bottleneck and graph features, geometry), so what
    the other stations saw enters each station's weight. Trained by the location loss of ``sine train``
    (``location_weight``): the Gaussian negative log-likelihood of the soft arrival times' residuals at the true
    hypocentre, origin time removed.

    :param in_features: Channels of the station feature sequences.
    :param station_features: Number of per-station scalar features broadcast over time.
    :param hidden: Hidden width.
    :param scale_s: Output scale (s) of the softplus.
    :param min_s: Lower bound (s).
    """

    def __init__(
        self,
        in_features: int,
        station_features: int,
        hidden: int = 32,
        scale_s: float = 0.2,
        min_s: float = 0.01,
    ) -> None:
        super().__init__()
        self.parse = nn.Sequential(
            nn.Conv1d(in_features + station_features, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.scale_s = float(scale_s)
        self.min_s = float(min_s)

    def forward(self, x: torch.Tensor, station_features: torch.Tensor) -> torch.Tensor:
        """
        :param x: Feature sequences of the real stations ``(N, F, T)``.
        :param station_features: ``(N, G)`` scalar features per station.
        :return: ``(N, 2)`` P and S timing errors (s).
        """
        geo = station_features.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        h = self.parse(torch.cat([x, geo], dim=1))
        h = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)
        return F.softplus(self.mlp(h)) * self.scale_s + self.min_s
