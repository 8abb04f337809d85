"""The paper's imbalanced episodes from the user's own data, padded with their mask.

:class:`EpisodeBuilder` turns a labelled tensor ``(x, y)``, or any map-style dataset whose
items are ``(input, label)``, into meta-batches of imbalanced tasks, drawn by the command
line's own sampler (:class:`taml.data.episodes.EpisodeSampler`: ``way`` classes per task,
shots in ``1..max_shot`` per class, per task or a coin flip between the two, ``query``
queries per class). The sampler draws *row indices* (it is given the index of each row in
place of an image), so the draws are the command line's for the same generator, and the
user's inputs are only gathered. :func:`collate_tasks` pads a list of ragged tasks the same
way (a ``DataLoader``'s ``collate_fn`` too).

What comes back is a :class:`TaskBatch`, whose five fields are the learners' first five
arguments: ``learner.meta_objective(*batch)``. Forgetting the mask is what the padding
costs otherwise: a zero padding row is a class-0 shot in the support loss and batch norm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from taml.data.episodes import PAD_LABEL, SAMPLER_MODES, EpisodeSampler
from taml.data.store import SplitData


class TaskBatch(NamedTuple):
    """T tasks padded to the largest support set, in the learners' argument order.

    - ``support_x`` ``[T, N_max, ...]`` (zero on padding rows), ``support_y`` int64
      ``[T, N_max]`` in ``0..way-1`` (``-1`` on padding rows);
    - ``query_x`` ``[T, M, ...]``, ``query_y`` int64 ``[T, M]``;
    - ``support_mask`` bool ``[T, N_max]``: True on real rows, which come first.

    ``learner.meta_objective(*batch)``; ``learner.predict(batch.support_x, batch.support_y,
    batch.query_x, batch.support_mask)``."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    support_mask: torch.Tensor

    @property
    def class_counts(self) -> torch.Tensor:
        """int64 ``[T, way]``: the real support rows of each class (the shots)."""
        way = int(self.query_y.max()) + 1 if self.query_y.numel() else 0
        real = torch.where(self.support_mask, self.support_y, way)  # padding: one class more
        counts = torch.nn.functional.one_hot(real, way + 1).sum(1)
        return counts[:, :way]

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(*(t.to(device) for t in self))


def _numpy_generator(generator) -> np.random.Generator:
    """The sampler's generator: a numpy one as it is; a torch one gives it a seed (so a
    seeded ``torch.Generator`` gives the same episodes, and advances); None: fresh entropy."""
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
        return np.random.default_rng(int(seed))
    if generator is None:
        return np.random.default_rng()
    raise TypeError(f"generator must be a torch.Generator, a numpy.random.Generator or None, "
                    f"got {type(generator).__name__}; e.g. torch.Generator().manual_seed(0)")


def _labels_of(data, labels) -> np.ndarray:
    """The label of every row: ``labels`` as given, else a dataset's ``targets`` (torchvision's),
    else read item by item (``data[i][1]``: once, at construction)."""
    if labels is None:
        if isinstance(data, torch.Tensor):
            raise ValueError("EpisodeBuilder(x, y): a tensor of inputs needs its labels y [N]")
        labels = getattr(data, "targets", None)
        if labels is None:
            labels = [int(data[i][1]) for i in range(len(data))]
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) != len(data):
        raise ValueError(f"labels must be [N] = [{len(data)}], one per row, got shape "
                         f"{labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be whole class indices, got dtype {labels.dtype}")
    return labels.astype(np.int64)


