"""MAML, Meta-SGD and Bayesian TAML on the user's own backbone, in the user's own loop.

Each class takes any ``nn.Module`` of conv / linear layers with batch norm that maps inputs
``[N, C, H, W]`` to features ``[N, D]`` (``taml.Conv4``, ``taml.ResNet12``, or the user's),
adds the zero-initialised classifier, and gives

- :meth:`EpisodicLearner.meta_objective`: the meta-batch's differentiable meta-objective
  (mean query cross-entropy + mean KL / (N + M)), for the user's ``loss.backward()`` and
  optimiser step;
- :meth:`EpisodicLearner.backward_meta_objective`: the same gradient accumulated into
  ``.grad`` one task at a time (one task's second-order graph alive at a time: the memory of a
  backward per task);
- :meth:`EpisodicLearner.predict`: meta-test's adapted prediction, the query softmax with
  the posterior means or averaged over K posterior samples.

They are the command line's learner (``MetaLearner``, which ``--backbone`` builds) with
the switches of each method; the equations are in ``learners/maml.py``, ``meta_sgd.py`` and
``bayesian_taml.py``, the per-layer rules in :mod:`taml.episodic.learners.backbone`:
z modulates every conv and linear layer's output channels (kernels × (1 + z_w), biases +
z_b), γ scales each of those layers' steps and the classifier's, ω weights each class's
loss. The contract of every entry (shapes, what the outer gradient flows through, what is
changed in place) is docs/api.md's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from taml.episodic.learners.backbone import check_backbone
from taml.episodic.learners.bayesian_taml import DEFAULT_SIGMA_INIT
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import (
    ALPHA_INIT,
    MetaLearner,
    Switches,
    Tasks,
    meta_objective,
)
from taml.run import validate


@dataclass(frozen=True)
class MetaObjective:
    """What :meth:`EpisodicLearner.meta_objective` returns.

    ``loss``: the scalar meta-objective (differentiable from ``meta_objective``, detached
    from ``meta_backward``); ``cross_entropy``, ``kl`` (KL / (N + M)) and ``accuracy``:
    per task ``[T]``; ``query_logits`` ``[T, M, way]``; ``balancing``: the ω ``[T, way]``,
    γ ``[T, layers + 1]`` and z ``[T, z_size]`` the inner loop used (the ones on)."""

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    kl: torch.Tensor
    accuracy: torch.Tensor
    query_logits: torch.Tensor
    balancing: dict[str, torch.Tensor]


def _objective(loss: torch.Tensor, per_task: dict, outputs) -> MetaObjective:
    """The :class:`MetaObjective` of the learner's loss, per-task terms and outputs."""
    return MetaObjective(loss, per_task["cross_entropy"], per_task["kl"],
                         per_task["accuracy"], outputs.query_logits, outputs.balancing)


