"""The functional core: what each learner and each balancing variable does, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from taml.data.episodes import EpisodeSampler
from taml.episodic.learners.backbone import ModuleBackbone, feature_size
from taml.episodic.learners.bayesian_taml import ORIGINAL_SIGMA_INIT
from taml.episodic.learners.conv4 import Conv4, images_to_input
from taml.episodic.learners.inference_net import InferenceNetwork, Posterior
from taml.episodic.learners.inner_loop import (
    InnerLoopConfig,
    adapt,
    per_class_losses,
    support_loss,
)
from taml.episodic.learners.meta_learner import (
    MetaLearner,
    Switches,
    meta_objective,
    predictive_accuracy,
)

from .conftest import colour_split

ALL_ON = Switches(True, True, True, True)


pytestmark = pytest.mark.usefixtures("float64_default")  # exact comparisons


@pytest.fixture
def batch():
    sampler = EpisodeSampler(colour_split(8, 20, size=32), 4, 6, 3)
    return sampler.sample(3, np.random.default_rng(0))


def make_learner(switches=None, n_steps=2, inner_lr=0.4, first_order=False, way=4):
    torch.manual_seed(0)
    switches = switches or Switches()
    learner = MetaLearner(switches, 32, way, 6, InnerLoopConfig(n_steps, inner_lr, first_order),
                          Conv4())
    return learner.double()


def meta_gradients(learner, batch, task_batching, seed=1):
    outputs = learner(batch, sample=True, generator=torch.Generator().manual_seed(seed),
                      task_batching=task_batching)
    loss, _ = meta_objective(outputs, batch)
    params = dict(learner.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    return outputs, dict(zip(params, grads, strict=True))


@pytest.mark.parametrize("switches", [Switches(), Switches(alpha_on=True), ALL_ON])
def test_vmap_over_tasks_equals_task_by_task(batch, switches):
    """The batched path (padded supports + masks) gives the task-by-task results, including
    second-order meta-gradients (vmap + batch norm is a known way to get these wrong)."""
    learner = make_learner(switches)
    out_v, grads_v = meta_gradients(learner, batch, "vmap")
    out_l, grads_l = meta_gradients(learner, batch, "loop")
    torch.testing.assert_close(out_v.query_logits, out_l.query_logits, rtol=0, atol=1e-10)
    for name in grads_v:
        torch.testing.assert_close(grads_v[name], grads_l[name], rtol=1e-8, atol=1e-12,
                                   msg=name)


def test_padding_rows_change_nothing(batch):
    """A task padded with zero rows inside a meta-batch = the same task alone, unpadded."""
    learner = make_learner(ALL_ON)
    sizes = batch.support_sizes
    padded_task = int(torch.argmin(sizes))  # the smallest task carries the most padding
    assert sizes[padded_task] < batch.support_labels.shape[1]
    alone = batch.task(padded_task)
    out_all = learner(batch, sample=False, task_batching="vmap")
    out_one = learner(alone, sample=False, task_batching="vmap")
    torch.testing.assert_close(out_all.query_logits[padded_task], out_one.query_logits[0])
    torch.testing.assert_close(out_all.kl[padded_task], out_one.kl[0])
    # ...and changing the padding's pixels changes nothing either
    noisy = batch.support_images.clone()
    noisy[~batch.support_mask] = 255
    out_noisy = learner(type(batch)(**{**batch.__dict__, "support_images": noisy}),
                        sample=False, task_batching="vmap")
    torch.testing.assert_close(out_noisy.query_logits, out_all.query_logits)


def test_per_class_loss_is_class_sum_times_way_over_n():
    logits = torch.randn(7, 3)
    labels = torch.tensor([0, 0, 0, 1, 2, 2, -1])
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 0.0])
    losses = F.cross_entropy(logits[:6], labels[:6], reduction="none")
    expected = torch.stack([losses[labels[:6] == c].sum() for c in range(3)]) * 3 / 6
    torch.testing.assert_close(per_class_losses(logits, labels, mask, 3), expected)
    # ω = 0 is the uniform weighting: the same as ω switched off (the mean)
    class_losses = per_class_losses(logits, labels, mask, 3)
    torch.testing.assert_close(support_loss(class_losses, torch.zeros(3)),
                               support_loss(class_losses, None))
    torch.testing.assert_close(support_loss(class_losses, None), losses.mean())


def _one_task(batch):
    x = images_to_input(batch.support_images[0])
    return x, batch.support_labels[0], batch.support_mask[0].double()


def _params(way=4):
    """The 4-conv net as the inner loop sees it, its θ with a random (nonzero) classifier,
    and its batch-norm shifts."""
    g = torch.Generator().manual_seed(3)
    net = ModuleBackbone(Conv4(generator=g))
    params = {k: v.detach() for k, v in net.initialisation().items()}
    params["dense_w"] = torch.randn(feature_size(net, (3, 32, 32)), way, generator=g) * 0.1
    params["dense_b"] = torch.zeros(way)
    return net, params, {k: v.detach() for k, v in net.outer_params().items()}


def test_gamma_scales_each_layers_step(batch):
    net, params, bn = _params()
    x, y, mask = _one_task(batch)
    one_step = InnerLoopConfig(1, 0.3)
    plain = adapt(params, bn, 0.3, x, y, mask, one_step, net)
    gamma = torch.tensor([0.5, -0.2, 0.0, 1.0, -1.0])
    scaled = adapt(params, bn, 0.3, x, y, mask, one_step, net, layer_scales=torch.exp(gamma))
    layers = [f"conv{l}.{p}" for l in range(1, 5) for p in ("weight", "bias")]
    for key, layer in [*((k, int(k[4]) - 1) for k in layers), ("dense_w", 4), ("dense_b", 4)]:
        factor = torch.exp(gamma[layer])
        torch.testing.assert_close(scaled[key] - params[key], factor * (plain[key] - params[key]))


def test_omega_reweights_classes(batch):
    net, params, bn = _params()
    x, y, mask = _one_task(batch)
    config = InnerLoopConfig(1, 0.3)
    uniform = adapt(params, bn, 0.3, x, y, mask, config, net, omega=torch.zeros(4))
    off = adapt(params, bn, 0.3, x, y, mask, config, net)
    skewed = adapt(params, bn, 0.3, x, y, mask, config, net, omega=torch.tensor([3.0, 0, 0, 0]))
    for key in off:
        torch.testing.assert_close(uniform[key], off[key])
    assert not torch.allclose(skewed["dense_w"], off["dense_w"])


def test_z_modulates_the_initialisation_and_changes_the_adapted_parameters(batch):
    """A known porting bug: a port computed z's modulation and never used it."""
    net, params, bn = _params()
    z_w, z_b = torch.randn(4, 32) * 0.3, torch.randn(4, 32) * 0.3
    # z: the kernel scales of conv1..4, then their bias shifts (the original's 256 values)
    modulated = net.modulate(params, torch.cat([z_w.flatten(), z_b.flatten()]))
    torch.testing.assert_close(modulated["conv2.weight"][5],
                               params["conv2.weight"][5] * (1 + z_w[1, 5]))
    torch.testing.assert_close(modulated["conv3.bias"], params["conv3.bias"] + z_b[2])
    assert modulated["dense_w"] is params["dense_w"]  # the classifier is not modulated
    identity = net.modulate(params, torch.zeros(256))
    for key in params:
        torch.testing.assert_close(identity[key], params[key])
    x, y, mask = _one_task(batch)
    config = InnerLoopConfig(2, 0.3)
    a = adapt(params, bn, 0.3, x, y, mask, config, net)
    b = adapt(modulated, bn, 0.3, x, y, mask, config, net)
    assert not torch.allclose(a["conv1.weight"], b["conv1.weight"])
    # through the whole learner: the z switch changes the query predictions
    learner_z = make_learner(Switches(z_on=True))
    with torch.no_grad():
        learner_z.inference.z.mean.bias.fill_(0.5)
    base = make_learner(Switches())
    base.load_state_dict({k: v for k, v in learner_z.state_dict().items()
                          if not k.startswith("inference.")})
    assert not torch.allclose(learner_z(batch).query_logits, base(batch).query_logits)


