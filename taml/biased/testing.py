"""The final test of a biased-data run (``--mode test``, and the end of ``--mode train``):
test.json, confusion.png and the plots of the meta-learned weights."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import torch

from taml.biased import build as parts
from taml.biased.batches import Normalise, SplitTensors
from taml.biased.config import BiasedConfig
from taml.biased.evaluate import classification_metrics, plot_confusion, predict
from taml.biased.plots import plot_run
from taml.biased.records import RunRecords
from taml.run import distributed
from taml.run.distributed import SINGLE, World
from taml.run.folder import RunDirError, RunLock, expand_savedir
from taml.run.progress import set_enabled as set_progress


def write_test_report(cfg: BiasedConfig, model: torch.nn.Module, normalise: Normalise, data,
                      test_set: SplitTensors, history: list[dict], summary: dict,
                      records: RunRecords, step: int) -> dict:
    """Evaluates ``model`` on the test set; rank 0 writes test.json, confusion.png and the
    weight plots. Returns test.json's content (fractions in [0, 1])."""
    from taml.biased.train import weights_document

    counts = np.asarray(parts.class_counts(data.train.labels, data.num_classes))
    preds = predict(model, test_set.images, normalise)
    metrics, matrix = classification_metrics(data.test.labels, preds, data.num_classes,
                                             counts, cfg.bias == "binary")
    report = {"method": cfg.method, "dataset": cfg.dataset, "bias": cfg.bias, **metrics,
              "train_counts": counts.tolist(), "checkpoint": str(records.checkpoint_path),
              "step": step}
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
    data = parts.load_data(cfg)
    device = parts.resolve_device(cfg, world)
    lock = RunLock(savedir) if world.is_main else contextlib.nullcontext()
    with lock:
        records = RunRecords(savedir, world.is_main)
        state = records.load_checkpoint("cpu") if world.is_main else None
        state = distributed.broadcast_object(state, world)
        parts.check_compatible(state["config"], cfg, records.checkpoint_path)
        model = parts.make_network(cfg.network, data.num_classes, data.in_channels,
                                   data.image_size).to(device)
        model.load_state_dict(state["model"])
        method = parts.make_method(cfg, data.num_classes,
                                   parts.class_counts(data.train.labels, data.num_classes))
        method.load_state_dict(state["method"])
        train_set = SplitTensors.from_imageset(data.train, device)
        test_set = SplitTensors.from_imageset(data.test, device)
        report = write_test_report(cfg, model, Normalise.of(train_set.images), data, test_set,
                                   state["weights"], method.summary(), records, state["step"])
        records.close()
    return report
