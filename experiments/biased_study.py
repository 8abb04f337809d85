"""The biased-data methods at settings chosen fairly, over seeds: each paper's own setting on
the embedded glyphs (or the real UCI digits), every method tuned with the same small budget
on a held-out validation split, then trained on three seeds at its chosen values.

    python -m experiments.biased_study [--dataset glyphs|digits] [--settings long_tail ...]
                                       [--seeds 0 1 2] [--workers 2] [--savedir DIR]

The protocol (docs/biased.md, "Settings chosen on a validation split"):

1. Every run holds out ``--val_per_class`` (20) clean images per class from the training
   split: the val set. It is not the test set, and not the meta set that TML, L2RW and MW-Net
   learn their weights from.
2. Tuning, seed 0: each method is trained at each lr of :data:`LRS` (L2RW's MNIST LeNet lr
   1e-3 and TML's 0.01 are in it), the meta-learned ones at each of two meta settings as
   well (:data:`META_GRID`); the value with the best validation balanced accuracy (at the
   end of training) wins, the smaller lr on a tie.
3. Seeds 0-2 at the chosen values (seed 0's run is the tuning run itself). Test metrics of
   the final model (test.json) and, as the originals report, the best test accuracy over the
   periodic evaluations (eval.json): both are in the tables, marked.

Every run is an ordinary ``main.py --mode train`` run in ``<savedir>/<setting>/<method>/
<variant>/seed<k>``, started as a one-thread subprocess, ``--workers`` at a time; re-running
reuses finished runs. Writes ``study.json`` (every run's validation and test numbers, the
chosen values) and ``study.md`` (the tables); ``--publish FILE`` also writes the chosen
values and tables where the demo reads them (docs/biased_settings.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

MAIN = Path(__file__).resolve().parent.parent / "main.py"
PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "biased_settings.json"
LRS = (0.001, 0.005, 0.01, 0.02, 0.05)
VAL_PER_CLASS = 20
# the two meta settings each meta-learned method is tuned over (besides the lr): TML's outer
# step (the original's 0.1, and 1.0) at both loss scales, the question of its 1/C scale
# (docs/biased.md); MW-Net's two official forms: the noisy-label script's (mean weights,
# Adam 1e-3) and the class-imbalance script's (weights normalised per batch, SGD 1e-5)
META_GRID = {
    "tml": [("--meta_lr", "0.1", "--tml_scale", "simplex"),
            ("--meta_lr", "1.0", "--tml_scale", "simplex"),
            ("--meta_lr", "0.1", "--tml_scale", "classes"),
            ("--meta_lr", "1.0", "--tml_scale", "classes")],
    "mwnet": [("--mwnet_weights", "mean", "--meta_optimizer", "adam", "--meta_lr", "1e-3"),
              ("--mwnet_weights", "normalised", "--meta_optimizer", "sgd", "--meta_lr",
               "1e-5")],
}
TITLES = {"erm": "ERM", "class_balanced": "class-balanced", "focal": "focal", "tml": "TML",
          "l2rw": "L2RW", "mwnet": "MW-Net"}


@dataclass(frozen=True)
class Setting:
    """One paper's experiment: its data flags, its methods and the columns of its table."""

    name: str
    title: str
    flags: tuple[str, ...]
    methods: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (test.json key, column title)
    epochs: int


SCHEDULE = ("--network", "lenet_tml", "--batch_size", "100", "--meta_batch_size", "100",
            "--momentum", "0.9", "--weight_decay", "5e-4", "--meta_per_class", "10")
# the noise tables' columns: accuracy and the weight the method puts on corrupted labels
NOISE_COLUMNS = (("accuracy", "accuracy"), ("weight_mass_on_corrupted", "weight on corrupted"),
                 ("corrupted_share", "corrupted share"))
