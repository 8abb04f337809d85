"""Checkpoints: model, optimizer, iteration and every random state, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

LATEST = "checkpoint.pt"
BEST = "best.pt"


def save_atomic(state: dict, path: Path | str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a run killed
    mid-write leaves the previous checkpoint intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path | str, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # a checkpoint from elsewhere, truncated by a full disk...
        raise RuntimeError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {error}); delete it to "
            "start over, or point --savedir at another run"
        ) from error
