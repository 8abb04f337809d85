"""The ``data/<name>/get_data.py`` scripts, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import upstream_files as upstream

from taml.data.registry import REGISTRY, REPO_ROOT
from taml.data.sources import SOURCES, main


def run_script(name, *args, cwd, env):
    script = "get_data.py" if cwd == REPO_ROOT / "data" / name else f"data/{name}/get_data.py"
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cub_mirror(server, tmp_path):
    from taml.data.sources import cub

    classes = cub.CLASSES["valid"] + cub.CLASSES["test"]
    archive = upstream.cub_tgz(classes, per_class=1, grey_in=classes[0])
    server.add(f"/zenodo/api/records/{cub.RECORD}",
               upstream.zenodo_listing({cub.ARCHIVE: archive}))
    server.add(f"/zenodo/records/{cub.RECORD}/files/{cub.ARCHIVE}", archive)
    return dict(os.environ, TAML_MIRROR_CUB=server.url + "/zenodo",
                TAML_DATA_ROOT=str(tmp_path / "default_root"))


def test_get_data_runs_from_its_folder_then_does_nothing_then_force_rebuilds(
        cub_mirror, server, tmp_path):
    root = tmp_path / "data"
    first = run_script("cub", "--data_root", str(root), cwd=REPO_ROOT / "data" / "cub",
                       env=cub_mirror)
    assert first.returncode == 0, first.stderr
    assert (root / "cub" / "valid.npz").is_file() and (root / "cub" / "test.npz").is_file()
    assert not (tmp_path / "default_root").exists()

    requests_before = len(server.log)
    again = run_script("cub", "--data_root", str(root), cwd=REPO_ROOT, env=cub_mirror)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(server.log) == requests_before

    mtime = (root / "cub" / "test.npz").stat().st_mtime_ns
    forced = run_script("cub", "--data_root", str(root), "--force", cwd=REPO_ROOT,
                        env=cub_mirror)
    assert forced.returncode == 0, forced.stderr
    assert (root / "cub" / "test.npz").stat().st_mtime_ns != mtime


def test_get_data_errors_are_one_line_and_exit_2(closed_port, tmp_path):
    env = dict(os.environ, TAML_MIRROR_CUB=f"http://127.0.0.1:{closed_port}")
    result = run_script("cub", "--data_root", str(tmp_path), cwd=REPO_ROOT / "data" / "cub",
                        env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach http://127.0.0.1")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_dataset_has_a_thin_script_with_help(name, capsys):
    script = REPO_ROOT / "data" / name / "get_data.py"
    assert f'main("{name}")' in script.read_text()
    assert REGISTRY[name].get_data_command == f"python data/{name}/get_data.py"
    with pytest.raises(SystemExit) as exit_status:
        main(name, ["--help"])
    assert exit_status.value.code == 0
    assert "--data_root" in capsys.readouterr().out
