"""Small stand-ins for the biased-data tests: a long-tailed, learnable image set shaped like
taml.data.recipes.BiasedData, and a method with a meta-learned state of its own (class
weights moved by the meta batch, synced over ranks) that follows the Method protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FakeSet:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray
    true_labels: np.ndarray


@dataclass(frozen=True)
class FakeData:
    train: FakeSet
    meta: FakeSet
    test: FakeSet
    class_names: tuple[str, ...]
    manifest: dict
    val: FakeSet | None = None  # BiasedData's --val_per_class split

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[-1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[1]


def _images(labels, rng, size):
    base = np.linspace(40, 215, 3)[labels][:, None, None, None]
    noise = rng.normal(0, 50, (len(labels), size, size, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def fake_data(counts=(60, 20, 8), meta_per_class=4, test_per_class=10, size=16, seed=0,
              noise=0.0) -> FakeData:
    rng = np.random.default_rng(seed)
    c = len(counts)
    train_y = np.repeat(np.arange(c), counts)
    noisy_y = train_y.copy()
    flip = rng.random(len(train_y)) < noise
    noisy_y[flip] = (train_y[flip] + 1) % c
    meta_y = np.repeat(np.arange(c), meta_per_class)
    test_y = np.repeat(np.arange(c), test_per_class)
    return FakeData(FakeSet(_images(train_y, rng, size), noisy_y, train_y),
                    FakeSet(_images(meta_y, rng, size), meta_y, meta_y),
                    FakeSet(_images(test_y, rng, size), test_y, test_y),
                    tuple(f"c{i}" for i in range(c)), {"counts": list(counts)})


@dataclass
class FakeOutput:
    loss: torch.Tensor
    logits: torch.Tensor
    example_weights: torch.Tensor


class FakeMethod:
    """Class-weighted CE whose weights move towards the classes the meta batch gets wrong
    (a meta-gradient stand-in, averaged over ranks through ``sync``)."""

    name = "fake"
    needs_meta_batch = True

    def __init__(self, num_classes: int, poison_at: int | None = None):
        self.weights = torch.full((num_classes,), 1.0 / num_classes)
        self.poison_at = poison_at

    def step(self, model, x, y, meta_x, meta_y, lr, step_index, sync):
        with torch.no_grad():
            meta_losses = F.cross_entropy(model(meta_x), meta_y, reduction="none")
            per_class = torch.zeros_like(self.weights).index_add_(0, meta_y, meta_losses)
            update = [per_class / len(meta_y)]
            sync(update)
            self.weights = torch.softmax(self.weights.log() + 0.1 * update[0], 0)
        logits = model(x)
        # a mean over the batch (not normalised by the batch's weight sum), so that ranks'
        # averaged gradients are the global batch's
        weights = self.weights[y] * len(self.weights) / len(y)
        loss = (weights * F.cross_entropy(logits, y, reduction="none")).sum()
        if self.poison_at is not None and step_index >= self.poison_at:
            loss = loss * float("nan")
        return FakeOutput(loss, logits.detach(), weights.detach())

    def state_dict(self) -> dict:
        return {"weights": self.weights.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state["weights"].clone()

    def summary(self) -> dict:
        return {"class_weights": self.weights.tolist()}
