"""Targeted Meta-Learning / Targeted Data-driven Regularization (Kamani, Farhang, Mahdavi,
Wang, KDD 2020): one weight per class, on the simplex, learned by a one-step lookahead
against a small balanced target set.

    L_tr(θ; w)  = (1/B) Σ_i w_{y_i} l_i(θ) + wd/2 ||θ||²
    θ'(w)       = θ - α0 ∇θ L_tr(θ; w)          (plain SGD; α0 = the *base* lr, TML's code)
    L_tgt(θ')   = mean_j l_j^target(θ') + wd/2 ||θ'||²
    w~          = clip(w - β ∇w L_tgt(θ'(w)), 0, 100)     (β = 0.1 in the code, --meta_lr)
    w           = w~ / (Σ w~ + 2e-12)                     every ``meta_every`` (10) steps

The real step is the trainer's momentum SGD on (1/B) Σ_i w_{y_i} l_i with the weights before
the update (the original assigns the new value in a hook after the step); the optimizer,
not the loss, carries the weight decay there. w starts at 1/C.

This is Bayesian TAML's per-class loss weighting with a free, global ω (no softmax, no
inference network): (1/B) Σ_i w_{y_i} l_i = Σ_c w_c L_c / C with ``L_c`` from
:func:`taml.episodic.learners.inner_loop.per_class_losses` (tested). The core needs the per-example
form a_i = w_{y_i} / B, so that is what this module hands it.

Meta-gradient: :func:`taml.biased.methods.core.aligned_lookahead` (exact, no double backward) by
default; ``route="unrolled"`` differentiates through the lookahead (second order). The
lookahead is plain SGD while the real step uses momentum: the original's approximation,
kept. Deviation: if the clip zeroes every class, the original's weights become all zero
and training stops; here the previous weights are kept instead.

``hp.tml_scale="classes"`` (not the paper's): every coefficient, in the lookahead and the
real step alike, is multiplied by C, so that uniform weights w = 1/C give exactly ERM's mean
cross-entropy. On the simplex (the paper's ``"simplex"``) the loss is 1/C of ERM's at
uniform weights and trains about C times slower at a shared lr; the original compensates
with its own schedule. The meta-gradient with respect to w grows by C with the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import taml.biased.methods.core as core
from taml.biased.methods.protocol import MethodHyper, StepOutput, Sync, no_sync

CLIP_MAX = 100.0
NORM_EPS = 2e-12  # the original's renormalisation guard


def project(weights: torch.Tensor, grad: torch.Tensor, lr: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """TML's outer step: (clipped ``[C]`` in [0, 100], renormalised ``[C]`` on the simplex)."""
    clipped = (weights - lr * grad).clamp(0.0, CLIP_MAX)
    total = clipped.sum()
    renormalised = torch.where(total > 0, clipped / (total + NORM_EPS), weights)
    return clipped, renormalised


class TML:
    name = "tml"
    needs_meta_batch = True

    def __init__(self, num_classes: int, hp: MethodHyper, route: str = "aligned",
                 class_weights: torch.Tensor | None = None):
        """``class_weights``: the starting w ``[C]`` (default 1/C each; the API's users may
        start elsewhere on the simplex)."""
        if route not in ("aligned", "unrolled"):
            raise ValueError(f"route must be 'aligned' or 'unrolled', got {route!r}")
        if hp.meta_every < 1:
            raise ValueError(f"TML needs meta_every >= 1, got {hp.meta_every}")
        if hp.tml_scale not in ("simplex", "classes"):
            raise ValueError(f"tml_scale must be 'simplex' or 'classes', got {hp.tml_scale!r}")
        self.hp, self.route = hp, route
        self.scale = float(num_classes) if hp.tml_scale == "classes" else 1.0
        if class_weights is None:
            class_weights = torch.full((num_classes,), 1.0 / num_classes)
        class_weights = torch.as_tensor(class_weights).detach().clone()
        if class_weights.shape != (num_classes,) or not bool((class_weights >= 0).all()):
            raise ValueError(f"TML's class weights must be {num_classes} numbers >= 0, got "
                             f"shape {tuple(class_weights.shape)}")
        self.class_weights = class_weights
        self.clipped = self.class_weights.clone()  # the last value before renormalising
        self.meta_loss = torch.tensor(float("nan"))

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             meta_x: torch.Tensor, meta_y: torch.Tensor, lr: float, step_index: int,
             sync: Sync = no_sync) -> StepOutput:
        dtype = next(model.parameters()).dtype
        w = self.class_weights.to(x.device, dtype)
        per_example = self.scale / len(y)  # a_i = scale * w[y_i] / B
        if step_index % self.hp.meta_every:
            logits = model(x)
            coefficients = w[y] * per_example
            loss = core.weighted_loss(F.cross_entropy(logits, y, reduction="none"),
                                      coefficients)
            return StepOutput(loss, logits.detach(), coefficients)

        step_size = self.hp.lookahead_lr if self.hp.lookahead_lr is not None else lr
        meta_w = w.clone().requires_grad_()

        def coefficients_of(losses: torch.Tensor) -> torch.Tensor:
            return meta_w[y] * per_example

        if self.route == "aligned":
            # keep_graph=False: the real loss reuses the gradient the lookahead computed
            ahead = core.aligned_lookahead(model, x, y, coefficients_of, meta_x, meta_y,
                                           step_size, self.hp.weight_decay, keep_graph=False)
            (grad,) = ahead.meta_gradient([meta_w], step_size)
            core.commit_buffers(model, ahead.buffers)
            coefficients = ahead.coefficients.detach()
            value = core.weighted_loss(ahead.losses, coefficients)
            loss = core.loss_with_gradient(value, core.parameters_of(model), ahead.train_grads)
            logits, meta_loss = ahead.logits, ahead.meta_loss
        else:
            (grad,), meta_loss = core.unrolled_meta_gradient(
                model, x, y, coefficients_of, meta_x, meta_y, [meta_w], step_size,
                self.hp.weight_decay)
            logits = model(x)
            coefficients = w[y] * per_example
            loss = core.weighted_loss(F.cross_entropy(logits, y, reduction="none"),
                                      coefficients)
        sync([grad])
        clipped, renormalised = project(w, grad, self.hp.meta_lr)
        self.clipped, self.class_weights = clipped.detach(), renormalised.detach()
        self.meta_loss = meta_loss  # a tensor: read in summary(), no device sync per step
        return StepOutput(loss, logits.detach(), coefficients)

    def state_dict(self) -> dict:
        return {"class_weights": self.class_weights.cpu(), "clipped": self.clipped.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.class_weights = state["class_weights"].clone()
        self.clipped = state["clipped"].clone()

    def summary(self) -> dict:
        return {"class_weights": self.class_weights.tolist(), "meta_loss": float(self.meta_loss)}
