"""How far one meta-gradient is from its float64 value in each precision.

    .venv/bin/python benchmarks/precision_error.py [--data synthetic|random]
        [--shape cifar|mimgnet] [--max_shot 50] [--n_steps 5] [--inner_lr 0.5]
        [--metabatch 4] [--json PATH]

For MAML and Meta-SGD (deterministic, so every precision sees the same computation) at
the speed benchmark's episode shape, on a meta-batch of the embedded ``synthetic`` dataset
(the demo's, 32x32; generated on first use) or of the speed benchmark's random images
(``--data random``, either shape; noise images make an ill-conditioned meta-gradient, even
float32 can be 10% off float64 there): the relative error (L2 norm over all parameters) of
the first meta-gradient in float32, in ``--precision bf16``, and in float32 with the native
``F.batch_norm`` instead of taml's plain-op batch norm (the choice
``backbone.masked_batch_norm`` makes for bfloat16 only), each against float64 from the
same initialisation and meta-batch. Bayesian TAML is left out: its posterior noise is drawn
in the parameters' dtype, so a float64 run samples other noise.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meta_iteration import (  # noqa: E402
    SHAPES,
    add_episode_arguments,
    random_sampler,
    run_header,
    write_results,
)

from taml.episodic.build import samplers_for  # noqa: E402
from taml.episodic.config import parse_config  # noqa: E402
from taml.episodic.learners import backbone  # noqa: E402
from taml.episodic.learners.conv4 import Conv4  # noqa: E402
from taml.episodic.learners.inner_loop import InnerLoopConfig  # noqa: E402
from taml.episodic.learners.meta_learner import MetaLearner, Switches  # noqa: E402

VARIANTS = {"maml": Switches(), "meta-sgd": Switches(alpha_on=True)}
# name -> (parameter dtype, --precision, native batch norm in float32)
SETTINGS = {"fp64": (torch.float64, "fp32", False), "fp32": (torch.float32, "fp32", False),
            "bf16": (torch.float32, "bf16", False),
            "fp32 native BN": (torch.float32, "fp32", True)}


@contextlib.contextmanager
def native_batch_norm_everywhere(on: bool):
    """Every all-real-rows batch norm through ``F.batch_norm``, whatever the dtype."""
    real = backbone.masked_batch_norm
    if on:
        backbone.masked_batch_norm = lambda x, shift, mask, eps, scale=None: (
            backbone.native_batch_norm(x, shift, eps, scale) if mask is None
            else real(x, shift, mask, eps, scale))
    try:
        yield
    finally:
        backbone.masked_batch_norm = real


def meta_gradient(switches, setting, image_size, args, batch) -> torch.Tensor:
    dtype, precision, native = SETTINGS[setting]
    inner = InnerLoopConfig(args.n_steps, args.inner_lr, precision=precision)
    learner = MetaLearner(switches, image_size, args.way, args.max_shot, inner,
                          Conv4()).to(dtype)
    with native_batch_norm_everywhere(native):
        learner.meta_backward(batch, torch.Generator().manual_seed(0))
    return torch.cat([p.grad.double().flatten() for p in learner.parameters()
                      if p.grad is not None])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", choices=["synthetic", "random"], default="synthetic")
    p.add_argument("--data_root", default=None, help="for --data synthetic (default: data/)")
    p.add_argument("--shape", choices=list(SHAPES), default="cifar")
    add_episode_arguments(p)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.data == "synthetic" and args.shape != "cifar":
        p.error("--data synthetic is 32x32: use --shape cifar, or --data random")
    image_size = SHAPES[args.shape]
    if args.data == "random":
        sampler = random_sampler(image_size, args.way, args.max_shot, args.query)
    else:
        flags = ["--id_dataset", "synthetic", "--way", str(args.way), "--max_shot",
                 str(args.max_shot), "--query", str(args.query), "--no_progress"]
        cfg = parse_config(flags + (["--data_root", args.data_root] if args.data_root else []))
        sampler = samplers_for(cfg, cfg.id_dataset, "train")["synthetic"]
    batch = sampler.sample(args.metabatch, np.random.default_rng(1))
    results = {**run_header(args, torch.device("cpu")), "support_sizes":
               batch.support_sizes.tolist(), "relative_error": {}}
    print(f"{args.data} {args.shape}, supports {batch.support_sizes.tolist()}, "
          f"{args.n_steps} steps, inner lr {args.inner_lr}: relative error of the "
          "meta-gradient against float64")
    for name, switches in VARIANTS.items():
        exact = meta_gradient(switches, "fp64", image_size, args, batch)
        errors = {setting: ((meta_gradient(switches, setting, image_size, args, batch)
                             - exact).norm() / exact.norm()).item()
                  for setting in SETTINGS if setting != "fp64"}
        results["relative_error"][name] = errors
        print(f"{name:<9} " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    write_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
