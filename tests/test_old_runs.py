"""Run folders written before the restructure still meta-test, resume, test and report.

The folders are made by ``tests/old_runs.py`` in the format of commit 11d8061 (the last one
before the modules moved), spelled out there key by key; today's code must read them as
they are, and what it writes when it goes on with them must keep that format."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

import main as cli
from taml.episodic.build import build_learner
from taml.episodic.config import Config
from taml.episodic.resume import UNSAVED_DEFAULTS, upgrade_learner_state

from . import old_runs

# flags added after the fixture's format: the episodic family's that old runs lack (a run
# without one learned with its default, UNSAVED_DEFAULTS)
ADDED_FLAGS = set(UNSAVED_DEFAULTS) - set(old_runs.episodic_config("maml", ".", "."))
# and the biased family's: no val split and no chance check, as old runs had
BIASED_ADDED_FLAGS = {"val_per_class", "chance_check"}
# what test files record since the report judges by it (total_steps: biased only)
TEST_RECORD_KEYS = {"trained_config", "total_steps", "changes"}


@pytest.fixture(scope="module")
def old_data_root(tmp_path_factory):
    return old_runs.write_data_root(tmp_path_factory.mktemp("old_runs_data"))


def run_main(argv, capfd) -> tuple[int, str]:
    capfd.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        rc = stop.code if isinstance(stop.code, int) else 1
    out, err = capfd.readouterr()
    return rc, out + err


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def csv_lines(path, ending: str) -> list[str]:
    data = path.read_bytes().decode("utf-8")
    assert data.endswith(ending)
    lines = data[:-len(ending)].split(ending)
    assert all("\r" not in line and "\n" not in line for line in lines)  # one line ending
    return lines


def same_structure(new, old, where="checkpoint"):
    """The same dict keys, the same tensor shapes and dtypes, all the way down; each item
    of a list shaped as the old list's first one (histories grow)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        if where.endswith("['optimizer']['state']"):  # by parameter index, those with a grad
            assert set(new) >= set(old), where
            for key, item in new.items():
                if key in old:
                    same_structure(item, old[key], f"{where}[{key!r}]")
                else:
                    assert set(item) == set(next(iter(old.values()))), f"{where}[{key!r}]"
            return
        if where.endswith("['config']"):  # flags added since are the only new keys
            assert set(new) >= set(old), where
            added = ADDED_FLAGS | BIASED_ADDED_FLAGS
            assert set(new) - set(old) <= added, (where, set(new) - set(old))
        elif where == "checkpoint":  # and the chance check's tally, added since
            assert set(new) - {"chance"} == set(old), where
        else:
            assert set(new) == set(old), where
        for key in old:
            same_structure(new[key], old[key], f"{where}[{key!r}]")
    elif isinstance(old, list | tuple):
        assert type(new) is type(old), where
        for index, item in enumerate(new if old else []):
            same_structure(item, old[0], f"{where}[{index}]")
    elif isinstance(old, torch.Tensor):
        assert isinstance(new, torch.Tensor), where
        assert (new.shape, new.dtype) == (old.shape, old.dtype), where
    else:
        assert type(new) is type(old) or {type(new), type(old)} <= {int, float}, where


def old_learner(method: str):
    """The learner of the fixture's runs, as today's code builds it."""
    config = old_runs.episodic_config(method, ".", ".")
    return build_learner(Config(**{k: v for k, v in config.items()
                                   if k in {f.name for f in dataclasses.fields(Config)}}))


# the fixture's (the pure-function 4-conv net's) names -> the Conv4 module's
OLD_NAMES = {**{f"theta.conv{l}_{p}": f"backbone.conv{l}.{name}" for l in range(1, 5)
                for p, name in (("w", "weight"), ("b", "bias"))},
             **{f"bn_shifts.bn{l}": f"backbone.bn{l}.bias" for l in range(1, 5)},
             **{f"alpha.conv{l}_{p}": f"alpha.conv{l}__{name}" for l in range(1, 5)
                for p, name in (("w", "weight"), ("b", "bias"))}}


@pytest.mark.parametrize("method", ["maml", "taml"])
def test_an_old_checkpoints_learner_and_optimiser_load_under_todays_names(
        method, old_data_root, tmp_path):
    """Every tensor of the old checkpoint reaches the parameter of the same meaning, and
    so does its optimiser state (Adam numbers parameters by their order, which changed:
    θ's sorted names put each bias before its kernel, the module puts the weight first)."""
    savedir = old_runs.write_episodic_run(tmp_path / "run", old_data_root, method)
    old = load(savedir / "checkpoint.pt")
    learner = old_learner(method)
    optimizer = torch.optim.Adam(learner.parameters())
    learner_state, optimizer_state = upgrade_learner_state(old, learner)
    learner.load_state_dict(learner_state)
    optimizer.load_state_dict(optimizer_state)
    old_order = [name for name, _ in old_runs.learner_parameters(method)]
    params = dict(learner.named_parameters())
    assert len(old_order) == len(params)
    renamed = [OLD_NAMES.get(name, name) for name in old_order]
    assert renamed != list(params)  # the order did change
    for index, (old_name, name) in enumerate(zip(old_order, renamed, strict=True)):
        assert torch.equal(params[name], old["learner"][old_name]), name
        saved = old["optimizer"]["state"].get(index, {})  # none for a parameter without grad
        state = optimizer.state[params[name]]
        assert set(state) == set(saved), name
        for key, value in saved.items():
            assert torch.equal(state[key], value), (name, key)


