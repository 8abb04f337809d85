"""Empirical risk minimisation: the plain mean cross-entropy, every example weighted 1/B
(the "BaseModel" of MW-Net's tables)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taml.biased.methods.protocol import StepOutput, Sync, no_sync


class ERM:
    name = "erm"
    needs_meta_batch = False

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, meta_x=None,
             meta_y=None, lr: float = 0.0, step_index: int = 0,
             sync: Sync = no_sync) -> StepOutput:
        logits = model(x)
        weights = torch.full((len(y),), 1.0 / len(y), device=x.device)
        return StepOutput(F.cross_entropy(logits, y), logits.detach(), weights)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        return {}
