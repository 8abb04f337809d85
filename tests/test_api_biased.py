"""The reweighting API (``taml.ERMStep`` ... ``taml.MWNetStep``, ``taml.LNLStep``): each
step object, driven as a user would drive it from a plain loop, gives exactly the command
line trainer's parameters and method state on the same batches (float64), on the CLI's
LeNet and on a user's own ``nn.Sequential`` with batch norm; LNL's unlearning step equals
the CLI's; the public signatures are the recorded ones; the MW-Net example runs.

The API's names are imported from ``taml`` only; the CLI side is reached through its
trainer (``taml.biased.train``), the reference these tests hold the API to.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import taml

from .biased_fakes import fake_data

ROOT = Path(__file__).resolve().parents[1]
REWEIGHTING_NAMES = ("ClassBalancedStep", "ERMStep", "FocalStep", "L2RWStep", "LNLStats",
                     "LNLStep", "MWNetStep", "ReweightingStep", "StepOutput", "StepStats",
                     "TMLStep", "WeightingNet")
CLI_FLAGS = ["--batch_size", "8", "--meta_batch_size", "6", "--lr", "0.05",
             "--lr_schedule", "", "--no_progress", "--device", "cpu", "--augment", "none",
             "--momentum", "0.9", "--weight_decay", "5e-4", "--log_every", "100",
             "--eval_every", "100"]


def users_net(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A module that is not taml's: conv, batch norm, pooling, linear."""
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(4 * (image_size // 4) ** 2, num_classes))


def cli_run(tmp_path, monkeypatch, method: str, steps: int, network, *extra: str):
    """Trains ``method`` for ``steps`` steps through the CLI trainer in float64 on fake
    long-tailed data; returns (its config, the network as built before training, the
    (batch, meta batch) of every step, the final checkpoint)."""
    from taml.biased import batches
    from taml.biased import build as parts
    from taml.biased.config import parse_biased_config
    from taml.biased.nets import build_network
    from taml.biased.records import RunRecords
    from taml.biased.train import train

    data = fake_data()
    monkeypatch.setattr(parts, "load_data", lambda cfg: data)
    made: dict = {"batches": []}

    def make_network(name, num_classes, in_channels, image_size):
        if network is None:
            net = build_network(name, num_classes, in_channels, image_size)
        else:
            net = network(num_classes, in_channels, image_size)
        net = net.double()
        made["initial"] = copy.deepcopy(net)
        return net

    monkeypatch.setattr(parts, "make_network", make_network)
    standardise = batches.Normalise.__call__
    monkeypatch.setattr(batches.Normalise, "__call__",
                        lambda self, images: standardise(self, images).double())
    train_batch, meta_batch = batches.BatchSource.train_batch, batches.BatchSource.meta_batch

    def recording_train_batch(self, size):
        x, y, indices = train_batch(self, size)
        made["batches"].append([(x.clone(), y.clone()), None])
        return x, y, indices

    def recording_meta_batch(self, size):
        x, y = meta_batch(self, size)
        made["batches"][-1][1] = (x.clone(), y.clone())
        return x, y

    monkeypatch.setattr(batches.BatchSource, "train_batch", recording_train_batch)
    monkeypatch.setattr(batches.BatchSource, "meta_batch", recording_meta_batch)
    cfg = parse_biased_config(["--savedir", str(tmp_path / method), "--method", method,
                               "--network", "lenet_tml", "--steps", str(steps),
                               *CLI_FLAGS, *extra])
    train(cfg)
    state = RunRecords(tmp_path / method, is_main=False).load_checkpoint()
    assert len(made["batches"]) == steps
    return cfg, made["initial"], made["batches"], state


def user_step(method: str, model: nn.Module, cfg, num_classes: int, counts):
    """The step object a user would write for ``method`` with the CLI run's settings."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    if method == "erm":
        return taml.ERMStep(model, optimizer)
    if method == "class_balanced":
        return taml.ClassBalancedStep(model, optimizer, counts)
    if method == "focal":
        return taml.FocalStep(model, optimizer, gamma=cfg.focal_gamma)
    if method == "tml":  # TML's original looks ahead at the base lr
        return taml.TMLStep(model, optimizer, num_classes, meta_lr=cfg.meta_lr,
                            meta_every=cfg.meta_every, lookahead_lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    if method == "l2rw":
        return taml.L2RWStep(model, optimizer)
    return taml.MWNetStep(model, optimizer, meta_lr=cfg.meta_lr, seed=cfg.seed)


CASES = [("erm", 2, None), ("class_balanced", 2, None), ("focal", 2, None),
         ("tml", 3, None), ("l2rw", 2, None), ("mwnet", 2, None),
         ("tml", 3, users_net), ("l2rw", 2, users_net), ("mwnet", 2, users_net)]


@pytest.mark.parametrize("method, steps, network", CASES,
                         ids=[f"{m}-{'user' if n else 'lenet'}" for m, _, n in CASES])
def test_each_step_object_equals_the_cli_trainers_step(tmp_path, monkeypatch, method,
                                                       steps, network):
    extra = ("--meta_every", "2") if method == "tml" else ()  # a step with and one without
    cfg, model, recorded, state = cli_run(tmp_path, monkeypatch, method, steps, network,
                                          *extra)
    counts = tuple(fake_data().manifest["counts"])
    stepper = user_step(method, model, cfg, len(counts), counts)
    model.train()
    for batch, meta_batch in recorded:
        stats = stepper.step(batch, meta_batch)
        assert isinstance(stats, taml.StepStats) and isinstance(stats.loss, float)
    assert next(model.parameters()).dtype == torch.float64
    trained = model.state_dict()  # parameters and batch-norm statistics alike
    assert trained.keys() == state["model"].keys()
    for name, value in state["model"].items():
        assert torch.equal(trained[name], value), (method, name)
    for key, value in stepper.state_dict()["method"].items():
        if torch.is_tensor(value):
            assert torch.equal(value, state["method"][key]), key
    if method == "tml":
        assert not torch.equal(stepper.class_weights, torch.full((3,), 1 / 3,
                                                                 dtype=torch.float64))
    if method == "mwnet":
        for name, value in stepper.meta_net.state_dict().items():
            assert torch.equal(value, state["method"]["vnet"][name]), name


def test_a_users_module_and_meta_net_train_in_a_plain_loop():
    """A user's Sequential with batch norm, their own V and meta-optimiser: the step
    reports its weights, moves V, and moves the BN statistics as one training forward."""
    torch.manual_seed(0)
    model = users_net(3, 1, 8)
    meta_net = nn.Sequential(nn.Unflatten(0, (-1, 1)), nn.Linear(1, 8), nn.ReLU(),
                             nn.Linear(8, 1), nn.Sigmoid(), nn.Flatten(0))
    meta_optimizer = torch.optim.SGD(meta_net.parameters(), lr=0.1)
    stepper = taml.MWNetStep(model, torch.optim.SGD(model.parameters(), lr=0.1), meta_net,
                             meta_optimizer)
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 3
    meta = (torch.randn(6, 1, 8, 8), torch.arange(6) % 3)
    reference = copy.deepcopy(model).train()
    v_before = copy.deepcopy(meta_net.state_dict())
    model.train()
    stats = stepper.step((x, y), meta)
    reference(x)  # one ordinary training forward
    for name, buffer in reference.named_buffers():
        assert torch.equal(buffer, dict(model.named_buffers())[name]), name
    assert stepper.meta_net is meta_net
    assert any(not torch.equal(v, meta_net.state_dict()[k]) for k, v in v_before.items())
    assert 0 < stats.weight_min <= stats.weight_mean <= stats.weight_max < 1 / 12
    assert stats.meta_loss == stats.meta_loss  # a number: a meta-update happened
    assert set(stats.as_dict()) == {"loss", "accuracy", "weight_mean", "weight_min",
                                    "weight_max", "zero_weight_share", "meta_loss"}

    erm = taml.ERMStep(model, torch.optim.SGD(model.parameters(), lr=0.1)).step((x, y))
    assert erm.weight_min == erm.weight_max == pytest.approx(1 / 12)
    assert erm.meta_loss != erm.meta_loss  # NaN: ERM has no meta-update
    l2rw = taml.L2RWStep(model, torch.optim.SGD(model.parameters(), lr=0.1)).step((x, y), meta)
    assert l2rw.weight_mean * 12 == pytest.approx(1.0) or l2rw.weight_max == 0


def test_bad_input_names_the_fix():
    model = users_net(3, 1, 8)
    stepper = taml.L2RWStep(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4) % 3
    with pytest.raises(ValueError, match="needs a meta batch"):
        stepper.step((x, y))
    with pytest.raises(ValueError, match="int64 class indices"):
        stepper.step((x, y.float()), (x, y))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        taml.ERMStep(model, [0.1])
    column = nn.Sequential(nn.Unflatten(0, (-1, 1)), nn.Linear(1, 1))  # [B] -> [B, 1]
    with pytest.raises(ValueError, match=r"losses \[B\] to weights \[B\]"):
        taml.MWNetStep(model, torch.optim.SGD(model.parameters(), lr=0.1), column,
                       torch.optim.SGD(column.parameters(), lr=0.1))


X, Y = torch.randn(5, 1, 8, 8), torch.arange(5)  # 5 classes, one example each
META = (torch.randn(5, 1, 8, 8), torch.arange(5))


def sgd(module):
    return torch.optim.SGD(module.parameters(), lr=0.1)


def step_with(make, batch, meta=META):
    model = users_net(5, 1, 8)
    return make(model, sgd(model)).step(batch, meta)


# every bad call or constructor argument of the step objects: (what is built and called,
# what the message must say); each was an IndexError / ZeroDivisionError from inside a
# method, or a step that trained nothing without a word
BAD_STEPS = {
    "empty batch to ERM": (lambda: step_with(taml.ERMStep, (X[:0], Y[:0])),
                           "batch is empty"),
    "empty L2RW meta batch": (lambda: step_with(taml.L2RWStep, (X, Y), (X[:0], Y[:0])),
                              "meta_batch is empty"),
    "class_counts of 2 on 5 classes": (
        lambda: step_with(lambda m, o: taml.ClassBalancedStep(m, o, [10, 5]), (X, Y)),
        r"batch's y must be class indices in 0\.\.1 \(num_classes = 2\)"),
    "class_counts of 2 on a 5-class model": (
        lambda: step_with(lambda m, o: taml.ClassBalancedStep(m, o, [10, 5]),
                          (X[:2], Y[:2])), "the model gives 5 class scores"),
    "TML num_classes 3 on labels 0..4": (
        lambda: step_with(lambda m, o: taml.TMLStep(m, o, 3), (X, Y)),
        r"batch's y must be class indices in 0\.\.2"),
    "negative labels": (lambda: step_with(taml.ERMStep, (X, Y - 1)),
                        "y must be class indices of 0 or more"),
    "uint8 images": (lambda: step_with(taml.ERMStep, ((X * 255).to(torch.uint8), Y)),
                     r"batch's x must be a floating-point tensor"),
    "uint8 meta images": (lambda: step_with(taml.MWNetStep, (X, Y),
                                            (META[0].to(torch.uint8), META[1])),
                          r"meta_batch's x must be a floating-point tensor"),
    "focal gamma nan": (lambda: step_with(lambda m, o: taml.FocalStep(m, o, float("nan")),
                                          (X, Y)), "gamma must be a finite number of 0"),
    "focal gamma negative": (lambda: step_with(lambda m, o: taml.FocalStep(m, o, -1.0),
                                               (X, Y)), "gamma must be a finite number of 0"),
    "TML meta_lr nan": (lambda: step_with(lambda m, o: taml.TMLStep(m, o, 5,
                                                                    meta_lr=float("nan")),
                                          (X, Y)), "meta_lr must be a positive finite"),
    "TML num_classes 1": (lambda: step_with(lambda m, o: taml.TMLStep(m, o, 1), (X, Y)),
                          "num_classes must be at least 2"),
    "TML meta_every 0": (lambda: step_with(lambda m, o: taml.TMLStep(m, o, 5, meta_every=0),
                                           (X, Y)), "meta_every must be at least 1"),
    "MW-Net lookahead_lr nan": (
        lambda: step_with(lambda m, o: taml.MWNetStep(m, o, lookahead_lr=float("nan")),
                          (X, Y)), "lookahead_lr must be a positive finite"),
    "MW-Net hidden 0": (lambda: step_with(lambda m, o: taml.MWNetStep(m, o, hidden=0),
                                          (X, Y)), "hidden must be at least 1"),
    "MW-Net meta-net of another input shape": (
        lambda: step_with(lambda m, o: taml.MWNetStep(m, o, nn.Linear(1, 1)), (X, Y)),
        r"meta_net must map the losses \[B\] to weights \[B\]; on losses of shape"),
    "MW-Net meta-net of another output shape": (
        lambda: step_with(lambda m, o: taml.MWNetStep(m, o, nn.Linear(2, 1)), (X, Y)),
        r"meta_net must map the losses \[B\] to weights \[B\]; it gave \(1,\)"),
    "class_counts with an empty class": (
        lambda: step_with(lambda m, o: taml.ClassBalancedStep(m, o, [3, 0, 1, 1, 1]), (X, Y)),
        "class_counts' entries must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_STEPS))
def test_a_bad_step_argument_names_it(case):
    """One ValueError naming the argument and the fix, before the model or the method's
    state is stepped (taml/run/validate.py's rules, the CLI's for the same numbers)."""
    call, message = BAD_STEPS[case]
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def coloured_batch(n: int = 6, size: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator,
                           dtype=torch.int64).to(torch.uint8)
    images[:, :, :2] = 0  # some background
    return images, torch.arange(n) % 10


def test_lnl_step_equals_the_cli_trainers_unlearning_step():
    from taml.biased.methods import lnl as cli_lnl  # the CLI's LNL trainer

    torch.manual_seed(0)
    cli_model = cli_lnl.LNLNet(10)
    users = copy.deepcopy(cli_model)
    cli = cli_lnl.LNLTrainer(cli_model, lr=0.05, lnl_lambda=0.5, grl_factor=0.3)
    fg = list(users.f.parameters()) + list(users.g.parameters())
    step = taml.LNLStep(users.f, users.g, users.h,
                        torch.optim.SGD(fg, lr=0.05, momentum=0.9, weight_decay=5e-4),
                        torch.optim.SGD(users.h.parameters(), lr=0.05, momentum=0.9,
                                        weight_decay=5e-4),
                        lnl_lambda=0.5, grl_factor=0.3)
    before = copy.deepcopy(users.state_dict())
    for seed in range(2):
        images, labels = coloured_batch(seed=seed)
        expected = cli.unlearn_step(images, labels)
        stats = step.step((images, labels))
        assert isinstance(stats, taml.LNLStats)
        assert (stats.loss, stats.colour_loss, stats.neg_entropy) == (
            expected["loss"], expected["colour_loss"], expected["neg_entropy"])
    for name, value in cli_model.state_dict().items():
        assert torch.equal(users.state_dict()[name], value), name
    for part in ("f.", "g.", "h."):  # every part moved
        assert any(not torch.equal(v, users.state_dict()[k])
                   for k, v in before.items() if k.startswith(part)), part


def test_lnl_step_on_a_users_f_g_and_heads_with_own_colour_targets():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    g = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    class Heads(nn.Module):  # [B, 8, h, w] -> [B, 3, 8 bins, h, w]
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 24, 1)

        def forward(self, features):
            out = self.conv(features)
            return out.view(len(out), 3, 8, *out.shape[-2:])

    heads = Heads()
    step = taml.LNLStep(f, g, heads,
                        torch.optim.SGD([*f.parameters(), *g.parameters()], lr=0.1),
                        torch.optim.SGD(heads.parameters(), lr=0.1))
    images, labels = coloured_batch()
    targets = torch.randint(0, 8, (6, 3, 12, 12))
    targets[:, :, :3] = -100  # not scored
    head_before = heads.conv.weight.detach().clone()
    stats = step.step((images, labels, targets))
    assert stats.colour_loss > 0 and 0 <= stats.accuracy <= 1
    assert not torch.equal(head_before, heads.conv.weight)
    with pytest.raises(ValueError, match="uint8 images"):
        step.step((images.float(), labels))


def test_the_reweighting_names_are_public():
    # their signatures are pinned with every public name's, by test_api_episodic.py
    assert set(REWEIGHTING_NAMES) <= set(taml.__all__)


def test_the_mwnet_example_runs_on_tiny_data(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mwnet_in_your_loop.py"), "--epochs", "2",
         "--steps_per_epoch", "3", "--data_root", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})  # this checkout
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and "test accuracy" in epochs[-1], result.stdout


def _snapshot(step) -> dict:
    """Everything a reweighting step could change, cloned."""
    return {"model": copy.deepcopy(step.model.state_dict()),
            "grads": [None if p.grad is None else p.grad.clone()
                      for p in step.model.parameters()],
            "optimizer": copy.deepcopy(step.optimizer.state_dict()),
            "method": copy.deepcopy(step.method.state_dict()),
            "steps": step.steps_taken, "rng": torch.get_rng_state()}


def _assert_same(before: dict, after: dict) -> None:
    for key in before["model"]:
        assert torch.equal(before["model"][key], after["model"][key]), key
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert repr(before["optimizer"]) == repr(after["optimizer"])
    assert repr(before["method"]) == repr(after["method"])
    assert before["steps"] == after["steps"] and torch.equal(before["rng"], after["rng"])


@pytest.mark.parametrize("name", ["erm", "class_balanced", "focal", "tml", "l2rw", "mwnet"])
def test_weights_reads_a_steps_example_weights_without_changing_anything(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = {"erm": lambda: taml.ERMStep(model, optimizer),
            "class_balanced": lambda: taml.ClassBalancedStep(model, optimizer, [5, 2, 1]),
            "focal": lambda: taml.FocalStep(model, optimizer, gamma=2.0),
            "tml": lambda: taml.TMLStep(model, optimizer, 3, meta_every=1),
            "l2rw": lambda: taml.L2RWStep(model, optimizer),
            "mwnet": lambda: taml.MWNetStep(model, optimizer, hidden=8)}[name]()
    x, y = torch.randn(8, 3, 8, 8), torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    meta = (torch.randn(6, 3, 8, 8), torch.arange(3).repeat(2))
    step.step((x, y), meta)  # momentum, V's Adam state and .grad exist
    before = _snapshot(step)
    weights = step.weights((x, y), meta)
    _assert_same(before, _snapshot(step))
    assert weights.shape == (8,) and not weights.requires_grad
    torch.testing.assert_close(weights, step.compute((x, y), meta).example_weights)
