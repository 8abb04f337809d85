"""Wide ResNet (Zagoruyko & Komodakis 2016), WRN-28-10 in L2RW's and MW-Net's noisy-label
experiments: a 3x3 conv (16), three stages of (depth - 4) / 6 pre-activation blocks with
16k / 32k / 64k filters (strides 1, 2, 2), dropout 0.3 between a block's two convs, BN -
ReLU - global average pooling - linear. A 1x1 conv shortcut where the shape changes.

``depth`` and ``widen_factor`` are arguments so that tests can build a tiny one
(``build_network('wrn10_1', ...)``). Input ``[B, C, H, W]``, output ``[B, num_classes]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WideBlock(nn.Module):
    """BN - ReLU - conv3x3 - BN - ReLU - dropout - conv3x3, plus the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # the projection reads the pre-activated input, as in the WRN reference code
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 28,
                 widen_factor: int = 10, dropout: float = 0.3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), "
                             f"got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, in_planes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(in_planes, planes, stride if b == 0 else 1, dropout))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.stages(self.conv(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
