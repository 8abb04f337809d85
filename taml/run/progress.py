"""Progress display for every long loop in taml: the one place that decides whether a bar
shows and what it looks like (every other module calls :func:`bar` and :func:`write`, never
tqdm itself).

- ``--no_progress`` turns every bar off, the data layer's included (synthetic generation,
  folder and dataset imports, downloads), which has no config of its own to read the flag
  from: each run calls :func:`set_enabled` with its config's ``progress`` before it loads
  any data, and that process-wide switch covers the rest of the run.
- On a terminal a bar is a tqdm bar. On anything else (``python -m experiments.demo > log.txt``, a
  pipe, a CI log) each of tqdm's carriage-return redraws would land in the file as text, so
  there a bar is :class:`PlainProgress`: one plain line each time another tenth is done, and
  nothing at all for a transient (``leave=False``) bar or one of unknown length.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

# how many plain lines a whole non-terminal bar writes at most (one per tenth done)
PLAIN_LINES = 10

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turns every bar in this process on or off (``--no_progress`` turns them off)."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    return _enabled


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or fake stream is not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed file
        return False


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
        unit: str = "it", initial: float = 0, leave: bool = True, enabled: bool = True,
        file: TextIO | None = None, **tqdm_options: Any) -> tqdm | PlainProgress:
    """A progress bar over ``iterable`` (or updated by hand with ``update``): a tqdm bar on a
    terminal, :class:`PlainProgress` elsewhere, a silent pass-through when ``enabled`` is
    false or :func:`set_enabled` turned bars off. ``file`` defaults to the current
    ``sys.stderr``; ``tqdm_options`` (``unit_scale``, ...) only matter to the tqdm bar."""
    stream = file if file is not None else sys.stderr
    if not (enabled and _enabled):
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    file=stream, **tqdm_options)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         leave=leave, stream=stream)


def write(text: str) -> None:
    """Prints a line to stdout without breaking a live bar on the terminal."""
    tqdm.write(text)


class PlainProgress:
    """The part of tqdm's interface that taml uses, for a stream that is not a terminal:
    writes ``desc: 40% (400/1000 it) loss=0.512`` each time another 1/PLAIN_LINES of
    ``total`` is done, so a whole run writes at most PLAIN_LINES lines and never a '\\r'."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: float = 0, leave: bool = True,
                 stream: TextIO | None = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable = iterable
        self.total = total
        self.n = initial
        self.desc, self.unit = desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.postfix = ""
        # a transient bar is gone from a terminal when it ends: in a file it says nothing
        self.silent = not leave or not total or total <= 0
        self.reported = self._steps_done()  # a resumed run does not repeat what it had done

    def _steps_done(self) -> int:
        """How many 1/PLAIN_LINES steps of ``total`` are done."""
        return int(min(self.n, self.total) * PLAIN_LINES // self.total) if not self.silent else 0

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.silent:
            return
        done = self._steps_done()
        if done > self.reported:  # one line even when an update jumps several steps
            self.reported = done
            percent = int(100 * min(self.n, self.total) // self.total)
            count = f"{self.n:g}/{self.total:g} {self.unit}"
            label = f"{self.desc}: " if self.desc else ""
            postfix = f" {self.postfix}" if self.postfix else ""
            self.stream.write(f"{label}{percent}% ({count}){postfix}\n")
            self.stream.flush()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress bar has no iterable; call update() instead")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True,
                    **values: Any) -> None:
        items = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw: lines are written as tenths complete."""

    def close(self) -> None:
        """Nothing to clear: a plain line is never redrawn."""

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# what :func:`bar` returns, for type hints
Bar = tqdm | PlainProgress
