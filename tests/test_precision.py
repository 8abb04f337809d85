"""``--precision bf16``: the base learner's conv blocks in bfloat16 under autocast, and
everything the optimiser sees (parameters, their gradients, the inner-loop updates, the
classifier and the losses) in float32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from taml.data.episodes import EpisodeSampler
from taml.episodic.config import parse_config
from taml.episodic.evaluate import meta_test
from taml.episodic.learners import backbone
from taml.episodic.learners.conv4 import Conv4
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches
from taml.episodic.train import meta_train

from .conftest import colour_split
from .test_training import config

ALL_ON = Switches(alpha_on=True, omega_on=True, gamma_on=True, z_on=True)


@pytest.fixture(scope="module")
def batch():
    sampler = EpisodeSampler(colour_split(8, 20, size=32), 4, 6, 3)
    return sampler.sample(2, np.random.default_rng(0))


def meta_gradient(batch, precision, task_batching="loop", switches=ALL_ON):
    torch.manual_seed(0)
    inner = InnerLoopConfig(3, 0.4, precision=precision)
    learner = MetaLearner(switches, 32, 4, 6, inner, Conv4())
    loss, _, outputs = learner.meta_backward(batch, torch.Generator().manual_seed(1),
                                             task_batching=task_batching)
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    return grads, loss, outputs


def relative_error(grads, reference) -> float:
    flat = torch.cat([g.flatten() for g in grads])
    exact = torch.cat([g.flatten() for g in reference])
    return ((flat - exact).norm() / exact.norm()).item()


def test_bf16_runs_the_conv_blocks_in_bfloat16_and_the_rest_in_float32(batch, monkeypatch):
    seen = []
    real = backbone.masked_batch_norm
    # the meta-gradient's calls (the learner's construction measures its feature size with
    # one float32 forward, under no_grad)
    monkeypatch.setattr(backbone, "masked_batch_norm", lambda x, *a: (
        torch.is_grad_enabled() and seen.append(x.dtype)) or real(x, *a))
    grads, loss, outputs = meta_gradient(batch, "fp32")
    assert set(seen) == {torch.float32}
    seen.clear()
    half_grads, half_loss, half_outputs = meta_gradient(batch, "bf16")
    # every batch norm (support and query, every step) sees a bfloat16 convolution
    assert set(seen) == {torch.bfloat16} and len(seen) > 4 * batch.n_tasks
    assert half_loss.dtype == half_outputs.query_logits.dtype == torch.float32
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in half_grads)
    # a real reduced-precision computation (not a no-op), and close to float32's
    assert 0 < abs(half_loss.item() - loss.item()) < 0.02 * loss.item()
    assert 1e-4 < relative_error(half_grads, grads) < 0.5


def test_bf16_on_the_vmap_path(batch):
    grads, _, _ = meta_gradient(batch, "fp32", "vmap")
    half_grads, _, _ = meta_gradient(batch, "bf16", "vmap")
    assert 1e-4 < relative_error(half_grads, grads) < 0.5


def test_bf16_meta_trains_and_tests_from_the_command_line(data_root, tmp_path):
    savedir = tmp_path / "run"
    meta_train(config(data_root, savedir, "--n_train_iters", "2", "--precision", "bf16",
                      "--alpha_on", "--omega_on"))
    assert json.loads((savedir / "config.json").read_text())["precision"] == "bf16"
    same = meta_test(config(data_root, savedir, "--mode", "meta_test", "--precision", "bf16",
                            "--alpha_on", "--omega_on"))
    assert "settings" not in same
    # testing in another precision is allowed, and recorded beside the results
    other = meta_test(config(data_root, savedir, "--mode", "meta_test",
                             "--alpha_on", "--omega_on"))
    assert other["settings"] == {"precision": "fp32"}


def test_precision_flag_is_checked():
    assert parse_config(["--precision", "bf16"]).precision == "bf16"
    assert parse_config([]).precision == "fp32"
    with pytest.raises(SystemExit):
        parse_config(["--precision", "fp16"])
