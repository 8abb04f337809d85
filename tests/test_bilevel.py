"""The bilevel core and the biased-data methods (taml/biased/methods) and their networks
(taml/biased/nets)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from taml.biased.methods import MethodHyper, build_method, core, no_sync
from taml.biased.methods.class_balanced import inverse_frequency_weights
from taml.biased.methods.l2rw import L2RW
from taml.biased.methods.mwnet import MWNet
from taml.biased.methods.tml import TML, project
from taml.biased.nets import build_network
from taml.episodic.learners.inner_loop import per_class_losses

WAY = 3


def small_net(seed: int = 0) -> nn.Module:
    """conv - BN - ReLU - linear, float64: small enough for finite differences."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, WAY)).double()


def batches(seed: int = 1, n: int = 8, m: int = 6, side: int = 6, channels: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=g, dtype=torch.float64)
    meta_x = torch.randn(m, channels, side, side, generator=g, dtype=torch.float64)
    y = torch.arange(n) % WAY
    meta_y = torch.randint(0, WAY, (m,), generator=g)
    return x, y, meta_x, meta_y


def outer_at(model, x, y, coefficients, meta_x, meta_y, step_size, weight_decay=0.0):
    """L_out(θ'(λ)) with no graph: the function the finite differences probe."""
    def inner_loss(logits):
        losses = F.cross_entropy(logits, y, reduction="none")
        return core.weighted_loss(losses, coefficients(losses.detach()))

    with torch.enable_grad():
        ahead = core.lookahead(model, core.parameters_of(model), core.cloned_buffers(model),
                               x, inner_loss, step_size, weight_decay, create_graph=False)
    return core.outer_loss(model, ahead, core.cloned_buffers(model), meta_x, meta_y,
                           weight_decay).item()


def central_difference(f, tensor: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(tensor)
    flat, out = tensor.data.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        out[i] = (plus - minus) / (2 * h)
    return grad


def buffers_of(model):
    return {k: v.clone() for k, v in model.named_buffers()}


# ---------------------------------------------------------------- meta-gradients


@pytest.mark.parametrize("route", ["aligned", "unrolled"])
def test_l2rw_weights_equal_the_closed_form(route):
    """w_i = normalise(max(0, ⟨∇l_i(θ), ∇L_meta(θ)⟩)), per-example gradients in float64."""
    model = small_net()
    x, y, meta_x, meta_y = batches()
    params = core.parameters_of(model)
    losses = F.cross_entropy(core.forward(model, params, core.cloned_buffers(model), x), y,
                             reduction="none")
    meta_grad = torch.autograd.grad(
        core.outer_loss(model, params, core.cloned_buffers(model), meta_x, meta_y),
        list(params.values()))
    dots = []
    for i in range(len(y)):  # l_i through the batch (batch norm couples the examples)
        grad_i = torch.autograd.grad(losses[i], list(params.values()), retain_graph=True)
        dots.append(sum((a * b).sum() for a, b in zip(grad_i, meta_grad, strict=True)))
    kept = torch.stack(dots).clamp(min=0)
    expected = kept / kept.sum()
    assert 0 < (expected > 0).sum() < len(y)  # the max(0, .) is doing something

    out = L2RW(route).step(model, x, y, meta_x, meta_y, lr=0.1, step_index=0)
    torch.testing.assert_close(out.example_weights, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.loss, (expected * losses).sum().detach())


@pytest.mark.parametrize("route", ["aligned", "unrolled"])
def test_tml_meta_gradient_equals_a_finite_difference(route):
    model = small_net()
    x, y, meta_x, meta_y = batches()
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    step_size, decay = 0.3, 0.01

    def coefficients(losses):
        return w[y] / len(y)

    if route == "aligned":
        ahead = core.aligned_lookahead(model, x, y, coefficients, meta_x, meta_y, step_size,
                                       decay)
        (grad,) = ahead.meta_gradient([w], step_size)
    else:
        (grad,), _ = core.unrolled_meta_gradient(model, x, y, coefficients, meta_x, meta_y,
                                                 [w], step_size, decay)
    numeric = central_difference(
        lambda: outer_at(model, x, y, coefficients, meta_x, meta_y, step_size, decay), w)
    assert grad.abs().max() > 1e-3
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("weights", ["mean", "normalised"])
@pytest.mark.parametrize("route", ["aligned", "unrolled"])
def test_mwnet_meta_gradient_equals_a_finite_difference(route, weights):
    model = small_net()
    x, y, meta_x, meta_y = batches()
    method = MWNet(MethodHyper(mwnet_hidden=4, meta_lr=0.0, mwnet_weights=weights), route)
    vnet = method.vnet.double()
    step_size = 0.5
    coefficients = method.coefficients

    meta = list(vnet.parameters())
    if route == "aligned":
        grads = core.aligned_lookahead(model, x, y, coefficients, meta_x, meta_y,
                                       step_size).meta_gradient(meta, step_size)
    else:
        grads, _ = core.unrolled_meta_gradient(model, x, y, coefficients, meta_x, meta_y, meta,
                                               step_size)
    for p, grad in zip(meta, grads, strict=True):
        with torch.no_grad():
            numeric = central_difference(
                lambda: outer_at(model, x, y, coefficients, meta_x, meta_y, step_size), p)
        torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-9)
    assert max(g.abs().max() for g in grads) > 1e-4


