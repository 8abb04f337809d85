"""What a biased-data run is made of, built from its config: the biased data, the device,
the network and the method. Shared by training, testing and the demo, so that all of them
read the data and build the model the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from taml.biased.config import BiasedConfig
from taml.biased.records import RunError
from taml.run import compat
from taml.run import device as run_device
from taml.run.distributed import World

# the config fields a run's checkpoint must agree on to be resumed or tested
DEFINING = ("method", "dataset", "bias", "imbalance_factor", "ratio", "binary_classes",
            "n_train", "noise_type", "noise_rate", "meta_per_class", "image_size", "seed",
            "binary_protocol", "batch_size", "network", "val_per_class")


def load_data(cfg: BiasedConfig):
    """The run's BiasedData; a bad recipe raises the builders' DatasetError (one line)."""
    from taml.data.recipes import build_biased_data

    return build_biased_data(cfg.bias_spec(), cfg.data_root)


def make_network(name: str, num_classes: int, in_channels: int, image_size: int):
    from taml.biased.nets import build_network

    return build_network(name, num_classes, in_channels, image_size)


def make_method(cfg: BiasedConfig, num_classes: int, class_counts: tuple[int, ...]):
    from taml.biased.methods import MethodHyper, build_method

    lookahead_lr = cfg.lookahead_lr
    if lookahead_lr is None and cfg.method == "tml":  # TML's original: the base lr, not decayed
        lookahead_lr = cfg.lr
    hyper = MethodHyper(lookahead_lr=lookahead_lr, weight_decay=cfg.weight_decay,
                        meta_lr=cfg.meta_lr, meta_optimizer=cfg.meta_optimizer,
                        meta_every=cfg.meta_every, focal_gamma=cfg.focal_gamma,
                        mwnet_hidden=cfg.mwnet_hidden, class_counts=class_counts,
                        seed=cfg.seed, tml_scale=cfg.tml_scale,
                        mwnet_weights=cfg.mwnet_weights)
    return build_method(cfg.method, num_classes, hyper)


def resolve_device(cfg: BiasedConfig, world: World) -> torch.device:
    return run_device.resolve_device(cfg.device, cfg.gpu_id, world)


def move_method(method, device: torch.device) -> None:
    """Methods with parameters of their own (MW-Net's V) follow the model's device."""
    if hasattr(method, "to"):
        method.to(device)


def class_counts(labels: np.ndarray, num_classes: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(labels, minlength=num_classes))


# a resume goes on learning what it started: besides DEFINING it refuses every flag that
# changes the objective, the optimiser or the method; it honours (and records) the length
# of training, the step sizes the divergence advice tells the user to lower (read from the
# flags every step, so a new value applies from the next one), the logging schedule and
# the chance-level stop (it reads the training statistics, it changes no trained value)
RESUME_REFUSED = DEFINING + (
    "augment", "meta_batch_size", "lr_schedule", "lr_factor", "momentum", "nesterov",
    "weight_decay", "meta_every", "lookahead_lr", "focal_gamma", "mwnet_hidden",
    "meta_optimizer", "tml_scale", "mwnet_weights", "color_var", "lnl_lambda", "grl_factor",
    "pretrain_epochs", "gray")
RESUME_HONOURED = ("epochs", "steps", "lr", "meta_lr", "log_every", "eval_every",
                   "save_every", "chance_check")


def check_compatible(saved: dict, cfg: BiasedConfig, path, names=DEFINING) -> None:
    """For --mode test: a checkpoint from another recipe, method or network is refused,
    naming the flag (``cfg.network`` resolved already: the saved configs hold the network
    used)."""
    diffs = compat.differences(saved, cfg.to_dict(), names)
    if diffs:
        raise RunError(f"the run in {path} was trained with other settings "
                       f"({'; '.join(diffs)}): use its values, or another --savedir")


def check_resume(saved: dict, cfg: BiasedConfig, savedir) -> list[tuple[str, object, object]]:
    """Refuses the flags that change what is learned (:data:`RESUME_REFUSED`), naming each
    with its old and new value; returns the honoured changes as ``(flag, old, new)``."""
    honoured = compat.check_resume(saved, cfg.to_dict(), savedir, refused=RESUME_REFUSED,
                                   honoured=RESUME_HONOURED)
    check_schedule_unit(saved, cfg, savedir)
    return honoured


def check_schedule_unit(saved: dict, cfg: BiasedConfig, savedir) -> None:
    """Refuses a resume that switches between counting --steps and --epochs while an
    --lr_schedule is set: its milestones count steps with --steps and epochs without, so the
    same numbers would decay the lr elsewhere (the length alone may change either way)."""
    counted_steps = saved.get("steps") is not None  # old runs without the key: epochs
    if counted_steps == (cfg.steps is not None) or not cfg.lr_schedule:
        return
    milestones = ",".join(str(m) for m in cfg.lr_schedule)
    there, now = (f"--steps {saved.get('steps')}", f"no --steps (--epochs {cfg.epochs})")
    if not counted_steps:
        there, now = f"no --steps (--epochs {saved.get('epochs')})", f"--steps {cfg.steps}"
    unit_there, unit_now = ("steps", "epochs") if counted_steps else ("epochs", "steps")
    fix = ("give --steps to resume it" if counted_steps
           else "leave --steps out and raise --epochs to resume it")
    raise compat.IncompatibleRun(
        f"{savedir} holds a run trained with {there}, {now} now: --lr_schedule {milestones} "
        f"counts {unit_there} there and {unit_now} now; {fix}, or start a new run with "
        "another --savedir")


def folder_listing(cfg: BiasedConfig) -> dict | None:
    """The file list of a ``folder:PATH`` dataset that a checkpoint records
    (:func:`taml.data.classification.folder_listing`); None for the built-in datasets,
    which never change under a run."""
    from taml.data.classification import folder_listing as listing
    from taml.data.registry import FOLDER_PREFIX, is_folder_dataset

    return listing(cfg.dataset[len(FOLDER_PREFIX):]) if is_folder_dataset(cfg.dataset) else None


def check_folder(saved: dict | None, current: dict | None, cfg: BiasedConfig, savedir) -> None:
    """Refuses a ``folder:PATH`` dataset whose file list changed since the run trained: an
    added image moves others between train and test, a renamed class folder permutes every
    label. A checkpoint without a record (saved before it was kept) is not checked."""
    if saved is None or current is None or saved == current:
        return
    before, after = saved["classes"], current["classes"]
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = [f"{name!r} {before[name]} -> {after[name]} images" for name in sorted(before)
               if name in after and before[name] != after[name]]
    parts = ([f"new class {_few(added)}"] if added else []) + (
        [f"no class {_few(removed)}"] if removed else []) + changed[:3]
    what = "; ".join(parts) or "images renamed, added or removed"
    raise RunError(f"the images of --dataset {cfg.dataset} changed since the run in {savedir} "
                   f"was trained ({what}), which moves images between train and test or "
                   "relabels classes: restore the folder as it was, or train a new run on it "
                   "with another --savedir")


def _few(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
