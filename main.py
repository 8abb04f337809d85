"""taml's command line: ``python main.py --mode meta_train|meta_test [flags]``.

The flags are the original's (``python main.py --help`` lists them all); see README.md.
Across processes or machines: ``torchrun --nproc_per_node=K main.py ...`` (docs/distributed.md).
"""

from __future__ import annotations

import sys

from taml.config import parse_config
from taml.data.registry import DatasetError


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    from taml import distributed
    from taml.evaluate import meta_test
    from taml.trainer import TrainingDiverged, meta_train

    world = distributed.start(cfg)  # torchrun's process group, when launched by torchrun
    finished = False
    try:
        if cfg.mode == "meta_train":
            meta_train(cfg, world)
        else:
            meta_test(cfg, world)
        finished = True
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        distributed.stop(world, finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
