"""The demo: MAML, Meta-SGD and Bayesian TAML on the embedded dataset, end to end, on a CPU.

    python -m experiments.demo [--savedir results/demo] [--n_train_iters 300] [--quick]
        [--precision fp32|bf16]

Meta-trains the three learners of the paper's Table 1 on ``synthetic`` (generated on first
use, no download) with imbalanced episodes, validates on ``synthetic`` and its OOD companion
``synthetic_ood``, meta-tests each with 95% confidence intervals, and prints one comparison
table and the balancing-variable tables of Bayesian TAML. Every row has the same schedule,
seed and test episodes (:class:`DemoSettings`); Bayesian TAML is tested with the softmax
averaged over posterior samples as the paper and the runfiles do, and the table says how
each row was tested. Each run is an ordinary ``main.py`` run in ``<savedir>/<method>``;
re-running resumes or, when finished, only re-tests. ``summary.json`` records the settings
and the demo's wall time, which it also prints.

The schedule is scaled down from the paper's (50 000 iterations, 1..50 shots, 15 queries)
to run in minutes on 2 CPU cores; docs/running.md has the full-size commands.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from taml.episodic.balancing import BALANCING_FILE, table_lines
from taml.episodic.config import PRECISIONS, parse_config
from taml.episodic.evaluate import meta_test, predictor_label
from taml.episodic.learners import LEARNERS, bayesian_taml
from taml.episodic.train import meta_train

# the paper's Table 1 rows, from the learners' name table: title -> (run folder, switches)
METHODS = {title: (name, [f"--{switch}" for switch in switches])
           for name, (title, switches) in LEARNERS.items()}
STOCHASTIC_SWITCHES = ("--omega_on", "--gamma_on", "--z_on")  # posterior-sampled variables

DEFAULT_ITERS = 200
QUICK_ITERS = 4
LONGER_ITERS = 600  # the longer run the schedule note prints (docs/demo.md)
# the ranking study's table (python -m experiments.study --study ranking, its table.json),
# kept in the docs: the demo prints it beside its own one-seed ranking
ESTABLISHED = Path(__file__).resolve().parent.parent / "docs" / "ranking.json"
# posterior samples of Bayesian TAML's meta-test: the runfiles' value
# (runfiles/experiment.sh: --n_mc_samples 10 for every Bayesian TAML variant)
MC_SAMPLES = 10


# Why the demo's MAML takes --inner_lr 0.05 and not the original's 0.5: the classifier starts
# at exactly zero, so the first inner step sets it to -inner_lr times its gradient, and with
# 0.5 the logits of a fresh network overshoot (query cross-entropy 3 to 10); MAML then sits
# at chance for hundreds of iterations (measured: 21.4% ID validation accuracy after 150
# iterations) before it learns to shrink its features, which the paper's 50 000 iterations
# absorb but a 300-iteration demo does not (0.05: 73.3% after 150). Meta-SGD and Bayesian
# TAML learn their step sizes (alpha starts at 0.01) and ignore --inner_lr.
DEMO_INNER_LR = 0.05


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo runs with, the same for every method (``summary.json``)."""

    n_train_iters: int
    val_freq: int  # also the checkpoint frequency
    n_val_episodes: int
    n_test_episodes: int
    way: int
    max_shot: int
    query: int
    metabatch: int
    n_steps: int
    inner_lr: float  # MAML's; Meta-SGD and Bayesian TAML learn their step sizes
    meta_lr: float
    n_mc_samples: int  # Bayesian TAML's meta-test; the deterministic learners take none
    seed: int
    id_dataset: str
    ood_dataset: str
    print_freq: int
    log_freq: int