SETTINGS = {
    "long_tail": Setting(
        "long_tail", "Long tail, imbalance factor 100 (MW-Net, L2RW, class-balanced, focal)",
        ("--bias", "long_tail", "--imbalance_factor", "100"),
        ("erm", "class_balanced", "focal", "l2rw", "mwnet"),
        (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
         ("tail_recall", "tail recall")), 30),
    "noise_uniform": Setting(
        "noise_uniform", "Label noise, 40% uniform (MW-Net, L2RW)",
        ("--bias", "noise", "--noise_type", "uniform", "--noise_rate", "0.4"),
        ("erm", "l2rw", "mwnet"),
        NOISE_COLUMNS, 30),
    "noise_flip": Setting(
        "noise_flip", "Label noise, 40% flip to two other classes (MW-Net's flip, flip2)",
        ("--bias", "noise", "--noise_type", "flip2", "--noise_rate", "0.4"),
        ("erm", "l2rw", "mwnet"),
        NOISE_COLUMNS, 30),
    "binary": Setting(
        "binary", "Binary imbalance, 2 vs 3, majority share 0.995 (digits: 0.95) (TML, L2RW)",
        ("--bias", "binary", "--ratio", "0.995", "--binary_classes", "2,3"),
        ("erm", "tml", "l2rw"),
        (("minority_recall", "minority recall"), ("minority_precision", "minority precision"),
         ("balanced_accuracy", "balanced acc.")), 400),
}
# what a binary recipe asks for, per dataset (the TML formula's 5000 needs MNIST; glyphs
# have 500 per class, the digits ~150, less the meta and val images: at 0.995 the digits'
# minority class would be empty, so they run at 0.95, 6 minority images)
BINARY_FLAGS = {"glyphs": ("--n_train", "460"),
                "digits": ("--n_train", "115", "--ratio", "0.95")}


def with_flags(setting: Setting, extra: list[str]) -> Setting:
    """``setting`` with more data flags (``--data_root DIR``)."""
    return replace(setting, flags=(*setting.flags, *extra)) if extra else setting


def data_flags(setting: Setting, dataset: str) -> list[str]:
    flags = ["--dataset", dataset, *setting.flags, "--val_per_class", str(VAL_PER_CLASS)]
    if setting.name == "binary":
        flags += list(BINARY_FLAGS.get(dataset, ()))
    return flags


# the digits' sets are small (long tail 298 images: 2 steps per epoch at batch 100; binary
# 115: 1 step): more epochs, so that every table trains for as many steps as on the glyphs
DIGITS_EPOCHS = {"long_tail": 150, "binary": 1600}


