"""The imbalanced episode sampler: the original's semantics, masks, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from taml.data.episodes import PAD_LABEL, EpisodeSampler
from taml.data.registry import DatasetError

from .conftest import colour_split

WAY, MAX_SHOT, QUERY = 5, 10, 4


def draw(sampler, n_batches=300, n_tasks=4, seed=0):
    rng = np.random.default_rng(seed)
    return [sampler.sample(n_tasks, rng) for _ in range(n_batches)]


def test_same_seed_same_episodes_and_different_seed_different(small_split):
    sampler = EpisodeSampler(small_split, WAY, MAX_SHOT, QUERY)
    a, b = draw(sampler, 3, seed=7), draw(sampler, 3, seed=7)
    c = draw(sampler, 3, seed=8)
    for x, y in zip(a, b, strict=True):
        assert (x.support_images == y.support_images).all()
        assert (x.class_counts == y.class_counts).all()
    assert any((x.class_counts != y.class_counts).any() for x, y in zip(a, c, strict=True))


def test_shapes_masks_and_padding(small_split):
    for batch in draw(EpisodeSampler(small_split, WAY, MAX_SHOT, QUERY), 50):
        t, n_max = batch.support_labels.shape
        assert batch.support_images.shape == (t, n_max, 32, 32, 3)
        assert batch.query_images.shape == (t, WAY * QUERY, 32, 32, 3)
        sizes = batch.class_counts.sum(1)
        assert n_max == int(sizes.max())
        assert (batch.support_mask.sum(1) == sizes).all()
        # padding: zero images, label -1, and only at the end of each task
        pad = ~batch.support_mask
        assert (batch.support_labels[pad] == PAD_LABEL).all()
        assert (batch.support_images[pad] == 0).all()
        assert (batch.support_labels[batch.support_mask] >= 0).all()
        for row, n in zip(batch.support_mask, sizes.tolist(), strict=True):
            assert row[:n].all() and not row[n:].any()
        # class counts agree with the labels
        for task in range(t):
            labels = batch.support_labels[task][batch.support_mask[task]].numpy()
            np.testing.assert_array_equal(np.bincount(labels, minlength=WAY),
                                          batch.class_counts[task].numpy())


def test_query_is_balanced(small_split):
    for batch in draw(EpisodeSampler(small_split, WAY, MAX_SHOT, QUERY), 20):
        for labels in batch.query_labels.numpy():
            assert np.bincount(labels, minlength=WAY).tolist() == [QUERY] * WAY


def test_no_class_repeated_and_support_query_disjoint(small_split):
    # every image in small_split is distinct noise, so equal pixels mean the same image
    split = small_split
    sampler = EpisodeSampler(split, WAY, MAX_SHOT, QUERY)
    flat = split.images.reshape(len(split.images), -1)
    index_of = {flat[i].tobytes(): i for i in range(len(flat))}
    for batch in draw(sampler, 30):
        for t in range(batch.n_tasks):
            support = batch.support_images[t][batch.support_mask[t]].numpy()
            rows_s = [index_of[x.reshape(-1).tobytes()] for x in support]
            rows_q = [index_of[x.reshape(-1).tobytes()] for x in batch.query_images[t].numpy()]
            assert not set(rows_s) & set(rows_q)
            assert len(set(rows_s)) == len(rows_s)
            classes = {int(split.labels[r]) for r in rows_q}
            assert len(classes) == WAY  # WAY distinct classes, none repeated


def test_shot_distribution_per_mode(small_split):
    stats = {}
    for mode in ("both", "class", "task"):
        batches = draw(EpisodeSampler(small_split, WAY, MAX_SHOT, QUERY, mode), 250)
        counts = np.concatenate([b.class_counts.numpy() for b in batches])
        equal = (counts == counts[:, :1]).all(1)
        stats[mode] = (counts, equal.mean())
        assert counts.min() >= 1 and counts.max() <= MAX_SHOT
        # shots uniform on 1..max_shot: each value about 1/10 of the draws
        freq = np.bincount(counts.ravel(), minlength=MAX_SHOT + 1)[1:] / counts.size
        assert np.allclose(freq, 1 / MAX_SHOT, atol=0.03), (mode, freq)
    assert stats["task"][1] == 1.0  # task imbalance only: one shot per task
    assert stats["class"][1] < 0.01  # class imbalance: equal shots only by chance (1e-4)
    assert 0.4 < stats["both"][1] < 0.6  # a fair coin between the two


def test_small_class_shot_is_clipped_to_size_minus_query():
    split = colour_split(6, 30, sizes=[30, 30, 30, 30, 30, 7])
    sampler = EpisodeSampler(split, 6, 20, 4, "task")
    counts = np.concatenate([b.class_counts.numpy() for b in draw(sampler, 100, 2)])
    assert counts.min() >= 1 and (counts <= 20).all()
    # way = 6 of 6 classes: the 7-image class is in every task, with at most 7 - 4 shots,
    # while the shot drawn for the task (mode 'task') is often larger
    assert (np.sort(counts, axis=1)[:, 0] <= 3).all()
    assert (np.sort(counts, axis=1)[:, 1] > 3).mean() > 0.5


def test_way_larger_than_classes_names_the_flag(small_split):
    with pytest.raises(DatasetError, match="--way 20 is larger than the 12 classes.*--way 12"):
        EpisodeSampler(small_split, 20, MAX_SHOT, QUERY, dataset_name="cifar")


def test_class_smaller_than_query_names_the_class():
    split = colour_split(5, 30, sizes=[30, 30, 30, 30, 3])
    with pytest.raises(DatasetError, match="class 'class_04'.*3 images.*--query"):
        EpisodeSampler(split, 5, MAX_SHOT, 15)


def test_single_task_view_cuts_padding(small_split):
    batch = EpisodeSampler(small_split, WAY, MAX_SHOT, QUERY).sample(4, np.random.default_rng(1))
    for t in range(4):
        one = batch.task(t)
        n = int(batch.class_counts[t].sum())
        assert one.support_labels.shape == (1, n) and one.support_mask.all()
