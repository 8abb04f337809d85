"""What a biased-data run reports: accuracy, balanced accuracy, per-class recall, the recall
of the tail classes, and for binary tasks the minority's recall and precision (as TML
reports them); plus the confusion matrix as a PNG.

Balanced accuracy is the mean per-class recall over the classes present in the test set
(the test sets here are balanced, so it equals accuracy up to rounding there; it differs on
a user's unbalanced folder). The tail is the smallest third of the classes by training count
(at least one class); for a binary task (minority = label 0) it is the minority alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


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
