"""What a user reads out of an episodic learner: Bayesian TAML's balancing variables at
meta-test (the command line's tables print the same values), a task's adapted parameters,
the head a learner starts each task from, and what calling the learner does."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import taml
from taml.data.episodes import EpisodeSampler
from taml.episodic.learners.conv4 import images_to_input

from .conftest import colour_split


def tiny_backbone(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 6))


def episodes(n_tasks=3, way=3, max_shot=4, query=2, seed=1):
    sampler = EpisodeSampler(colour_split(6, 12, size=8), way, max_shot, query)
    batch = sampler.sample(n_tasks, np.random.default_rng(seed))
    assert len(set(batch.support_sizes.tolist())) > 1  # padding is exercised
    tensors = (images_to_input(batch.support_images, torch.float64), batch.support_labels,
               images_to_input(batch.query_images, torch.float64), batch.query_labels,
               batch.support_mask)
    return tensors, batch


def bayesian_taml(**switches) -> taml.BayesianTAML:
    return taml.BayesianTAML(tiny_backbone(), 3, (3, 8, 8), max_shot=4, n_steps=2,
                             **switches).double()


# ---- balancing variables ----

def test_balancing_gives_the_posteriors_the_inner_loop_adapts_with():
    learner = bayesian_taml()
    (sx, sy, qx, qy, mask), _ = episodes()
    values = learner.balancing(sx, sy, mask)
    assert set(values) == {"omega_mean", "omega_std", "class_weights", "gamma_mean",
                           "gamma_std", "step_scales", "z_mean", "z_std"}
    assert values["omega_mean"].shape == (3, 3) and values["gamma_mean"].shape == (3, 4)
    assert values["z_mean"].shape == values["z_std"].shape and bool((values["z_std"] > 0).all())
    torch.testing.assert_close(values["class_weights"], values["omega_mean"].softmax(-1))
    torch.testing.assert_close(values["step_scales"], values["gamma_mean"].exp())
    used = learner.meta_objective(sx, sy, qx, qy, mask, generator=None)  # a sample
    means = learner(_tasks(learner, sx, sy, qx, mask), sample=False).balancing  # predict's
    for name in ("omega", "gamma", "z"):
        torch.testing.assert_close(values[f"{name}_mean"], means[name])
        assert not torch.equal(values[f"{name}_mean"], used.balancing[name])
    assert not any(v.requires_grad for v in values.values())


def _tasks(learner, sx, sy, qx, mask):
    from taml.episodic.api import _tasks as tasks

    return tasks(learner, sx, sy, qx, None, mask)


def test_a_switched_off_variable_has_no_keys_and_maml_has_none():
    (sx, sy, _, _, mask), _ = episodes()
    assert set(bayesian_taml(omega=False, z=False).balancing(sx, sy, mask)) == {
        "gamma_mean", "gamma_std", "step_scales"}
    maml = taml.MAML(tiny_backbone(), 3, (3, 8, 8)).double()
    assert maml.balancing(sx, sy, mask) == {}


def test_the_command_lines_tables_print_the_apis_values():
    learner = bayesian_taml()
    (sx, sy, _, _, mask), batch = episodes()
    tables = learner.balancing_means(batch)  # what taml/episodic/train.py prints
    values = learner.balancing(sx, sy, mask)
    assert set(tables) == {"omega", "gamma"}
    assert torch.equal(tables["omega"], values["class_weights"])
    assert torch.equal(tables["gamma"], values["step_scales"])


def test_padding_does_not_change_a_tasks_balancing():
    learner = bayesian_taml()
    (sx, sy, _, _, mask), _ = episodes()
    padded = learner.balancing(sx, sy, mask)
    for t in range(3):
        n = int(mask[t].sum())
        alone = learner.balancing(sx[t:t + 1, :n], sy[t:t + 1, :n])
        for key, value in alone.items():
            torch.testing.assert_close(value[0], padded[key][t])