@pytest.mark.parametrize("method", ["maml", "taml"])
def test_meta_test_reads_an_old_episodic_run(method, old_data_root, tmp_path, capfd):
    savedir = old_runs.write_episodic_run(tmp_path / "run", old_data_root, method)
    (savedir / "test_step1_mc0.json").unlink()  # the old result, written again below
    rc, out = run_main(old_runs.episodic_argv("meta_test", savedir, old_data_root, method),
                       capfd)
    assert rc == 0, out
    assert "Meta-test model at iteration 2 (best.pt: best validation score)" in out
    report = json.loads((savedir / "test_step1_mc0.json").read_text())
    assert (report["checkpoint"], report["iteration"]) == ("best.pt", 2)
    assert [(r["role"], r["dataset"], r["n_episodes"]) for r in report["results"]] == [
        ("id", "synthetic", 6), ("ood", "synthetic_ood", 6)]
    for result in report["results"]:
        assert math.isfinite(result["accuracy"]) and 0 <= result["accuracy"] <= 100
        assert math.isfinite(result["ci95"])


@pytest.mark.parametrize("method", ["maml", "taml"])
def test_meta_train_resumes_an_old_episodic_run(method, old_data_root, tmp_path, capfd):
    savedir = old_runs.write_episodic_run(tmp_path / "run", old_data_root, method)
    old = load(savedir / "checkpoint.pt")
    old_log = (savedir / "train.log").read_text()
    argv = old_runs.episodic_argv("meta_train", savedir, old_data_root, method,
                                  "--n_train_iters", "5")
    rc, out = run_main(argv, capfd)
    assert rc == 0, out

    log = (savedir / "train.log").read_text()
    assert log.startswith(old_log)  # appended to
    assert f"Resuming from {savedir / 'checkpoint.pt'} at iteration 2" in log
    assert "--n_train_iters 4 -> 5 from iteration 3" in log
    # the rows up to the checkpoint kept as they were, row 3 (logged after it) trained
    # again, each iteration once; the old file's "\r\n" rewritten in the one dialect, "\n"
    lines = csv_lines(savedir / "train_metrics.csv", "\n")
    assert lines[0] == old_runs.EPISODIC_CSV_HEADER
    assert lines[1:3] == old_runs.EPISODIC_CSV_ROWS[method][:2]
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4, 5]

    new = load(savedir / "checkpoint.pt")
    # the one key new runs add to the config: the family the report tells runs apart by
    assert new["config"].pop("family") == "episodic"
    # the log window (kept since issue 25) is the one key new checkpoints add
    assert new.pop("window")["steps"] == 0
    # the 4-conv net's parameters are the Conv4 module's since it became one: new
    # checkpoints hold what the old one is upgraded to on load
    old["learner"], old["optimizer"] = upgrade_learner_state(old, old_learner(method))
    same_structure(new, old)
    assert new["iteration"] == 5
    assert new["validation"][0] == old["validation"][0]
    assert [v["iteration"] for v in new["validation"]] == [2, 4]
    assert new["changes"] == [{"iteration": 3, "flag": "--n_train_iters", "old": 4, "new": 5}]
    assert all(torch.isfinite(t).all() for t in new["learner"].values())
    config = json.loads((savedir / "config.json").read_text())
    # the old keys in their order, then the flags added since (at the old run's values:
    # their defaults) and the family
    old_keys = list(old_runs.episodic_config(method, savedir, old_data_root))
    assert list(config)[:len(old_keys)] == old_keys and list(config)[-1] == "family"
    assert set(config) - set(old_keys) - {"family"} == ADDED_FLAGS
    assert all(config[flag] == UNSAVED_DEFAULTS[flag] for flag in ADDED_FLAGS)
    assert config["n_train_iters"] == 5
    validation = json.loads((savedir / "validation.json").read_text())
    assert validation == new["validation"]


