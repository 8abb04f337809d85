"""Every runfile builds valid main.py commands with the original's settings."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from taml.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "runfiles").glob("*_*.sh"))


def test_there_is_a_runfile_per_experiment_and_ablation():
    names = {p.stem for p in SCRIPTS}
    for setting in ("cifar", "mimgnet", "multi"):
        for method in ("maml", "msgd", "taml", "taml_omega", "taml_gamma", "taml_z"):
            assert f"{setting}_{method}" in names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_runfile_commands_parse(script, tmp_path):
    # a stand-in python that records its arguments instead of training
    recorder = tmp_path / "python"
    log = tmp_path / "calls"
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" ---- >> {log}\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    subprocess.run(["bash", str(script), "--seed", "3"], check=True, timeout=60,
                   env={**os.environ, "PYTHON": str(recorder)})
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if c.strip()]
    assert [c[0] for c in calls] == ["main.py", "main.py"]
    train, test = parse_config(calls[0][1:]), parse_config(calls[1][1:])
    assert (train.mode, test.mode) == ("meta_train", "meta_test")
    assert train.seed == 3 and train.savedir == test.savedir
    assert (train.n_steps, test.n_steps, test.n_test_episodes) == (5, 10, 1000)
    assert (train.alpha_on, train.omega_on, train.gamma_on, train.z_on) == (
        test.alpha_on, test.omega_on, test.gamma_on, test.z_on)
    setting, method = script.stem.split("_", 1)
    assert train.way == (10 if setting == "multi" else 5)
    assert train.metabatch == {"cifar": 4, "mimgnet": 1, "multi": 3}[setting]
    assert train.n_train_iters == {"cifar": 50000, "mimgnet": 80000, "multi": 60000}[setting]
    assert train.alpha_on == (method != "maml")
    assert train.omega_on == (method in ("taml", "taml_omega"))
    assert test.n_mc_samples == (10 if method.startswith("taml") else 0)
