"""Where one meta-training iteration of ours spends its time: a ``torch.profiler`` table of
the operators by self CPU time (one iteration after a warm-up one, on the same meta-batch).

    .venv/bin/python benchmarks/profile_iteration.py [--shape cifar|mimgnet]
        [--precision fp32|bf16] [--variant maml|meta-sgd|bayesian-taml] [--metabatch 4]
        [--rows 15] [--json PATH]

The episodes are the speed benchmark's (``meta_iteration.py``: random images, 5-way,
1-50 shots, 15 queries, 5 inner steps of 0.5), the step is ``MetaLearner.meta_backward``
as the trainer runs it. The shares tell convolution arithmetic (``mkldnn_convolution``,
``convolution_backward``) from the element-wise work of batch norm, ReLU and pooling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meta_iteration import (  # noqa: E402
    SHAPES,
    VARIANTS,
    add_episode_arguments,
    random_sampler,
    run_header,
    write_results,
)

from taml.episodic.learners.conv4 import PRECISIONS  # noqa: E402
from taml.episodic.learners.inner_loop import InnerLoopConfig  # noqa: E402
from taml.episodic.learners.meta_learner import MetaLearner  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=list(SHAPES), default="mimgnet")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    p.add_argument("--variant", choices=[v for v in VARIANTS if VARIANTS[v] is not None],
                   default="maml")
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--json", type=Path, default=None)
    add_episode_arguments(p)
    args = p.parse_args(argv)
    image_size = SHAPES[args.shape]
    sampler = random_sampler(image_size, args.way, args.max_shot, args.query)
    batch = sampler.sample(args.metabatch, np.random.default_rng(1))
    inner = InnerLoopConfig(args.n_steps, args.inner_lr, precision=args.precision)
    learner = MetaLearner(VARIANTS[args.variant], image_size, args.way, args.max_shot, inner)
    generator = torch.Generator().manual_seed(0)

    def iteration():
        learner.zero_grad(set_to_none=True)
        learner.meta_backward(batch, generator)

    iteration()  # warm-up: oneDNN primitives, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        iteration()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total,
             "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
            for e in events[: args.rows]]
    print(f"{args.variant}, {args.precision}, {args.shape}, supports "
          f"{batch.support_sizes.tolist()}: {total / 1e6:.2f} s of self CPU time")
    print("| op | self CPU % | calls |\n|---|---|---|")
    for row in rows:
        print(f"| {row['op']} | {100 * row['self_cpu_share']:.1f} | {row['calls']} |")
    results = {**run_header(args, torch.device("cpu")),
               "support_sizes": batch.support_sizes.tolist(),
               "self_cpu_seconds": total / 1e6, "ops": rows}
    write_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
