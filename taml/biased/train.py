"""Online training on biased data: one model trained continuously, one method step per batch.

Each step: the lr of the schedule; a training batch (and a meta batch when the method needs
one); ``method.step`` (which does its lookahead and meta-update inside); backward of the
real loss; gradients averaged over torchrun ranks; a momentum-SGD step. Every --log_every
steps a CSV row, every --eval_every steps a test-set evaluation, every --save_every steps an
atomic checkpoint with every random state; re-running the same command resumes, and the
resumed run ends with exactly the parameters and method state of an uninterrupted one.
A non-finite loss or gradient stops the run with the last good checkpoint kept; so does a
training accuracy at chance for a whole epoch (:mod:`taml.run.chance`; --no_chance_check
lets such a run go on).

Data-parallel (torchrun): every rank draws the same global batch and keeps its shard
(batches.py); model gradients and the method's meta-gradients (through ``sync``) are
averaged. Batch norm normalises each rank's shard (as DistributedDataParallel without
SyncBatchNorm); the running statistics are averaged over ranks before every evaluation and
checkpoint, so all ranks hold rank 0's values there.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F

from taml.biased import build as parts
from taml.biased.api import ReweightingStep
from taml.biased.batches import BatchSource, Normalise, SplitTensors
from taml.biased.config import BiasedConfig
from taml.biased.evaluate import (
    as_plain,
    classification_metrics,
    predict,
    training_record,
    weights_document,
    write_test_report,
)
from taml.biased.records import RECORDS, RunError, RunRecords, check_batch_size, kept_checkpoint
from taml.run import compat, distributed, previous
from taml.run.chance import ChanceWatch, EpochAtChance, output_spread
from taml.run.distributed import SINGLE, World
from taml.run.errors import TrainingDiverged
from taml.run.folder import RunLock, check_writable, expand_savedir
from taml.run.progress import bar as progress_bar
from taml.run.progress import set_enabled as set_progress
from taml.run.records import Window, due, repair_config
from taml.run.seeds import Stream, mixed_seed63


def schedule(cfg: BiasedConfig, steps_per_epoch: int) -> tuple[int, list[int]]:
    """(total steps, milestone steps): --lr_schedule counts epochs, or steps with --steps."""
    if cfg.steps is not None:
        return cfg.steps, list(cfg.lr_schedule)
    return cfg.epochs * steps_per_epoch, [m * steps_per_epoch for m in cfg.lr_schedule]


def lr_at(cfg: BiasedConfig, milestones: list[int], step: int) -> float:
    """The lr of step ``step`` (1-based): x lr_factor after each milestone passed."""
    return cfg.lr * cfg.lr_factor ** sum(step > m for m in milestones)


def check_shards(cfg: BiasedConfig, world: World, n_meta: int) -> None:
    meta = min(cfg.meta_batch_size, n_meta)
    for name, size in (("--batch_size", cfg.batch_size), ("--meta_batch_size", meta)):
        if size % world.size:
            raise RunError(f"{name} {size} does not split evenly over {world.size} "
                             f"processes; use a multiple of {world.size}")


def average(tensors: list[torch.Tensor], world: World) -> None:
    """In place: the mean of ``tensors`` over ranks (each rank's loss is a mean over an
    equal shard, so this is the gradient of the global batch's mean)."""
    if world.size > 1 and tensors:
        distributed.sum_in_place(tensors, world)
        for t in tensors:
            t.div_(world.size)


def average_buffers(model: torch.nn.Module, world: World) -> None:
    floats = [b for b in model.buffers() if b.is_floating_point()]
    average(floats, world)


def _random_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def train(cfg: BiasedConfig, world: World = SINGLE) -> dict:
    """Trains (or resumes) and writes the test report; returns test.json's content."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    cfg = replace(cfg, network=cfg.resolved_network)
    savedir = expand_savedir(cfg.resolved_savedir, "--savedir")
    check_writable(savedir, "--savedir")
    if world.is_main:  # (other ranks would see rank 0's new train.log under torchrun)
        # another run's records in a folder without a checkpoint: refused before any work
        previous.previous_records(savedir, RECORDS, cfg.to_dict(), cfg.force)
    data = parts.load_data(cfg)  # bad recipes stop here, before any folder is made
    check_batch_size(cfg.batch_size, len(data.train.labels))
    check_shards(cfg, world, len(data.meta.labels))
    lock = RunLock(savedir) if world.is_main else contextlib.nullcontext()
    with lock:
        if world.is_main:
            replace_previous(savedir, cfg)
        return _train(cfg, world, data, savedir)


def replace_previous(savedir, cfg: BiasedConfig) -> None:
    """A fresh start deletes the records of the run before (--force, or the same command
    after a failure before its first checkpoint) and says so."""
    stale = previous.previous_records(savedir, RECORDS, cfg.to_dict(), cfg.force)
    previous.remove_records(stale)
    if stale:
        print(f"note: deleted the previous records in {savedir} "
              f"({', '.join(p.name for p in stale)}) to start afresh", file=sys.stderr)


@dataclass
class _Run:
    """What one biased-data run trains with, built from its config and data."""

    model: torch.nn.Module
    method: object
    optimizer: torch.optim.Optimizer
    stepper: ReweightingStep  # the API's step object: method, model and optimizer together
    source: BatchSource
    train_set: SplitTensors
    test_set: SplitTensors
    normalise: Normalise
    counts: tuple[int, ...]
    steps_per_epoch: int
    total: int
    milestones: list[int]
    folder: dict | None  # a folder:PATH dataset's file list (build.folder_listing)


def _build(cfg: BiasedConfig, world: World, data, device) -> _Run:
    counts = parts.class_counts(data.train.labels, data.num_classes)
    torch.manual_seed(cfg.seed)  # the network's initialisation
    model = parts.make_network(cfg.network, data.num_classes, data.in_channels,
                               data.image_size).to(device)
    method = parts.make_method(cfg, data.num_classes, counts)
    parts.move_method(method, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    train_set = SplitTensors.from_imageset(data.train, device)
    meta_set = SplitTensors.from_imageset(data.meta, device)
    normalise = Normalise.of(train_set.images)
    source = BatchSource(train_set, meta_set, normalise, cfg.resolved_augment, cfg.seed,
                         world.rank, world.size)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    total, milestones = schedule(cfg, steps_per_epoch)
    stepper = ReweightingStep(method, model, optimizer,
                              sync=lambda tensors: average(tensors, world))
    return _Run(model, method, optimizer, stepper, source, train_set,
                SplitTensors.from_imageset(data.test, device), normalise, counts,
                steps_per_epoch, total, milestones, parts.folder_listing(cfg))


def _resume(cfg, world, run: _Run, records: RunRecords, device,
            watch: ChanceWatch) -> tuple[int, dict]:
    """The first step to train and the histories and changes the checkpoint carries;
    restores model, optimizer, method, every random stream and the chance watch's tally
    from ``checkpoint.pt``."""
    state = records.load_checkpoint("cpu") if world.is_main else None
    state = distributed.broadcast_object(state, world)
    if state is None:
        return 1, {"eval": [], "weights": [], "changes": [], "window": None}
    changes = parts.check_resume(state["config"], cfg, records.savedir)
    parts.check_folder(state.get("folder"), run.folder, cfg, records.savedir)
    if state["step"] >= run.total:  # finished: tested already, nothing is written again
        report = records.finished_report(state["step"]) if world.is_main else None
        report = distributed.broadcast_object(report, world)
        if report is not None:
            return state["step"] + 1, {"finished": report}
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.method.load_state_dict(state["method"])
    run.source.restore(state["random"]["batches"])
    mine = state["random"]["global"]
    if len(mine) == world.size:  # else a new split: global streams start afresh
        torch.set_rng_state(mine[world.rank]["torch"])
        if "cuda" in mine[world.rank] and device.type == "cuda":
            torch.cuda.set_rng_state(mine[world.rank]["cuda"], device)
    start = state["step"] + 1
    if "chance" in state:
        watch.load_state_dict(state["chance"])
    else:  # a checkpoint from before the tally: its epoch is seen in part, not checked
        watch.start_at(start)
    run.stepper.steps_taken = state["step"]
    records.log.line(f"Resuming from {records.checkpoint_path} at step {state['step']}")
    for line in compat.change_lines(changes, "step", start, records.checkpoint_path.name):
        records.log.line(line)
    if world.is_main:  # a corrupt config.json is the checkpoint's again, said so
        repair_config(records.savedir, cfg.to_dict(), records.checkpoint_path.name)
    if changes:
        records.write_json("config.json", cfg.to_dict())
    return start, {"eval": state["eval"], "weights": state["weights"],
                   "changes": compat.recorded(state.get("changes", []), changes, "step", start),
                   "window": state.get("window")}  # None: saved before windows were kept


def _step(cfg, world, run: _Run, step: int) -> tuple[dict[str, float], object]:
    """One training step's first half (:meth:`ReweightingStep.compute`: the method's step
    and the real loss's backward; the loop then calls ``update``) and its named statistics,
    summed over the global batch: loss_sum (loss x examples), correct, examples,
    weight_on_corrupted and weight (the method's example weights), non_finite, and for the
    chance watch per-class correct predictions and examples (class_correct, class_seen,
    vectors), the plain cross-entropy of the real step's logits (ce_sum) and how much they
    vary over the batch (spread_sum: :func:`output_spread` x examples)."""
    x, y, indices = run.source.train_batch(cfg.batch_size)
    meta_x = meta_y = None
    if run.method.needs_meta_batch:
        meta_x, meta_y = run.source.meta_batch(cfg.meta_batch_size)
    if run.stepper.steps_taken != step - 1:
        raise RuntimeError(f"step {step}: the step object counts {run.stepper.steps_taken}")
    # lr: the loop has set it in every param group, where the step object reads it
    out = run.stepper.compute((x, y), (meta_x, meta_y) if meta_x is not None else None)
    grads = [p.grad for p in run.model.parameters() if p.grad is not None]
    train = run.train_set
    corrupted = (train.labels[indices] != train.true_labels[indices]).double()
    weights = out.example_weights.detach().double()
    finite = torch.isfinite(out.loss.detach()) & torch.stack(
        [torch.isfinite(g).all() for g in grads]).all()
    # the chance watch's tally, from the logits the step computed anyway (no extra forward)
    logits = out.logits.detach()
    hits = logits.argmax(1) == y
    classes = logits.shape[1]
    statistics = {"loss_sum": out.loss.detach().double() * len(y),
                  "correct": hits.double().sum(),
                  "examples": torch.tensor(float(len(y)), dtype=torch.float64,
                                           device=y.device),
                  "weight_on_corrupted": (weights * corrupted).sum(),
                  "weight": weights.sum(), "non_finite": (~finite).double(),
                  "class_correct": torch.bincount(y[hits], minlength=classes).double(),
                  "class_seen": torch.bincount(y, minlength=classes).double(),
                  "ce_sum": F.cross_entropy(logits.float(), y, reduction="sum").double(),
                  "spread_sum": output_spread(logits).double() * len(y)}
    # one collective for the gradients (averaged: each rank's loss is a mean over an equal
    # shard) and the statistics (summed): every rank takes the same step, or stops there
    stats = distributed.sum_step(grads, statistics, world)
    for g in grads if world.size > 1 else ():
        g.div_(world.size)
    return stats, out


def _train(cfg: BiasedConfig, world: World, data, savedir) -> dict:
    device = parts.resolve_device(cfg, world)
    run = _build(cfg, world, data, device)
    # opened (train.log created) once the run is built: a crash while building left an
    # empty train.log, another run's record to the same command started again
    records = RunRecords(savedir, world.is_main)
    # dropout and anything else on torch's global stream: a stream per rank
    torch.manual_seed(mixed_seed63(cfg.seed, Stream.GLOBAL, world.rank))
    watch = ChanceWatch(data.num_classes, run.steps_per_epoch)
    start, saved = _resume(cfg, world, run, records, device, watch)
    if "finished" in saved:
        records.say_finished(start - 1, "--steps" if cfg.steps is not None else "--epochs")
        records.close()
        return saved["finished"]
    if start == 1:
        records.write_json("config.json", cfg.to_dict())
        records.log.line(json.dumps(cfg.to_dict()))
        records.log.line(f"data: {len(run.train_set)} train ({run.counts} per class), "
                         f"{len(data.meta.labels)} meta, {len(run.test_set)} test; "
                         f"{run.steps_per_epoch} steps per epoch, {run.total} steps")
    window, last_saved, total = Window(), start - 1, run.total
    window.restore(saved["window"])  # the steps since the last log line before the resume
    # a closing line of a shorter run (its last step, off the --log_every schedule) summed
    # the window's steps: a longer run drops it, and its next line sums them again
    logged_until = start - 1 - window.steps
    evals = saved["eval"]
    history = [entry for entry in saved["weights"] if entry["step"] <= logged_until]
    distributed.broadcast_tensors(list(run.model.state_dict().values()), world)
    records.open_metrics(logged_until)
    noisy = bool((data.train.labels != data.train.true_labels).any())
    bar = progress_bar(range(start, total + 1), initial=start - 1, total=total,
                       desc=f"train {cfg.method}", unit="step",
                       enabled=cfg.progress and world.is_main)
    run.model.train()
    for step in bar:
        step_start = time.perf_counter()
        lr = lr_at(cfg, run.milestones, step)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        stats, out = _step(cfg, world, run, step)
        if stats["non_finite"] > 0:
            records.close()
            raise TrainingDiverged(
                f"step {step}: the loss or a gradient is not finite (loss "
                f"{out.loss.item():.4g}). {kept_checkpoint(records, last_saved)}; lower --lr "
                f"(or --meta_lr) and rerun the same command to "
                f"{'resume from it' if last_saved else 'start again'}")
        run.stepper.update()  # the optimizer's step
        at_chance = watch.add(step, stats.pop("class_correct"), stats.pop("class_seen"),
                              stats.pop("ce_sum"), stats.pop("spread_sum"))
        window.add(stats, time.perf_counter() - step_start)
        bar.set_postfix(loss=f"{stats['loss_sum'] / stats['examples']:.3f}")
        if due(step, cfg.log_every, total):
            entry, summary = _log_window(cfg, run, window, step, lr, noisy, records)
            history.append(entry)
            records.write_json("weights.json", weights_document(history, summary, data,
                                                                run.counts))
            if step % cfg.log_every == 0:  # a closing line keeps its window (above)
                window.reset()
        if at_chance is not None and cfg.chance_check:
            stop_at_chance(records, cfg.method, at_chance)
        if due(step, cfg.eval_every, total):
            evals.append(_evaluate(run, data, world, step, records, cfg.bias == "binary"))
            records.write_json("eval.json", evals)
        if due(step, cfg.save_every, total):
            average_buffers(run.model, world)
            per_rank = distributed.gather_objects(_random_state(device), world)
            records.save_checkpoint({
                "config": cfg.to_dict(), "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(), "method": run.method.state_dict(),
                "step": step, "random": {"batches": run.source.state(), "global": per_rank},
                "eval": evals, "weights": history, "changes": saved["changes"],
                "chance": watch.state_dict(), "window": window.state(), "folder": run.folder})
            last_saved = step
    bar.close()
    if start > total:
        records.log.line(f"{records.checkpoint_path} is at step {start - 1} of {total}: "
                         "nothing to train (raise --epochs or --steps to continue)")
    report = write_test_report(cfg, run.model, run.normalise, data, run.test_set, history,
                               run.method.summary(), records,
                               start - 1 if start > total else total,
                               training_record(cfg.to_dict(), total, saved["changes"]))
    records.close()
    return report


METHOD_NAMES = {"erm": "ERM", "class_balanced": "Class-balanced", "focal": "Focal",
                "tml": "TML", "l2rw": "L2RW", "mwnet": "MW-Net", "lnl": "LNL"}
# the likely cause of a run stuck at chance and the flag to change, per method
CHANCE_ADVICE = {
    "l2rw": "its renormalised weights give a few examples a large step; lower --lr (e.g. "
            "10x: 0.005 learns on the BN-free glyphs LeNet where 0.05 stays at chance)",
    "tml": "its class weights may have collapsed onto a few classes; lower --lr or "
           "--meta_lr (or, if it only learns slowly at its 1/C loss scale, use --tml_scale "
           "classes with --meta_lr 0.01)",
    "mwnet": "its weighting net V may have pushed the weights to extremes; lower --meta_lr "
             "(or --lr)",
    "lnl": "the step is too large for the classifier; lower --lr (or --lnl_lambda, "
           "--grl_factor)",
}
GENERIC_ADVICE = "the step is too large for this network; lower --lr"


def stop_at_chance(records: RunRecords, method: str, epoch: EpochAtChance) -> NoReturn:
    """Ends a run stuck at chance (both loops): the line in train.log, then the error."""
    message = chance_message(method, epoch, records.checkpoint_path.is_file())
    records.log.line(f"stopped: {message}")
    records.close()
    raise TrainingDiverged(message)


def chance_message(method: str, epoch: EpochAtChance, checkpointed: bool = True) -> str:
    """The one line of a run stopped at chance: what was seen, the cause, the flag. Before
    its first checkpoint the same --savedir takes the changed command (taml/run/previous.py:
    a run that saved no model is replaced by the next start)."""
    where = ("rerun in a new --savedir (the checkpoint holds the stuck model), or add "
             "--no_chance_check to the same command to train on" if checkpointed else
             "no checkpoint was saved yet: rerun with the changed flag (the same --savedir "
             "starts afresh), or add --no_chance_check to train on")
    return (f"{METHOD_NAMES.get(method, method)}'s training accuracy stayed at chance "
            f"({100 * epoch.accuracy:.1f}%, balanced {100 * epoch.balanced_accuracy:.1f}%, "
            f"{epoch.classes} classes; loss {epoch.loss:.3g}, not below the previous "
            f"epoch's {epoch.previous_loss:.3g}; outputs nearly the same for every image) for "
            f"epoch {epoch.epoch}: {CHANCE_ADVICE.get(method, GENERIC_ADVICE)}; {where}")


def _log_window(cfg, run: _Run, window: Window, step: int, lr: float, noisy: bool,
                records: RunRecords) -> tuple[dict, dict]:
    """The log line and CSV row of the steps since the last one; returns the history entry
    (the method's class weights and scalars, the weight on corrupted labels) and the
    method's summary."""
    loss, acc = window.ratio("loss_sum", "examples"), window.ratio("correct", "examples")
    epoch = (step - 1) // run.steps_per_epoch + 1
    summary = run.method.summary()
    entry = {"step": step, "class_weights": as_plain(summary.get("class_weights"))}
    # the method's scalars (TML's / MW-Net's meta loss, L2RW's share of zero weights)
    entry.update({k: float(v) for k, v in summary.items()
                  if isinstance(v, int | float) and np.isfinite(v)})
    corrupted_text = ""
    if noisy and window.sums["weight"] > 0:
        entry["weight_mass_on_corrupted"] = window.ratio("weight_on_corrupted", "weight")
        corrupted_text = (f", weight on corrupted labels "
                          f"{entry['weight_mass_on_corrupted']:.3f}")
    records.log.line(f"train  step {step} (epoch {epoch}): loss {loss:.4f}, acc "
                     f"{100 * acc:.2f}, lr {lr:.4g}{corrupted_text} "
                     f"({window.seconds_per_step:.3f} s/step)")
    records.metric_row(step, epoch, loss, acc, lr, window.seconds_per_step)
    return entry, summary


def _evaluate(run: _Run, data, world: World, step: int, records: RunRecords,
              binary: bool) -> dict:
    average_buffers(run.model, world)
    preds = predict(run.model, run.test_set.images, run.normalise)
    result, _ = classification_metrics(data.test.labels, preds, data.num_classes,
                                       np.asarray(run.counts), binary)
    entry = {"step": step, "accuracy": result["accuracy"],
             "balanced_accuracy": result["balanced_accuracy"],
             "tail_recall": result["tail_recall"]}
    records.log.line(f"eval   step {step}: accuracy {100 * entry['accuracy']:.2f}, "
                     f"balanced {100 * entry['balanced_accuracy']:.2f}, tail recall "
                     f"{100 * (entry['tail_recall'] or 0):.2f}")
    return entry
