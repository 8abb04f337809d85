"""How every ``main.py`` mode that trains or tests ends: one line and an exit code for what a
user can fix, the resume advice on Ctrl-C, and the process group stopped either way.

Exit codes: 0 done; 2 a refusal the user can fix (bad data, flags, folder, checkpoint); 1 a
diverged run; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from taml.run.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_REFUSED

# the number rules are the API's too (one set for both): taml/run/validate.py
from taml.run.validate import check_number  # noqa: F401


class OneLineParser(argparse.ArgumentParser):
    """argparse, with an error as one line (the usage block above it buried the message
    that says what to change); ``--help`` still lists everything."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def check_path_flag(flag: str, value: str | None,
                    fix: str = "give a folder, or leave the flag out for the default") -> None:
    """An empty path (``--savedir ''``) would mean the current folder, or the default one,
    silently: refused (None, the flag left out, passes)."""
    if value is not None and not str(value).strip():
        raise ValueError(f"{flag} is empty; {fix}")


RESUME_ADVICE = "interrupted: rerun the same command to resume from the last checkpoint"


def run_reporting_errors(action: Callable[[], int],
                         refusals: tuple[type[BaseException], ...],
                         diverged: type[BaseException],
                         stop: Callable[[bool], None],
                         interrupted: str = RESUME_ADVICE) -> int:
    """Runs ``action`` (which returns its exit code) and turns the errors a user can act on
    into one stderr line each; ``stop(finished)`` runs last in every case (it leaves the
    torchrun process group, waiting for the other ranks only after a normal finish)."""
    finished = False
    try:
        code = action()
        finished = True
        return code
    except refusals as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except diverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop(finished)