# Why these sizes (measured on 2 cores, Bayesian TAML): the demo must run in about 5 minutes
# here so that it stays under 10 on a machine 2x slower, and the 10-sample meta-test is its
# largest part (each sample is a full adaptation: 43 ms per episode and sample at max_shot
# 10, 70 ms at 20). max_shot 20 -> 10 took a meta-iteration from 0.69 to 0.41 s, metabatch
# 4 -> 2 to 0.21 s (keeping the number of Adam steps); 150 test episodes per dataset keep
# the 95% intervals near 2 points. torchrun with two one-thread processes gained only 8%.
def demo_settings(n_train_iters: int | None = None, quick: bool = False) -> DemoSettings:
    """The demo's settings for ``n_train_iters`` (default 200, or 4 with ``quick``)."""
    n_iters = n_train_iters or (QUICK_ITERS if quick else DEFAULT_ITERS)
    return DemoSettings(
        n_train_iters=n_iters,
        val_freq=max(n_iters // 2, 1) if n_iters <= DEFAULT_ITERS else 100,
        n_val_episodes=4 if quick else 40,
        n_test_episodes=8 if quick else 150,
        way=5,
        max_shot=5 if quick else 10,
        query=5,
        metabatch=2,
        n_steps=1 if quick else 3,
        inner_lr=DEMO_INNER_LR,
        meta_lr=1e-3,
        n_mc_samples=2 if quick else MC_SAMPLES,
        seed=0,
        id_dataset="synthetic",
        ood_dataset="synthetic_ood",
        print_freq=n_iters,
        log_freq=max(n_iters // 10, 1),
    )


def demo_flags(s: DemoSettings) -> list[str]:
    """main.py flags shared by every method's meta-train and meta-test."""
    return [
        "--id_dataset", s.id_dataset, "--ood_dataset", s.ood_dataset,
        "--way", str(s.way), "--max_shot", str(s.max_shot), "--query", str(s.query),
        "--metabatch", str(s.metabatch), "--inner_lr", str(s.inner_lr),
        "--meta_lr", str(s.meta_lr), "--seed", str(s.seed),
        "--n_train_iters", str(s.n_train_iters), "--save_freq", str(s.val_freq),
        "--val_freq", str(s.val_freq), "--n_val_episodes", str(s.n_val_episodes),
        "--print_freq", str(s.print_freq), "--log_freq", str(s.log_freq),
        "--n_steps", str(s.n_steps), "--n_test_episodes", str(s.n_test_episodes),
    ]


def is_stochastic(switches: list[str]) -> bool:
    return any(flag in STOCHASTIC_SWITCHES for flag in switches)


def meta_test_samples(switches: list[str], s: DemoSettings) -> int:
    """Posterior samples of a method's meta-test: the settings' for a Bayesian learner,
    none (it has nothing to sample) for MAML and Meta-SGD."""
    return s.n_mc_samples if is_stochastic(switches) else 0


def tested_with(switches: list[str], s: DemoSettings) -> str:
    """'deterministic', 'posterior means' or 'K MC samples': how a row was tested."""
    return predictor_label(is_stochastic(switches), meta_test_samples(switches, s))


def schedule_note(longer: DemoSettings) -> str:
    """Printed under the table: where its reading is (the measurements live in the docs,
    not in this code) and the command of the longer run with the schedule it really runs."""
    return (
        "How to read this table (measured over seeds, with the commands): docs/demo.md and\n"
        "docs/studies.md. Longer: python -m experiments.demo --n_train_iters "
        f"{longer.n_train_iters}\n(validated every {longer.val_freq} iterations on "
        f"{longer.n_val_episodes} episodes, tested on {longer.n_test_episodes})."
    )


def accuracy(report: dict, role: str) -> float:
    """A meta-test report's accuracy (%) on its ``role`` ("id" / "ood") dataset."""
    return next(r["accuracy"] for r in report["results"] if r["role"] == role)


def ranking_reading(results: dict[str, dict]) -> list[str]:
    """The table's ranking in words, from its numbers: per role the methods from best to
    worst, and which neighbours' 95% intervals overlap (an order those do not establish)."""
    lines = []
    for role, label in (("id", "In distribution"), ("ood", "Out of distribution")):
        cells = {m: next(r for r in report["results"] if r["role"] == role)
                 for m, report in results.items()
                 if any(r["role"] == role for r in report["results"])}
        order = sorted(cells, key=lambda m: -cells[m]["accuracy"])
        line = f"{label}: " + " > ".join(f"{m} {cells[m]['accuracy']:.2f}" for m in order)
        overlaps = [f"{a} / {b}" for a, b in zip(order, order[1:], strict=False)
                    if cells[a]["accuracy"] - cells[a]["ci95"]
                    <= cells[b]["accuracy"] + cells[b]["ci95"]]
        if overlaps:
            line += f" (95% intervals overlap: {', '.join(overlaps)})"
        lines.append(line + ".")
    return lines


def established_reading(results: dict[str, dict], tested: dict[str, str],
                        path: Path = ESTABLISHED) -> list[str]:
    """The ranking study's table (``path``: its table.json, kept in the docs) for the demo's
    rows as they are tested, and whether the demo's order is the study's, per role."""
    if not path.is_file():
        return [f"(no {path}: python -m experiments.study --study ranking writes it as "
                "table.json)"]
    study = json.loads(path.read_text())
    rows = {row["variant"]: row for row in study["rows"]
            if row["variant"] in results and row["tested_with"] == tested[row["variant"]]}
    if len(rows) < len(results):
        return [f"({path} has no row for {sorted(set(results) - set(rows))})"]
    seeds = ", ".join(map(str, study["seeds"]))
    lines = [f"Over seeds {seeds} at {study['n_train_iters']} iterations ({study['command']};"
             f" docs/studies.md), mean ± std over seeds:",
             *(f"  {m:<14} ID {rows[m]['id']['mean']:.2f} ± {rows[m]['id']['std']:.2f}   "
               f"OOD {rows[m]['ood']['mean']:.2f} ± {rows[m]['ood']['std']:.2f}   "
               f"({rows[m]['tested_with']})" for m in results)]
    for role, label in (("id", "in distribution"), ("ood", "out of distribution")):
        theirs = sorted(rows, key=lambda m: -rows[m][role]["mean"])
        ours = sorted(results, key=lambda m: -accuracy(results[m], role))
        verdict = ("the demo's order is the same" if ours == theirs else
                   "the demo's order differs: its one seed at its schedule does not "
                   "establish a ranking")
        lines.append(f"  {label}: {' > '.join(theirs)}; {verdict}.")
    return lines


def balancing_tables(run_dir: Path) -> str:
    """The γ/ω tables of the run's last balancing printout, from its balancing.json (the
    same text as train.log's)."""
    path = run_dir / BALANCING_FILE
    if not path.exists():
        return f"(no {path}: the run predates it; re-train to print the tables)"
    return "\n".join(table_lines(json.loads(path.read_text()))).lstrip("\n").rstrip()


def comparison_table(results: dict[str, dict], tested: dict[str, str], id_name: str,
                     ood_name: str) -> str:
    """One row per method: ID and OOD accuracy, and how it was tested."""
    header = (f"| {'method':<14}| {id_name + ' (ID)':<18}| {ood_name + ' (OOD)':<22}"
              f"| {'tested with':<16}|")
    rule = "|" + "-" * 15 + "|" + "-" * 19 + "|" + "-" * 23 + "|" + "-" * 17 + "|"
    rows = [header, rule]
    for method, report in results.items():
        cells = {r["role"]: f"{r['accuracy']:.2f} ± {r['ci95']:.2f}" for r in report["results"]}
        rows.append(f"| {method:<14}| {cells.get('id', '-'):<18}| {cells.get('ood', '-'):<22}"
                    f"| {tested[method]:<16}|")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    wall_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--savedir", default="results/demo")
    parser.add_argument("--n_train_iters", type=int, default=None,
                        help=f"meta-training iterations per method (default {DEFAULT_ITERS}; "
                             f"{QUICK_ITERS} if --quick)")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                        help="main.py's --precision for every method (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    settings = demo_settings(args.n_train_iters, args.quick)
    common = demo_flags(settings)
    if args.data_root:
        common += ["--data_root", args.data_root]
    if args.no_progress:
        common.append("--no_progress")
    if args.precision != "fp32":
        common += ["--precision", args.precision]

    savedir = Path(args.savedir)
    results, seconds, tested, flags = {}, {}, {}, {}
    for method, (folder, switches) in METHODS.items():
        run_dir = savedir / folder
        print(f"\n=== {method}: meta-training in {run_dir} ===", flush=True)
        start = time.perf_counter()
        meta_train(parse_config(["--savedir", str(run_dir), *common, *switches]))
        test_flags = ["--n_mc_samples", str(meta_test_samples(switches, settings))]
        report = meta_test(parse_config(["--mode", "meta_test", "--savedir", str(run_dir),
                                         *common, *switches, *test_flags]))
        seconds[method] = time.perf_counter() - start
        tested[method] = tested_with(switches, settings)
        results[method] = {**report, "tested_with": tested[method]}
        flags[method] = [*common, *switches, *test_flags]

    reading = [f"This run (seed {settings.seed}, {settings.n_train_iters} iterations):",
               *(f"  {line}" for line in ranking_reading(results)),
               *established_reading(results, tested)]
    note = "\n".join(reading) + "\n\n" + schedule_note(demo_settings(LONGER_ITERS))
    table = comparison_table(results, tested, settings.id_dataset, settings.ood_dataset)
    bayesian_dir = savedir / bayesian_taml.NAME
    tables = balancing_tables(bayesian_dir)
    print(f"\n=== Meta-test accuracy (%), mean ± 95% CI over {settings.n_test_episodes} "
          "episodes per dataset ===")
    print(table)
    print("\n" + note)
    print("\n=== Bayesian TAML: balancing variables (posterior means) ===")
    print(tables)
    print("\nTime (meta-train + meta-test): "
          + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()))
    print(f"\nPlots: {bayesian_dir / 'balancing_id.png'}, {bayesian_dir / 'balancing_ood.png'}")
    wall_seconds = time.perf_counter() - wall_start
    summary = {
        "settings": {**asdict(settings),
                     "methods": {m: {"switches": sw, "tested_with": tested[m]}
                                 for m, (_, sw) in METHODS.items()}},
        "methods": results, "seconds": seconds, "flags": flags,
        "wall_seconds": wall_seconds,
    }
    savedir.mkdir(parents=True, exist_ok=True)
    (savedir / "summary.json").write_text(json.dumps(summary, indent=2))
    (savedir / "summary.md").write_text(table + "\n\n" + note + "\n\n```\n" + tables
                                        + "\n```\n")
    print(f"Summary: {savedir / 'summary.json'}, {savedir / 'summary.md'}")
    print(f"Wall time of the demo: {wall_seconds:.0f} s ({wall_seconds / 60:.1f} min)")
    return summary


if __name__ == "__main__":
    main()
