"""Ablation studies at the demo's settings, several seeds, as docs/studies.md reports them.

    python -m experiments.study --study variables [--seeds 0 1 2] [--workers 2]
    python -m experiments.study --study schedule --n_train_iters 600
    python -m experiments.study --study ranking            (1500 iterations by default)

``variables``: Meta-SGD, then each of z, ω, γ alone on top of it, and Bayesian TAML (all
four), each meta-tested with posterior means, one posterior sample and the demo's MC
samples: where Bayesian TAML's out-of-distribution accuracy comes from, and whether the gain
of sampling is an ensemble effect (``1 MC sample`` would then not have it).

``schedule``: a longer schedule, validated every 100 iterations: the KL normaliser
(``task`` vs the original's ``padded``) for Bayesian TAML and Meta-SGD + z, and validation
with posterior means vs MC samples (``--n_val_mc_samples``: the training is identical, only
the checkpoint kept as ``best.pt`` may differ), both meta-tested with the demo's MC samples.

``ranking``: the paper's claim, MAML < Meta-SGD < Bayesian TAML, over seeds at a schedule
long enough to see whether the order settles: the three learners validated every 100
iterations (the curves: ``curves.png``), Bayesian TAML meta-tested with posterior means and
the demo's MC samples (the paper's protocol), and Bayesian TAML again with the original's
initial posteriors (``--sigma_init original``, softplus(0), beside taml's default narrow
start: the slow-start remedy).

Every run is an ordinary ``main.py`` run (``<savedir>/<variant>/seed<k>``), started as a
subprocess with one thread, ``--workers`` at a time (on 2 cores, two one-thread runs do
more work than one two-thread run; results depend on the thread count through the order of
float sums, so the tables say it). Re-running resumes: finished runs and tests are reused.
Writes ``study.json`` (every run's validation and test results) and ``study.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from experiments.demo import accuracy, demo_flags, demo_settings, is_stochastic
from taml.episodic.balancing import BALANCING_FILE, LAYERS, tendencies
from taml.episodic.build import samplers_for
from taml.episodic.config import parse_config
from taml.episodic.evaluate import predictor_label
from taml.episodic.learners import bayesian_taml, maml, meta_sgd, method_name, method_title
from taml.episodic.train import N_PLOT_TASKS

MAIN = Path(__file__).resolve().parent.parent / "main.py"
STUDIES = ("variables", "schedule", "ranking")
# the iterations of a study with no --n_train_iters (None: the demo's)
STUDY_ITERS = {"variables": None, "schedule": 600, "ranking": 1500}


@dataclass(frozen=True)
class Variant:
    name: str
    folder: str
    switches: tuple[str, ...]
    test_mc: tuple[int, ...]  # meta-test predictors: 0 = posterior means (or deterministic)


def learner_variant(switches: tuple[str, ...], test_mc: tuple[int, ...],
                    extra: tuple[str, ...] = (), title: str = "", folder: str = "") -> Variant:
    """The run of these switches (``Config`` fields) and ``extra`` flags, with the title and
    the run folder the learners' name table gives the switches (the folder is main.py's
    default savedir's), plus ``title`` and ``folder`` for what ``extra`` changes."""
    name = method_name(switches)
    return Variant(method_title(name) + title, name + folder,
                   (*(f"--{s}" for s in switches), *extra), test_mc)


