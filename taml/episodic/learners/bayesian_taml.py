"""Bayesian TAML (Lee et al., 2020): "Learning to Balance: Bayesian Meta-Learning for
Imbalanced and Out-of-distribution Tasks", ICLR (oral).

Meta-SGD plus three balancing variables, inferred per task from its support set by the
inference network (``inference_net.py``) as diagonal Gaussians q(ω, γ, z | D_τ):

    θ_τ⁰ = θ ∘ z                                   (z: OOD; kernels ×(1+z_w), biases +z_b)
    θ_τ ← θ_τ − exp(γ_l) · α ⊙ ∇ Σ_c softmax(ω)_c L_c(θ_τ)       (n_steps times)

with L_c the per-class support loss (sum over the class's rows × way / N), ω the class
imbalance weights, γ_l the task-imbalance scale of layer l. Outer objective per task:
query cross-entropy + KL(q ‖ N(0, I)) / (N + M) (N: the task's real support size, or with
``--kl_normaliser padded`` the meta-batch's padded one, as the original), one posterior
sample per task in meta-training; posterior means (or the softmax averaged over
``--n_mc_samples`` samples) at meta-test. In taml: ``--alpha_on --omega_on --gamma_on
--z_on``; any of ω, γ, z can be switched on alone for the paper's ablations.
"""

import math

NAME = "taml"  # run folders and report rows (taml.episodic.learners.method_name)
TITLE = "Bayesian TAML"  # the report's tables
# the switches it turns on (Config's --<switch> flags, meta_learner.Switches' fields)
SWITCHES: tuple[str, ...] = ("alpha_on", "omega_on", "gamma_on", "z_on")
# σ of every posterior at initialisation in the original: its std heads start with zero
# bias, σ = softplus(0) = log 2 (``--sigma_init original``)
ORIGINAL_SIGMA_INIT = math.log(2.0)
# taml's default, a deviation from the original: at log 2, z flips a kernel's sign
# (1 + z_w < 0) with probability Φ(-1/0.69) ≈ 7% and the inner loop starts noisy; at 0.2 with
# Φ(-5) ≈ 3e-7. Over seeds 0-2 at 1500 iterations it validated 15.6 points higher at
# iteration 100 and tested +3.4 OOD at the same ID (docs/studies.md, the ranking study)
DEFAULT_SIGMA_INIT = 0.2
