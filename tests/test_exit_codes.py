"""Both families end the same way: a refusal the user can fix is one stderr line and exit 2
(1 is kept for a diverged run), and a bad flag is argparse's one-line error, not a usage
block. The device is refused the same way on the meta-learning and the biased side."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from .test_config import ROOT


def run_main(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("mode", ["meta_train", "train"])
def test_a_missing_gpu_is_a_one_line_refusal_with_exit_2(mode, tmp_path):
    done = run_main("--mode", mode, "--device", "cuda", "--savedir", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: --device cuda: no CUDA device is available here; use --device "
                     "cpu or --device auto"]


@pytest.mark.parametrize("mode", ["meta_train", "train", "report"])
def test_a_bad_flag_is_one_line_with_exit_2(mode):
    done = run_main("--mode", mode, "--savedir", "unused", "--no_such_flag")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments: --no_such_flag" in lines[0]
    assert "(--help lists the flags)" in lines[0]


def test_help_lists_every_mode():
    text = " ".join(run_main("--help").stdout.split())
    for mode in ("meta_train", "meta_test", "train", "test", "report"):
        assert mode in text
