"""Training and meta batches of a biased-data run: images on the device, the order they
come in, the augmentation, and the shard each torchrun rank takes.

Every random choice comes from an explicit generator whose state the checkpoint keeps:
the data order from numpy Generators (one for the training set, one for the meta set), the
crop offsets and flips from a CPU ``torch.Generator``. They are drawn for the *global* batch
on every rank (same seed, same draws) and each rank keeps its contiguous shard, so K ranks
see exactly the examples and augmentations of one process with the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from taml.run.seeds import Stream, numpy_stream, torch_stream

PAD = 4  # MW-Net's / TML's CIFAR augmentation: pad 4, random 32x32 crop, horizontal flip


@dataclass(frozen=True)
class SplitTensors:
    """One split on the device: ``images`` uint8 [N, C, H, W], ``labels`` (what training
    sees) and ``true_labels`` (clean) int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor

    @classmethod
    def from_imageset(cls, split, device: torch.device) -> SplitTensors:
        """``split``: an ImageSet (uint8 [N, H, W, C] images, int64 labels)."""
        images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2)
        return cls(images.contiguous().to(device),
                   torch.as_tensor(split.labels, dtype=torch.int64).to(device),
                   torch.as_tensor(split.true_labels, dtype=torch.int64).to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Normalise:
    """Per-channel standardisation by the training set's mean and std (uint8 -> float)."""

    mean: torch.Tensor  # [1, C, 1, 1]
    std: torch.Tensor  # [1, C, 1, 1]

    @classmethod
    def of(cls, images: torch.Tensor) -> Normalise:
        """``images``: uint8 [N, C, H, W]; moments in float64, in chunks (CIFAR fits)."""
        total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
        squares = torch.zeros_like(total)
        for chunk in images.split(4096):
            values = chunk.to(torch.float64) / 255
            total += values.sum((0, 2, 3))
            squares += (values ** 2).sum((0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count
        std = (squares / count - mean ** 2).clamp_min(1e-12).sqrt().clamp_min(1e-3)
        return cls(mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std


class IndexStream:
    """Indices 0..n-1 in a fresh random order per pass; a batch that would run past the end
    of a pass starts the next one (the remainder is dropped, as the papers' epochs of
    n // batch steps do)."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self.order = rng.permutation(n)
        self.position = 0

    def take(self, k: int) -> np.ndarray:
        if self.position + k > self.n:
            self.order = self.rng.permutation(self.n)
            self.position = 0
        out = self.order[self.position:self.position + k]
        self.position += k
        return out

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order.copy(),
                "position": self.position}

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"])
        self.position = int(state["position"])


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Reflect-pad ``x`` [B, C, H, W] by PAD, crop H x W at ``offsets`` [B, 2] (row, col in
    0..2*PAD) and mirror the rows where ``flips`` [B] is true."""
    b, c, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    offsets = offsets.to(x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [B, W]
    out = padded[torch.arange(b, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return torch.where(flips.to(x.device)[:, None, None, None], out.flip(-1), out)


class BatchSource:
    """The run's batches. ``rank``/``world_size``: this process's shard of each global batch.

    ``train_batch(B)`` -> (x float [B/W, C, H, W], y int64 [B/W], indices int64 [B/W] into
    the training set); ``meta_batch(M)`` -> (x [M'/W, ...], y) with M' = min(M, meta size)."""

    def __init__(self, train: SplitTensors, meta: SplitTensors, normalise: Normalise,
                 augment: str, seed: int, rank: int = 0, world_size: int = 1):
        self.train, self.meta, self.normalise = train, meta, normalise
        self.augment = augment
        self.rank, self.world_size = rank, world_size
        self.train_order = IndexStream(len(train), numpy_stream(seed, Stream.TRAIN_ORDER))
        self.meta_order = IndexStream(len(meta), numpy_stream(seed, Stream.META_ORDER))
        self.augmentation = torch_stream(seed, Stream.AUGMENTATION)

    def _shard(self, values):
        per_rank = len(values) // self.world_size
        return values[self.rank * per_rank:(self.rank + 1) * per_rank]

    def _augment(self, x: torch.Tensor, n_global: int) -> torch.Tensor:
        if self.augment == "none":
            return x
        offsets = torch.randint(0, 2 * PAD + 1, (n_global, 2), generator=self.augmentation)
        flips = torch.rand(n_global, generator=self.augmentation) < 0.5
        return crop_flip(x, self._shard(offsets), self._shard(flips))

    def train_batch(self, batch_size: int):
        indices = torch.as_tensor(self._shard(self.train_order.take(batch_size)),
                                  device=self.train.labels.device)
        x = self._augment(self.normalise(self.train.images[indices]), batch_size)
        return x, self.train.labels[indices], indices

    def meta_batch(self, batch_size: int):
        k = min(batch_size, len(self.meta))
        indices = torch.as_tensor(self._shard(self.meta_order.take(k)),
                                  device=self.meta.labels.device)
        return self.normalise(self.meta.images[indices]), self.meta.labels[indices]

    def state(self) -> dict:
        return {"train_order": self.train_order.state(), "meta_order": self.meta_order.state(),
                "augmentation": self.augmentation.get_state()}

    def restore(self, state: dict) -> None:
        self.train_order.restore(state["train_order"])
        self.meta_order.restore(state["meta_order"])
        self.augmentation.set_state(state["augmentation"])
