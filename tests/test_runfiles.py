"""Every runfile builds valid main.py commands with the original's settings."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from taml.episodic.config import parse_config

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


def recorded_calls(script: Path, tmp_path: Path, *flags: str) -> list[list[str]]:
    """The main.py argument lists ``script`` runs, through a python that only records."""
    recorder = tmp_path / "python"
    log = tmp_path / "calls"
    log.unlink(missing_ok=True)
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" ---- >> {log}\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    subprocess.run(["bash", str(script), *flags], check=True, timeout=60, capture_output=True,
                   env={**os.environ, "PYTHON": str(recorder)})
    if not log.exists():
        return []
    return [c.strip("\n").split("\n")[1:] for c in log.read_text().split("----\n") if c.strip()]


def test_each_seed_runs_in_its_own_folder(tmp_path):
    base = tmp_path / "runs"
    calls = recorded_calls(ROOT / "runfiles" / "cifar_taml.sh", tmp_path, "--seeds", "0,2",
                           "--savedir", str(base), "--device", "cpu")
    configs = [parse_config(c) for c in calls]
    assert [(c.mode, c.seed, c.savedir) for c in configs] == [
        ("meta_train", 0, str(base / "seed0")), ("meta_test", 0, str(base / "seed0")),
        ("meta_train", 2, str(base / "seed2")), ("meta_test", 2, str(base / "seed2"))]
    assert all(c.device == "cpu" for c in configs)


def test_a_finished_seed_is_skipped_and_an_unfinished_one_reruns(tmp_path):
    base = tmp_path / "runs"
    (base / "seed0").mkdir(parents=True)
    (base / "seed0" / "test_step10_mc10.json").write_text("{}")  # seed 0 was tested
    (base / "seed1").mkdir()
    (base / "seed1" / "checkpoint.pt").write_text("")  # seed 1 stopped mid-training
    calls = recorded_calls(ROOT / "runfiles" / "cifar_taml_omega.sh", tmp_path,
                           "--seeds", "0,1", "--savedir", str(base))
    # meta_train on the same folder resumes from its checkpoint (tests/test_training.py)
    assert [(parse_config(c).mode, parse_config(c).seed) for c in calls] == [
        ("meta_train", 1), ("meta_test", 1)]


def test_the_default_is_one_seed_zero(tmp_path):
    calls = recorded_calls(ROOT / "runfiles" / "cifar_maml.sh", tmp_path,
                           "--savedir", str(tmp_path / "runs"))
    assert {parse_config(c).savedir for c in calls} == {str(tmp_path / "runs" / "seed0")}
    assert {parse_config(c).seed for c in calls} == {0}


def test_bad_seeds_are_refused_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "runfiles" / "cifar_maml.sh"), "--seeds", "0;1"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": "/bin/false"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--seeds 0,1,2" in done.stderr


def test_biased_runfiles_take_seeds_and_skip_finished_ones(tmp_path):
    from taml.biased.config import parse_biased_config

    base = tmp_path / "runs"
    (base / "seed0").mkdir(parents=True)
    (base / "seed0" / "test.json").write_text("{}")  # seed 0 finished
    calls = recorded_calls(ROOT / "runfiles" / "biased.sh", tmp_path, "mwnet-cifar10-lt100",
                           "mwnet", "--seeds", "0,1,2", "--savedir", str(base))
    configs = [parse_biased_config(c) for c in calls]
    assert [(c.seed, c.savedir) for c in configs] == [
        (1, str(base / "seed1")), (2, str(base / "seed2"))]
    assert all(c.method == "mwnet" for c in configs)


def test_the_ranking_runfile_runs_the_study_over_seeds_then_the_report(tmp_path):
    script = ROOT / "runfiles" / "ranking.sh"
    recorder = tmp_path / "python"
    log = tmp_path / "calls"
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" ---- >> {log}\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)

    def calls(*flags):
        log.unlink(missing_ok=True)
        subprocess.run(["bash", str(script), *flags], check=True, timeout=60,
                       env={**os.environ, "PYTHON": str(recorder)})
        return [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if c.strip()]

    study, report = calls("--savedir", str(tmp_path / "r"), "--workers", "1")
    assert study == ["-m", "experiments.study", "--study", "ranking", "--seeds", "0", "1", "2",
                     "--savedir", str(tmp_path / "r"), "--workers", "1"]
    assert report == ["main.py", "--mode", "report", "--savedir", str(tmp_path / "r")]
    assert calls("--seeds", "4,5")[0][4:7] == ["--seeds", "4", "5"]


def test_the_biased_study_runfile_tunes_and_publishes_both_datasets(tmp_path):
    recorder = tmp_path / "python"
    log = tmp_path / "calls"
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" ---- >> {log}\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    subprocess.run(["bash", str(ROOT / "runfiles" / "study-biased.sh"), "--workers", "1"],
                   check=True, timeout=60, env={**os.environ, "PYTHON": str(recorder)})
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if c.strip()]
    assert [c[:4] for c in calls] == [["-m", "experiments.biased_study", "--dataset", d]
                                      for d in ("glyphs", "digits")]
    assert calls[0][-4:] == ["--publish", "docs/biased_settings.json", "--workers", "1"]
    assert calls[1][-4:-2] == ["--publish", "docs/biased_settings_digits.json"]
    assert all(c[c.index("--seeds") + 1:c.index("--seeds") + 4] == ["0", "1", "2"]
               for c in calls)
