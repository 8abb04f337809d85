"""Meta-SGD (Li et al., 2017): "Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning", arXiv:1707.09835.

MAML with a learned step size per parameter, α (same shape as θ, initialised to 0.01):

    θ_τ ← θ_τ − α ⊙ ∇ L_τ^support(θ_τ)

α is meta-learned with θ. As in the original Bayesian TAML code, the classifier's α is
one column shared by every class (labels are arbitrary per task). In taml: ``--alpha_on``.
"""

from __future__ import annotations

from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches

SWITCHES = Switches(alpha_on=True)


def build(image_size: int, way: int, max_shot: int, inner: InnerLoopConfig,
          seed: int = 0) -> MetaLearner:
    return MetaLearner(SWITCHES, image_size, way, max_shot, inner, seed=seed)
