"""Shared fixtures: small in-memory splits and stores made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taml.data.store import make_split, save_split

torch.set_num_threads(2)


def colour_split(n_classes: int, per_class: int, size: int = 32, seed: int = 0,
                 sizes: list[int] | None = None):
    """A split whose classes differ by mean colour (learnable), with noise."""
    rng = np.random.default_rng(seed)
    counts = sizes if sizes is not None else [per_class] * n_classes
    labels = np.repeat(np.arange(n_classes), counts)
    base = rng.integers(30, 226, (n_classes, 1, 1, 3))
    noise = rng.normal(0, 40, (len(labels), size, size, 3))
    images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
    return make_split(images, labels, [f"class_{i:02d}" for i in range(n_classes)])


@pytest.fixture
def float64_default():
    """torch's default dtype float64 for the test, restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def small_split():
    return colour_split(12, 30)


@pytest.fixture
def data_root(tmp_path):
    """A data root with tiny 'cifar' (train/valid/test) and 'svhn' (valid/test) stores."""
    root = tmp_path / "data"
    for split, n_classes, seed in (("train", 10, 1), ("valid", 6, 2), ("test", 6, 3)):
        save_split(root / "cifar", split, colour_split(n_classes, 30, seed=seed))
    for split, seed in (("valid", 4), ("test", 5)):
        save_split(root / "svhn", split, colour_split(6, 30, seed=seed))
    return root
