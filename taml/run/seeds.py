"""Every random stream of a run, by name: one generator per purpose, seeded by
``(--seed, purpose, keys...)``, so that drawing more from one stream (a validation, a
printout, a longer log) never shifts another, and a resumed run equals an uninterrupted one.

The purposes of both families are numbered here, in one table, so that no two share a
number (the numbers are part of every saved run: changing one changes its results). The
data layer's streams (synthetic classes, recipe splits and noise, colours) are seeded by
the dataset's own seed, not the run's, and are named in their modules.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    # episodic family (taml.episodic)
    EPISODES = 0              # meta-training episodes, one per shard
    VALIDATION = 1            # validation episodes, keyed by iteration
    TABLES = 2                # the balancing tables' and plots' tasks, keyed by iteration
    META_TEST = 3             # meta-test episodes, keyed by dataset
    VALIDATION_POSTERIOR = 4  # validation's Monte Carlo samples (iteration, dataset, batch)
    BACKBONE = 5              # --backbone resnet12's initial kernels
    # biased-data family (taml.biased)
    TRAIN_ORDER = 10          # the order of training examples
    META_ORDER = 11           # the order of the meta (target) set
    AUGMENTATION = 12         # crops and flips
    GLOBAL = 13               # torch's global stream (dropout...), one per rank
    LNL_ORDER = 31            # Learning Not to Learn's order of training examples


# meta-test's posterior samples come from a generator seeded by --seed + this + the
# dataset's index (mixed with the rank): a scheme older than the table above, kept so that
# saved meta-test results reproduce
META_TEST_POSTERIOR_OFFSET = 1000


def numpy_stream(seed: int, purpose: Stream, *keys: int) -> np.random.Generator:
    """numpy's generator for ``purpose`` (``default_rng([seed, purpose, *keys])``)."""
    return np.random.default_rng([int(k) for k in (seed, purpose, *keys)])


def mixed_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed mixed from ``(seed, *keys)`` by numpy's SeedSequence: neighbouring
    seeds, purposes and ranks never share a stream."""
    return int(np.random.SeedSequence([int(k) for k in (seed, *keys)]).generate_state(1)[0])


def mixed_seed63(*parts: int) -> int:
    """A 63-bit seed mixed from ``parts`` (for ``torch.manual_seed``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def torch_stream(seed: int, purpose: Stream, *keys: int) -> torch.Generator:
    """A CPU torch generator for ``purpose``, seeded by ``mixed_seed(seed, purpose, *keys)``."""
    return torch.Generator().manual_seed(mixed_seed(seed, int(purpose), *keys))


def shard_generator(seed: int, shard: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``seed`` for shard (rank) 0, else by (seed, shard) mixed,
    so that neighbouring seeds and ranks never share a stream (the posterior samples of
    meta-training and meta-test)."""
    return torch.Generator().manual_seed(mixed_seed(seed, shard) if shard else seed)
