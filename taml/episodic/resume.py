"""What a run folder's checkpoint allows: which flags a resumed run or a meta-test may
change, and whether the datasets still hold the classes the run was trained on.

A resumed run must go on learning what it started learning, so the flags that change the
model, the tasks or the random streams are refused with their old and new values; the
schedule and the outer step size are honoured and recorded (``RESUME_HONOURED``). A
meta-test must build the model that was trained (``MODEL_FLAGS``) and test it on classes
it never trained on (:func:`check_classes`).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from taml.data.registry import DatasetError, get_spec
from taml.episodic.config import Config
from taml.episodic.learners.bayesian_taml import ORIGINAL_SIGMA_INIT
from taml.run import compat
from taml.run.compat import IncompatibleRun

MODEL_FLAGS = ("alpha_on", "omega_on", "gamma_on", "z_on", "way", "id_dataset", "max_shot",
               "image_size", "backbone", "head")  # max_shot: Bayesian TAML scales class sizes by it
RESUME_REFUSED = MODEL_FLAGS + ("ood_dataset", "query", "metabatch", "n_steps", "inner_lr",
                                "first_order", "sampler_mode", "seed", "kl_normaliser", "precision",
                                "sigma_init")
# n_val_mc_samples: validation's predictor picks best.pt but changes no trained value
RESUME_HONOURED = ("n_train_iters", "meta_lr", "save_freq", "val_freq", "n_val_episodes",
                   "log_freq", "print_freq", "n_val_mc_samples")
# learning flags added after runs were saved without them: such a run learned with this value
UNSAVED_DEFAULTS = {"kl_normaliser": "task", "precision": "fp32",
                    "sigma_init": ORIGINAL_SIGMA_INIT, "backbone": "conv4", "head": "zero"}
# settings that change meta-test numbers without changing the model (n_steps and
# n_mc_samples are in the file name already)
TEST_SETTINGS = ("n_test_episodes", "seed", "inner_lr", "ood_dataset", "query",
                 "sampler_mode", "metabatch", "precision")


def _value(saved: dict, name: str):
    if name == "image_size":  # compare the size used, not whether the flag was given
        try:
            return get_spec(tuple(saved["id_dataset"])[0], saved.get(name)).image_size
        except DatasetError:
            return saved.get(name)
    return compat.plain_value(saved, name)


def _differences(saved: dict, cfg: Config, names) -> list[str]:
    saved = {**UNSAVED_DEFAULTS, **saved}
    if cfg.alpha_on and saved.get("alpha_on"):
        names = [n for n in names if n != "inner_lr"]  # Meta-SGD learns its steps instead
    return compat.differences(saved, cfg.to_dict(), names, _value)


def check_resume(saved: dict, cfg: Config, savedir: Path) -> list[tuple[str, object, object]]:
    """Raises :class:`IncompatibleRun` for a refused change; returns the honoured ones as
    ``(flag, old, new)``."""
    refused = RESUME_REFUSED
    if cfg.alpha_on and saved.get("alpha_on"):
        refused = tuple(n for n in refused if n != "inner_lr")  # Meta-SGD learns its steps
    if "sigma_init" not in saved:
        # a run saved before the flag (it started at the original's σ) resumes under any
        # --sigma_init: the flag only initialises, and a resume loads every parameter, so
        # the same command keeps working across the default's change to 0.2
        refused = tuple(n for n in refused if n != "sigma_init")
    return compat.check_resume({**UNSAVED_DEFAULTS, **saved}, cfg.to_dict(), savedir,
                               refused=refused, honoured=RESUME_HONOURED, value=_value)


def initialised_with(saved: dict) -> dict:
    """The flags that only initialise (``sigma_init``) at the values the saved run started
    with: a resume goes on with these, so its config and checkpoints record them."""
    return {"sigma_init": saved.get("sigma_init", UNSAVED_DEFAULTS["sigma_init"])}


def check_meta_test(saved: dict, cfg: Config, savedir: Path) -> None:
    diffs = _differences(saved, cfg, MODEL_FLAGS)
    if diffs:
        raise IncompatibleRun(
            f"meta_test must build the model trained in {savedir} ({'; '.join(diffs)}): "
            "rerun meta_test with the run's values")


def changed_test_settings(saved: dict, cfg: Config) -> dict:
    """The meta-test settings that differ from meta-training's (empty for the same ones)."""
    now = cfg.to_dict()
    return {n: now[n] for n in TEST_SETTINGS if n in saved and _value(saved, n) != _value(now, n)}


