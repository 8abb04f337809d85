"""Seconds per Learning-Not-to-Learn step against a plain step (same network, same batch).

    .venv/bin/python benchmarks/lnl_step.py [--device cpu|cuda] [--batch 128] [--size 28]
        [--repeats 20] [--warmup 3] [--json PATH]

Steps (taml/biased/methods/lnl.py, the LNLNet of Colored MNIST: f, g, h_R, h_G, h_B):

- ``plain``: the baseline, CE(g(f(x)), y) on f and g (one forward, one backward);
- ``pretrain``: plain plus the colour heads trained on detached features;
- ``lnl``: the two LNL phases (f, g with the entropy term; then h and, through the
  reversal, f): two forwards of f and h, two backwards, three optimiser steps.

Random coloured images (black background, coloured squares) and labels: no dataset needed.
The variants run interleaved, round by round, in one process; the median per variant is
reported, with its ratio to ``plain``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from taml.biased.methods.lnl import LNLNet, LNLTrainer

VARIANTS = ("plain", "pretrain", "lnl")


def batch(size: int, image_size: int, device: torch.device, generator: torch.Generator):
    """uint8 images ``[B, 3, S, S]``: a random coloured square on black; labels ``[B]``."""
    images = torch.zeros(size, 3, image_size, image_size, dtype=torch.uint8)
    colours = torch.randint(0, 256, (size, 3), generator=generator, dtype=torch.uint8)
    lo, hi = image_size // 4, 3 * image_size // 4
    images[:, :, lo:hi, lo:hi] = colours[:, :, None, None]
    labels = torch.randint(0, 10, (size,), generator=generator)
    return images.to(device), labels.to(device)


def step_fn(name: str, trainer: LNLTrainer):
    return {"plain": trainer.plain_step, "pretrain": trainer.pretrain_step,
            "lnl": trainer.unlearn_step}[name]


def run(device: torch.device, batch_size: int, image_size: int, repeats: int,
        warmup: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x, y = batch(batch_size, image_size, device, generator)
    steps = {}
    for name in VARIANTS:
        torch.manual_seed(0)
        steps[name] = step_fn(name, LNLTrainer(LNLNet(10).to(device), lr=0.01))
    times = {name: [] for name in VARIANTS}
    for round_index in range(warmup + repeats):
        for name in VARIANTS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            steps[name](x, y)  # returns floats (.item()): the step has finished
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"device": str(device), "batch": batch_size, "image_size": image_size,
            "repeats": repeats, "seconds": medians,
            "ratio_to_plain": {n: medians[n] / medians["plain"] for n in VARIANTS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128, help="the authors' batch")
    parser.add_argument("--size", type=int, default=28, help="image size (MNIST: 28)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(torch.device(args.device), args.batch, args.size, args.repeats, args.warmup)
    print(f"LNL step, batch {args.batch}, {args.size}x{args.size}, {result['device']} "
          f"(median of {args.repeats})")
    print("| step | seconds | x plain |\n|---|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {result['seconds'][name]:.4f} | "
              f"{result['ratio_to_plain'][name]:.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
