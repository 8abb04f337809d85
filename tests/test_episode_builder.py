"""taml.EpisodeBuilder and taml.collate_tasks: the paper's imbalanced episodes from a user's
tensors or dataset, drawn by the command line's sampler, padded with their mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import taml
from taml.data.episodes import EpisodeSampler
from taml.data.store import make_split


def labelled(n_classes=6, per_class=12, seed=0):
    """Rows whose input encodes their own index (x[i] = i), labels shuffled."""
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(rng.permutation(np.repeat(np.arange(n_classes), per_class)))
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2) + 1
    return x.contiguous(), y


def rows_of(batch_x: torch.Tensor) -> torch.Tensor:
    return batch_x[..., 0, 0, 0].long() - 1  # -1 on padding


@pytest.mark.parametrize("mode", ["both", "class", "task"])
def test_tasks_are_the_papers_imbalanced_episodes(mode):
    x, y = labelled()
    builder = taml.EpisodeBuilder(x, y, way=3, max_shot=5, query=2, mode=mode)
    batch = builder.sample(16, generator=torch.Generator().manual_seed(0))
    sx, sy, qx, qy, mask = batch
    counts = batch.class_counts
    assert counts.min() >= 1 and counts.max() <= 5
    assert torch.equal(counts.sum(1), mask.sum(1))
    if mode == "task":
        assert bool((counts == counts[:, :1]).all())
    if mode == "class":
        assert bool((counts != counts[:, :1]).any())
    for t in range(16):
        n = int(mask[t].sum())
        assert bool(mask[t, :n].all()) and not bool(mask[t, n:].any())  # real rows first
        assert bool((sy[t, n:] == -1).all()) and bool((sx[t, n:] == 0).all())
        support, query = rows_of(sx[t, :n]), rows_of(qx[t])
        assert len(set(support.tolist()) | set(query.tolist())) == n + len(query)  # no repeat
        for label in range(3):  # one class of the data per task label, in support and query
            classes = set(y[support[sy[t, :n] == label]].tolist())
            assert classes == set(y[query[qy[t] == label]].tolist()) and len(classes) == 1
        assert torch.equal(qy[t], torch.arange(3).repeat_interleave(2))


def test_the_draws_are_the_command_lines_sampler_for_the_same_generator():
    x, y = labelled()
    builder = taml.EpisodeBuilder(x, y, way=3, max_shot=4, query=2)
    ours = builder.sample(5, generator=np.random.default_rng(7))
    images = rows_of(x)[:, None, None, None].expand(-1, 1, 1, 3).numpy().astype(np.uint8)
    cli = EpisodeSampler(make_split(images, y.numpy(), [str(c) for c in range(6)]), 3, 4, 2)
    theirs = cli.sample(5, np.random.default_rng(7))
    assert torch.equal(ours.support_mask, theirs.support_mask)
    assert torch.equal(ours.support_y, theirs.support_labels)
    assert torch.equal(ours.class_counts, theirs.class_counts)
    real = ours.support_mask
    their_rows = theirs.support_images[..., 0, 0, 0].long()
    assert torch.equal(rows_of(ours.support_x)[real], their_rows[real])


def test_same_generator_same_tasks_and_a_dataset_gives_the_tensors_tasks():
    x, y = labelled()
    a = taml.EpisodeBuilder(x, y, way=3, max_shot=5, query=2, classes=[0, 2, 3, 5])
    b = taml.EpisodeBuilder(TensorDataset(x, y), way=3, max_shot=5, query=2,
                            classes=[0, 2, 3, 5])
    first = a.sample(4, generator=torch.Generator().manual_seed(3))
    for again in (a.sample(4, generator=torch.Generator().manual_seed(3)),
                  b.sample(4, generator=torch.Generator().manual_seed(3))):
        assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
    drawn = set(y[rows_of(first.query_x).flatten()].tolist())
    assert drawn <= {0, 2, 3, 5}


def test_a_dataset_without_targets_is_read_item_by_item():
    x, y = labelled()

    class Items(Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return x[i], int(y[i])

    batch = taml.EpisodeBuilder(Items(), way=2, max_shot=3, query=1).sample(
        2, generator=np.random.default_rng(0))
    assert batch.support_x.shape[2:] == (1, 2, 2)


def test_the_batch_feeds_a_learner_and_the_mask_is_what_keeps_padding_out():
    x, y = labelled()
    x = torch.randn(x.shape[0], 1, 8, 8, generator=torch.Generator().manual_seed(0))
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    learner = taml.MAML(net, way=3, input_shape=(1, 8, 8), n_steps=1).double()
    batch = taml.EpisodeBuilder(x.double(), y, way=3, max_shot=5, query=2).sample(
        4, generator=np.random.default_rng(1))
    assert not bool(batch.support_mask.all())
    objective = learner.meta_objective(*batch)
    alone = [learner.meta_objective(*taml.collate_tasks([(
        batch.support_x[t, batch.support_mask[t]], batch.support_y[t, batch.support_mask[t]],
        batch.query_x[t], batch.query_y[t])])).cross_entropy for t in range(4)]
    torch.testing.assert_close(objective.cross_entropy, torch.cat(alone))
    # without the mask, zero padding rows labelled 0 are class-0 shots (the trial's mistake)
    unmasked = learner.meta_objective(batch.support_x, batch.support_y.clamp(min=0),
                                      batch.query_x, batch.query_y).cross_entropy
    assert not torch.allclose(unmasked, objective.cross_entropy)


def test_collate_pads_ragged_tasks_after_their_real_rows():
    sx = [torch.ones(n, 1, 2, 2) * (t + 1) for t, n in enumerate((2, 5, 3))]
    tasks = [(s, torch.zeros(len(s), dtype=torch.long), torch.ones(4, 1, 2, 2),
              torch.arange(4) % 2) for s in sx]
    batch = taml.collate_tasks(tasks)
    assert batch.support_x.shape == (3, 5, 1, 2, 2) and batch.query_x.shape == (3, 4, 1, 2, 2)
    assert batch.support_mask.sum(1).tolist() == [2, 5, 3]
    assert batch.support_x[0, 2:].abs().sum() == 0 and bool((batch.support_y[0, 2:] == -1).all())
    loader = torch.utils.data.DataLoader(tasks, batch_size=2, collate_fn=taml.collate_tasks)
    assert next(iter(loader)).support_x.shape == (2, 5, 1, 2, 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(way=7), "way 7 is more than the 6 classes"),
    (dict(way=1), "way must be a whole number of at least 2"),
    (dict(query=12), "fewer than query 12 plus one support row"),
    (dict(mode="imbalanced"), "mode must be one of"),
    (dict(classes=[0, 9]), r"classes \[9\] have no rows"),
])
def test_bad_arguments_are_named(kwargs, message):
    x, y = labelled()
    with pytest.raises(ValueError, match=message):
        taml.EpisodeBuilder(x, y, **{"way": 3, "max_shot": 2, "query": 2, **kwargs})


def test_bad_generators_and_tasks_are_named():
    x, y = labelled()
    builder = taml.EpisodeBuilder(x, y, way=3, max_shot=2, query=2)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        builder.sample(2, generator=123)
    with pytest.raises(ValueError, match="same number of queries"):
        taml.collate_tasks([(x[:2], y[:2], x[:3], y[:3]), (x[:2], y[:2], x[:4], y[:4])])
    with pytest.raises(ValueError, match="needs its labels"):
        taml.EpisodeBuilder(x, way=3, max_shot=2, query=2)
