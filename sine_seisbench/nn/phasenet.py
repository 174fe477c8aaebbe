"""The per-station path of SINE in the layout of SeisBench's ``PhaseNet``, split into encoder and decoder.

The modules carry exactly PhaseNet's parameter names (``inc``, ``in_bn``, ``down_branch``, ``up_branch``,
``out``), so a published PhaseNet's ``state_dict`` loads into :class:`PhaseNetBackbone` unchanged, and
``decode(*encode(x))`` returns PhaseNet's logits for the same input.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Manual padding before the strided convolutions of levels 1-3 (PhaseNet's TensorFlow "same" padding).
_DOWN_PADDING = {1: (2, 3), 2: (1, 3), 3: (2, 3)}


class PhaseNetBackbone(nn.Module):
    """PhaseNet's U-Net (Zhu & Beroza, 2019) as SeisBench builds it: depth 5, kernel 7, stride 4, 8 root filters.

    :param in_channels: Input components.
    :param classes: Output classes.
    :param filter_factor: Width multiplier (SeisBench's ``filter_factor``).
    """

    depth = 5
    kernel_size = 7
    stride = 4
    filters_root = 8

    def __init__(self, in_channels: int = 3, classes: int = 3, filter_factor: int = 1) -> None:
        super().__init__()
        k, root = self.kernel_size, self.filters_root * filter_factor
        self.inc = nn.Conv1d(in_channels, root, k, padding="same")
        self.in_bn = nn.BatchNorm1d(root, eps=1e-3)
        self.down_branch = nn.ModuleList()
        self.up_branch = nn.ModuleList()
        last = root
        for i in range(self.depth):
            filters = 2**i * root
            conv_same = nn.Conv1d(last, filters, k, padding="same", bias=False)
            last = filters
            bn1 = nn.BatchNorm1d(filters, eps=1e-3)
            conv_down = bn2 = None
            if i < self.depth - 1:
                padding = 0 if i in _DOWN_PADDING else k // 2
                conv_down = nn.Conv1d(filters, filters, k, self.stride, padding=padding, bias=False)
                bn2 = nn.BatchNorm1d(filters, eps=1e-3)
            self.down_branch.append(nn.ModuleList([conv_same, bn1, conv_down, bn2]))
        for i in range(self.depth - 1):
            filters = 2 ** (self.depth - 2 - i) * root
            conv_up = nn.ConvTranspose1d(last, filters, k, self.stride, bias=False)
            last = filters
            bn1 = nn.BatchNorm1d(filters, eps=1e-3)
            conv_same = nn.Conv1d(2 * filters, filters, k, padding="same", bias=False)
            bn2 = nn.BatchNorm1d(filters, eps=1e-3)
            self.up_branch.append(nn.ModuleList([conv_up, bn1, conv_same, bn2]))
        self.out = nn.Conv1d(last, classes, 1, padding="same")
        #: Channels of the bottleneck (the coarsest level)
        self.bottleneck_channels = 2 ** (self.depth - 1) * root

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        :param x: Normalised waveforms ``(N, in_channels, samples)``.
        :return: The bottleneck ``(N, bottleneck_channels, T)`` (T = 12 for 3001 samples) and the skip tensors,
                 finest first.
        """
        x = F.relu(self.in_bn(self.inc(x)))
        skips = []
        for i, (conv_same, bn1, conv_down, bn2) in enumerate(self.down_branch):
            x = F.relu(bn1(conv_same(x)))
            if conv_down is not None:
                skips.append(x)
                if i in _DOWN_PADDING:
                    x = F.pad(x, _DOWN_PADDING[i], "constant", 0)
                x = F.relu(bn2(conv_down(x)))
        return x, skips

    def decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """
        :param x: Bottleneck features, as returned by :meth:`encode` (possibly with a residual added).
        :param skips: The skip tensors of :meth:`encode`.
        :return: Class logits ``(N, classes, samples)``.
        """
        for (conv_up, bn1, conv_same, bn2), skip in zip(self.up_branch, skips[::-1], strict=True):
            x = F.relu(bn1(conv_up(x)))[:, :, 1:-2]
            if (
                x.shape[-1] < skip.shape[-1]
            ):  # window lengths PhaseNet was not built for (it uses 3001)
                x = F.pad(x, (0, skip.shape[-1] - x.shape[-1]), mode="replicate")
            offset = (x.shape[-1] - skip.shape[-1]) // 2
            x = torch.cat([skip, x[:, :, offset : offset + skip.shape[-1]]], dim=1)
            x = F.relu(bn2(conv_same(x)))
        return self.out(x)


__all__ = ["PhaseNetBackbone"]
