"""Does the embedded data have the structure Bayesian TAML exploits? Read off trained runs.

    python -m experiments.data_structure RUN_DIR [RUN_DIR ...] [--n_episodes 300]
        [--out results/data_structure]

For each run folder (a meta-trained MAML, say, from ``experiments.study --study ranking``)
and for the same learner untrained (its initialisation at iteration 0, built from the run's
seed), adapts to ``--n_episodes`` imbalanced meta-test episodes of the run's ID and OOD
datasets with posterior means (deterministic for MAML) and reports:

- **class imbalance**: query accuracy of a class by its number of support shots (the
  query is balanced, ``--query`` rows per class): if small classes are learned worse, a
  per-class loss weight (ω) has something to correct;
- **distribution shift**: what meta-training bought over the untrained initialisation, in
  and out of distribution: if the meta-learned initialisation helps less on OOD tasks, a
  task-dependent modulation of it (z) has something to correct.

Writes ``data_structure.json`` and ``data_structure.md`` in ``--out``. The episodes are
the meta-test's own (the run's seed and ``Stream.META_TEST``), so the numbers of a trained
run match its ``test_*.json`` with the same settings.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from taml.episodic.build import build_learner, samplers_for
from taml.episodic.config import Config
from taml.episodic.resume import upgrade_learner_state
from taml.run import checkpoint
from taml.run.seeds import Stream, numpy_stream

# shot bins of the class-imbalance table: (lowest, highest) support shots of a class
SHOT_BINS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 20), (21, 50))


@torch.no_grad()
def class_accuracies(learner, sampler, n_episodes: int, metabatch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per (episode, class): its support shots and its query accuracy, both ``[E * way]``."""
    shots, accuracy = [], []
    remaining = n_episodes
    while remaining > 0:
        batch = sampler.sample(min(metabatch, remaining), rng)
        logits = learner(batch, sample=False).query_logits  # [T, way * query, way]
        correct = (logits.argmax(-1) == batch.query_labels).double()
        way = batch.class_counts.shape[1]
        per_class = torch.stack([correct[:, batch.query_labels[0] == c].mean(1)
                                 for c in range(way)], dim=1)  # [T, way]
        shots.append(batch.class_counts.numpy().ravel())
        accuracy.append(per_class.numpy().ravel())
        remaining -= len(batch.class_counts)
    return np.concatenate(shots), np.concatenate(accuracy)


def by_shots(shots: np.ndarray, accuracy: np.ndarray) -> dict[str, dict]:
    """Mean query accuracy (%) of the classes in each shot bin, and how many there were."""
    table = {}
    for low, high in SHOT_BINS:
        chosen = (shots >= low) & (shots <= high)
        if chosen.any():
            table[f"{low}-{high}"] = {"accuracy": float(100 * accuracy[chosen].mean()),
                                      "n_classes": int(chosen.sum())}
    return table


def saved_config(saved: dict) -> Config:
    """The Config a run was trained with (its checkpoint's), fields added since at their
    defaults."""
    known = {f.name for f in fields(Config)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
    return Config(**{**values, "progress": False})


def probe(run_dir: Path, n_episodes: int) -> dict:
    """The class-imbalance and shift readings of one trained run and its untrained init."""
    state = checkpoint.load(run_dir / checkpoint.BEST if (run_dir / checkpoint.BEST).is_file()
                            else run_dir / checkpoint.LATEST, "cpu", family="episodic")
    cfg = saved_config(state["config"])
    trained = build_learner(cfg)
    trained.load_state_dict(upgrade_learner_state(state, trained)[0])  # runs of any version
    untrained = build_learner(cfg)  # the run's iteration-0 initialisation (same seed)
    result = {"run": str(run_dir), "method": cfg.method, "iteration": state["iteration"],
              "n_episodes": n_episodes, "sets": []}
    for role, names in (("id", cfg.id_dataset), ("ood", cfg.ood_dataset)):
        for name, sampler in samplers_for(cfg, names, "test").items():
            entry = {"role": role, "dataset": name}
            for label, learner in (("trained", trained), ("untrained", untrained)):
                learner.eval()
                rng = numpy_stream(cfg.seed, Stream.META_TEST, len(result["sets"]))  # meta_test's
                shots, accuracy = class_accuracies(learner, sampler, n_episodes,
                                                   cfg.metabatch, rng)
                entry[label] = {"accuracy": float(100 * accuracy.mean()),
                                "by_shots": by_shots(shots, accuracy)}
            entry["gain"] = entry["trained"]["accuracy"] - entry["untrained"]["accuracy"]
            result["sets"].append(entry)
    return result


def markdown(results: list[dict]) -> str:
    bins = [f"{low}-{high}" for low, high in SHOT_BINS
            if any(f"{low}-{high}" in s["trained"]["by_shots"] for r in results
                   for s in r["sets"])]
    lines = ["Query accuracy (%) of a class by its support shots, trained learner:", "",
             "| run | set | " + " | ".join(f"{b} shots" for b in bins) + " |",
             "|---|---|" + "---|" * len(bins)]
    for r in results:
        for s in r["sets"]:
            cells = [f"{s['trained']['by_shots'][b]['accuracy']:.1f}"
                     if b in s["trained"]["by_shots"] else "-" for b in bins]
            lines.append(f"| {r['method']} ({Path(r['run']).name}) | {s['role']}/{s['dataset']}"
                         f" | " + " | ".join(cells) + " |")
    lines += ["", "What meta-training bought over the untrained initialisation (%):", "",
              "| run | set | untrained | trained | gain |", "|---|---|---|---|---|"]
    for r in results:
        for s in r["sets"]:
            lines.append(f"| {r['method']} ({Path(r['run']).name}) | {s['role']}/{s['dataset']}"
                         f" | {s['untrained']['accuracy']:.1f} | {s['trained']['accuracy']:.1f}"
                         f" | {s['gain']:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="meta-trained run folders")
    parser.add_argument("--n_episodes", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("results/data_structure"))
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / checkpoint.BEST).is_file() and not (run / checkpoint.LATEST).is_file():
            parser.error(f"no checkpoint in {run}: meta-train it first (main.py --mode "
                         "meta_train --savedir ...)")
    results = [probe(run, args.n_episodes) for run in args.runs]
    text = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_structure.json").write_text(json.dumps(results, indent=2))
    (args.out / "data_structure.md").write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
