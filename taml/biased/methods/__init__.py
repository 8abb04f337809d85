"""Online bilevel learners for biased training data (TML, L2RW, MW-Net) and the baselines
they are compared with (ERM, class-balanced re-weighting, focal loss), on one lookahead core
(:mod:`taml.biased.methods.core`). :func:`build_method` is the entry point."""

from taml.biased.methods.protocol import (
    METHODS,
    Method,
    MethodHyper,
    StepOutput,
    build_method,
    no_sync,
)

__all__ = ["METHODS", "Method", "MethodHyper", "StepOutput", "build_method", "no_sync"]
