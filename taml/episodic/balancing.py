"""The balancing-variable printouts of the original, and plots of their tendencies.

- "Gamma for task imbalance": one row per task sorted by support size N, exp(γ) for
  conv1..conv4 and the classifier. Expected: γ grows with N (large tasks trust their own
  data more and take larger steps).
- "Omega for class imbalance": per task, the class counts sorted ascending, ``-->``, and
  softmax(ω) in the same order. Expected: smaller classes get larger ω.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LAYERS = ("conv1", "conv2", "conv3", "conv4", "dense")  # the 4-conv net's γ


def layer_names(n_gamma: int) -> tuple[str, ...]:
    """The names of ``n_gamma`` γ columns: the 4-conv net's :data:`LAYERS`, else
    ``l1..l{n-1}`` (the backbone's adapted layers in order) and ``dense``."""
    if n_gamma == len(LAYERS):
        return LAYERS
    return (*(f"l{i}" for i in range(1, n_gamma)), "dense")


# the run folder's file of the last printout's values (read by the demo and by report
# tools instead of the text of train.log)
BALANCING_FILE = "balancing.json"


def balancing_record(iteration: int, sets: list[tuple[str, str, np.ndarray, dict]],
                     n_table_tasks: int) -> dict:
    """The JSON of one printout. ``sets``: (``"ID"``/``"OOD"``, dataset, class counts
    ``[T, way]``, {"gamma": exp(γ) ``[T, 5]``, "omega": softmax(ω) ``[T, way]``}); the
    tables show the first ``n_table_tasks`` tasks, the record keeps them all (the plots')."""
    widths = [np.asarray(values["gamma"]).shape[1] for *_, values in sets if "gamma" in values]
    layers = layer_names(widths[0]) if widths else LAYERS
    return {"iteration": iteration, "n_table_tasks": n_table_tasks, "layers": list(layers),
            "sets": [{"role": role, "dataset": dataset, "class_counts": counts.tolist(),
                      **{key: value.tolist() for key, value in values.items()}}
                     for role, dataset, counts, values in sets]}


def table_lines(record: dict) -> list[str]:
    """The printout of a :func:`balancing_record`: per set a blank line, its heading, the
    γ table and the ω table (those switched on), as train.log holds them."""
    lines: list[str] = []
    n = record["n_table_tasks"]
    for entry in record["sets"]:
        counts = np.asarray(entry["class_counts"])[:n]
        lines += ["", f"{entry['role']} ({entry['dataset']}, validation tasks, "
                      f"iteration {record['iteration']})"]
        if "gamma" in entry:
            lines += gamma_table(counts.sum(1), np.asarray(entry["gamma"])[:n])
        if "omega" in entry:
            lines += omega_table(counts, np.asarray(entry["omega"])[:n])
    return lines


def gamma_table(support_sizes: np.ndarray, gamma: np.ndarray) -> list[str]:
    """``support_sizes`` ``[T]``, ``gamma`` = exp(γ) ``[T, layers]`` (5 for the 4-conv net)."""
    names = layer_names(gamma.shape[1])
    lines = ["*** Gamma for task imbalance ***", " " * 16 + "".join(f"{n:>7}" for n in names)]
    for t in np.argsort(support_sizes, kind="stable"):
        values = "".join(f"{g:7.3f}" for g in gamma[t])
        lines.append(f"task {t:2d}: N={support_sizes[t]:3d} {values}")
    return lines


def omega_table(class_counts: np.ndarray, omega: np.ndarray) -> list[str]:
    """``class_counts`` ``[T, way]``, ``omega`` = softmax(ω) ``[T, way]``; rows sorted by
    task size, columns by class size."""
    way = class_counts.shape[1]
    header = " " * 8 + "".join(f"{f'C{c + 1}':>4}" for c in range(way)) + "    " + "".join(
        f"{f'C{c + 1}':>6}" for c in range(way))
    lines = ["*** Omega for class imbalance ***", header]
    for t in np.argsort(class_counts.sum(1), kind="stable"):
        order = np.argsort(class_counts[t], kind="stable")
        counts = "".join(f"{n:4d}" for n in class_counts[t][order])
        weights = "".join(f"{w:6.3f}" for w in omega[t][order])
        lines.append(f"task {t:2d}:{counts} -->{weights}")
    return lines


def plot_tendencies(
    path: Path | str, title: str, class_counts: np.ndarray, values: dict[str, np.ndarray]
) -> Path | None:
    """γ against task size and ω against class size, one PNG; None when neither is on."""
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("gamma", "omega") if k in values]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "gamma":
            sizes = class_counts.sum(1)
            for layer, name in enumerate(layer_names(values["gamma"].shape[1])):
                ax.scatter(sizes, values["gamma"][:, layer], s=12, label=name)
            ax.set_xlabel("task size N (support images)")
            ax.set_ylabel("exp(γ): step scale")
            ax.set_title("γ for task imbalance")
            ax.legend(fontsize=8)
        else:
            counts = class_counts.ravel()
            weights = values["omega"].ravel() * class_counts.shape[1]
            ax.scatter(counts, weights, s=10, alpha=0.6)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xlabel("class size N_c (support images)")
            ax.set_ylabel("way × softmax(ω): class weight (1 = uniform)")
            ax.set_title("ω for class imbalance")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def tendencies(record: dict) -> list[dict]:
    """The size of each set's tendencies in a :func:`balancing_record` (all its tasks):

    - ω: ``omega_small_over_large``, the mean over tasks of way × softmax(ω) of the task's
      smallest class over that of its largest (> 1: small classes up-weighted), and
      ``omega_r``, the correlation of way × softmax(ω) with the class size over all classes;
    - γ: ``gamma_r`` per layer, the correlation of exp(γ) with the task size N (> 0: larger
      tasks take larger steps), and ``gamma_range`` per layer, its min and max.
    A set whose tasks all have the same sizes has no correlation (nan)."""
    out = []
    for entry in record["sets"]:
        counts = np.asarray(entry["class_counts"], dtype=float)
        row = {"role": entry["role"], "dataset": entry["dataset"], "n_tasks": len(counts)}
        if "omega" in entry:
            weights = np.asarray(entry["omega"]) * counts.shape[1]
            tasks = np.arange(len(counts))
            uneven = counts.max(1) > counts.min(1)
            small = weights[tasks, counts.argmin(1)][uneven]
            large = weights[tasks, counts.argmax(1)][uneven]
            row["omega_small_over_large"] = float((small / large).mean()) if uneven.any() \
                else float("nan")
            row["omega_r"] = _correlation(counts.ravel(), weights.ravel())
        if "gamma" in entry:
            gamma, sizes = np.asarray(entry["gamma"]), counts.sum(1)
            row["gamma_r"] = {layer: _correlation(sizes, gamma[:, i])
                              for i, layer in enumerate(record["layers"])}
            row["gamma_range"] = {layer: [float(gamma[:, i].min()), float(gamma[:, i].max())]
                                  for i, layer in enumerate(record["layers"])}
        out.append(row)
    return out


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
