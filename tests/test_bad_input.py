"""Bad input, odd folders and interrupted runs (issue 11): every case ends in one line on
stderr naming the fix, no traceback, the right exit status, and no changed or lost file.

Most cases call ``main.main`` in-process (a parse, a data load, a checkpoint read: far under
a second); the ones whose boundary is the process itself (two runs at once, a file-size
limit, the ``get_data.py`` scripts) run a subprocess. All use a tiny embedded
``synthetic`` store made once per session.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import main as cli
from taml.biased.records import RECORDS as RECORDS_BIASED
from taml.data import synthetic
from taml.data.registry import DatasetError
from taml.data.store import load_split, save_split, split_path
from taml.data.synthetic import GENERATOR_VERSION, MANIFEST, generate_synthetic
from taml.episodic.config import dataset_list, parse_config
from taml.run import checkpoint
from taml.run.folder import RunDirError, RunLock

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--way", "3", "--max_shot", "2", "--query", "1", "--n_steps", "1", "--metabatch", "1",
        "--n_val_episodes", "2", "--n_test_episodes", "2", "--no_progress", "--device", "cpu",
        "--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood"]
SMALL_GLYPHS = {"train": 4, "valid": 3, "test": 3}
SMALL_TEXTURES = {"valid": 3, "test": 3}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """Tiny 'synthetic' and 'synthetic_ood' stores, shared by the session (read-only use)."""
    root = tmp_path_factory.mktemp("bad_input_data")
    generate_synthetic("synthetic", root, images_per_class=6, splits=SMALL_GLYPHS,
                       progress=False)
    generate_synthetic("synthetic_ood", root, images_per_class=6, splits=SMALL_TEXTURES,
                       progress=False)
    return root


@pytest.fixture(scope="session")
def finished_run(data_root, tmp_path_factory):
    """A finished 2-iteration run, validated at 2; tests copy it before touching it."""
    savedir = tmp_path_factory.mktemp("finished") / "run"
    rc, err = invoke(args(data_root, savedir, "--n_train_iters", "2", "--val_freq", "2",
                          "--save_freq", "1", "--log_freq", "1"))
    assert rc == 0, err
    return savedir


def copied(run: Path, target: Path) -> Path:
    """A copy of a session's finished run, for a test that touches it."""
    shutil.copytree(run, target)
    return target


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return copied(finished_run, tmp_path / "run")


def args(data_root, savedir, *extra) -> list[str]:
    return ["--data_root", str(data_root), "--savedir", str(savedir), *TINY, *extra]


_capture = None


@pytest.fixture(autouse=True)
def _capfd_for_invoke(capfd):
    global _capture
    _capture = capfd
    yield
    _capture = None


def invoke(argv: list[str]) -> tuple[int, str]:
    """``main.main(argv)`` in this process: (exit status, stderr). A traceback would be an
    exception here and fail the test."""
    if _capture is not None:
        _capture.readouterr()
    try:
        rc = cli.main(argv)
    except SystemExit as stop:  # argparse
        rc = stop.code if isinstance(stop.code, int) else 1
    err = _capture.readouterr().err if _capture is not None else ""
    return rc, err


def subprocess_main(argv, env=None, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "main.py", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env, **kwargs)


def assert_one_line(rc: int, err: str, expected_rc: int, *fragments: str) -> None:
    assert rc == expected_rc, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under ``folder`` (missing folder: empty)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def learner_of(savedir: Path) -> dict:
    return checkpoint.load(savedir / checkpoint.LATEST)["learner"]


# ------------------------------------------------- 1. changed settings on resume
def test_a_changed_meta_lr_on_resume_is_applied_and_recorded(run_copy, tmp_path):
    same = tmp_path / "same"
    shutil.copytree(run_copy, same)
    assert invoke(args(data_root_of(run_copy), same, "--n_train_iters", "4"))[0] == 0
    rc, _ = invoke(args(data_root_of(run_copy), run_copy, "--n_train_iters", "4",
                        "--meta_lr", "0.5"))
    assert rc == 0
    state = checkpoint.load(run_copy / checkpoint.LATEST)
    assert state["iteration"] == 4
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.5]
    a, b = learner_of(same), state["learner"]
    assert any(not torch.equal(a[k], b[k]) for k in a), "0.5 trained like 0.001"
    assert json.loads((run_copy / "config.json").read_text())["meta_lr"] == 0.5
    assert {"iteration": 3, "flag": "--meta_lr", "old": 0.001, "new": 0.5} in state["changes"]
    assert "--meta_lr 0.001 -> 0.5 from iteration 3" in (run_copy / "train.log").read_text()


def data_root_of(savedir: Path) -> str:
    return json.loads((savedir / "config.json").read_text())["data_root"]


@pytest.mark.parametrize("flag, value, was", [
    ("--max_shot", "3", "--max_shot 2"), ("--metabatch", "2", "--metabatch 1"),
    ("--seed", "1", "--seed 0"), ("--query", "2", "--query 1"),
    ("--n_steps", "2", "--n_steps 1"), ("--first_order", None, "no --first_order"),
    ("--sampler_mode", "class", "--sampler_mode both"), ("--inner_lr", "0.3", "--inner_lr 0.5"),
    ("--alpha_on", None, "no --alpha_on"), ("--way", "2", "--way 3"),
    ("--precision", "bf16", "--precision fp32"),
])
def test_a_resume_refuses_flags_that_change_what_is_learned(run_copy, flag, value, was):
    before = snapshot(run_copy)
    extra = [flag] + ([value] if value else [])
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--n_train_iters", "4", *extra))
    now = f"{flag} {value} now" if value else f"{flag} now"
    assert_one_line(rc, err, 2, f"{was} there", now, "another --savedir")
    assert "meta_test" not in err  # the message is about resuming
    assert snapshot(run_copy) == before


def test_divergence_before_any_checkpoint_does_not_name_one(data_root, tmp_path, monkeypatch):
    import taml.episodic.learners.meta_learner as objective_module

    real = objective_module.meta_objective
    monkeypatch.setattr(objective_module, "meta_objective",
                        lambda o, b, *n: (real(o, b, *n)[0] * float("nan"), real(o, b, *n)[1]))
    rc, err = invoke(args(data_root, tmp_path / "run", "--n_train_iters", "3"))
    assert_one_line(rc, err, 1, "no checkpoint was saved yet", "lower --meta_lr")
    assert "iteration 0" not in err
    monkeypatch.setattr(objective_module, "meta_objective", real)
    # the advice, followed in the same folder, is not refused as "another run's records"
    rc, err = invoke(args(data_root, tmp_path / "run", "--n_train_iters", "1", "--inner_lr",
                          "0.1"))
    assert rc == 0, err
    assert "note: deleted the previous records" in err


def test_re_running_a_finished_run_says_so_and_changes_nothing(run_copy):
    before = snapshot(run_copy)
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--n_train_iters", "2"))
    assert_one_line(rc, err, 0, "is finished", "raise --n_train_iters", "meta_test")
    assert snapshot(run_copy) == before


