"""Meta-SGD (Li et al., 2017): "Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning", arXiv:1707.09835.

MAML with a learned step size per parameter, α (same shape as θ, initialised to 0.01):

    θ_τ ← θ_τ − α ⊙ ∇ L_τ^support(θ_τ)

α is meta-learned with θ. As in the original Bayesian TAML code, the classifier's α is
one column shared by every class (labels are arbitrary per task). In taml: ``--alpha_on``.
"""

NAME = "meta_sgd"  # run folders and report rows (taml.episodic.learners.method_name)
TITLE = "Meta-SGD"  # the report's tables
# the switches it turns on (Config's --<switch> flags, meta_learner.Switches' fields)
SWITCHES: tuple[str, ...] = ("alpha_on",)
