"""Episode accuracies, confidence intervals, and meta-testing a trained run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from taml import checkpoint
from taml.config import Config
from taml.data.episodes import EpisodeSampler
from taml.distributed import SINGLE, World, device_of, gather_objects
from taml.experiment import build_learner, evaluation_rng, samplers_for, torch_generator
from taml.learners.meta_learner import MetaLearner, predictive_accuracy
from taml.logs import RunLog


def confidence_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width, 1.96 * std / sqrt(n), of per-episode accuracies in percent
    (the original's formula: numpy's population std)."""
    acc = 100.0 * np.asarray(accuracies, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / math.sqrt(len(acc)))


def episode_accuracies(
    learner: MetaLearner,
    sampler: EpisodeSampler,
    n_episodes: int,
    metabatch: int,
    rng: np.random.Generator,
    device: torch.device,
    n_mc_samples: int = 0,
    posterior_generator: torch.Generator | None = None,
    task_batching: str = "auto",
    desc: str | None = None,
    progress: bool = False,
    world: World = SINGLE,
) -> np.ndarray:
    """Query accuracy of ``n_episodes`` episodes, drawn ``metabatch`` at a time.

    Across processes every rank draws every batch (sampling is cheap, and the episodes are
    then those of a single process) but adapts only to batches ``rank, rank + W, ..``; the
    accuracies are gathered in the single-process order, so every rank returns all of them.
    """
    accuracies = []
    bar = tqdm(total=n_episodes, desc=desc, leave=False, disable=not progress, unit="ep")
    remaining, index = n_episodes, 0
    while remaining > 0:
        n_tasks = min(metabatch, remaining)
        batch = sampler.sample(n_tasks, rng)
        if index % world.size == world.rank:
            acc = predictive_accuracy(learner, batch.to(device), n_mc_samples,
                                      posterior_generator, task_batching)
            accuracies.append(acc.cpu().numpy())
        remaining -= n_tasks
        index += 1
        bar.update(n_tasks)
    bar.close()
    per_rank = gather_objects(accuracies, world)
    return np.concatenate([per_rank[i % world.size][i // world.size] for i in range(index)])


def check_compatible(trained: dict, cfg: Config) -> None:
    """The meta-test command must build the same model as meta-training did."""
    keys = ["alpha_on", "omega_on", "gamma_on", "z_on", "way", "id_dataset"]

    def same(a, b) -> bool:  # lists come back from a checkpoint where tuples went in
        return (tuple(a) == tuple(b)) if isinstance(a, (list, tuple)) else a == b

    diffs = [f"--{k} {trained[k]!r} at meta_train, {getattr(cfg, k)!r} now" for k in keys
             if not same(trained[k], getattr(cfg, k))]
    if diffs:
        raise SystemExit("meta_test must use the model flags of meta_train: "
                         + "; ".join(diffs))


def meta_test(cfg: Config, world: World = SINGLE) -> dict:
    """Restores the best-validated checkpoint (else the latest) and reports accuracy
    mean ± 95% CI on the ID and OOD meta-test splits; writes a log and a JSON (rank 0).

    Across processes the episodes are split over the ranks and their accuracies gathered,
    so the CI covers all ``--n_test_episodes``; with ``--n_mc_samples`` > 0 each rank draws
    posterior samples from its own generator."""
    savedir = Path(cfg.resolved_savedir)
    best, latest = savedir / checkpoint.BEST, savedir / checkpoint.LATEST
    path = best if best.is_file() else latest
    if not path.is_file():
        raise SystemExit(f"no checkpoint in {savedir}: run --mode meta_train with this "
                         "--savedir first")
    device = device_of(cfg, world)
    state = checkpoint.load(path, device)
    check_compatible(state["config"], cfg)
    learner = build_learner(cfg).to(device)
    learner.load_state_dict(state["learner"])
    learner.eval()

    stem = f"test_step{cfg.n_steps}_mc{cfg.n_mc_samples}"
    log = RunLog(savedir / f"{stem}.log" if world.is_main else os.devnull, mode="w",
                 echo=world.is_main)
    how = "best validation accuracy" if path == best else "latest; none was validated"
    log.line(f"Meta-test model at iteration {state['iteration']} ({path.name}: {how})")
    results = []
    for role, names in (("id", cfg.id_dataset), ("ood", cfg.ood_dataset)):
        for name, sampler in samplers_for(cfg, names, "test").items():
            rng = evaluation_rng(cfg.seed, 3, len(results))
            generator = torch_generator(cfg.seed + 1000 + len(results), world.rank)
            acc = episode_accuracies(
                learner, sampler, cfg.n_test_episodes, cfg.metabatch, rng, device,
                cfg.n_mc_samples, generator, cfg.task_batching,
                desc=f"meta-test {role}/{name}", progress=cfg.progress and world.is_main,
                world=world,
            )
            mean, ci = confidence_interval(acc)
            results.append({"role": role, "dataset": name, "accuracy": mean, "ci95": ci,
                            "n_episodes": len(acc)})
            log.line(f"{role}/{name} acc: {mean:.2f} +- {ci:.2f}")
    log.close()
    report = {"checkpoint": path.name, "iteration": state["iteration"],
              "n_steps": cfg.n_steps, "n_mc_samples": cfg.n_mc_samples, "results": results}
    if world.is_main:
        (savedir / f"{stem}.json").write_text(json.dumps(report, indent=2))
    return report
