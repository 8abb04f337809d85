"""The fast paths compute what the plain inner loop computes, and the benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import grad

from taml.data.episodes import EpisodeSampler
from taml.episodic.learners import backbone, meta_learner
from taml.episodic.learners.backbone import ModuleBackbone
from taml.episodic.learners.conv4 import BN_EPS, Conv4, images_to_input
from taml.episodic.learners.inner_loop import (
    InnerLoopConfig,
    adapt,
    per_class_losses,
    support_loss,
)
from taml.episodic.learners.meta_learner import MetaLearner, Switches, meta_objective

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


def plain_adapt(params, outer, step_sizes, support_x, support_y, support_mask, config, net,
                omega=None, layer_scales=None, zero_classifier=False):
    """The inner loop as the paper writes it, the reference of ``adapt``'s shortcuts:
    ``grad`` of the whole support loss, every step (``zero_classifier`` is not used)."""
    way = params["dense_b"].shape[-1]

    def loss_fn(current):
        logits = net.forward(current, outer, support_x, support_mask, config.precision)
        return support_loss(per_class_losses(logits, support_y, support_mask, way), omega)

    def step(key):
        size = step_sizes[key] if isinstance(step_sizes, dict) else step_sizes
        return size if layer_scales is None else size * layer_scales[net.layer_index(key)]

    for _ in range(config.n_steps):
        grads = grad(loss_fn)(params)
        params = {k: v - step(k) * (grads[k].detach() if config.first_order else grads[k])
                  for k, v in params.items()}
    return params


def run(batch, switches, first_order, task_batching, exploit, monkeypatch):
    if not exploit:
        monkeypatch.setattr(meta_learner, "adapt", plain_adapt)
    torch.manual_seed(0)
    learner = MetaLearner(switches, 32, 4, 6, InnerLoopConfig(3, 0.4, first_order),
                          Conv4()).double()
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


def adapt_both_ways(params, batch, conv_inputs, net, zero_classifier):
    xs = images_to_input(batch.support_images[0])
    shifts = {k: v.detach() for k, v in net.outer_params().items()}
    results = []
    for inner in (adapt, plain_adapt):
        adapted = inner(params, shifts, 0.4, xs, batch.support_labels[0],
                        batch.support_mask[0].double(), InnerLoopConfig(3, 0.4), net,
                        zero_classifier=zero_classifier)
        loss = sum((v * torch.cos(v)).sum() for v in adapted.values())
        grads = torch.autograd.grad(loss, conv_inputs)
        results.append(([adapted[k] for k in params], list(grads)))
    (fast, fast_grads), (plain, plain_grads) = results
    assert_close_to_scale(fast, plain)
    assert_close_to_scale(fast_grads, plain_grads)


def test_the_inner_loop_without_the_zero_classifier_promise_is_the_plain_loop(batch):
    net = ModuleBackbone(Conv4())
    theta = {k: v.detach().requires_grad_() for k, v in net.initialisation().items()}
    features = 128  # 2 * 2 * 32 at 32 px
    nonzero = {**theta, "dense_w": 0.01 * torch.randn(features, 4), "dense_b": torch.zeros(4)}
    adapt_both_ways(nonzero, batch, list(theta.values()), net, zero_classifier=False)

    # zero but learned: ∂/∂dense_w of step 1's conv gradient is not zero, so no promise
    learned = torch.zeros(features, 4, requires_grad=True)
    zero_learned = {**theta, "dense_w": learned, "dense_b": torch.zeros(4)}
    adapt_both_ways(zero_learned, batch, [*theta.values(), learned], net, zero_classifier=False)

    # the promise kept (a zero constant): step 1 skips the backbone, with the same result
    constant = {**theta, "dense_w": torch.zeros(features, 4), "dense_b": torch.zeros(4)}
    adapt_both_ways(constant, batch, list(theta.values()), net, zero_classifier=True)


def test_benchmark_runs_quick(tmp_path):
    """Every variant on the same backbone as learn2learn's, in both orders, with its memory
    (the 4-conv net: learn2learn on its shift-only batch norm; a user's CNN)."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/meta_iteration.py", "--quick", "--rows", "cnn-8",
         "conv4-32", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["rows"]) == {"cnn-8", "conv4-32"}
    for row in results["rows"].values():
        assert set(row["orders"]) == {"second", "first"}
        for variants in row["orders"].values():
            assert set(variants) == {"l2l-maml", "maml", "maml-vmap", "bayesian-taml"}
            assert variants["l2l-maml"]["speed_up"] == 1
            for cell in variants.values():
                assert cell["seconds"] > 0 and cell["speed_up"] > 0
                assert cell["peak_memory_mb"] >= 0
    assert "| small CNN, 8 px |" in done.stdout and "| 4-conv net, 32 px |" in done.stdout