def test_train_metrics_have_no_duplicate_rows_after_a_resume(data_root, tmp_path):
    savedir = tmp_path / "run"
    flags = ["--save_freq", "2", "--log_freq", "1", "--val_freq", "10"]
    assert invoke(args(data_root, savedir, "--n_train_iters", "2", *flags))[0] == 0
    with open(savedir / "train_metrics.csv", "a", newline="") as handle:
        csv.writer(handle).writerow([3, 1.0, 0.0, 0.5, 0.1])  # logged, then killed unsaved
    assert invoke(args(data_root, savedir, "--n_train_iters", "4", *flags))[0] == 0
    with open(savedir / "train_metrics.csv", newline="") as handle:
        iterations = [int(row[0]) for row in list(csv.reader(handle))[1:]]
    assert iterations == [1, 2, 3, 4]


def test_seconds_per_iteration_leave_validation_out(data_root, tmp_path, monkeypatch):
    import taml.episodic.train as trainer

    real = trainer._validate
    # the trainer's clock stands still but for validation, which takes 100 s on it: the
    # same on any machine, however loaded (a real 1 s sleep against a 0.5 s limit was not)
    clock = [0.0]

    def slow(*a, **k):
        clock[0] += 100.0
        return real(*a, **k)

    monkeypatch.setattr(trainer, "_validate", slow)
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    savedir = tmp_path / "run"
    assert invoke(args(data_root, savedir, "--n_train_iters", "2", "--val_freq", "1",
                       "--log_freq", "2"))[0] == 0
    assert clock[0] == 200.0  # both validations ran on the clock
    with open(savedir / "train_metrics.csv", newline="") as handle:
        seconds = float(list(csv.DictReader(handle))[0]["seconds_per_iter"])
    assert seconds == 0.0  # with the validations counted it would be at least 100


# ------------------------------------------------------- 2. folder split stability
def image_folder(root: Path, n_classes: int, per_class: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(n_classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c:02d}" / f"{i}.png")
    return root


def folder_args(source: Path, data_root: Path, savedir: Path, *extra) -> list[str]:
    return ["--data_root", str(data_root), "--savedir", str(savedir), "--id_dataset",
            f"folder:{source}", "--ood_dataset", f"folder:{source}", "--way", "2",
            "--max_shot", "2", "--query", "1", "--n_steps", "1", "--metabatch", "1",
            "--n_val_episodes", "2", "--n_test_episodes", "2", "--no_progress", "--device",
            "cpu", *extra]


def test_meta_test_refuses_a_folder_whose_split_changed_after_training(tmp_path):
    source = image_folder(tmp_path / "images", 12)
    savedir, data_root = tmp_path / "run", tmp_path / "data"
    assert invoke(folder_args(source, data_root, savedir, "--n_train_iters", "1"))[0] == 0
    trained = checkpoint.load(savedir / checkpoint.LATEST)["classes"]
    image_folder(source, 13)  # one class more reshuffles the 64:16:20 split
    from taml.data.folder import import_folder
    from taml.data.registry import dataset_dir

    cache = import_folder(source, dataset_dir(f"folder:{source}", data_root), progress=False)
    now_test = load_split(cache, "test", fix_hint="").class_names
    assert set(now_test) & set(trained[f"folder:{source}"]["train"])  # a trained class
    before = snapshot(savedir)
    rc, err = invoke(folder_args(source, data_root, savedir, "--mode", "meta_test"))
    assert_one_line(rc, err, 2, "test classes of folder:", "changed since the run",
                    "another --savedir")
    rc, err = invoke(folder_args(source, data_root, savedir, "--n_train_iters", "2"))
    assert_one_line(rc, err, 2, "classes of folder:", "changed since the run")
    assert snapshot(savedir) == before


def test_images_only_in_nested_folders_are_explained(tmp_path):
    source = image_folder(tmp_path / "images", 4)
    nested = source / "class_00" / "more"
    nested.mkdir()
    for image in (source / "class_00").glob("*.png"):
        image.rename(nested / image.name)
    rc, err = invoke(folder_args(source, tmp_path / "data", tmp_path / "run"))
    assert_one_line(rc, err, 2, "'class_00' has 0", "sub-folders", "not searched")


def test_a_folder_path_with_a_comma_is_one_dataset():
    assert dataset_list("folder:/data/cats,dogs") == ("folder:/data/cats,dogs",)
    assert dataset_list("folder:/a,b, svhn") == ("folder:/a,b", "svhn")
    assert dataset_list("cifar, folder:/x") == ("cifar", "folder:/x")


def test_image_size_is_checked_at_meta_test(tmp_path):
    source = image_folder(tmp_path / "images", 10)
    savedir, data_root = tmp_path / "run", tmp_path / "data"
    assert invoke(folder_args(source, data_root, savedir, "--n_train_iters", "1"))[0] == 0
    rc, err = invoke(folder_args(source, data_root, savedir, "--mode", "meta_test",
                                 "--image_size", "84"))
    assert_one_line(rc, err, 2, "--image_size 32 there, --image_size 84 now")


# ------------------------------------------------------------------- 3. one run a folder
def test_a_second_run_on_a_locked_folder_names_the_first(data_root, tmp_path):
    savedir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from taml.run.folder import RunLock\n"
         f"with RunLock({str(savedir)!r}):\n print('locked', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, err = invoke(args(data_root, savedir, "--n_train_iters", "2"))
        assert_one_line(rc, err, 2, f"in use by another run (process {holder.pid})")
        assert snapshot(savedir) == {}
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_free_again_after_a_run(data_root, tmp_path):
    savedir = tmp_path / "run"
    assert invoke(args(data_root, savedir, "--n_train_iters", "1"))[0] == 0
    with RunLock(savedir):  # would raise if the finished run still held it
        pass


# --------------------------------------------------------------- 4. parse-time refusals
@pytest.mark.parametrize("extra, fragment", [
    (["--n_steps", "0"], "--n_steps must be at least 1"),
    (["--meta_lr", "nan"], "--meta_lr must be a positive finite number"),
    (["--inner_lr", "nan"], "--inner_lr must be a positive finite number"),
    (["--inner_lr", "inf"], "--inner_lr must be a positive finite number"),
    (["--seed", "-1"], "--seed must be 0 or more"),
    # one iteration: without the check, such a run would train (or crash), not hang here
    (["--seed", str(2 ** 63), "--n_train_iters", "1"], "--seed must be below 2^63"),
    (["--seed", str(2 ** 64), "--n_train_iters", "1"], "--seed must be below 2^63"),
    (["--sigma_init", "original"], "--sigma_init sets the balancing variables' posteriors"),
    (["--alpha_on", "--sigma_init", "0.5"], "which meta_sgd has none of"),
    (["--omega_on", "--sigma_init", "1e-45"], "--sigma_init must be at least 1e-30"),
    (["--precision", "fp16"], "invalid choice"),
    (["--way", "0"], "--way must be at least 2"),
    (["--image_size", "32"], "--image_size applies to folder:PATH datasets only"),
    (["--savedir", ""], "--savedir is empty"),
])
def test_bad_flags_fail_at_parse_time_in_one_line(data_root, tmp_path, extra, fragment):
    savedir = tmp_path / "run"
    rc, err = invoke(args(data_root, savedir) + extra)
    assert_one_line(rc, err, 2, fragment)
    assert not savedir.exists()


def test_a_tilde_in_savedir_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_config(["--savedir=~/runs/x"]).savedir == str(tmp_path / "runs" / "x")


# ----------------------------------------------------------- 5. outdated embedded stores
def test_a_store_from_an_older_generator_is_rebuilt(tmp_path, capfd):
    from taml.data.loading import load_dataset_split

    directory = generate_synthetic("synthetic", tmp_path, images_per_class=4,
                                   splits=SMALL_GLYPHS, progress=False)
    fresh = load_split(directory, "train", fix_hint="")
    old = load_split(directory, "train", fix_hint="")
    stale = type(old)(255 - old.images, old.labels, old.class_names)  # "older" images
    save_split(directory, "train", stale)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["generator_version"] = GENERATOR_VERSION - 1
    (directory / MANIFEST).write_text(json.dumps(manifest))
    capfd.readouterr()
    data = load_dataset_split("synthetic", "train", tmp_path)
    assert np.array_equal(data.images, fresh.images)
    assert f"generator version {GENERATOR_VERSION - 1}" in capfd.readouterr().err
    assert json.loads((directory / MANIFEST).read_text())["generator_version"] == \
        GENERATOR_VERSION


def test_a_folder_named_like_a_store_is_refused_before_any_work(tmp_path):
    (tmp_path / "synthetic" / "train.npz").mkdir(parents=True)
    rc, err = invoke(args(tmp_path, tmp_path / "run"))
    assert_one_line(rc, err, 2, "is a folder where a store file belongs", "rm -r")
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == ["train.npz"]


# ---------------------------------------------------------- 6. an interrupted meta-test
def test_ctrl_c_during_meta_test_keeps_the_previous_results(run_copy, monkeypatch):
    flags = args(data_root_of(run_copy), run_copy, "--mode", "meta_test")
    assert invoke(flags)[0] == 0
    before = snapshot(run_copy)
    assert "test_step1_mc0.log" in before and "test_step1_mc0.json" in before
    import taml.episodic.evaluate as evaluate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "episode_accuracies", interrupted)
    rc, err = invoke(flags)
    assert_one_line(rc, err, 130, "no meta-test results were written")
    assert snapshot(run_copy) == before


