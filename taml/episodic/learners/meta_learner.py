"""The meta-learner: θ, α, the batch-norm shifts and the inference network, around the
shared inner loop. MAML, Meta-SGD and Bayesian TAML are configurations of it (see
``maml.py``, ``meta_sgd.py``, ``bayesian_taml.py``); every switch works alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from taml.data.episodes import EpisodeBatch
from taml.episodic.learners.backbone import (
    LAYER_TYPES,
    BackboneError,
    ModuleBackbone,
    feature_size,
)
from taml.episodic.learners.bayesian_taml import ORIGINAL_SIGMA_INIT
from taml.episodic.learners.conv4 import images_to_input
from taml.episodic.learners.inference_net import InferenceNetwork
from taml.episodic.learners.inner_loop import InnerLoopConfig, adapt

ALPHA_INIT = 0.01  # the original's Meta-SGD initial step size, every entry
# task_batching="auto" on CPU: vmap up to this many input pixels (H x W), the loop above.
# Measured (benchmarks/meta_iteration.py, docs/benchmarks.md): vmap won at 8 x 8 (small CNN,
# both orders), the loop at 28 x 28 and up (every backbone); 16 x 16 lies between, untimed
VMAP_MAX_PIXELS_ON_CPU = 16 * 16
# the classifier each task starts from (docs/api.md, "The head"): the original's zero,
# a meta-learned initialisation (MAML's, learn2learn's), or the backbone's own last layer
HEADS = ("zero", "learned", "backbone")


def _last_layer(module: nn.Module) -> nn.Module | None:
    """The module's last conv / linear layer in registration order."""
    layers = [m for m in module.modules() if isinstance(m, LAYER_TYPES)]
    return layers[-1] if layers else None


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
    ``[T, n_layers + 1]``, ``z`` ``[T, z_size]`` (the ones switched on; 5 and 256 for the
    4-conv net)."""

    query_logits: torch.Tensor
    kl: torch.Tensor
    balancing: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Tasks:
    """A meta-batch as tensors (what :class:`MetaLearner` computes on; an ``EpisodeBatch``
    is turned into one): ``support_x`` ``[T, N, C, H, W]`` float, ``support_labels``
    ``[T, N]`` int64 in 0..way-1 on real rows, ``support_mask`` ``[T, N]`` float 0/1 (the
    real rows first, padding last), ``query_x`` ``[T, M, C, H, W]``, ``query_labels``
    ``[T, M]`` (None for a prediction)."""

    support_x: torch.Tensor
    support_labels: torch.Tensor
    support_mask: torch.Tensor
    query_x: torch.Tensor
    query_labels: torch.Tensor | None = None

    @property
    def n_tasks(self) -> int:
        return int(self.support_labels.shape[0])

    @property
    def support_sizes(self) -> torch.Tensor:
        """int64 ``[T]``: each task's real support rows."""
        return self.support_mask.sum(1).round().to(torch.int64)