ALL_ON = Switches(alpha_on=True, omega_on=True, gamma_on=True, z_on=True)


def meta_gradients(batch, switches, how, kl_sizes=None, scale=1.0):
    """The parameters' ``.grad`` after one meta-gradient, computed ``how``: ``graph`` (the
    whole meta-batch's objective backpropagated at once), ``loop`` or ``vmap``
    (``meta_backward``); and the statistics."""
    torch.manual_seed(0)
    learner = MetaLearner(switches, 32, 4, 6, InnerLoopConfig(3, 0.4), Conv4()).double()
    generator = torch.Generator().manual_seed(1)
    if how == "graph":
        outputs = learner(batch, sample=True, generator=generator, task_batching="loop")
        loss, stats = meta_objective(outputs, batch, kl_sizes)
        (loss * scale).backward()
    else:
        loss, stats, outputs = learner.meta_backward(batch, generator, kl_sizes, scale,
                                                     task_batching=how)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p)
             for p in learner.parameters()]
    return grads, loss.detach(), {k: v.detach() for k, v in stats.items()}, outputs


@pytest.mark.parametrize("switches", [Switches(), Switches(alpha_on=True), ALL_ON,
                                      Switches(omega_on=True), Switches(z_on=True)],
                         ids=["maml", "meta-sgd", "bayesian-taml", "omega", "z"])
@pytest.mark.parametrize("how", ["loop", "vmap"])
def test_a_backward_per_task_gives_the_meta_batchs_gradient(batch, switches, how):
    padded = meta_learner.kl_support_sizes(batch, "padded")
    reference, loss, stats, outputs = meta_gradients(batch, switches, "graph", padded, 0.5)
    ours, our_loss, our_stats, our_outputs = meta_gradients(batch, switches, how, padded, 0.5)
    assert_close_to_scale(ours, reference)
    assert any(g.abs().max() > 0 for g in reference)
    torch.testing.assert_close(our_loss, loss, rtol=1e-12, atol=1e-12)
    for key in stats:
        torch.testing.assert_close(our_stats[key], stats[key], rtol=1e-12, atol=1e-12)
    assert_close_to_scale([our_outputs.query_logits], [outputs.query_logits.detach()])
    assert not our_loss.requires_grad and not our_outputs.query_logits.requires_grad
    for name, value in outputs.balancing.items():  # the same posterior samples
        assert torch.equal(our_outputs.balancing[name], value.detach())


def test_the_loop_path_frees_each_tasks_graph_before_the_next_task(batch, monkeypatch):
    """Each task's query loss is backpropagated before the next task is adapted (one
    task's second-order graph alive at a time), then the inference network's share once."""
    events = []
    real_forward, real_backward = ModuleBackbone.forward, torch.autograd.backward
    monkeypatch.setattr(ModuleBackbone, "forward",  # the query logits: once per task
                        lambda *a, **k: events.append("task") or real_forward(*a, **k))
    monkeypatch.setattr(torch.autograd, "backward",  # Tensor.backward calls it too
                        lambda *a, **k: events.append("backward") or real_backward(*a, **k))
    meta_gradients(batch, ALL_ON, "loop")
    assert events == ["task", "backward"] * batch.n_tasks + ["backward"]


