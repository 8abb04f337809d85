"""taml: meta-learning on imbalanced and out-of-distribution tasks (MAML, Meta-SGD, Bayesian TAML)."""

__version__ = "0.1.0"