@pytest.mark.parametrize("name", ["tml", "l2rw", "mwnet", "mwnet_normalised"])
def test_both_routes_take_the_same_step(name):
    """The aligned route (no double backward, reused forward) gives the same weights, the
    same real-step gradient and the same meta-update as differentiating the lookahead."""
    hp = MethodHyper(meta_lr=0.1, weight_decay=0.01, lookahead_lr=0.2)
    normalised = MethodHyper(meta_lr=0.1, lookahead_lr=0.2, mwnet_weights="normalised")
    classes = {"tml": lambda r: TML(WAY, hp, r), "l2rw": L2RW, "mwnet": lambda r: MWNet(hp, r),
               "mwnet_normalised": lambda r: MWNet(normalised, r)}
    x, y, meta_x, meta_y = batches()
    results = {}
    for route in ("aligned", "unrolled"):
        model, method = small_net(), classes[name](route)
        out = method.step(model, x, y, meta_x, meta_y, lr=0.3, step_index=0)
        out.loss.backward()
        results[route] = (out, [p.grad for p in model.parameters()], method.state_dict(),
                          buffers_of(model))
    (a, a_grads, a_state, a_buf), (u, u_grads, u_state, u_buf) = results.values()
    torch.testing.assert_close(a.loss, u.loss)
    torch.testing.assert_close(a.example_weights, u.example_weights)
    torch.testing.assert_close(a.logits, u.logits)
    for ga, gu in zip(a_grads, u_grads, strict=True):
        torch.testing.assert_close(ga, gu)
    torch.testing.assert_close(a_state, u_state)
    torch.testing.assert_close(a_buf, u_buf)