def test_native_batch_norm_equals_the_masked_one_to_second_order():
    """bf16 with every row real takes F.batch_norm; in float64 its values, gradients and
    second derivatives equal the plain-op masked version's (mask None and all ones)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, 5, generator=g, requires_grad=True)
    shift = torch.randn(3, generator=g, requires_grad=True)
    weights = torch.randn(6, 3, 5, 5, generator=g)
    results = []
    scale = torch.randn(3, generator=g, requires_grad=True)
    inputs = (x, shift, scale)
    for norm in (backbone.native_batch_norm,
                 lambda x, shift, eps, scale: backbone.masked_batch_norm(x, shift, None, eps,
                                                                        scale),
                 lambda x, shift, eps, scale: backbone.masked_batch_norm(
                     x, shift, torch.ones(6), eps, scale)):
        y = norm(x, shift, BN_EPS, scale)
        first = torch.autograd.grad((weights * y.square()).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((f * f.cos()).sum() for f in first), inputs)
        results.append([y, *first, *second])
    for native, *masked in zip(*results, strict=True):
        for other in masked:
            torch.testing.assert_close(native, other, rtol=1e-10, atol=1e-12)


def test_bf16_with_every_row_real_takes_the_native_batch_norm(monkeypatch):
    calls = []
    real = backbone.native_batch_norm
    monkeypatch.setattr(backbone, "native_batch_norm",
                        lambda *a: calls.append(a[0].dtype) or real(*a))
    x = torch.randn(4, 3, 5, 5)
    for dtype, mask in ((torch.float32, None), (torch.bfloat16, torch.ones(4)),
                        (torch.bfloat16, None)):
        backbone.masked_batch_norm(x.to(dtype), torch.zeros(3), mask, BN_EPS)
    # a user's module's batch norm (a scale, its own eps) takes it too
    backbone.masked_batch_norm(x.to(torch.bfloat16), torch.zeros(3), None, 1e-5, torch.ones(3))
    assert calls == [torch.bfloat16, torch.bfloat16]


def test_bf16_takes_the_native_batch_norm_inside_any_module_backbone(monkeypatch):
    """On the loop path (every row real) in bf16, the 4-conv net's and a module with affine
    batch norm both run F.batch_norm's kernels."""
    calls = []
    real = backbone.native_batch_norm
    monkeypatch.setattr(backbone, "native_batch_norm",
                        lambda *a: calls.append(a[0].dtype) or real(*a))
    x = torch.rand(5, 3, 16, 16, dtype=torch.float32)
    for module, norms in ((Conv4(), 4), (torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()), 1)):
        module = module.float()
        net = ModuleBackbone(module)
        calls.clear()
        net.features(net.initialisation(), net.outer_params(), x, None, "bf16")
        assert calls == [torch.bfloat16] * norms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("switches", [Switches(), ALL_ON], ids=["maml", "bayesian-taml"])
def test_on_cuda_vmap_gives_the_loops_meta_gradient(batch, switches):
    """The GPU default (vmap over tasks) against the loop, on the device, in float64."""
    results = []
    for how in ("loop", "vmap"):
        torch.manual_seed(0)
        learner = MetaLearner(switches, 32, 4, 6, InnerLoopConfig(3, 0.4),
                              Conv4()).double().cuda()
        learner.meta_backward(batch.to("cuda"), torch.Generator().manual_seed(1),
                              task_batching=how)
        results.append([p.grad.cpu() for p in learner.parameters() if p.grad is not None])
    assert_close_to_scale(*results)


def test_precision_error_benchmark_runs(tmp_path):
    out = tmp_path / "error.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/precision_error.py", "--data", "random", "--metabatch", "2",
         "--max_shot",
         "3", "--query", "2", "--n_steps", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(out.read_text())["relative_error"]
    assert set(errors) == {"maml", "meta-sgd"}
    for by_setting in errors.values():
        assert set(by_setting) == {"fp32", "bf16", "fp32 native BN"}
        # float32 is close to float64; bfloat16 is much further off, but not meaningless
        assert 0 < by_setting["fp32"] < 1e-3 < by_setting["bf16"] < 1


def test_profile_benchmark_runs(tmp_path):
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/profile_iteration.py", "--shape", "cifar", "--metabatch",
         "1", "--max_shot", "3", "--query", "2", "--n_steps", "2", "--precision", "bf16",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ops = json.loads(out.read_text())["ops"]
    names = [row["op"] for row in ops]
    assert "aten::mkldnn_convolution" in names or "aten::convolution_backward" in names
    assert all(row["calls"] > 0 for row in ops) and sum(r["self_cpu_share"] for r in ops) <= 1
    assert "| op | self CPU % | calls |" in done.stdout