def test_biased_test_reads_an_old_run(old_data_root, tmp_path, capfd):
    savedir = old_runs.write_biased_run(tmp_path / "run", old_data_root)
    old_report = json.loads((savedir / "test.json").read_text())
    (savedir / "test.json").unlink()
    rc, out = run_main(old_runs.biased_argv("test", savedir, old_data_root), capfd)
    assert rc == 0, out
    report = json.loads((savedir / "test.json").read_text())
    # the keys added since: what the model was trained with, for the report
    assert set(report) - set(old_report) == TEST_RECORD_KEYS
    assert set(old_report) <= set(report)
    assert report["step"] == 2 and report["checkpoint"] == str(savedir / "checkpoint.pt")
    # the old checkpoint's config, its 4-step schedule (tested at 2: unfinished)
    assert report["total_steps"] == 4 and report["changes"] == []
    assert report["trained_config"]["steps"] == 4
    assert report["n_test"] == old_runs.GLYPH_TEST
    assert report["train_counts"] == old_runs.GLYPH_TRAIN_COUNTS
    for key in ("accuracy", "balanced_accuracy"):
        assert math.isfinite(report[key]) and 0 <= report[key] <= 1


def test_biased_train_resumes_an_old_run(old_data_root, tmp_path, capfd):
    savedir = old_runs.write_biased_run(tmp_path / "run", old_data_root)
    old = load(savedir / "checkpoint.pt")
    old_config = json.loads((savedir / "config.json").read_text())
    rc, out = run_main(old_runs.biased_argv("train", savedir, old_data_root, "--steps", "6"),
                       capfd)
    assert rc == 0, out

    log = (savedir / "train.log").read_text()
    assert f"Resuming from {savedir / 'checkpoint.pt'} at step 2" in log
    lines = csv_lines(savedir / "train_metrics.csv", "\n")
    assert lines[0] == old_runs.BIASED_CSV_HEADER
    assert lines[1:3] == old_runs.BIASED_CSV_ROWS[:2]
    with open(savedir / "train_metrics.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5, 6]

    new = load(savedir / "checkpoint.pt")
    # "changes" may be new (a record of the honoured --steps), and so are "window" (the log
    # window) and "folder" (a folder dataset's file list), kept since issue 25
    assert new["folder"] is None  # glyphs: built in
    same_structure({k: v for k, v in new.items() if k not in ("changes", "window", "folder")},
                   old)
    assert new["step"] == 6
    assert [e["step"] for e in new["eval"]] == [2, 4, 6]
    assert new["eval"][0] == old["eval"][0]
    assert [w["step"] for w in new["weights"]] == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(t).all() for t in new["model"].values())
    keys = list(json.loads((savedir / "config.json").read_text()))
    # the flags added since are written at their defaults; the rest keep their order
    assert [k for k in keys if k not in BIASED_ADDED_FLAGS] == list(old_config)
    assert [e["step"] for e in json.loads((savedir / "eval.json").read_text())] == [2, 4, 6]
    weights = json.loads((savedir / "weights.json").read_text())
    assert [h["step"] for h in weights["history"]] == [1, 2, 3, 4, 5, 6]
    assert json.loads((savedir / "test.json").read_text())["step"] == 6


def test_report_renders_old_runs_of_both_families(old_data_root, tmp_path, capfd):
    root = tmp_path / "results"
    for method in old_runs.SWITCHES:
        old_runs.write_episodic_run(root / method, old_data_root, method)
    old_runs.write_biased_run(root / "erm", old_data_root)
    # the fixture's runs were killed at iteration / step 2 of 4, then tested: unfinished,
    # so read and listed apart (judged by checkpoint.pt's iteration and --steps)
    rc, out = run_main(["--mode", "report", "--savedir", root, "--out", tmp_path / "early",
                        "--no_progress"], capfd)
    assert rc == 2 and "3 test result(s), none pooled" in out and "Traceback" not in out
    assert "of 4 (unfinished)" in out
    # the same folders as if their schedules had been 2 long: finished, reported
    for name, key in (("maml", "n_train_iters"), ("taml", "n_train_iters"), ("erm", "steps")):
        config = json.loads((root / name / "config.json").read_text())
        (root / name / "config.json").write_text(json.dumps({**config, key: 2}))
    out_dir = tmp_path / "report"
    rc, out = run_main(["--mode", "report", "--savedir", root, "--out", out_dir,
                        "--no_progress"], capfd)
    assert rc == 0, out
    for name in ("report.md", "report.csv", "report.png"):
        assert (out_dir / name).is_file(), name
    assert len(list((out_dir / "curves").glob("*.png"))) == 3  # maml, taml, erm
    text = (out_dir / "report.md").read_text()
    (id_acc, id_ci), (ood_acc, ood_ci) = (old_runs.EPISODIC_TEST[r] for r in ("id", "ood"))
    row = f"| {id_acc:.2f} ± {id_ci:.2f} | {ood_acc:.2f} ± {ood_ci:.2f} |"
    assert f"| MAML {row}" in text and f"| Bayesian TAML {row}" in text
    accuracy = f"{100 * old_runs.BIASED_TEST_ACCURACY:.2f} (n=1)"
    assert f"| erm | {accuracy} | {accuracy} |" in text
