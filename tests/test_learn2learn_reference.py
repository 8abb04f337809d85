"""Our MAML equals learn2learn's MAML where both compute the same function.

The configuration: the same 4-conv net with a zero classifier init, full batches (no
padding), batch-norm shifts held fixed in both (learn2learn adapts every parameter of its
module, we never adapt batch norm), and the mean support cross-entropy (what the
unweighted mean over classes of L_c equals).
"""

from __future__ import annotations

import copy
from operator import attrgetter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from taml.data.episodes import EpisodeSampler
from taml.episodic.learners.backbone import masked_batch_norm
from taml.episodic.learners.conv4 import BN_EPS, Conv4, images_to_input
from taml.episodic.learners.inner_loop import InnerLoopConfig, adapt
from taml.episodic.learners.meta_learner import MetaLearner, Switches, meta_objective

from .conftest import colour_split

l2l = pytest.importorskip("learn2learn", reason="learn2learn is built by scripts/install.sh")


class ConvNet(nn.Module):
    """Our 4-conv net's blocks with the batch-norm shifts as buffers (held fixed), and the
    zero classifier as parameters, for learn2learn to clone and adapt."""

    def __init__(self, backbone: Conv4, features: int, way: int):
        super().__init__()
        for l in range(1, 5):
            setattr(self, f"conv{l}", copy.deepcopy(getattr(backbone, f"conv{l}")))
            self.register_buffer(f"bn{l}", getattr(backbone, f"bn{l}").bias.detach().clone())
        self.dense_w = nn.Parameter(torch.zeros(features, way))
        self.dense_b = nn.Parameter(torch.zeros(way))

    def forward(self, x):
        for l in range(1, 5):
            x = getattr(self, f"conv{l}")(x)
            x = masked_batch_norm(x, getattr(self, f"bn{l}"), None, BN_EPS)
            x = F.max_pool2d(F.relu(x), 2)
        return x.flatten(1) @ self.dense_w + self.dense_b


ADAPTED = (*(f"conv{l}.{p}" for l in range(1, 5) for p in ("weight", "bias")),
           "dense_w", "dense_b")


@pytest.mark.parametrize("n_steps", [1, 3])
def test_adapted_parameters_and_meta_gradient_match_learn2learn(n_steps):
    torch.set_default_dtype(torch.float64)
    try:
        way, inner_lr = 4, 0.4
        sampler = EpisodeSampler(colour_split(8, 20), way, 6, 3, mode="task")
        batch = sampler.sample(2, np.random.default_rng(3))
        ours = MetaLearner(Switches(), 32, way, 6, InnerLoopConfig(n_steps, inner_lr),
                           Conv4()).double()
        outputs = ours(batch, task_batching="loop")
        loss, _ = meta_objective(outputs, batch)
        loss.backward()

        reference = ConvNet(ours.backbone, ours.dense_w.shape[0], way).double()
        maml = l2l.algorithms.MAML(reference, lr=inner_lr, first_order=False)
        query_losses = []
        for t in range(batch.n_tasks):
            task = batch.task(t)
            xs = images_to_input(task.support_images[0])
            xq = images_to_input(task.query_images[0])
            learner = maml.clone()
            for _ in range(n_steps):
                support = nn.functional.cross_entropy(learner(xs), task.support_labels[0])
                learner.adapt(support)
            ours_adapted = adapt(ours.initialisation(), ours.outer_params(), inner_lr, xs,
                                 task.support_labels[0], task.support_mask[0].double(),
                                 InnerLoopConfig(n_steps, inner_lr), ours.functional,
                                 zero_classifier=True)
            for key in ADAPTED:
                torch.testing.assert_close(ours_adapted[key], attrgetter(key)(learner.module),
                                           rtol=1e-5, atol=1e-9, msg=key)
            logits = learner(xq)
            torch.testing.assert_close(logits, outputs.query_logits[t], rtol=1e-7, atol=1e-9)
            query_losses.append(nn.functional.cross_entropy(logits, task.query_labels[0]))
        torch.stack(query_losses).mean().backward()

        for key, value in ours.backbone.named_parameters():
            if key.startswith("conv"):
                torch.testing.assert_close(value.grad, attrgetter(key)(reference).grad,
                                           rtol=1e-5, atol=1e-9, msg=key)
    finally:
        torch.set_default_dtype(torch.float32)