def check_classes(saved: dict | None, current: dict, splits: tuple[str, ...],
                  savedir: Path) -> None:
    """Refuses a dataset whose ``splits`` hold other classes than when the run trained.

    ``saved`` and ``current`` map dataset -> split -> class names (None: no such split).
    A ``folder:`` dataset's classes are split 64:16:20 by a shuffle of all class names, so
    adding a class moves others between splits; a model trained before would then be
    tested on classes it trained on. Old checkpoints without a record are not checked."""
    if saved is None:
        return
    for name, by_split in current.items():
        for split in splits:
            before, after = (saved.get(name) or {}).get(split), by_split.get(split)
            if before is None or after is None or sorted(before) == sorted(after):
                continue
            added = sorted(set(after) - set(before))
            removed = sorted(set(before) - set(after))
            change = ", ".join(
                part for part in (f"now also {_few(added)}" if added else "",
                                  f"no longer {_few(removed)}" if removed else "") if part)
            raise IncompatibleRun(
                f"the {split} classes of {name} changed since the run in {savedir} was "
                f"trained ({change}): restore the dataset as it was (e.g. remove the added "
                "class folders), or train a new run on it with another --savedir")


def _few(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def dataset_classes(cfg: Config) -> dict:
    """Dataset -> split -> class names (None for a missing store) of every dataset of the
    run, read from the stores' headers: what a checkpoint records for :func:`check_classes`."""
    from taml.data.loading import split_class_names

    return {name: {split: split_class_names(name, split, cfg.data_root, cfg.image_size)
                   for split in get_spec(name, cfg.image_size).splits}
            for name in dict.fromkeys(cfg.id_dataset + cfg.ood_dataset)}


# --- checkpoints saved before the 4-conv net became a module (tests/old_runs.py) ----------

# their learner's names of the 4-conv net's parameters -> the names of the Conv4 module's
_CONV4_NAMES = (
    (re.compile(r"^theta\.conv(\d)_w$"), r"backbone.conv\1.weight"),
    (re.compile(r"^theta\.conv(\d)_b$"), r"backbone.conv\1.bias"),
    (re.compile(r"^bn_shifts\.bn(\d)$"), r"backbone.bn\1.bias"),
    (re.compile(r"^alpha\.conv(\d)_w$"), r"alpha.conv\1__weight"),
    (re.compile(r"^alpha\.conv(\d)_b$"), r"alpha.conv\1__bias"),
)


def _conv4_module_name(name: str) -> str:
    for pattern, replacement in _CONV4_NAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


def upgrade_learner_state(state: dict, learner: nn.Module) -> tuple[dict, dict | None]:
    """A checkpoint's ``learner`` and ``optimizer`` states as ``learner`` (today's) loads
    them; a checkpoint of today's format is returned as it is.

    Runs saved while the 4-conv net was a pure function (``theta.conv{l}_{w,b}``,
    ``bn_shifts.bn{l}``, ``alpha.conv{l}_{w,b}``) get the :class:`Conv4` module's names,
    its batch norms' running statistics as a new module has them (never read: batch norm
    runs on each batch's statistics), and their optimiser's per-parameter states renumbered:
    the optimiser numbers parameters in ``learner.parameters()``' order, which was θ's
    sorted names (``conv1_b`` before ``conv1_w``) and is now the module's (weight before
    bias).
    """
    saved, optimizer = state["learner"], state.get("optimizer")
    if not any(key.startswith("theta.") for key in saved):
        return saved, optimizer
    renamed = {_conv4_module_name(k): v for k, v in saved.items()}
    current = learner.state_dict()
    running = {k: v for k, v in current.items() if k.startswith("backbone.bn")
               and k.rsplit(".", 1)[1] in ("running_mean", "running_var",
                                           "num_batches_tracked")}
    names = [name for name, _ in learner.named_parameters()]
    index = {name: i for i, name in enumerate(names)}
    # the saved parameters in their (the optimiser's) order: the state's keys less buffers
    order = [index[k] for k in renamed if k in index]
    if optimizer is None:
        return {**renamed, **running}, None
    upgraded = {**optimizer,
                "state": {order[i]: s for i, s in optimizer["state"].items()},
                "param_groups": [{**group, "params": sorted(order[i] for i in group["params"])}
                                 for group in optimizer["param_groups"]]}
    return {**renamed, **running}, upgraded
