"""``python -m taml``: the command line (:mod:`taml.command`), as the ``taml`` command."""

import sys

from taml.command import main

sys.exit(main())
