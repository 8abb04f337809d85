"""taml: meta-learning on imbalanced and out-of-distribution tasks."""

__version__ = "0.1.0"

__all__ = ["__version__"]

# --- reweighting API (biased data; taml/biased/api.py, docs/api_biased.md) ---
from taml.biased.api import (  # noqa: E402
    ClassBalancedStep,
    ERMStep,
    FocalStep,
    L2RWStep,
    LNLStats,
    LNLStep,
    MWNetStep,
    ReweightingStep,
    StepOutput,
    StepStats,
    TMLStep,
    WeightingNet,
)

__all__ += ["ClassBalancedStep", "ERMStep", "FocalStep", "L2RWStep", "LNLStats", "LNLStep",
            "MWNetStep", "ReweightingStep", "StepOutput", "StepStats", "TMLStep",
            "WeightingNet"]
# --- end reweighting API ---