# ------------------------------------------------------------------ 7. bad store content
def write_raw_store(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=np.zeros((len(labels), 4, 4, 3), np.uint8), labels=labels,
             class_names=np.array(["a", "b"]), format_version=np.int64(1))


def test_fractional_labels_are_refused(tmp_path):
    write_raw_store(split_path(tmp_path, "train"), np.array([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(DatasetError, match="labels are float64, not integers"):
        load_split(tmp_path, "train", fix_hint="python -m taml.data.synthetic")


def test_a_corrupt_store_header_gives_no_pickle_advice(tmp_path):
    split_path(tmp_path, "train").write_bytes(b"\x93NUMPY\x01\x00garbage" * 10)
    with pytest.raises(DatasetError, match="corrupt or incomplete") as info:
        load_split(tmp_path, "train", fix_hint="python -m taml.data.synthetic")
    assert "allow_pickle" not in str(info.value)


# ------------------------------------------------------------- unusable --savedir paths
@pytest.mark.parametrize("where, fragment", [
    ("file", "is a file"), ("under_file", "is under the file"), ("proc", "under /proc"),
])
def test_an_unusable_savedir_is_refused_before_any_work(data_root, tmp_path, where, fragment):
    (tmp_path / "afile").write_text("keep me")
    savedir = {"file": tmp_path / "afile", "under_file": tmp_path / "afile" / "run",
               "proc": Path("/proc/taml_run")}[where]
    rc, err = invoke(args(data_root, savedir))
    assert_one_line(rc, err, 2, fragment, "--savedir")
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_savedir_is_refused_before_any_work(data_root, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, err = invoke(args(data_root, folder / "run"))
        assert_one_line(rc, err, 2, "cannot create files")
    finally:
        folder.chmod(0o755)


def test_an_unwritable_data_root_is_refused_before_generating(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    generated = []  # refused before the dataset is generated (not by a wall-clock limit)
    monkeypatch.setattr(synthetic, "generate_synthetic", lambda *a, **k: generated.append(a))
    rc, err = invoke(args(tmp_path / "afile" / "data", tmp_path / "run"))
    assert_one_line(rc, err, 2, "--data_root", "is under the file")
    assert generated == []
    assert not (tmp_path / "run").exists()


def test_a_failed_run_leaves_no_empty_savedir(tmp_path):
    rc, err = invoke(["--data_root", str(tmp_path / "empty"), "--savedir",
                      str(tmp_path / "run"), "--no_progress"])  # cifar is not there
    assert_one_line(rc, err, 2, "python data/cifar/get_data.py")
    assert not (tmp_path / "run").exists()


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(run_copy):
    import resource

    before = (run_copy / checkpoint.LATEST).read_bytes()
    limit = 20_000  # bytes: config and log lines fit, a checkpoint does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess_main(args(data_root_of(run_copy), run_copy, "--n_train_iters", "3"),
                             preexec_fn=small_files)
    assert_one_line(result.returncode, result.stderr, 2, "cannot write",
                    "the previous checkpoint is kept")
    assert (run_copy / checkpoint.LATEST).read_bytes() == before


def test_stores_and_checkpoints_follow_the_umask_not_0600(finished_run, data_root):
    from taml.run.folder import current_umask

    expected = 0o644 & ~current_umask()  # 0644 under the usual umask 022; mkstemp gave 0600
    for path in (finished_run / checkpoint.LATEST, finished_run / checkpoint.BEST,
                 finished_run / "config.json", split_path(data_root / "synthetic", "train")):
        assert path.stat().st_mode & 0o777 == expected, path


# ------------------------------------------------------------------- checkpoints at test
def test_a_truncated_best_falls_back_to_the_latest_and_says_so(run_copy):
    best = run_copy / checkpoint.BEST
    best.write_bytes(best.read_bytes()[:1000])
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--mode", "meta_test"))
    assert rc == 0 and "Traceback" not in err
    report = json.loads((run_copy / "test_step1_mc0.json").read_text())
    assert report["checkpoint"] == checkpoint.LATEST
    log = (run_copy / "test_step1_mc0.log").read_text()
    assert "best.pt cannot be read" in log and "checkpoint.pt" in log


def test_a_truncated_latest_stops_a_resume_in_one_line(run_copy):
    latest = run_copy / checkpoint.LATEST
    latest.write_bytes(latest.read_bytes()[:1000])
    before = snapshot(run_copy)
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--n_train_iters", "4"))
    assert_one_line(rc, err, 2, "cannot read checkpoint", "checkpoint.pt")
    assert snapshot(run_copy) == before


def test_a_missing_best_is_not_called_unvalidated(run_copy):
    (run_copy / checkpoint.BEST).unlink()
    assert invoke(args(data_root_of(run_copy), run_copy, "--mode", "meta_test"))[0] == 0
    log = (run_copy / "test_step1_mc0.log").read_text()
    assert "best.pt is missing though 1 validation(s) ran" in log


@pytest.mark.parametrize("flag, value", [("--max_shot", "3"), ("--way", "2"),
                                         ("--alpha_on", None)])
def test_meta_test_refuses_a_model_flag_other_than_training(run_copy, flag, value):
    before = snapshot(run_copy)
    extra = [flag] + ([value] if value else [])
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--mode", "meta_test", *extra))
    assert_one_line(rc, err, 2, "meta_test must build the model trained in", flag)
    assert snapshot(run_copy) == before


def test_meta_test_with_other_settings_writes_other_files(run_copy):
    flags = args(data_root_of(run_copy), run_copy, "--mode", "meta_test")
    assert invoke(flags)[0] == 0
    first = (run_copy / "test_step1_mc0.json").read_bytes()
    assert invoke([*flags, "--n_test_episodes", "3"])[0] == 0
    assert (run_copy / "test_step1_mc0.json").read_bytes() == first
    other = [p for p in run_copy.glob("test_step1_mc0_*.json")]
    assert len(other) == 1
    assert json.loads(other[0].read_text())["settings"] == {"n_test_episodes": 3}


# ------------------------------------------------------------------- get_data mirrors
@pytest.mark.parametrize("value", ["/srv/mirror", "file:///srv/mirror"])
def test_a_local_mirror_is_explained(tmp_path, value):
    env = dict(os.environ, TAML_MIRROR_CIFAR=value, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "data/cifar/get_data.py", "--data_root",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert_one_line(result.returncode, result.stderr, 2, "must be an http:// or https:// URL",
                    "python -m http.server")


def test_a_wrong_raw_file_is_deleted_by_hand_not_reused_by_force(tmp_path):
    from taml.data.sources import svhn

    (tmp_path / "test_32x32.mat").write_bytes(b"PK\x03\x04 not the svhn file")
    with pytest.raises(DatasetError, match="delete .* and run the command again") as info:
        svhn._load(tmp_path, "test")
    assert "--force" not in str(info.value)


def test_a_read_only_mount_is_refused_before_any_work(data_root, tmp_path, monkeypatch):
    import errno
    import tempfile

    import taml.run.folder as rundir

    real = tempfile.mkstemp

    def read_only(*a, dir=None, **k):
        if dir is not None and Path(dir).is_relative_to(tmp_path / "mount"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)

    (tmp_path / "mount").mkdir()
    monkeypatch.setattr(rundir.tempfile, "mkstemp", read_only)
    rc, err = invoke(args(data_root, tmp_path / "mount" / "run"))
    assert_one_line(rc, err, 2, "--savedir", "read-only", "choose a writable folder")
    assert not (tmp_path / "mount" / "run").exists()


def test_a_full_disk_while_generating_a_store_is_one_line(tmp_path):
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess_main(args(tmp_path / "data", tmp_path / "run"), preexec_fn=small_files)
    assert_one_line(result.returncode, result.stderr, 2, "cannot write", "--data_root")
    assert not list((tmp_path / "data").rglob("*.npz"))  # no partial store left behind


# ================================================================ the biased-data family
# issue 25: --mode train|test keeps the promises above. The run: ERM, 2 steps of 20 images
# on the embedded glyphs, generated once per session.
BIASED = ["--mode", "train", "--method", "erm", "--steps", "2", "--batch_size", "20",
          "--no_progress", "--device", "cpu"]


@pytest.fixture(scope="session")
def glyph_root(tmp_path_factory):
    """A data root with the embedded glyphs (read-only use)."""
    from taml.data.classification import generate_glyphs

    root = tmp_path_factory.mktemp("bad_input_glyphs")
    generate_glyphs(root)
    return root


def biased(data_root, savedir, *extra) -> list[str]:
    return [*BIASED, "--data_root", str(data_root), "--savedir", str(savedir), *extra]


@pytest.fixture(scope="session")
def finished_biased(glyph_root, tmp_path_factory):
    """A finished, tested 2-step ERM run; tests copy it before touching it."""
    savedir = tmp_path_factory.mktemp("finished_biased") / "run"
    rc, err = invoke(biased(glyph_root, savedir))
    assert rc == 0, err
    return savedir


@pytest.fixture
def biased_copy(finished_biased, tmp_path):
    return copied(finished_biased, tmp_path / "biased_run")


@pytest.mark.parametrize("extra, fragments", [
    (["--lr", "nan"], ["--lr must be a positive finite number, got nan"]),
    (["--lr", "inf"], ["--lr must be a positive finite number, got inf"]),
    (["--weight_decay", "nan"], ["--weight_decay", "got nan"]),
    (["--weight_decay", "-1"], ["--weight_decay", "0 or more", "got -1"]),
    (["--momentum", "1.5"], ["--momentum", "[0, 1)", "got 1.5"]),
    (["--lr_factor", "nan"], ["--lr_factor", "got nan"]),
    (["--method", "tml", "--lookahead_lr", "nan"], ["--lookahead_lr", "got nan"]),
    (["--method", "focal", "--focal_gamma", "nan"], ["--focal_gamma", "got nan"]),
    (["--method", "mwnet", "--meta_lr", "nan"], ["--meta_lr", "got nan"]),
    (["--method", "lnl", "--grl_factor", "nan"], ["--grl_factor", "got nan"]),
    (["--method", "lnl", "--grl_factor", "-1"], ["--grl_factor", "0 or more", "got -1"]),
    (["--method", "lnl", "--lnl_lambda", "-1"], ["--lnl_lambda", "0 or more", "got -1"]),
    (["--imbalance_factor", "nan"], ["--imbalance_factor must be at least 1"]),
    (["--seed", str(2 ** 63)], ["--seed must be below 2^63"]),
    (["--seed", str(2 ** 64 + 1)], ["--seed must be below 2^63"]),
    (["--method", "mwnet", "--mwnet_hidden", "0"], ["--mwnet_hidden must be at least 1"]),
    (["--gray"], ["--gray is used by --method lnl only", "--method erm would ignore it"]),
    (["--focal_gamma", "2"], ["--focal_gamma is used by --method focal only"]),
    (["--method", "lnl", "--bias", "binary"], ["--bias is used by every --method but lnl"]),
    (["--savedir", ""], ["--savedir is empty"]),
    (["--data_root", ""], ["--data_root is empty"]),
])
def test_bad_biased_flags_fail_at_parse_time_in_one_line(glyph_root, tmp_path, extra,
                                                         fragments, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path must not mean this folder either
    savedir = tmp_path / "run"
    rc, err = invoke(biased(glyph_root, savedir) + extra)
    assert_one_line(rc, err, 2, *fragments)
    assert "usage:" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder, no store, no .lock


def test_empty_paths_are_refused_by_the_episodic_parser_too(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = invoke(args(data_root, tmp_path / "run", "--data_root", ""))
    assert_one_line(rc, err, 2, "--data_root is empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, fragment", [
    (["--savedir", ""], "--savedir is empty"),
    (["--savedir", "RUNS", "--out", ""], "--out is empty"),
])
def test_the_report_refuses_empty_paths(finished_biased, tmp_path, monkeypatch, flags,
                                        fragment):
    monkeypatch.chdir(tmp_path)
    flags = [str(finished_biased.parent) if f == "RUNS" else f for f in flags]
    before = snapshot(finished_biased.parent)
    rc, err = invoke(["--mode", "report", *flags])
    assert_one_line(rc, err, 2, fragment)
    assert list(tmp_path.iterdir()) == []  # no report.md in the working folder
    assert snapshot(finished_biased.parent) == before


def test_a_batch_larger_than_the_training_set_is_refused(glyph_root, tmp_path):
    rc, err = invoke(biased(glyph_root, tmp_path / "run", "--batch_size", "100000"))
    assert_one_line(rc, err, 2, "--batch_size 100000 is more than the", "training images")
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------- unwritable or full data roots
@pytest.mark.parametrize("method", ["erm", "lnl"])
@pytest.mark.parametrize("where, fragment", [("under_file", "is under the file"),
                                             ("proc", "under /proc")])
def test_an_unusable_biased_data_root_is_one_line(tmp_path, method, where, fragment):
    (tmp_path / "afile").write_text("keep me")
    root = {"under_file": tmp_path / "afile" / "data", "proc": Path("/proc/taml_data")}[where]
    flags = biased(root, tmp_path / "run", "--method", method)
    if method == "lnl":
        flags = [f for f in flags if f not in ("--steps", "2")] + ["--epochs", "1"]
    rc, err = invoke(flags)
    assert_one_line(rc, err, 2, "--data_root", fragment)
    assert (tmp_path / "afile").read_text() == "keep me"
    assert not (tmp_path / "run").exists()


def _disk_full(*a, **k):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "store.npz")


def test_a_full_disk_while_generating_glyphs_is_one_line(tmp_path, monkeypatch):
    import taml.data.classification as classification

    monkeypatch.setattr(classification, "save_split", _disk_full)
    rc, err = invoke(biased(tmp_path / "data", tmp_path / "run"))
    assert_one_line(rc, err, 2, "cannot write", "No space left on device", "--data_root")
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "data").rglob("*.json"))  # no manifest: never a cache


def test_a_full_disk_while_colouring_is_one_line(glyph_root, tmp_path, monkeypatch):
    import taml.data.colored as colored

    root = tmp_path / "data"
    shutil.copytree(glyph_root, root)
    monkeypatch.setattr(colored, "save_split", _disk_full)
    rc, err = invoke(["--mode", "train", "--method", "lnl", "--epochs", "1", "--no_progress",
                      "--device", "cpu", "--data_root", str(root), "--savedir",
                      str(tmp_path / "run")])
    assert_one_line(rc, err, 2, "cannot write", "--data_root")
    assert not (root / "colored").exists() or not list((root / "colored").rglob("*.json"))
    assert not (tmp_path / "run").exists()


def test_a_read_only_root_for_a_folder_cache_is_one_line(tmp_path, monkeypatch):
    import errno
    import tempfile

    import taml.run.folder as rundir

    real = tempfile.mkstemp

    def read_only(*a, dir=None, **k):  # root ignores a mode of 0555: a read-only mount
        if dir is not None and Path(dir).is_relative_to(tmp_path / "mount"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)

    source = image_folder(tmp_path / "images", 3)
    (tmp_path / "mount").mkdir()
    monkeypatch.setattr(rundir.tempfile, "mkstemp", read_only)
    rc, err = invoke(biased(tmp_path / "mount", tmp_path / "run", "--dataset",
                            f"folder:{source}"))
    assert_one_line(rc, err, 2, "--data_root", "read-only", "choose a writable folder")
    assert list((tmp_path / "mount").iterdir()) == []
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_biased_data_root_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, err = invoke(biased(folder / "data", tmp_path / "run"))
        assert_one_line(rc, err, 2, "--data_root", "cannot create files")
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------ the biased messages
def test_a_corrupt_folder_cache_names_a_real_command(tmp_path):
    from taml.data.classification import folder_cache, import_folder_classes

    source = image_folder(tmp_path / "images", 3)
    root = tmp_path / "data"
    cache = import_folder_classes(source, folder_cache(f"folder:{source}", root, 32))
    split_path(cache, "train").write_bytes(b"garbage")
    rc, err = invoke(biased(root, tmp_path / "run", "--dataset", f"folder:{source}"))
    assert_one_line(rc, err, 2, "corrupt or incomplete", f"rm -r {cache}", "rerun")
    assert "check the folder" not in err and "--force" not in err


def test_a_corrupt_coloured_store_names_its_data_root(glyph_root, tmp_path):
    from taml.data.colored import build_colored

    root = tmp_path / "data"
    shutil.copytree(glyph_root, root)
    built = build_colored("glyphs", 0.02, 0, root)
    split_path(built.directory, "train").write_bytes(b"garbage")
    rc, err = invoke(["--mode", "train", "--method", "lnl", "--epochs", "1", "--no_progress",
                      "--device", "cpu", "--data_root", str(root), "--savedir",
                      str(tmp_path / "run")])
    assert_one_line(rc, err, 2, "python -m taml.data.colored --base glyphs",
                    f"--data_root {root} --force")
    assert not (tmp_path / "run").exists()


def test_nested_image_folders_are_explained_on_the_biased_side_too(tmp_path):
    source = image_folder(tmp_path / "images", 3)
    nested = source / "class_00" / "more"
    nested.mkdir()
    for image in (source / "class_00").glob("*.png"):
        image.rename(nested / image.name)
    rc, err = invoke(biased(tmp_path / "data", tmp_path / "run", "--dataset",
                            f"folder:{source}"))
    assert_one_line(rc, err, 2, "'class_00' has 0", "sub-folders", "not searched")


def test_a_biased_run_given_to_meta_train_is_called_so_and_kept(biased_copy, data_root):
    before = snapshot(biased_copy)
    rc, err = invoke(args(data_root, biased_copy, "--n_train_iters", "1"))
    assert_one_line(rc, err, 2, "biased-data run", "choose another --savedir")
    assert "delete" not in err
    assert snapshot(biased_copy) == before


def test_re_running_a_finished_biased_run_says_so_and_changes_nothing(biased_copy, glyph_root):
    before = snapshot(biased_copy)
    rc, err = invoke(biased(glyph_root, biased_copy))
    assert_one_line(rc, err, 0, "is finished", str(biased_copy / "test.json"),
                    "raise --steps", "--mode test")
    assert snapshot(biased_copy) == before


def test_re_running_a_finished_lnl_run_says_so_and_changes_nothing(tmp_path):
    source = image_folder(tmp_path / "images", 3, per_class=8)
    flags = ["--mode", "train", "--method", "lnl", "--dataset", f"folder:{source}",
             "--image_size", "16", "--epochs", "1", "--batch_size", "4", "--no_progress",
             "--device", "cpu", "--data_root", str(tmp_path / "data"), "--savedir",
             str(tmp_path / "run")]
    assert invoke(flags)[0] == 0
    before = snapshot(tmp_path / "run")
    rc, err = invoke(flags)
    assert_one_line(rc, err, 0, "is finished", "test.json", "raise --epochs")
    assert snapshot(tmp_path / "run") == before


def test_a_full_disk_at_the_first_checkpoint_claims_no_previous_one(glyph_root, tmp_path,
                                                                   monkeypatch):
    import taml.run.checkpoint as checkpoints

    monkeypatch.setattr(checkpoints.torch, "save", _disk_full)
    rc, err = invoke(biased(glyph_root, tmp_path / "run"))
    assert_one_line(rc, err, 2, "cannot write", "no checkpoint was saved yet")
    assert "previous checkpoint" not in err
    assert not (tmp_path / "run" / checkpoint.LATEST).exists()


def test_a_biased_divergence_before_any_checkpoint_does_not_name_one(glyph_root, tmp_path,
                                                                     monkeypatch):
    import types

    import torch.nn.functional as F

    import taml.biased.methods.erm as erm

    monkeypatch.setattr(erm, "F", types.SimpleNamespace(
        cross_entropy=lambda logits, y: F.cross_entropy(logits, y) * float("nan")))
    rc, err = invoke(biased(glyph_root, tmp_path / "run"))
    assert_one_line(rc, err, 1, "step 1", "No checkpoint was saved yet", "lower --lr",
                    "start again")
    assert "step 0" not in err
    monkeypatch.undo()
    rc, err = invoke(biased(glyph_root, tmp_path / "run", "--lr", "0.05"))  # as advised
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.05


def test_a_crash_while_building_a_biased_run_leaves_nothing_that_blocks_it(glyph_root,
                                                                         tmp_path,
                                                                         monkeypatch):
    """A seed torch refused crashed after train.log was created: the empty log then
    refused the same command as another run's records."""
    import taml.biased.build as parts

    def crash(*a, **k):
        raise RuntimeError("a fault while the run is built")

    monkeypatch.setattr(parts, "make_method", crash)
    with pytest.raises(RuntimeError, match="a fault"):
        invoke(biased(glyph_root, tmp_path / "run"))
    assert not (tmp_path / "run" / "train.log").exists()
    monkeypatch.undo()
    rc, err = invoke(biased(glyph_root, tmp_path / "run"))
    assert rc == 0, err


def test_the_chance_stop_before_a_checkpoint_names_none_and_its_advice_is_accepted(tmp_path):
    from taml.biased.train import chance_message
    from taml.run.chance import EpochAtChance
    from taml.run.previous import previous_records

    epoch = EpochAtChance(epoch=2, accuracy=0.1, balanced_accuracy=0.1, classes=10,
                          loss=2.3, previous_loss=2.3, spread=0.0)
    before = chance_message("erm", epoch, checkpointed=False)
    assert "checkpoint holds" not in before and "no checkpoint was saved yet" in before
    assert "checkpoint holds the stuck model" in chance_message("erm", epoch)
    # the stopped run's records, and the command with --no_chance_check (or a lower --lr)
    config = {"family": "biased", "method": "erm", "lr": 0.1, "chance_check": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "train.log").write_text(json.dumps(config) + "\nstopped: at chance\n")
    (tmp_path / "train_metrics.csv").write_text("step,epoch,loss,accuracy,lr,seconds\n")
    advised = {**config, "chance_check": False}
    assert len(previous_records(tmp_path, RECORDS_BIASED, advised, force=False)) == 3
    (tmp_path / "test.json").write_text("{}")  # a tested run: another run's records
    with pytest.raises(RunDirError, match="another run's records"):
        previous_records(tmp_path, RECORDS_BIASED, advised, force=False)


@pytest.mark.parametrize("method", ["erm", "lnl"])
def test_ctrl_c_during_a_biased_test_does_not_advise_resuming(tmp_path, monkeypatch, method):
    import taml.biased.build as parts
    import taml.biased.train_lnl as train_lnl

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lnl, "load_lnl_data", interrupted)
    monkeypatch.setattr(parts, "load_data", interrupted)
    savedir = tmp_path / "run"
    savedir.mkdir()
    (savedir / checkpoint.LATEST).write_bytes(b"a checkpoint")
    before = snapshot(savedir)
    flags = ["--mode", "test", "--method", method, "--savedir", str(savedir), "--device", "cpu"]
    rc, err = invoke(flags)
    assert_one_line(rc, err, 130, "the test stopped before it finished", "test again")
    assert "resume" not in err
    assert snapshot(savedir) == before


# ------------------------------------- biased-data runs (issue 25, root causes 4, 5, 7, 9)
def ink_folder(root: Path, classes=("a", "b", "c"), per_class: int = 2) -> Path:
    """Class folders of dark-on-light PNGs (a mark per class), which LNL can colour."""
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            page = np.full((16, 16), 250, np.uint8)
            page[3 + i % 6:9 + i % 6, 2 + 3 * c:6 + 3 * c] = 10
            Image.fromarray(page).save(root / name / f"{i}.png")
    return root


def test_lnl_on_a_folder_with_too_few_test_images_stops_before_training(tmp_path):
    folder = ink_folder(tmp_path / "ink")  # 2 images per class: 1 tested each, 3 in all
    savedir, before = tmp_path / "run", snapshot(tmp_path / "ink")
    rc, err = invoke(["--mode", "train", "--method", "lnl", "--dataset", f"folder:{folder}",
                      "--image_size", "16", "--epochs", "1", "--batch_size", "2",
                      "--data_root", str(tmp_path / "data"), "--savedir", str(savedir),
                      "--no_progress", "--device", "cpu"])
    assert_one_line(rc, err, 2, "3 test images", "at least 4", "add images")
    assert not savedir.exists() and snapshot(tmp_path / "ink") == before


BIASED_TINY = ["--method", "erm", "--bias", "none", "--meta_per_class", "1", "--image_size",
               "16", "--batch_size", "4", "--meta_batch_size", "3", "--network", "lenet_tml",
               "--eval_every", "2", "--log_every", "1", "--save_every", "1", "--no_progress",
               "--device", "cpu"]


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory):
    """A finished 2-step erm run on a tiny class folder; tests copy it before touching it."""
    base = tmp_path_factory.mktemp("biased")
    folder = ink_folder(base / "ink", per_class=8)
    savedir = base / "run"
    rc, err = invoke(biased_args(folder, base / "data", savedir, "--steps", "2"))
    assert rc == 0, err
    return savedir


def biased_args(folder, data_root, savedir, *extra) -> list[str]:
    return ["--mode", "train", "--dataset", f"folder:{folder}", "--data_root", str(data_root),
            "--savedir", str(savedir), *BIASED_TINY, *extra]


@pytest.fixture
def folder_run_copy(folder_run, tmp_path):
    return copied(folder_run, tmp_path / "run")


def biased_again(savedir: Path, *extra, mode="train") -> tuple[int, str]:
    """The run's own command (its folder and data root) with ``extra`` flags."""
    config = json.loads((savedir / "config.json").read_text())
    folder = config["dataset"][len("folder:"):]
    argv = biased_args(folder, config["data_root"], savedir, *extra)
    argv[1] = mode
    return invoke(argv)


@pytest.mark.parametrize("flag, value, was", [
    ("--lr_schedule", "1", "--lr_schedule 80,90"), ("--lr_factor", "0.5", "--lr_factor 0.1"),
    ("--augment", "crop_flip", "--augment auto"), ("--mwnet_weights", "normalised", "mean"),
    ("--tml_scale", "classes", "--tml_scale simplex"), ("--meta_every", "3", "--meta_every 1"),
    ("--focal_gamma", "2", "--focal_gamma 1.0"), ("--meta_batch_size", "2", "--meta_batch_size 3"),
    ("--weight_decay", "0.001", "--weight_decay 0.0005"), ("--momentum", "0.5", "--momentum 0.9"),
    ("--nesterov", None, "no --nesterov"), ("--mwnet_hidden", "7", "--mwnet_hidden 100"),
    ("--meta_optimizer", "sgd", "--meta_optimizer adam"),
    ("--epochs", "5", "--lr_schedule 80,90 counts steps there and epochs now"),
])
def test_a_biased_resume_refuses_flags_that_change_what_is_learned(folder_run_copy, flag, value,
                                                                   was):
    before = snapshot(folder_run_copy)
    extra = [flag] + ([value] if value else [])
    if flag != "--epochs":  # --epochs without --steps: the schedule's unit changes
        extra += ["--steps", "4"]
    rc, err = biased_again(folder_run_copy, *extra)
    from taml.biased.config import METHOD_FLAGS

    if "erm" in METHOD_FLAGS.get(flag[2:], ("erm",)):
        assert_one_line(rc, err, 2, was, flag, "another --savedir")
    else:  # another method's flag: refused as such at parse time, before the resume
        assert_one_line(rc, err, 2, flag, "is used by", "--method erm would ignore it")
    assert snapshot(folder_run_copy) == before


def test_a_biased_resume_applies_and_records_a_new_lr(folder_run_copy):
    rc, err = biased_again(folder_run_copy, "--steps", "4", "--lr", "0.02")
    assert rc == 0, err
    state = checkpoint.load(folder_run_copy / checkpoint.LATEST)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.02]
    assert {"step": 3, "flag": "--lr", "old": 0.1, "new": 0.02} in state["changes"]
    assert json.loads((folder_run_copy / "config.json").read_text())["lr"] == 0.02


def test_a_fresh_meta_run_in_an_old_runs_folder_is_refused_and_force_replaces_it(run_copy):
    (run_copy / checkpoint.LATEST).unlink()  # as a message once advised
    before = snapshot(run_copy)
    data_root = data_root_of(run_copy)
    rc, err = invoke(args(data_root, run_copy, "--n_train_iters", "2", "--val_freq", "2",
                          "--seed", "1"))
    assert_one_line(rc, err, 2, "another run's records", "best.pt", "--force",
                    "another --savedir")
    assert snapshot(run_copy) == before
    old_best = checkpoint.load(run_copy / checkpoint.BEST)
    assert invoke(args(data_root, run_copy, "--n_train_iters", "2", "--val_freq", "2",
                       "--seed", "1", "--force"))[0] == 0
    new_best = checkpoint.load(run_copy / checkpoint.BEST)
    assert new_best["config"]["seed"] == 1 and old_best["config"]["seed"] == 0
    assert "force" not in json.loads((run_copy / "config.json").read_text())


def test_a_fresh_biased_run_in_an_old_runs_folder_is_refused(folder_run_copy):
    (folder_run_copy / checkpoint.LATEST).unlink()
    before = snapshot(folder_run_copy)
    rc, err = biased_again(folder_run_copy, "--steps", "2", "--lr", "0.05")
    assert_one_line(rc, err, 2, "another run's records", "test.json", "--force")
    assert snapshot(folder_run_copy) == before
    rc, err = biased_again(folder_run_copy, "--steps", "2", "--lr", "0.05", "--force")
    assert rc == 0, err
    log = (folder_run_copy / "train.log").read_text()
    assert '"lr": 0.1' not in log  # the old run's log went with its other records
    assert json.loads((folder_run_copy / "config.json").read_text())["lr"] == 0.05


@pytest.mark.parametrize("change", ["add an image", "rename a class"])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_a_biased_run_refuses_a_folder_whose_images_changed(folder_run_copy, change, mode):
    folder = Path(json.loads((folder_run_copy / "config.json").read_text())["dataset"][7:])
    moved = folder_run_copy.parent / "ink"
    shutil.copytree(folder, moved)  # the run's own folder, changed in a copy of the run
    config = json.loads((folder_run_copy / "config.json").read_text())
    config["dataset"] = f"folder:{moved}"
    (folder_run_copy / "config.json").write_text(json.dumps(config))
    state = checkpoint.load(folder_run_copy / checkpoint.LATEST)
    state["config"]["dataset"] = f"folder:{moved}"
    checkpoint.save_atomic(state, folder_run_copy / checkpoint.LATEST)
    assert biased_again(folder_run_copy, "--steps", "2", mode="test")[0] == 0  # unchanged: fine
    if change == "add an image":
        shutil.copy(moved / "a" / "0.png", moved / "a" / "9.png")
        fragment = "'a' 8 -> 9 images"
    else:
        (moved / "b").rename(moved / "b2")
        fragment = "new class 'b2'; no class 'b'"
    before = snapshot(folder_run_copy)
    rc, err = biased_again(folder_run_copy, "--steps", "3" if mode == "train" else "2", mode=mode)
    assert_one_line(rc, err, 2, fragment, "restore the folder", "another --savedir")
    assert snapshot(folder_run_copy) == before


# ------------------------------------------- issue 40: the last CLI holes (5-11)
def poisoned(path: Path, key_of_weights: str) -> None:
    """The checkpoint at ``path`` with one weight tensor NaN (a diverged model saved)."""
    state = checkpoint.load(path)
    weights = state[key_of_weights]
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = torch.full_like(weights[first], float("nan"))
    checkpoint.save_atomic(state, path)


def test_meta_test_refuses_a_non_finite_checkpoint_naming_it(run_copy):
    """A NaN model meta-tested at 33.33 +- 0.00 (exit 0, results written)."""
    for name in (checkpoint.BEST, checkpoint.LATEST):
        poisoned(run_copy / name, "learner")
    before = snapshot(run_copy)
    rc, err = invoke(args(data_root_of(run_copy), run_copy, "--mode", "meta_test"))
    assert_one_line(rc, err, 2, f"checkpoint {run_copy / checkpoint.LATEST}",
                    "non-finite weights")
    assert snapshot(run_copy) == before


def test_a_biased_test_refuses_a_non_finite_checkpoint_naming_it(biased_copy, glyph_root):
    poisoned(biased_copy / checkpoint.LATEST, "model")
    before = snapshot(biased_copy)
    argv = biased(glyph_root, biased_copy)
    argv[1] = "test"
    rc, err = invoke(argv)
    assert_one_line(rc, err, 2, f"checkpoint {biased_copy / checkpoint.LATEST}",
                    "non-finite weights")
    assert snapshot(biased_copy) == before


@pytest.mark.parametrize("method", ["erm", "lnl"])
def test_a_biased_test_checks_the_folder_is_writable_first(tmp_path, monkeypatch, method):
    """A 41-line PermissionError came after the whole test: now one line, before the data
    is even loaded (as training checks)."""
    import errno
    import tempfile

    import taml.biased.build as parts
    import taml.biased.train_lnl as train_lnl

    def never(*a, **k):
        raise AssertionError("the data was loaded before the folder was checked")

    real = tempfile.mkstemp

    def read_only(*a, prefix="", **k):
        if prefix.startswith(".taml-write-test"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, prefix=prefix, **k)

    monkeypatch.setattr(parts, "load_data", never)
    monkeypatch.setattr(train_lnl, "load_lnl_data", never)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    savedir = tmp_path / "run"
    savedir.mkdir()
    (savedir / checkpoint.LATEST).write_bytes(b"a checkpoint")
    rc, err = invoke(["--mode", "test", "--method", method, "--savedir", str(savedir),
                      "--device", "cpu"])
    assert_one_line(rc, err, 2, "cannot create files", "not writable by you")


@pytest.mark.parametrize("family", ["episodic", "biased"])
@pytest.mark.parametrize("stranger", ["plot.png", "notes.txt", "config.json"])
def test_force_deletes_only_a_taml_runs_records(request, family, stranger):
    """--force chose by name: it deleted a user's plot.png and a config.json taml never
    wrote. A folder holding a file that is not a taml run's is refused, untouched."""
    savedir = request.getfixturevalue("run_copy" if family == "episodic" else
                                      "folder_run_copy")
    (savedir / checkpoint.LATEST).unlink()
    if family == "episodic":
        argv = args(data_root_of(savedir), savedir, "--n_train_iters", "2", "--force")
    else:
        config = json.loads((savedir / "config.json").read_text())
        argv = biased_args(config["dataset"][len("folder:"):], config["data_root"], savedir,
                           "--steps", "2", "--force")
    if stranger == "config.json":  # the user's own file of that name
        (savedir / stranger).write_text(json.dumps({"lr": 1, "note": "my settings"}))
    else:
        (savedir / stranger).write_bytes(b"\x89PNG\r\n\x1a\n a user's own figure")
    before = snapshot(savedir)
    rc, err = invoke(argv)
    assert_one_line(rc, err, 2, "not a taml", stranger, "move them out")
    assert snapshot(savedir) == before


def test_force_recognises_records_by_content_not_name(tmp_path):
    from taml.run.previous import is_taml_record

    (tmp_path / "train_metrics.csv").write_text("epoch,value\n1,2\n")
    (tmp_path / "train.log").write_text("my own notes\n")
    (tmp_path / "confusion.png").write_text("not a png")
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    for path in tmp_path.iterdir():
        assert not is_taml_record(path, "biased"), path.name
    (tmp_path / "train_metrics.csv").write_text("step,epoch,loss,accuracy,lr,seconds\n")
    assert is_taml_record(tmp_path / "train_metrics.csv", "biased")
    assert not is_taml_record(tmp_path / "train_metrics.csv", "episodic")


@pytest.mark.parametrize("mode", ["meta_test", "resume"])
def test_a_corrupt_config_is_rewritten_with_one_note(run_copy, mode):
    """--mode meta_test left it corrupt (the run vanished from the report); a resume
    rewrote it without a word."""
    data_root = data_root_of(run_copy)
    saved = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text('{"way": 3,')
    extra = ["--mode", "meta_test"] if mode == "meta_test" else ["--n_train_iters", "3",
                                                                 "--val_freq", "2"]
    rc, err = invoke(args(data_root, run_copy, *extra))
    assert rc == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "config.json could not be read" in notes[0], err
    repaired = json.loads((run_copy / "config.json").read_text())
    if mode == "meta_test":  # the trained config, as the checkpoint holds it
        assert repaired == saved
    else:  # the resumed command's (its honoured changes applied)
        assert (repaired["n_train_iters"], repaired["way"], repaired["family"]) == (
            3, saved["way"], "episodic")


def test_a_corrupt_biased_config_is_rewritten_by_a_test_with_one_note(biased_copy,
                                                                     glyph_root):
    saved = json.loads((biased_copy / "config.json").read_text())
    (biased_copy / "config.json").write_text("not json")
    argv = biased(glyph_root, biased_copy)
    argv[1] = "test"
    rc, err = invoke(argv)
    assert rc == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "config.json could not be read" in notes[0], err
    assert json.loads((biased_copy / "config.json").read_text()) == saved


@pytest.mark.parametrize("classes, per_class, extra, fragment", [
    (("a",), 8, [], "has 1 class folder ('a'); a classifier needs at least 2"),
    (("a", "b", "c"), 1, [], "each class needs at least 2 PNG/JPEG images"),
    (("a", "b", "c"), 3, ["--meta_per_class", "3"], "leaves none to train on"),
])
def test_a_degenerate_biased_folder_is_refused_before_training(tmp_path, classes, per_class,
                                                              extra, fragment):
    """One class trained and reported 100 %."""
    folder = ink_folder(tmp_path / "ink", classes, per_class)
    savedir = tmp_path / "run"
    rc, err = invoke(biased_args(folder, tmp_path / "data", savedir, "--steps", "1", *extra))
    assert_one_line(rc, err, 2, fragment)
    assert not savedir.exists()
