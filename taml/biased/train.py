"""Online training on biased data: one model trained continuously, one method step per batch.

Each step: the lr of the schedule; a training batch (and a meta batch when the method needs
one); ``method.step`` (which does its lookahead and meta-update inside); backward of the
real loss; gradients averaged over torchrun ranks; a momentum-SGD step. Every --log_every
steps a CSV row, every --eval_every steps a test-set evaluation, every --save_every steps an
atomic checkpoint with every random state; re-running the same command resumes, and the
resumed run ends with exactly the parameters and method state of an uninterrupted one.
A non-finite loss or gradient stops the run with the last good checkpoint kept.

Data-parallel (torchrun): every rank draws the same global batch and keeps its shard
(batches.py); model gradients and the method's meta-gradients (through ``sync``) are
averaged. Batch norm normalises each rank's shard (as DistributedDataParallel without
SyncBatchNorm); the running statistics are averaged over ranks before every evaluation and
checkpoint, so all ranks hold rank 0's values there.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace

import numpy as np
import torch

from taml.biased import build as parts
from taml.biased.batches import BatchSource, Normalise, SplitTensors
from taml.biased.config import BiasedConfig
from taml.biased.evaluate import (
    as_plain,
    classification_metrics,
    predict,
    weights_document,
    write_test_report,
)
from taml.biased.records import RunError, RunRecords
from taml.run import distributed
from taml.run.distributed import SINGLE, World
from taml.run.errors import TrainingDiverged
from taml.run.folder import RunLock, check_writable, expand_savedir
from taml.run.progress import bar as progress_bar
from taml.run.progress import set_enabled as set_progress


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
    data = parts.load_data(cfg)  # bad recipes stop here, before any folder is made
    check_shards(cfg, world, len(data.meta.labels))
    lock = RunLock(savedir) if world.is_main else contextlib.nullcontext()
    with lock:
        return _train(cfg, world, data, savedir)


def _train(cfg: BiasedConfig, world: World, data, savedir) -> dict:
    device = parts.resolve_device(cfg, world)
    records = RunRecords(savedir, world.is_main)
    num_classes = data.num_classes
    counts = parts.class_counts(data.train.labels, num_classes)
    torch.manual_seed(cfg.seed)  # the network's initialisation
    model = parts.make_network(cfg.network, num_classes, data.in_channels,
                               data.image_size).to(device)
    method = parts.make_method(cfg, num_classes, counts)
    parts.move_method(method, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    train_set = SplitTensors.from_imageset(data.train, device)
    meta_set = SplitTensors.from_imageset(data.meta, device)
    test_set = SplitTensors.from_imageset(data.test, device)
    normalise = Normalise.of(train_set.images)
    source = BatchSource(train_set, meta_set, normalise, cfg.resolved_augment, cfg.seed,
                         world.rank, world.size)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    total, milestones = schedule(cfg, steps_per_epoch)
    # dropout and anything else on torch's global stream: a stream per rank
    torch.manual_seed(parts.seed_of(cfg.seed, 13, world.rank))
    noisy = bool((data.train.labels != data.train.true_labels).any())
    binary = cfg.bias == "binary"

    state = records.load_checkpoint("cpu") if world.is_main else None
    state = distributed.broadcast_object(state, world)
    evals, history, start = [], [], 1
    if state is not None:
        parts.check_compatible(state["config"], cfg, records.checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        source.restore(state["random"]["batches"])
        mine = state["random"]["global"]
        if len(mine) == world.size:  # else a new split: global streams start afresh
            torch.set_rng_state(mine[world.rank]["torch"])
            if "cuda" in mine[world.rank] and device.type == "cuda":
                torch.cuda.set_rng_state(mine[world.rank]["cuda"], device)
        evals, history, start = state["eval"], state["weights"], state["step"] + 1
        records.log.line(f"Resuming from {records.checkpoint_path} at step {state['step']}")
    else:
        records.write_json("config.json", cfg.to_dict())
        records.log.line(json.dumps(cfg.to_dict()))
        records.log.line(f"data: {len(train_set)} train ({counts} per class), "
                         f"{len(meta_set)} meta, {len(test_set)} test; "
                         f"{steps_per_epoch} steps per epoch, {total} steps")
    distributed.broadcast_tensors(list(model.state_dict().values()), world)
    records.open_metrics(start - 1)

    def sync(tensors: list[torch.Tensor]) -> None:
        average(tensors, world)

    def evaluate(step: int) -> dict:
        average_buffers(model, world)
        preds = predict(model, test_set.images, normalise)
        result, _ = classification_metrics(data.test.labels, preds, num_classes,
                                           np.asarray(counts), binary)
        entry = {"step": step, "accuracy": result["accuracy"],
                 "balanced_accuracy": result["balanced_accuracy"],
                 "tail_recall": result["tail_recall"]}
        records.log.line(f"eval   step {step}: accuracy {100 * entry['accuracy']:.2f}, "
                         f"balanced {100 * entry['balanced_accuracy']:.2f}, tail recall "
                         f"{100 * (entry['tail_recall'] or 0):.2f}")
        return entry

    def checkpoint_state(step: int) -> dict:
        average_buffers(model, world)
        per_rank = distributed.gather_objects(_random_state(device), world)
        return {"config": cfg.to_dict(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "method": method.state_dict(),
                "step": step, "random": {"batches": source.state(), "global": per_rank},
                "eval": evals, "weights": history}

    # window sums: loss x n, correct, n, weight on corrupted, weight, non-finite flag
    window = torch.zeros(6, dtype=torch.float64, device=device)
    window_start, window_steps, last_saved = time.perf_counter(), 0, start - 1
    bar = progress_bar(range(start, total + 1), initial=start - 1, total=total,
                       desc=f"train {cfg.method}", unit="step",
                       enabled=cfg.progress and world.is_main)
    model.train()
    for step in bar:
        lr = lr_at(cfg, milestones, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, indices = source.train_batch(cfg.batch_size)
        meta_x = meta_y = None
        if method.needs_meta_batch:
            meta_x, meta_y = source.meta_batch(cfg.meta_batch_size)
        optimizer.zero_grad(set_to_none=True)
        out = method.step(model, x, y, meta_x, meta_y, lr=lr, step_index=step, sync=sync)
        out.loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        corrupted = (train_set.labels[indices] != train_set.true_labels[indices]).double()
        weights = out.example_weights.detach().double()
        finite = torch.isfinite(out.loss.detach()) & torch.stack(
            [torch.isfinite(g).all() for g in grads]).all()
        stats = torch.stack([out.loss.detach().double() * len(y),
                             (out.logits.argmax(1) == y).double().sum(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=device),
                             (weights * corrupted).sum(), weights.sum(),
                             (~finite).double()])
        # one collective for the gradients and the statistics: every rank takes the same
        # step, or stops at the same step
        grad_stats = stats.to(grads[0].dtype) if grads else stats
        average(grads + [grad_stats], world)
        stats = grad_stats.double() * world.size
        if stats[5] > 0:
            records.close()
            raise TrainingDiverged(
                f"step {step}: the loss or a gradient is not finite (loss "
                f"{out.loss.item():.4g}). The last good checkpoint ({records.checkpoint_path},"
                f" step {last_saved}) is kept; lower --lr (or --meta_lr) and rerun the same "
                "command to resume from it")
        optimizer.step()
        window += stats
        window_steps += 1
        bar.set_postfix(loss=f"{stats[0].item() / stats[2].item():.3f}")

        if step % cfg.log_every == 0 or step == total:
            loss, acc = (window[0] / window[2]).item(), (window[1] / window[2]).item()
            seconds = (time.perf_counter() - window_start) / window_steps
            epoch = (step - 1) // steps_per_epoch + 1
            summary = method.summary()
            entry = {"step": step, "class_weights": as_plain(summary.get("class_weights"))}
            # the method's scalars (TML's / MW-Net's meta loss, L2RW's share of zero weights)
            entry.update({k: float(v) for k, v in summary.items()
                          if isinstance(v, int | float) and np.isfinite(v)})
            corrupted_text = ""
            if noisy and window[4] > 0:
                entry["weight_mass_on_corrupted"] = (window[3] / window[4]).item()
                corrupted_text = (f", weight on corrupted labels "
                                  f"{entry['weight_mass_on_corrupted']:.3f}")
            records.log.line(f"train  step {step} (epoch {epoch}): loss {loss:.4f}, acc "
                             f"{100 * acc:.2f}, lr {lr:.4g}{corrupted_text} "
                             f"({seconds:.3f} s/step)")
            records.metric_row(step, epoch, loss, acc, lr, seconds)
            history.append(entry)
            records.write_json("weights.json", weights_document(
                history, summary, data, counts))
            window.zero_()
            window_start, window_steps = time.perf_counter(), 0

        if step % cfg.eval_every == 0 or step == total:
            evals.append(evaluate(step))
            records.write_json("eval.json", evals)

        if step % cfg.save_every == 0 or step == total:
            records.save_checkpoint(checkpoint_state(step))
            last_saved = step
    bar.close()
    if start > total:
        records.log.line(f"{records.checkpoint_path} is at step {start - 1} of {total}: "
                         "nothing to train (raise --epochs or --steps to continue)")
    report = write_test_report(cfg, model, normalise, data, test_set, history,
                               method.summary(), records, start - 1 if start > total else total)
    records.close()
    return report
