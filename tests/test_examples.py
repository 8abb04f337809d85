"""examples/: each script runs as a user would run it, on tiny settings, from this checkout
(examples/mwnet_in_your_loop.py: tests/test_api_biased.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .test_config import ROOT


def run_example(name: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *flags], capture_output=True,
        text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bayesian_taml_on_a_resnet12_in_a_plain_loop():
    out = run_example("bayesian_taml_resnet12.py", "--iterations", "2")
    assert len(re.findall(r"^iteration \d+: meta-loss [\d.]+", out, flags=re.M)) == 2, out
    assert re.search(r"^meta-test accuracy [\d.]+% \(chance 20%\)$", out, flags=re.M), out
    sizes = re.search(r"^class sizes -> weights: (.*)$", out, flags=re.M)
    pairs = [p.split(" -> ") for p in sizes[1].split(", ")]
    assert len(pairs) == 5 and abs(sum(float(w) for _, w in pairs) - 1) < 0.01, out


def test_maml_on_your_own_tensors():
    out = run_example("maml_on_your_tensors.py", "--iterations", "10")
    assert re.search(r"^iteration 10: meta-loss [\d.]+, query accuracy", out, flags=re.M), out
    assert re.search(r"^meta-test on digits 7-9: [\d.]+% \(chance 33%\)$", out, flags=re.M), out