def test_meta_sgd_with_alpha_equal_to_inner_lr_is_maml(batch):
    maml = make_learner(Switches(), inner_lr=0.01)  # α starts at 0.01 everywhere
    meta_sgd = make_learner(Switches(alpha_on=True))
    meta_sgd.load_state_dict(maml.state_dict(), strict=False)
    torch.testing.assert_close(maml(batch).query_logits, meta_sgd(batch).query_logits)


def test_each_switch_adds_exactly_its_parameters():
    names = {s: {n.split(".")[1] for n, _ in make_learner(s).named_parameters()
                 if n.startswith("inference.")} for s in
             (Switches(omega_on=True), Switches(gamma_on=True), Switches(z_on=True))}
    heads = {"omega", "gamma", "z"}
    assert names[Switches(omega_on=True)] & heads == {"omega"}
    assert names[Switches(gamma_on=True)] & heads == {"gamma"}
    assert names[Switches(z_on=True)] & heads == {"z"}
    assert not any(n.startswith("inference") for n, _ in make_learner().named_parameters())
    assert not any(n.startswith("alpha") for n, _ in make_learner().named_parameters())


def test_classifier_init_is_zero_and_bn_is_not_adapted(batch):
    learner = make_learner()
    assert learner.dense_w.abs().sum() == 0 and learner.dense_b.abs().sum() == 0
    assert "dense_w" not in dict(learner.named_parameters())
    _, grads = meta_gradients(learner, batch, "loop")
    assert grads["backbone.bn2.bias"].abs().sum() > 0  # learned in the outer loop


