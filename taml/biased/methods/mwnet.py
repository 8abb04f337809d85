"""Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019): an MLP V (1-100-1,
ReLU, sigmoid) maps an example's loss to its weight, meta-learned by a one-step lookahead.

    θ'(Φ) = θ - α (1/B) Σ_i V(l_i(θ); Φ) ∇θ l_i(θ)       (α = the current lr; plain SGD)
    Φ     <- Adam/SGD step on ∇Φ mean_j l_j^meta(θ'(Φ))
    real step: the trainer's momentum SGD on (1/B) Σ_i V(l_i(θ); Φ_new) l_i(θ), V constant

As the official "stable" noisy-label script (``MW-Net.py``): V reads the *detached* loss,
and the weights are not normalised (loss = (1/B) Σ v_i l_i, in the lookahead and the real
step). ``hp.mwnet_weights="normalised"`` is the class-imbalance script's form instead:
v_i / Σ_j v_j per batch (loss Σ_i v_i l_i / Σ_j v_j, in both; uniform V is then ERM's mean),
V still reading the detached loss. V's optimizer follows the originals: Adam (lr 1e-3,
weight decay 1e-4, the stable script) or SGD (lr 1e-5, momentum 0.9, Nesterov, weight decay
5e-4, the class-imbalance script); the lr is ``MethodHyper.meta_lr``. V is initialised
like ``nn.Linear`` from a generator seeded with ``MethodHyper.seed``.

Meta-gradient: :func:`taml.biased.methods.core.aligned_lookahead` (exact, no double backward) by
default, ``route="unrolled"`` through the lookahead (second order). Unlike the original,
no copy of the classifier is made per step, and the lookahead leaves the model's batch-norm
statistics alone (the original's copy absorbed them). Lookahead plain SGD vs momentum real
step: the original's approximation, kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import taml.biased.methods.core as core
from taml.biased.methods.protocol import MethodHyper, StepOutput, Sync, no_sync

META_WEIGHT_DECAY = {"adam": 1e-4, "sgd": 5e-4}
CURVE_LOSSES = torch.linspace(0.0, 10.0, 101)  # where summary() samples V


class WeightingNet(nn.Module):
    """V: losses ``[B]`` -> weights ``[B]`` in (0, 1)."""

    def __init__(self, hidden: int, generator: torch.Generator):
        super().__init__()
        self.hidden = nn.Linear(1, hidden)
        self.out = nn.Linear(hidden, 1)
        with torch.no_grad():  # nn.Linear's default ranges, from an explicit generator
            for layer in (self.hidden, self.out):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(F.relu(self.hidden(losses[:, None])))).squeeze(1)


class MWNet:
    name = "mwnet"
    needs_meta_batch = True

    def __init__(self, hp: MethodHyper, route: str = "aligned", vnet: nn.Module | None = None,
                 optimizer: torch.optim.Optimizer | None = None):
        """``vnet`` (losses ``[B]`` -> weights ``[B]``) and its ``optimizer``: a user's own
        V and meta-optimiser; left out, :class:`WeightingNet` and the optimiser ``hp``
        names (``optimizer`` alone needs ``vnet``)."""
        if optimizer is not None and vnet is None:
            raise ValueError("MW-Net: a meta optimiser needs the meta-net it steps (vnet)")
        if route not in ("aligned", "unrolled"):
            raise ValueError(f"route must be 'aligned' or 'unrolled', got {route!r}")
        if hp.meta_optimizer not in META_WEIGHT_DECAY:
            raise ValueError(f"MW-Net's meta optimizer must be 'adam' or 'sgd', got "
                             f"{hp.meta_optimizer!r} (--meta_optimizer)")
        if hp.mwnet_weights not in ("mean", "normalised"):
            raise ValueError(f"MW-Net's weights must be 'mean' or 'normalised', got "
                             f"{hp.mwnet_weights!r} (--mwnet_weights)")
        self.hp, self.route = hp, route
        self.vnet = vnet if vnet is not None else WeightingNet(
            hp.mwnet_hidden, torch.Generator().manual_seed(hp.seed))
        decay = META_WEIGHT_DECAY[hp.meta_optimizer]
        if optimizer is not None:
            self.optimizer = optimizer
        elif hp.meta_optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.vnet.parameters(), hp.meta_lr,
                                              weight_decay=decay)
        else:
            self.optimizer = torch.optim.SGD(self.vnet.parameters(), hp.meta_lr, momentum=0.9,
                                             nesterov=True, weight_decay=decay)
        self.meta_loss = torch.tensor(float("nan"))

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             meta_x: torch.Tensor, meta_y: torch.Tensor, lr: float, step_index: int = 0,
             sync: Sync = no_sync) -> StepOutput:
        self._place_like(next(model.parameters()))
        step_size = self.hp.lookahead_lr if self.hp.lookahead_lr is not None else lr
        meta_params = [p for p in self.vnet.parameters() if p.requires_grad]

        if self.route == "aligned":
            ahead = core.aligned_lookahead(model, x, y, self.coefficients, meta_x, meta_y,
                                           step_size, keep_graph=True)
            grads = ahead.meta_gradient(meta_params, step_size)
            core.commit_buffers(model, ahead.buffers)
            logits, losses, meta_loss = ahead.logits, ahead.losses, ahead.meta_loss
        else:
            grads, meta_loss = core.unrolled_meta_gradient(
                model, x, y, self.coefficients, meta_x, meta_y, meta_params, step_size)
            logits = model(x)
            losses = F.cross_entropy(logits, y, reduction="none")
        sync(grads)
        for p, g in zip(meta_params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.meta_loss = meta_loss  # a tensor: read in summary(), no device sync per step
        with torch.no_grad():
            coefficients = self.coefficients(losses.detach())
        return StepOutput(core.weighted_loss(losses, coefficients), logits.detach(),
                          coefficients)

    def coefficients(self, losses: torch.Tensor) -> torch.Tensor:
        """``[B]`` a_i from the detached losses ``[B]``: v_i / B, or v_i / Σ_j v_j normalised
        (kept as v_i where the sum is 0, as the original)."""
        v = self.vnet(losses)
        if v.shape != losses.shape:
            raise ValueError(f"MW-Net's meta-net must map the losses [B] to weights [B]; it "
                             f"gave shape {tuple(v.shape)} for {tuple(losses.shape)}")
        if self.hp.mwnet_weights == "mean":
            return v / len(v)
        total = v.sum()
        return v / torch.where(total != 0, total, torch.ones_like(total))

    def _place_like(self, tensor: torch.Tensor) -> None:
        """V and its optimizer state on the classifier's device and dtype (a checkpoint is
        loaded on the CPU; ``Module.to`` works in place, so the optimizer keeps V's tensors)."""
        first = next(self.vnet.parameters())
        if (first.device, first.dtype) == (tensor.device, tensor.dtype):
            return
        self.vnet.to(tensor.device, tensor.dtype)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and key != "step":  # Adam keeps its step on the CPU
                    state[key] = value.to(tensor.device, tensor.dtype)

    def state_dict(self) -> dict:
        return {"vnet": self.vnet.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._place_like(next(iter(state["vnet"].values())))
        self.vnet.load_state_dict(state["vnet"])
        self.optimizer.load_state_dict(state["optimizer"])
        # the flag, not the saved rate: a resume honours a lowered --meta_lr (the divergence
        # advice); unchanged, this is the rate the optimizer already had
        for group in self.optimizer.param_groups:
            group["lr"] = self.hp.meta_lr

    def summary(self) -> dict:
        """``weight_curve``: (losses, V(losses)) on 0..10, the paper's Fig. 1f."""
        device = next(self.vnet.parameters()).device
        dtype = next(self.vnet.parameters()).dtype
        with torch.no_grad():
            weights = self.vnet(CURVE_LOSSES.to(device, dtype))
        return {"weight_curve": (CURVE_LOSSES.tolist(), weights.tolist()),
                "meta_loss": float(self.meta_loss)}