def _tasks(learner: MetaLearner, support_x, support_y, query_x, query_y, support_mask) -> Tasks:
    """The meta-batch as :class:`Tasks`, checked for shape, content and agreement (the rules
    of :mod:`taml.run.validate`): ValueError naming the argument to fix."""
    for name, x in (("support_x", support_x), ("query_x", query_x)):
        validate.check_images(name, x)
    if support_x.dim() != 5 or query_x.dim() != 5:
        raise ValueError(f"support_x and query_x must be [tasks, rows, C, H, W], got "
                         f"{tuple(support_x.shape)} and {tuple(query_x.shape)} (one task: "
                         "add a leading dimension with x.unsqueeze(0))")
    if support_x.shape[0] != query_x.shape[0]:
        raise ValueError(f"support_x and query_x must hold the same tasks, got "
                         f"{support_x.shape[0]} and {query_x.shape[0]} (their first dimension)")
    if support_x.shape[1] == 0 or query_x.shape[1] == 0:
        raise ValueError(f"every task needs support and query rows, got "
                         f"{support_x.shape[1]} support and {query_x.shape[1]} query rows: an "
                         "empty support set adapts nothing, an empty query set has no loss")
    for name, x in (("support_x", support_x), ("query_x", query_x)):
        if tuple(x.shape[2:]) != learner.input_shape:
            raise ValueError(f"{name}'s rows must be the input_shape {learner.input_shape} "
                             f"(C, H, W) the learner was built for, got {tuple(x.shape[2:])}")
    if tuple(support_y.shape) != tuple(support_x.shape[:2]):
        raise ValueError(f"support_y must be [tasks, rows] = {tuple(support_x.shape[:2])}, "
                         f"got {tuple(support_y.shape)}")
    if query_y is not None and tuple(query_y.shape) != tuple(query_x.shape[:2]):
        raise ValueError(f"query_y must be [tasks, rows] = {tuple(query_x.shape[:2])}, got "
                         f"{tuple(query_y.shape)}")
    dtype = learner.dtype
    if support_mask is None:
        mask = support_x.new_ones(support_x.shape[:2], dtype=dtype)
    else:
        if tuple(support_mask.shape) != tuple(support_x.shape[:2]):
            raise ValueError(f"support_mask must be [tasks, rows] = "
                             f"{tuple(support_x.shape[:2])}, got {tuple(support_mask.shape)}")
        mask = support_mask.to(dtype)
        # the loop path cuts each task to its first N rows: padding must come last
        if bool((mask[:, 1:] > mask[:, :-1]).any()) or bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("support_mask must be 0/1 with each task's real rows first and "
                             "its padding last; reorder the support rows")
        if bool((mask.sum(1) < 1).any()):
            raise ValueError("every task needs at least one real support row (support_mask)")
    # labels on real rows (padding may hold anything, -1 by convention) in 0..way-1: an
    # index past the classifier was a silent ln(way) loss, or torch's IndexError
    validate.check_labels("support_y", support_y, learner.way, real=mask != 0)
    if query_y is not None:
        validate.check_labels("query_y", query_y, learner.way)
        query_y = query_y.to(torch.int64)
    return Tasks(support_x.to(dtype), support_y.to(torch.int64), mask, query_x.to(dtype),
                 query_y)


