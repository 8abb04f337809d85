"""taml installed (not editable) into a fresh virtual environment runs outside the checkout:
the ``taml`` command and ``python -m taml`` exist, and data goes to ``--data_root``,
``$TAML_DATA_ROOT`` or the user's cache folder, never inside site-packages.

To stay fast the environment reuses this interpreter's torch and the rest of the
dependencies through a ``.pth`` line (what ``--system-site-packages`` does when they are
installed system-wide), and ``pip install --no-deps`` installs taml alone from a copy of the
package's files (so no build output lands in the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .test_config import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with taml installed from a wheel built off a copy of the package."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "taml", source / "taml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    # this interpreter's packages (torch, numpy, setuptools...), after the venv's own: a
    # plain path line, so their .pth files (an editable taml among them) are not run
    (purelib / "reuse_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-build-isolation", "--no-index", "--quiet", str(source)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def run(venv: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "TAML_DATA_ROOT", "XDG_CACHE_HOME")}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**clean, "OMP_NUM_THREADS": "1", **env})


def site_packages_taml(venv: Path) -> Path:
    done = run(venv, [str(venv / "bin" / "python"), "-c",
                      "import taml, pathlib; print(pathlib.Path(taml.__file__).parent)"],
               cwd=venv)
    return Path(done.stdout.strip())


def test_the_installed_package_is_the_copy_not_the_checkout(installed):
    package = site_packages_taml(installed)
    assert "site-packages" in package.parts and ROOT not in package.parents


@pytest.mark.parametrize("command", [["bin/taml"], ["bin/python", "-m", "taml"]])
def test_taml_and_python_m_taml_have_main_pys_modes(installed, tmp_path, command):
    first, *rest = command
    program = [str(installed / first), *rest]
    for mode, flag in (("meta_train", "--id_dataset"), ("train", "--method"),
                       ("report", "--savedir")):
        done = run(installed, [*program, "--mode", mode, "--help"], cwd=tmp_path)
        assert done.returncode == 0 and flag in done.stdout, done.stderr[-2000:]
    done = run(installed, [*program, "--mode", "nonsense"], cwd=tmp_path)
    assert done.returncode == 2 and "is not a mode" in done.stderr


def test_data_goes_to_the_user_cache_never_inside_site_packages(installed, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    python = str(installed / "bin" / "python")
    make_digits = [python, "-m", "taml.data.classification", "digits"]
    done = run(installed, make_digits, cwd=tmp_path, HOME=str(home))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (home / ".cache" / "taml" / "data" / "digits" / "train.npz").is_file()
    package = site_packages_taml(installed)
    assert not (package.parent / "data").exists() and not (package / "data" / "digits").exists()
    done = run(installed, make_digits, cwd=tmp_path, HOME=str(home),
               TAML_DATA_ROOT=str(tmp_path / "env_root"))
    assert (tmp_path / "env_root" / "digits" / "train.npz").is_file(), done.stderr
    done = run(installed, [*make_digits, "--data_root", str(tmp_path / "flag_root")],
               cwd=tmp_path, HOME=str(home), TAML_DATA_ROOT=str(tmp_path / "env_root"))
    assert (tmp_path / "flag_root" / "digits" / "train.npz").is_file(), done.stderr


def test_a_checkout_keeps_its_data_folder():
    from taml.data.registry import REPO_ROOT, default_data_root, is_checkout

    assert is_checkout() and REPO_ROOT == ROOT
    if "TAML_DATA_ROOT" not in os.environ:
        assert default_data_root() == ROOT / "data"