def test_first_order_drops_second_order_terms_but_still_learns(batch):
    second = make_learner()
    first = make_learner(first_order=True)
    _, g2 = meta_gradients(second, batch, "loop")
    _, g1 = meta_gradients(first, batch, "loop")
    assert g1["backbone.conv1.weight"].abs().sum() > 0
    assert not torch.allclose(g1["backbone.conv1.weight"], g2["backbone.conv1.weight"])


def test_kl_matches_torch_distributions():
    mean, std = torch.randn(3, 5), torch.rand(3, 5) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(Posterior(mean, std).kl_to_standard_normal(), expected)


def test_kl_is_scaled_by_support_plus_query_rows(batch):
    learner = make_learner(ALL_ON)
    outputs = learner(batch, sample=False)
    _, per_task = meta_objective(outputs, batch)
    n_plus_m = batch.support_sizes.double() + batch.query_labels.shape[1]
    torch.testing.assert_close(per_task["kl"], outputs.kl / n_plus_m)
    assert (outputs.kl > 0).all()


def test_inference_network_ignores_padding(batch):
    net = InferenceNetwork(32, 6, True, True, True).double()
    x = images_to_input(batch.support_images)
    full = net(x, batch.support_labels, batch.support_mask, 4)
    t = int(torch.argmin(batch.support_sizes))
    n = int(batch.support_sizes[t])
    alone = net(x[t : t + 1, :n], batch.support_labels[t : t + 1, :n],
                batch.support_mask[t : t + 1, :n], 4)
    for key in full:
        torch.testing.assert_close(full[key].mean[t], alone[key].mean[0])
        torch.testing.assert_close(full[key].std[t], alone[key].std[0])


@pytest.mark.parametrize("sigma_init", [ORIGINAL_SIGMA_INIT, 0.2])
def test_sigma_init_sets_every_posteriors_std_at_initialisation(batch, sigma_init):
    net = InferenceNetwork(32, 6, True, True, True, sigma_init=sigma_init).double()
    x = images_to_input(batch.support_images)
    posteriors = net(x, batch.support_labels, batch.support_mask, 4)
    for key, posterior in posteriors.items():  # the heads' weights are small: σ ≈ its bias
        std = posterior.std[batch.support_sizes > 0]
        assert std.mean().item() == pytest.approx(sigma_init, rel=0.05), key
    if sigma_init == ORIGINAL_SIGMA_INIT:  # the original's init exactly: zero biases
        assert all(float(head.pre_std.bias.abs().max()) == 0.0
                   for head in (net.omega, net.gamma, net.z))


def test_monte_carlo_prediction_averages_softmax_over_samples(batch):
    learner = make_learner(ALL_ON)
    with torch.no_grad():
        for head in (learner.inference.omega, learner.inference.gamma, learner.inference.z):
            head.pre_std.bias.fill_(1.0)  # wide posteriors: samples differ visibly
    n_samples = 3
    acc = predictive_accuracy(learner, batch, n_samples, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    probs = sum(torch.softmax(learner(batch, sample=True, generator=generator).query_logits, -1)
                for _ in range(n_samples)) / n_samples
    expected = (probs.argmax(-1) == batch.query_labels).double().mean(1)
    torch.testing.assert_close(acc, expected)
    means = predictive_accuracy(learner, batch, 0, None)
    logits = learner(batch, sample=False).query_logits
    torch.testing.assert_close(means, (logits.argmax(-1) == batch.query_labels).double().mean(1))


@pytest.mark.parametrize("task_batching", ["loop", "vmap"])
def test_evaluation_without_a_meta_graph_adapts_the_same(batch, task_batching):
    """predictive_accuracy runs under torch.no_grad for speed: the inner loop's torch.func
    gradients must ignore it (else nothing would adapt and accuracy would be the zero
    classifier's)."""
    learner = make_learner(ALL_ON, n_steps=3)
    with_graph = learner(batch, sample=False, task_batching=task_batching).query_logits
    with torch.no_grad():
        without = learner(batch, sample=False, task_batching=task_batching).query_logits
    assert with_graph.requires_grad and not without.requires_grad
    assert with_graph.abs().max() > 0  # adapted: the zero classifier alone gives 0 logits
    torch.testing.assert_close(without, with_graph.detach(), rtol=1e-12, atol=1e-12)
    expected = (with_graph.argmax(-1) == batch.query_labels).double().mean(1)
    torch.testing.assert_close(predictive_accuracy(learner, batch, 0, None, task_batching),
                               expected)
