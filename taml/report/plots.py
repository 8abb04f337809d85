"""The report's figures: the tables as grouped bars with error bars, and learning curves.

Learning curves read each run's ``train_metrics.csv`` (meta: cross_entropy, accuracy per
iteration; biased: loss, accuracy per step) and ``validation.json`` (meta: ID/OOD accuracy)
or ``eval.json`` (biased: accuracy, balanced accuracy); a missing or unreadable file leaves
its panel empty rather than stopping the report, and an unreadable one is named in a note
(``notes``: one line per file, printed by the report's command).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from taml.report.tables import Row, Table, column_header  # noqa: E402


def bar_chart(tables: list[Table], path: Path) -> None:
    """One panel per table: a group of bars per column, a bar per row, error bars = the
    cells' spreads (95% CI or std over seeds)."""
    fig, axes = plt.subplots(len(tables), 1, figsize=(9, 3.6 * len(tables)), squeeze=False)
    for ax, table in zip(axes[:, 0], tables, strict=True):
        width = 0.8 / max(len(table.rows), 1)
        x = np.arange(len(table.columns))
        for i, row in enumerate(table.rows):
            cells = [row.cells.get(c) for c in table.columns]
            means = [c.mean if c else np.nan for c in cells]
            errors = [c.spread if c and c.spread is not None else 0.0 for c in cells]
            ax.bar(x + (i - (len(table.rows) - 1) / 2) * width, means, width, yerr=errors,
                   capsize=3, label=row.label, hatch="//" if row.published else None,
                   alpha=0.6 if row.published else 1.0)
        ax.set_xticks(x, [column_header(c) for c in table.columns])
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{table.name}: {table.title}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _unreadable(path: Path, problem: str, notes: dict[Path, str]) -> None:
    notes.setdefault(path, f"{path} cannot be read ({problem}): its learning curve is left "
                           "out of the report")


def _read_csv(path: Path, notes: dict[Path, str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {k: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        _unreadable(path, f"{type(error).__name__}: {str(error)[:80]}", notes)
        return {}


def _read_list(path: Path, notes: dict[Path, str]) -> list[dict]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        _unreadable(path, f"{type(error).__name__}: {str(error)[:80]}", notes)
        return []
    if not isinstance(data, list):
        _unreadable(path, f"a JSON {type(data).__name__}, not a list", notes)
        return []
    return data


def _meta_panels(run_dir: Path, notes: dict[Path, str]) -> dict[str, tuple]:
    metrics = _read_csv(run_dir / "train_metrics.csv", notes)
    panels = {}
    if "iteration" in metrics:
        panels["train cross-entropy"] = (metrics["iteration"], metrics.get("cross_entropy"))
        if "accuracy" in metrics:
            panels["train accuracy (%)"] = (metrics["iteration"], 100 * metrics["accuracy"])
    history = [h for h in _read_list(run_dir / "validation.json", notes) if isinstance(h, dict)]
    for role in ("id", "ood"):
        names = sorted({n for h in history for n in (h.get(role) or {})})
        for name in names:
            points = [(h["iteration"], h[role][name]) for h in history
                      if name in (h.get(role) or {})]
            panels[f"validation {name} ({role.upper()}) (%)"] = tuple(np.array(points).T)
    return panels


def _biased_panels(run_dir: Path, notes: dict[Path, str]) -> dict[str, tuple]:
    metrics = _read_csv(run_dir / "train_metrics.csv", notes)
    panels = {}
    if "step" in metrics:
        panels["train loss"] = (metrics["step"], metrics.get("loss"))
        if "accuracy" in metrics:
            panels["train accuracy (%)"] = (metrics["step"], 100 * metrics["accuracy"])
    evals = [e for e in _read_list(run_dir / "eval.json", notes) if isinstance(e, dict)]
    for key in ("accuracy", "balanced_accuracy"):
        points = [(e["step"], 100 * e[key]) for e in evals if key in e and "step" in e]
        if points:
            panels[f"evaluation {key.replace('_', ' ')} (%)"] = tuple(np.array(points).T)
    return panels


def learning_curves(table: Table, row: Row, path: Path,
                    notes: dict[Path, str] | None = None) -> bool:
    """One PNG for one row (a group of runs, one line per seed); False when no run of the
    row has any curve to draw. ``notes`` collects a line per unreadable file."""
    read = _meta_panels if table.family == "meta" else _biased_panels
    notes = {} if notes is None else notes
    runs = [(m.seed, m.run_dir, read(m.run_dir, notes)) for m in row.measurements]
    titles = list(dict.fromkeys(t for _, _, panels in runs for t in panels))
    if not titles:
        return False
    fig, axes = plt.subplots(1, len(titles), figsize=(3.6 * len(titles), 3.2), squeeze=False)
    for ax, title in zip(axes[0], titles, strict=True):
        for seed, run_dir, panels in runs:
            if title in panels and panels[title][1] is not None:
                xs, ys = panels[title]
                ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, markersize=3,
                        label=f"seed {seed}" + ("" if run_dir.name == f"seed{seed}"
                                                else f" ({run_dir.name})"))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration" if table.family == "meta" else "step")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table.name}, {row.label}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


GREEK = {"ω": "omega", "γ": "gamma", "α": "alpha"}


def slug(text: str) -> str:
    for letter, name in GREEK.items():
        text = text.replace(letter, name)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
