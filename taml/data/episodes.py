"""Imbalanced few-shot episodes, with the original's semantics and explicit padding masks.

One task: ``way`` classes drawn without replacement; each class gets a shot in
``1..max_shot`` (per class, per task, or a coin flip between the two, see
:data:`SAMPLER_MODES`), clipped to ``class size - query`` for small classes; ``query``
query images per class (balanced). The tasks of one meta-batch have different support
sizes, so supports are padded to the largest one, and ``support_mask`` says which rows
are real. Padding rows hold zero images and label -1: never valid data.

Deviations from the original's ``data.py`` (on purpose): an explicit
``numpy.random.Generator`` instead of global state; a mask instead of zero label rows, so
that the learners can exclude padding from batch-norm statistics and the loss normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from taml.data.registry import DatasetError
from taml.data.store import SplitData

SAMPLER_MODES = ("both", "class", "task")
PAD_LABEL = -1


@dataclass(frozen=True)
class EpisodeBatch:
    """A meta-batch of T tasks. Images stay uint8 (NHWC) until the learner converts them.

    - ``support_images``: uint8 ``[T, N_max, H, W, 3]`` (zero on padding rows)
    - ``support_labels``: int64 ``[T, N_max]`` in ``0..way-1``, ``-1`` on padding rows
    - ``support_mask``: bool ``[T, N_max]``, True on real rows
    - ``query_images``: uint8 ``[T, way*query, H, W, 3]``
    - ``query_labels``: int64 ``[T, way*query]``
    - ``class_counts``: int64 ``[T, way]``, support images per class (the shots)
    """

    support_images: torch.Tensor
    support_labels: torch.Tensor
    support_mask: torch.Tensor
    query_images: torch.Tensor
    query_labels: torch.Tensor
    class_counts: torch.Tensor

    @property
    def n_tasks(self) -> int:
        return int(self.support_labels.shape[0])

    @property
    def way(self) -> int:
        return int(self.class_counts.shape[1])

    @property
    def support_sizes(self) -> torch.Tensor:
        """int64 ``[T]``: N, the real support rows of each task."""
        return self.class_counts.sum(dim=1)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EpisodeBatch:
        return EpisodeBatch(**{
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
        })

    def task(self, index: int) -> EpisodeBatch:
        """Task ``index`` alone, its padding cut off (a meta-batch of one)."""
        n = int(self.support_sizes[index])
        return EpisodeBatch(
            support_images=self.support_images[index : index + 1, :n],
            support_labels=self.support_labels[index : index + 1, :n],
            support_mask=self.support_mask[index : index + 1, :n],
            query_images=self.query_images[index : index + 1],
            query_labels=self.query_labels[index : index + 1],
            class_counts=self.class_counts[index : index + 1],
        )

    def select(self, indices: slice) -> EpisodeBatch:
        """A sub-batch of tasks (padding kept as is)."""
        return EpisodeBatch(**{f.name: getattr(self, f.name)[indices] for f in fields(self)})


class EpisodeSampler:
    """Draws imbalanced episodes from one split held in memory.

    ``dataset_name`` and ``split_name`` only make error messages precise.
    """

    def __init__(
        self,
        data: SplitData,
        way: int,
        max_shot: int,
        query: int,
        mode: str = "both",
        dataset_name: str = "dataset",
        split_name: str = "split",
    ):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"sampler mode must be one of {SAMPLER_MODES}, got {mode!r}")
        where = f"{dataset_name} ({split_name} split)"
        if way > data.n_classes:
            raise DatasetError(
                f"--way {way} is larger than the {data.n_classes} classes of {where}; "
                f"use --way {data.n_classes} or less"
            )
        sizes = data.class_sizes
        too_small = np.flatnonzero(sizes < query + 1)
        if len(too_small):
            c = int(too_small[0])
            raise DatasetError(
                f"class '{data.class_names[c]}' of {where} has {sizes[c]} images, fewer than "
                f"--query {query} plus one support image; lower --query to {sizes[c] - 1} "
                "or remove the class"
            )
        self.images = data.images
        self.class_sizes = sizes
        self.class_offsets = data.class_offsets[:-1]
        self.way, self.max_shot, self.query, self.mode = way, max_shot, query, mode

    def _draw_shots(self, n_tasks: int, rng: np.random.Generator) -> np.ndarray:
        per_class = rng.integers(1, self.max_shot + 1, size=(n_tasks, self.way))
        per_task = np.repeat(rng.integers(1, self.max_shot + 1, size=(n_tasks, 1)), self.way, 1)
        if self.mode == "class":
            return per_class
        if self.mode == "task":
            return per_task
        # the original's mode 1: a fair coin per task between the two kinds of imbalance
        class_imbalanced = rng.random(n_tasks) > 0.5
        return np.where(class_imbalanced[:, None], per_class, per_task)

    def sample(self, n_tasks: int, rng: np.random.Generator) -> EpisodeBatch:
        n_classes = len(self.class_sizes)
        # `way` distinct classes per task: the first `way` of a random permutation
        classes = np.argsort(rng.random((n_tasks, n_classes)), axis=1)[:, : self.way]
        shots = self._draw_shots(n_tasks, rng)
        sizes = self.class_sizes[classes]
        shots = np.minimum(shots, sizes - self.query)  # the original's clip for small classes

        support_sizes = shots.sum(axis=1)
        n_max = int(support_sizes.max())
        n_query = self.way * self.query
        support_index = np.zeros((n_tasks, n_max), dtype=np.int64)
        support_labels = np.full((n_tasks, n_max), PAD_LABEL, dtype=np.int64)
        query_index = np.empty((n_tasks, n_query), dtype=np.int64)
        for t in range(n_tasks):
            row = 0
            for i in range(self.way):
                c, shot = classes[t, i], shots[t, i]
                picked = self.class_offsets[c] + rng.choice(
                    sizes[t, i], size=shot + self.query, replace=False
                )
                support_index[t, row : row + shot] = picked[:shot]
                support_labels[t, row : row + shot] = i
                query_index[t, i * self.query : (i + 1) * self.query] = picked[shot:]
                row += shot
        support_mask = support_labels != PAD_LABEL
        support_images = self.images[support_index]
        support_images[~support_mask] = 0
        query_labels = np.repeat(np.arange(self.way), self.query)[None].repeat(n_tasks, 0)
        return EpisodeBatch(
            support_images=torch.from_numpy(support_images),
            support_labels=torch.from_numpy(support_labels),
            support_mask=torch.from_numpy(support_mask),
            query_images=torch.from_numpy(self.images[query_index]),
            query_labels=torch.from_numpy(query_labels),
            class_counts=torch.from_numpy(shots.astype(np.int64)),
        )
