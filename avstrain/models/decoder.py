"""AVSBench neck, fusion decoder and head (docs/reference/avsbench.md sections 3.2 and 3.4).

In-place ReLU quirk: the reference ``ResidualConvUnit`` starts with
``nn.ReLU(inplace=True)`` on its input, so the residual it adds is ``relu(x)``
and the caller's tensor is overwritten. All four maps the reference model
returns (used by the AVM loss) are therefore post-ReLU. With
``inplace_relu_quirk=True`` (default) we compute the same values without
in-place ops: ``RCU(x) = relu(x) + conv2(relu(conv1(relu(x))))`` and the model
returns ``relu`` of the fused maps. ``False`` gives the textbook
``x + conv2(relu(conv1(relu(x))))`` and returns the maps untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierModule(nn.Module):
    """ASPP-like neck: 4 parallel 3x3 convs (dilation = padding in 3/6/12/18) summed; no BN/act."""

    def __init__(self, in_channels: int, out_channels: int = 256, dilations=(3, 6, 12, 18)):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=d, dilation=d, bias=True) for d in dilations
        )
        for m in self.conv2d_list:
            m.weight.data.normal_(0, 0.01)  # reference init; biases keep torch's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


class ResidualConvUnit(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3, plus residual (``relu(x)`` under the quirk)."""

    def __init__(self, channels: int, inplace_relu_quirk: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=True)
        self.inplace_relu_quirk = inplace_relu_quirk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rx = F.relu(x)
        out = self.conv2(F.relu(self.conv1(rx)))
        return out + (rx if self.inplace_relu_quirk else x)


class FeatureFusionBlock(nn.Module):
    """``out = RCU2(prev + RCU1(skip))`` (or ``RCU2(prev)``), then bilinear x2, align_corners=True."""

    def __init__(self, channels: int, inplace_relu_quirk: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels, inplace_relu_quirk)
        self.resConfUnit2 = ResidualConvUnit(channels, inplace_relu_quirk)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        if len(xs) == 2:
            out = out + self.resConfUnit1(xs[1])
        out = self.resConfUnit2(out)
        return F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)  # [B, C, h, w] -> [B, C, 2h, 2w]


class Decoder(nn.Module):
    """Fusion decoder (``path4..path1``) and head; 4 maps (strides 4..32) -> logits at stride 1."""

    def __init__(self, channel: int = 256, inplace_relu_quirk: bool = True,
                 head_channels: tuple[int, int] = (128, 32), num_classes: int = 1):
        super().__init__()
        h1, h2 = head_channels  # reference: 128, 32 (narrower for the CPU demo: the head runs at S/2 and S)
        self.inplace_relu_quirk = inplace_relu_quirk
        self.path4 = FeatureFusionBlock(channel, inplace_relu_quirk)
        self.path3 = FeatureFusionBlock(channel, inplace_relu_quirk)
        self.path2 = FeatureFusionBlock(channel, inplace_relu_quirk)
        self.path1 = FeatureFusionBlock(channel, inplace_relu_quirk)
        self.output_conv = nn.Sequential(
            nn.Conv2d(channel, h1, kernel_size=3, stride=1, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(h1, h2, kernel_size=3, stride=1, padding=1),
            nn.ReLU(True),
            nn.Conv2d(h2, num_classes, kernel_size=1, stride=1, padding=0),  # AVSS: 71 classes
        )

    def forward(self, maps: list[torch.Tensor], gate: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``maps``: [B*T, C, S/4..S/32]. Returns (logits [B*T,K,S,S], maps as the reference returns them).

        ``gate`` [B*T,1,1,1] (AVSS frame-valid flag) multiplies every fusion output and the logits,
        as the official AVSS model does, so padded steps give exactly zero logits."""
        g = (lambda x: x) if gate is None else (lambda x: x * gate)
        if self.inplace_relu_quirk:
            # The reference's in-place ReLU overwrites each map before its other uses.
            maps = [F.relu(m) for m in maps]
        d4 = g(self.path4(maps[3]))  # [B*T, C, S/32] -> [B*T, C, S/16]
        d3 = g(self.path3(d4, maps[2]))  # -> [B*T, C, S/8]
        d2 = g(self.path2(d3, maps[1]))  # -> [B*T, C, S/4]
        d1 = g(self.path1(d2, maps[0]))  # -> [B*T, C, S/2]
        return g(self.output_conv(d1)), maps  # [B*T, C, S/2] -> [B*T, K, S, S]
