"""taml: meta-learning on imbalanced and out-of-distribution tasks."""

__version__ = "0.1.0"
