"""Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018): per-example weights
of the current batch, recomputed from scratch every step from the meta-gradient at ε = 0.

    θ'(ε) = θ - α ∇θ Σ_i ε_i l_i(θ),    g = ∇ε mean_j l_j^meta(θ'(ε)) at ε = 0
    w_i   = max(-g_i, 0) / Σ_k max(-g_k, 0)      (all zero: the batch gets zero weight)

and the real step is the trainer's momentum SGD on Σ_i w_i l_i(θ), w constant.
At ε = 0, g_i = -α ⟨∇θ l_i(θ), ∇θ L_meta(θ)⟩ (the paper's appendix, eq. 30): an example
counts in proportion to how well its gradient agrees with the clean set's. α is
normalised away (α = 1 here).

``route="aligned"`` (default) computes exactly that: ∇θ L_meta at θ, then the alignments
in one forward-mode pass over the training batch, which is also the real step's forward
(as the official CIFAR code, which avoids the second forward). ``route="unrolled"``
differentiates through the lookahead at ε = 0 (the MNIST code's way; a single-process
reference: the meta-set gradient is not synced there).

More than one process: ``sync`` averages ∇θ L_meta over ranks (every rank's ε then sees the
whole meta batch), and then the normaliser Σ max(-g, 0): rank r's weights are
max(-g_i, 0) / mean_r(Σ_r), so that the trainer's average of the ranks' gradients equals
one process's Σ_i w_i ∇l_i over the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import taml.biased.methods.core as core
from taml.biased.methods.protocol import StepOutput, Sync, no_sync


def weights_from_meta_gradient(meta_grad: torch.Tensor, sync: Sync = no_sync) -> torch.Tensor:
    """``[B]`` w = max(-g, 0) / Σ max(-g, 0) (zeros where the sum is 0), Σ averaged by sync."""
    kept = (-meta_grad).clamp(min=0)
    total = kept.sum().reshape(1)
    sync([total])
    return kept / torch.where(total > 0, total, torch.ones_like(total))


class L2RW:
    name = "l2rw"
    needs_meta_batch = True

    def __init__(self, route: str = "aligned"):
        if route not in ("aligned", "unrolled"):
            raise ValueError(f"route must be 'aligned' or 'unrolled', got {route!r}")
        self.route = route
        self.last_weights = torch.zeros(0)
        self.meta_loss = torch.tensor(float("nan"))  # mean meta-batch CE at θ (ε = 0)

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             meta_x: torch.Tensor, meta_y: torch.Tensor, lr: float = 0.0,
             step_index: int = 0, sync: Sync = no_sync) -> StepOutput:
        if self.route == "aligned":
            ahead = core.aligned_lookahead(model, x, y, None, meta_x, meta_y, step_size=1.0,
                                           keep_graph=True, sync_outer=sync)
            core.commit_buffers(model, ahead.buffers)
            meta_grad, logits, losses = -ahead.alignment, ahead.logits, ahead.losses
            self.meta_loss = ahead.meta_loss
        else:
            eps = torch.zeros(len(y), device=x.device, dtype=next(model.parameters()).dtype,
                              requires_grad=True)
            (meta_grad,), self.meta_loss = core.unrolled_meta_gradient(
                model, x, y, lambda losses: eps, meta_x, meta_y, [eps], step_size=1.0)
            logits = model(x)
            losses = F.cross_entropy(logits, y, reduction="none")
        weights = weights_from_meta_gradient(meta_grad.detach(), sync)
        self.last_weights = weights  # read in summary(): no device sync per step
        return StepOutput(core.weighted_loss(losses, weights), logits.detach(), weights)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        """``zero_weight_share``: the share of the last batch that got weight 0."""
        if not len(self.last_weights):
            return {"zero_weight_share": float("nan")}
        return {"zero_weight_share": float((self.last_weights == 0).float().mean())}
