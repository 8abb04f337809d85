"""The episodic API (``from taml import MAML, MetaSGD, BayesianTAML, Conv4, ResNet12``): on
the 4-conv net its tensors give the command line's learner's results on episodes exactly;
on ResNet-12 its second-order meta-gradients are the finite differences' and vmap is the
loop; Bayesian TAML at its identity is Meta-SGD; a change to a public signature fails here.

The API is imported from ``taml`` only. The command line's learner, the reference of the
first test, is imported from where the CLI builds it (``MetaLearner``), as are the tiny
episodes' sampler and the CLI (for ``--backbone``)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import taml
from taml import MAML, BackboneError, BayesianTAML, Conv4, MetaSGD, ResNet12

from .conftest import colour_split

SIGNATURES = Path(__file__).with_name("api_signatures.json")
TINY_WIDTHS = (2, 3, 4, 5)  # ResNet-12 at 16x16: 8, 4, 2, 1 pixels after the blocks


def images(batch_images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [0, 1], as the CLI reads them."""
    return batch_images.movedim(-1, -3).to(torch.get_default_dtype()).div_(255.0).contiguous()


def episode_tensors(n_tasks=2, way=3, max_shot=4, query=2, size=16, seed=1):
    """An imbalanced meta-batch (padded supports) as the API's tensors, and the batch."""
    from taml.data.episodes import EpisodeSampler

    sampler = EpisodeSampler(colour_split(8, 20, size=size), way, max_shot, query)
    batch = sampler.sample(n_tasks, np.random.default_rng(seed))
    assert len(set(batch.support_sizes.tolist())) > 1  # padding is exercised
    return (images(batch.support_images), batch.support_labels, images(batch.query_images),
            batch.query_labels, batch.support_mask), batch


def gradients(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for k, p in module.named_parameters()}


LEARNERS = {"maml": (), "meta_sgd": ("alpha_on",),
            "taml": ("alpha_on", "omega_on", "gamma_on", "z_on")}


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("name", list(LEARNERS))
@pytest.mark.parametrize("task_batching", ["loop", "vmap"])
def test_the_api_on_conv4_gives_the_cli_learners_meta_gradients_exactly(name, task_batching):
    from taml.episodic.learners.inner_loop import InnerLoopConfig
    from taml.episodic.learners.meta_learner import MetaLearner, Switches, meta_objective

    (sx, sy, qx, qy, mask), batch = episode_tensors()
    switches = Switches(**dict.fromkeys(LEARNERS[name], True))
    cli = MetaLearner(switches, 16, 3, 4, InnerLoopConfig(2, 0.4),
                      Conv4(generator=torch.Generator().manual_seed(3)),
                      generator=torch.Generator().manual_seed(3))
    backbone = Conv4()
    if name == "maml":
        api = MAML(backbone, 3, (3, 16, 16), n_steps=2, inner_lr=0.4)
    elif name == "meta_sgd":
        api = MetaSGD(backbone, 3, (3, 16, 16), n_steps=2)
    else:
        api = BayesianTAML(backbone, 3, (3, 16, 16), max_shot=4, n_steps=2)
    api.load_state_dict(cli.state_dict())

    # the CLI's training call (one backward per task on the loop path) and the API's
    cli.meta_backward(batch, torch.Generator().manual_seed(1), task_batching=task_batching)
    ours = api.backward_meta_objective(sx, sy, qx, qy, mask, torch.Generator().manual_seed(1),
                                       task_batching)
    cli_grads, api_grads = gradients(cli), gradients(api)
    for key, grad in cli_grads.items():
        assert torch.equal(api_grads[key], grad), key
    assert any(g.abs().max() > 0 for g in cli_grads.values())

    # the differentiable objective: the CLI's forward + meta_objective, the API's
    cli.zero_grad()
    api.zero_grad()
    outputs = cli(batch, sample=True, generator=torch.Generator().manual_seed(1),
                  task_batching=task_batching)
    loss, _ = meta_objective(outputs, batch)
    loss.backward()
    objective = api.meta_objective(sx, sy, qx, qy, mask, torch.Generator().manual_seed(1),
                                   task_batching)
    objective.loss.backward()
    assert torch.equal(objective.loss, loss) and torch.equal(ours.loss, loss.detach())
    api_grads = gradients(api)
    for key, grad in gradients(cli).items():
        assert torch.equal(api_grads[key], grad), key


