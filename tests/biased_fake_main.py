"""``main.py --mode train`` on the tests' fake data and method (biased_fakes.py), for the
torchrun test: the same entry point, with the builders swapped before it runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taml.biased import build as parts  # noqa: E402
from taml.biased import cli  # noqa: E402
from tests.biased_fakes import FakeMethod, fake_data  # noqa: E402

if __name__ == "__main__":
    data = fake_data(counts=(40, 24, 16))
    parts.load_data = lambda cfg: data
    parts.make_method = lambda cfg, num_classes, counts: FakeMethod(num_classes)
    sys.exit(cli.main(["--mode", "train", *sys.argv[1:]]))
