"""The meta-learner: θ, α, the batch-norm shifts and the inference network, around the
shared inner loop. MAML, Meta-SGD and Bayesian TAML are configurations of it (see
``maml.py``, ``meta_sgd.py``, ``bayesian_taml.py``); every switch works alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from taml.data.episodes import EpisodeBatch
from taml.learners import base_learner
from taml.learners.inference_net import InferenceNetwork
from taml.learners.inner_loop import InnerLoopConfig, adapt, modulate_init

ALPHA_INIT = 0.01  # the original's Meta-SGD initial step size, every entry


@dataclass(frozen=True)
class Switches:
    alpha_on: bool = False
    omega_on: bool = False
    gamma_on: bool = False
    z_on: bool = False

    @property
    def any_balancing(self) -> bool:
        return self.omega_on or self.gamma_on or self.z_on


@dataclass(frozen=True)
class TaskOutputs:
    """``query_logits`` ``[T, M, way]``; ``kl`` ``[T]`` (zeros without balancing variables);
    ``balancing``: the values fed to the inner loop, ``omega`` ``[T, way]``, ``gamma``
    ``[T, 5]``, ``z`` ``[T, 256]`` (the ones switched on)."""

    query_logits: torch.Tensor
    kl: torch.Tensor
    balancing: dict[str, torch.Tensor]


class MetaLearner(nn.Module):
    """Meta-parameters and the forward pass of a meta-batch.

    The classifier's initialisation is fixed at zero and is not meta-learned: the original
    builds it with ``tf.zeros`` (a constant, not a variable). Class labels are arbitrary
    per task, so a shared classifier init carries no knowledge; zero makes the first inner
    step fit the classifier alone. Meta-SGD's classifier α is one learned column shared by
    every class, as the original.
    """

    def __init__(
        self,
        switches: Switches,
        image_size: int,
        way: int,
        max_shot: int,
        inner: InnerLoopConfig,
        omega_reads_statistics: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.switches, self.inner, self.way = switches, inner, way
        features = base_learner.feature_size(image_size)
        self.theta = nn.ParameterDict(base_learner.init_conv_params(generator))
        self.register_buffer("dense_w", torch.zeros(features, way))
        self.register_buffer("dense_b", torch.zeros(way))
        self.bn_shifts = nn.ParameterDict(
            {f"bn{l}": torch.zeros(base_learner.N_FILTERS) for l in range(1, 5)}
        )
        self.alpha = None
        if switches.alpha_on:
            alpha = {k: torch.full_like(v, ALPHA_INIT) for k, v in self.theta.items()}
            alpha["dense_w_column"] = torch.full((features, 1), ALPHA_INIT)
            alpha["dense_b_column"] = torch.full((1,), ALPHA_INIT)
            self.alpha = nn.ParameterDict(alpha)
        self.inference = None
        if switches.any_balancing:
            self.inference = InferenceNetwork(
                image_size, max_shot, switches.omega_on, switches.gamma_on, switches.z_on,
                omega_reads_statistics=omega_reads_statistics, generator=generator,
            )

    def initialisation(self) -> dict[str, torch.Tensor]:
        """θ with the classifier: the inner loop's starting point (before z)."""
        return {**self.theta, "dense_w": self.dense_w, "dense_b": self.dense_b}

    def step_sizes(self) -> dict[str, torch.Tensor] | float:
        if self.alpha is None:
            return self.inner.inner_lr
        steps = {k: v for k, v in self.alpha.items() if not k.endswith("_column")}
        steps["dense_w"] = self.alpha["dense_w_column"].expand(-1, self.way)
        steps["dense_b"] = self.alpha["dense_b_column"].expand(self.way)
        return steps

    def posterior_balancing(
        self, support_x: torch.Tensor, batch: EpisodeBatch, sample: bool,
        generator: torch.Generator | None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Balancing variables (a posterior sample, or the means) and KL ``[T]``."""
        kl = support_x.new_zeros(batch.n_tasks)
        if self.inference is None:
            return {}, kl
        posteriors = self.inference(support_x, batch.support_labels, batch.support_mask,
                                    self.way)
        values = {}
        for name, q in posteriors.items():
            values[name] = q.sample(generator) if sample else q.mean
            kl = kl + q.kl_to_standard_normal()
        return values, kl

    def forward(
        self,
        batch: EpisodeBatch,
        sample: bool = False,
        generator: torch.Generator | None = None,
        task_batching: str = "auto",
        n_steps: int | None = None,
    ) -> TaskOutputs:
        """Adapts to every task of ``batch`` and classifies its query set.

        ``sample``: one posterior sample per task (meta-training, MC) or the posterior
        means (validation). ``n_steps`` overrides the configured inner steps (meta-test).
        """
        dtype = self.theta["conv1_w"].dtype
        support_x = base_learner.images_to_input(batch.support_images, dtype)
        query_x = base_learner.images_to_input(batch.query_images, dtype)
        support_mask = batch.support_mask.to(dtype)
        balancing, kl = self.posterior_balancing(support_x, batch, sample, generator)

        init, bn_shifts, steps = self.initialisation(), dict(self.bn_shifts), self.step_sizes()
        config = self.inner
        if n_steps is not None:
            config = InnerLoopConfig(n_steps, config.inner_lr, config.first_order)

        def one_task(values, xs, ys, mask, xq):
            params = init
            if "z" in values:
                half = values["z"].shape[-1] // 2
                params = modulate_init(params, values["z"][:half].view(4, -1),
                                       values["z"][half:].view(4, -1))
            scales = torch.exp(values["gamma"]) if "gamma" in values else None
            adapted = adapt(params, bn_shifts, steps, xs, ys, mask, config,
                            omega=values.get("omega"), layer_scales=scales)
            return base_learner.forward(adapted, bn_shifts, xq)

        if task_batching == "auto":
            # vmap's batched (grouped) convolutions are meant for a GPU; on CPU one task at a
            # time, cut to its real rows, measured 3x faster (docs/benchmarks.md)
            task_batching = "vmap" if support_x.is_cuda else "loop"
        if task_batching == "vmap":
            logits = vmap(one_task)(balancing, support_x, batch.support_labels, support_mask,
                                    query_x)
        elif task_batching == "loop":
            # one task at a time, each cut to its real rows: no work spent on padding
            sizes = batch.support_sizes.tolist()
            logits = torch.stack([
                one_task({k: v[t] for k, v in balancing.items()}, support_x[t, :n],
                         batch.support_labels[t, :n], support_mask[t, :n], query_x[t])
                for t, n in enumerate(sizes)
            ])
        else:
            raise ValueError(f"task_batching must be auto, vmap or loop, got {task_batching!r}")
        return TaskOutputs(logits, kl, balancing)

    @torch.no_grad()
    def balancing_means(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Posterior means as the tables print them: softmax(ω) ``[T, way]`` and exp(γ)
        ``[T, 5]`` (those switched on)."""
        dtype = self.theta["conv1_w"].dtype
        support_x = base_learner.images_to_input(batch.support_images, dtype)
        values, _ = self.posterior_balancing(support_x, batch, sample=False, generator=None)
        out = {}
        if "omega" in values:
            out["omega"] = torch.softmax(values["omega"], dim=-1)
        if "gamma" in values:
            out["gamma"] = torch.exp(values["gamma"])
        return out


def kl_support_sizes(batch: EpisodeBatch, normaliser: str = "task",
                     padded_size: int | None = None) -> torch.Tensor:
    """int64 ``[T]``: the N of each task's KL / (N + M).

    ``task``: the task's real support size. ``padded``: the original's ``N_t =
    tf.shape(xtr)[0]``, the support length of the meta-batch padded to its largest task, the
    same for every task (a small task's KL then weighs less). ``padded_size`` is that length
    when the meta-batch is drawn as several shards (the largest over all of them); by
    default this batch's largest real support size. Only the KL is affected: batch norm,
    the support loss and the accuracy stay masked to the real rows.
    """
    sizes = batch.support_sizes
    if normaliser == "task":
        return sizes
    if normaliser == "padded":
        size = int(sizes.max()) if padded_size is None else padded_size
        return torch.full_like(sizes, size)
    raise ValueError(f"kl normaliser must be task or padded, got {normaliser!r}")


def task_losses(outputs: TaskOutputs, batch: EpisodeBatch,
                kl_sizes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-task query cross-entropy, KL / (N + M) and accuracy, each ``[T]``; N is
    ``kl_sizes`` (:func:`kl_support_sizes`), by default each task's real support size."""
    logits, labels = outputs.query_logits, batch.query_labels
    cross_entropy = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)
    n_query = labels.shape[1]
    support = batch.support_sizes if kl_sizes is None else kl_sizes
    kl = outputs.kl / (support.to(device=outputs.kl.device, dtype=outputs.kl.dtype) + n_query)
    accuracy = (logits.argmax(-1) == labels).to(logits.dtype).mean(1)
    return {"cross_entropy": cross_entropy, "kl": kl, "accuracy": accuracy}


def meta_objective(outputs: TaskOutputs, batch: EpisodeBatch,
                   kl_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Mean query cross-entropy + mean KL / (N + M) over the meta-batch (the paper's
    evidence lower bound, per datum), and the per-task statistics (N: see
    :func:`task_losses`)."""
    per_task = task_losses(outputs, batch, kl_sizes)
    return per_task["cross_entropy"].mean() + per_task["kl"].mean(), per_task


@torch.no_grad()
def predictive_accuracy(
    learner: MetaLearner,
    batch: EpisodeBatch,
    n_mc_samples: int,
    generator: torch.Generator | None,
    task_batching: str = "auto",
    n_steps: int | None = None,
) -> torch.Tensor:
    """Per-task query accuracy ``[T]``: with ``n_mc_samples`` > 0 the query softmax is
    averaged over that many posterior samples; with 0 the posterior means are used.

    Runs under ``torch.no_grad``: the inner loop's gradients are ``torch.func`` transforms,
    which ignore an outer ``no_grad``, so adaptation is unchanged, but no graph for a
    meta-gradient is kept: less memory, and measured about 13% faster (10 validation
    batches of Bayesian TAML at max_shot 20 on 2 cores, after warm-up: 2.3 s with the
    graph, 2.0 s without).
    """
    if n_mc_samples == 0:
        logits = learner(batch, sample=False, task_batching=task_batching,
                         n_steps=n_steps).query_logits
        probs = torch.softmax(logits, -1)
    else:
        probs = 0
        for _ in range(n_mc_samples):
            logits = learner(batch, sample=True, generator=generator,
                             task_batching=task_batching, n_steps=n_steps).query_logits
            probs = probs + torch.softmax(logits, -1) / n_mc_samples
    return (probs.argmax(-1) == batch.query_labels).to(probs.dtype).mean(1)
