"""--tensorboard: the same numbers as train_metrics.csv and validation.json, and the
balancing variables' histograms; without the package, one line saying how to install it."""

from __future__ import annotations

import csv
import json

import pytest

import main as cli
from taml.data.synthetic import generate_synthetic
from taml.episodic.config import parse_config

TINY = ["--way", "3", "--max_shot", "2", "--query", "1", "--n_steps", "1", "--metabatch", "1",
        "--n_train_iters", "4", "--val_freq", "2", "--log_freq", "2", "--n_val_episodes", "2",
        "--no_progress", "--device", "cpu", "--id_dataset", "synthetic",
        "--ood_dataset", "synthetic_ood", "--alpha_on", "--omega_on", "--gamma_on", "--z_on"]


def test_tensorboard_logs_the_csv_and_validation_numbers_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = tmp_path / "data"
    generate_synthetic("synthetic", root, images_per_class=6,
                       splits={"train": 4, "valid": 3, "test": 3}, progress=False)
    generate_synthetic("synthetic_ood", root, images_per_class=6,
                       splits={"valid": 3, "test": 3}, progress=False)
    savedir = tmp_path / "run"
    assert cli.main(["--mode", "meta_train", "--savedir", str(savedir), "--data_root",
                     str(root), "--tensorboard", *TINY]) == 0
    events = EventAccumulator(str(savedir / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    with open(savedir / "train_metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name in ("cross_entropy", "kl", "accuracy"):
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{name}")]
        assert logged == [(int(r["iteration"]), pytest.approx(float(r[name]), rel=1e-6))
                          for r in rows]
    history = json.loads((savedir / "validation.json").read_text())
    logged = [(e.step, e.value) for e in events.Scalars("validation/ood/synthetic_ood")]
    assert logged == [(h["iteration"], pytest.approx(h["ood"]["synthetic_ood"], rel=1e-6))
                      for h in history]
    histograms = events.Tags()["histograms"]
    assert {"balancing/omega", "balancing/gamma", "balancing/z"} <= set(histograms)
    # z: 256 values per task, one task per meta-batch here
    assert events.Histograms("balancing/z")[0].histogram_value.num == 256


def test_without_the_package_the_flag_says_how_to_install_it(monkeypatch, capsys):
    import taml.run.tensorboard

    monkeypatch.setattr(taml.run.tensorboard, "tensorboard_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        parse_config(["--tensorboard", "--no_progress"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install tensorboard" in err

