"""Class-balanced re-weighting by inverse class frequency (the "Class-balanced" baseline of
MW-Net's tables, Cui et al., CVPR 2019, with β -> 1, where the effective number of
examples is the count itself).

    w_c = (1 / n_c) * C / Σ_k (1 / n_k),    loss = (1/B) Σ_i w_{y_i} l_i

Normalisation: the class weights sum to C (Cui et al.'s convention), so a balanced training
set gives w_c = 1 (plain cross-entropy), and the loss is a mean over the batch, not a
weighted mean, so its scale (and the learning rate that suits it) stays comparable with ERM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taml.biased.methods.protocol import StepOutput, Sync, no_sync


def inverse_frequency_weights(class_counts: tuple[int, ...]) -> torch.Tensor:
    """``[C]`` weights ∝ 1 / n_c summing to C."""
    if any(n <= 0 for n in class_counts):
        raise ValueError(f"class_balanced: every class needs training examples, got counts "
                         f"{list(class_counts)}; lower --imbalance_factor or pick classes "
                         f"present in the data")
    inverse = 1.0 / torch.tensor(class_counts, dtype=torch.float64)
    return (inverse * len(class_counts) / inverse.sum()).float()


class ClassBalanced:
    name = "class_balanced"
    needs_meta_batch = False

    def __init__(self, num_classes: int, class_counts: tuple[int, ...] | None):
        if class_counts is None or len(class_counts) != num_classes:
            raise ValueError(f"class_balanced needs the training set's {num_classes} class "
                             f"counts (MethodHyper.class_counts), got {class_counts}")
        self.class_weights = inverse_frequency_weights(tuple(class_counts))

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, meta_x=None,
             meta_y=None, lr: float = 0.0, step_index: int = 0,
             sync: Sync = no_sync) -> StepOutput:
        logits = model(x)
        weights = self.class_weights.to(logits.device, logits.dtype)[y] / len(y)
        loss = (weights * F.cross_entropy(logits, y, reduction="none")).sum()
        return StepOutput(loss, logits.detach(), weights)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        return {"class_weights": self.class_weights.tolist()}
