"""What a resumed run may change, for both families: each family lists the flags a resume
refuses (they change what is learned: the model, the data, the objective, the random
streams) and the ones it honours (the length of training, the step sizes the divergence
advice tells the user to lower, the logging schedule); this module compares a checkpoint's
config with the command's, refuses with every difference in one line, and records what it
honours, so that a run folder always says which settings produced it.

A change is recorded in the checkpoint (``changes``: ``{<counter>: from, "flag", "old",
"new"}``), in ``config.json`` (rewritten with the new values) and in ``train.log``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from taml.run.folder import RunDirError


class IncompatibleRun(RunDirError):
    """The flags or data of this command do not fit the run in ``--savedir``."""


def plain_value(saved: Mapping, name: str):
    """The value of ``name`` as comparable (JSON gives lists where the config has tuples)."""
    value = saved.get(name)
    return tuple(value) if isinstance(value, list) else value


def flag_text(name: str, value) -> str:
    """``--name value`` as a user types it (``--flag`` / ``no --flag`` for a switch)."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"no --{name}"
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return f"--{name} {value}"


Value = Callable[[Mapping, str], object]


def differences(saved: Mapping, now: Mapping, names: Iterable[str],
                value: Value = plain_value) -> list[str]:
    """``"--x a there, --x b now"`` for each of ``names`` that the saved config holds with
    another value (a flag the saved config lacks is not compared: the family fills in the
    value such runs used, or accepts any)."""
    return [f"{flag_text(n, value(saved, n))} there, {flag_text(n, value(now, n))} now"
            for n in names if n in saved and value(saved, n) != value(now, n)]


def check_resume(saved: Mapping, now: Mapping, savedir: Path | str, *,
                 refused: Iterable[str], honoured: Iterable[str],
                 value: Value = plain_value) -> list[tuple[str, object, object]]:
    """Raises :class:`IncompatibleRun` naming every refused change; returns the honoured
    ones as ``(name, old, new)``."""
    diffs = differences(saved, now, refused, value)
    if diffs:
        raise IncompatibleRun(
            f"{savedir} holds a run trained with other settings ({'; '.join(diffs)}); they "
            "change what is learned, so it cannot go on with them: rerun with the run's "
            "values to resume it, or start a new run with another --savedir")
    return [(n, saved[n], now[n]) for n in honoured
            if n in saved and plain_value(saved, n) != plain_value(now, n)]


def recorded(previous: list[dict], changes: list[tuple[str, object, object]], counter: str,
             start: int) -> list[dict]:
    """The checkpoint's list of changes with this resume's appended (``counter``:
    "iteration" or "step", ``start``: the first one trained with the new values)."""
    return previous + [{counter: start, "flag": f"--{name}", "old": old, "new": new}
                       for name, old, new in changes]


def change_lines(changes: list[tuple[str, object, object]], counter: str, start: int,
                 checkpoint_name: str) -> list[str]:
    """The log's lines for the honoured changes."""
    return [f"  --{name} {old} -> {new} from {counter} {start} (recorded in "
            f"{checkpoint_name} and config.json)" for name, old, new in changes]
