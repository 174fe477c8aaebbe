"""SINE's spatio-temporal branch at the picker's bottleneck: a BiLSTM over time, then disentangled graph layers
over the stations, returned as a residual to the bottleneck whose output projection starts at zero."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .disentangle import DisentangledGraphLayer


class StationGraphBranch(nn.Module):
    """BiLSTM + disentangled station graph on the bottleneck features of every station.

    ``forward`` returns a residual for the bottleneck and the graph features (for the event head). The residual's
    projection ``proj_out`` is initialised to zero: a branch that has not been trained leaves the picker's
    bottleneck, hence its probabilities, exactly as they were.

    :param channels: Bottleneck channels of the picker.
    :param lstm_hidden: Hidden size of each LSTM direction; the graph features have ``2 * lstm_hidden`` channels.
    :param latent_channels: Disentangled latent channels K of each graph layer.
    :param routing_iterations: Neighbourhood routing iterations.
    :param graph_layers: Number of disentangled graph layers.
    :param edge_features: Size of the edge attribute vector.
    """

    def __init__(
        self,
        channels: int,
        lstm_hidden: int = 32,
        latent_channels: int = 4,
        routing_iterations: int = 3,
        graph_layers: int = 2,
        edge_features: int = 4,
    ) -> None:
        super().__init__()
        features = 2 * lstm_hidden
        self.proj_in = nn.Conv1d(channels, features, 1)
        self.lstm = nn.LSTM(features, lstm_hidden, batch_first=True, bidirectional=True)
        self.graph = nn.ModuleList(
            DisentangledGraphLayer(features, latent_channels, edge_features, routing_iterations)
            for _ in range(graph_layers)
        )
        self.proj_out = nn.Conv1d(features, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.out_features = features

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        :param h: Bottleneck features of the stations with data ``(N, channels, T)``.
        :param edge_index: ``(2, edges)`` station graph over those N stations.
        :param edge_attr: ``(edges, edge_features)``.
        :return: The residual ``(N, channels, T)`` and the graph features ``(N, 2 * lstm_hidden, T)``.
        """
        z = F.relu(self.proj_in(h))
        z, _ = self.lstm(z.transpose(1, 2))
        z = z.transpose(1, 2)
        for layer in self.graph:
            z, _ = layer(z, edge_index, edge_attr)
        return self.proj_out(z), z


__all__ = ["StationGraphBranch"]
