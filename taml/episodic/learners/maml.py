"""MAML (Finn et al., 2017): "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML.

Inner loop, per task τ, from the shared initialisation θ:

    θ_τ ← θ_τ − inner_lr · ∇ L_τ^support(θ_τ)          (n_steps times, θ_τ ← θ first)

Outer loop: Adam on the mean query cross-entropy of the adapted θ_τ over the meta-batch,
second-order through the inner steps (``--first_order`` drops the second-order terms).
In taml: the shared inner loop with every switch off.
"""

from __future__ import annotations

from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches

SWITCHES = Switches()


def build(image_size: int, way: int, max_shot: int, inner: InnerLoopConfig,
          seed: int = 0) -> MetaLearner:
    return MetaLearner(SWITCHES, image_size, way, max_shot, inner, seed=seed)
