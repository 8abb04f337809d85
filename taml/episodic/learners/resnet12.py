"""ResNet-12, the backbone of few-shot learning since 2018 (TADAM, Oreshkin et al. 2018;
MetaOptNet, Lee et al. 2019), as a plain ``nn.Module`` for the episodic learners.

Four residual blocks, 64-160-320-640 channels. Each block:

    x -> conv 3x3 -> BN -> leaky ReLU(0.1) -> conv 3x3 -> BN -> leaky ReLU(0.1)
      -> conv 3x3 -> BN, plus the shortcut conv 1x1 -> BN of x; the sum -> leaky ReLU(0.1)
      -> 2x2 max pool

Convolutions have no bias (batch norm follows each). The features are the last block's
output flattened, as MetaOptNet's (5·5·640 = 16000 on 84-pixel inputs, 2·2·640 = 2560 on 32);
the learner adds the zero-initialised classifier. Without DropBlock: the meta-learners' inner
loop adapts every layer, and a random mask inside it would make the support loss random.

Inside the learners every batch norm runs on the batch's real rows, with its scale and shift
meta-learned and never adapted (:mod:`taml.episodic.learners.backbone`); 16 adapted layers
(4 x 3 convolutions and 4 shortcuts), so γ has 17 values, and z 4 x 1184 = 4736 per-channel
kernel scales (no conv has a bias to shift): ``ModuleBackbone(ResNet12()).z_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taml.run import validate

CHANNELS = (64, 160, 320, 640)  # MetaOptNet's and TADAM's widths
LEAK = 0.1  # MetaOptNet's leaky ReLU slope


def _conv(in_channels: int, out_channels: int, size: int,
          generator: torch.Generator) -> nn.Conv2d:
    """A bias-free conv, He-initialised (fan-out, leaky ReLU) from ``generator``; built
    without its default initialisation, which would read torch's global generator."""
    conv = torch.nn.utils.skip_init(nn.Conv2d, in_channels, out_channels, size,
                                    padding=size // 2, bias=False)
    std = nn.init.calculate_gain("leaky_relu", LEAK) / (out_channels * size * size) ** 0.5
    with torch.no_grad():
        conv.weight.normal_(0.0, std, generator=generator)
    return conv


class ResidualBlock(nn.Module):
    """Three 3x3 conv + BN, a 1x1 conv + BN shortcut, leaky ReLU, 2x2 max pool."""

    def __init__(self, in_channels: int, out_channels: int, generator: torch.Generator):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, generator)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3, generator)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv3 = _conv(out_channels, out_channels, 3, generator)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _conv(in_channels, out_channels, 1, generator)
        self.bn_shortcut = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), LEAK)
        out = F.leaky_relu(self.bn2(self.conv2(out)), LEAK)
        out = self.bn3(self.conv3(out))
        out = F.leaky_relu(out + self.bn_shortcut(self.shortcut(x)), LEAK)
        return F.max_pool2d(out, 2)


class ResNet12(nn.Module):
    """Inputs ``[N, in_channels, H, W]`` -> flattened features ``[N, D]``.

    ``channels``: the four blocks' widths (MetaOptNet's by default; a small tuple for tests).
    ``generator``: draws every kernel (seed 0 when None).
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = CHANNELS,
                 generator: torch.Generator | None = None):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"ResNet-12 has 4 blocks: give 4 channel widths, got {channels}")
        for name, value in (("in_channels", in_channels), *(("channels", c) for c in channels)):
            validate.check_count(name, value, 1)  # a zero width failed inside torch's init
        generator = generator or torch.Generator().manual_seed(0)
        widths = (in_channels, *channels)
        self.blocks = nn.Sequential(*(ResidualBlock(widths[i], widths[i + 1], generator)
                                      for i in range(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)
