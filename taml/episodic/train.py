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
import csv
import functools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from taml.episodic.balancing import gamma_table, omega_table, plot_tendencies
from taml.episodic.build import (
    RandomStreams,
    build_learner,
    evaluation_generator,
    evaluation_rng,
    resolve_device,
    samplers_for,
    shard_count,
)
from taml.episodic.config import Config
from taml.episodic.evaluate import episode_accuracies, predictor_label
from taml.episodic.learners.meta_learner import kl_support_sizes
from taml.episodic.resume import (
    IncompatibleRun,
    check_classes,
    check_resume,
    dataset_classes,
    keep_metrics_until,
)
from taml.run import checkpoint, distributed
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
from taml.run.records import RunLog
from taml.run.tensorboard import TensorBoard

GRAD_CLIP = 3.0  # element-wise, as the original
N_TABLE_TASKS = 10
N_PLOT_TASKS = 100
STATS = ("cross_entropy", "kl", "accuracy")




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


VALIDATION_POSTERIOR = 4  # evaluation_generator's purpose for validation's MC samples


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
            return evaluation_generator(cfg.seed, VALIDATION_POSTERIOR, iteration, position,
                                        index)

        acc = episode_accuracies(
            learner, sampler, cfg.n_val_episodes, cfg.metabatch,
            evaluation_rng(cfg.seed, 1, iteration), device,
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
    pairs = [("ID", id_val)] + ([("OOD", ood_val)] if ood_val else [])
    for flag, samplers in pairs:
        name, sampler = next(iter(samplers.items()))
        batch = sampler.sample(N_PLOT_TASKS, evaluation_rng(cfg.seed, 2, iteration)).to(device)
        values = {k: v.cpu().numpy() for k, v in learner.balancing_means(batch).items()}
        counts = batch.class_counts.cpu().numpy()
        log.line(f"\n{flag} ({name}, validation tasks, iteration {iteration})")
        if "gamma" in values:
            for line in gamma_table(counts[:N_TABLE_TASKS].sum(1),
                                    values["gamma"][:N_TABLE_TASKS]):
                log.line(line)
        if "omega" in values:
            for line in omega_table(counts[:N_TABLE_TASKS], values["omega"][:N_TABLE_TASKS]):
                log.line(line)
        plot_tendencies(savedir / f"balancing_{flag.lower()}.png",
                        f"{flag} {name}: {N_PLOT_TASKS} validation tasks, iteration {iteration}",
                        counts, values)


def _state(cfg, learner, optimizer, streams, iteration, history, world, record) -> dict:
    """The checkpoint; ``random`` holds every shard's streams, gathered from all ranks
    (a collective: every rank calls this, rank 0 writes the result). ``record``: the
    datasets' classes per split and the flags changed on resume (``changes``)."""
    per_rank = distributed.gather_objects([s.state() for s in streams], world)
    return {"config": cfg.to_dict(), "learner": learner.state_dict(),
            "optimizer": optimizer.state_dict(), "iteration": iteration,
            "random": [state for states in per_rank for state in states],
            "validation": history, **record}


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
    device = resolve_device(cfg, world)
    id_train = samplers_for(cfg, cfg.id_dataset, "train")
    id_val = samplers_for(cfg, cfg.id_dataset, "valid")
    ood_val = samplers_for(cfg, cfg.ood_dataset, "valid")
    classes = dataset_classes(cfg)
    # one run per folder: a second one would interleave logs, CSV rows and checkpoints
    with RunLock(savedir) if world.is_main else contextlib.nullcontext():
        try:
            return _train(cfg, world, savedir, device, id_train, id_val, ood_val, classes)
        except OSError as error:  # a full disk, or a folder gone read-only mid-run
            where = error.filename or savedir
            raise RunDirError(disk_full_message(error, where, "--savedir")) from None


def _train(cfg, world, savedir, device, id_train, id_val, ood_val, classes) -> dict:
    shards = cfg.shards
    learner = build_learner(cfg).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.meta_lr)
    mine = range(world.rank * shards // world.size, (world.rank + 1) * shards // world.size)
    streams = [RandomStreams.from_seed(cfg.seed, shard) for shard in mine]
    history: list[dict] = []
    record = {"classes": classes, "changes": []}
    start = 1
    latest = savedir / checkpoint.LATEST
    state = None
    if world.is_main and latest.is_file():  # rank 0 reads it: other nodes need no copy
        state = checkpoint.load(latest, device if world.size == 1 else "cpu")
    state = distributed.broadcast_object(state, world)
    changes = []
    if state is not None:
        changes = check_resume(state["config"], cfg, savedir)
        check_classes(state.get("classes"), classes, ("train", "valid"), savedir)
        saved = state["random"]
        saved = [saved] if isinstance(saved, dict) else saved  # a one-stream checkpoint
        if len(saved) != shards:
            raise IncompatibleRun(
                f"{latest} was trained as {len(saved)} shard(s) per meta-batch and this run "
                f"draws {shards}; resume with torchrun --nproc_per_node {len(saved)}, or "
                f"with --shards {len(saved)}")
        if state["iteration"] >= cfg.n_train_iters:  # nothing to do: change no file
            if world.is_main:
                print(f"note: the run in {savedir} is finished (iteration "
                      f"{state['iteration']}, --n_train_iters {cfg.n_train_iters}): raise "
                      "--n_train_iters to train it further, or run --mode meta_test",
                      file=sys.stderr)
            return {"iteration": state["iteration"], "validation": state["validation"],
                    "savedir": str(savedir), "finished": True}
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        # the flag, not the saved rate: a lowered --meta_lr (the divergence advice) applies
        for group in optimizer.param_groups:
            group["lr"] = cfg.meta_lr
        for stream, shard in zip(streams, mine, strict=True):
            stream.restore(saved[shard])
        history = state["validation"]
        start = state["iteration"] + 1
        record["changes"] = state.get("changes", []) + [
            {"iteration": start, "flag": f"--{name}", "old": old, "new": new}
            for name, old, new in changes]
    log = RunLog(savedir / "train.log" if world.is_main else os.devnull, echo=world.is_main)
    board = TensorBoard(savedir / "tensorboard" if cfg.tensorboard and world.is_main else None)
    if state is not None:
        log.line(f"Resuming from {latest} at iteration {state['iteration']}")
        for name, old, new in changes:
            log.line(f"  --{name} {old} -> {new} from iteration {start} (recorded in "
                     f"{latest.name} and config.json)")
    else:
        log.line(json.dumps(cfg.to_dict()))
    if world.is_main and (state is None or changes):
        write_json_atomic(savedir / "config.json", cfg.to_dict())
    # identical by construction (same seed, same checkpoint); rank 0's values make it certain
    distributed.broadcast_tensors(list(learner.state_dict().values()), world)
    best_score = max((h["score"] for h in history), default=-np.inf)
    last_saved = start - 1

    metrics_path = savedir / "train_metrics.csv"
    new_csv = not metrics_path.is_file() or start == 1
    if world.is_main and not new_csv:
        keep_metrics_until(metrics_path, start - 1)
    metrics_file = open(metrics_path if world.is_main else os.devnull,
                        "w" if new_csv else "a", newline="")
    metrics = csv.writer(metrics_file)
    if new_csv:
        metrics.writerow(["iteration", "cross_entropy", "kl", "accuracy", "seconds_per_iter"])
    names = list(id_train)
    shard_tasks = cfg.metabatch // shards
    window = {key: [] for key in STATS}
    busy = 0.0  # seconds spent in meta-iterations since the last log line (no validation)
    bar = progress_bar(range(start, cfg.n_train_iters + 1), initial=start - 1,
                       total=cfg.n_train_iters, desc=f"meta-train {cfg.method}",
                       enabled=cfg.progress and world.is_main, unit="it")
    params = list(learner.parameters())
    learner.train()
    for iteration in bar:
        # multi-dataset: each meta-batch comes from one dataset, in turn (as the original)
        sampler = id_train[names[iteration % len(names)]]
        step_start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        # sums over this rank's tasks: objective, cross-entropy, kl, accuracy; bad shards
        totals = torch.zeros(len(STATS) + 2, device=device)
        # every shard drawn first (episode streams only, so nothing else moves): the
        # padded KL normaliser needs the whole meta-batch's largest support
        batches = [sampler.sample(shard_tasks, stream.episodes).to(device)
                   for stream in streams]
        padded_size = None
        if cfg.kl_normaliser == "padded":  # the original pads the meta-batch as one
            padded_size = distributed.max_over_ranks(
                max(int(b.support_sizes.max()) for b in batches), world, device)
        shard_grads = []
        for stream, batch in zip(streams, batches, strict=True):
            kl_sizes = kl_support_sizes(batch, cfg.kl_normaliser, padded_size)
            # the objective is the mean over the whole meta-batch: each shard's mean counts
            # by its share of the tasks (x 1.0, exactly the single-stream loss, for one shard)
            share = shard_tasks / cfg.metabatch
            loss, per_task, outputs = learner.meta_backward(
                batch, stream.posterior, kl_sizes, share, task_batching=cfg.task_batching)
            totals += torch.stack([loss * share, *(per_task[k].sum() for k in STATS),
                                   (~torch.isfinite(loss)).to(totals.dtype)])
            shard_grads.append([p.grad for p in params])
            optimizer.zero_grad(set_to_none=True)
        # each shard's gradient apart, then their sum in shard order: the sum the all-reduce
        # over ranks forms, so one process with --shards K adds in the order of K processes
        # (the tasks of a shard are summed one by one; another order changes the rounding)
        for index, p in enumerate(params):
            grads = [grads[index] for grads in shard_grads if grads[index] is not None]
            p.grad = functools.reduce(torch.add, grads) if grads else None
        # one collective for the gradients, the statistics and the divergence flag, so that
        # every rank takes the same step, or stops at the same iteration
        distributed.sum_in_place(
            [p.grad for p in learner.parameters() if p.grad is not None] + [totals], world)
        objective = totals[0].item()
        if totals[-1].item() > 0:
            metrics_file.close()
            raise TrainingDiverged(_diverged(cfg, iteration, objective, latest, last_saved))
        for p in learner.parameters():  # after the sum over ranks, as one process clips
            if p.grad is not None:
                p.grad.clamp_(-GRAD_CLIP, GRAD_CLIP)
        optimizer.step()
        busy += time.perf_counter() - step_start

        for key, total in zip(STATS, totals[1:-1].tolist(), strict=True):
            window[key].append(total / cfg.metabatch)
        bar.set_postfix(loss=f"{objective:.3f}", acc=f"{100 * window['accuracy'][-1]:.1f}")

        if iteration % cfg.log_freq == 0:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            seconds = busy / len(window["accuracy"])
            log.line(f"train  iter {iteration}: cross-entropy {means['cross_entropy']:.4f}, "
                     f"kl {means['kl']:.4f}, acc {100 * means['accuracy']:.2f} "
                     f"({seconds:.2f} s/iter)")
            metrics.writerow([iteration, means["cross_entropy"], means["kl"],
                              means["accuracy"], seconds])
            metrics_file.flush()
            board.train(iteration, means, seconds)
            board.balancing(iteration, outputs.balancing)
            window = {k: [] for k in window}
            busy = 0.0

        if iteration % cfg.val_freq == 0 and (id_val or ood_val):
            result = _validate(cfg, learner, id_val, ood_val, device, iteration, log, world)
            history.append(result)
            board.validation(result)
            if world.is_main:
                write_json_atomic(savedir / "validation.json", history)
            if result["score"] > best_score:
                best_score = result["score"]
                state = _state(cfg, learner, optimizer, streams, iteration, history, world, record)
                if world.is_main:
                    checkpoint.save_atomic(state, savedir / checkpoint.BEST)

        if ((cfg.omega_on or cfg.gamma_on) and iteration % cfg.print_freq == 0 and id_val
                and world.is_main):
            _print_balancing(cfg, learner, id_val, ood_val, device, iteration, log, savedir)

        if iteration % cfg.save_freq == 0 or iteration == cfg.n_train_iters:
            state = _state(cfg, learner, optimizer, streams, iteration, history, world, record)
            if world.is_main:
                checkpoint.save_atomic(state, latest)
            last_saved = iteration
    bar.close()
    metrics_file.close()
    board.close()
    log.close()
    return {"iteration": cfg.n_train_iters, "validation": history, "savedir": str(savedir)}
