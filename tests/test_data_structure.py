"""`python -m experiments.data_structure`: per-class query accuracy by support shots, and
the gain of meta-training over the untrained initialisation, on the meta-test's episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import data_structure
from taml.episodic.evaluate import meta_test
from taml.episodic.train import meta_train

from .test_training import config


def test_the_probe_reads_the_meta_tests_episodes_and_bins_classes_by_shots(data_root, tmp_path):
    savedir = tmp_path / "run"
    meta_train(config(data_root, savedir, "--n_train_iters", "3", "--val_freq", "3"))
    report = meta_test(config(data_root, savedir, "--mode", "meta_test"))
    [result] = data_structure.main([str(savedir), "--n_episodes", "6", "--out",
                                    str(tmp_path / "out")])
    assert [(s["role"], s["dataset"]) for s in result["sets"]] == [
        (r["role"], r["dataset"]) for r in report["results"]]
    for entry, tested in zip(result["sets"], report["results"], strict=True):
        # the balanced query makes the mean over classes the episode accuracy: the same
        # episodes as meta_test's give its number (summed in float32 there)
        assert entry["trained"]["accuracy"] == pytest.approx(tested["accuracy"], abs=1e-4)
        bins = entry["trained"]["by_shots"]
        assert set(bins) <= {f"{lo}-{hi}" for lo, hi in data_structure.SHOT_BINS}
        assert sum(b["n_classes"] for b in bins.values()) == 6 * 3  # episodes x way
        assert entry["gain"] == pytest.approx(entry["trained"]["accuracy"]
                                              - entry["untrained"]["accuracy"])
    saved = json.loads((tmp_path / "out" / "data_structure.json").read_text())
    assert saved == [result]
    assert "| gain |" in (tmp_path / "out" / "data_structure.md").read_text()


def test_by_shots_averages_each_bins_classes():
    table = data_structure.by_shots(np.array([1, 2, 5, 9]), np.array([0.0, 0.5, 1.0, 1.0]))
    assert table == {"1-2": {"accuracy": 25.0, "n_classes": 2},
                     "5-6": {"accuracy": 100.0, "n_classes": 1},
                     "9-10": {"accuracy": 100.0, "n_classes": 1}}


def test_a_folder_without_a_checkpoint_names_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        data_structure.main([str(tmp_path)])
    assert "meta-train it first" in capsys.readouterr().err
