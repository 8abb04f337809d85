"""Online bilevel learners for biased training data (TML, L2RW, MW-Net) and the baselines
they are compared with (ERM, class-balanced re-weighting, focal loss), on one lookahead core
(:mod:`taml.bilevel.core`). :func:`build_method` is the entry point."""

from taml.bilevel.methods import METHODS, Method, MethodHyper, StepOutput, build_method, no_sync

__all__ = ["METHODS", "Method", "MethodHyper", "StepOutput", "build_method", "no_sync"]
