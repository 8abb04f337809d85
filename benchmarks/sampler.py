"""Median time to sample one meta-batch from memory (issue: sampler under 5 ms).

    .venv/bin/python benchmarks/sampler.py [--image_size 32] [--metabatch 4] [--repeats 300]

Uses random uint8 images laid out as a CIFAR-FS meta-train split (64 classes × 600),
so it needs no dataset on disk.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from taml.data.episodes import SAMPLER_MODES, EpisodeSampler
from taml.data.store import make_split


def time_sampler(image_size: int, metabatch: int, way: int, max_shot: int, query: int,
                 mode: str, repeats: int, n_classes: int = 64, per_class: int = 600) -> list[float]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_classes * per_class, image_size, image_size, 3), np.uint8)
    labels = np.repeat(np.arange(n_classes), per_class)
    split = make_split(images, labels, [f"c{i}" for i in range(n_classes)])
    sampler = EpisodeSampler(split, way, max_shot, query, mode)
    for _ in range(20):  # warm-up
        sampler.sample(metabatch, rng)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        sampler.sample(metabatch, rng)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--image_size", type=int, nargs="+", default=[32, 84])
    p.add_argument("--metabatch", type=int, default=4)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--max_shot", type=int, default=50)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args()
    print(f"{'size':>5} {'mode':>6} {'median ms':>10} {'p90 ms':>8}")
    for size in args.image_size:
        for mode in SAMPLER_MODES:
            s = sorted(time_sampler(size, args.metabatch, args.way, args.max_shot, args.query,
                                    mode, args.repeats))
            print(f"{size:>5} {mode:>6} {1e3 * statistics.median(s):>10.2f} "
                  f"{1e3 * s[int(0.9 * len(s))]:>8.2f}")


if __name__ == "__main__":
    main()
