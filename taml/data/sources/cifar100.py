"""CIFAR-100 (Krizhevsky 2009), the full dataset with its 100 fine labels (not CIFAR-FS's
64/16/20 class split): ``train`` (50,000) and ``test`` (10,000), 32x32 RGB.

Source: ``cifar-100-python.tar.gz`` from the authors' site, verified with torchvision's md5;
parsed by torchvision's ``CIFAR100`` (see :mod:`taml.data.sources.cifar10`).
"""

from __future__ import annotations

from pathlib import Path

from taml.data.sources.cifar10 import prepare_cifar

NAME = "cifar100"


def prepare(data_root: Path, force: bool = False) -> Path:
    from torchvision.datasets import CIFAR100

    return prepare_cifar(NAME, CIFAR100, data_root, force)