class EpisodicLearner(MetaLearner):
    """The shared entries of :class:`MAML`, :class:`MetaSGD` and :class:`BayesianTAML`
    (build one of those). It is an ``nn.Module``: ``parameters()`` are the backbone's (θ and
    its batch-norm scales and shifts), Meta-SGD's α and the inference network's, which the
    user's optimiser steps; ``.to(device)`` and ``.double()`` move them all."""

    def meta_objective(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        query_x: torch.Tensor,
        query_y: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        task_batching: str = "auto",
        kl_sizes: torch.Tensor | None = None,
    ) -> MetaObjective:
        """The meta-objective of a meta-batch, differentiable in every parameter.

        ``support_x`` ``[T, N, C, H, W]`` (float, the backbone's inputs), ``support_y``
        ``[T, N]`` (int, 0..way-1 on real rows), ``query_x`` ``[T, M, C, H, W]``,
        ``query_y`` ``[T, M]``; ``support_mask`` ``[T, N]`` (bool or 0/1: the real rows
        first, padding last; None: every row is real), which keeps padding out of batch
        norm, of N and of the losses. ``generator``: the posterior samples' noise (one
        sample per task; Bayesian TAML only). ``task_batching``: ``vmap`` (every task at
        once), ``loop`` (one at a time, padding cut off) or ``auto`` (vmap on a GPU and
        for inputs of at most 16 x 16 pixels, the loop otherwise: docs/benchmarks.md).
        ``kl_sizes`` ``[T]``: the N of each task's KL / (N + M) (default: its real support
        size). Nothing is changed in place.
        """
        tasks = _tasks(self, support_x, support_y, query_x, query_y, support_mask)
        kl_sizes = _call_options(tasks, generator, task_batching, kl_sizes)
        outputs = self(tasks, sample=True, generator=generator, task_batching=task_batching)
        loss, per_task = meta_objective(outputs, tasks, kl_sizes)
        return _objective(loss, per_task, outputs)

    def backward_meta_objective(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        query_x: torch.Tensor,
        query_y: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        task_batching: str = "auto",
        kl_sizes: torch.Tensor | None = None,
        scale: float = 1.0,
    ) -> MetaObjective:
        """Accumulates ``scale`` x the gradient of :meth:`meta_objective` (the same
        arguments; the same posterior samples for the same ``generator``) into the
        parameters' ``.grad`` and returns the objective detached. On the loop path each
        task's query loss is backpropagated as soon as the task is adapted, so one task's
        second-order graph is alive at a time; the gradient equals ``meta_objective(...)
        .loss.backward()``'s up to float rounding."""
        tasks = _tasks(self, support_x, support_y, query_x, query_y, support_mask)
        kl_sizes = _call_options(tasks, generator, task_batching, kl_sizes)
        validate.check_number("scale", scale, inclusive=True)
        loss, per_task, outputs = self.meta_backward(tasks, generator, kl_sizes, scale,
                                                     task_batching)
        return _objective(loss, per_task, outputs)

    def forward(self, batch, *args, **kwargs):
        """The learners' own meta-batch pass (an internal batch). Called on tensors, as
        ``learner(support_x, support_y, query_x, ...)``, it says which entry to use."""
        if isinstance(batch, torch.Tensor):
            raise TypeError(
                "a learner is not called on tensors: learner.predict(support_x, support_y, "
                "query_x, support_mask) gives the query probabilities, "
                "learner.meta_objective(support_x, support_y, query_x, query_y, "
                "support_mask) the meta-training loss, learner.adapted_parameters(support_x, "
                "support_y, support_mask) each task's adapted weights")
        return super().forward(batch, *args, **kwargs)

    def adapted_parameters(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        n_steps: int | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Each task's adapted parameters (a list of T dicts), keyed as
        ``learner.task_model``'s, for ``torch.func.functional_call(learner.task_model,
        params, (x,))`` -> logits ``[N, way]`` (what :meth:`predict` softmaxes). Each dict
        holds the backbone's adapted conv / linear weights, its batch-norm parameters (not
        adapted) and, unless ``head="backbone"``, the classifier ``dense_w`` ``[D, way]`` and
        ``dense_b`` ``[way]``. Bayesian TAML adapts with its posterior means, or with one
        posterior sample (``sample=True``, ``generator``'s noise). Differentiable into
        every meta-parameter (second order unless ``first_order``), as learn2learn's
        ``clone()`` + ``adapt()``; under ``torch.no_grad()`` no graph is kept."""
        query_x = support_x[:, :1]
        tasks = _tasks(self, support_x, support_y, query_x, None, support_mask)
        _call_options(tasks, generator, "auto", None)  # the checks predict makes
        validate.check_n_steps("n_steps", n_steps)
        balancing, _ = self.posterior_balancing(tasks.support_x, tasks, sample, generator)
        one_task = self._task_function(n_steps)
        outer = {f"backbone.{k}": v for k, v in self.outer_params().items()}
        out = []
        for t, n in enumerate(tasks.support_sizes.tolist()):
            adapted = one_task({k: v[t] for k, v in balancing.items()}, tasks.support_x[t, :n],
                               tasks.support_labels[t, :n], None, None, None)
            out.append({**outer, **{(k if k in ("dense_w", "dense_b") else f"backbone.{k}"): v
                                    for k, v in adapted.items()}})
        return out

    @property
    def task_model(self) -> TaskModel:
        """The network one task runs: the backbone (with taml's batch norm, over the batch
        it is given) and the classifier. Called plainly it is the meta-learned
        initialisation; with :meth:`adapted_parameters` through
        ``torch.func.functional_call`` it is a task's adapted learner."""
        return TaskModel(self)

    def balancing(self, support_x: torch.Tensor, support_y: torch.Tensor,
                  support_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Bayesian TAML's balancing variables for each task's support set (meta-test: no
        query is read), detached: ``omega_mean``, ``omega_std``, ``class_weights`` =
        softmax(ω's mean) ``[T, way]``; ``gamma_mean``, ``gamma_std``, ``step_scales`` =
        exp(γ's mean) ``[T, layers + 1]`` (the classifier's last); ``z_mean``, ``z_std``
        ``[T, z_size]``. A variable switched off has none of its keys; MAML and Meta-SGD
        give ``{}``. The command line's balancing tables print these same values."""
        query_x = support_x[:, :1]
        tasks = _tasks(self, support_x, support_y, query_x, None, support_mask)
        return self.posterior_summary(tasks)

    @torch.no_grad()
    def predict(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        query_x: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        n_samples: int = 0,
        generator: torch.Generator | None = None,
        n_steps: int | None = None,
        task_batching: str = "auto",
    ) -> torch.Tensor:
        """Meta-test: adapts to each task's support set and returns the query softmax
        ``[T, M, way]``; with ``n_samples`` K > 0 averaged over K posterior samples
        (``generator``'s), with 0 the posterior means (MAML and Meta-SGD: deterministic).
        ``n_steps`` overrides the inner steps (the original meta-tests with 10). Runs under
        ``torch.no_grad``: the inner loop still adapts (``torch.func``), no graph is kept."""
        validate.check_count("n_samples", n_samples, 0)  # 0: the posterior means
        if n_samples and self.inference is None:
            raise ValueError("n_samples samples the balancing variables, which this learner "
                             "has none of; use n_samples=0")
        tasks = _tasks(self, support_x, support_y, query_x, None, support_mask)
        _call_options(tasks, generator, task_batching, None)
        validate.check_n_steps("n_steps", n_steps)
        if n_samples == 0:
            logits = self(tasks, sample=False, task_batching=task_batching,
                          n_steps=n_steps).query_logits
            return torch.softmax(logits, -1)
        probs = 0
        for _ in range(n_samples):
            logits = self(tasks, sample=True, generator=generator, task_batching=task_batching,
                          n_steps=n_steps).query_logits
            probs = probs + torch.softmax(logits, -1) / n_samples
        return probs


class TaskModel(nn.Module):
    """``x`` ``[N, C, H, W]`` -> logits ``[N, way]``: ``learner.backbone`` (its batch norm on
    the statistics of ``x``, as the learners run it) and, unless ``head="backbone"``, the
    classifier ``dense_w``, ``dense_b``. Its parameter names are the keys of
    :meth:`EpisodicLearner.adapted_parameters`. It shares the learner's tensors."""

    def __init__(self, learner: EpisodicLearner):
        super().__init__()
        self.backbone = learner.backbone
        self._functional, self._precision = learner.functional, learner.inner.precision
        if learner.dense_w is not None:
            self.register_buffer("dense_w", learner.dense_w)
            self.register_buffer("dense_b", learner.dense_b)
        else:
            self.dense_w = self.dense_b = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        named = dict(self.backbone.named_parameters())  # functional_call's, when given
        adapted = {k: named[k] for k in self._functional.adapted_keys}
        outer = {k: v for k, v in named.items() if k not in adapted}
        if self.dense_w is not None:
            adapted = {**adapted, "dense_w": self.dense_w, "dense_b": self.dense_b}
        return self._functional.forward(adapted, outer, x, None, self._precision)


def _call_options(tasks: Tasks, generator, task_batching: str,
                  kl_sizes: torch.Tensor | None) -> torch.Tensor | None:
    """The options of a call, checked; ``kl_sizes`` as int64 ``[T]``."""
    validate.check_generator("generator", generator)
    validate.check_choice("task_batching", task_batching, ("auto", "vmap", "loop"))
    if kl_sizes is None:
        return None
    kl_sizes = torch.as_tensor(kl_sizes)
    if tuple(kl_sizes.shape) != (tasks.n_tasks,) or kl_sizes.is_floating_point():
        raise ValueError(f"kl_sizes must be each task's support size N, int [tasks] = "
                         f"[{tasks.n_tasks}], got {kl_sizes.dtype} {tuple(kl_sizes.shape)}")
    if bool((kl_sizes < 1).any()):  # a negative N + M flips the KL's sign
        raise ValueError(f"kl_sizes must be at least 1 (a task's support size), got "
                         f"{kl_sizes.tolist()}")
    return kl_sizes.to(torch.int64)


def _input(backbone: nn.Module, input_shape: tuple[int, int, int], way: int, n_steps: int,
           precision: str) -> tuple[int, tuple[int, int]]:
    """The arguments every constructor shares, checked by the command line's rules
    (:mod:`taml.run.validate`), and the backbone probed on ``input_shape``; returns
    (channels, (height, width))."""
    validate.check_way("way", way)
    validate.check_n_steps("n_steps", n_steps)
    validate.check_precision("precision", precision)
    check_backbone(backbone, input_shape)
    channels, height, width = (int(v) for v in input_shape)
    return channels, (height, width)


class MAML(EpisodicLearner):
    """MAML (Finn et al. 2017) on ``backbone``: ``n_steps`` inner steps of size
    ``inner_lr`` on the mean support cross-entropy from the meta-learned initialisation;
    second order unless ``first_order``. ``input_shape``: (C, H, W) of one input.
    ``precision``: ``fp32`` or ``bf16`` (the backbone under autocast). ``head``: the
    classifier every task starts from: ``"zero"`` (the original's, not learned: the first
    step moves the classifier alone and the logits start at 0, so ``inner_lr`` must be
    tuned to the features' scale; the original's 0.5 is its 4-conv net's), ``"learned"``
    (a meta-learned initialisation, as the MAML paper and learn2learn: ``inner_lr`` 0.1
    is their usual value), ``"backbone"`` (the backbone's output, ``way`` units, is the
    logits; its last layer is adapted as any other) (docs/api.md, "The head")."""

    def __init__(self, backbone: nn.Module, way: int, input_shape: tuple[int, int, int],
                 n_steps: int = 5, inner_lr: float = 0.5, first_order: bool = False,
                 precision: str = "fp32", head: str = "zero"):
        validate.check_number("inner_lr", inner_lr)  # --inner_lr's rule
        channels, size = _input(backbone, input_shape, way, n_steps, precision)
        super().__init__(Switches(), size, way, 1,
                         InnerLoopConfig(n_steps, inner_lr, first_order, precision),
                         backbone=backbone, in_channels=channels, head=head)
        self.input_shape = (channels, *size)


class MetaSGD(EpisodicLearner):
    """Meta-SGD (Li et al. 2017) on ``backbone``: MAML with a meta-learned step size per
    parameter (α, each entry ``alpha_init`` at the start; the classifier's α one column
    shared by every class)."""

    def __init__(self, backbone: nn.Module, way: int, input_shape: tuple[int, int, int],
                 n_steps: int = 5, first_order: bool = False, alpha_init: float = ALPHA_INIT,
                 precision: str = "fp32", head: str = "zero"):
        validate.check_number("alpha_init", alpha_init)
        channels, size = _input(backbone, input_shape, way, n_steps, precision)
        super().__init__(Switches(alpha_on=True), size, way, 1,
                         InnerLoopConfig(n_steps, ALPHA_INIT, first_order, precision),
                         backbone=backbone, in_channels=channels, alpha_init=alpha_init,
                         head=head)
        self.input_shape = (channels, *size)


class BayesianTAML(EpisodicLearner):
    """Bayesian TAML (Lee et al. 2020) on ``backbone``: Meta-SGD plus the balancing
    variables ω (class imbalance), γ (task imbalance) and z (out-of-distribution tasks),
    each switched off by its argument (the paper's ablations), inferred per task from the
    support set by the inference network (which reads the inputs at ``input_shape``).

    ``max_shot``: the largest class size, by which the inference network normalises class
    sizes. ``sigma_init``: every posterior's σ at initialisation (taml's 0.2; the
    original's log 2 is ``taml.episodic.learners.bayesian_taml.ORIGINAL_SIGMA_INIT``).
    ``omega_reads_statistics``: ω's heads read the class statistics directly (the
    original's multi-dataset encoder). ``seed``: the inference network's initialisation.
    """

    def __init__(self, backbone: nn.Module, way: int, input_shape: tuple[int, int, int],
                 max_shot: int, n_steps: int = 5, first_order: bool = False,
                 omega: bool = True, gamma: bool = True, z: bool = True,
                 sigma_init: float = DEFAULT_SIGMA_INIT, alpha_init: float = ALPHA_INIT,
                 omega_reads_statistics: bool = False, seed: int = 0,
                 precision: str = "fp32", head: str = "zero"):
        validate.check_number("alpha_init", alpha_init)
        validate.check_sigma_init("sigma_init", sigma_init)  # the rules of --sigma_init,
        validate.check_count("max_shot", max_shot)  # --max_shot and --seed
        validate.check_seed("seed", seed)
        channels, size = _input(backbone, input_shape, way, n_steps, precision)
        super().__init__(Switches(True, omega, gamma, z), size, way, max_shot,
                         InnerLoopConfig(n_steps, ALPHA_INIT, first_order, precision),
                         omega_reads_statistics=omega_reads_statistics,
                         generator=torch.Generator().manual_seed(seed),
                         sigma_init=sigma_init, backbone=backbone, in_channels=channels,
                         alpha_init=alpha_init, head=head)
        self.input_shape = (channels, *size)
