"""Meta-training and meta-testing end to end on tiny stores: resume, divergence, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.demo import balancing_tables as demo_balancing_tables
from taml.episodic.balancing import BALANCING_FILE, gamma_table, omega_table, table_lines
from taml.episodic.config import parse_config
from taml.episodic.evaluate import confidence_interval, meta_test
from taml.episodic.resume import IncompatibleRun
from taml.episodic.train import TrainingDiverged, meta_train
from taml.run import checkpoint

TINY = ["--way", "3", "--max_shot", "4", "--query", "2", "--n_steps", "1", "--metabatch", "2",
        "--n_val_episodes", "4", "--n_test_episodes", "6", "--no_progress", "--device", "cpu"]


def config(data_root, savedir, *extra):
    return parse_config(["--data_root", str(data_root), "--savedir", str(savedir), *TINY,
                         *extra])


def learner_state(savedir):
    return checkpoint.load(savedir / checkpoint.LATEST)["learner"]


@pytest.mark.parametrize("switches", [[], ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]])
def test_a_resumed_run_equals_an_uninterrupted_one(data_root, tmp_path, switches):
    common = ["--save_freq", "2", "--val_freq", "3", "--print_freq", "3", *switches]
    meta_train(config(data_root, tmp_path / "straight", "--n_train_iters", "6", *common))
    # the 'interrupted' run stops after its checkpoint at iteration 4; iteration 5, done
    # but not saved, is lost as it would be by a kill, and is redone on resume
    interrupted = tmp_path / "interrupted"
    meta_train(config(data_root, interrupted, "--n_train_iters", "4", *common))
    meta_train(config(data_root, interrupted, "--n_train_iters", "6", *common))
    a, b = learner_state(tmp_path / "straight"), learner_state(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert "Resuming from" in (interrupted / "train.log").read_text()
    straight = checkpoint.load(tmp_path / "straight" / checkpoint.LATEST)
    resumed = checkpoint.load(interrupted / checkpoint.LATEST)
    assert [h["iteration"] for h in resumed["validation"]] == [3, 6]
    assert straight["validation"] == resumed["validation"]


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    savedir = tmp_path / "run"
    meta_train(config(data_root, savedir, "--n_train_iters", "2", "--save_freq", "2"))
    good = learner_state(savedir)
    import taml.episodic.learners.meta_learner as objective_module

    real = objective_module.meta_objective

    def poisoned(outputs, batch, kl_sizes=None):
        loss, stats = real(outputs, batch, kl_sizes)
        return loss * float("nan"), stats

    monkeypatch.setattr(objective_module, "meta_objective", poisoned)
    with pytest.raises(TrainingDiverged, match="iteration 3.*last good checkpoint.*iteration 2"):
        meta_train(config(data_root, savedir, "--n_train_iters", "4", "--save_freq", "1"))
    after = learner_state(savedir)
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_meta_test_reports_mean_and_ci_and_writes_files(data_root, tmp_path):
    savedir = tmp_path / "run"
    flags = ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]
    meta_train(config(data_root, savedir, "--n_train_iters", "4", "--val_freq", "2",
                      "--save_freq", "2", "--print_freq", "2", *flags))
    for name in ("train.log", "train_metrics.csv", "validation.json", "best.pt",
                 "balancing_id.png", "balancing_ood.png", "config.json"):
        assert (savedir / name).is_file(), name
    log = (savedir / "train.log").read_text()
    assert "*** Gamma for task imbalance ***" in log and "*** Omega for class imbalance" in log
    # balancing.json holds the last printout's values, and renders as train.log printed it
    # (the demo reads the file, not the log)
    record = json.loads((savedir / BALANCING_FILE).read_text())
    assert record["iteration"] == 4 and [e["role"] for e in record["sets"]] == ["ID", "OOD"]
    printout = "\n".join(table_lines(record)) + "\n"
    assert printout in log
    assert log.rindex(printout) > log.rindex("iteration 2)")
    assert demo_balancing_tables(savedir) == printout.strip()
    report = meta_test(config(data_root, savedir, "--mode", "meta_test", "--n_steps", "2",
                              "--n_mc_samples", "2", *flags))
    assert [(r["role"], r["dataset"]) for r in report["results"]] == [("id", "cifar"),
                                                                      ("ood", "svhn")]
    assert all(r["n_episodes"] == 6 for r in report["results"])
    assert report["checkpoint"] == "best.pt"
    saved = json.loads((savedir / "test_step2_mc2.json").read_text())
    assert saved == report
    text = (savedir / "test_step2_mc2.log").read_text()
    first = report["results"][0]
    assert f"id/cifar acc: {first['accuracy']:.2f} +- {first['ci95']:.2f}" in text


def test_meta_test_refuses_other_model_flags(data_root, tmp_path):
    savedir = tmp_path / "run"
    meta_train(config(data_root, savedir, "--n_train_iters", "1"))
    with pytest.raises(IncompatibleRun, match="no --alpha_on there, --alpha_on now"):
        meta_test(config(data_root, savedir, "--mode", "meta_test", "--alpha_on"))


def test_confidence_interval_is_196_std_over_sqrt_n():
    acc = np.array([0.5, 0.7, 0.9, 0.6])
    mean, ci = confidence_interval(acc)
    assert mean == pytest.approx(67.5)
    assert ci == pytest.approx(1.96 * np.std(100 * acc) / 2)


def test_gamma_table_sorts_tasks_by_size():
    lines = gamma_table(np.array([30, 5, 12]), np.array([[1.1] * 5, [0.9] * 5, [1.0] * 5]))
    assert lines[0] == "*** Gamma for task imbalance ***"
    assert lines[1].split() == ["conv1", "conv2", "conv3", "conv4", "dense"]
    assert lines[2].startswith("task  1: N=  5") and lines[2].endswith("0.900")
    assert lines[4].startswith("task  0: N= 30")


def test_omega_table_sorts_classes_by_count():
    lines = omega_table(np.array([[9, 1, 4]]), np.array([[0.2, 0.5, 0.3]]))
    assert lines[0] == "*** Omega for class imbalance ***"
    assert lines[2] == "task  0:   1   4   9 --> 0.500 0.300 0.200"
    assert lines[1].index("C1") < lines[1].index("C3")


def test_multi_dataset_training_cycles_datasets(data_root, tmp_path):
    from taml.data.store import save_split

    from .conftest import colour_split

    for split, seed in (("train", 11), ("valid", 12), ("test", 13)):
        save_split(data_root / "aircraft", split, colour_split(8, 30, seed=seed))
    savedir = tmp_path / "multi"
    meta_train(parse_config(["--data_root", str(data_root), "--savedir", str(savedir), *TINY,
                             "--id_dataset", "cifar, aircraft", "--ood_dataset", "svhn",
                             "--n_train_iters", "2", "--val_freq", "2"]))
    history = json.loads((savedir / "validation.json").read_text())
    assert set(history[0]["id"]) == {"cifar", "aircraft"}


def test_tendencies_measure_what_the_tables_show():
    from taml.episodic.balancing import balancing_record, tendencies

    counts = np.array([[1, 5, 9], [2, 2, 8], [3, 3, 3]])
    omega = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    gamma = np.outer(counts.sum(1), np.ones(5)) / 10  # grows with N in every layer
    record = balancing_record(7, [("ID", "d", counts, {"omega": omega, "gamma": gamma})], 2)
    [row] = tendencies(record)
    # the uniform task is left out of the small/large ratio: (0.5/0.2 + 0.4/0.2) / 2
    assert row["omega_small_over_large"] == pytest.approx(2.25)
    assert row["omega_r"] < 0 and row["n_tasks"] == 3
    assert all(r == pytest.approx(1.0) for r in row["gamma_r"].values())
    assert row["gamma_range"]["conv1"] == pytest.approx([0.9, 1.5])
