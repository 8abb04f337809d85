"""Meta-training: the outer loop, validation, balancing tables and checkpoints.

Re-running the same command on the same ``--savedir`` continues from the last checkpoint
(``checkpoint.pt``: model, optimizer, iteration and every random state), and the resumed
run ends with exactly the parameters of an uninterrupted one. ``best.pt`` holds the model
with the best validation score (mean ID accuracy + mean OOD accuracy), which meta-test uses.

A resume honours a new ``--n_train_iters``, ``--meta_lr`` (set on the optimizer) and the
schedule flags, recording each change in the checkpoint, ``config.json`` and ``train.log``,
and refuses flags that change what is learned (:mod:`taml.episodic.resume`). The folder is checked
for writing before any work and locked while the run writes (:mod:`taml.run.folder`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from taml.episodic.balancing import BALANCING_FILE, balancing_record, plot_tendencies, table_lines
from taml.episodic.build import (
    RandomStreams,
    build_learner,
    note_precision,
    resolve_device,
    samplers_for,
    shard_count,
)
from taml.episodic.config import Config
from taml.episodic.evaluate import episode_accuracies, predictor_label
from taml.episodic.learners.meta_learner import kl_support_sizes
from taml.episodic.resume import (
    check_classes,
    check_resume,
    dataset_classes,
    initialised_with,
    upgrade_learner_state,
)
from taml.run import checkpoint, compat, distributed, previous
from taml.run.compat import IncompatibleRun
from taml.run.distributed import SINGLE, World
from taml.run.errors import TrainingDiverged
from taml.run.folder import (
    RunDirError,
    RunLock,
    check_writable,
    disk_full_message,
    write_json_atomic,
)
from taml.run.progress import bar as progress_bar
from taml.run.progress import set_enabled as set_progress
from taml.run.records import MetricsCSV, RunLog, Window, due, repair_config
from taml.run.seeds import Stream, numpy_stream, torch_stream
from taml.run.tensorboard import TensorBoard

GRAD_CLIP = 3.0  # element-wise, as the original
N_TABLE_TASKS = 10
N_PLOT_TASKS = 100
STATS = ("cross_entropy", "kl", "accuracy")
METRIC_COLUMNS = ("iteration", *STATS, "seconds_per_iter")
# what a run writes besides checkpoint.pt: a fresh start refuses a folder holding them
RECORDS = ("config.json", "train.log", "train_metrics.csv", "validation.json",
           checkpoint.BEST, BALANCING_FILE, "balancing_*.png", "test_step*", "tensorboard")




def _diverged(cfg, iteration: int, objective: float, latest: Path, last_saved: int) -> str:
    """The divergence message: a lowered --meta_lr is honoured on resume; --inner_lr is
    part of what was learned (refused on resume), so it needs a new run."""
    inner = "" if cfg.alpha_on else " or --inner_lr"
    if last_saved == 0:
        return (f"iteration {iteration}: the meta-objective is {objective}, and no checkpoint "
                f"was saved yet; rerun with a lower --meta_lr{inner} (it starts over)")
    advice = ("; a lower --inner_lr needs a new run (another --savedir)" if inner else "")
    return (f"iteration {iteration}: the meta-objective is {objective}. The last good "
            f"checkpoint ({latest.name}, iteration {last_saved}) is kept; rerun the same "
            f"command with a lower --meta_lr to resume from it at that rate{advice}")


def _validate(cfg, learner, id_val, ood_val, device, iteration, log, world) -> dict:
    """Validation accuracy per dataset and the score; with ``--n_val_mc_samples`` K > 0 the
    softmax averaged over K posterior samples from generators seeded by (seed, iteration,
    dataset, batch), apart from the training streams, else the posterior means."""
    learner.eval()
    predictor = predictor_label(learner.switches.any_balancing, cfg.n_val_mc_samples)
    result = {"iteration": iteration, "id": {}, "ood": {}, "predictor": predictor}
    datasets = [(role, name, sampler) for role, samplers in (("id", id_val), ("ood", ood_val))
                for name, sampler in samplers.items()]
    for position, (role, name, sampler) in enumerate(datasets):
        def batch_generator(index, position=position):
            return torch_stream(cfg.seed, Stream.VALIDATION_POSTERIOR, iteration, position,
                                index)

        acc = episode_accuracies(
            learner, sampler, cfg.n_val_episodes, cfg.metabatch,
            numpy_stream(cfg.seed, Stream.VALIDATION, iteration), device,
            n_mc_samples=cfg.n_val_mc_samples, task_batching=cfg.task_batching,
            desc=f"validate {role}/{name}", progress=cfg.progress and world.is_main,
            world=world, batch_generator=batch_generator if cfg.n_val_mc_samples else None,
        )
        result[role][name] = float(100 * acc.mean())
    learner.train()
    score = float(np.mean(list(result["id"].values())))
    if result["ood"]:
        score += float(np.mean(list(result["ood"].values())))
    result["score"] = score
    parts = [f"{role}/{n} acc {a:.2f}" for role in ("id", "ood") for n, a in result[role].items()]
    log.line(f"val    iter {iteration}: " + ", ".join(parts)
             + f" (score {score:.2f}, {predictor})")
    return result


def _print_balancing(cfg, learner, id_val, ood_val, device, iteration, log, savedir) -> None:
    """Logs the γ/ω tables of the first validation dataset of each role, plots their
    tendencies, and writes the values to the run folder's balancing.json."""
    pairs = [("ID", id_val)] + ([("OOD", ood_val)] if ood_val else [])
    sets = []
    for flag, samplers in pairs:
        name, sampler = next(iter(samplers.items()))
        tasks = numpy_stream(cfg.seed, Stream.TABLES, iteration)
        batch = sampler.sample(N_PLOT_TASKS, tasks).to(device)
        values = {k: v.cpu().numpy() for k, v in learner.balancing_means(batch).items()}
        counts = batch.class_counts.cpu().numpy()
        sets.append((flag, name, counts, values))
        plot_tendencies(savedir / f"balancing_{flag.lower()}.png",
                        f"{flag} {name}: {N_PLOT_TASKS} validation tasks, iteration {iteration}",
                        counts, values)
    record = balancing_record(iteration, sets, N_TABLE_TASKS)
    for line in table_lines(record):
        log.line(line)
    write_json_atomic(savedir / BALANCING_FILE, record)


