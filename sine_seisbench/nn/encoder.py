"""Per-station temporal encoder: a residual CNN front end that downsamples in time, then a BiLSTM."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualDownBlock(nn.Module):
    """Two 1-D convolutions, the first strided, with a strided shortcut; divides the time axis by ``stride``.

    :param in_channels: Input feature channels.
    :param out_channels: Output feature channels.
    :param stride: Down-sampling factor.
    :param kernel_size: Convolution kernel size (odd).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 2, kernel_size: int = 7
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        # Strided 1x1 shortcut computed on the kept samples only (identical result, far cheaper for stride 4)
        stride = self.shortcut.stride[0]
        shortcut = F.conv1d(x[..., ::stride], self.shortcut.weight, self.shortcut.bias)
        return F.relu(y + shortcut[..., : y.shape[-1]])


class TemporalEncoder(nn.Module):
    """CNN + BiLSTM encoder applied to every station independently.

    The input length must be a multiple of the product of ``strides``; :class:`~sine_seisbench.model.SINE`
    pads windows accordingly.

    :param in_channels: Number of input channels.
    :param filters: Output channels of the stem followed by one entry per residual down-sampling block.
    :param strides: Down-sampling factor of each residual block (one fewer entry than ``filters``).
    :param lstm_hidden: Hidden size of each LSTM direction; the output has ``2 * lstm_hidden`` features.
    :param kernel_size: Convolution kernel size.
    """

    def __init__(
        self,
        in_channels: int = 3,
        filters: tuple[int, ...] = (8, 16, 32, 64),
        strides: tuple[int, ...] = (4, 2, 2),
        lstm_hidden: int = 32,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, filters[0], kernel_size, padding=kernel_size // 2),
            nn.BatchNorm1d(filters[0]),
            nn.ReLU(),
        )
        if len(strides) != len(filters) - 1:
            raise ValueError("strides needs one entry per residual block (len(filters) - 1)")
        self.blocks = nn.ModuleList(
            ResidualDownBlock(c_in, c_out, stride, kernel_size)
            for c_in, c_out, stride in zip(filters[:-1], filters[1:], strides, strict=True)
        )
        self.lstm = nn.LSTM(filters[-1], lstm_hidden, batch_first=True, bidirectional=True)
        self.downsampling = math.prod(strides)
        self.out_features = 2 * lstm_hidden

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        :param x: Waveforms, shape ``(N, components, samples)``.
        :return: Features ``(N, 2 * lstm_hidden, samples / downsampling)`` and the skip tensors of every
                 resolution level, finest first (for the pick decoder).
        """
        x = self.stem(x)
        skips = [x]
        for block in self.blocks:
            x = block(x)
            skips.append(x)
        skips.pop()  # the coarsest level is the LSTM input itself
        y, _ = self.lstm(x.transpose(1, 2))
        return y.transpose(1, 2), skips
