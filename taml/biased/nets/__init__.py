"""The networks of the biased-data experiments, each written once as a plain ``nn.Module``
(``torch.func.functional_call`` runs them with any parameter dict).

==============  ===============================================  =====================
name            network                                          used by
==============  ===============================================  =====================
``lenet_tml``   TML's LeNet (conv 6, 16; FC 120, 84)             TML, MNIST 2-vs-3
``lenet_l2rw``  L2RW's MNIST LeNet (conv 16, 32, 64; FC 100)     L2RW, MNIST 4-vs-9
``resnet32``    CIFAR ResNet-32 (3 x 5 basic blocks, 16/32/64)   L2RW, MW-Net
``wrn28_10``    WRN-28-10, dropout 0.3                           L2RW, MW-Net (noise)
``resnet{6n+2}``, ``wrn{depth}_{k}``: other depths / widths (e.g. ``wrn10_1`` in tests)
==============  ===============================================  =====================
"""

from __future__ import annotations

import re

from torch import nn

from taml.biased.nets.lenet import LeNetL2RW, LeNetTML
from taml.biased.nets.resnet import CifarResNet
from taml.biased.nets.wrn import WideResNet

NETWORKS = ("lenet_tml", "lenet_l2rw", "resnet32", "wrn28_10")


def build_network(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The network ``name`` for ``[B, in_channels, image_size, image_size]`` inputs,
    returning ``[B, num_classes]`` logits. Raises ValueError naming the valid choices."""
    if name == "lenet_tml":
        return LeNetTML(num_classes, in_channels, image_size)
    if name == "lenet_l2rw":
        return LeNetL2RW(num_classes, in_channels, image_size)
    resnet = re.fullmatch(r"resnet(\d+)", name)
    if resnet and (int(resnet[1]) - 2) % 6 == 0 and int(resnet[1]) >= 8:
        return CifarResNet(num_classes, in_channels, (int(resnet[1]) - 2) // 6)
    wrn = re.fullmatch(r"wrn(\d+)_(\d+)", name)
    if wrn:
        return WideResNet(num_classes, in_channels, int(wrn[1]), int(wrn[2]))
    raise ValueError(f"unknown network {name!r}: choose one of {', '.join(NETWORKS)} "
                     f"(or resnet<6n+2>, wrn<depth>_<width>)")
