"""Learning works: a short real meta-training on the embedded dataset ends well above chance
and well above the same network before meta-training, on the same validation episodes.

These fail if the meta-gradient is broken (wrong sign, detached, zero), if the inner loop
does not adapt, or if the data lost its labels; a run that only "runs" does not pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from taml.episodic.build import build_learner, make_sampler
from taml.episodic.config import parse_config
from taml.episodic.evaluate import episode_accuracies
from taml.episodic.train import meta_train
from taml.run.seeds import Stream, numpy_stream

ITERATIONS = 60
# Small enough for CI (about 10-20 s a run on 2 cores), imbalanced as the real thing.
FLAGS = ["--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood", "--way", "5",
         "--max_shot", "10", "--query", "5", "--n_steps", "2", "--metabatch", "2",
         "--n_train_iters", str(ITERATIONS), "--val_freq", str(ITERATIONS),
         "--save_freq", str(ITERATIONS), "--print_freq", str(ITERATIONS),
         "--n_val_episodes", "60", "--no_progress", "--device", "cpu"]
CHANCE = 20.0


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic_data")


def untrained_accuracy(cfg) -> float:
    """ID validation accuracy of the freshly initialised learner on the very episodes the
    trainer validates on at iteration ``ITERATIONS``."""
    torch.manual_seed(cfg.seed)
    learner = build_learner(cfg).eval()
    acc = episode_accuracies(learner, make_sampler(cfg, "synthetic", "valid"),
                             cfg.n_val_episodes, cfg.metabatch,
                             numpy_stream(cfg.seed, Stream.VALIDATION, ITERATIONS),
                             torch.device("cpu"))
    return float(100 * np.mean(acc))


@pytest.mark.parametrize(
    ("method", "switches", "margin"),
    [
        # MAML with an inner step suited to a 60-iteration run (docs/demo.md)
        ("maml", ["--inner_lr", "0.05"], 15.0),
        # measured: MAML 37.6% before -> 64.5% after; Bayesian TAML 26.7% -> 41.1% (its
        # α starts at 0.01 and its posterior samples are noisy early: it starts slower)
        ("bayesian_taml", ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"], 8.0),
    ],
)
def test_short_meta_training_learns(synthetic_root, tmp_path, method, switches, margin):
    cfg = parse_config(["--data_root", str(synthetic_root), "--savedir",
                        str(tmp_path / method), *FLAGS, *switches])
    before = untrained_accuracy(cfg)
    meta_train(cfg)
    history = json.loads((tmp_path / method / "validation.json").read_text())
    after = history[-1]["id"]["synthetic"]
    assert history[-1]["iteration"] == ITERATIONS
    assert after > CHANCE + 2 * margin, (before, after)
    assert after > before + margin, (before, after)
