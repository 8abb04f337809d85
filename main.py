"""taml's command line from a checkout: ``python main.py --mode MODE [flags]``, the same as
the installed ``taml`` command and ``python -m taml`` (the code is :mod:`taml.command`).

``python main.py --mode MODE --help`` lists a mode's flags; see README.md.
Across processes or machines: ``torchrun --nproc_per_node=K main.py ...`` (docs/distributed.md).
"""

from __future__ import annotations

import sys

from taml.command import BIASED_MODES, META_MODES, REPORT_MODES, main, meta_main, requested_mode

__all__ = ["BIASED_MODES", "META_MODES", "REPORT_MODES", "main", "meta_main", "requested_mode"]

if __name__ == "__main__":
    sys.exit(main())