def _state(cfg, learner, optimizer, streams, iteration, history, world, record,
           window: Window) -> dict:
    """The checkpoint; ``random`` holds every shard's streams, gathered from all ranks
    (a collective: every rank calls this, rank 0 writes the result). ``record``: the
    datasets' classes per split and the flags changed on resume (``changes``); ``window``:
    the iterations since the last log line, which a resumed run's next line summarises."""
    per_rank = distributed.gather_objects([s.state() for s in streams], world)
    return {"config": cfg.to_dict(), "learner": learner.state_dict(),
            "optimizer": optimizer.state_dict(), "iteration": iteration,
            "random": [state for states in per_rank for state in states],
            "validation": history, **record, "window": window.state()}


def meta_train(cfg: Config, world: World = SINGLE) -> dict:
    """Meta-trains (or resumes) and returns the final state's summary.

    Under torchrun (``world``) each rank computes its shards of every meta-batch and the
    meta-gradients are summed over ranks before the clip; see :mod:`taml.run.distributed`."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    shards = shard_count(cfg, world)
    cfg = replace(cfg, shards=shards)  # the saved config records how the run was split
    savedir = Path(cfg.resolved_savedir)
    if world.is_main:
        check_writable(savedir, "--savedir")  # before the data and the iterations
        # another run's records in a folder without a checkpoint: refused before any work
        previous.previous_records(savedir, RECORDS, cfg.to_dict(), cfg.force)
    device = resolve_device(cfg, world)
    id_train = samplers_for(cfg, cfg.id_dataset, "train")
    id_val = samplers_for(cfg, cfg.id_dataset, "valid")
    ood_val = samplers_for(cfg, cfg.ood_dataset, "valid")
    classes = dataset_classes(cfg)
    # one run per folder: a second one would interleave logs, CSV rows and checkpoints
    with RunLock(savedir) if world.is_main else contextlib.nullcontext():
        if world.is_main:  # --force, or the same command after an early failure
            stale = previous.previous_records(savedir, RECORDS, cfg.to_dict(), cfg.force)
            previous.remove_records(stale)
            if stale:
                print(f"note: deleted the previous records in {savedir} "
                      f"({', '.join(p.name for p in stale)}) to start afresh",
                      file=sys.stderr)
        try:
            return _train(cfg, world, savedir, device, id_train, id_val, ood_val, classes)
        except OSError as error:  # a full disk, or a folder gone read-only mid-run
            where = error.filename or savedir
            raise RunDirError(disk_full_message(error, where, "--savedir")) from None


@dataclass
class _Resumed:
    """Where a run starts: iteration ``start``, the validation history so far, the record
    the checkpoints carry (classes, honoured flag changes), the changes of this resume."""

    start: int = 1
    history: list = field(default_factory=list)
    record: dict = field(default_factory=dict)
    changes: list = field(default_factory=list)
    finished: dict | None = None  # the summary when there is nothing left to train
    initialised: dict = field(default_factory=dict)  # the saved run's initialisation flags
    window: dict | None = None  # the checkpoint's log window (None: saved before it was kept)


def _resume(cfg, world, savedir, device, learner, optimizer, streams, mine,
            classes) -> _Resumed:
    """Restores model, optimizer and streams from ``checkpoint.pt`` (rank 0 reads it: other
    nodes need no copy), after refusing flags and data that do not fit the run."""
    latest = savedir / checkpoint.LATEST
    state = None
    if world.is_main and latest.is_file():
        state = checkpoint.load(latest, device if world.size == 1 else "cpu",
                                family="episodic")
    state = distributed.broadcast_object(state, world)
    if state is None:
        return _Resumed(record={"classes": classes, "changes": []})
    changes = check_resume(state["config"], cfg, savedir)
    initialised = initialised_with(state["config"])
    check_classes(state.get("classes"), classes, ("train", "valid"), savedir)
    saved = state["random"]
    saved = [saved] if isinstance(saved, dict) else saved  # a one-stream checkpoint
    if len(saved) != cfg.shards:
        raise IncompatibleRun(
            f"{latest} was trained as {len(saved)} shard(s) per meta-batch and this run "
            f"draws {cfg.shards}; resume with torchrun --nproc_per_node {len(saved)}, or "
            f"with --shards {len(saved)}")
    if state["iteration"] >= cfg.n_train_iters:  # nothing to do: change no file
        if world.is_main:
            print(f"note: the run in {savedir} is finished (iteration {state['iteration']}, "
                  f"--n_train_iters {cfg.n_train_iters}): raise --n_train_iters to train it "
                  "further, or run --mode meta_test", file=sys.stderr)
        return _Resumed(finished={"iteration": state["iteration"],
                                  "validation": state["validation"],
                                  "savedir": str(savedir), "finished": True})
    learner_state, optimizer_state = upgrade_learner_state(state, learner)
    learner.load_state_dict(learner_state)
    optimizer.load_state_dict(optimizer_state)
    # the flag, not the saved rate: a lowered --meta_lr (the divergence advice) applies
    for group in optimizer.param_groups:
        group["lr"] = cfg.meta_lr
    for stream, shard in zip(streams, mine, strict=True):
        stream.restore(saved[shard])
    start = state["iteration"] + 1
    record = {"classes": classes,
              "changes": compat.recorded(state.get("changes", []), changes, "iteration", start)}
    return _Resumed(start, state["validation"], record, changes, initialised=initialised,
                    window=state.get("window"))


def _meta_step(cfg, learner, optimizer, streams, sampler, device, world):
    """One meta-iteration's gradients (clipped, summed over shards and ranks), its named
    statistics summed over the meta-batch's tasks (objective: the mean over the whole
    meta-batch; cross_entropy, kl, accuracy; non_finite: shards whose loss is not finite)
    and the last shard's balancing variables (for TensorBoard)."""
    params = list(learner.parameters())
    shard_tasks = cfg.metabatch // cfg.shards
    optimizer.zero_grad(set_to_none=True)
    # every shard drawn first (episode streams only, so nothing else moves): the padded KL
    # normaliser needs the whole meta-batch's largest support
    batches = [sampler.sample(shard_tasks, stream.episodes).to(device) for stream in streams]
    padded_size = None
    if cfg.kl_normaliser == "padded":  # the original pads the meta-batch as one
        padded_size = distributed.max_over_ranks(
            max(int(b.support_sizes.max()) for b in batches), world, device)
    zero = torch.zeros((), device=device)
    totals = dict.fromkeys(("objective", *STATS, "non_finite"), zero)
    shard_grads = []
    for stream, batch in zip(streams, batches, strict=True):
        kl_sizes = kl_support_sizes(batch, cfg.kl_normaliser, padded_size)
        # the objective is the mean over the whole meta-batch: each shard's mean counts by
        # its share of the tasks (x 1.0, exactly the single-stream loss, for one shard)
        share = shard_tasks / cfg.metabatch
        loss, per_task, outputs = learner.meta_backward(
            batch, stream.posterior, kl_sizes, share, task_batching=cfg.task_batching)
        shard = {"objective": loss * share, **{k: per_task[k].sum() for k in STATS},
                 "non_finite": (~torch.isfinite(loss)).float()}
        totals = {k: totals[k] + shard[k] for k in totals}
        shard_grads.append([p.grad for p in params])
        optimizer.zero_grad(set_to_none=True)
    # each shard's gradient apart, then their sum in shard order: the sum the all-reduce over
    # ranks forms, so one process with --shards K adds in the order of K processes (the
    # tasks of a shard are summed one by one; another order changes the rounding)
    for index, p in enumerate(params):
        grads = [grads[index] for grads in shard_grads if grads[index] is not None]
        p.grad = functools.reduce(torch.add, grads) if grads else None
    # one collective for the gradients, the statistics and the divergence flag, so that every
    # rank takes the same step, or stops at the same iteration
    stats = distributed.sum_step([p.grad for p in params if p.grad is not None], totals, world)
    for p in params:  # after the sum over ranks, as one process clips
        if p.grad is not None:
            p.grad.clamp_(-GRAD_CLIP, GRAD_CLIP)
    return stats, outputs.balancing