def variants(study: str, mc: int) -> list[Variant]:
    """The runs of a study; ``mc`` is the demo's number of meta-test posterior samples."""
    sampled = (0, 1, mc)
    meta_sgd_z = (*meta_sgd.SWITCHES, "z_on")
    if study == "variables":  # Meta-SGD, then each balancing variable alone on top of it
        return [
            learner_variant(meta_sgd.SWITCHES, (0,)),
            *(learner_variant((*meta_sgd.SWITCHES, s), sampled)
              for s in ("z_on", "omega_on", "gamma_on")),
            learner_variant(bayesian_taml.SWITCHES, sampled),
        ]
    if study == "schedule":
        padded = ("--kl_normaliser", "padded")
        mc_val = ("--n_val_mc_samples", "3")
        return [
            learner_variant(bayesian_taml.SWITCHES, (mc,)),
            learner_variant(bayesian_taml.SWITCHES, (), padded, ", padded KL", "_padded"),
            learner_variant(bayesian_taml.SWITCHES, (mc,), mc_val, ", MC validation",
                            "_mc_val"),
            learner_variant(meta_sgd_z, ()),
            learner_variant(meta_sgd_z, (), padded, ", padded KL", "_padded"),
        ]
    if study == "ranking":
        # taml's default σ at initialisation (bayesian_taml.DEFAULT_SIGMA_INIT) and the
        # original's softplus(0), the slow-start remedy against what it remedies
        original = ("--sigma_init", "original")
        return [
            learner_variant(maml.SWITCHES, (0,)),
            learner_variant(meta_sgd.SWITCHES, (0,)),
            learner_variant(bayesian_taml.SWITCHES, (0, mc)),
            learner_variant(bayesian_taml.SWITCHES, (0, mc), original,
                            ", original σ init", "_sigma_original"),
        ]
    raise ValueError(f"unknown study {study!r}: {', '.join(STUDIES)}")


def prepare_data(flags: list[str]) -> None:
    """Generates (or checks) every split the runs read, once, before the parallel runs start:
    two runs generating the same dataset at once would only do the work twice, but this also
    stops a study with a missing dataset before any run starts."""
    cfg = parse_config([*flags, "--no_progress"])
    for split in ("train", "val", "test"):
        samplers_for(cfg, (*cfg.id_dataset, *cfg.ood_dataset), split)


