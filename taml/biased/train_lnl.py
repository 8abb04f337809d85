"""``--method lnl``: Learning Not to Learn and the two baselines of its table, on coloured
data (:mod:`taml.data.colored`: ``--dataset mnist`` is Colored MNIST, ``digits`` the same
recipe on the UCI digits bundled with scikit-learn, ``glyphs`` the embedded glyphs,
``folder:PATH`` a user's dark-on-light images), with ``--color_var`` sigma^2.

Three variants, chosen by flags (:func:`variant_of`):

- ``lnl``: ``--pretrain_epochs P`` of f, g (h trained on detached features), then
  ``--epochs E`` of the two-phase LNL step (:mod:`taml.biased.methods.lnl`), in one command. The
  unlearning phase restarts the schedule at ``--lr`` x ``--lr_factor`` (the authors: 0.01
  for the baseline they start from, 0.001 for unlearning) with fresh optimisers;
  ``--lr_schedule`` milestones count epochs from each phase's start.
- ``baseline``: ``--lnl_lambda 0 --grl_factor 0``: plain f, g for P + E epochs. With the same
  seed its f, g follow exactly LNL's pre-training.
- ``gray``: ``--gray``: plain f, g trained and tested on the grayscale copies.

Records as the other biased-data learners (:mod:`taml.biased.records`): config.json,
train.log, train_metrics.csv, eval.json, checkpoint.pt (model, optimisers, phase, step, batch
order and torch's random state: re-running the command resumes exactly), and at the end
test.json (accuracy on the variant's test set: colour-shuffled, or gray for ``gray``; both
``colour_shuffled_accuracy`` and ``gray_accuracy``; ``probe_accuracy``, the colour left in
f) and confusion.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from taml.biased import build as parts
from taml.biased.batches import IndexStream
from taml.biased.config import BiasedConfig
from taml.biased.evaluate import (
    classification_metrics,
    planned_steps,
    plot_confusion,
    predict,
    training_record,
)
from taml.biased.methods.lnl import PROBE_MIN_IMAGES, LNLNet, LNLTrainer, colour_probe
from taml.biased.records import RECORDS, RunRecords, check_batch_size, kept_checkpoint
from taml.biased.train import replace_previous, stop_at_chance
from taml.run import checkpoint, compat, previous
from taml.run.chance import ChanceWatch, output_spread
from taml.run.distributed import SINGLE
from taml.run.errors import TrainingDiverged
from taml.run.folder import RunDirError, RunLock, check_writable, expand_savedir
from taml.run.progress import bar as progress_bar
from taml.run.progress import set_enabled as set_progress
from taml.run.records import Window, due, repair_config
from taml.run.seeds import Stream, numpy_stream

PROBE_STEPS = 300
# the fields a checkpoint must share with the command that resumes or tests it
DEFINING = ("method", "dataset", "color_var", "image_size", "seed", "batch_size", "gray",
            "lnl_lambda", "grl_factor", "pretrain_epochs")


def variant_of(cfg: BiasedConfig) -> str:
    if cfg.gray:
        return "gray"
    return "baseline" if cfg.lnl_lambda == 0 and cfg.grl_factor == 0 else "lnl"


@dataclass(frozen=True)
class LNLData:
    """Images uint8 ``[N, 3, H, W]`` on the device; ``test`` is colour-shuffled."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_gray: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _tensor(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(
        device)


