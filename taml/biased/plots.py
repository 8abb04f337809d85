"""What a reader wants to see of the meta-learned weights (from weights.json):

- TML: the class weights over training, one line per class, coloured by training count;
- MW-Net: the learned weighting function, loss -> weight (the paper's Fig. 1f);
- noisy labels, any method: the share of the batches' weight mass that fell on examples
  whose label was corrupted, over training, against the share of corrupted examples (what
  uniform weights put there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_class_weights(steps: list[int], weights: list[list[float]], train_counts,
                       path: Path | str, title: str) -> None:
    """``weights`` [T, C] (one row per logged step)."""
    plt = _pyplot()
    values = np.asarray(weights)
    counts = np.asarray(train_counts)
    order = np.argsort(counts)  # colour from the smallest class (dark) to the largest
    colours = plt.cm.viridis(np.linspace(0, 1, len(order)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rank, c in enumerate(order):
        ax.plot(steps, values[:, c], color=colours[rank], label=f"class {c} (n={counts[c]})")
    ax.set_xlabel("step")
    ax.set_ylabel("class weight")
    ax.set_title(title)
    if len(order) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_weight_curve(losses, weights, path: Path | str, title: str) -> None:
    """MW-Net's V: weight (y) as a function of the training loss (x)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.asarray(losses), np.asarray(weights))
    ax.set_xlabel("training loss of an example")
    ax.set_ylabel("weight V(loss)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_corrupted_mass(steps: list[int], mass: list[float], corrupted_share: float,
                        path: Path | str, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, mass, label="weight mass on corrupted labels")
    ax.axhline(corrupted_share, color="grey", linestyle="--",
               label=f"share of corrupted examples ({corrupted_share:.2f})")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_run(weights: dict, train_counts, savedir: Path | str, name: str) -> list[str]:
    """Every plot ``weights`` (weights.json's content) has data for; returns the file names."""
    savedir = Path(savedir)
    written = []
    history = weights.get("history", [])
    with_classes = [h for h in history if h.get("class_weights") is not None]
    if with_classes:
        plot_class_weights([h["step"] for h in with_classes],
                           [h["class_weights"] for h in with_classes], train_counts,
                           savedir / "class_weights.png", f"{name}: class weights")
        written.append("class_weights.png")
    curve = weights.get("weight_curve")
    if curve is not None:
        plot_weight_curve(curve[0], curve[1], savedir / "weight_curve.png",
                          f"{name}: learned weighting function")
        written.append("weight_curve.png")
    with_mass = [h for h in history if h.get("weight_mass_on_corrupted") is not None]
    if with_mass:
        plot_corrupted_mass([h["step"] for h in with_mass],
                            [h["weight_mass_on_corrupted"] for h in with_mass],
                            weights.get("corrupted_share", 0.0),
                            savedir / "corrupted_weight.png",
                            f"{name}: weight on corrupted labels")
        written.append("corrupted_weight.png")
    return written