class EpisodeBuilder:
    """Draws the paper's imbalanced ``way``-way episodes from ``data``.

    ``data``: a tensor ``[N, ...]`` of inputs with ``labels`` ``[N]``, or a map-style dataset
    (``len`` and ``data[i] -> (input tensor, label)``; labels read from ``labels``, its
    ``targets``, or item by item). ``classes``: the labels tasks draw from (default: all;
    e.g. meta-train on some, meta-test on the others). Each task takes ``way`` of them,
    relabelled ``0..way-1``; each class ``1..max_shot`` support rows (``mode``: ``"class"``
    per class, ``"task"`` one shot for all the task's classes, ``"both"`` a fair coin per
    task between the two: the paper's) and ``query`` query rows, never the same row twice
    in a task. A class with fewer than ``max_shot + query`` rows gets fewer shots (the
    original's clip), never fewer than one.
    """

    def __init__(self, data, labels=None, *, way: int, max_shot: int, query: int,
                 mode: str = "both", classes: Iterable[int] | None = None):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"mode must be one of {SAMPLER_MODES}, got {mode!r}")
        for name, value, least in (("way", way, 2), ("max_shot", max_shot, 1),
                                   ("query", query, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, "
                                 f"got {value!r}")
        all_labels = _labels_of(data, labels)
        chosen = np.unique(all_labels) if classes is None else np.unique(
            np.asarray(list(classes), dtype=np.int64))
        rows = np.flatnonzero(np.isin(all_labels, chosen))
        present = np.unique(all_labels[rows])
        if len(present) < len(chosen):
            missing = sorted(set(chosen.tolist()) - set(present.tolist()))
            raise ValueError(f"classes {missing} have no rows in the data")
        if way > len(chosen):
            raise ValueError(f"way {way} is more than the {len(chosen)} classes to draw from; "
                             f"use way={len(chosen)} or less, or more classes")
        dense = np.searchsorted(chosen, all_labels[rows])  # 0..C-1 in the order of `chosen`
        sizes = np.bincount(dense, minlength=len(chosen))
        if sizes.min() < query + 1:
            c = int(np.argmin(sizes))
            raise ValueError(f"class {int(chosen[c])} has {sizes[c]} rows, fewer than query "
                             f"{query} plus one support row; use query={sizes[c] - 1} or less")
        order = np.argsort(dense, kind="stable")
        # the sampler gathers "images" by row: give it the rows' indices into `data`
        index = SplitData(rows[order], dense[order], tuple(str(c) for c in chosen))
        self._sampler = EpisodeSampler(index, way, max_shot, query, mode)
        self.data, self.classes = data, tuple(int(c) for c in chosen)
        self.way, self.max_shot, self.query, self.mode = way, max_shot, query, mode

    def _gather(self, rows: np.ndarray) -> torch.Tensor:
        flat = rows.reshape(-1)
        if isinstance(self.data, torch.Tensor):
            picked = self.data[torch.from_numpy(flat).to(self.data.device)]
        else:
            picked = torch.stack([torch.as_tensor(self.data[int(i)][0]) for i in flat])
        return picked.reshape(*rows.shape, *picked.shape[1:])

    def sample(self, n_tasks: int, generator=None) -> TaskBatch:
        """``n_tasks`` tasks as one :class:`TaskBatch`, padded to the largest support set.
        ``generator``: ``torch.Generator`` or ``numpy.random.Generator`` (the same state
        gives the same tasks), None for fresh randomness."""
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a whole number of at least 1, got {n_tasks!r}")
        drawn = self._sampler.sample(n_tasks, _numpy_generator(generator))
        mask = drawn.support_mask
        support_x = self._gather(drawn.support_images.numpy())
        support_x[~mask.to(support_x.device)] = 0  # padding rows hold zeros, never a real row
        return TaskBatch(support_x, drawn.support_labels, self._gather(drawn.query_images.numpy()),
                         drawn.query_labels, mask)


def collate_tasks(tasks: Sequence[Sequence[torch.Tensor]]) -> TaskBatch:
    """Pads a list of ragged tasks ``(support_x [N_t, ...], support_y [N_t], query_x [M, ...],
    query_y [M])`` into one :class:`TaskBatch`: supports padded with zero rows after the real
    ones (label -1, mask False); every task must have the same number of queries M. Usable as
    a ``DataLoader``'s ``collate_fn`` over a dataset of tasks."""
    if len(tasks) == 0:
        raise ValueError("collate_tasks needs at least one task")
    for t, task in enumerate(tasks):
        if len(task) != 4:
            raise ValueError(f"task {t} must be (support_x, support_y, query_x, query_y), got "
                             f"{len(task)} items")
        sx, sy, qx, qy = task
        if sx.shape[0] < 1 or sy.shape != sx.shape[:1] or qy.shape != qx.shape[:1]:
            raise ValueError(f"task {t}: support_x [N, ...] with N >= 1 and support_y [N], "
                             f"query_x [M, ...] and query_y [M], got {tuple(sx.shape)}, "
                             f"{tuple(sy.shape)}, {tuple(qx.shape)}, {tuple(qy.shape)}")
    n_queries = {int(task[2].shape[0]) for task in tasks}
    if len(n_queries) > 1:
        raise ValueError(f"every task needs the same number of queries, got {sorted(n_queries)}")
    n_max = max(int(task[0].shape[0]) for task in tasks)
    first = tasks[0][0]
    support_x = first.new_zeros((len(tasks), n_max, *first.shape[1:]))
    support_y = torch.full((len(tasks), n_max), PAD_LABEL, dtype=torch.int64)
    mask = torch.zeros(len(tasks), n_max, dtype=torch.bool)
    for t, (sx, sy, _, _) in enumerate(tasks):
        n = sx.shape[0]
        support_x[t, :n], support_y[t, :n], mask[t, :n] = sx, sy, True
    return TaskBatch(support_x, support_y.to(tasks[0][1].device),
                     torch.stack([task[2] for task in tasks]),
                     torch.stack([task[3] for task in tasks]).to(torch.int64),
                     mask.to(tasks[0][1].device))
