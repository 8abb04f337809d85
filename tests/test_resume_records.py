"""A resumed run logs what an uninterrupted run logs (issue 25, root cause 6): the log
window of the steps since the last log line is part of the checkpoint, so a checkpoint
taken between two log lines does not restart the window. ``train_metrics.csv`` rows (but
for their seconds), the biased ``weights.json`` history and the weight on corrupted labels
that ``test.json`` copies agree row by row, in both families."""

from __future__ import annotations

import csv
import json

import pytest

import main as cli
from taml.biased import build as parts
from taml.biased.config import parse_biased_config
from taml.biased.train import train
from taml.data.synthetic import generate_synthetic

from .biased_fakes import FakeMethod, fake_data

BIASED = ["--batch_size", "8", "--meta_batch_size", "6", "--network", "lenet_tml",
          "--lr", "0.05", "--lr_schedule", "", "--no_progress", "--device", "cpu",
          "--bias", "noise", "--save_every", "3", "--log_every", "2", "--eval_every", "4"]


def rows_but_seconds(path) -> list[list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    seconds = next(i for i, name in enumerate(rows[0]) if name.startswith("seconds"))
    return [row[:seconds] + row[seconds + 1:] for row in rows]


@pytest.fixture
def noisy_fakes(monkeypatch):
    data = fake_data(noise=0.3)
    monkeypatch.setattr(parts, "load_data", lambda cfg: data)
    monkeypatch.setattr(parts, "make_method", lambda cfg, c, counts: FakeMethod(c))


def test_a_biased_run_resumed_between_log_lines_logs_the_same_rows(noisy_fakes, tmp_path):
    def run(savedir, steps):
        return train(parse_biased_config(["--savedir", str(savedir), *BIASED,
                                          "--steps", str(steps)]))

    straight = run(tmp_path / "straight", 10)
    run(tmp_path / "resumed", 5)  # the last checkpoint at step 5, the window holds step 5
    resumed = run(tmp_path / "resumed", 10)
    a, b = tmp_path / "straight", tmp_path / "resumed"
    assert rows_but_seconds(b / "train_metrics.csv") == rows_but_seconds(a / "train_metrics.csv")
    history = [json.loads((d / "weights.json").read_text())["history"] for d in (a, b)]
    assert history[0] == history[1]
    assert resumed["weight_mass_on_corrupted"] == straight["weight_mass_on_corrupted"]


EPISODIC = ["--way", "3", "--max_shot", "2", "--query", "1", "--n_steps", "1",
            "--metabatch", "1", "--n_val_episodes", "2", "--no_progress", "--device", "cpu",
            "--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood",
            "--save_freq", "3", "--log_freq", "2", "--val_freq", "10"]


def test_a_meta_run_resumed_between_log_lines_logs_the_same_rows(tmp_path):
    root = tmp_path / "data"
    generate_synthetic("synthetic", root, images_per_class=6,
                       splits={"train": 4, "valid": 3, "test": 3}, progress=False)
    generate_synthetic("synthetic_ood", root, images_per_class=6,
                       splits={"valid": 3, "test": 3}, progress=False)

    def run(savedir, iterations):
        assert cli.main(["--mode", "meta_train", "--data_root", str(root), "--savedir",
                         str(savedir), *EPISODIC, "--n_train_iters", str(iterations)]) == 0

    run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 3)  # checkpoint at 3; iteration 3 is not logged (every 2)
    run(tmp_path / "resumed", 6)
    assert rows_but_seconds(tmp_path / "resumed" / "train_metrics.csv") == rows_but_seconds(
        tmp_path / "straight" / "train_metrics.csv")
