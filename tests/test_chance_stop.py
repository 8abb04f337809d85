"""The chance-level stop (taml/run/chance.py): a biased-data run whose training accuracy
stays at chance for a whole epoch stops with exit 1 and one line naming the flag, a healthy
run goes on, and --no_chance_check lets the stuck one train to the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from taml.run.chance import FIRST_CHECKED, MIN_STEPS, SPREAD_MAX, ChanceWatch

from .test_config import ROOT

# experiments/demo_biased.py's settings (long-tailed glyphs, imbalance 100: 12 steps per
# epoch), shortened
DEMO = ["--dataset", "glyphs", "--bias", "long_tail", "--imbalance_factor", "100",
        "--meta_per_class", "10", "--network", "lenet_tml", "--batch_size", "100",
        "--meta_batch_size", "100", "--lr", "0.05", "--momentum", "0.9", "--weight_decay",
        "5e-4", "--lr_schedule", "", "--log_every", "20", "--eval_every", "1000",
        "--save_every", "60", "--device", "cpu", "--no_progress", "--seed", "0"]
STEPS_PER_EPOCH = 12
# A run stuck at chance by construction (tests/biased_blind_main.py: zero logits for every
# image), not by a trajectory that must diverge: whether L2RW at lr 0.05 collapses within
# 10 epochs depends on the CPU's rounding (it did on an AVX-512 Intel, not on an AVX2 AMD).
# The first epoch checked is the first from FIRST_CHECKED that begins after MIN_STEPS
# steps: arithmetic, the same on every machine.
FIRST_STOPPED = next(e for e in range(FIRST_CHECKED, 100)
                     if (e - 1) * STEPS_PER_EPOCH >= MIN_STEPS)


@pytest.fixture(scope="module")
def glyph_root(tmp_path_factory):
    return tmp_path_factory.mktemp("glyph_data")


def run_main(savedir, data_root, *flags, entry="main.py"):
    return subprocess.run(
        [sys.executable, entry, "--mode", "train", *DEMO, "--savedir", str(savedir),
         "--data_root", str(data_root), *flags], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def run_blind(savedir, data_root, *flags):
    return run_main(savedir, data_root, *flags, entry=str(ROOT / "tests" / "biased_blind_main.py"))


def test_a_run_stuck_at_chance_stops_with_exit_1_and_one_line(tmp_path, glyph_root):
    done = run_blind(tmp_path / "run", glyph_root, "--method", "erm", "--epochs", "10")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-2000:]
    line = lines[0]
    assert line.startswith("error: ERM's training accuracy stayed at chance")
    stopped_at = re.search(r"for epoch (\d+):", line)
    # 8 classes: the two rarest have fewer than MIN_CLASS_EXAMPLES images an epoch
    assert "8 classes" in line and stopped_at and int(stopped_at[1]) == FIRST_STOPPED == 6
    assert "lower --lr" in line and "--no_chance_check" in line and "Traceback" not in line
    assert not (tmp_path / "run" / "test.json").exists()
    assert "stopped: ERM's training accuracy" in (tmp_path / "run" / "train.log").read_text()


def test_a_healthy_run_is_not_stopped(tmp_path, glyph_root):
    done = run_main(tmp_path / "run", glyph_root, "--method", "erm", "--epochs", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "test.json").is_file()


def test_no_chance_check_lets_the_stuck_run_train_on(tmp_path, glyph_root):
    done = run_blind(tmp_path / "run", glyph_root, "--method", "erm", "--epochs", "10",
                     "--no_chance_check")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "test.json").is_file()


# ------------------------------------------------------------------- the rule itself
def epoch(watch, first_step, correct, seen, loss, spread):
    """Feeds one epoch of identical steps; returns the verdicts."""
    n = sum(seen)
    return [watch.add(step, correct, seen, loss * n, spread * n)
            for step in range(first_step, first_step + watch.steps_per_epoch)]


BLIND = ([0, 0, 30], [50, 20, 30], 1.2, 0.0)  # predicts one class: balanced 1/3


def test_the_rule_needs_a_whole_epoch_at_chance_with_a_flat_loss_and_blind_outputs():
    watch = ChanceWatch(3, 4, min_steps=0)
    assert epoch(watch, 1, *BLIND) == [None] * 4  # epoch 1 is never checked
    verdicts = epoch(watch, 5, *BLIND)
    assert verdicts[:3] == [None] * 3 and verdicts[3].epoch == 2
    assert verdicts[3].balanced_accuracy == pytest.approx(1 / 3)
    assert verdicts[3].accuracy == pytest.approx(0.3)
    # the same balanced accuracy with a falling loss, or outputs that vary with the image
    for loss, spread in ((1.0, 0.0), (1.2, SPREAD_MAX)):
        watch = ChanceWatch(3, 4, min_steps=0)
        epoch(watch, 1, *BLIND)
        assert epoch(watch, 5, BLIND[0], BLIND[1], loss, spread) == [None] * 4
    # a learning run: above 1/C + margin
    watch = ChanceWatch(3, 4, min_steps=0)
    epoch(watch, 1, *BLIND)
    assert epoch(watch, 5, [20, 5, 30], [50, 20, 30], 1.2, 0.0) == [None] * 4


def test_epochs_that_begin_before_min_steps_are_not_checked():
    watch = ChanceWatch(3, 4, min_steps=8)
    verdicts = [v for e in range(4) for v in epoch(watch, 1 + 4 * e, *BLIND)]
    assert [v.epoch for v in verdicts if v] == [3, 4]  # epoch 3 begins after step 8


def test_an_epoch_seen_in_part_is_not_checked():
    watch = ChanceWatch(3, 4, min_steps=0)
    watch.start_at(3)  # a resume at step 3 from a checkpoint without a tally
    verdicts = [watch.add(s, BLIND[0], BLIND[1], 120, 0) for s in range(3, 13)]
    # epoch 1 seen in part; epoch 2 whole but without a previous loss to compare with
    assert verdicts[:-1] == [None] * 9 and verdicts[-1].epoch == 3


def test_the_tally_survives_a_checkpoint_in_mid_epoch():
    steps = [([0, 0, 30], [50, 20, 30], 100.0 + s, 0.01 * (13 - s)) for s in range(1, 13)]
    straight = ChanceWatch(3, 4, min_steps=0)
    expected = [straight.add(s, *values) for s, values in enumerate(steps, 1)]
    first = ChanceWatch(3, 4, min_steps=0)
    for s, values in enumerate(steps[:6], 1):
        first.add(s, *values)
    resumed = ChanceWatch(3, 4, min_steps=0)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.add(s, *values) for s, values in enumerate(steps[6:], 7)] == expected[6:]
    assert resumed.state_dict() == straight.state_dict()
    assert expected[11] is not None  # the check did fire after the resume


def test_a_plateau_whose_outputs_come_to_depend_on_the_image_is_not_stopped():
    # measured in make demo-biased (class-balanced, lr 0.02, long tail, seed 2): balanced
    # accuracy 0.100 and a loss falling by < 0.3% an epoch for epochs 1-6, spread 0.0079,
    # 0.0080, 0.0082, ...; it then learns. A shrinking spread at the same numbers is stuck.
    growing = ChanceWatch(3, 4, min_steps=0)
    shrinking = ChanceWatch(3, 4, min_steps=0)
    grown, shrunk = [], []
    for e, spread in enumerate((0.0079, 0.0080, 0.0082, 0.0085)):
        grown += epoch(growing, 1 + 4 * e, BLIND[0], BLIND[1], 1.2, spread)
        shrunk += epoch(shrinking, 1 + 4 * e, BLIND[0], BLIND[1], 1.2, 0.0085 - spread + 0.0079)
    assert grown == [None] * 16
    assert [v.epoch for v in shrunk if v] == [2, 3, 4]


def test_classes_with_few_examples_in_the_epoch_are_not_judged():
    # the 0.995 binary sets: 2 minority images an epoch, whose recall is no evidence; with
    # one class left there is no balanced accuracy to judge, so the epoch is not checked
    watch = ChanceWatch(2, 4, min_steps=0)
    few = [v for e in range(3) for v in epoch(watch, 1 + 4 * e, [0, 98], [2, 98], 0.5, 0.0)]
    assert few == [None] * 12
    watch = ChanceWatch(2, 4, min_steps=0)
    enough = [v for e in range(3) for v in epoch(watch, 1 + 4 * e, [0, 90], [10, 90], 0.5, 0.0)]
    assert [v.epoch for v in enough if v] == [2, 3]
