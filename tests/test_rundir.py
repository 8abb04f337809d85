"""taml.run.folder, the run-folder helpers every mode uses: checked, locked, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taml.run.folder import (
    LOCK_NAME,
    RunDirError,
    RunLock,
    atomic_writer,
    check_writable,
    expand_savedir,
    write_json_atomic,
)


def test_check_writable_refuses_files_and_kernel_views_and_creates_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="--out .*/f is a file"):
        check_writable(tmp_path / "f", "--out")
    with pytest.raises(RunDirError, match="is under the file"):
        check_writable(tmp_path / "f" / "deeper" / "run", "--out")
    with pytest.raises(RunDirError, match="under /proc"):
        check_writable("/proc/self/run", "--out")
    check_writable(tmp_path / "new" / "deep", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no folder, no probe left


def test_expand_savedir_expands_the_home_folder_and_refuses_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_savedir("~/runs", "--savedir") == tmp_path / "runs"
    for empty in ("", "  ", None):
        with pytest.raises(RunDirError, match="--savedir is empty"):
            expand_savedir(empty, "--savedir")


def test_a_second_lock_names_the_first_holder_and_a_released_lock_is_free(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunDirError, match=f"in use by another run \\(process {os.getpid()}\\)"):
            with RunLock(tmp_path / "run"):
                pass
    with RunLock(tmp_path / "run"):
        pass


def test_a_failed_block_removes_the_folder_it_created_but_keeps_one_with_files(tmp_path):
    with pytest.raises(ValueError), RunLock(tmp_path / "empty"):
        raise ValueError
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ValueError), RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "train.log").write_text("what happened")
        raise ValueError
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [LOCK_NAME, "train.log"]


def test_an_interrupted_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"accuracy": 50.0})
    with pytest.raises(KeyboardInterrupt), atomic_writer(path) as handle:
        handle.write(b'{"accur')
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"accuracy": 50.0}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
    with pytest.raises(ValueError):  # NaN is not JSON: refused, not written
        write_json_atomic(path, {"accuracy": float("nan")})
    assert Path(path).read_text().startswith("{")
