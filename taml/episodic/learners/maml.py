"""MAML (Finn et al., 2017): "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML.

Inner loop, per task τ, from the shared initialisation θ:

    θ_τ ← θ_τ − inner_lr · ∇ L_τ^support(θ_τ)          (n_steps times, θ_τ ← θ first)

Outer loop: Adam on the mean query cross-entropy of the adapted θ_τ over the meta-batch,
second-order through the inner steps (``--first_order`` drops the second-order terms).
In taml: the shared inner loop with every switch off.
"""

NAME = "maml"  # run folders and report rows (taml.episodic.learners.method_name)
TITLE = "MAML"  # the report's tables
# the switches it turns on (Config's --<switch> flags, meta_learner.Switches' fields)
SWITCHES: tuple[str, ...] = ()
