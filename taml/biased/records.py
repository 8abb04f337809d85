"""The run folder of a biased-data run: what is written where, and how a resumed run picks
up its files without duplicating anything.

    config.json         BiasedConfig as a dict, plus "family": "biased"
    train.log           the terminal's log (appended; a resumed run says so)
    train_metrics.csv   step, epoch, loss, accuracy, lr, seconds (one row per --log_every)
    eval.json           [{step, accuracy, balanced_accuracy}, ...] every --eval_every steps
    weights.json        what the method learned over training (TML class weights, share of
                        weight on corrupted labels, ...), for plots.py
    checkpoint.pt       model, optimizer, method state, step, every random state, histories
    test.json, confusion.png, *_weights.png   written by the final test (evaluation.py)

Only rank 0 writes (``is_main``); other ranks get the same object writing nowhere.
A resumed run cuts train_metrics.csv back to the checkpoint's step before appending, so
each step has one row however often the run was interrupted.
"""

from __future__ import annotations

import os
from pathlib import Path

from taml.run import checkpoint
from taml.run.errors import Refusal
from taml.run.folder import write_json_atomic
from taml.run.records import MetricsCSV, RunLog

METRIC_COLUMNS = ("step", "epoch", "loss", "accuracy", "lr", "seconds")
# what a run writes besides its checkpoint: a fresh start refuses a folder holding them
RECORDS = ("config.json", "train.log", "train_metrics.csv", "eval.json", "weights.json",
           "test.json", "*.png")


class RunError(Refusal):
    """A run that cannot start as asked (a checkpoint of another recipe, a batch that does
    not split over the processes, no GPU); the message is one line naming the flag."""




class RunRecords:
    def __init__(self, savedir: Path | str, is_main: bool = True, echo: bool = True):
        self.savedir = Path(savedir)
        self.is_main = is_main
        self.log = RunLog(self.savedir / "train.log" if is_main else os.devnull,
                          echo=echo and is_main)
        self.metrics: MetricsCSV | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.savedir / checkpoint.LATEST

    def load_checkpoint(self, device="cpu") -> dict | None:
        """The run's checkpoint, None when there is none; an unreadable file or one of
        another kind of run is a CheckpointError naming it."""
        if not self.checkpoint_path.is_file():
            return None
        return checkpoint.load(self.checkpoint_path, device, family="biased")

    def save_checkpoint(self, state: dict) -> None:
        if self.is_main:
            checkpoint.save_atomic(state, self.checkpoint_path)

    def write_json(self, name: str, obj) -> None:
        if self.is_main:
            write_json_atomic(self.savedir / name, obj)

    def open_metrics(self, resumed_step: int) -> None:
        """train_metrics.csv for appending, cut back to ``resumed_step`` (a new run: afresh)."""
        self.metrics = MetricsCSV(self.savedir / "train_metrics.csv", METRIC_COLUMNS,
                                  resumed_step, enabled=self.is_main)

    def metric_row(self, step: int, epoch: int, loss: float, accuracy: float, lr: float,
                   seconds: float) -> None:
        self.metrics.row([step, epoch, f"{loss:.6g}", f"{accuracy:.6g}", f"{lr:.6g}",
                          f"{seconds:.4g}"])

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        self.log.close()