def schedule_flags(setting: Setting, dataset: str = "glyphs") -> list[str]:
    e = DIGITS_EPOCHS.get(setting.name, setting.epochs) if dataset == "digits" else setting.epochs
    return [*SCHEDULE, "--epochs", str(e), "--lr_schedule", str(e * 3 // 4),
            "--eval_every", "50", "--save_every", "100000", "--log_every", "50"]


def variants(method: str) -> list[tuple[str, tuple[str, ...]]]:
    """(folder name, flags) of each point of a method's tuning grid."""
    meta = META_GRID.get(method, [()])
    out = []
    for lr, extra in itertools.product(LRS, meta):
        name = "lr" + str(lr) + "".join("_" + v for v in extra[1::2])
        out.append((name, ("--lr", str(lr), *extra)))
    return out


def run_main(args: list[str], run_dir: Path) -> dict:
    """Trains one run (or reuses a finished one) and returns its test.json."""
    report = run_dir / "test.json"
    if report.is_file() and _same_run(args, run_dir):
        return json.loads(report.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(run_dir / "study.log", "a") as out:
        done = subprocess.run([sys.executable, str(MAIN), "--mode", "train", *args,
                               "--savedir", str(run_dir), "--no_progress", "--device", "cpu"],
                              env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:  # a method that diverges or sits at chance: recorded, not fatal
        tail = (run_dir / "study.log").read_text().strip().splitlines()[-1:]
        return {"failed": done.returncode, "reason": tail[0] if tail else ""}
    return json.loads(report.read_text())


# what may differ between a finished run and the command that would make it again (the
# chance check only ever stops a run: a finished one was not stopped, with it or without)
_NOT_DEFINING = ("savedir", "data_root", "progress", "device", "network", "chance_check")


def _same_run(args: list[str], run_dir: Path) -> bool:
    """Whether ``run_dir``'s finished run was made by these flags (then it is reused; else
    main.py resumes it, and refuses a flag that changes what was learned)."""
    from taml.biased.config import parse_biased_config

    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        return False
    now = parse_biased_config(args).to_dict()
    saved = json.loads(saved_path.read_text())
    return all(saved.get(k) == (list(v) if isinstance(v, tuple) else v)
               for k, v in now.items() if k not in _NOT_DEFINING)


def best_eval(run_dir: Path) -> float | None:
    """The best test accuracy over the periodic evaluations (what the originals report)."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return None
    return max(e["accuracy"] for e in json.loads(path.read_text()))


def validation_score(report: dict) -> float:
    return report.get("validation", {}).get("balanced_accuracy", -1.0)


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "-"
    array = np.asarray(values)
    std = array.std(ddof=1) if len(array) > 1 else 0.0
    return f"{array.mean():.2f} ± {std:.2f}"


def _jobs(setting: Setting, dataset: str, savedir: Path, pool: ThreadPoolExecutor,
          jobs: list[tuple[str, str, tuple[str, ...], int]], schedule: list[str]) -> list[dict]:
    """Runs (method, variant folder, flags, seed) jobs ``pool``'s workers at a time."""
    common = [*data_flags(setting, dataset), *schedule]

    def job(method, name, flags, seed):
        run_dir = savedir / setting.name / method / name / f"seed{seed}"
        start = time.perf_counter()
        report = run_main(["--method", method, *common, *flags, "--seed", str(seed)], run_dir)
        return {"method": method, "variant": name, "flags": list(flags), "seed": seed,
                "report": report, "best_eval_accuracy": best_eval(run_dir),
                "seconds": time.perf_counter() - start}

    return list(pool.map(lambda a: job(*a), jobs))


def _result(setting: Setting, dataset: str, flags: list[str], chosen: dict[str, dict],
            runs: list[dict]) -> dict:
    return {"setting": setting.name, "title": setting.title, "dataset": dataset,
            "flags": flags,
            "chosen": {m: {"variant": c["variant"], "flags": c["flags"],
                           "validation_balanced_accuracy": validation_score(c["report"])}
                       for m, c in chosen.items()},
            "runs": {m: [r for r in runs if r["method"] == m] for m in setting.methods}}


def study_setting(setting: Setting, dataset: str, seeds: list[int], savedir: Path,
                  pool: ThreadPoolExecutor) -> dict:
    """Tunes each method on the first seed's validation split, then runs the other seeds
    at the chosen values (the first seed's run is the tuning run)."""
    schedule = schedule_flags(setting, dataset)
    tuning = _jobs(setting, dataset, savedir, pool,
                   [(m, n, f, seeds[0]) for m in setting.methods for n, f in variants(m)],
                   schedule)
    chosen = {}
    for method in setting.methods:
        runs = [r for r in tuning if r["method"] == method]
        # best validation balanced accuracy; on a tie the grid's first (the smaller lr)
        chosen[method] = max(runs, key=lambda r: (validation_score(r["report"]),
                                                  -runs.index(r)))
    finals = _jobs(setting, dataset, savedir, pool,
                   [(m, chosen[m]["variant"], tuple(chosen[m]["flags"]), s)
                    for m in setting.methods for s in seeds[1:]], schedule)
    result = _result(setting, dataset, [*data_flags(setting, dataset), *schedule], chosen,
                     [chosen[m] for m in setting.methods] + finals)
    result["tuning"] = tuning
    return result


def run_chosen(setting: Setting, dataset: str, seeds: list[int], savedir: Path,
               pool: ThreadPoolExecutor, chosen: dict[str, dict],
               schedule: list[str] | None = None) -> dict:
    """Every method of ``setting`` at its ``chosen`` values (a published study's) over
    ``seeds``: the demo's tables. ``schedule``: other training flags (the quick smoke run)."""
    schedule = schedule_flags(setting, dataset) if schedule is None else schedule
    runs = _jobs(setting, dataset, savedir, pool,
                 [(m, chosen[m]["variant"], tuple(chosen[m]["flags"]), s)
                  for m in setting.methods for s in seeds], schedule)
    first = {m: next(r for r in runs if r["method"] == m) for m in setting.methods}
    return _result(setting, dataset, [*data_flags(setting, dataset), *schedule], first, runs)


def table(result: dict, setting: Setting) -> str:
    columns = [*setting.columns, ("best_eval_accuracy", "best-eval acc.")]
    head = ("| method | chosen | val. bal. acc. | " + " | ".join(t for _, t in columns)
            + " | failed |")
    rows = [head, "|---" * (len(columns) + 4) + "|"]
    for method, runs in result["runs"].items():
        ok = [r for r in runs if "failed" not in r["report"]]
        cells = []
        for key, _ in columns:
            values = [r[key] if key == "best_eval_accuracy" else r["report"].get(key)
                      for r in ok]
            cells.append(mean_std(values))
        chosen = result["chosen"][method]
        rows.append(f"| {TITLES[method]} | {' '.join(chosen['flags'])} | "
                    f"{100 * chosen['validation_balanced_accuracy']:.1f} | "
                    + " | ".join(cells) + f" | {len(runs) - len(ok)} |")
    seeds = sorted({r["seed"] for runs in result["runs"].values() for r in runs})
    rows.append(f"\n(test %, mean ± std over seeds {', '.join(map(str, seeds))}: the final "
                "model, and best-eval acc. = the best test accuracy over the periodic "
                "evaluations, as the originals report; chosen = the values with the best "
                f"validation balanced accuracy, seed {seeds[0]}, over lr {LRS} and the meta "
                "grid)")
    return "\n".join(rows)


def reading(result: dict, setting: Setting) -> list[str]:
    """Each method against ERM, column by column, seed by seed, from the numbers (a method
    that failed on a seed counts as not better there)."""
    def values(method, key):
        return {r["seed"]: 100 * r["report"][key] for r in result["runs"][method]
                if "failed" not in r["report"] and r["report"].get(key) is not None}

    lines = []
    for method in setting.methods:
        if method == "erm":
            continue
        parts = []
        for key, title in setting.columns:
            if key == "corrupted_share":
                continue
            base, own = values("erm", key), values(method, key)
            seeds = sorted(base)
            if not seeds or not own:
                continue
            # lower is better for the weight a method puts on corrupted labels
            sign = -1 if key == "weight_mass_on_corrupted" else 1
            diffs = [own[s] - base[s] if s in own else None for s in seeds]
            done = [d for d in diffs if d is not None]
            better = sum(1 for d in done if sign * d > 0)
            parts.append(f"{title} {np.mean(done):+.2f} (better on {better} of {len(seeds)} "
                         "seeds)")
        failed = sum("failed" in r["report"] for r in result["runs"][method])
        tail = f"; failed on {failed} seed(s)" if failed else ""
        lines.append(f"{TITLES[method]} - ERM: " + ", ".join(parts) + tail + ".")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="glyphs", choices=["glyphs", "digits"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--savedir", default=None)
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--publish", default=None,
                        help=f"also write the chosen values and tables to this file (the "
                             f"demo reads {PUBLISHED.relative_to(PUBLISHED.parents[1])})")
    args = parser.parse_args(argv)
    savedir = Path(args.savedir or f"results/biased_study/{args.dataset}")
    start = time.perf_counter()
    extra = ["--data_root", args.data_root] if args.data_root else []
    results = {}
    with ThreadPoolExecutor(args.workers) as pool:
        for name in args.settings:
            setting = with_flags(SETTINGS[name], extra)
            print(f"=== {setting.title} on {args.dataset} ===", flush=True)
            results[name] = study_setting(setting, args.dataset, args.seeds, savedir, pool)
            print(table(results[name], setting), flush=True)
            print("\n".join(reading(results[name], setting)), flush=True)
    wall = time.perf_counter() - start
    command = ("python -m experiments.biased_study --dataset " + args.dataset
               + " --seeds " + " ".join(map(str, args.seeds)))
    document = {"command": command, "dataset": args.dataset, "seeds": args.seeds,
                "lrs": list(LRS), "meta_grid": META_GRID, "val_per_class": VAL_PER_CLASS,
                "wall_seconds": wall, "settings": results}
    savedir.mkdir(parents=True, exist_ok=True)
    (savedir / "study.json").write_text(json.dumps(document, indent=1))
    text = "\n\n".join(f"### {SETTINGS[n].title}\n\n{table(r, SETTINGS[n])}\n\n"
                       + "\n".join(f"- {line}" for line in reading(r, SETTINGS[n]))
                       for n, r in results.items())
    (savedir / "study.md").write_text(f"`{command}` ({wall / 60:.1f} min)\n\n{text}\n")
    if args.publish:
        published = {"command": command, "dataset": args.dataset, "seeds": args.seeds,
                     "measured": time.strftime("%Y-%m-%d"),
                     "settings": {n: {"flags": r["flags"], "chosen": r["chosen"],
                                      "table": table(r, SETTINGS[n]),
                                      "reading": reading(r, SETTINGS[n])}
                                  for n, r in results.items()}}
        Path(args.publish).write_text(json.dumps(published, indent=1) + "\n")
    print(f"wrote {savedir / 'study.json'}, {savedir / 'study.md'} ({wall / 60:.1f} min)")
    return document


if __name__ == "__main__":
    main()
