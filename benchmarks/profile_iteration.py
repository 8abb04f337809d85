"""Where one meta-training iteration of ours spends its time: a ``torch.profiler`` table of
the operators by self CPU time (one iteration after a warm-up one, on the same meta-batch).

    .venv/bin/python benchmarks/profile_iteration.py [--shape cifar|mimgnet]
        [--image_size N] [--precision fp32|bf16] [--variant maml|meta-sgd|bayesian-taml]
        [--task_batching loop|vmap] [--metabatch 4] [--rows 15] [--json PATH]

The episodes are random images as ``meta_iteration.py``'s (by default the paper's shape:
5-way, 1-50 shots, 15 queries, 5 inner steps of 0.5), the network the 4-conv net, the step
``MetaLearner.meta_backward`` as the trainer runs it. The shares tell convolution
arithmetic (``mkldnn_convolution``, ``convolution_backward``) from the element-wise work of
batch norm, ReLU and pooling.
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
    SWITCHES,
    add_episode_arguments,
    random_sampler,
    run_header,
    write_results,
)

from taml.episodic.learners.backbone import PRECISIONS  # noqa: E402
from taml.episodic.learners.conv4 import Conv4  # noqa: E402
from taml.episodic.learners.inner_loop import InnerLoopConfig  # noqa: E402
from taml.episodic.learners.meta_learner import MetaLearner  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=list(SHAPES), default="mimgnet")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    p.add_argument("--variant", choices=list(SWITCHES), default="maml")
    p.add_argument("--task_batching", choices=["loop", "vmap"], default="loop")
    p.add_argument("--image_size", type=int, default=None,
                   help="another input size than --shape's (e.g. 16: overhead-bound)")
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--json", type=Path, default=None)
    add_episode_arguments(p)
    args = p.parse_args(argv)
    image_size = args.image_size or SHAPES[args.shape]
    sampler = random_sampler(image_size, args.way, args.max_shot, args.query)
    batch = sampler.sample(args.metabatch, np.random.default_rng(1))
    inner = InnerLoopConfig(args.n_steps, args.inner_lr, precision=args.precision)
    learner = MetaLearner(SWITCHES[args.variant], image_size, args.way, args.max_shot, inner,
                          Conv4())
    generator = torch.Generator().manual_seed(0)

    def iteration():
        learner.zero_grad(set_to_none=True)
        learner.meta_backward(batch, generator, task_batching=args.task_batching)

    iteration()  # warm-up: oneDNN primitives, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        iteration()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total,
             "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
            for e in events[: args.rows]]
    print(f"{args.variant}, {args.precision}, {args.task_batching}, {image_size} px, supports "
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
