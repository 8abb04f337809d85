"""Download CIFAR-10 and write taml's store in data/cifar10/ (docs/datasets.md).

Run from the repository root (`python data/cifar10/get_data.py`) or from this folder
(`python get_data.py`); `--data_root DIR` writes elsewhere, `--force` rebuilds.
"""

import sys
from pathlib import Path

try:
    import taml  # noqa: F401
except ImportError:  # not installed: use the repository this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from taml.data.sources import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("cifar10"))
