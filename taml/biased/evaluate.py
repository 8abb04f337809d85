"""What a biased-data run reports: accuracy, balanced accuracy, per-class recall, the recall
of the tail classes, and for binary tasks the minority's recall and precision (as TML
reports them); plus the confusion matrix as a PNG. :func:`test` is `main.py --mode test`
(a finished or interrupted run folder tested again); :func:`write_test_report` writes
test.json, confusion.png and the weight plots at the end of training.

Balanced accuracy is the mean per-class recall over the classes present in the test set
(the test sets here are balanced, so it equals accuracy up to rounding there; it differs on
a user's unbalanced folder). The tail is the smallest third of the classes by training count
(at least one class); for a binary task (minority = label 0) it is the minority alone.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from taml.biased import build as parts
from taml.biased.batches import Normalise, SplitTensors
from taml.biased.config import BiasedConfig
from taml.biased.plots import plot_run
from taml.biased.records import RunRecords
from taml.run import checkpoint, distributed
from taml.run.distributed import SINGLE, World
from taml.run.folder import RunDirError, RunLock, check_writable, expand_savedir
from taml.run.progress import set_enabled as set_progress
from taml.run.records import repair_config


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, normalise, batch_size: int = 500
            ) -> np.ndarray:
    """Predicted labels int64 [N] of ``images`` uint8 [N, C, H, W], in eval mode (batch
    norm's running statistics); the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    out = [model(normalise(chunk)).argmax(1).cpu() for chunk in images.split(batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted class."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def tail_classes(train_counts: np.ndarray, binary: bool) -> list[int]:
    """The smallest third of the classes by training count (ties by class index); binary:
    the minority, label 0."""
    if binary:
        return [0]
    k = max(1, len(train_counts) // 3)
    return [int(c) for c in np.argsort(train_counts, kind="stable")[:k]]


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                           train_counts: np.ndarray, binary: bool) -> dict:
    """Accuracy etc. in [0, 1]; per-class recall is NaN-free: a class absent from the test
    set gets None and is left out of the means."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(1)
    recall = [float(matrix[c, c] / support[c]) if support[c] else None
              for c in range(num_classes)]
    present = [r for r in recall if r is not None]
    tail = [recall[c] for c in tail_classes(train_counts, binary) if recall[c] is not None]
    result = {
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "balanced_accuracy": float(np.mean(present)) if present else 0.0,
        "per_class_recall": recall,
        "tail_recall": float(np.mean(tail)) if tail else None,
        "tail_classes": tail_classes(train_counts, binary),
        "n_test": int(matrix.sum()),
    }
    if binary:
        predicted_minority = matrix[:, 0].sum()
        result["minority_recall"] = recall[0]
        result["majority_recall"] = recall[1]
        result["minority_precision"] = (float(matrix[0, 0] / predicted_minority)
                                        if predicted_minority else 0.0)
    return result, matrix


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path | str,
                   title: str) -> None:
    """Row-normalised confusion matrix (each row: the true class's recall spread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = min(4 + 0.35 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:  # beyond that the labels and cell texts overlap
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def as_plain(value):
    """Tensors and arrays as (nested) lists of floats, for JSON."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [as_plain(v) for v in value]
    return float(value) if isinstance(value, np.floating) else value


def weights_document(history: list[dict], summary: dict, data, counts) -> dict:
    """weights.json: the logged history, MW-Net's latest curve, the corrupted share."""
    curve = summary.get("weight_curve")
    corrupted = data.train.labels != data.train.true_labels
    return {"history": history, "weight_curve": as_plain(curve), "train_counts": list(counts),
            "corrupted_share": float(corrupted.mean()) if len(corrupted) else 0.0}


# what test.json's "validation" holds (the tuning protocol selects on balanced accuracy)
VALIDATION_METRICS = ("accuracy", "balanced_accuracy", "tail_recall", "minority_recall",
                      "minority_precision", "n_test")


def planned_steps(config: dict, steps_per_epoch: int) -> int:
    """The length of a run's schedule from its saved config: ``--steps``, else ``--epochs``
    (plus LNL's ``--pretrain_epochs``) times the steps per epoch."""
    if config.get("steps") is not None:
        return int(config["steps"])
    epochs = int(config["epochs"])
    if config.get("method") == "lnl":
        epochs += int(config.get("pretrain_epochs") or 0)
    return epochs * steps_per_epoch


def training_record(config: dict, total: int, changes: list) -> dict:
    """What test.json says about the model tested, for the report: the config it was
    trained with (the checkpoint's), the schedule's length (``step`` below it: an unfinished
    run) and the flags changed on resume."""
    # as JSON holds it (tuples as lists): the returned report equals the written file
    return {"total_steps": total, "trained_config": json.loads(json.dumps(config)),
            "changes": changes}


def write_test_report(cfg: BiasedConfig, model: torch.nn.Module, normalise: Normalise, data,
                      test_set: SplitTensors, history: list[dict], summary: dict,
                      records: RunRecords, step: int, record: dict) -> dict:
    """Evaluates ``model`` on the test set; rank 0 writes test.json, confusion.png and the
    weight plots. Returns test.json's content (fractions in [0, 1]); ``record`` is
    :func:`training_record`'s."""
    counts = np.asarray(parts.class_counts(data.train.labels, data.num_classes))
    preds = predict(model, test_set.images, normalise)
    metrics, matrix = classification_metrics(data.test.labels, preds, data.num_classes,
                                             counts, cfg.bias == "binary")
    report = {"method": cfg.method, "dataset": cfg.dataset, "bias": cfg.bias, **metrics,
              "train_counts": counts.tolist(), "checkpoint": str(records.checkpoint_path),
              "step": step, **record}
    if data.val is not None:  # --val_per_class: the split settings are chosen on
        val_set = SplitTensors.from_imageset(data.val, test_set.images.device)
        val_metrics, _ = classification_metrics(
            data.val.labels, predict(model, val_set.images, normalise), data.num_classes,
            counts, cfg.bias == "binary")
        report["validation"] = {k: val_metrics[k] for k in VALIDATION_METRICS
                                if k in val_metrics}
    masses = [h["weight_mass_on_corrupted"] for h in history
              if h.get("weight_mass_on_corrupted") is not None]
    if cfg.bias == "noise" or masses:
        # the last logged window: where the method's weighting has settled
        report["weight_mass_on_corrupted"] = masses[-1] if masses else None
        report["corrupted_share"] = float(np.mean(data.train.labels != data.train.true_labels))
    if not records.is_main:
        return report
    records.write_json("test.json", report)
    name = f"{cfg.method} on {cfg.dataset} ({cfg.bias})"
    plot_confusion(matrix, list(data.class_names), records.savedir / "confusion.png",
                   f"{name}, step {step}")
    plotted = plot_run(weights_document(history, summary, data, counts), counts,
                       records.savedir, name)
    tail = metrics["tail_recall"]
    records.log.line(f"test   step {step}: accuracy {100 * metrics['accuracy']:.2f}, balanced "
                     f"accuracy {100 * metrics['balanced_accuracy']:.2f}, tail recall "
                     f"{100 * tail if tail is not None else float('nan'):.2f} "
                     f"({metrics['n_test']} test images)")
    if "minority_precision" in metrics:
        records.log.line(f"       minority recall {100 * metrics['minority_recall']:.2f}, "
                         f"minority precision {100 * metrics['minority_precision']:.2f}")
    records.log.line(f"wrote {records.savedir / 'test.json'}, confusion.png"
                     + "".join(f", {p}" for p in plotted))
    return report


def test(cfg: BiasedConfig, world: World = SINGLE) -> dict:
    """Re-tests the run in --savedir from its checkpoint.pt."""
    set_progress(cfg.progress)  # --no_progress silences the data layer's bars too
    cfg = replace(cfg, network=cfg.resolved_network)
    savedir = expand_savedir(cfg.resolved_savedir, "--savedir")
    if not (savedir / "checkpoint.pt").is_file():
        raise RunDirError(f"--savedir {savedir} has no checkpoint.pt; train it first with "
                          "the same flags and --mode train")
    # the test writes test.json, figures and train.log lines: a read-only folder is one line
    # before the data is loaded and the whole test run, as for training
    check_writable(savedir, "--savedir")
    data = parts.load_data(cfg)
    device = parts.resolve_device(cfg, world)
    lock = RunLock(savedir) if world.is_main else contextlib.nullcontext()
    with lock:
        records = RunRecords(savedir, world.is_main)
        state = records.load_checkpoint("cpu") if world.is_main else None
        state = distributed.broadcast_object(state, world)
        parts.check_compatible(state["config"], cfg, records.checkpoint_path)
        checkpoint.check_finite(state["model"], records.checkpoint_path)
        if world.is_main:  # the run would vanish from the report with config.json corrupt
            repair_config(savedir, state["config"], records.checkpoint_path.name)
        parts.check_folder(state.get("folder"), parts.folder_listing(cfg), cfg, savedir)
        model = parts.make_network(cfg.network, data.num_classes, data.in_channels,
                                   data.image_size).to(device)
        model.load_state_dict(state["model"])
        method = parts.make_method(cfg, data.num_classes,
                                   parts.class_counts(data.train.labels, data.num_classes))
        method.load_state_dict(state["method"])
        train_set = SplitTensors.from_imageset(data.train, device)
        test_set = SplitTensors.from_imageset(data.test, device)
        saved = state["config"]
        total = planned_steps(saved, max(1, len(train_set) // saved["batch_size"]))
        report = write_test_report(cfg, model, Normalise.of(train_set.images), data, test_set,
                                   state["weights"], method.summary(), records, state["step"],
                                   training_record(saved, total, state.get("changes", [])))
        records.close()
    return report
