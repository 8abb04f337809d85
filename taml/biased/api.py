"""The biased-data methods as objects for a user's own training loop (re-exported from
:mod:`taml`; contracts in docs/api.md).

Each object holds the user's ``nn.Module`` and optimiser (and the method's meta-learned
state) and performs one training step of its method::

    reweight = taml.MWNetStep(model, optimizer)
    for x, y in loader:
        stats = reweight.step((x, y), next(meta_batches))   # -> StepStats (floats)

One step (:meth:`ReweightingStep.step`) is :meth:`~ReweightingStep.compute` (zero the
model's gradients; the method's lookahead and meta-update; backward of the real, weighted
loss) followed by :meth:`~ReweightingStep.update` (the optimiser's step). The command
line's trainer (:mod:`taml.biased.train`) calls the same two halves, with its gradient
averaging and finite check between them, so a step here is the CLI's step by construction
(``tests/test_api_biased.py`` holds the two to the same parameters).

The step size of the lookahead is the optimiser's current lr (``param_groups[0]["lr"]``,
so an lr scheduler is followed) unless a method is given ``lookahead_lr``. The meta batch
is one plain SGD step ahead of θ (``taml.biased.methods.core``), whatever the optimiser.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from taml.biased.methods.class_balanced import ClassBalanced
from taml.biased.methods.erm import ERM
from taml.biased.methods.focal import Focal
from taml.biased.methods.l2rw import L2RW
from taml.biased.methods.lnl import LNLStats, LNLStep
from taml.biased.methods.mwnet import MWNet, WeightingNet
from taml.biased.methods.protocol import Method, MethodHyper, StepOutput, Sync, no_sync
from taml.biased.methods.tml import TML
from taml.run import validate

Batch = Sequence[torch.Tensor]  # (x [B, C, H, W] float, y [B] int64)


@dataclass(frozen=True)
class StepStats:
    """What one step did, as floats (one device sync per step: a loop that must avoid it
    calls :meth:`ReweightingStep.compute` / :meth:`~ReweightingStep.update` itself).

    ``loss``: the real step's loss (the weighted loss the optimiser stepped on).
    ``accuracy``: the training batch's accuracy at θ before the step. ``weight_*``: the
    example weights a_i ``[B]`` of the real loss (ERM: 1/B each; L2RW: summing to 1 or all
    0). ``meta_loss``: the outer loss of the method's latest meta-update (NaN for methods
    without one, or before the first).
    """

    loss: float
    accuracy: float
    weight_mean: float
    weight_min: float
    weight_max: float
    zero_weight_share: float
    meta_loss: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _pair(batch: Batch, what: str,
          num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a batch, checked by :mod:`taml.run.validate`'s rules: float inputs, int64
    labels of 0 or more (below ``num_classes`` when the method knows it), at least one
    example (an empty batch divided by zero; an empty meta batch gave every weight 0)."""
    if not isinstance(batch, list | tuple) or len(batch) != 2 or not all(
            torch.is_tensor(t) for t in batch):
        raise ValueError(f"{what} must be a pair (x [B, C, H, W], y [B]) of tensors, got "
                         f"{type(batch).__name__}")
    x, y = batch
    if y.ndim != 1 or len(y) != len(x) or y.dtype != torch.int64:
        raise ValueError(f"{what}: y must be int64 class indices [B] for x's {len(x)} "
                         f"examples, got {y.dtype} of shape {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError(f"{what} is empty: give at least one example")
    validate.check_images(f"{what}'s x", x)
    validate.check_labels(f"{what}'s y", y, num_classes, n_classes_name="num_classes")
    return x, y


def _check_meta_net(meta_net: nn.Module) -> None:
    """MW-Net's V must map the losses ``[B]`` to weights ``[B]``: probed on two losses (no
    gradient), so that a V of another shape is named here, not by torch at the first step."""
    if not isinstance(meta_net, nn.Module):
        raise TypeError(f"meta_net must be a torch.nn.Module (losses [B] -> weights [B]), got "
                        f"{type(meta_net).__name__}")
    first = next(meta_net.parameters(), None)
    losses = torch.ones(2, dtype=first.dtype if first is not None else None,
                        device=first.device if first is not None else None)
    try:
        with torch.no_grad():
            weights = meta_net(losses)
    except (RuntimeError, ValueError, IndexError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"meta_net must map the losses [B] to weights [B]; on losses of shape "
                         f"[2] it failed: {detail} (a V of linear layers takes "
                         "losses[:, None] and returns .squeeze(1))") from None
    if not torch.is_tensor(weights) or tuple(weights.shape) != (2,):
        shape = tuple(weights.shape) if torch.is_tensor(weights) else type(weights).__name__
        raise ValueError(f"meta_net must map the losses [B] to weights [B]; it gave {shape} "
                         "for [2]")


class ReweightingStep:
    """One training step of any biased-data ``method`` (the ``Method`` protocol of
    :mod:`taml.biased.methods.protocol`) on ``model`` with ``optimizer``.

    ``sync`` (default: none) is applied in place to the method's meta-gradients (the CLI
    averages them over torchrun ranks); averaging the model's gradients over processes is
    the caller's, between :meth:`compute` and :meth:`update`. Modified in place by a step:
    the model's parameters (by the optimiser), its ``.grad`` and batch-norm running
    statistics (one ordinary training forward's worth; lookaheads run on copies), the
    optimiser's state and the method's meta-learned state (TML's class weights, MW-Net's
    meta-net and its optimiser). Training / eval mode is the caller's (``model.train()``).
    """

    def __init__(self, method: Method, model: nn.Module, optimizer: torch.optim.Optimizer,
                 sync: Sync | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.method, self.model, self.optimizer = method, model, optimizer
        # the classes the method was built for (class counts, TML's weights): labels and
        # the model's outputs are checked against them; None where the method holds none
        self.num_classes: int | None = None
        self.sync = no_sync if sync is None else sync
        self.steps_taken = 0  # TML's meta_every counts from here (step 1 is the first)

    @property
    def needs_meta_batch(self) -> bool:
        return bool(self.method.needs_meta_batch)

    def _checked(self, batch: Batch, meta_batch: Batch | None, call: str) -> tuple:
        """``(x, y, meta_x, meta_y)`` checked against this step's classes; the meta pair is
        None for the methods that read no meta batch."""
        x, y = _pair(batch, "batch", self.num_classes)
        if not self.needs_meta_batch:
            return x, y, None, None
        if meta_batch is None:
            raise ValueError(f"{self.method.name} needs a meta batch: call {call}(batch, "
                             "meta_batch) with a small clean, balanced batch")
        return (x, y, *_pair(meta_batch, "meta_batch", self.num_classes))

    def compute(self, batch: Batch, meta_batch: Batch | None = None) -> StepOutput:
        """The first half of a step: zeroes the model's gradients, runs the method's step
        (lookahead and meta-update, if any) and backpropagates the real loss, so that the
        model's ``.grad`` hold the real step's gradient; the optimiser has not stepped.
        Returns the method's ``StepOutput`` (loss, detached logits ``[B, K]``, example
        weights ``[B]``) as tensors."""
        x, y, meta_x, meta_y = self._checked(batch, meta_batch, "step")
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.zero_grad(set_to_none=True)
        out = self.method.step(self.model, x, y, meta_x, meta_y, lr=lr,
                               step_index=self.steps_taken + 1, sync=self.sync)
        if self.num_classes is not None and out.logits.shape[-1] != self.num_classes:
            raise ValueError(f"the model gives {out.logits.shape[-1]} class scores but the "
                             f"{self.method.name} step was built for {self.num_classes} "
                             "classes (num_classes / class_counts): give one per class")
        out.loss.backward()
        return out

    def weights(self, batch: Batch, meta_batch: Batch | None = None) -> torch.Tensor:
        """The example weights a_i ``[B]`` that :meth:`compute` would give ``batch`` now
        (after the meta-update that step would make: MW-Net's V stepped, TML's w at a
        ``meta_every`` step), detached, with **no side effect**: the step runs on copies of
        the model and the method, so the model's parameters, ``.grad`` and batch-norm
        statistics, the optimiser, the method's state (V, its optimiser, w) and torch's
        global random state (dropout) are all left as they were. Costs a step and a copy
        of the model. ``sync`` is not called (it is a collective across processes): under
        torchrun these are this process's weights before the meta-gradients are averaged."""
        x, y, meta_x, meta_y = self._checked(batch, meta_batch, "weights")
        lr = float(self.optimizer.param_groups[0]["lr"])
        # one deepcopy of both keeps what they share (MW-Net's V, placed by the model) shared
        model, method = copy.deepcopy((self.model, self.method))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            out = method.step(model, x, y, meta_x, meta_y, lr=lr,
                              step_index=self.steps_taken + 1, sync=no_sync)
        return out.example_weights.detach()

    def update(self) -> None:
        """The second half: the optimiser's step on the gradients :meth:`compute` left."""
        self.optimizer.step()
        self.steps_taken += 1

    def step(self, batch: Batch, meta_batch: Batch | None = None) -> StepStats:
        """One training step: :meth:`compute` then :meth:`update`. ``batch`` is
        ``(x [B, C, H, W], y [B] int64)``; ``meta_batch`` ``(x [M, C, H, W], y [M])`` for
        TML, L2RW and MW-Net (ignored by the baselines)."""
        out = self.compute(batch, meta_batch)
        self.update()
        return self.stats(out, batch[1])

    def stats(self, out: StepOutput, y: torch.Tensor) -> StepStats:
        weights = out.example_weights.detach().double()
        meta_loss = getattr(self.method, "meta_loss", None)
        return StepStats(
            loss=float(out.loss.detach()),
            accuracy=float((out.logits.argmax(1) == y).double().mean()),
            weight_mean=float(weights.mean()), weight_min=float(weights.min()),
            weight_max=float(weights.max()),
            zero_weight_share=float((weights == 0).double().mean()),
            meta_loss=float("nan") if meta_loss is None else float(meta_loss))

    def summary(self) -> dict:
        """The method's own summary (TML's class weights, MW-Net's weight curve, ...)."""
        return self.method.summary()

    def state_dict(self) -> dict:
        """The method's meta-learned state and the step count (the model's and the
        optimiser's state dicts are the caller's to save)."""
        return {"method": self.method.state_dict(), "steps_taken": self.steps_taken}

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.steps_taken = int(state["steps_taken"])


class ERMStep(ReweightingStep):
    """Plain mean cross-entropy (no meta batch)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        super().__init__(ERM(), model, optimizer)


class ClassBalancedStep(ReweightingStep):
    """Cross-entropy weighted by inverse class frequency (weights sum to C), from the
    training set's ``class_counts`` ``[C]``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 class_counts: Sequence[int]):
        counts = tuple(class_counts)
        validate.check_count("class_counts' length (the number of classes)", len(counts), 2)
        for count in counts:
            validate.check_count("class_counts' entries", count, 1)
        counts = tuple(int(c) for c in counts)
        super().__init__(ClassBalanced(len(counts), counts), model, optimizer)
        self.num_classes = len(counts)


class FocalStep(ReweightingStep):
    """Focal loss -(1 - p)^γ log p, γ >= 0 (γ = 0 is ERM)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 gamma: float = 1.0):
        validate.check_number("gamma", gamma, inclusive=True)  # the CLI's --focal_gamma rule
        super().__init__(Focal(gamma), model, optimizer)


class TMLStep(ReweightingStep):
    """Targeted Meta-Learning: one weight per class, on the simplex, moved by projected SGD
    (``meta_lr``, clip to [0, 100], renormalise) every ``meta_every`` steps against the meta
    batch, through one SGD lookahead of step ``lookahead_lr`` (default: the optimiser's
    current lr; TML's original uses the base lr) with ``weight_decay`` inside the lookahead
    and target losses. ``class_weights`` ``[C]``: the starting w (default 1/C).
    ``scale="classes"`` multiplies the coefficients by C (w = 1/C is then ERM)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, num_classes: int,
                 *, class_weights: torch.Tensor | None = None, meta_lr: float = 0.1,
                 meta_every: int = 10, lookahead_lr: float | None = None,
                 weight_decay: float = 0.0, scale: str = "simplex", route: str = "aligned",
                 sync: Sync | None = None):
        validate.check_way("num_classes", num_classes)
        # the CLI's rules for --meta_lr, --lookahead_lr, --weight_decay, --meta_every
        validate.check_number("meta_lr", meta_lr)
        validate.check_number("lookahead_lr", lookahead_lr)
        validate.check_number("weight_decay", weight_decay, inclusive=True)
        validate.check_count("meta_every", meta_every, 1)
        hyper = MethodHyper(lookahead_lr=lookahead_lr, weight_decay=weight_decay,
                            meta_lr=meta_lr, meta_every=meta_every, tml_scale=scale)
        super().__init__(TML(num_classes, hyper, route, class_weights), model, optimizer, sync)
        self.num_classes = num_classes

    @property
    def class_weights(self) -> torch.Tensor:
        """w ``[C]`` now (detached; replaced, not modified, by each meta-update)."""
        return self.method.class_weights


class L2RWStep(ReweightingStep):
    """Learning to Reweight: each batch's example weights from the meta-gradient at ε = 0
    (max(-g, 0), normalised to sum 1), recomputed every step; no state."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 route: str = "aligned", sync: Sync | None = None):
        super().__init__(L2RW(route), model, optimizer, sync)


class MWNetStep(ReweightingStep):
    """Meta-Weight-Net: a meta-net V maps each example's (detached) loss ``[B]`` to its
    weight ``[B]``; V is stepped by ``meta_optimizer`` on the meta batch's loss one SGD
    lookahead ahead (step ``lookahead_lr``, default the optimiser's current lr), then the
    model steps on (1/B) Σ V(l_i) l_i (``weights="normalised"``: Σ V(l_i) l_i / Σ V).

    Left out, ``meta_net`` is :class:`WeightingNet` (1-``hidden``-1, seeded by ``seed``)
    and ``meta_optimizer`` Adam(lr ``meta_lr``, weight decay 1e-4) on its parameters, the
    CLI's defaults. V (and its optimiser's state) are moved to the model's device and
    dtype at the first step."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 meta_net: nn.Module | None = None,
                 meta_optimizer: torch.optim.Optimizer | None = None, *,
                 meta_lr: float = 1e-3, lookahead_lr: float | None = None,
                 weights: str = "mean", hidden: int = 100, seed: int = 0,
                 route: str = "aligned", sync: Sync | None = None):
        # the CLI's rules for --meta_lr, --lookahead_lr, --mwnet_hidden, --seed
        validate.check_number("meta_lr", meta_lr)
        validate.check_number("lookahead_lr", lookahead_lr)
        validate.check_count("hidden", hidden, 1)
        validate.check_seed("seed", seed)
        if meta_net is not None:
            _check_meta_net(meta_net)
        hyper = MethodHyper(lookahead_lr=lookahead_lr, meta_lr=meta_lr, mwnet_hidden=hidden,
                            seed=seed, mwnet_weights=weights)
        super().__init__(MWNet(hyper, route, meta_net, meta_optimizer), model, optimizer, sync)

    @property
    def meta_net(self) -> nn.Module:
        return self.method.vnet

    @property
    def meta_optimizer(self) -> torch.optim.Optimizer:
        return self.method.optimizer


__all__ = ["ClassBalancedStep", "ERMStep", "FocalStep", "L2RWStep", "LNLStats", "LNLStep",
           "MWNetStep", "ReweightingStep", "StepOutput", "StepStats", "TMLStep",
           "WeightingNet"]
