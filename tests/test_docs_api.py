"""Every code block of docs/api.md runs as written (tiny shapes), as the README's snippet
does (tests/test_demo_readme.py)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from .test_config import ROOT

API_DOC = ROOT / "docs" / "api.md"


def blocks() -> list[tuple[int, str]]:
    """(line, code) of each ```python block."""
    text = API_DOC.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]


def test_the_page_has_its_code_blocks():
    assert len(blocks()) >= 6  # the learners, balancing, adapted weights, episodes,
    # learn2learn beside taml, the reweighting loop


@pytest.mark.parametrize("line, code", blocks(), ids=[f"line{n}" for n, _ in blocks()])
def test_a_code_block_of_api_md_runs(line, code):
    if "import learn2learn" in code:
        pytest.importorskip("learn2learn")
    namespace: dict = {"__name__": f"docs_api_line{line}"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"docs/api.md:{line}", "exec"), namespace)
