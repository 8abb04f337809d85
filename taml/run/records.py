"""A run's records: the text log (every line to a file in --savedir and to the terminal),
the metrics CSV, and the window of step statistics each log line summarises."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

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


class MetricsCSV:
    """``train_metrics.csv``, in one dialect for both families (commas, ``\\n`` line ends),
    one row per log line, the first column the iteration or step. A resumed run first cuts
    the file back to the rows at or before the checkpoint it resumes from (the steps after
    it are trained again and would otherwise appear twice) and rewrites what it keeps in
    this dialect, so a file begun by an older version (``\\r\\n``) becomes uniform."""

    def __init__(self, path: Path | str, columns: tuple[str, ...], resumed_at: int,
                 enabled: bool = True):
        path = Path(path)
        if not enabled:
            self.handle = open(os.devnull, "w")
        elif resumed_at > 0 and path.is_file():
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))[1:]
            kept = [row for row in rows if row and int(row[0]) <= resumed_at]
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([columns, *kept])
            write_text_atomic(path, text.getvalue())
            self.handle = open(path, "a", newline="")
        else:
            self.handle = open(path, "w", newline="")
            csv.writer(self.handle, lineterminator="\n").writerow(columns)
        self.writer = csv.writer(self.handle, lineterminator="\n")

    def row(self, values: list) -> None:
        self.writer.writerow(values)
        self.handle.flush()  # a crash loses no logged row

    def close(self) -> None:
        self.handle.close()


class Window:
    """The named statistics of the steps since the last log line: running sums (added in
    step order), the per-step values, and the seconds the steps themselves took
    (validation, evaluation and checkpoints excluded).

    A checkpoint taken between two log lines carries the window (:meth:`state`), so that a
    resumed run's next log line summarises the same steps as an uninterrupted run's, not
    only those since the resume."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.values: dict[str, list[float]] = {}
        self.steps = 0
        self.busy = 0.0

    def add(self, statistics: dict[str, float], seconds: float) -> None:
        for name, value in statistics.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.values.setdefault(name, []).append(value)
        self.steps += 1
        self.busy += seconds

    def state(self) -> dict:
        """What a checkpoint keeps: the sums and per-step values as they are (plain floats
        or tensors, so a restored sum adds in the same precision) and the step count. The
        seconds are not kept: a resumed run times only its own steps."""
        return {"sums": dict(self.sums), "values": {k: list(v) for k, v in self.values.items()},
                "steps": self.steps}

    def restore(self, state: dict | None) -> None:
        """The window a checkpoint kept; None (a checkpoint saved before windows were kept)
        starts an empty one, as such runs did."""
        self.reset()
        if state:
            self.sums = dict(state["sums"])
            self.values = {k: list(v) for k, v in state["values"].items()}
            self.steps = int(state["steps"])
            self.busy = float(state.get("busy", 0.0))

    def mean(self, name: str) -> float:
        """The mean over steps of a per-step value."""
        return float(np.mean(self.values[name]))

    def ratio(self, numerator: str, denominator: str) -> float:
        """A ratio of sums (e.g. correct / examples: the window's accuracy)."""
        return self.sums[numerator] / self.sums[denominator]

    @property
    def seconds_per_step(self) -> float:
        return self.busy / max(self.steps, 1)


def repair_config(savedir: Path | str, config: dict, source: str) -> bool:
    """Rewrites ``savedir``'s ``config.json`` from ``config`` (the checkpoint's) when it is
    there but not a readable JSON object (a crash or an editor left it corrupt, and the
    report would lose the run), with one ``note:`` line naming it and ``source``; True when
    it did. A missing file is left missing (a fresh start writes it)."""
    import json
    import sys

    from taml.run.folder import write_json_atomic

    path = Path(savedir) / "config.json"
    if not path.is_file():
        return False
    try:
        if isinstance(json.loads(path.read_text()), dict):
            return False
        problem = "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
    write_json_atomic(path, config)
    print(f"note: {path} could not be read ({problem}); rewritten from {source}",
          file=sys.stderr)
    return True


def due(step: int, every: int, last: int) -> bool:
    """Whether step ``step`` logs / evaluates / saves: every ``every`` steps, and the last."""
    return step % every == 0 or step == last
