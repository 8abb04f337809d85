"""What every biased-data method offers the trainer, and :func:`build_method`.

The trainer owns the model's optimizer (momentum SGD and its lr schedule). Each step it calls
``out = method.step(model, x, y, meta_x, meta_y, lr, step_index, sync)``, then
``out.loss.backward()``, averages the model's gradients over ranks and steps the optimizer.
A method does its meta-update (if any) inside ``step``, calling ``sync`` on its
meta-gradients first, and never moves batch-norm running statistics during a lookahead
(only the real step's forward does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

Sync = Callable[[list[torch.Tensor]], None]


def no_sync(tensors: list[torch.Tensor]) -> None:
    """The single-process ``sync``: leaves the meta-gradients as they are."""


@dataclass(frozen=True)
class MethodHyper:
    """Method settings, filled from BiasedConfig by the command line."""

    lookahead_lr: float | None = None  # None: the current (decayed) lr of the real step
    weight_decay: float = 0.0          # TML: inside the lookahead and target losses
    meta_lr: float = 1e-3              # TML outer lr (paper: 0.1), MW-Net (1e-5 SGD / 1e-3 Adam)
    meta_optimizer: str = "adam"       # mwnet: 'adam' | 'sgd'
    meta_every: int = 1                # TML: apply the class-weight update every 10 steps
    focal_gamma: float = 1.0
    mwnet_hidden: int = 100
    class_counts: tuple[int, ...] | None = None  # class_balanced needs them
    seed: int = 0                      # MW-Net's weighting-net initialisation
    tml_scale: str = "simplex"         # tml: 'simplex' (paper) | 'classes' (x C: w = 1/C is ERM)
    mwnet_weights: str = "mean"        # mwnet: 'mean' (stable noisy script) | 'normalised'


@dataclass
class StepOutput:
    loss: torch.Tensor             # the real-step loss, with graph; the trainer backprops it
    logits: torch.Tensor           # [B, C] detached, for the training accuracy
    example_weights: torch.Tensor  # [B] detached weights the real loss used (ERM: 1/B each)


class Method(Protocol):
    name: str
    needs_meta_batch: bool

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             meta_x: torch.Tensor | None, meta_y: torch.Tensor | None, lr: float,
             step_index: int, sync: Sync = no_sync) -> StepOutput:
        """x ``[B, C, H, W]``, y ``[B]``; meta_x ``[M, C, H, W]``, meta_y ``[M]``."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def summary(self) -> dict: ...
