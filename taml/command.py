"""taml's command line: ``taml`` (the console script), ``python -m taml`` and the
checkout's ``main.py`` all call :func:`main`.

- ``taml --mode meta_train|meta_test [flags]``: MAML, Meta-SGD, Bayesian TAML on
  imbalanced / OOD episodes (the original's flags; ``taml/episodic/config.py``).
- ``taml --mode train|test --method {erm,class_balanced,focal,tml,l2rw,mwnet,lnl}``:
  learning from biased data (``taml/biased/``).
- ``taml --mode report --savedir results/``: tables and curves from finished runs
  (``taml/report/``).

``taml --mode MODE --help`` lists a mode's flags; see README.md. Datasets live under
``--data_root``, else ``$TAML_DATA_ROOT``, else the checkout's ``data/``, else a user cache
folder (:func:`taml.data.registry.default_data_root`).
Across processes or machines: ``torchrun --nproc_per_node=K main.py ...`` (docs/distributed.md).
"""

from __future__ import annotations

import os
import sys

META_MODES = ("meta_train", "meta_test")
BIASED_MODES = ("train", "test")
REPORT_MODES = ("report",)


def program() -> str:
    """How the user called the command line (``taml``, ``python -m taml``, ``main.py``), for
    its error lines."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "taml"
    return "python -m taml" if name == "__main__.py" else name


def requested_mode(argv: list[str]) -> str:
    """The value of ``--mode`` (``--mode X`` or ``--mode=X``), default meta_train: each
    family of modes has its own parser, so the mode is read before any of them runs."""
    for i, arg in enumerate(argv):
        if arg == "--mode" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--mode="):
            return arg.split("=", 1)[1]
    return "meta_train"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = requested_mode(argv)
    if mode in BIASED_MODES:
        from taml.biased.cli import main as biased_main

        return biased_main(argv)
    if mode in REPORT_MODES:
        from taml.report.cli import main as report_main

        return report_main(argv)
    if mode not in META_MODES:
        modes = ", ".join(META_MODES + BIASED_MODES + REPORT_MODES)
        print(f"{program()}: error: --mode {mode!r} is not a mode; choose one of {modes}",
              file=sys.stderr)
        return 2
    return meta_main(argv)


def meta_main(argv: list[str]) -> int:
    from taml.episodic.config import parse_config

    cfg = parse_config(argv)
    from taml.episodic.build import resolve_device
    from taml.episodic.evaluate import meta_test
    from taml.episodic.train import meta_train
    from taml.run import distributed
    from taml.run.cli import RESUME_ADVICE, run_reporting_errors
    from taml.run.errors import Refusal, TrainingDiverged

    world = distributed.World.from_env()  # torchrun's ranks, when launched by torchrun

    def action() -> int:
        if world.size > 1:  # a missing GPU is refused in one line (exit 2) before joining
            distributed.start(resolve_device(cfg, world).type == "cuda", world)
        (meta_train if cfg.mode == "meta_train" else meta_test)(cfg, world)
        return 0

    # a meta-test writes its files at the end, all or nothing: Ctrl-C leaves the earlier ones
    interrupted = (RESUME_ADVICE if cfg.mode == "meta_train" else
                   "interrupted: no meta-test results were written (earlier ones are kept); "
                   "rerun the command to test again")
    # bad data, folder, checkpoint, device or flags: one line, exit 2
    return run_reporting_errors(action, (Refusal,), TrainingDiverged,
                                lambda finished: distributed.stop(world, finished), interrupted)


