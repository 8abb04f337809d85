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

import json
import os
import sys
from pathlib import Path

from taml.run import checkpoint
from taml.run.errors import Refusal
from taml.run.folder import write_json_atomic
from taml.run.records import MetricsCSV, RunLog

METRIC_COLUMNS = ("step", "epoch", "loss", "accuracy", "lr", "seconds")
# what a run writes besides its checkpoint: a fresh start refuses a folder holding them
# (the figures by name: a user's own plot.png in the folder is not a record of the run)
RECORDS = ("config.json", "train.log", "train_metrics.csv", "eval.json", "weights.json",
           "test.json", "confusion.png", "class_weights.png", "weight_curve.png",
           "corrupted_weight.png")


class RunError(Refusal):
    """A run that cannot start as asked (a checkpoint of another recipe, a batch that does
    not split over the processes, no GPU); the message is one line naming the flag."""


def check_batch_size(batch_size: int, n_train: int) -> None:
    """A batch larger than the training set would be clipped to it while config.json keeps
    the asked size: refused, naming the set's size."""
    if batch_size > n_train:
        raise RunError(f"--batch_size {batch_size} is more than the {n_train} training images "
                       f"of this recipe; choose --batch_size {n_train} or less")


def kept_checkpoint(records: RunRecords, last_saved: int) -> str:
    """What a stopped run leaves to resume from: the checkpoint of step ``last_saved``, or
    none when the run stopped before its first save (step 0 names no file that exists)."""
    if last_saved < 1:
        return "No checkpoint was saved yet"
    return f"The last good checkpoint ({records.checkpoint_path}, step {last_saved}) is kept"


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

    def finished_report(self, step: int) -> dict | None:
        """test.json when it is the test of the checkpoint's step ``step`` (a run that is
        finished and tested: re-running it changes nothing), else None."""
        try:
            report = json.loads((self.savedir / "test.json").read_text())
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) and report.get("step") == step else None

    def say_finished(self, step: int, longer: str) -> None:
        """The one line of a re-run finished run (rank 0; the log is left as it is)."""
        if self.is_main:
            print(f"note: the run in {self.savedir} is finished (step {step}) and tested: "
                  f"{self.savedir / 'test.json'}; raise {longer} to train it further, or "
                  "run --mode test to test it again", file=sys.stderr)

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
