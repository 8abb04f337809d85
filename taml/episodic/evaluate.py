"""Episode accuracies, confidence intervals, and meta-testing a trained run."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from taml.data.episodes import EpisodeSampler
from taml.episodic.build import (
    build_learner,
    note_precision,
    resolve_device,
    samplers_for,
)
from taml.episodic.config import Config
from taml.episodic.learners.meta_learner import MetaLearner, predictive_accuracy
from taml.episodic.resume import (
    changed_test_settings,
    check_classes,
    check_meta_test,
    dataset_classes,
    upgrade_learner_state,
)
from taml.run import checkpoint
from taml.run.distributed import SINGLE, World, gather_objects
from taml.run.folder import check_writable, write_json_atomic
from taml.run.progress import bar as progress_bar
from taml.run.progress import set_enabled as set_progress
from taml.run.records import RunLog, repair_config
from taml.run.seeds import META_TEST_POSTERIOR_OFFSET, Stream, numpy_stream, shard_generator


def confidence_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width, 1.96 * std / sqrt(n), of per-episode accuracies in percent
    (the original's formula: numpy's population std)."""
    acc = 100.0 * np.asarray(accuracies, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / math.sqrt(len(acc)))


def predictor_label(stochastic: bool, n_mc_samples: int) -> str:
    """How a learner predicts: ``deterministic`` without balancing variables, else with the
    posterior means or the softmax averaged over ``n_mc_samples`` posterior samples."""
    if not stochastic:
        return "deterministic"
    return f"{n_mc_samples} MC samples" if n_mc_samples else "posterior means"


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
    batch_generator: Callable[[int], torch.Generator] | None = None,
) -> np.ndarray:
    """Query accuracy of ``n_episodes`` episodes, drawn ``metabatch`` at a time.

    ``batch_generator(index)``, when given, replaces ``posterior_generator`` with a fresh
    generator for batch ``index``: its samples are then the same whichever rank adapts it.

    Across processes every rank draws every batch (sampling is cheap, and the episodes are
    then those of a single process) but adapts only to batches ``rank, rank + W, ..``; the
    accuracies are gathered in the single-process order, so every rank returns all of them.
    """
    accuracies = []
    bar = progress_bar(total=n_episodes, desc=desc, leave=False, enabled=progress, unit="ep")
    remaining, index = n_episodes, 0
    while remaining > 0:
        n_tasks = min(metabatch, remaining)
        batch = sampler.sample(n_tasks, rng)
        if index % world.size == world.rank:
            generator = batch_generator(index) if batch_generator else posterior_generator
            acc = predictive_accuracy(learner, batch.to(device), n_mc_samples, generator,
                                      task_batching)
            accuracies.append(acc.cpu().numpy())
        remaining -= n_tasks
        index += 1
        bar.update(n_tasks)
    bar.close()
    per_rank = gather_objects(accuracies, world)
    return np.concatenate([per_rank[i % world.size][i // world.size] for i in range(index)])


def _load_checkpoint(savedir: Path, device) -> tuple[Path, dict, str]:
    """The best-validated checkpoint, else the latest, and a line saying which was used
    and why: an unreadable ``best.pt`` falls back to ``checkpoint.pt`` rather than stop."""
    best, latest = savedir / checkpoint.BEST, savedir / checkpoint.LATEST
    if not best.is_file() and not latest.is_file():
        raise checkpoint.CheckpointError(f"no checkpoint in {savedir}: run --mode meta_train "
                                         "with this --savedir first")
    problem = None
    if best.is_file():
        try:
            state = checkpoint.load(best, device, family="episodic")
            checkpoint.check_finite(state["learner"], best)
            return best, state, "best validation score"
        except checkpoint.CheckpointError as error:
            if not latest.is_file():
                raise
            problem = f"{best.name} cannot be read ({error}), so the latest is used"
    state = checkpoint.load(latest, device, family="episodic")
    checkpoint.check_finite(state["learner"], latest)
    if problem is None:
        n_validated = len(state.get("validation", []))
        problem = (f"{best.name} is missing though {n_validated} validation(s) ran, so the "
                   "latest is used" if n_validated else "latest; none was validated yet")
    return latest, state, problem


def _training_record(savedir: Path, tested: Path, state: dict) -> dict:
    """How far the run had trained when it was tested, for the report: the latest
    checkpoint's iteration, config (its ``n_train_iters`` is the schedule) and the flags
    changed on resume. ``best.pt`` may be an early model of a finished run, so the latest
    checkpoint says whether training had finished; an unreadable one leaves the tested
    file's own record."""
    latest = savedir / checkpoint.LATEST
    if tested != latest and latest.is_file():
        try:
            state = checkpoint.load(latest, "cpu", family="episodic")
        except checkpoint.CheckpointError:
            pass
    # as JSON holds it (tuples as lists): the returned report equals the written file
    config = json.loads(json.dumps(state["config"]))
    return {"trained_iterations": state["iteration"], "trained_config": config,
            "changes": state.get("changes", [])}


def meta_test(cfg: Config, world: World = SINGLE) -> dict:
    """Restores the best-validated checkpoint (else the latest) and reports accuracy
    mean ± 95% CI on the ID and OOD meta-test splits; writes a log and a JSON (rank 0),
    both at the end and atomically, so an interrupted meta-test keeps the previous ones.

    Across processes the episodes are split over the ranks and their accuracies gathered,
    so the CI covers all ``--n_test_episodes``; with ``--n_mc_samples`` > 0 each rank draws
    posterior samples from its own generator."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    savedir = Path(cfg.resolved_savedir)
    if not savedir.is_dir():
        raise checkpoint.CheckpointError(f"no run in {savedir}: run --mode meta_train with "
                                         "this --savedir first")
    if world.is_main:
        check_writable(savedir, "--savedir")  # before the episodes, not at the end
    device = resolve_device(cfg, world)
    path, state, how = _load_checkpoint(savedir, device)
    check_meta_test(state["config"], cfg, savedir)
    note_precision(cfg, device, world)
    samplers = {role: samplers_for(cfg, names, "test")
                for role, names in (("id", cfg.id_dataset), ("ood", cfg.ood_dataset))}
    # the classes tested must be those held out when the run trained (folder: datasets)
    check_classes(state.get("classes"), dataset_classes(cfg), ("test",), savedir)
    learner = build_learner(cfg).to(device)
    learner.load_state_dict(upgrade_learner_state(state, learner)[0])
    learner.eval()

    # other test settings than the run's get their own files instead of overwriting
    settings = changed_test_settings(state["config"], cfg)
    stem = f"test_step{cfg.n_steps}_mc{cfg.n_mc_samples}"
    if settings:
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        stem += f"_{digest}"
    log = RunLog(savedir / f"{stem}.log" if world.is_main else os.devnull, mode="w",
                 echo=world.is_main)
    log.line(f"Meta-test model at iteration {state['iteration']} ({path.name}: {how})")
    if settings:
        log.line("settings other than meta-training's: " + json.dumps(settings))
    results = []
    for role in ("id", "ood"):
        for name, sampler in samplers[role].items():
            rng = numpy_stream(cfg.seed, Stream.META_TEST, len(results))
            generator = shard_generator(
                cfg.seed + META_TEST_POSTERIOR_OFFSET + len(results), world.rank)
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
    report = {"checkpoint": path.name, "iteration": state["iteration"],
              "n_steps": cfg.n_steps, "n_mc_samples": cfg.n_mc_samples, "results": results,
              **_training_record(savedir, path, state)}
    if world.is_main:  # the run would vanish from the report with its config.json corrupt
        repair_config(savedir, report["trained_config"], "the latest checkpoint")
    if settings:
        report["settings"] = settings
    if world.is_main:
        write_json_atomic(savedir / f"{stem}.json", report)
    log.close()
    return report