def test_mwnet_normalised_weights_sum_to_one_per_batch_as_the_class_imbalance_script():
    """--mwnet_weights normalised: the real loss is Σ v_i l_i / Σ v_j with V after its update
    (the 'mean' form's (1/B) Σ v_i l_i rescaled by B / Σ v_j)."""
    model, (x, y, meta_x, meta_y) = small_net(), batches()
    hp = MethodHyper(mwnet_hidden=4, meta_lr=0.1, mwnet_weights="normalised")
    method = MWNet(hp)
    out = method.step(model, x, y, meta_x, meta_y, lr=0.3)
    torch.testing.assert_close(out.example_weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    losses = F.cross_entropy(out.logits, y, reduction="none")
    with torch.no_grad():
        v = method.vnet(losses)
    torch.testing.assert_close(out.loss.detach(), (v * losses).sum() / v.sum())


# ---------------------------------------------------------------- TML


def test_tml_class_weights_are_omegas_per_class_weighting():
    """(1/B) Σ_i w_{y_i} l_i = Σ_c w_c L_c / C, L_c from the episodic inner loop."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, WAY, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    w = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    per_example = core.weighted_loss(F.cross_entropy(logits, y, reduction="none"), w[y] / 10)
    per_class = (w * per_class_losses(logits, y, torch.ones(10), WAY)).sum() / WAY
    torch.testing.assert_close(per_example, per_class)


def test_tml_weights_stay_on_the_simplex_within_the_clip():
    g = torch.Generator().manual_seed(0)
    w = torch.full((5,), 0.2)
    for _ in range(20):
        clipped, w = project(w, 300 * torch.randn(5, generator=g), lr=0.1)
        assert clipped.min() >= 0 and clipped.max() <= 100
        assert w.min() >= 0 and abs(float(w.sum()) - 1) < 1e-6
    assert bool(((clipped == 0) | (clipped == 100)).any())  # the clip was exercised

    model, (x, y, meta_x, meta_y) = small_net(), batches()
    method = TML(WAY, MethodHyper(meta_lr=1e4, lookahead_lr=1.0))
    hit_clip = False
    for step in range(4):
        out = method.step(model, x, y, meta_x, meta_y, lr=0.1, step_index=step)
        out.loss.backward()
        assert method.clipped.min() >= 0 and method.clipped.max() <= 100
        hit_clip |= bool(((method.clipped == 0) | (method.clipped == 100)).any())
        assert method.class_weights.min() >= 0
        assert abs(float(method.class_weights.sum()) - 1) < 1e-9
    assert hit_clip
    assert not torch.allclose(method.class_weights, torch.full((WAY,), 1 / WAY,
                                                               dtype=torch.float64))


def test_tml_updates_its_weights_only_every_meta_every_steps():
    model, (x, y, meta_x, meta_y) = small_net(), batches()
    method = TML(WAY, MethodHyper(meta_lr=1.0, meta_every=3))
    history = []
    for step in range(6):
        method.step(model, x, y, meta_x, meta_y, lr=0.5, step_index=step)
        history.append(method.class_weights.clone())
    assert not torch.equal(history[0], torch.full((WAY,), 1 / WAY, dtype=torch.float64))
    assert torch.equal(history[0], history[1]) and torch.equal(history[1], history[2])
    assert not torch.equal(history[2], history[3])


def test_tml_real_step_is_the_weighted_cross_entropy_with_the_weights_before_the_update():
    model, (x, y, meta_x, meta_y) = small_net(), batches()
    reference = copy.deepcopy(model)
    method = TML(WAY, MethodHyper(meta_lr=1.0, weight_decay=0.01))
    w = method.class_weights.double().clone()
    out = method.step(model, x, y, meta_x, meta_y, lr=0.5, step_index=0)
    out.loss.backward()
    expected = (w[y] / len(y) * F.cross_entropy(reference(x), y, reduction="none")).sum()
    expected.backward()
    torch.testing.assert_close(out.loss, expected.detach())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    assert not torch.allclose(method.class_weights, w)



@pytest.mark.parametrize("route", ["aligned", "unrolled"])
@pytest.mark.parametrize("step_index", [0, 1])
def test_tml_scaled_by_the_classes_takes_erms_step_at_uniform_weights(route, step_index):
    """--tml_scale classes: w = 1/C gives exactly the mean cross-entropy (loss and gradient),
    whether or not the step also updates the weights; the paper's simplex loss is 1/C of it."""
    model, (x, y, meta_x, meta_y) = small_net(), batches()
    reference = copy.deepcopy(model)
    hp = MethodHyper(meta_lr=1.0, meta_every=2, tml_scale="classes")
    out = TML(WAY, hp, route=route).step(model, x, y, meta_x, meta_y, lr=0.5,
                                        step_index=step_index)
    out.loss.backward()
    erm = build_method("erm", WAY, MethodHyper()).step(reference, x, y, None, None, 0.5, 0)
    erm.loss.backward()
    torch.testing.assert_close(out.loss, erm.loss.detach())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    simplex = TML(WAY, MethodHyper(meta_every=2), route=route).step(
        copy.deepcopy(reference), x, y, meta_x, meta_y, lr=0.5, step_index=step_index)
    torch.testing.assert_close(simplex.loss.detach() * WAY, erm.loss.detach())


# ---------------------------------------------------------------- batch norm


def test_a_lookahead_leaves_batch_norm_statistics_unchanged():
    model = build_network("resnet8", WAY, 1, 8).double()
    x, y, meta_x, meta_y = batches(side=8)
    before = buffers_of(model)
    w = torch.full((WAY,), 1 / WAY, dtype=torch.float64, requires_grad=True)

    def coefficients(losses):
        return w[y] / len(y)

    core.lookahead(model, core.parameters_of(model), core.cloned_buffers(model), x,
                   lambda logits: F.cross_entropy(logits, y), 0.1)
    core.unrolled_meta_gradient(model, x, y, coefficients, meta_x, meta_y, [w], 0.1)
    core.aligned_lookahead(model, x, y, coefficients, meta_x, meta_y, 0.1)
    core.aligned_lookahead(model, x, y, None, meta_x, meta_y, 1.0)
    for name, value in buffers_of(model).items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("name", ["tml", "l2rw", "mwnet", "erm"])
def test_the_real_step_moves_batch_norm_statistics_as_one_training_forward(name):
    model = build_network("resnet8", WAY, 1, 8).double()
    x, y, meta_x, meta_y = batches(side=8)
    plain = copy.deepcopy(model)
    plain(x)  # what one ordinary training forward does to the statistics
    before = buffers_of(model)
    method = build_method(name, WAY, MethodHyper(meta_lr=0.1))
    method.step(model, x, y, meta_x, meta_y, lr=0.1, step_index=0)
    after, expected = buffers_of(model), buffers_of(plain)
    assert int(after["bn.num_batches_tracked"]) == int(before["bn.num_batches_tracked"]) + 1
    assert not torch.equal(after["bn.running_mean"], before["bn.running_mean"])
    torch.testing.assert_close(after, expected)


# ---------------------------------------------------------------- baselines


def test_erm_step_is_plain_cross_entropy():
    model, (x, y, _, _) = small_net(), batches()
    out = build_method("erm", WAY, MethodHyper()).step(model, x, y, None, None, 0.1, 0)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))
    torch.testing.assert_close(out.example_weights, torch.full((len(y),), 1 / len(y)))


