"""The one inner loop that MAML, Meta-SGD and Bayesian TAML share.

For one task (Lee et al. 2020, eq. 4-6 and the original code):

1. z modulates the initialisation (OOD): every conv kernel is scaled per output channel,
   ``w <- w * (1 + z_w[l])``, every conv bias shifted, ``b <- b + z_b[l]``; the classifier
   is not modulated.
2. Each of ``n_steps`` steps takes the per-class support losses
   ``L_c = (sum of the losses of class c) * way / N`` (N real support rows) and weighs
   them with ``softmax(ω)`` (class imbalance), or averages them over classes when ω is off.
3. ``θ <- θ - step * exp(γ_l) * ∇θ``, with ``step`` = α (Meta-SGD) or ``inner_lr`` and
   ``γ_l`` the task-imbalance scale of θ's layer (1 when γ is off).

What the outer gradient flows through: everything. ``θ``, α, the batch-norm shifts and the
balancing variables (ω, γ, z, themselves functions of the inference network) all reach the
query loss through every inner step, second-order by default (``torch.func.grad`` keeps the
inner gradients differentiable). With ``first_order=True`` the inner gradients are detached:
θ, α, γ and the BN shifts still get gradients through the update's direct path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad, vjp

from taml.episodic.learners.backbone import ModuleBackbone

Params = dict[str, torch.Tensor]
DENSE_KEYS = ("dense_w", "dense_b")  # the classifier, which every backbone's features feed


@dataclass(frozen=True)
class InnerLoopConfig:
    n_steps: int
    inner_lr: float
    first_order: bool = False
    precision: str = "fp32"  # the backbone's compute type (backbone.PRECISIONS)


def per_class_losses(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, way: int
) -> torch.Tensor:
    """``[way]``: L_c = (sum of class c's cross-entropies) * way / N, over real rows only.

    ``logits`` ``[N, way]``; ``labels`` ``[N]`` (-1 on padding); ``mask`` ``[N]`` 0/1, or
    None when every row is real.
    L_c is a *sum* over the class's rows, so large classes dominate the unweighted mean:
    the imbalance that ω learns to correct.
    """
    # a comparison, not F.one_hot (which checks values, impossible under vmap); rows
    # labelled -1 (padding) come out all zero, and the mask zeroes them once more
    classes = torch.arange(way, device=labels.device)
    one_hot = (labels.unsqueeze(1) == classes).to(logits.dtype)
    if mask is not None:
        one_hot = one_hot * mask.unsqueeze(1)
    n_rows = labels.shape[0] if mask is None else mask.sum()
    losses = -(one_hot * F.log_softmax(logits, dim=1)).sum(1)  # [N], 0 on padding
    return (one_hot.T @ losses) * way / n_rows


def support_loss(class_losses: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
    """Σ_c softmax(ω)_c L_c with ω on; the mean over classes otherwise."""
    if omega is None:
        return class_losses.mean()
    return (torch.softmax(omega, dim=-1) * class_losses).sum()


def adapt(
    params: Params,
    batch_norm: Params,
    step_sizes: Params | float,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    support_mask: torch.Tensor | None,
    config: InnerLoopConfig,
    backbone: ModuleBackbone,
    omega: torch.Tensor | None = None,
    layer_scales: torch.Tensor | None = None,
    zero_classifier: bool = False,
) -> Params:
    """Runs the inner loop for one task and returns the adapted parameters.

    ``params``: the (z-modulated) initialisation: the backbone's adapted keys and
    ``dense_w``, ``dense_b``. ``backbone``: the pure function of those keys
    (:mod:`taml.episodic.learners.backbone`); ``batch_norm``: its meta-learned, not
    adapted, parameters (the batch-norm scales and shifts).
    ``step_sizes``: α per key (same shapes) or the scalar ``inner_lr``.
    ``support_x`` ``[N, C, H, W]``, ``support_y`` ``[N]``, ``support_mask`` ``[N]`` (0/1;
    None: every row is real, which lets bfloat16's batch norm take the native kernel; never
    under vmap).
    ``omega`` ``[way]`` or None; ``layer_scales`` ``[n_layers + 1]`` = exp(γ) or None
    (the classifier's last; 5 for the 4-conv net).

    Each step runs the backbone once (``vjp``), takes the classifier's gradients and the
    features' cotangent from the small head, then pulls the cotangent back through the
    backbone. ``zero_classifier=True`` is the caller's promise that ``dense_w`` is a zero
    *constant* (the learners' fixed initialisation: not requiring grad, not the input of a
    ``torch.func`` transform): the logits then do not depend on the features, so step 1's
    backbone gradient is exactly zero for any θ, α, γ, ω, z (and so are its derivatives);
    step 1 moves the classifier only and step 2 reuses step 1's features: one backbone
    forward, backward and double backward fewer per task. A promise rather than a check of
    the values, which would read a tensor back to Python on every task (a device sync, and
    a graph break under ``torch.compile``). tests/test_speed_paths.py compares both with the
    plain loop (``grad`` of the whole support loss, every step).
    """
    def step_size(key: str) -> torch.Tensor | float:
        step = step_sizes[key] if isinstance(step_sizes, dict) else step_sizes
        if layer_scales is not None:
            step = step * layer_scales[backbone.layer_index(key)]
        return step

    def update(current: Params, grads: Params) -> Params:
        return {key: value - step_size(key) * (grads[key].detach() if config.first_order
                                              else grads[key])
                for key, value in current.items()}

    def conv_features(conv: Params) -> torch.Tensor:
        return backbone.features(conv, batch_norm, support_x, support_mask, config.precision)

    def head_loss(feats: torch.Tensor, dense: Params) -> torch.Tensor:
        # no classifier (head="backbone"): the backbone's output is the logits
        logits = feats @ dense["dense_w"] + dense["dense_b"] if dense else feats
        return support_loss(per_class_losses(logits, support_y, support_mask,
                                             logits.shape[-1]), omega)

    conv = {k: v for k, v in params.items() if k not in DENSE_KEYS}  # the backbone's
    dense = {k: params[k] for k in DENSE_KEYS if k in params}
    conv_is_still = zero_classifier and config.n_steps > 0
    feats = pull_back = None
    for _ in range(config.n_steps):
        if feats is None:
            feats, pull_back = vjp(conv_features, conv)
        if dense:
            feats_cotangent, dense_grads = grad(head_loss, argnums=(0, 1))(feats, dense)
            dense = update(dense, dense_grads)
        else:
            feats_cotangent = grad(head_loss)(feats, dense)
        if conv_is_still:  # step 1 from a zero classifier: ∂L/∂θ_conv = 0 exactly
            conv_is_still = False
            continue
        conv = update(conv, pull_back(feats_cotangent)[0])
        feats = None
    return {**conv, **dense}