class MetaLearner(nn.Module):
    """Meta-parameters and the forward pass of a meta-batch.

    The classifier's initialisation is fixed at zero and is not meta-learned: the original
    builds it with ``tf.zeros`` (a constant, not a variable). Class labels are arbitrary
    per task, so a shared classifier init carries no knowledge; zero makes the first inner
    step fit the classifier alone. Meta-SGD's classifier α is one learned column shared by
    every class, as the original.

    ``backbone``: any ``nn.Module`` of conv / linear layers with batch norm
    (:class:`~taml.episodic.learners.backbone.ModuleBackbone`; the command line's are
    :class:`~taml.episodic.learners.conv4.Conv4` and ResNet-12), registered as
    ``self.backbone`` with its own initialisation: θ is its conv and linear layers'
    parameters, its batch-norm parameters are meta-learned only. ``image_size`` (an int, or
    (H, W)) and ``in_channels``: the backbone's input, which the inference network reads
    too. ``generator`` draws the inference network's initial weights (None: one seeded 0).
    ``alpha_init``: Meta-SGD's initial step sizes.
    """

    def __init__(
        self,
        switches: Switches,
        image_size: int | tuple[int, int],
        way: int,
        max_shot: int,
        inner: InnerLoopConfig,
        backbone: nn.Module,
        omega_reads_statistics: bool = False,
        generator: torch.Generator | None = None,
        sigma_init: float = ORIGINAL_SIGMA_INIT,
        in_channels: int = 3,
        alpha_init: float = ALPHA_INIT,
        head: str = "zero",
    ):
        super().__init__()
        generator = generator or torch.Generator().manual_seed(0)
        self.switches, self.inner, self.way = switches, inner, way
        self.backbone = backbone  # registered first: its parameters come first
        self.functional = ModuleBackbone(backbone)
        side = (image_size, image_size) if isinstance(image_size, int) else image_size
        features = feature_size(self.functional, (in_channels, *side))
        reference = next(iter(self.functional.initialisation().values()))
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.head = head
        if head == "backbone":
            if features != way:
                raise BackboneError(
                    f"head='backbone' reads the module's output as the logits, so it must have "
                    f"way={way} units; it has {features}: end the module with a layer of "
                    f"{way} outputs, or use head='zero' or 'learned' on its features")
            self.dense_w = self.dense_b = None
        else:
            if head == "zero" and features == way and isinstance(
                    _last_layer(backbone), nn.Linear):
                warnings.warn(
                    f"the backbone ends in a linear layer of way={way} outputs, like a "
                    f"classifier; taml's head='zero' adds its own classifier on top of it, "
                    f"which makes that layer a {way}-wide feature layer: pass head='backbone' "
                    "to use your module as the whole classifier, or drop its last layer",
                    stacklevel=3)
            self.register_buffer("dense_w", torch.zeros(features, way, dtype=reference.dtype))
            self.register_buffer("dense_b", torch.zeros(way, dtype=reference.dtype))
        self.alpha = None
        # the alpha dict's keys: a module's parameter names with '__' for '.' (which
        # ParameterDict refuses)
        self._alpha_keys = {k: k.replace(".", "__") for k in self.functional.adapted_keys}
        if switches.alpha_on:
            alpha = {self._alpha_keys[k]: torch.full_like(v.detach(), alpha_init)
                     for k, v in self.functional.initialisation().items()}
            if head != "backbone":
                alpha["dense_w_column"] = torch.full((features, 1), alpha_init,
                                                     dtype=reference.dtype)
                alpha["dense_b_column"] = torch.full((1,), alpha_init, dtype=reference.dtype)
            self.alpha = nn.ParameterDict(alpha)
        self.inference = None
        if switches.any_balancing:
            self.inference = InferenceNetwork(
                image_size, max_shot, switches.omega_on, switches.gamma_on, switches.z_on,
                omega_reads_statistics=omega_reads_statistics, generator=generator,
                sigma_init=sigma_init, in_channels=in_channels,
                gamma_size=self.functional.n_layers + 1, z_size=self.functional.z_size,
            ).to(reference.dtype)
        if head == "learned":
            # nn.Linear's default initialisation, U(-1/√D, 1/√D), drawn after the inference
            # network's weights so that those are the zero head's; replaces the zero buffers
            bound = features ** -0.5
            draw = torch.rand(features * way + way, generator=generator, dtype=reference.dtype)
            values = (2 * draw - 1) * bound
            del self.dense_w, self.dense_b
            self.dense_w = nn.Parameter(values[:-way].view(features, way).to(reference.device))
            self.dense_b = nn.Parameter(values[-way:].to(reference.device))

    def outer_params(self) -> dict[str, torch.Tensor]:
        """The backbone's meta-learned, not adapted, parameters: its batch-norm shifts
        (and scales, for affine batch norm)."""
        return self.functional.outer_params()

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype, to which inputs are cast."""
        return next(iter(self.functional.initialisation().values())).dtype

    def initialisation(self) -> dict[str, torch.Tensor]:
        """θ with the classifier (none with ``head="backbone"``): the inner loop's starting
        point (before z)."""
        if self.dense_w is None:
            return self.functional.initialisation()
        return {**self.functional.initialisation(), "dense_w": self.dense_w,
                "dense_b": self.dense_b}

    def step_sizes(self) -> dict[str, torch.Tensor] | float:
        if self.alpha is None:
            return self.inner.inner_lr
        steps = {k: self.alpha[safe] for k, safe in self._alpha_keys.items()}
        if self.dense_w is not None:
            steps["dense_w"] = self.alpha["dense_w_column"].expand(-1, self.way)
            steps["dense_b"] = self.alpha["dense_b_column"].expand(self.way)
        return steps

    def posterior_balancing(
        self, support_x: torch.Tensor, batch, sample: bool,
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

    def _task_function(self, n_steps: int | None = None):
        """``one_task(values, xs, ys, mask, xq, query_mask) -> query logits``: z, γ and ω of
        one task applied to the shared inner loop from this learner's initialisation
        (``xq`` None: the adapted parameters instead, keyed as :meth:`initialisation`)."""
        config = self.inner
        if n_steps is not None:
            config = replace(config, n_steps=n_steps)
        batch_norm = self.outer_params()
        functional = self.functional

        def one_task(values, xs, ys, mask, xq, query_mask):
            # masks None on the loop path (rows cut to the real ones), tensors under vmap,
            # which must never see None (backbone.masked_batch_norm)
            # the initialisation and step sizes are built per task: with a backward per
            # task (meta_backward) a graph node shared by the tasks would be freed by the first
            params, steps = self.initialisation(), self.step_sizes()
            if "z" in values:
                params = functional.modulate(params, values["z"])
            scales = torch.exp(values["gamma"]) if "gamma" in values else None
            adapted = adapt(params, batch_norm, steps, xs, ys, mask, config, functional,
                            omega=values.get("omega"), layer_scales=scales,
                            zero_classifier=self.head == "zero")
            if xq is None:
                return adapted
            return functional.forward(adapted, batch_norm, xq, query_mask, config.precision)

        return one_task

    def _inputs(self, batch):
        """A meta-batch as :class:`Tasks`: an ``EpisodeBatch``'s uint8 images as floats in
        [0, 1], in θ's dtype; a :class:`Tasks` as it is."""
        if isinstance(batch, Tasks):
            return batch
        dtype = self.dtype
        return Tasks(images_to_input(batch.support_images, dtype),
                     batch.support_labels, batch.support_mask.to(dtype),
                     images_to_input(batch.query_images, dtype), batch.query_labels)

    @staticmethod
    def _resolve_batching(task_batching: str, support_x: torch.Tensor) -> str:
        if task_batching == "auto":
            # docs/benchmarks.md#task-batching-auto: on CPU one task at a time, cut to its
            # real rows, unless the inputs are so small that per-operation overhead
            # dominates (vmap then runs each op once for every task); vmap on a GPU
            small = support_x.shape[-2] * support_x.shape[-1] <= VMAP_MAX_PIXELS_ON_CPU
            return "vmap" if support_x.is_cuda or small else "loop"
        if task_batching not in ("vmap", "loop"):
            raise ValueError(f"task_batching must be auto, vmap or loop, got {task_batching!r}")
        return task_batching

    def forward(
        self,
        batch,
        sample: bool = False,
        generator: torch.Generator | None = None,
        task_batching: str = "auto",
        n_steps: int | None = None,
    ) -> TaskOutputs:
        """Adapts to every task of ``batch`` (an ``EpisodeBatch`` or :class:`Tasks`) and
        classifies its query set.

        ``sample``: one posterior sample per task (meta-training, MC) or the posterior
        means (validation). ``n_steps`` overrides the configured inner steps (meta-test).
        """
        tasks = self._inputs(batch)
        support_x, query_x, support_mask = tasks.support_x, tasks.query_x, tasks.support_mask
        balancing, kl = self.posterior_balancing(support_x, tasks, sample, generator)
        one_task = self._task_function(n_steps)
        if self._resolve_batching(task_batching, support_x) == "vmap":
            # randomness="different": a backbone's dropout draws its own mask per task, as
            # the loop path's one task at a time does (the default refuses any random op)
            logits = vmap(one_task, randomness="different")(
                balancing, support_x, tasks.support_labels, support_mask, query_x,
                query_x.new_ones(query_x.shape[:2]))
        else:
            # one task at a time, each cut to its real rows: no work spent on padding
            sizes = tasks.support_sizes.tolist()
            logits = torch.stack([
                one_task({k: v[t] for k, v in balancing.items()}, support_x[t, :n],
                         tasks.support_labels[t, :n], None, query_x[t], None)
                for t, n in enumerate(sizes)
            ])
        return TaskOutputs(logits, kl, balancing)

    def meta_backward(
        self,
        batch: EpisodeBatch,
        generator: torch.Generator | None,
        kl_sizes: torch.Tensor | None = None,
        scale: float = 1.0,
        task_batching: str = "auto",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], TaskOutputs]:
        """Accumulates ``scale`` x ∇ of the meta-objective (:func:`meta_objective`, one
        posterior sample per task) into the parameters' ``.grad``; returns the objective,
        the per-task statistics and the outputs, all detached.

        On the loop path each task's query loss is backpropagated as soon as the task is
        adapted, so only one task's second-order graph is alive at a time (the peak memory
        of learn2learn's backward-per-task). The balancing variables are drawn for the whole
        meta-batch at once, as ``forward`` draws them (same random numbers): the tasks read
        detached copies, whose gradients are sent through the inference network and the KL
        in one last backward. The same gradient as backpropagating ``forward``'s objective,
        up to float rounding (``tests/test_speed_paths.py``); the vmap path does exactly that.
        """
        tasks = self._inputs(batch)
        support_x, query_x = tasks.support_x, tasks.query_x
        if self._resolve_batching(task_batching, support_x) == "vmap":
            outputs = self(batch, sample=True, generator=generator, task_batching="vmap")
            loss, per_task = meta_objective(outputs, batch, kl_sizes)
            (loss * scale).backward()
            return loss.detach(), {k: v.detach() for k, v in per_task.items()}, _detached(outputs)
        balancing, kl = self.posterior_balancing(support_x, tasks, True, generator)
        cut = {k: v.detach().requires_grad_(v.requires_grad) for k, v in balancing.items()}
        one_task = self._task_function()
        n_tasks = tasks.n_tasks
        logits = []
        for t, n in enumerate(tasks.support_sizes.tolist()):
            task_logits = one_task({k: v[t] for k, v in cut.items()}, support_x[t, :n],
                                   tasks.support_labels[t, :n], None, query_x[t], None)
            cross_entropy = F.cross_entropy(task_logits, batch.query_labels[t])
            if cross_entropy.requires_grad:
                (cross_entropy * (scale / n_tasks)).backward()
            logits.append(task_logits.detach())
        outputs = TaskOutputs(torch.stack(logits), kl, balancing)
        loss, per_task = meta_objective(outputs, batch, kl_sizes)
        # the inference network's share: the KL term, and what the tasks sent back to
        # the balancing variables they read
        roots, cotangents = [], []
        if per_task["kl"].requires_grad:
            roots.append(per_task["kl"].mean() * scale)
            cotangents.append(None)
        for name, value in balancing.items():
            if cut[name].grad is not None:
                roots.append(value)
                cotangents.append(cut[name].grad)
        if roots:
            torch.autograd.backward(roots, cotangents)
        return loss.detach(), {k: v.detach() for k, v in per_task.items()}, _detached(outputs)

    @torch.no_grad()
    def posterior_summary(self, batch) -> dict[str, torch.Tensor]:
        """The posteriors of the balancing variables for each task's support set (an
        ``EpisodeBatch`` or :class:`Tasks`; no query labels are read), detached:

        - ``omega_mean``, ``omega_std`` ``[T, way]`` and ``class_weights`` = softmax(ω's
          mean) ``[T, way]``, the weight of each class's support loss;
        - ``gamma_mean``, ``gamma_std`` ``[T, layers + 1]`` and ``step_scales`` = exp(γ's
          mean), the factor on each layer's inner step (the classifier's last);
        - ``z_mean``, ``z_std`` ``[T, z_size]``.

        A variable switched off has none of its keys; MAML and Meta-SGD give ``{}``. The
        command line's balancing tables print ``class_weights`` and ``step_scales`` of this
        (:meth:`balancing_means`)."""
        if self.inference is None:
            return {}
        tasks = self._inputs(batch)
        posteriors = self.inference(tasks.support_x, tasks.support_labels, tasks.support_mask,
                                    self.way)
        out = {}
        for name, q in posteriors.items():
            out[f"{name}_mean"], out[f"{name}_std"] = q.mean, q.std
        if "omega" in posteriors:
            out["class_weights"] = torch.softmax(posteriors["omega"].mean, dim=-1)
        if "gamma" in posteriors:
            out["step_scales"] = torch.exp(posteriors["gamma"].mean)
        return out

    def balancing_means(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Posterior means as the tables print them: ``omega`` = softmax(ω) ``[T, way]`` and
        ``gamma`` = exp(γ) ``[T, layers + 1]`` (those switched on), from
        :meth:`posterior_summary`, the API's ``balancing``."""
        summary = self.posterior_summary(batch)
        return {table: summary[key] for table, key in
                (("omega", "class_weights"), ("gamma", "step_scales")) if key in summary}


def _detached(outputs: TaskOutputs) -> TaskOutputs:
    return TaskOutputs(outputs.query_logits.detach(), outputs.kl.detach(),
                       {k: v.detach() for k, v in outputs.balancing.items()})


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
