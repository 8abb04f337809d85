"""taml: meta-learning on imbalanced and out-of-distribution tasks.

The public Python API is the names of ``__all__``, imported lazily (``import taml`` loads no
torch; ``from taml import BayesianTAML`` loads what that needs). docs/api.md gives each
entry's contract; ``tests/api_signatures.json`` pins their signatures.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EPISODIC = {
    "MAML": "taml.episodic.api",
    "MetaSGD": "taml.episodic.api",
    "BayesianTAML": "taml.episodic.api",
    "MetaObjective": "taml.episodic.api",
    "Conv4": "taml.episodic.learners.conv4",
    "ResNet12": "taml.episodic.learners.resnet12",
    "BackboneError": "taml.episodic.learners.backbone",
    "EpisodeBuilder": "taml.data.episode_builder",
    "TaskBatch": "taml.data.episode_builder",
    "collate_tasks": "taml.data.episode_builder",
}
# ---- the reweighting API (biased family; taml/biased/api.py) ----
_BIASED = {
    "ClassBalancedStep": "taml.biased.api",
    "ERMStep": "taml.biased.api",
    "FocalStep": "taml.biased.api",
    "L2RWStep": "taml.biased.api",
    "LNLStats": "taml.biased.api",
    "LNLStep": "taml.biased.api",
    "MWNetStep": "taml.biased.api",
    "ReweightingStep": "taml.biased.api",
    "StepOutput": "taml.biased.api",
    "StepStats": "taml.biased.api",
    "TMLStep": "taml.biased.api",
    "WeightingNet": "taml.biased.api",
}
# ---- end of the reweighting API ----
_PUBLIC = {**_EPISODIC, **_BIASED}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'taml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