def tiny_tasks(n_tasks=2, way=3, seed=0):
    """Padded supports of 16x16 inputs: task sizes 7 and 4 of 7 rows; queries of 2/class."""
    g = torch.Generator().manual_seed(seed)
    support_y = torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 2, -1, -1, -1]])[:n_tasks]
    mask = support_y >= 0
    support_x = torch.rand(n_tasks, 7, 3, 16, 16, generator=g) * mask[..., None, None, None]
    query_y = torch.arange(way).repeat_interleave(2).expand(n_tasks, -1)
    query_x = torch.rand(n_tasks, 2 * way, 3, 16, 16, generator=g)
    return support_x, support_y, query_x, query_y, mask


def tiny_bayesian_taml(**kwargs) -> BayesianTAML:
    backbone = ResNet12(channels=TINY_WIDTHS, generator=torch.Generator().manual_seed(4))
    return BayesianTAML(backbone, 3, (3, 16, 16), max_shot=3, n_steps=2, **kwargs)


def flat_gradient(learner, tasks, seed, task_batching="loop"):
    learner.zero_grad()
    objective = learner.meta_objective(*tasks, generator=torch.Generator().manual_seed(seed),
                                       task_batching=task_batching)
    objective.loss.backward()
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in learner.parameters()]), objective


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("method", ["maml", "taml"])
def test_resnet12_second_order_meta_gradients_equal_finite_differences(method):
    tasks = tiny_tasks()
    if method == "maml":
        learner = MAML(ResNet12(channels=TINY_WIDTHS), 3, (3, 16, 16), n_steps=2,
                       inner_lr=0.3)
    else:
        learner = tiny_bayesian_taml()
    with torch.no_grad():  # batch norm's shifts and scales off their initial 0 and 1
        for p in learner.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    gradient, _ = flat_gradient(learner, tasks, seed=1)
    params = list(learner.parameters())
    direction = torch.randn(gradient.shape, generator=torch.Generator().manual_seed(9))
    eps = 1e-6

    def objective_at(step: float) -> float:
        with torch.no_grad():
            at = 0
            for p in params:
                p.add_(step * direction[at:at + p.numel()].view_as(p))
                at += p.numel()
            value = learner.meta_objective(*tasks, generator=torch.Generator().manual_seed(1),
                                           task_batching="loop").loss.item()
            at = 0
            for p in params:
                p.sub_(step * direction[at:at + p.numel()].view_as(p))
                at += p.numel()
        return value

    finite = (objective_at(eps) - objective_at(-eps)) / (2 * eps)
    analytic = float(gradient @ direction)
    assert finite == pytest.approx(analytic, rel=1e-6, abs=1e-9)
    # first order is a different (approximate) gradient: the second-order terms matter
    first = MAML(ResNet12(channels=TINY_WIDTHS), 3, (3, 16, 16), n_steps=2, inner_lr=0.3,
                 first_order=True) if method == "maml" else tiny_bayesian_taml(first_order=True)
    first.load_state_dict(learner.state_dict())
    first_gradient, _ = flat_gradient(first, tasks, seed=1)
    assert torch.isfinite(first_gradient).all()
    assert not torch.allclose(first_gradient, gradient, rtol=1e-3, atol=1e-8)


@pytest.mark.usefixtures("float64_default")
def test_resnet12_vmap_equals_the_loop_on_padded_tasks():
    tasks = tiny_tasks()
    learner = tiny_bayesian_taml()
    looped, loop_objective = flat_gradient(learner, tasks, seed=2, task_batching="loop")
    batched, vmap_objective = flat_gradient(learner, tasks, seed=2, task_batching="vmap")
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vmap_objective.query_logits, loop_objective.query_logits,
                               rtol=1e-10, atol=1e-12)
    assert looped.abs().max() > 0
    # and the one-backward-per-task path gives the same gradient
    learner.zero_grad()
    learner.backward_meta_objective(*tasks, generator=torch.Generator().manual_seed(2),
                                    task_batching="loop")
    per_task = torch.cat([p.grad.flatten() for p in learner.parameters()])
    torch.testing.assert_close(per_task, looped, rtol=1e-10, atol=1e-12)


