"""The command line: the original's flags and defaults, and errors that name the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taml.episodic.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_originals():
    cfg = parse_config([])
    assert (cfg.mode, cfg.save_freq, cfg.n_train_iters, cfg.n_test_episodes) == (
        "meta_train", 10000, 50000, 1000)
    assert cfg.id_dataset == ("cifar",) and cfg.ood_dataset == ("svhn",)
    assert (cfg.way, cfg.max_shot, cfg.query, cfg.n_steps) == (5, 50, 15, 5)
    assert (cfg.inner_lr, cfg.metabatch, cfg.meta_lr, cfg.n_mc_samples) == (0.5, 4, 1e-3, 0)
    assert not (cfg.alpha_on or cfg.omega_on or cfg.gamma_on or cfg.z_on)
    assert cfg.sampler_mode == "both" and cfg.method == "maml"


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().way = 3  # type: ignore[misc]


def test_comma_separated_datasets_and_method_names():
    cfg = parse_config(["--id_dataset", "aircraft, quickdraw, vgg_flower",
                        "--ood_dataset", "traffic, fashion-mnist", "--alpha_on", "--omega_on",
                        "--gamma_on", "--z_on"])
    assert cfg.id_dataset == ("aircraft", "quickdraw", "vgg_flower")
    assert cfg.ood_dataset == ("traffic", "fashion-mnist")
    assert cfg.method == "taml"
    assert parse_config(["--alpha_on"]).method == "meta_sgd"
    assert parse_config(["--omega_on"]).method == "taml_omega"
    assert parse_config(["--n_test_episode", "7"]).n_test_episodes == 7  # the runfiles' spelling


@pytest.mark.parametrize("argv, message", [
    (["--way", "1"], "--way must be at least 2"),
    (["--query", "0"], "--query must be at least 1"),
    (["--n_mc_samples", "5"], "switch on at least one of --omega_on"),
    (["--id_dataset", "svhn"], "use it as --ood_dataset"),
    (["--id_dataset", "cifar", "--ood_dataset", "cub"], "different image sizes"),
    (["--id_dataset", "cifra"], "unknown dataset 'cifra'"),
    (["--image_size", "64"], "--image_size must be 32 or 84"),
    (["--id_dataset", "cifar,cifar"], "lists a dataset twice"),
    (["--sampler_mode", "4"], "invalid choice"),
])
def test_invalid_combinations_fail_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_main_reports_a_missing_dataset_with_the_command_to_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "main.py", "--data_root", str(tmp_path), "--savedir",
         str(tmp_path / "run"), "--no_progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "python data/cifar/get_data.py" in result.stderr
    assert "Traceback" not in result.stderr
