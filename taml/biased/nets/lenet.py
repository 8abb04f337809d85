"""The two small MNIST networks of the binary-imbalance experiments.

Both take float images ``[B, C, H, W]`` (scaling them is the data pipeline's job: TML's code
feeds ``x / 128 - 1``) and return logits ``[B, num_classes]``; the flattened feature size
is computed from ``image_size``, so 28x28x1 and 32x32x3 both work.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNetTML(nn.Module):
    """TML's ``BilevelLenet`` (Kamani et al., KDD 2020, ``model.py``): conv 6@5x5, ReLU,
    max-pool 2; conv 16@5x5, ReLU, max-pool 2; FC 120, ReLU; FC 84, ReLU; FC C.
    'VALID' convolutions: 28 -> 24 -> 12 -> 8 -> 4 (16 * 4 * 4 = 256 features)."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet_tml needs images of at least 12x12, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNetL2RW(nn.Module):
    """L2RW's MNIST LeNet (Ren et al., ICML 2018, ``mnist/reweight.py``): three blocks of
    conv 5x5 ('SAME'; 16, 32, 64 filters) -> max-pool 3x3 stride 2 ('SAME') -> ReLU, then
    FC 100, ReLU, FC.

    The original ends in one sigmoid unit (its task is binary); here the last layer has
    ``num_classes`` outputs for softmax cross-entropy, which for C = 2 is the same model
    family. The original's truncated-normal (std 0.1) initialisation is kept.
    28 -> 14 -> 7 -> 4 (64 * 4 * 4 = 1024 features, as the original); 32 -> 16 -> 8 -> 4.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        layers, channels, side = [], in_channels, image_size
        for width in (16, 32, 64):
            layers += [nn.Conv2d(channels, width, 5, padding=2),
                       nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU()]
            channels, side = width, (side - 1) // 2 + 1
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(64 * side * side, 100), nn.ReLU(),
                                        nn.Linear(100, num_classes))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.1, a=-0.2, b=0.2)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
