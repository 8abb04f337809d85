"""A run's text log: every line to a file in --savedir and to the terminal."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm


class RunLog:
    def __init__(self, path: Path | str, mode: str = "a", echo: bool = True):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, mode)
        self.echo = echo

    def line(self, text: str = "") -> None:
        self.handle.write(text + "\n")
        self.handle.flush()
        if self.echo:
            tqdm.write(text)  # keeps a live progress bar intact

    def close(self) -> None:
        self.handle.close()