def test_class_balanced_loss_is_inverse_frequency_weighted_cross_entropy():
    counts = (500, 50, 5)
    weights = inverse_frequency_weights(counts)
    torch.testing.assert_close(weights.sum(), torch.tensor(3.0))
    torch.testing.assert_close(weights[0] / weights[2], torch.tensor(0.01))
    model, (x, y, _, _) = small_net(), batches()
    out = build_method("class_balanced", WAY, MethodHyper(class_counts=counts)).step(
        model, x, y, None, None, 0.1, 0)
    inverse = torch.tensor([1 / 500, 1 / 50, 1 / 5], dtype=torch.float64)
    w = 3 * inverse / inverse.sum()
    expected = (w[y] * F.cross_entropy(out.logits, y, reduction="none")).mean()
    torch.testing.assert_close(out.loss, expected)
    assert inverse_frequency_weights((7, 7, 7)).tolist() == [1.0, 1.0, 1.0]


def test_class_balanced_refuses_missing_counts_in_one_line():
    with pytest.raises(ValueError, match="class counts"):
        build_method("class_balanced", WAY, MethodHyper())
    with pytest.raises(ValueError, match="every class needs"):
        build_method("class_balanced", WAY, MethodHyper(class_counts=(5, 0, 3)))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_focal_loss_is_its_formula(gamma):
    model, (x, y, _, _) = small_net(), batches()
    out = build_method("focal", WAY, MethodHyper(focal_gamma=gamma)).step(
        model, x, y, None, None, 0.1, 0)
    p = F.softmax(out.logits, 1)[torch.arange(len(y)), y]
    torch.testing.assert_close(out.loss, (-(1 - p) ** gamma * p.log()).mean())
    if gamma == 0:
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="choose one of erm, class_balanced"):
        build_method("mixup", WAY, MethodHyper())


# ---------------------------------------------------------------- sync


def test_sync_is_applied_to_the_meta_gradients():
    x, y, meta_x, meta_y = batches()
    hp = MethodHyper(meta_lr=0.5)

    def doubling(tensors):
        calls.append(len(tensors))
        for t in tensors:
            t.mul_(2)

    def negating(tensors):  # the meta-set gradient, not L2RW's one-number normaliser
        calls.append(len(tensors))
        for t in tensors if len(tensors) > 1 else []:
            t.neg_()

    for name, fake in (("tml", doubling), ("mwnet", doubling), ("l2rw", negating)):
        states = []
        for sync in (no_sync, fake):
            calls = []
            method = build_method(name, WAY, hp)
            out = method.step(small_net(), x, y, meta_x, meta_y, lr=0.3, step_index=0,
                              sync=sync)
            states.append((out.example_weights, method.summary()))
        assert calls, name
        assert str(states[0][1]) != str(states[1][1]) or not torch.equal(
            states[0][0], states[1][0]), name


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("name", ["lenet_tml", "lenet_l2rw", "resnet32", "wrn10_2"])
@pytest.mark.parametrize("channels,side", [(1, 28), (3, 32)])
def test_every_network_gives_logits_at_its_input_shapes(name, channels, side):
    model = build_network(name, 7, channels, side)
    assert model(torch.randn(2, channels, side, side)).shape == (2, 7)


