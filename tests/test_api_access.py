"""What a user reads out of an episodic learner: Bayesian TAML's balancing variables at
meta-test (the command line's tables print the same values), a task's adapted parameters,
the head a learner starts each task from, and what calling the learner does."""

from __future__ import annotations

import numpy as np
import pytest
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


# ---- the head, the adapted parameters, calling the learner ----

def with_head(head: str, way=3, **kwargs) -> taml.MAML:
    out = way if head == "backbone" else None
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
              nn.Flatten()] + ([nn.Linear(4 * 4 * 4, out)] if out else [])
    return taml.MAML(nn.Sequential(*layers), way, (3, 8, 8), n_steps=2, inner_lr=0.3,
                     head=head, **kwargs).double()


def reference_maml(learner, sx, sy, qx, n_steps=2, lr=0.3):
    """Plain MAML on ``learner.task_model``: autograd's second-order inner loop on the mean
    support cross-entropy, every parameter adapted but batch norm's."""
    model = learner.task_model
    params = {k: v if v.requires_grad else v.detach().clone().requires_grad_()  # zero head
              for k, v in {**dict(model.named_parameters()),
                           **dict(model.named_buffers())}.items()
              if "running" not in k and "num_batches" not in k}
    adapted_keys = [k for k in params if not k.startswith("backbone.1.")]  # BN: not adapted
    for _ in range(n_steps):
        loss = nn.functional.cross_entropy(
            torch.func.functional_call(model, params, (sx,)), sy)
        grads = torch.autograd.grad(loss, [params[k] for k in adapted_keys], create_graph=True,
                                    allow_unused=True)
        params = {**params, **{k: params[k] - lr * (g if g is not None else 0)
                               for k, g in zip(adapted_keys, grads, strict=True)}}
    return torch.func.functional_call(model, params, (qx,))


@pytest.mark.parametrize("head", ["zero", "learned", "backbone"])
def test_each_head_is_plain_maml_from_its_initialisation(head):
    learner = with_head(head)
    (sx, sy, qx, qy, mask), _ = episodes()
    objective = learner.meta_objective(sx, sy, qx, qy, mask)
    for t in range(3):
        n = int(mask[t].sum())
        expected = reference_maml(learner, sx[t, :n], sy[t, :n], qx[t])
        torch.testing.assert_close(objective.query_logits[t], expected)
    names = {n for n, _ in learner.named_parameters()}
    assert ({"dense_w", "dense_b"} <= names) == (head == "learned")
    objective.loss.backward()
    if head == "learned":  # meta-learned: a nonzero start with its own meta-gradient
        assert learner.dense_w.abs().sum() > 0 and learner.dense_w.grad.abs().sum() > 0
    if head == "zero":
        assert torch.equal(learner.dense_w, torch.zeros_like(learner.dense_w))


@pytest.mark.parametrize("head", ["zero", "learned", "backbone"])
def test_adapted_parameters_through_functional_call_are_the_prediction_and_its_gradient(head):
    learner = with_head(head)
    (sx, sy, qx, qy, mask), _ = episodes()
    adapted = learner.adapted_parameters(sx, sy, mask)
    logits = torch.stack([torch.func.functional_call(learner.task_model, adapted[t], (qx[t],))
                          for t in range(3)])
    torch.testing.assert_close(logits.softmax(-1), learner.predict(sx, sy, qx, mask))
    loss = nn.functional.cross_entropy(logits.transpose(1, 2), qy, reduction="none").mean(1)
    grads = torch.autograd.grad(loss.mean(), list(learner.parameters()))
    expected = torch.autograd.grad(learner.meta_objective(sx, sy, qx, qy, mask).loss,
                                   list(learner.parameters()))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_a_module_that_is_a_classifier_is_detected_and_can_be_the_head():
    with pytest.warns(UserWarning, match="head='backbone'"):
        taml.MAML(with_head("backbone").backbone, 3, (3, 8, 8))  # its fc under taml's head
    with pytest.raises(taml.BackboneError, match="must have way=5 units; it has 3"):
        taml.MAML(with_head("backbone").backbone, 5, (3, 8, 8), head="backbone")
    with pytest.raises(ValueError, match="head must be one of zero, learned, backbone"):
        taml.MAML(with_head("zero").backbone, 3, (3, 8, 8), head="random")


def test_calling_the_learner_on_tensors_points_to_predict_and_meta_objective():
    learner = with_head("zero")
    (sx, sy, qx, qy, mask), _ = episodes()
    with pytest.raises(TypeError, match=r"learner.predict\(.*learner.meta_objective\("):
        learner(sx, sy, qx, qy)


def test_the_command_line_offers_the_learned_head_and_refuses_changing_it(tmp_path):
    from taml.episodic.build import build_learner
    from taml.episodic.config import parse_config
    from taml.episodic.resume import check_resume
    from taml.run.compat import IncompatibleRun

    flags = ["--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood", "--inner_lr",
             "0.1"]
    cfg = parse_config([*flags, "--head", "learned"])
    assert isinstance(build_learner(cfg).dense_w, nn.Parameter)
    assert not isinstance(build_learner(parse_config(flags)).dense_w, nn.Parameter)
    with pytest.raises(IncompatibleRun, match="head"):
        check_resume({**parse_config(flags).to_dict()}, cfg, tmp_path)
    with pytest.raises(IncompatibleRun, match="head"):  # a run saved before the flag: zero
        saved = parse_config(flags).to_dict()
        del saved["head"]
        check_resume(saved, cfg, tmp_path)