def load_lnl_data(cfg: BiasedConfig, device, train_per_class: int | None = None) -> LNLData:
    """The coloured (or, ``--gray``, grayscale) data. ``train_per_class`` keeps the first
    images of each class (tests and the demo use it to stay small)."""
    from taml.data.colored import build_colored

    data = build_colored(cfg.dataset, cfg.color_var, cfg.seed, cfg.data_root,
                         image_size=cfg.image_size)
    train = data.train_gray if cfg.gray else data.train
    keep = np.arange(len(train.labels))
    if train_per_class is not None:
        offsets = train.class_offsets
        keep = np.concatenate([np.arange(a, min(b, a + train_per_class))
                               for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
    if not np.array_equal(data.test.labels, data.test_gray.labels):
        raise RuntimeError("colour and gray test sets disagree")  # both sorted by label
    return LNLData(_tensor(train.images[keep], device),
                   torch.as_tensor(train.labels[keep], device=device),
                   _tensor(data.test.images, device), _tensor(data.test_gray.images, device),
                   torch.as_tensor(data.test.labels, device=device), train.class_names)


def check_test_size(cfg: BiasedConfig, data: LNLData) -> None:
    """Refuses a test set too small for the colour probe, which test.json reports (a folder
    of a few images per class: 20% of each class is tested)."""
    if len(data.test_labels) < PROBE_MIN_IMAGES:
        raise RunDirError(
            f"--dataset {cfg.dataset} has {len(data.test_labels)} test images and the colour "
            f"probe of the final test needs at least {PROBE_MIN_IMAGES}: add images to its "
            "class folders (a fifth of each class is tested)")


def _scaled(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0  # LNL's input batch norm standardises from here


def build_model(cfg: BiasedConfig, num_classes: int, device) -> LNLNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the initialisation; global stream left as it was
        return LNLNet(num_classes).to(device)


# a resume refuses what changes what is learned and honours (and records) the length of
# training, the lr (set from the flags every step) and the logging schedule
RESUME_REFUSED = DEFINING + ("lr_schedule", "lr_factor", "momentum", "weight_decay")
RESUME_HONOURED = ("epochs", "lr", "log_every", "eval_every", "save_every", "chance_check")


def train(cfg: BiasedConfig, *, train_per_class: int | None = None,
          probe_steps: int = PROBE_STEPS) -> dict:
    """Trains (or resumes) the run in --savedir, then tests it; returns test.json's content.
    ``train_per_class`` and ``probe_steps`` exist to keep tests and the quick demo small."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    if cfg.steps is not None:
        raise RunDirError("--method lnl counts --epochs and --pretrain_epochs; leave --steps out")
    savedir = expand_savedir(cfg.resolved_savedir, "--savedir")
    check_writable(savedir, "--savedir")
    # another run's records in a folder without a checkpoint: refused before any work
    previous.previous_records(savedir, RECORDS, cfg.to_dict(), cfg.force)
    device = parts.resolve_device(cfg, SINGLE)
    data = load_lnl_data(cfg, device, train_per_class)  # bad recipes stop before any file
    check_batch_size(cfg.batch_size, len(data.train_labels))
    check_test_size(cfg, data)  # the final test's probe, before any step is trained
    with RunLock(savedir):
        replace_previous(savedir, cfg)
        return _train(cfg, data, RunRecords(savedir), device, probe_steps)


def _lr(base: float, cfg: BiasedConfig, epoch_in_phase: int) -> float:
    """``base`` x lr_factor per --lr_schedule milestone passed (epochs from the phase start)."""
    return base * cfg.lr_factor ** sum(epoch_in_phase >= m for m in cfg.lr_schedule)


def _train(cfg: BiasedConfig, data: LNLData, records: RunRecords, device,
           probe_steps: int) -> dict:
    variant = variant_of(cfg)
    steps_per_epoch = max(1, len(data.train_labels) // cfg.batch_size)
    pre_steps = cfg.pretrain_epochs * steps_per_epoch if variant == "lnl" else 0
    total = (cfg.pretrain_epochs + cfg.epochs) * steps_per_epoch
    unlearn_lr = cfg.lr * cfg.lr_factor if pre_steps else cfg.lr

    model = build_model(cfg, data.num_classes, device)
    stream = IndexStream(len(data.train_labels), numpy_stream(cfg.seed, Stream.LNL_ORDER))

    def make_trainer(step: int) -> LNLTrainer:
        lr = cfg.lr if step <= pre_steps else unlearn_lr
        return LNLTrainer(model, lr, cfg.momentum, cfg.weight_decay, cfg.lnl_lambda,
                          cfg.grl_factor)

    watch = ChanceWatch(data.num_classes, steps_per_epoch)  # the main classifier's
    folder = parts.folder_listing(cfg)  # a folder:PATH dataset's file list, recorded
    trainer, start, evals, changes, window = _start(cfg, records, model, make_trainer, stream,
                                                    total, watch)
    if trainer is None:
        records.say_finished(start - 1, "--epochs")
        report = records.finished_report(start - 1)
        records.close()
        return report
    if start == 1:
        records.log.line(f"lnl variant {variant}: {len(data.train_labels)} train, "
                         f"{len(data.test_labels)} test images; {steps_per_epoch} steps per "
                         f"epoch, {pre_steps} pre-training and {total - pre_steps} more steps")
    # a closing line of a shorter run (its last step, off the --log_every schedule) summed
    # the kept window's steps: a longer run drops it, and its next line sums them again
    records.open_metrics(start - 1 - window.steps)
    last_saved = start - 1
    bar = progress_bar(range(start, total + 1), initial=start - 1, total=total,
                       desc=f"train lnl ({variant})", unit="step", enabled=cfg.progress)
    model.train()
    for step in bar:
        step_start = time.perf_counter()
        if step == pre_steps + 1 and pre_steps:
            trainer = make_trainer(step)
            records.log.line(f"step {step}: pre-training done, unlearning from here")
        unlearning = step > pre_steps
        epoch_in_phase = (step - 1 - (pre_steps if unlearning else 0)) // steps_per_epoch
        lr = _lr(unlearn_lr if unlearning else cfg.lr, cfg, epoch_in_phase)
        trainer.set_lr(lr)
        index = torch.as_tensor(stream.take(cfg.batch_size), device=device)
        x, y = data.train[index], data.train_labels[index]
        if variant != "lnl":
            out = trainer.plain_step(x, y)
        else:
            out = trainer.unlearn_step(x, y) if unlearning else trainer.pretrain_step(x, y)
        _check_finite(out, step, records, last_saved)
        seen = torch.bincount(y, minlength=data.num_classes)
        hits = torch.bincount(y[out["logits"].argmax(1) == y], minlength=data.num_classes)
        at_chance = watch.add(step, hits.tolist(), seen.tolist(), out["loss"] * len(y),
                              float(output_spread(out["logits"])) * len(y))
        # named sums over the batch: loss x examples, correct, examples, colour loss x examples
        window.add({"loss_sum": out["loss"] * len(y), "correct": out["correct"],
                    "examples": len(y), "colour_sum": out.get("colour_loss", 0.0) * len(y)},
                   time.perf_counter() - step_start)
        bar.set_postfix(loss=f"{out['loss']:.3f}")
        if due(step, cfg.log_every, total):
            _log_window(records, window, variant, step, (step - 1) // steps_per_epoch + 1, lr)
            if step % cfg.log_every == 0:  # a closing line keeps its window (above)
                window.reset()
        if at_chance is not None and cfg.chance_check:
            stop_at_chance(records, "lnl", at_chance)
        if due(step, cfg.eval_every, total):
            evals.append(_evaluate(model, data, variant, step, records))
            records.write_json("eval.json", evals)
        if due(step, cfg.save_every, total):
            records.save_checkpoint({
                "config": cfg.to_dict(), "model": model.state_dict(),
                "trainer": trainer.state_dict(), "step": step, "eval": evals,
                "random": {"batches": stream.state(), "torch": torch.get_rng_state()},
                "changes": changes, "chance": watch.state_dict(), "window": window.state(),
                "folder": folder})
            last_saved = step
    bar.close()
    if start > total:
        records.log.line(f"{records.checkpoint_path} is at step {start - 1} of {total}: "
                         "nothing to train (raise --epochs to continue)")
    report = write_report(cfg, model, data, records, start - 1 if start > total else total,
                          training_record(cfg.to_dict(), total, changes), probe_steps)
    records.close()
    return report


def _start(cfg: BiasedConfig, records: RunRecords, model: LNLNet, make_trainer,
           stream: IndexStream, total: int,
           watch: ChanceWatch) -> tuple[LNLTrainer | None, int, list, list, Window]:
    """Resumes from the run folder's checkpoint (refusing the flags that change what is
    learned, recording the ones honoured; the chance watch's tally restored), or records a
    fresh run's config: (trainer, first step, evaluations so far, recorded flag changes, the
    log window of the steps since the last log line); trainer None: the run of ``total``
    steps is finished and tested."""
    state = records.load_checkpoint("cpu")
    window = Window()
    if state is None:
        records.write_json("config.json", cfg.to_dict())
        records.log.line(json.dumps(cfg.to_dict()))
        return make_trainer(1), 1, [], [], window
    honoured = compat.check_resume(state["config"], cfg.to_dict(), records.savedir,
                                   refused=RESUME_REFUSED, honoured=RESUME_HONOURED)
    parts.check_folder(state.get("folder"), parts.folder_listing(cfg), cfg, records.savedir)
    if state["step"] >= total and records.finished_report(state["step"]) is not None:
        return None, state["step"] + 1, [], [], window  # finished and tested: change nothing
    model.load_state_dict(state["model"])
    start = state["step"] + 1
    trainer = make_trainer(state["step"])  # the phase that saved it
    trainer.load_state_dict(state["trainer"])
    stream.restore(state["random"]["batches"])
    torch.set_rng_state(state["random"]["torch"])
    if "chance" in state:
        watch.load_state_dict(state["chance"])
    else:  # a checkpoint from before the tally: its epoch is seen in part, not checked
        watch.start_at(start)
    changes = compat.recorded(state.get("changes", []), honoured, "step", start)
    records.log.line(f"Resuming from {records.checkpoint_path} at step {state['step']}")
    for line in compat.change_lines(honoured, "step", start, records.checkpoint_path.name):
        records.log.line(line)
    # a corrupt config.json is the checkpoint's again, said so
    repair_config(records.savedir, cfg.to_dict(), records.checkpoint_path.name)
    if honoured:
        records.write_json("config.json", cfg.to_dict())
    window.restore(state.get("window"))  # None: saved before windows were kept
    return trainer, start, state["eval"], changes, window


def _check_finite(out: dict, step: int, records: RunRecords, last_saved: int) -> None:
    if not np.isfinite(out["loss"]) or not np.isfinite(out.get("colour_loss", 0.0)):
        records.close()
        raise TrainingDiverged(
            f"step {step}: the loss is not finite. {kept_checkpoint(records, last_saved)}; "
            "lower --lr, --lnl_lambda or --grl_factor and rerun the same command to "
            f"{'resume from it' if last_saved else 'start again'}")


def _log_window(records: RunRecords, window: Window, variant: str, step: int, epoch: int,
                lr: float) -> None:
    loss, acc = window.ratio("loss_sum", "examples"), window.ratio("correct", "examples")
    colour = (f", colour loss {window.ratio('colour_sum', 'examples'):.4f}"
              if variant == "lnl" else "")
    records.log.line(f"train  step {step} (epoch {epoch}): loss {loss:.4f}, acc "
                     f"{100 * acc:.2f}{colour}, lr {lr:.4g} "
                     f"({window.seconds_per_step:.3f} s/step)")
    records.metric_row(step, epoch, loss, acc, lr, window.seconds_per_step)


def _evaluate(model: LNLNet, data: LNLData, variant: str, step: int,
              records: RunRecords) -> dict:
    test_images = data.test_gray if variant == "gray" else data.test
    preds = predict(model, test_images, _scaled)
    result, _ = classification_metrics(data.test_labels.cpu().numpy(), preds,
                                       data.num_classes, np.ones(data.num_classes), False)
    entry = {"step": step, "accuracy": result["accuracy"],
             "balanced_accuracy": result["balanced_accuracy"]}
    records.log.line(f"eval   step {step}: accuracy {100 * entry['accuracy']:.2f}, "
                     f"balanced {100 * entry['balanced_accuracy']:.2f}")
    return entry


def write_report(cfg: BiasedConfig, model: LNLNet, data: LNLData, records: RunRecords,
                 step: int, record: dict, probe_steps: int = PROBE_STEPS) -> dict:
    """test.json and confusion.png: accuracy on the variant's test set (colour-shuffled;
    gray for --gray), both test sets' accuracies and the colour probe's accuracy on f;
    ``record``: what the model was trained with (``evaluate.training_record``)."""
    variant = variant_of(cfg)
    labels = data.test_labels.cpu().numpy()
    shuffled = predict(model, data.test, _scaled)
    gray = predict(model, data.test_gray, _scaled)
    preds = gray if variant == "gray" else shuffled
    metrics, matrix = classification_metrics(labels, preds, data.num_classes,
                                             np.ones(data.num_classes), False)
    # the probe reads coloured images for every variant: how much colour f passes on
    probe = colour_probe(model.f, data.test, steps=probe_steps, seed=cfg.seed)
    report = {"method": "lnl", "variant": variant, "dataset": cfg.dataset,
              "bias": "colour", "color_var": cfg.color_var, **metrics,
              "colour_shuffled_accuracy": float(np.mean(shuffled == labels)),
              "gray_accuracy": float(np.mean(gray == labels)),
              "probe_accuracy": probe, "checkpoint": str(records.checkpoint_path),
              "step": step, **record}
    report.pop("tail_classes", None)
    records.write_json("test.json", report)
    plot_confusion(matrix, list(data.class_names), records.savedir / "confusion.png",
                   f"lnl ({variant}) on coloured {cfg.dataset}, sigma^2 {cfg.color_var}")
    records.log.line(
        f"test   step {step} ({variant}): accuracy {100 * metrics['accuracy']:.2f} "
        f"(colour-shuffled {100 * report['colour_shuffled_accuracy']:.2f}, gray "
        f"{100 * report['gray_accuracy']:.2f}); colour probe on f {100 * probe:.2f} "
        "(lower = less colour left)")
    records.log.line(f"wrote {records.savedir / 'test.json'}, confusion.png")
    return report


def test(cfg: BiasedConfig) -> dict:
    """Re-tests the run in --savedir from its checkpoint.pt."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    savedir = expand_savedir(cfg.resolved_savedir, "--savedir")
    if not (savedir / "checkpoint.pt").is_file():
        raise RunDirError(f"--savedir {savedir} has no checkpoint.pt; train it first with "
                          "the same flags and --mode train")
    check_writable(savedir, "--savedir")  # before the data and the test, as training does
    device = parts.resolve_device(cfg, SINGLE)
    data = load_lnl_data(cfg, device)
    check_test_size(cfg, data)
    with RunLock(savedir):
        records = RunRecords(savedir)
        state = records.load_checkpoint("cpu")
        parts.check_compatible(state["config"], cfg, records.checkpoint_path, DEFINING)
        checkpoint.check_finite(state["model"], records.checkpoint_path)
        repair_config(savedir, state["config"], records.checkpoint_path.name)
        parts.check_folder(state.get("folder"), parts.folder_listing(cfg), cfg, savedir)
        model = build_model(cfg, data.num_classes, device)
        model.load_state_dict(state["model"])
        saved = state["config"]
        total = planned_steps(saved, max(1, len(data.train_labels) // saved["batch_size"]))
        report = write_report(cfg, model, data, records, state["step"],
                              training_record(saved, total, state.get("changes", [])))
        records.close()
    return report
