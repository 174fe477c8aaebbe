"""The per-station path of SINE in the layout of SeisBench's ``PhaseNet``, split into encoder and decoder.

The layers are SeisBench's own, under PhaseNet's names (``inc``, ``in_bn``, ``down_branch``, ``up_branch``, ``out``),
so a published PhaseNet's ``state_dict`` loads into :class:`PhaseNetBackbone` unchanged; ``decode(*encode(x))`` is
``PhaseNet.forward`` split at the bottleneck and returns PhaseNet's logits for the same input.
"""

from __future__ import annotations

import seisbench.models as sbm
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Manual padding before the strided convolutions of levels 1-3 (PhaseNet's TensorFlow "same" padding).
_DOWN_PADDING = {1: (2, 3), 2: (1, 3), 3: (2, 3)}


class PhaseNetBackbone(nn.Module):
    """PhaseNet's U-Net (Zhu & Beroza, 2019): the layers of a ``seisbench.models.PhaseNet`` of the same
    arguments, under the same names, run as an encoder and a decoder.

    :param in_channels: Input components.
    :param phases: Output labels (one class each).
    :param filter_factor: Width multiplier (SeisBench's ``filter_factor``).
    """

    def __init__(self, in_channels: int = 3, phases: str = "PSN", filter_factor: int = 1) -> None:
        super().__init__()
        layout = sbm.PhaseNet(
            in_channels=in_channels,
            classes=len(phases),
            phases=phases,
            filter_factor=filter_factor,
        )
        self.inc, self.in_bn, self.out = layout.inc, layout.in_bn, layout.out
        self.down_branch, self.up_branch = layout.down_branch, layout.up_branch
        #: Channels of the bottleneck (the coarsest level)
        self.bottleneck_channels = self.down_branch[-1][0].out_channels

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
            x = F.relu(bn1(conv_up(x)))[..., 1:-2]
            if (
                x.shape[-1] < skip.shape[-1]
            ):  # window lengths PhaseNet was not built for (it uses 3001)
                # (the last axis; 2-D layouts of height one, onnx_backend.conv2d_layout, pad their height by 0)
                pad = (0, skip.shape[-1] - x.shape[-1]) + (0, 0) * (x.dim() - 3)
                x = F.pad(x, pad, mode="replicate")
            offset = (x.shape[-1] - skip.shape[-1]) // 2
            x = torch.cat([skip, x[..., offset : offset + skip.shape[-1]]], dim=1)
            x = F.relu(bn2(conv_same(x)))
        return self.out(x)


__all__ = ["PhaseNetBackbone"]
