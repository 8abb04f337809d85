"""Biased-data training end to end (``main.py --mode train|test``): resume, divergence, the
run folder, bad input, and two torchrun processes against one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from taml.biased import build as parts
from taml.biased import evaluate as biased_evaluate
from taml.biased.config import parse_biased_config
from taml.biased.records import RunError, RunRecords
from taml.biased.train import train
from taml.run.compat import IncompatibleRun
from taml.run.errors import TrainingDiverged

from .biased_fakes import FakeMethod, fake_data
from .test_config import ROOT

TINY = ["--batch_size", "8", "--meta_batch_size", "6", "--network", "lenet_tml",
        "--lr", "0.05", "--lr_schedule", "", "--no_progress", "--device", "cpu"]


@pytest.fixture
def fakes(monkeypatch):
    """The fake data and method in place of the builders' (one data set per test)."""
    data = fake_data()
    monkeypatch.setattr(parts, "load_data", lambda cfg: data)
    made = {}

    def make(cfg, num_classes, counts):
        made["method"] = FakeMethod(num_classes, made.get("poison_at"))
        return made["method"]

    monkeypatch.setattr(parts, "make_method", make)
    return made


@pytest.fixture(scope="module")
def glyph_root(tmp_path_factory):
    """A data root where the embedded glyphs get generated once for this file's tests."""
    return tmp_path_factory.mktemp("glyph_data")


def config(savedir, *extra):
    return parse_biased_config(["--savedir", str(savedir), *TINY, *extra])


def saved(savedir):
    return RunRecords(savedir, is_main=False).load_checkpoint()