def test_wrn28_10_is_the_papers_network():
    model = build_network("wrn28_10", 10, 3, 32)
    assert 36.4e6 < sum(p.numel() for p in model.parameters()) < 36.6e6  # WRN-28-10: 36.5M
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules()) == 12
    resnet = build_network("resnet32", 10, 3, 32)
    assert sum(isinstance(m, nn.Conv2d) for m in resnet.modules()) == 31  # + linear = 32


def test_unknown_network_names_the_choices():
    with pytest.raises(ValueError, match="lenet_tml, lenet_l2rw, resnet32, wrn28_10"):
        build_network("vgg16", 10, 3, 32)


def test_the_forward_mode_pass_sees_the_lookaheads_dropout_masks():
    """With dropout, the aligned route equals the unrolled one from the same random state
    only if its second training forward replays the first one's masks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(16, WAY)).double()
    x, y, meta_x, meta_y = batches()
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, requires_grad=True)

    def coefficients(losses):
        return w[y] / len(y)

    torch.manual_seed(5)
    (unrolled,), _ = core.unrolled_meta_gradient(model, x, y, coefficients, meta_x, meta_y,
                                                 [w], 0.5)
    torch.manual_seed(5)
    aligned = core.aligned_lookahead(model, x, y, coefficients, meta_x, meta_y, 0.5)
    torch.testing.assert_close(aligned.meta_gradient([w], 0.5)[0], unrolled)


@pytest.mark.parametrize("name", ["tml", "l2rw", "mwnet"])
def test_methods_run_on_a_network_without_buffers_and_with_frozen_layers(name):
    model = build_network("lenet_tml", WAY, 1, 28).double()
    model.features[0].weight.requires_grad_(False)  # e.g. a frozen first layer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.arange(6) % WAY
    method = build_method(name, WAY, MethodHyper(meta_lr=0.1))
    out = method.step(model, x, y, x[:3], y[:3], lr=0.1, step_index=0)
    out.loss.backward()
    assert model.features[0].weight.grad is None
    assert model.classifier[-1].weight.grad.abs().sum() > 0
    assert out.example_weights.shape == (6,) and out.logits.shape == (6, WAY)


@pytest.mark.parametrize("name", ["tml", "mwnet"])
def test_a_method_restored_from_its_state_dict_continues_identically(name):
    x, y, meta_x, meta_y = batches()
    hp = MethodHyper(meta_lr=0.1)
    model, method = small_net(), build_method(name, WAY, hp)
    for step in range(2):
        method.step(model, x, y, meta_x, meta_y, lr=0.2, step_index=step).loss.backward()
    restored = build_method(name, WAY, MethodHyper(meta_lr=0.1, seed=7))
    restored.load_state_dict(copy.deepcopy(method.state_dict()))
    twin = copy.deepcopy(model)
    a = method.step(model, x, y, meta_x, meta_y, lr=0.2, step_index=2)
    b = restored.step(twin, x, y, meta_x, meta_y, lr=0.2, step_index=2)
    torch.testing.assert_close(a.example_weights, b.example_weights, rtol=0, atol=0)
    assert str(method.summary()) == str(restored.summary())


def test_benchmark_runs_quick(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    variants = ["erm", "mwnet-ours", "mwnet-higher"]
    done = subprocess.run(
        [sys.executable, "benchmarks/bilevel_step.py", "--quick", "--variants", *variants,
         "--json", str(out)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| mwnet | ours |" in done.stdout and "higher / ours" in done.stdout
    rows = json.loads(out.read_text())["variants"]
    assert list(rows) == variants
    for row in rows.values():
        assert row["seconds"] > 0 and row["peak_memory_mb"] >= 0