def copy_meta_sgd_into(taml_learner: BayesianTAML, meta_sgd: MetaSGD) -> None:
    """θ, the batch-norm parameters and α of ``meta_sgd`` into ``taml_learner``; the
    inference network's mean heads zeroed: ω, γ, z at 0, their identity values."""
    theirs = dict(meta_sgd.named_parameters())
    with torch.no_grad():
        for key, value in taml_learner.named_parameters():
            if key in theirs:
                value.copy_(theirs[key])
        for head in (taml_learner.inference.omega, taml_learner.inference.gamma,
                     taml_learner.inference.z):
            head.mean.weight.zero_()
            head.mean.bias.zero_()


@pytest.mark.usefixtures("float64_default")
def test_bayesian_taml_at_identity_with_vanishing_sigma_equals_meta_sgd():
    tasks = tiny_tasks()
    meta_sgd = MetaSGD(ResNet12(channels=TINY_WIDTHS), 3, (3, 16, 16), n_steps=2)
    with torch.no_grad():
        for p in meta_sgd.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    bayes = tiny_bayesian_taml(sigma_init=1e-12)
    copy_meta_sgd_into(bayes, meta_sgd)

    theirs = meta_sgd.meta_objective(*tasks)
    ours = bayes.meta_objective(*tasks, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours.query_logits, theirs.query_logits, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(ours.cross_entropy, theirs.cross_entropy, rtol=1e-9, atol=1e-10)
    shared = [k for k, _ in meta_sgd.named_parameters()]
    mine = dict(bayes.named_parameters())
    their_grads = torch.autograd.grad(theirs.cross_entropy.mean(),
                                      list(meta_sgd.parameters()))
    our_grads = torch.autograd.grad(ours.cross_entropy.mean(), [mine[k] for k in shared])
    for key, a, b in zip(shared, our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=key)
    predicted = bayes.predict(*tasks[:3], support_mask=tasks[4])
    torch.testing.assert_close(predicted, meta_sgd.predict(*tasks[:3], support_mask=tasks[4]),
                               rtol=1e-9, atol=1e-10)
    sampled = bayes.predict(*tasks[:3], support_mask=tasks[4], n_samples=3,
                            generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(sampled, predicted, rtol=1e-9, atol=1e-10)

    # away from the identity each variable changes the prediction (it is used)
    for name in ("omega", "gamma", "z"):
        moved = tiny_bayesian_taml(sigma_init=1e-12)
        copy_meta_sgd_into(moved, meta_sgd)
        with torch.no_grad():
            getattr(moved.inference, name).mean.weight.normal_(
                0, 0.5, generator=torch.Generator().manual_seed(6))
        changed = moved.predict(*tasks[:3], support_mask=tasks[4])
        assert (changed - predicted).abs().max() > 1e-6, name


def test_the_balancing_variables_generalise_per_layer():
    """z: one kernel scale per output channel of every conv and linear layer, then a bias
    shift per channel of every layer with a bias; γ: one per layer and the classifier."""
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 5, bias=False), nn.BatchNorm1d(5))
    learner = BayesianTAML(backbone, 2, (1, 8, 8), max_shot=3, n_steps=1)
    support_y = torch.tensor([[0, 0, 1]])
    objective = learner.meta_objective(torch.rand(1, 3, 1, 8, 8), support_y,
                                       torch.rand(1, 2, 1, 8, 8), torch.tensor([[0, 1]]),
                                       generator=torch.Generator().manual_seed(0))
    assert objective.balancing["z"].shape == (1, 4 + 5 + 4)
    assert objective.balancing["gamma"].shape == (1, 3)
    objective.loss.backward()
    assert backbone[0].weight.grad.abs().sum() > 0 and backbone[1].weight.grad is not None
    assert backbone[1].running_mean.abs().sum() == 0  # batch statistics only, never stored
    with pytest.raises(BackboneError, match="LayerNorm|belongs to no"):
        MAML(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), 2, (3, 1, 1))


def test_bad_input_names_the_argument():
    learner = MAML(Conv4(n_filters=2), 2, (3, 16, 16), n_steps=1)
    x, y = torch.rand(1, 4, 3, 16, 16), torch.tensor([[0, 1, 0, 1]])
    with pytest.raises(ValueError, match=r"\[tasks, rows, C, H, W\]"):
        learner.meta_objective(x[0], y, x, y)
    with pytest.raises(ValueError, match="padding last"):
        learner.meta_objective(x, y, x, y, support_mask=torch.tensor([[0, 1, 1, 1]]))
    with pytest.raises(ValueError, match="n_samples"):
        learner.predict(x, y, x, n_samples=2)