def run_main(args: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "a") as out:
        done = subprocess.run([sys.executable, str(MAIN), *args, "--no_progress"], env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({done.returncode}); see {log}")


def test_file(run_dir: Path, n_steps: int, n_mc: int) -> Path:
    return run_dir / f"test_step{n_steps}_mc{n_mc}.json"


def run_one(variant: Variant, seed: int, flags: list[str], savedir: Path, n_steps: int) -> dict:
    """Meta-trains (or resumes) one run and meta-tests it with each of its predictors."""
    run_dir = savedir / variant.folder / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    common = [*flags, "--seed", str(seed), "--savedir", str(run_dir), *variant.switches]
    start = time.perf_counter()
    run_main(["--mode", "meta_train", *common], run_dir / "study.log")
    tests = {}
    for n_mc in variant.test_mc:
        path = test_file(run_dir, n_steps, n_mc)
        if not path.is_file():
            run_main(["--mode", "meta_test", *common, "--n_mc_samples", str(n_mc)],
                     run_dir / "study.log")
        tests[n_mc] = json.loads(path.read_text())
    validation = json.loads((run_dir / "validation.json").read_text())
    print(f"  done: {variant.name}, seed {seed} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    run = {"variant": variant.name, "seed": seed, "validation": validation,
           "tests": {str(k): v for k, v in tests.items()}}
    if (run_dir / BALANCING_FILE).is_file():  # ω or γ on: the last printout's tendencies
        record = json.loads((run_dir / BALANCING_FILE).read_text())
        run["balancing"] = {"iteration": record["iteration"], "sets": tendencies(record)}
    return run


def mean_std(values: list[float], digits: int = 1) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_rows(runs: list[dict], stochastic: dict[str, bool]) -> list[dict]:
    """Per (variant, predictor): meta-test accuracy per seed and its mean and std, ID and
    OOD (``table.json``; the demo compares its own ranking with these)."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        for n_mc, report in run["tests"].items():
            by_key.setdefault((run["variant"], n_mc), []).append(report)
    rows = []
    for (name, n_mc), reports in by_key.items():
        row = {"variant": name, "tested_with": predictor_label(stochastic[name], int(n_mc)),
               "n_seeds": len(reports), "iterations": [r["iteration"] for r in reports]}
        for role in ("id", "ood"):
            values = [accuracy(r, role) for r in reports]
            row[role] = {"per_seed": values, "mean": statistics.mean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        rows.append(row)
    return rows


def test_table(runs: list[dict], stochastic: dict[str, bool]) -> str:
    """Meta-test accuracy, mean ± std over seeds, one row per variant and predictor."""
    rows = ["| variant | tested with | ID | OOD | OOD per seed | best at iteration |",
            "|---|---|---|---|---|---|"]
    for row in test_rows(runs, stochastic):
        ids, oods = row["id"]["per_seed"], row["ood"]["per_seed"]
        per_seed = " / ".join(f"{v:.1f}" for v in oods)
        iterations = " / ".join(map(str, row["iterations"]))
        rows.append(f"| {row['variant']} | {row['tested_with']} | {mean_std(ids)} | "
                    f"{mean_std(oods)} | {per_seed} | {iterations} |")
    return "\n".join(rows)


def validation_table(runs: list[dict]) -> str:
    """Validation accuracy (ID / OOD, mean ± std over seeds) at every validated iteration."""
    iterations = sorted({v["iteration"] for run in runs for v in run["validation"]})
    header = "| variant | predictor | " + " | ".join(f"it {i}" for i in iterations) + " |"
    rows = [header, "|---|---|" + "---|" * len(iterations)]
    names = list(dict.fromkeys(run["variant"] for run in runs))
    for name in names:
        own = [run for run in runs if run["variant"] == name]
        cells = []
        for i in iterations:
            points = [v for run in own for v in run["validation"] if v["iteration"] == i]
            ids = [next(iter(p["id"].values())) for p in points]
            oods = [next(iter(p["ood"].values())) for p in points]
            cells.append(f"{mean_std(ids)} / {mean_std(oods)}")
        predictor = own[0]["validation"][0]["predictor"] if own[0]["validation"] else "-"
        rows.append(f"| {name} | {predictor} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def tendency_table(runs: list[dict]) -> str:
    """The balancing variables' tendencies at the last printout (100 validation tasks per
    set), mean ± std over seeds: ω's small-over-large class weight ratio and its correlation
    with the class size; γ's correlation with the task size N, per layer."""
    rows = ["| variant | set | ω small / large class | r(ω, N_c) | "
            + " | ".join(f"r(γ {layer}, N)" for layer in LAYERS) + " |",
            "|---|---|---|---|" + "---|" * len(LAYERS)]
    names = list(dict.fromkeys(run["variant"] for run in runs if "balancing" in run))
    for name in names:
        own = [run["balancing"]["sets"] for run in runs if run["variant"] == name
               and "balancing" in run]
        for index, first in enumerate(own[0]):
            sets = [sets[index] for sets in own]

            def cell(get, sets=sets):
                values = [v for v in (get(s) for s in sets) if v is not None and v == v]
                return mean_std(values, digits=2)

            rows.append(
                f"| {name} | {first['role']} | {cell(lambda s: s.get('omega_small_over_large'))}"
                f" | {cell(lambda s: s.get('omega_r'))} | "
                + " | ".join(cell(lambda s, layer=layer: s.get("gamma_r", {}).get(layer))
                             for layer in LAYERS) + " |")
    return "\n".join(rows)


