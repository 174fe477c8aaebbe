"""Disentangled station graph: neighbourhood routing over K latent channels, one message passing per channel.

After DisenGCN (Ma et al., 2019) as used by SINE (Meng et al., 2025), extended to time-resolved node features and
to edge attributes from the station geometry (distance, azimuth, elevation difference).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter


class NeighbourhoodRouting(MessagePassing):
    """Assigns every edge softly to the K latent channels by iterative neighbourhood routing.

    Each node ``i`` keeps a channel centre ``c_ik``; a neighbour ``j`` is routed to channel ``k`` with probability
    ``softmax_k(<z_jk, c_ik> / tau)``, and the centres are updated with the routed neighbours.

    :param iterations: Number of routing iterations.
    :param tau: Softmax temperature.
    """

    def __init__(self, iterations: int = 3, tau: float = 1.0) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.iterations = iterations
        self.tau = tau

    def forward(self, z: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """
        :param z: L2-normalised channel embeddings, shape ``(nodes, K, d)``.
        :param edge_index: ``(2, edges)``, messages flow from ``edge_index[0]`` to ``edge_index[1]``.
        :return: Routing probabilities per edge and channel, shape ``(edges, K)``.
        """
        c = z
        for _ in range(self.iterations):
            c = F.normalize(z + self.propagate(edge_index, z=z, c=c), dim=-1)
        src, dst = edge_index
        return self._assign(z[src], c[dst])

    def _assign(self, z_j: torch.Tensor, c_i: torch.Tensor) -> torch.Tensor:
        return torch.softmax((z_j * c_i).sum(-1) / self.tau, dim=-1)

    def message(self, z_j: torch.Tensor, c_i: torch.Tensor) -> torch.Tensor:
        return self._assign(z_j, c_i).unsqueeze(-1) * z_j


class ChannelConv(MessagePassing):
    """Message passing within one latent channel on time-resolved features.

    Messages are the neighbours' projected feature sequences weighted by the edge's routing probability and a
    geometry gate; they are averaged with these weights and passed through a temporal convolution, which lets the
    layer relate arrivals that reach neighbouring stations at different times.

    :param channels: Feature channels of this latent channel.
    :param kernel_size: Kernel of the temporal convolution after aggregation.
    """

    def __init__(self, channels: int, kernel_size: int = 9) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.lin = nn.Conv1d(channels, channels, 1)
        self.temporal = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()
        self.temporal.reset_parameters()

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor
    ) -> torch.Tensor:
        """
        :param h: Node features ``(nodes, channels, time)``.
        :param edge_index: ``(2, edges)``.
        :param edge_weight: Non-negative weights ``(edges,)``.
        :return: Updated node features, same shape as ``h``.
        """
        n = h.shape[0]
        x = self.lin(h)
        # Weighted adjacency, transposed (rows are targets): aggregation is one sparse-dense product,
        # far cheaper on CPU than gathering and scattering every edge's feature sequence.
        adj_t = torch.sparse_coo_tensor(
            edge_index.flip(0), edge_weight, (n, n), check_invariants=False
        ).coalesce()
        agg = self.propagate(adj_t, x=x)
        norm = scatter(edge_weight, edge_index[1], dim=0, dim_size=n, reduce="sum")
        agg = agg / (norm.view(-1, 1, 1) + 1e-6)
        return h + self.temporal(F.relu(agg))

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(adj_t, x.reshape(x.shape[0], -1)).view_as(x)


class DisentangledGraphLayer(nn.Module):
    """One disentangled graph layer: split features into K channels, route, pass messages per channel, merge.

    :param features: Node feature channels (divisible by ``n_channels``).
    :param n_channels: Number of latent channels K.
    :param edge_features: Size of the edge attribute vector.
    :param routing_iterations: Iterations of :class:`NeighbourhoodRouting`.
    """

    def __init__(
        self,
        features: int,
        n_channels: int = 4,
        edge_features: int = 4,
        routing_iterations: int = 3,
    ) -> None:
        super().__init__()
        if features % n_channels:
            raise ValueError(f"features={features} is not divisible by n_channels={n_channels}")
        self.n_channels = n_channels
        self.channel_dim = features // n_channels
        self.split = nn.Conv1d(features, features, 1)
        self.routing = NeighbourhoodRouting(routing_iterations)
        self.edge_gate = nn.Sequential(
            nn.Linear(edge_features, 16), nn.ReLU(), nn.Linear(16, n_channels)
        )
        self.convs = nn.ModuleList(ChannelConv(self.channel_dim) for _ in range(n_channels))
        self.merge = nn.Conv1d(features, features, 1)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        :param x: Node features ``(nodes, features, time)``.
        :param edge_index: ``(2, edges)``.
        :param edge_attr: ``(edges, edge_features)``.
        :return: Updated features ``(nodes, features, time)`` and routing probabilities ``(edges, K)``.
        """
        n, _, t = x.shape
        h = F.relu(self.split(x)).view(n, self.n_channels, self.channel_dim, t)
        z = F.normalize(h.mean(-1), dim=-1)
        p = self.routing(z, edge_index)
        weights = p * torch.sigmoid(self.edge_gate(edge_attr))
        out = [conv(h[:, k], edge_index, weights[:, k]) for k, conv in enumerate(self.convs)]
        return F.relu(x + self.merge(torch.cat(out, dim=1))), p


__all__ = ["ChannelConv", "DisentangledGraphLayer", "NeighbourhoodRouting"]
