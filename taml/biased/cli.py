"""``python main.py --mode train|test --method ...``: learning from biased data.

Errors a user can fix (a bad data recipe, an unusable --savedir, a checkpoint of another
run, a diverged run) print one line and exit 2 (1 for divergence); Ctrl-C exits 130 and the
same command resumes.
"""

from __future__ import annotations

import importlib.util
import sys

from taml.biased.config import parse_biased_config

LNL_MODULE = "taml.biased.train_lnl"


def _lnl(cfg) -> int:
    """--method lnl is Learning Not to Learn (taml/biased/train_lnl.py, its own loop)."""
    if importlib.util.find_spec(LNL_MODULE) is None:
        print("error: --method lnl needs taml/biased/train_lnl.py, which this checkout lacks; "
              "choose another --method", file=sys.stderr)
        return 2
    module = importlib.import_module(LNL_MODULE)
    (module.train if cfg.mode == "train" else module.test)(cfg)
    return 0


def main(argv: list[str]) -> int:
    cfg = parse_biased_config(argv)  # argparse prints the one-line usage error, exits 2
    from taml.run import distributed
    from taml.run.cli import RESUME_ADVICE, run_reporting_errors
    from taml.run.errors import Refusal, TrainingDiverged

    worlds = []  # the process group, once joined (LNL runs in one process)

    def action() -> int:
        if cfg.method == "lnl":
            return _lnl(cfg)
        import torch

        from taml.biased.evaluate import test
        from taml.biased.train import train

        cuda = cfg.device != "cpu" and torch.cuda.is_available()
        worlds.append(distributed.start(cuda))
        (train if cfg.mode == "train" else test)(cfg, worlds[0])
        return 0

    def stop(finished: bool) -> None:
        for world in worlds:
            distributed.stop(world, finished)

    # --mode test trains nothing: there is no checkpoint of it to resume from
    interrupted = (RESUME_ADVICE if cfg.mode == "train" else
                   "interrupted: the test stopped before it finished (the checkpoint is "
                   "unchanged); rerun the same command to test again")
    return run_reporting_errors(action, (Refusal,), TrainingDiverged, stop, interrupted)
