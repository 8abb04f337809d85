"""ResNet-32 for CIFAR (He et al. 2016, section 4.2), the network of L2RW's and MW-Net's
CIFAR experiments: a 3x3 conv (16), then 3 stages x 5 basic blocks with 16 / 32 / 64
filters (strides 1, 2, 2), global average pooling and a linear classifier; 6n + 2 = 32
layers with n = 5.

Shortcuts that change shape are parameter-free (option A of the paper: stride-2
subsampling and zero-padded channels), as MW-Net's ``resnet.py``; convolutions and the
classifier get Kaiming-normal initialisation, as there. Input ``[B, C, H, W]`` (32x32x3 or
28x28x1: the pooling is global), output ``[B, num_classes]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes  # zero channels the shortcut adds (option A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = x[:, :, ::self.stride, ::self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2); ``blocks_per_stage`` = n (5 gives ResNet-32)."""

    def __init__(self, num_classes: int, in_channels: int = 3, blocks_per_stage: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn(self.conv(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
