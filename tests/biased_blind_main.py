"""``main.py`` for the biased family with a network blind to its input by construction
(the chance-stop tests): its logits are zero for every image whatever the weights, so a run
sits at chance on any CPU, with no trajectory that has to diverge first."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taml.biased import build as parts  # noqa: E402
from taml.biased import cli  # noqa: E402


class BlindNet(nn.Module):
    """Zero logits for every image: the loss is ln C exactly and flat, every prediction the
    same (balanced accuracy 1/C), the outputs' spread 0. It has a weight, so that the
    optimiser and the checkpoint have something to hold, and its gradient is 0."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.num_classes) + 0 * self.weight


if __name__ == "__main__":
    parts.make_network = lambda name, num_classes, in_channels, image_size: BlindNet(num_classes)
    sys.exit(cli.main(sys.argv[1:]))
