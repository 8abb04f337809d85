"""A run's text log: every line to a file in --savedir and to the terminal."""

from __future__ import annotations

import os
from pathlib import Path

from taml.run import progress
from taml.run.folder import write_text_atomic


class RunLog:
    """Lines appended to ``path`` as they come (``mode='a'``), or, with ``mode='w'``, kept
    in memory and written atomically by :meth:`close`: an interrupted run then leaves the
    previous file whole instead of an empty or partial one."""

    def __init__(self, path: Path | str, mode: str = "a", echo: bool = True):
        self.path = Path(path)
        self.buffered = mode == "w"
        self.lines: list[str] = []
        self.handle = None
        if not self.buffered:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, mode)
        self.echo = echo

    def line(self, text: str = "") -> None:
        if self.buffered:
            self.lines.append(text)
        else:
            self.handle.write(text + "\n")
            self.handle.flush()
        if self.echo:
            progress.write(text)  # keeps a live progress bar intact

    def close(self) -> None:
        if self.buffered:
            if str(self.path) != os.devnull:
                write_text_atomic(self.path, "".join(t + "\n" for t in self.lines))
        else:
            self.handle.close()
