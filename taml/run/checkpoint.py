"""Checkpoints: model, optimizer, iteration and every random state, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from taml.run.folder import RunDirError, atomic_writer

LATEST = "checkpoint.pt"
BEST = "best.pt"
# what a user calls each family's runs, and the modes that make them
FAMILY_RUNS = {"episodic": "meta-learning run (--mode meta_train|meta_test)",
               "biased": "biased-data run (--mode train|test)"}


class CheckpointError(RunDirError):
    """A checkpoint that cannot be written or read; the message names the file and the fix."""


def save_atomic(state: dict, path: Path | str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a run killed
    mid-write leaves the previous checkpoint intact, never a truncated one. A failed write
    (a full disk shows up as torch's "unexpected pos ..." RuntimeError) is one line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    had_one = path.is_file()  # the message promises only what is there
    try:
        with atomic_writer(path) as handle:
            torch.save(state, handle)
    except (OSError, RuntimeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else (
            "the disk is full or the file too large")
        kept = ("the previous checkpoint is kept: free space on its disk, then rerun the same "
                "command to resume" if had_one else
                "no checkpoint was saved yet: free space on its disk, then rerun the same "
                "command to start again")
        raise CheckpointError(f"cannot write {path} ({reason}); {kept}, or choose another "
                              "--savedir") from None


def family_of(config: dict) -> str:
    """The family a saved config belongs to: its "family" key ("episodic" or "biased");
    episodic configs written before the key existed have none."""
    return config.get("family", "episodic")


def load(path: Path | str, device: torch.device | str = "cpu", *,
         family: str | None = None) -> dict:
    """The checkpoint at ``path``: one reader for both families. An unreadable file, or
    one that is not a taml checkpoint of ``family`` (when given), is a CheckpointError
    naming the file and the fix."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # a checkpoint from elsewhere, truncated by a full disk...
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {first[:120]}); delete "
            "it to start over, or point --savedir at another run"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path} is not a taml checkpoint (it may be another tool's "
                              "file): choose another --savedir for this run")
    found = family_of(state["config"])
    if family is not None and found != family:
        # a valid run of the other family: never advise deleting it
        raise CheckpointError(f"{path} is the checkpoint of a {FAMILY_RUNS.get(found, found)}"
                              f", not of a {FAMILY_RUNS.get(family, family)}; that run is "
                              "kept: choose another --savedir for this one")
    return state


def check_finite(weights: dict, path: Path | str) -> None:
    """Refuses a checkpoint whose weights (a state dict, or a dict of them) are not all
    finite: a NaN model meta-tests at chance with a CI of 0 and tests at 1/K, which the
    report would pool as a result. Names the checkpoint and the first bad tensor."""
    for key, value in _tensors(weights):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"checkpoint {path} holds non-finite weights ({key}): it is no model to "
                "test; train the run again from an earlier checkpoint, or with a lower "
                "learning rate in a new --savedir")


def _tensors(tree, prefix: str = ""):
    """(dotted key, tensor) of every tensor in nested dicts."""
    if torch.is_tensor(tree):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