def small_conv(in_channels: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 2, 3, padding=1), nn.BatchNorm2d(2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 4))


class ReturnsATuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = small_conv()

    def forward(self, x):
        return self.body(x), x


def tiny_batch():
    """One task: 3 classes, support 6 rows, query 3 rows of 3x8x8 inputs."""
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 6, 3, 8, 8, generator=g), torch.tensor([[0, 0, 1, 1, 2, 2]]),
            torch.rand(1, 3, 3, 8, 8, generator=g), torch.tensor([[0, 1, 2]]))


def bad(sx, sy, qx, qy, **options):
    return {"support_x": sx, "support_y": sy, "query_x": qx, "query_y": qy, **options}


SX, SY, QX, QY = tiny_batch()
# every bad argument of a call: (entry, arguments, what the message must say); each was
# silently wrong (a loss of ln 3, a uniform prediction, a negative KL) or a torch error
BAD_CALLS = {
    "support label past way": ("meta_objective", bad(SX, SY + 5, QX, QY),
                               r"support_y must be class indices in 0\.\.2"),
    "negative support label": ("meta_objective", bad(SX, SY - 1, QX, QY),
                               "support_y must be class indices of 0 or more"),
    "query label past way": ("meta_objective", bad(SX, SY, QX, QY + 5),
                             r"query_y must be class indices in 0\.\.2"),
    "float labels": ("meta_objective", bad(SX, SY.float(), QX, QY),
                     "support_y must be integer class indices"),
    "empty support set": ("meta_objective", bad(SX[:, :0], SY[:, :0], QX, QY),
                          "every task needs support and query rows"),
    "empty query set": ("meta_objective", bad(SX, SY, QX[:, :0], QY[:, :0]),
                        "every task needs support and query rows"),
    "task counts differ": ("meta_objective", bad(SX, SY, QX.expand(2, -1, -1, -1, -1),
                                                 QY.expand(2, -1)),
                           "the same tasks, got 1 and 2"),
    "uint8 images": ("meta_objective", bad((SX * 255).to(torch.uint8), SY, QX, QY),
                     r"support_x must be a floating-point tensor.*float\(\) / 255"),
    "wrong channels": ("meta_objective", bad(SX[:, :, :1], SY, QX[:, :, :1], QY),
                       r"input_shape \(3, 8, 8\)"),
    "negative kl_sizes": ("meta_objective", bad(SX, SY, QX, QY, kl_sizes=torch.tensor([-4])),
                          "kl_sizes must be at least 1"),
    "kl_sizes of other tasks": ("meta_objective",
                                bad(SX, SY, QX, QY, kl_sizes=torch.tensor([6, 6])),
                                r"kl_sizes must be each task's support size"),
    "a seed as generator": ("meta_objective", bad(SX, SY, QX, QY, generator=123),
                            r"generator must be a torch.Generator \(torch.Generator"),
    "unknown task_batching": ("meta_objective", bad(SX, SY, QX, QY, task_batching="gpu"),
                              "task_batching must be one of auto, vmap, loop"),
    "nan scale": ("backward_meta_objective", bad(SX, SY, QX, QY, scale=float("nan")),
                  "scale must be a finite number of 0 or more"),
    "empty support to backward": ("backward_meta_objective",
                                  bad(SX[:, :0], SY[:, :0], QX, QY),
                                  "every task needs support and query rows"),
    "negative predict steps": ("predict", {"support_x": SX, "support_y": SY, "query_x": QX,
                                           "n_steps": -1}, "n_steps must be at least 1"),
    "zero predict steps": ("predict", {"support_x": SX, "support_y": SY, "query_x": QX,
                                       "n_steps": 0}, "n_steps must be at least 1"),
    "negative n_samples": ("predict", {"support_x": SX, "support_y": SY, "query_x": QX,
                                       "n_samples": -1}, "n_samples must be 0 or more"),
    "predict label past way": ("predict", {"support_x": SX, "support_y": SY + 3,
                                           "query_x": QX}, "support_y must be class indices"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_a_bad_call_names_its_argument(case):
    """Tensors are checked for content and agreement, not only for shape: one ValueError
    or TypeError naming the argument, before any computation (taml/run/validate.py)."""
    entry, arguments, message = BAD_CALLS[case]
    learner = BayesianTAML(small_conv(), 3, (3, 8, 8), max_shot=2, n_steps=1)
    with pytest.raises((ValueError, TypeError), match=message):
        getattr(learner, entry)(**arguments)


def conv():
    return small_conv()


# every bad constructor argument: (class, keyword arguments over the defaults, message); the
# rules are the command line's (the same function checks --way and way=)
BAD_CONSTRUCTORS = {
    "way 1": (MAML, {"way": 1}, "way must be at least 2 for classification, got 1"),
    "way 0": (MetaSGD, {"way": 0}, "way must be at least 2"),
    "n_steps 0": (MAML, {"n_steps": 0}, "n_steps must be at least 1, got 0"),
    "inner_lr nan": (MAML, {"inner_lr": float("nan")}, "inner_lr must be a positive finite"),
    "inner_lr negative": (MAML, {"inner_lr": -0.1}, "inner_lr must be a positive finite"),
    "alpha_init nan": (MetaSGD, {"alpha_init": float("nan")}, "alpha_init must be a positive"),
    "sigma_init nan": (BayesianTAML, {"sigma_init": float("nan")},
                       "sigma_init must be a positive finite"),
    "sigma_init 0": (BayesianTAML, {"sigma_init": 0.0}, "sigma_init must be a positive finite"),
    "sigma_init negative": (BayesianTAML, {"sigma_init": -1.0},
                            "sigma_init must be a positive finite"),
    "sigma_init 1e-45": (BayesianTAML, {"sigma_init": 1e-45}, "sigma_init must be at least"),
    "max_shot 0": (BayesianTAML, {"max_shot": 0}, "max_shot must be at least 1"),
    "precision fp16": (MAML, {"precision": "fp16"}, "precision must be one of fp32, bf16"),
    "seed 2^63": (BayesianTAML, {"seed": 2 ** 63}, "seed must be below 2"),
    "wrong channel count": (MAML, {"input_shape": (1, 8, 8)},
                            r"cannot take inputs of input_shape \(1, 8, 8\)"),
    "input too small": (MAML, {"input_shape": (3, 2, 2)},
                        r"cannot take inputs of input_shape \(3, 2, 2\)"),
    "input_shape of 2": (MAML, {"input_shape": (8, 8)}, "input_shape must be"),
    "zero size": (MAML, {"input_shape": (3, 0, 8)}, "input_shape's sizes must be at least 1"),
    "returns a tuple": (MAML, {"backbone": ReturnsATuple()},
                        "returns a tuple, not one features tensor"),
    "not a module": (MAML, {"backbone": lambda x: x}, "backbone must be a torch.nn.Module"),
    "only unsupported layers": (MAML, {"backbone": nn.Sequential(nn.Flatten(),
                                                                 nn.Bilinear(4, 4, 2))},
                                r"layers 1 \(Bilinear\) have parameters"),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTORS))
def test_a_bad_constructor_argument_is_refused_by_the_clis_rule(case):
    cls, overrides, message = BAD_CONSTRUCTORS[case]
    arguments = {"backbone": conv(), "way": 3, "input_shape": (3, 8, 8)}
    if cls is BayesianTAML:
        arguments["max_shot"] = 2
    with pytest.raises((ValueError, TypeError), match=message):
        cls(**{**arguments, **overrides})


def test_the_cli_and_the_api_refuse_with_one_rule(capsys):
    """``--way 1`` and ``way=1``: the same function, the same words but the name."""
    from taml.episodic.config import parse_config

    with pytest.raises(SystemExit):
        parse_config(["--way", "1"])
    cli = capsys.readouterr().err
    with pytest.raises(ValueError) as api:
        MAML(conv(), 1, (3, 8, 8))
    assert str(api.value) in cli.replace("--way", "way")


@pytest.mark.parametrize("widths", [(0, 2, 2, 2), (2, 2, 2, 0)])
def test_resnet12_with_a_zero_width_is_refused(widths):
    with pytest.raises(ValueError, match="channels must be at least 1, got 0"):
        ResNet12(channels=widths)


def test_dropout_draws_a_mask_per_task_under_vmap():
    """vmap's default refuses every random op; each task now draws its own dropout mask (as
    the loop path, one task at a time): two copies of one task differ in training mode
    and agree in eval mode."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 8 * 8, 8))
    learner = MAML(backbone, 3, (3, 8, 8), n_steps=1)
    sx, sy, qx, qy = (t.expand(2, *t.shape[1:]) for t in tiny_batch())
    objective = learner.meta_objective(sx, sy, qx, qy, task_batching="vmap")
    objective.loss.backward()
    assert torch.isfinite(objective.loss)
    assert not torch.equal(objective.query_logits[0], objective.query_logits[1])
    backbone.eval()
    logits = learner.meta_objective(sx, sy, qx, qy, task_batching="vmap").query_logits
    assert torch.equal(logits[0], logits[1])


def test_backbone_resnet12_is_recorded_and_a_change_is_refused(data_root, tmp_path):
    """``--backbone resnet12`` meta-trains (first order, one iteration, Meta-SGD + γ), is
    recorded in config.json and the checkpoint, prints γ per layer, and a meta-test with
    another backbone is refused."""
    from taml.episodic.config import parse_config
    from taml.episodic.evaluate import meta_test
    from taml.episodic.resume import IncompatibleRun
    from taml.episodic.train import meta_train
    from taml.run import checkpoint

    savedir = tmp_path / "run"
    common = ["--data_root", str(data_root), "--savedir", str(savedir), "--way", "2",
              "--max_shot", "2", "--query", "1", "--n_steps", "1", "--metabatch", "1",
              "--n_val_episodes", "1", "--n_test_episodes", "1", "--no_progress",
              "--device", "cpu", "--first_order", "--n_train_iters", "1"]
    assert parse_config(common).backbone == "conv4"  # the paper's, by default
    meta_train(parse_config([*common, "--backbone", "resnet12", "--alpha_on", "--gamma_on",
                             "--print_freq", "1"]))
    assert json.loads((savedir / "config.json").read_text())["backbone"] == "resnet12"
    # γ per adapted layer (16) and the classifier in the balancing table
    assert any(line.split()[-2:] == ["l16", "dense"]
               for line in (savedir / "train.log").read_text().splitlines())
    learner = checkpoint.load(savedir / checkpoint.LATEST)["learner"]
    assert "backbone.blocks.3.conv3.weight" in learner and "backbone.conv1.weight" not in learner
    with pytest.raises(IncompatibleRun, match="backbone"):
        meta_test(parse_config([*common, "--mode", "meta_test", "--alpha_on", "--gamma_on"]))


def public_signatures() -> dict[str, dict[str, str]]:
    """Every public name of ``taml.__all__``: a class's constructor and the public methods
    of its own module (the API's; not torch's, nor the command line's internals it
    inherits), a dataclass's fields, a function's signature; other objects by type."""
    out = {}
    for name in taml.__all__:
        value = getattr(taml, name)
        if inspect.isclass(value):
            entry = {"__init__": str(inspect.signature(value.__init__))}
            for attr, member in inspect.getmembers(value):
                if attr.startswith("_") or not callable(member):
                    continue
                if getattr(member, "__module__", None) != value.__module__:
                    continue  # inherited from torch, or the CLI's internals
                entry[attr] = str(inspect.signature(member))
            if dataclasses.is_dataclass(value):
                entry["fields"] = ", ".join(f.name for f in dataclasses.fields(value))
            out[name] = entry
        elif callable(value):
            out[name] = {"signature": str(inspect.signature(value))}
        else:
            out[name] = {"type": type(value).__name__}
    return out


def test_the_public_signatures_are_the_recorded_ones():
    """A change to a public name or signature fails here: the API's users would break. If
    the change is meant, record it: ``python -m tests.test_api_episodic --write`` and say so
    in docs/api.md."""
    recorded = json.loads(SIGNATURES.read_text(encoding="utf-8"))
    assert public_signatures() == recorded


def test_import_taml_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, taml; print('torch' in sys.modules, 'MAML' in dir(taml))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], check=True)
    assert done.stdout.split() == ["False", "True"]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        SIGNATURES.write_text(json.dumps(public_signatures(), indent=1, ensure_ascii=False)
                              + "\n", encoding="utf-8")