def plot_curves(runs: list[dict], path: Path, title: str) -> None:
    """Validation accuracy against iteration, ID and OOD side by side, one line per variant
    (mean over seeds, a band of ± one std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    names = list(dict.fromkeys(run["variant"] for run in runs))
    for name in names:
        own = [run["validation"] for run in runs if run["variant"] == name]
        iterations = sorted({v["iteration"] for history in own for v in history})
        for ax, role in zip(axes, ("id", "ood"), strict=True):
            curves = [[next(iter(v[role].values())) for v in sorted(history,
                                                                  key=lambda v: v["iteration"])]
                      for history in own if len(history) == len(iterations)]
            if not curves:
                continue
            values = np.asarray(curves)
            mean, std = values.mean(0), values.std(0)
            ax.plot(iterations, mean, label=name)
            ax.fill_between(iterations, mean - std, mean + std, alpha=0.15)
    for ax, role in zip(axes, ("in distribution", "out of distribution"), strict=True):
        ax.set_title(role)
        ax.set_xlabel("meta-training iteration")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=list(STUDIES), required=True)
    parser.add_argument("--savedir", default=None, help="default results/study_<study>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n_train_iters", type=int, default=None,
                        help="default: the demo's (variables), 600 (schedule), 1500 (ranking)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--quick", action="store_true", help="the demo's --quick settings")
    args = parser.parse_args(argv)
    n_iters = args.n_train_iters or STUDY_ITERS[args.study]
    settings = demo_settings(n_iters, args.quick)
    flags = [*demo_flags(settings)]
    if args.data_root:
        flags += ["--data_root", args.data_root]
    savedir = Path(args.savedir or f"results/study_{args.study}")
    savedir.mkdir(parents=True, exist_ok=True)
    chosen = variants(args.study, settings.n_mc_samples)
    prepare_data(flags)
    names = [v.name for v in chosen]
    # seed by seed: a study stopped early has whole seeds, and a re-run with fewer
    # --seeds tabulates them
    jobs = [(v, seed) for seed in args.seeds for v in chosen]
    print(f"{len(jobs)} runs of {settings.n_train_iters} iterations, {args.workers} at a time, "
          f"one thread each; runs in {savedir}", flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_one, v, seed, flags, savedir, settings.n_steps)
                   for v, seed in jobs]
        runs = sorted((f.result() for f in futures), key=lambda r: (names.index(r["variant"]),
                                                                      r["seed"]))
    stochastic = {v.name: is_stochastic(list(v.switches)) for v in chosen}
    tested = [run for run in runs if run["tests"]]
    text = (f"# experiments.study --study {args.study}: {settings.n_train_iters} iterations, seeds "
            f"{' '.join(map(str, args.seeds))}, one thread per run\n\n"
            f"Meta-test on {settings.n_test_episodes} episodes per dataset, mean ± std over "
            f"seeds (%):\n\n{test_table(tested, stochastic)}\n\n"
            f"Validation on {settings.n_val_episodes} episodes per dataset, ID / OOD, mean ± std"
            f" over seeds (%):\n\n{validation_table(runs)}\n")
    if any("balancing" in run for run in runs):
        text += (f"\nThe balancing variables at the last printout (iteration "
                 f"{settings.n_train_iters}, {N_PLOT_TASKS} validation tasks per set), mean ±"
                 f" std over seeds:\n\n{tendency_table(runs)}\n")
    wall = time.perf_counter() - start
    summary = {"study": args.study, "settings": {**settings.__dict__, "seeds": args.seeds},
               "runs": runs, "wall_seconds": wall}
    (savedir / "study.json").write_text(json.dumps(summary, indent=2))
    command = " ".join(["python -m experiments.study", *(argv if argv is not None
                                                          else sys.argv[1:])])
    (savedir / "table.json").write_text(json.dumps({
        "study": args.study, "command": command, "n_train_iters": settings.n_train_iters,
        "seeds": args.seeds, "n_test_episodes": settings.n_test_episodes,
        "rows": test_rows(tested, stochastic)}, indent=2))
    (savedir / "study.md").write_text(text)
    plot_curves(runs, savedir / "curves.png",
                f"validation on {settings.n_val_episodes} episodes, mean ± std over seeds "
                f"{' '.join(map(str, args.seeds))}")
    print("\n" + text)
    print(f"Wall time: {wall:.0f} s; {savedir / 'study.json'}, {savedir / 'study.md'}")
    return summary


if __name__ == "__main__":
    main()
