"""The bilevel core shared by TML, L2RW and MW-Net: one differentiable lookahead step on a
weighted loss, the outer loss on the meta batch at the looked-ahead parameters, and its
gradient with respect to what is meta-learned.

All three methods weigh the training batch's cross-entropies ``l_i(θ)`` with coefficients
``a_i(λ)`` that depend on the meta-learned tensors λ (TML: ``w[y_i] / B``; L2RW: ``ε_i``;
MW-Net: ``V(l_i; Φ) / B``) and look one plain SGD step ahead::

    θ'(λ) = θ - α (Σ_i a_i(λ) ∇θ l_i(θ) + wd θ)            (wd: TML's weight decay in the loss)
    L_out(θ') = mean_j CE(f(x_j^meta; θ'), y_j^meta) + wd/2 ||θ'||²

Two routes give dL_out/dλ:

- :func:`unrolled_meta_gradient`, the definition: the lookahead built with
  ``create_graph=True`` through ``torch.func.functional_call`` and differentiated end to
  end (second order). The reference the tests hold the other route to.
- :func:`aligned_lookahead`, the same number for a fraction of the cost. Because the inner
  loss is *linear* in the coefficients, the chain rule collapses exactly:

      dL_out/dλ = -α Σ_i (∂a_i/∂λ) ⟨∇θ l_i(θ), u⟩,   u = ∇θ' L_out(θ')

  so one first-order gradient at θ (for θ'), one at θ' (for u) and one forward-mode
  directional derivative of the per-example losses along u (``torch.autograd.forward_ad``)
  replace the double backward. This is L2RW's own closed form (its appendix, eq. 30; the
  official CIFAR code computes it this way) generalised from ε = 0 to any coefficients;
  it needs the coefficients' inputs detached from θ, as TML's and the "stable" MW-Net's
  are. Batch norm in training mode couples the examples; the identity still holds
  exactly, since l_i is differentiated as a function of θ with the whole batch.

Batch norm's running statistics: every forward here runs on *cloned* buffers, so a
lookahead never moves the model's statistics. The forward at θ on the training batch is the
real step's forward too; :func:`commit_buffers` copies its statistics into the model, which
then moved exactly as one ordinary training forward would have moved them.

Parameters are a dict ``name -> tensor`` (``model.named_parameters()``); inputs are
``[B, C, H, W]`` float images and ``[B]`` int64 labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]
Sync = Callable[[list[torch.Tensor]], None]
# per-example coefficients a [B] from the detached per-example losses [B]
Coefficients = Callable[[torch.Tensor], torch.Tensor]


def parameters_of(model: nn.Module) -> Params:
    """The model's live trainable parameters by name (frozen ones stay the module's own)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def cloned_buffers(model: nn.Module) -> Params:
    """Copies of the model's buffers (BN running mean / var, ``num_batches_tracked``): a
    forward on them updates the copies, never the model."""
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def commit_buffers(model: nn.Module, buffers: Params) -> None:
    """Writes ``buffers`` (from a forward at the model's own parameters) into the model."""
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])


def forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, C]`` of ``model`` run with ``params`` and ``buffers`` (updated in place
    in training mode, as a module's own buffers would be)."""
    return functional_call(model, (params, buffers), (x,))


def weighted_loss(losses: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Σ_i a_i l_i: the inner (and real) loss of every reweighting method; ``[B]`` each."""
    return (coefficients * losses).sum()


def half_squared_norm(params: Params) -> torch.Tensor:
    """Σ ||θ||² / 2 (TensorFlow's ``l2_loss``, TML's weight-decay term)."""
    return sum((p * p).sum() for p in params.values()) / 2


def lookahead(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor,
              inner_loss: Callable[[torch.Tensor], torch.Tensor], step_size: float,
              weight_decay: float = 0.0, create_graph: bool = True) -> Params:
    """One plain SGD step θ' = θ - α (∇θ inner_loss(f(x; θ)) + wd θ), returned as new tensors
    (nothing in place, no module surgery).

    The outer gradient flows through: the values of ``params`` (directly and, with
    ``create_graph``, through ∇θ) and every tensor that ``inner_loss`` closes over (the
    meta-learned weights), second order with ``create_graph=True``; with
    ``create_graph=False`` through the direct path of θ only. It never flows into
    ``buffers``, which the forward updates in place (pass clones: :func:`cloned_buffers`).
    ``inner_loss`` maps logits ``[B, C]`` to a scalar.
    """
    names = list(params)
    loss = inner_loss(forward(model, params, buffers, x))
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph,
                                allow_unused=True)
    out = {}
    for name, grad in zip(names, grads, strict=True):
        p = params[name]
        step = torch.zeros_like(p) if grad is None else grad
        if weight_decay:
            step = step + weight_decay * p
        out[name] = p - step_size * step
    return out


def outer_loss(model: nn.Module, params: Params, buffers: Params, meta_x: torch.Tensor,
               meta_y: torch.Tensor, weight_decay: float = 0.0) -> torch.Tensor:
    """L_out(θ') = mean CE on the meta batch (+ wd/2 ||θ'||², TML's target loss).
    The gradient flows through ``params`` only."""
    loss = F.cross_entropy(forward(model, params, buffers, meta_x), meta_y)
    if weight_decay:
        loss = loss + weight_decay * half_squared_norm(params)
    return loss


def unrolled_meta_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           coefficients: Coefficients, meta_x: torch.Tensor,
                           meta_y: torch.Tensor, meta_tensors: list[torch.Tensor],
                           step_size: float, weight_decay: float = 0.0
                           ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """dL_out(θ'(λ))/dλ by differentiating through the lookahead (second order), and L_out.

    The outer gradient flows through: θ' -> ∇θ Σ a_i l_i (double backward) -> a_i ->
    ``meta_tensors`` (λ). Not into θ (the model's parameters get no ``.grad``), not into
    the coefficients' input (the losses are detached before ``coefficients`` sees them),
    not into the buffers (cloned for both forwards). Returns one gradient per meta tensor
    (zeros where λ does not reach L_out).
    """
    def inner_loss(logits: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, y, reduction="none")
        return weighted_loss(losses, coefficients(losses.detach()))

    looked_ahead = lookahead(model, parameters_of(model), cloned_buffers(model), x,
                             inner_loss, step_size, weight_decay, create_graph=True)
    loss = outer_loss(model, looked_ahead, cloned_buffers(model), meta_x, meta_y,
                      weight_decay)
    grads = torch.autograd.grad(loss, meta_tensors, allow_unused=True)
    return ([torch.zeros_like(t) if g is None else g
             for t, g in zip(meta_tensors, grads, strict=True)], loss.detach())


@dataclass
class Aligned:
    """What :func:`aligned_lookahead` computed (B = training batch size).

    ``logits`` ``[B, C]`` and ``losses`` ``[B]``: the training batch at θ, carrying the
    graph to θ when asked (``keep_graph``), so the real step backprops through them.
    ``coefficients`` ``[B]``: a_i(λ) with its graph to λ (None for ε = 0).
    ``alignment`` ``[B]``: ⟨∇θ l_i(θ), u⟩, detached. ``train_grads``: ∇θ Σ a_i l_i at θ
    without weight decay, detached (None for ε = 0). ``buffers``: the running statistics
    after one training forward at θ (:func:`commit_buffers`). ``meta_loss``: L_out(θ').
    """

    logits: torch.Tensor
    losses: torch.Tensor
    coefficients: torch.Tensor | None
    alignment: torch.Tensor
    train_grads: Params | None
    buffers: Params
    meta_loss: torch.Tensor

    def meta_gradient(self, meta_tensors: list[torch.Tensor], step_size: float
                      ) -> list[torch.Tensor]:
        """dL_out/dλ = -α Σ_i (∂a_i/∂λ) alignment_i (exact; see the module docstring)."""
        grads = torch.autograd.grad(self.coefficients, meta_tensors,
                                    grad_outputs=-step_size * self.alignment,
                                    allow_unused=True)
        return [torch.zeros_like(t) if g is None else g
                for t, g in zip(meta_tensors, grads, strict=True)]


def aligned_lookahead(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      coefficients: Coefficients | None, meta_x: torch.Tensor,
                      meta_y: torch.Tensor, step_size: float, weight_decay: float = 0.0,
                      keep_graph: bool = True, sync_outer: Sync | None = None) -> Aligned:
    """The lookahead's meta-gradient in first-order work: θ' from one gradient at θ, u at θ',
    then the per-example directional derivatives ⟨∇θ l_i(θ), u⟩ in one forward-mode pass.

    ``coefficients=None`` is L2RW's ε = 0: θ' = θ, and the forward-mode pass also serves as
    the training forward. ``sync_outer`` (if given) is applied to u before it is used (L2RW
    averages the meta-set gradient over ranks there). The outer gradient flows through
    ``Aligned.coefficients`` only (to λ, via :meth:`Aligned.meta_gradient`); ``losses``
    keeps the graph to θ for the real step when ``keep_graph``.
    Dropout: the forward-mode pass replays the random stream of the first training forward,
    so both see the same masks (the meta forward's draws are then drawn again by the next
    step: harmless, and the run stays deterministic).
    """
    params = parameters_of(model)
    names = list(params)
    rng = None
    if coefficients is None:
        looked_ahead, train_grads, a, buffers = params, None, None, None
    else:
        rng = _RandomState(x.device)
        buffers = cloned_buffers(model)
        logits = forward(model, params, buffers, x)
        losses = F.cross_entropy(logits, y, reduction="none")
        a = coefficients(losses.detach())
        grads = torch.autograd.grad(weighted_loss(losses, a.detach()),
                                    [params[n] for n in names], retain_graph=keep_graph,
                                    allow_unused=True)
        train_grads = {n: torch.zeros_like(params[n]) if g is None else g
                       for n, g in zip(names, grads, strict=True)}
        looked_ahead = {n: p.detach() - step_size * (train_grads[n] + weight_decay * p.detach())
                        for n, p in params.items()}
    meta = {n: p.detach().requires_grad_() for n, p in looked_ahead.items()}
    meta_loss = outer_loss(model, meta, cloned_buffers(model), meta_x, meta_y, weight_decay)
    u = list(torch.autograd.grad(meta_loss, [meta[n] for n in names], allow_unused=True))
    u = [torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, u, strict=True)]
    if sync_outer is not None:
        sync_outer(u)

    dual_buffers = cloned_buffers(model)
    primal_params = params if coefficients is None and keep_graph else {
        n: p.detach() for n, p in params.items()}
    if rng is not None:
        rng.replay()
    _load_forward_ad_quietly()
    with fwAD.dual_level():
        dual = {n: fwAD.make_dual(primal_params[n], t) for n, t in zip(names, u, strict=True)}
        dual_logits = forward(model, dual, dual_buffers, x)
        dual_losses = F.cross_entropy(dual_logits, y, reduction="none")
        primal_losses, alignment = fwAD.unpack_dual(dual_losses)
        primal_logits = fwAD.unpack_dual(dual_logits).primal
    if coefficients is None:
        logits, losses, buffers = primal_logits, primal_losses, dual_buffers
    if not keep_graph:
        logits, losses = logits.detach(), losses.detach()
    return Aligned(logits, losses, a, alignment.detach(), train_grads, buffers,
                   meta_loss.detach())


def loss_with_gradient(value: torch.Tensor, params: Params, grads: Params) -> torch.Tensor:
    """A scalar equal to ``value`` whose backward puts ``grads`` into the parameters' ``.grad``
    (Σ ⟨θ, g⟩ minus its own value): hands an already computed real-step gradient to a
    trainer that calls ``loss.backward()``, without a second backward through the network."""
    surrogate = sum((p * grads[n]).sum() for n, p in params.items())
    return value.detach() + surrogate - surrogate.detach()


def _load_forward_ad_quietly() -> None:
    """torch loads its forward-AD decompositions (of backward ops, unused here) at the first
    ``make_dual``, through the deprecated ``torch.jit.script``: load them once, without the
    FutureWarning it prints."""
    global _FORWARD_AD_LOADED
    if not _FORWARD_AD_LOADED:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*torch.jit.script.*", FutureWarning)
            getattr(fwAD, "_maybe_load_decompositions", lambda: None)()
        _FORWARD_AD_LOADED = True


_FORWARD_AD_LOADED = False


class _RandomState:
    """The random stream at construction (CPU and the batch's CUDA device), to replay the
    same dropout masks in a second forward over the same batch."""

    def __init__(self, device: torch.device):
        self.cuda = device if device.type == "cuda" else None
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(self.cuda) if self.cuda else None

    def replay(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
