"""pyproject.toml declares the Python versions its pinned dependencies have wheels for
(torch==2.14.1 and torchvision==0.29.1: CPython 3.11 to 3.14), not only the one CI uses."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_requires_python_admits_every_version_torch_has_wheels_for():
    declared = SpecifierSet(tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"])
    for version in ("3.11", "3.12", "3.13", "3.14"):
        assert declared.contains(version), f"requires-python {declared} refuses {version}"
    assert not declared.contains("3.10")  # the code is written for 3.11 and newer
