"""The two kinds of failure every mode reports in one line, and their exit codes.

A :class:`Refusal` is something the user can fix (bad data, flags, folder, checkpoint,
device): exit 2, the message names the fix. :class:`TrainingDiverged` is a run whose loss or
gradient stopped being finite, or whose training accuracy stayed at chance: exit 1. Ctrl-C
exits 130 (:func:`taml.run.cli.run_reporting_errors`).
Each layer subclasses :class:`Refusal` for its own errors, so one ``except`` covers them all.
"""

from __future__ import annotations

EXIT_REFUSED = 2
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130


class Refusal(RuntimeError):
    """A run that cannot start or go on as asked; the message is one line naming the fix."""


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite, or the training accuracy stayed at
    chance for an epoch (:mod:`taml.run.chance`); the message names the fix."""