def test_a_resumed_run_equals_an_uninterrupted_one(fakes, tmp_path):
    common = ["--save_every", "4", "--log_every", "2", "--eval_every", "3"]
    train(config(tmp_path / "straight", "--steps", "12", *common))
    interrupted = tmp_path / "interrupted"
    train(config(interrupted, "--steps", "8", *common))
    train(config(interrupted, "--steps", "12", *common))
    a, b = saved(tmp_path / "straight"), saved(interrupted)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["method"]["weights"], b["method"]["weights"])
    assert a["random"]["batches"]["train_order"]["position"] == \
        b["random"]["batches"]["train_order"]["position"]
    # the interrupted run also evaluated where it stopped (step 8); the rest agree
    assert [e["step"] for e in b["eval"]] == [3, 6, 8, 9, 12]
    assert a["eval"] == [e for e in b["eval"] if e["step"] != 8]
    assert "Resuming from" in (interrupted / "train.log").read_text()
    # one CSV row per logged step, however often the run was resumed
    with open(interrupted / "train_metrics.csv") as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_a_kill_after_a_checkpoint_drops_the_rows_logged_after_it(fakes, tmp_path):
    savedir = tmp_path / "run"
    train(config(savedir, "--steps", "6", "--save_every", "4", "--log_every", "1"))
    # as if killed at step 6 with the last checkpoint at step 4: the checkpoint says 4
    state = saved(savedir)
    assert state["step"] == 6
    straight = tmp_path / "straight"
    train(config(straight, "--steps", "4", "--save_every", "4", "--log_every", "1"))
    (straight / "train_metrics.csv").write_text((savedir / "train_metrics.csv").read_text())
    train(config(straight, "--steps", "6", "--save_every", "4", "--log_every", "1"))
    with open(straight / "train_metrics.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5, 6]


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(fakes, tmp_path):
    savedir = tmp_path / "run"
    train(config(savedir, "--steps", "4", "--save_every", "2"))
    good = saved(savedir)
    fakes["poison_at"] = 6
    with pytest.raises(TrainingDiverged, match=r"step 6: .*not finite.*step 5\) is kept"):
        train(config(savedir, "--steps", "10", "--save_every", "1"))
    after = saved(savedir)
    assert after["step"] == 5
    assert all(torch.isfinite(v).all() for v in after["model"].values())
    assert good["step"] == 4


def test_the_run_folder_holds_the_contracts_files(fakes, tmp_path):
    savedir = tmp_path / "run"
    train(config(savedir, "--steps", "6", "--eval_every", "3", "--log_every", "2"))
    for name in ("config.json", "train.log", "train_metrics.csv", "eval.json",
                 "checkpoint.pt", "test.json", "confusion.png", "weights.json",
                 "class_weights.png"):
        assert (savedir / name).is_file(), name
    config_json = json.loads((savedir / "config.json").read_text())
    assert config_json["family"] == "biased" and config_json["network"] == "lenet_tml"
    with open(savedir / "train_metrics.csv") as handle:
        assert next(csv.reader(handle)) == ["step", "epoch", "loss", "accuracy", "lr",
                                            "seconds"]
    evals = json.loads((savedir / "eval.json").read_text())
    assert [e["step"] for e in evals] == [3, 6]
    assert set(evals[0]) >= {"step", "accuracy", "balanced_accuracy"}
    report = json.loads((savedir / "test.json").read_text())
    assert report["method"] == "erm" and report["n_test"] == 30
    assert len(report["per_class_recall"]) == 3
    # the tail: the smallest third of the classes by training count (60, 20, 8) -> class 2
    assert report["tail_classes"] == [2] and report["tail_recall"] == report[
        "per_class_recall"][2]
    # --mode test re-evaluates the checkpoint to the same numbers
    again = biased_evaluate.test(config(savedir, "--mode", "test", "--steps", "6"))
    assert again["accuracy"] == report["accuracy"]


def test_noisy_labels_report_the_weight_on_corrupted_examples(monkeypatch, tmp_path):
    data = fake_data(noise=0.3)
    monkeypatch.setattr(parts, "load_data", lambda cfg: data)
    monkeypatch.setattr(parts, "make_method", lambda cfg, c, counts: FakeMethod(c))
    report = train(config(tmp_path / "run", "--bias", "noise", "--steps", "4",
                          "--log_every", "2"))
    assert 0 < report["weight_mass_on_corrupted"] < 1
    assert report["corrupted_share"] == pytest.approx(
        (data.train.labels != data.train.true_labels).mean())
    assert (tmp_path / "run" / "corrupted_weight.png").is_file()


def test_a_checkpoint_of_another_recipe_is_refused(fakes, tmp_path):
    train(config(tmp_path / "run", "--steps", "2"))
    with pytest.raises(IncompatibleRun,
                       match="--imbalance_factor 100.0 there, --imbalance_factor 10.0 now"):
        train(config(tmp_path / "run", "--steps", "4", "--imbalance_factor", "10"))


@pytest.mark.parametrize("flag, value", [("--weight_decay", "0.001"), ("--momentum", "0.5"),
                                         ("--lr_schedule", "1")])
def test_a_resume_refuses_flags_that_change_what_is_learned(fakes, tmp_path, flag, value):
    train(config(tmp_path / "run", "--steps", "2"))
    with pytest.raises(IncompatibleRun, match=f"{flag} .* there, {flag} {value} now"):
        train(config(tmp_path / "run", "--steps", "4", flag, value))
    assert saved(tmp_path / "run")["step"] == 2  # nothing trained, nothing written


def test_a_resume_honours_and_records_a_lower_lr_and_more_steps(fakes, tmp_path):
    """The divergence advice ("lower --lr and rerun the same command") works: the new lr
    trains the remaining steps and the change is in the checkpoint, config.json and log."""
    savedir = tmp_path / "run"
    train(config(savedir, "--steps", "2"))
    train(config(savedir, "--steps", "4", "--lr", "0.02"))
    state = saved(savedir)
    assert state["step"] == 4
    assert state["changes"] == [{"step": 3, "flag": "--steps", "old": 2, "new": 4},
                                {"step": 3, "flag": "--lr", "old": 0.05, "new": 0.02}]
    assert json.loads((savedir / "config.json").read_text())["lr"] == 0.02
    log = (savedir / "train.log").read_text()
    assert "--lr 0.05 -> 0.02 from step 3" in log
    with open(savedir / "train_metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    resumed = [float(r["lr"]) for r in rows if int(r["step"]) > 2]
    assert resumed and set(resumed) == {0.02}


def run_main(*argv, env=None):
    return subprocess.run([sys.executable, "main.py", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                       **(env or {})})


@pytest.mark.parametrize("flags, message", [
    (["--ratio", "1.5"], "--ratio must be in (0, 1)"),
    (["--imbalance_factor", "0.5"], "--imbalance_factor must be at least 1"),
    (["--noise_rate", "1"], "--noise_rate must be in [0, 1)"),
    (["--lr_schedule", "90,80"], "--lr_schedule must be increasing"),
    (["--dataset", "imagenet"], "--dataset 'imagenet' is not known"),
    (["--binary_classes", "3,3"], "--binary_classes needs two different labels"),
])
def test_bad_flags_stop_at_parse_time_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_biased_config(["--mode", "train", *flags])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_a_test_without_a_checkpoint_names_the_command(tmp_path):
    result = run_main("--mode", "test", "--savedir", str(tmp_path / "none"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --savedir {tmp_path / 'none'} has no checkpoint.pt; train it first with the "
        "same flags and --mode train"]


def torchrun(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--rdzv_backend", "c10d",
               "--rdzv_endpoint", "127.0.0.1:0", str(ROOT / "tests" / "biased_fake_main.py"),
               *argv]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_take_the_steps_of_one_process_with_the_same_global_batch(tmp_path):
    flags = ["--steps", "6", "--save_every", "3", "--log_every", "3", "--augment",
             "crop_flip", *TINY]
    run = torchrun("--savedir", str(tmp_path / "two"), *flags)
    one = subprocess.run([sys.executable, str(ROOT / "tests" / "biased_fake_main.py"),
                          "--savedir", str(tmp_path / "one"), *flags], cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = saved(tmp_path / "two"), saved(tmp_path / "one")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-5,
                                   msg=key)
    torch.testing.assert_close(a["method"]["weights"], b["method"]["weights"], rtol=0,
                               atol=1e-6)
    # rank 0 alone writes: each line once in the log and on the terminal
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("train  step 6") == 1 and run.stdout.count("train  step 6") == 1


BIASED_RUNFILES = sorted((ROOT / "runfiles").glob("biased-*.sh"))


@pytest.mark.parametrize("script", BIASED_RUNFILES, ids=lambda p: p.stem)
def test_each_biased_runfile_runs_every_method_with_one_schedule(script, tmp_path):
    # a stand-in python that records its arguments instead of training
    recorder = tmp_path / "python"
    log = tmp_path / "calls"
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" ---- >> {log}\n')
    recorder.chmod(0o755)
    subprocess.run(["bash", str(script), "--seed", "3"], check=True, timeout=60,
                   env={**os.environ, "PYTHON": str(recorder)})
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if c.strip()]
    configs = [parse_biased_config(call[1:]) for call in calls]
    assert [c.method for c in configs] == ["erm", "class_balanced", "focal", "tml", "l2rw",
                                           "mwnet"]
    experiment = script.stem.removeprefix("biased-")
    for cfg in configs:
        assert cfg.seed == 3 and cfg.savedir == f"./results/biased/{experiment}/{cfg.method}/seed3"
        # the baselines share the method's schedule (MW-Net's issue #1: report them so)
        assert (cfg.dataset, cfg.bias, cfg.steps, cfg.epochs, cfg.lr, cfg.lr_schedule,
                cfg.batch_size, cfg.network) == (
            configs[0].dataset, configs[0].bias, configs[0].steps, configs[0].epochs,
            configs[0].lr, configs[0].lr_schedule, configs[0].batch_size, configs[0].network)
    tml = configs[3]
    assert (tml.meta_lr, tml.meta_every) == (0.1, 10)  # TML's hard-coded outer lr, hook
    if experiment == "tml-mnist23":
        assert (tml.binary_classes, tml.ratio, tml.batch_size, tml.steps) == ((2, 3), 0.995,
                                                                               50, 8000)
    if experiment.startswith("mwnet-cifar") and "-lt" in experiment:
        assert (tml.epochs, tml.lr_schedule, tml.network) == (100, (80, 90), "resnet32")
        assert tml.imbalance_factor == float(experiment.rsplit("lt", 1)[1])


@pytest.mark.parametrize("flags, message", [
    # the builders' DatasetError, caught where the data is built: one line, exit 2
    (["--meta_per_class", "600"], "leaves none to train on; lower --meta_per_class"),
    (["--bias", "binary", "--binary_classes", "2,12"], "--binary_classes 2,12: glyphs has "
                                                       "labels 0..9"),
])
def test_a_recipe_the_data_cannot_satisfy_is_one_line(flags, message, tmp_path, glyph_root):
    result = run_main("--mode", "train", "--savedir", str(tmp_path / "run"), "--steps", "1",
                      "--device", "cpu", "--data_root", str(glyph_root), *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "run").exists()


def test_the_quick_demo_trains_every_method_of_every_setting_at_its_chosen_values(
        tmp_path, capsys, glyph_root):
    import json

    from experiments import biased_study as study
    from experiments import demo_biased as demo

    summary = demo.main(["--quick", "--savedir", str(tmp_path / "demo"), "--no_progress",
                         "--data_root", str(glyph_root), "--workers", "1"])
    published = json.loads(study.PUBLISHED.read_text())
    assert list(summary["settings"]) == list(published["settings"])
    for name, result in summary["settings"].items():
        chosen = published["settings"][name]["chosen"]
        for method, runs in result["runs"].items():
            assert len(runs) == 1 and runs[0]["flags"] == chosen[method]["flags"], method
            assert "failed" in runs[0]["report"] or "validation" in runs[0]["report"]
    out = capsys.readouterr().out
    assert "| MW-Net |" in out and "tail recall" in out and "minority recall" in out
    assert "- ERM: " in out  # the reading, from the numbers
    assert (tmp_path / "demo" / "summary.md").is_file()
    assert (tmp_path / "demo" / "quick" / "long_tail").is_dir()  # never reused by a full run


def mwnet_on_glyphs(savedir, data_root, *flags):
    """MW-Net on the embedded glyphs, seed 0; returns (test.json, V sampled on losses 0..10
    in steps of 0.1)."""
    report = train(parse_biased_config([
        "--method", "mwnet", "--dataset", "glyphs", "--seed", "0", "--lr", "0.05",
        "--lr_schedule", "", "--log_every", "25", "--eval_every", "1000", "--save_every",
        "1000", "--no_progress", "--device", "cpu", "--data_root", str(data_root),
        "--savedir", str(savedir), *flags]))
    weights = json.loads((savedir / "weights.json").read_text())
    return report, weights["weight_curve"][1]


@pytest.mark.slow
def test_mwnet_learns_to_weigh_hard_examples_up_on_long_tailed_glyphs(tmp_path, glyph_root):
    """The paper's Fig. 1 for class imbalance: V increases with the loss (the tail's examples
    are the hard ones). Measured at seeds 0-4: V(0) 0.26-0.42, V(2) 0.60-0.85, V(5) 0.85-0.99
    after 150 steps."""
    _, v = mwnet_on_glyphs(tmp_path / "run", glyph_root, "--bias", "long_tail",
                           "--imbalance_factor", "100", "--steps", "150")
    assert v[50] > v[20] > v[0] and v[50] - v[0] > 0.3, (v[0], v[20], v[50])


@pytest.mark.slow
def test_mwnet_weighs_corrupted_labels_down_on_noisy_glyphs(tmp_path, glyph_root):
    """The paper's Fig. 1 for label noise: V decreases with the loss, and the weight mass
    the corrupted labels get falls far below their share of the data. Measured at seeds 0-3
    (200 steps, meta lr 3e-4): 0.06-0.09 of the weight on 0.35-0.36 of the examples; V(0)
    0.57-0.71, V(5) 0.06-0.08. (At meta lr 1e-3, V saturated at 1 for two of five seeds
    before the corrupted examples stood out.)"""
    report, v = mwnet_on_glyphs(tmp_path / "run", glyph_root, "--bias", "noise",
                                "--noise_type", "uniform", "--noise_rate", "0.4",
                                "--steps", "200", "--meta_lr", "3e-4")
    assert report["weight_mass_on_corrupted"] < 0.5 * report["corrupted_share"]
    assert v[0] > v[20] > v[50] and v[0] - v[50] > 0.3, (v[0], v[20], v[50])


def assert_identical(a, b, where="state"):
    """Nested dicts / lists of tensors and numbers equal bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("method, flags", [("tml", ["--meta_lr", "0.1", "--meta_every", "2"]),
                                           ("mwnet", []), ("l2rw", [])])
def test_a_resumed_run_of_a_real_method_equals_an_uninterrupted_one(method, flags, tmp_path,
                                                                    glyph_root):
    common = ["--method", method, "--data_root", str(glyph_root), "--batch_size", "20",
              "--meta_batch_size", "20", "--augment", "crop_flip", "--save_every", "3",
              "--log_every", "3", "--eval_every", "100", *flags]
    train(config(tmp_path / "straight", "--steps", "7", *common))
    train(config(tmp_path / "resumed", "--steps", "3", *common))
    train(config(tmp_path / "resumed", "--steps", "7", *common))
    a, b = saved(tmp_path / "straight"), saved(tmp_path / "resumed")
    assert_identical(a["model"], b["model"], "model")
    assert_identical(a["method"], b["method"], "method")
    assert_identical(a["optimizer"], b["optimizer"], "optimizer")
    assert_identical(a["chance"], b["chance"], "chance")  # the chance watch's tally
    assert b["step"] == 7


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_training():
    from taml.biased.train import check_shards
    from taml.run.distributed import World

    cfg = parse_biased_config(["--batch_size", "10", "--meta_batch_size", "7"])
    with pytest.raises(RunError, match="--meta_batch_size 7 does not split evenly over 2"):
        check_shards(cfg, World(rank=0, size=2, local_rank=0), n_meta=100)
    # a meta set smaller than --meta_batch_size is taken whole: its size must split
    check_shards(parse_biased_config(["--meta_batch_size", "100"]), World(0, 2, 0), n_meta=20)


def tail_recall_on_long_tailed_glyphs(savedir, data_root, method, *flags):
    """Test tail-class recall (the 3 rarest of 10 classes) after the demo's schedule, 30
    epochs of the 1211 long-tailed glyphs (imbalance 100), seed 0, at lr 0.005."""
    return report_on_glyphs(savedir, data_root, method, 0, "--bias", "long_tail",
                            "--imbalance_factor", "100", "--lr", "0.005", "--epochs", "30",
                            "--lr_schedule", "22", *flags)["tail_recall"]


@pytest.fixture(scope="module")
def erm_tail_recall(tmp_path_factory, glyph_root):
    """ERM's tail recall under that schedule, shared by the comparisons below. Measured at
    seeds 0, 1, 2 (%): 28.0, 26.0, 15.7 (at lr 0.05, its better lr here: 44.0, 33.3, 53.7)."""
    return tail_recall_on_long_tailed_glyphs(tmp_path_factory.mktemp("erm"), glyph_root, "erm")


@pytest.mark.slow
def test_l2rw_recalls_the_tail_classes_better_than_erm_on_long_tailed_glyphs(
        tmp_path, glyph_root, erm_tail_recall):
    """Reweighting each batch towards the balanced meta set lifts the rare classes' recall.
    L2RW at seeds 0, 1, 2: 54.7, 53.7, 62.3 (%); the margin asked for is below the smallest
    seen over ERM (26.7 points)."""
    l2rw = tail_recall_on_long_tailed_glyphs(tmp_path, glyph_root, "l2rw")
    assert l2rw > erm_tail_recall + 0.15, (l2rw, erm_tail_recall)



def report_on_glyphs(savedir, data_root, method, seed, *flags):
    """test.json of one run on the embedded glyphs with TML's LeNet, batch 100, meta batch
    100, momentum 0.9, weight decay 5e-4 (the demo's network and batches)."""
    return train(parse_biased_config([
        "--method", method, "--dataset", "glyphs", "--meta_per_class", "10",
        "--network", "lenet_tml", "--batch_size", "100", "--meta_batch_size", "100",
        "--momentum", "0.9", "--weight_decay", "5e-4", "--seed", str(seed),
        "--log_every", "1000", "--eval_every", "100000", "--save_every", "100000",
        "--no_progress", "--device", "cpu", "--data_root", str(data_root),
        "--savedir", str(savedir), *flags]))


# MW-Net's class-imbalance form: weights normalised per batch, V by Adam
MWNET_NORMALISED = ("--mwnet_weights", "normalised", "--meta_optimizer", "adam")
SHORT_LONG_TAIL = ("--bias", "long_tail", "--imbalance_factor", "100", "--epochs", "10",
                   "--lr", "0.02", "--lr_schedule", "8")


@pytest.mark.slow
def test_mwnet_recalls_the_tail_classes_better_than_erm_early_in_training(tmp_path,
                                                                          glyph_root):
    """On the long-tailed glyphs (imbalance 100) after 10 epochs (120 steps, lr 0.02 ->
    0.002 after epoch 8), before ERM has learned the rare classes, MW-Net's weights (rising
    with the loss) lift them. Tail recall (%) in this test, seeds 0, 1, 2, ERM -> MW-Net
    (meta lr 1e-2): 23.3 -> 28.0, 1.7 -> 33.7, 0.7 -> 1.3 (in a sweep with one thread,
    seeds 3-5: 0.7 -> 29.0, 5.0 -> 20.3, 0.0 -> 20.0). The gain is large on most seeds and
    nil on some (seed 2), so the test asks for a clear gain on average over three seeds and
    no loss on any. With 30 epochs ERM catches up and no margin held (docs/biased.md has
    the sweep)."""
    margins = []
    for seed in (0, 1, 2):
        erm = report_on_glyphs(tmp_path / f"erm{seed}", glyph_root, "erm", seed,
                               *SHORT_LONG_TAIL)["tail_recall"]
        mwnet = report_on_glyphs(tmp_path / f"mwnet{seed}", glyph_root, "mwnet", seed,
                                 *SHORT_LONG_TAIL, *MWNET_NORMALISED,
                                 "--meta_lr", "1e-2")["tail_recall"]
        margins.append(mwnet - erm)
    assert min(margins) > -0.02 and sum(margins) / 3 > 0.08, margins


@pytest.mark.slow
def test_mwnet_is_more_accurate_than_erm_under_label_noise(tmp_path, glyph_root):
    """MW-Net's headline result: with 40% of the training labels resampled uniformly, ERM
    fits the noise over 30 epochs and MW-Net's weights (falling with the loss) keep the
    corrupted examples out. Test accuracy (%) at seeds 0, 1, 2, ERM -> MW-Net (the stable
    script's form: mean weights, Adam 1e-3): 77.6 -> 88.0, 75.1 -> 83.6, 78.3 -> 89.6. After
    10 epochs ERM has not fitted the noise yet and the two are level (94.0 / 93.8)."""
    noisy = ("--bias", "noise", "--noise_type", "uniform", "--noise_rate", "0.4",
             "--epochs", "30", "--lr", "0.01", "--lr_schedule", "22")
    erm = report_on_glyphs(tmp_path / "erm", glyph_root, "erm", 0, *noisy)["accuracy"]
    mwnet = report_on_glyphs(tmp_path / "mwnet", glyph_root, "mwnet", 0, *noisy,
                             "--meta_optimizer", "adam", "--meta_lr", "1e-3")["accuracy"]
    assert mwnet > erm + 0.05, (mwnet, erm)
