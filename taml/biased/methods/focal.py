"""Focal loss (Lin et al., ICCV 2017), a baseline of MW-Net's tables:

    FL_i = -(1 - p_i)^γ log p_i,   p_i = softmax(f(x_i))_{y_i},   loss = (1/B) Σ_i FL_i

γ = 0 is cross-entropy. No α-balancing term (MW-Net's baseline has none). The modulating
factor (1 - p_i)^γ is differentiated through, as in the paper; ``example_weights``
reports it (detached, / B) as the weight each example's cross-entropy effectively got.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taml.biased.methods.protocol import StepOutput, Sync, no_sync


def focal_losses(logits: torch.Tensor, y: torch.Tensor, gamma: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example focal losses ``[B]`` and modulating factors (1 - p_i)^γ ``[B]``."""
    log_p = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    factor = (1 - log_p.exp()).clamp(min=0) ** gamma
    return -factor * log_p, factor


class Focal:
    name = "focal"
    needs_meta_batch = False

    def __init__(self, gamma: float):
        if gamma < 0:
            raise ValueError(f"focal loss needs gamma >= 0, got {gamma} (--focal_gamma)")
        self.gamma = gamma

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, meta_x=None,
             meta_y=None, lr: float = 0.0, step_index: int = 0,
             sync: Sync = no_sync) -> StepOutput:
        logits = model(x)
        losses, factor = focal_losses(logits, y, self.gamma)
        return StepOutput(losses.mean(), logits.detach(), factor.detach() / len(y))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        return {"gamma": self.gamma}
