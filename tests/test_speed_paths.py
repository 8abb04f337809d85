"""The fast paths compute what the plain inner loop computes, and the benchmark runs."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from taml.data.episodes import EpisodeSampler
from taml.learners import base_learner, inner_loop, meta_learner
from taml.learners.inner_loop import InnerLoopConfig, adapt, classifier_starts_at_zero
from taml.learners.meta_learner import MetaLearner, Switches, meta_objective

from .conftest import colour_split

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("float64_default")  # exact comparisons


@pytest.fixture(scope="module")
def batch():
    sampler = EpisodeSampler(colour_split(8, 20, size=32), 4, 6, 3)
    return sampler.sample(2, np.random.default_rng(0))


def assert_close_to_scale(ours: list, reference: list, rel: float = 1e-10) -> None:
    """Equal up to rounding, measured against the largest entry of the whole set: the conv
    biases' meta-gradients are exactly zero in exact arithmetic (batch norm removes a
    per-channel bias), so both paths give rounding noise there."""
    scale = max(r.abs().max().item() for r in reference)
    for a, b in zip(ours, reference, strict=True):
        assert (a - b).abs().max().item() <= rel * scale


def run(batch, switches, first_order, task_batching, exploit, monkeypatch):
    monkeypatch.setattr(meta_learner, "adapt",
                        functools.partial(inner_loop.adapt, exploit_zero_classifier=exploit))
    torch.manual_seed(0)
    learner = MetaLearner(switches, 32, 4, 6, InnerLoopConfig(3, 0.4, first_order)).double()
    outputs = learner(batch, sample=True, generator=torch.Generator().manual_seed(1),
                      task_batching=task_batching)
    loss, _ = meta_objective(outputs, batch)
    params = dict(learner.named_parameters())
    return outputs.query_logits, torch.autograd.grad(loss, list(params.values()))


@pytest.mark.parametrize(("switches", "task_batching"), [
    (Switches(), "loop"),
    (Switches(alpha_on=True, omega_on=True, gamma_on=True, z_on=True), "loop"),
    (Switches(alpha_on=True, omega_on=True, gamma_on=True, z_on=True), "vmap"),
], ids=["maml-loop", "bayesian-taml-loop", "bayesian-taml-vmap"])
def test_zero_classifier_shortcut_gives_the_plain_loops_adaptation_and_meta_gradients(
        batch, switches, task_batching, monkeypatch):
    fast_logits, fast_grads = run(batch, switches, False, task_batching, True, monkeypatch)
    plain_logits, plain_grads = run(batch, switches, False, task_batching, False, monkeypatch)
    torch.testing.assert_close(fast_logits, plain_logits, rtol=1e-10, atol=1e-12)
    assert_close_to_scale(fast_grads, plain_grads)


def test_zero_classifier_shortcut_first_order(batch, monkeypatch):
    all_on = Switches(True, True, True, True)
    fast_logits, fast_grads = run(batch, all_on, True, "loop", True, monkeypatch)
    plain_logits, plain_grads = run(batch, all_on, True, "loop", False, monkeypatch)
    torch.testing.assert_close(fast_logits, plain_logits, rtol=1e-10, atol=1e-12)
    assert_close_to_scale(fast_grads, plain_grads)


def adapt_both_ways(params, batch, conv_inputs):
    xs = base_learner.images_to_input(batch.support_images[0])
    shifts = {f"bn{l}": torch.zeros(32) for l in range(1, 5)}
    results = []
    for exploit in (True, False):
        adapted = adapt(params, shifts, 0.4, xs, batch.support_labels[0],
                        batch.support_mask[0].double(), InnerLoopConfig(3, 0.4),
                        exploit_zero_classifier=exploit)
        loss = sum((v * torch.cos(v)).sum() for v in adapted.values())
        grads = torch.autograd.grad(loss, conv_inputs)
        results.append(([adapted[k] for k in base_learner.ADAPTED_KEYS], list(grads)))
    (fast, fast_grads), (plain, plain_grads) = results
    assert_close_to_scale(fast, plain)
    assert_close_to_scale(fast_grads, plain_grads)


def test_a_nonzero_or_learned_classifier_takes_the_general_path(batch):
    theta = {k: v.requires_grad_() for k, v in
             base_learner.init_conv_params(torch.Generator().manual_seed(0)).items()}
    features = base_learner.feature_size(32)
    nonzero = {**theta, "dense_w": 0.01 * torch.randn(features, 4), "dense_b": torch.zeros(4)}
    assert not classifier_starts_at_zero(nonzero)
    adapt_both_ways(nonzero, batch, list(theta.values()))

    # zero but learned: ∂/∂dense_w of step 1's conv gradient is not zero, so no shortcut
    learned = torch.zeros(features, 4, requires_grad=True)
    zero_learned = {**theta, "dense_w": learned, "dense_b": torch.zeros(4)}
    assert not classifier_starts_at_zero(zero_learned)
    adapt_both_ways(zero_learned, batch, [*theta.values(), learned])

    constant = {**theta, "dense_w": torch.zeros(features, 4), "dense_b": torch.zeros(4)}
    assert classifier_starts_at_zero(constant)
    adapt_both_ways(constant, batch, list(theta.values()))


def test_benchmark_runs_quick(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/meta_iteration.py", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x l2l" in done.stdout
    rows = json.loads(out.read_text())["shapes"]["cifar"]["variants"]
    assert set(rows) == {"l2l-maml", "maml", "meta-sgd", "bayesian-taml", "maml first-order"}
    for row in rows.values():
        assert row["seconds"] > 0 and row["peak_memory_mb"] >= 0
        assert row["gflop"] > 0
        assert row["gflops_per_s"] == pytest.approx(row["gflop"] / row["seconds"])
    # the FLOP count sees the work each variant does: Meta-SGD's learned step sizes add no
    # convolution, the zero classifier saves us step 1's conv backward that learn2learn
    # runs, and first order drops the double backward
    assert rows["meta-sgd"]["gflop"] == rows["maml"]["gflop"] < rows["l2l-maml"]["gflop"]
    assert rows["maml first-order"]["gflop"] < rows["maml"]["gflop"]
    assert "% peak" in done.stdout
    peaks = json.loads(out.read_text())["peak_gflops"]
    assert peaks["fp32"] > 0 and peaks["bf16"] > 0
