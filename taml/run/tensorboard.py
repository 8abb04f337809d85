"""Optional TensorBoard logging (``--tensorboard``): the scalars of ``train_metrics.csv`` and
``validation.json``, and histograms of the balancing variables, under ``<savedir>/tensorboard``.

``tensorboard`` is an optional dependency (``pip install -e '.[tensorboard]'``); without the
flag a :class:`TensorBoard` made with ``logdir=None`` does nothing, so the trainer calls it
unconditionally.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

INSTALL_HINT = ("--tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install -e '.[tensorboard]'), or leave the flag out")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoard:
    """A ``torch.utils.tensorboard.SummaryWriter`` when ``logdir`` is given, else a no-op.
    Steps are meta-training iterations, as in train_metrics.csv and validation.json."""

    def __init__(self, logdir: Path | None):
        self.writer = None
        if logdir is not None:
            if not tensorboard_available():
                raise RuntimeError(INSTALL_HINT)  # parse_config checks first; a guard
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(logdir))

    def train(self, iteration: int, means: dict[str, float], seconds_per_iter: float) -> None:
        """The row of train_metrics.csv (accuracy in [0, 1], as there)."""
        if self.writer is None:
            return
        for name, value in means.items():
            self.writer.add_scalar(f"train/{name}", value, iteration)
        self.writer.add_scalar("train/seconds_per_iter", seconds_per_iter, iteration)

    def balancing(self, iteration: int, values: dict[str, torch.Tensor]) -> None:
        """Histograms of the balancing variables fed to the inner loop (ω ``[T, way]``,
        γ ``[T, 5]``, z ``[T, 256]``, posterior samples of the last meta-batch)."""
        if self.writer is None:
            return
        for name, tensor in values.items():
            self.writer.add_histogram(f"balancing/{name}", tensor.detach().float().cpu(),
                                      iteration)

    def validation(self, result: dict) -> None:
        """One entry of validation.json: accuracy (%) per ID / OOD dataset, and the score."""
        if self.writer is None:
            return
        iteration = result["iteration"]
        for role in ("id", "ood"):
            for name, accuracy in result.get(role, {}).items():
                self.writer.add_scalar(f"validation/{role}/{name}", accuracy, iteration)
        self.writer.add_scalar("validation/score", result["score"], iteration)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