def _train(cfg, world, savedir, device, id_train, id_val, ood_val, classes) -> dict:
    learner = build_learner(cfg).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.meta_lr)
    mine = range(world.rank * cfg.shards // world.size,
                 (world.rank + 1) * cfg.shards // world.size)
    streams = [RandomStreams.from_seed(cfg.seed, shard) for shard in mine]
    run = _resume(cfg, world, savedir, device, learner, optimizer, streams, mine, classes)
    cfg = replace(cfg, **run.initialised)  # recorded as the run started (the model is loaded)
    if run.finished:
        return run.finished
    note_precision(cfg, device, world)
    latest = savedir / checkpoint.LATEST
    log = RunLog(savedir / "train.log" if world.is_main else os.devnull, echo=world.is_main)
    board = TensorBoard(savedir / "tensorboard" if cfg.tensorboard and world.is_main else None)
    if run.start > 1:
        log.line(f"Resuming from {latest} at iteration {run.start - 1}")
        for line in compat.change_lines(run.changes, "iteration", run.start, latest.name):
            log.line(line)
    else:
        log.line(json.dumps(cfg.to_dict()))
    if world.is_main and run.start > 1:  # a corrupt config.json rewritten, and said so
        repair_config(savedir, cfg.to_dict(), latest.name)
    if world.is_main and (run.start == 1 or run.changes):
        write_json_atomic(savedir / "config.json", cfg.to_dict())
    # identical by construction (same seed, same checkpoint); rank 0's values make it certain
    distributed.broadcast_tensors(list(learner.state_dict().values()), world)
    history, record = run.history, run.record
    best_score = max((h["score"] for h in history), default=-np.inf)
    last_saved = run.start - 1
    metrics = MetricsCSV(savedir / "train_metrics.csv", METRIC_COLUMNS, run.start - 1,
                         enabled=world.is_main)
    names = list(id_train)
    window = Window()
    window.restore(run.window)  # the iterations since the last log line before the resume
    bar = progress_bar(range(run.start, cfg.n_train_iters + 1), initial=run.start - 1,
                       total=cfg.n_train_iters, desc=f"meta-train {cfg.method}",
                       enabled=cfg.progress and world.is_main, unit="it")
    learner.train()
    for iteration in bar:
        # multi-dataset: each meta-batch comes from one dataset, in turn (as the original)
        sampler = id_train[names[iteration % len(names)]]
        step_start = time.perf_counter()
        stats, balancing = _meta_step(cfg, learner, optimizer, streams, sampler, device, world)
        if stats["non_finite"] > 0:
            metrics.close()
            raise TrainingDiverged(
                _diverged(cfg, iteration, stats["objective"], latest, last_saved))
        optimizer.step()
        window.add({k: stats[k] / cfg.metabatch for k in STATS},
                   time.perf_counter() - step_start)
        bar.set_postfix(loss=f"{stats['objective']:.3f}",
                        acc=f"{100 * window.values['accuracy'][-1]:.1f}")
        if iteration % cfg.log_freq == 0:
            means = {k: window.mean(k) for k in STATS}
            log.line(f"train  iter {iteration}: cross-entropy {means['cross_entropy']:.4f}, "
                     f"kl {means['kl']:.4f}, acc {100 * means['accuracy']:.2f} "
                     f"({window.seconds_per_step:.2f} s/iter)")
            metrics.row([iteration, *means.values(), window.seconds_per_step])
            board.train(iteration, means, window.seconds_per_step)
            board.balancing(iteration, balancing)
            window.reset()
        if iteration % cfg.val_freq == 0 and (id_val or ood_val):
            result = _validate(cfg, learner, id_val, ood_val, device, iteration, log, world)
            history.append(result)
            board.validation(result)
            if world.is_main:
                write_json_atomic(savedir / "validation.json", history)
            if result["score"] > best_score:
                best_score = result["score"]
                state = _state(cfg, learner, optimizer, streams, iteration, history, world, record,
                               window)
                if world.is_main:
                    checkpoint.save_atomic(state, savedir / checkpoint.BEST)
        if ((cfg.omega_on or cfg.gamma_on) and iteration % cfg.print_freq == 0 and id_val
                and world.is_main):
            _print_balancing(cfg, learner, id_val, ood_val, device, iteration, log, savedir)
        if due(iteration, cfg.save_freq, cfg.n_train_iters):
            state = _state(cfg, learner, optimizer, streams, iteration, history, world, record,
                               window)
            if world.is_main:
                checkpoint.save_atomic(state, latest)
            last_saved = iteration
    bar.close()
    for closing in (metrics, board, log):
        closing.close()
    return {"iteration": cfg.n_train_iters, "validation": history, "savedir": str(savedir)}
