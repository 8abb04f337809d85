"""Online bilevel learners for biased training data (TML, L2RW, MW-Net) and the baselines
they are compared with (ERM, class-balanced re-weighting, focal loss), on one lookahead core
(:mod:`taml.biased.methods.core`). :func:`build_method` is the entry point; the types every
method speaks are in :mod:`taml.biased.methods.protocol`, which imports no method."""

from taml.biased.methods.class_balanced import ClassBalanced
from taml.biased.methods.erm import ERM
from taml.biased.methods.focal import Focal
from taml.biased.methods.l2rw import L2RW
from taml.biased.methods.mwnet import MWNet
from taml.biased.methods.protocol import Method, MethodHyper, StepOutput, no_sync
from taml.biased.methods.tml import TML

METHODS = ("erm", "class_balanced", "focal", "tml", "l2rw", "mwnet")


def build_method(name: str, num_classes: int, hp: MethodHyper) -> Method:
    """The method ``name`` (one of :data:`METHODS`) for ``num_classes`` classes."""
    if name == "erm":
        return ERM()
    if name == "class_balanced":
        return ClassBalanced(num_classes, hp.class_counts)
    if name == "focal":
        return Focal(hp.focal_gamma)
    if name == "tml":
        return TML(num_classes, hp)
    if name == "l2rw":
        return L2RW()
    if name == "mwnet":
        return MWNet(hp)
    raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")


__all__ = ["METHODS", "Method", "MethodHyper", "StepOutput", "build_method", "no_sync"]
