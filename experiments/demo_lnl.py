"""The Learning-Not-to-Learn demo: baseline vs LNL on the embedded glyphs coloured by the
Colored-MNIST protocol, end to end on a CPU, no download, several seeds.

    python -m experiments.demo_lnl [--savedir results/demo-lnl] [--seeds 3] [--quick]

Each (variant, seed) is an ordinary ``main.py --mode train --method lnl`` run in
``<savedir>/seed<k>/{baseline,lnl}`` (re-running resumes; a finished, tested run is left as it is);
a seed's two runs share it, so LNL's pre-training is exactly the baseline's first epochs. The
table gives, mean ± std over seeds, the accuracy on colour-shuffled test images (the colour
no longer tells the class), on gray test images, and the colour probe's accuracy on the
frozen features f (lower = less colour left in the features); the reading under it (on how
many seeds LNL is ahead) is computed from the numbers. summary.json and summary.md hold the
same.

The settings are scaled down from the paper's (Colored MNIST, 100 + 100 epochs) to fit in
a few minutes on 2 CPU cores (``DEMO_FLAGS``: glyphs at 16x16, 8 epochs per run, SGD lr 0.02
in both phases, σ² = 0.06, entropy weight 0.1, reversal 0.3, one epoch of pre-training). Why
each differs from the paper's, and what they measured: docs/lnl.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from taml.biased.config import parse_biased_config
from taml.biased.train_lnl import train

# the runs share these; the variants add their own (the reasons: module docstring)
DEMO_FLAGS = ["--dataset", "glyphs", "--image_size", "16", "--color_var", "0.06",
              "--batch_size", "64", "--lr", "0.02", "--lr_factor", "1.0", "--lr_schedule", "",
              "--momentum", "0.9", "--weight_decay", "5e-4", "--log_every", "40",
              "--eval_every", "200", "--save_every", "200", "--device", "cpu"]
PRETRAIN_EPOCHS, EPOCHS = 1, 7
VARIANTS = {
    "baseline": ["--lnl_lambda", "0", "--grl_factor", "0",
                 "--epochs", str(PRETRAIN_EPOCHS + EPOCHS)],
    "LNL": ["--lnl_lambda", "0.1", "--grl_factor", "0.3",
            "--pretrain_epochs", str(PRETRAIN_EPOCHS), "--epochs", str(EPOCHS)],
}
QUICK_PER_CLASS = 10  # --quick: 100 training images, one epoch each phase
COLUMNS = (("colour_shuffled_accuracy", "colour-shuffled acc."),
           ("gray_accuracy", "gray acc."), ("probe_accuracy", "colour probe (lower better)"))


def run_flags(variant: str, savedir: Path, quick: bool, extra: list[str]) -> list[str]:
    flags = ["--mode", "train", "--method", "lnl", *DEMO_FLAGS, *VARIANTS[variant],
             "--savedir", str(savedir / variant.lower()), *extra]
    if quick:
        flags += ["--epochs", "1"] + (["--pretrain_epochs", "1"] if variant == "LNL" else [])
    return flags


def spread(values: list[float]) -> str:
    array = 100 * np.asarray(values, dtype=float)
    std = array.std(ddof=1) if len(array) > 1 else 0.0
    return f"{array.mean():.1f} ± {std:.1f}"


def table(per_seed: dict[int, dict[str, dict]]) -> str:
    """Rows baseline and LNL, each column mean ± std over the seeds."""
    lines = ["| run | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name in VARIANTS:
        lines.append(f"| {name} | " + " | ".join(
            spread([runs[name][key] for runs in per_seed.values()]) for key, _ in COLUMNS)
            + " |")
    lines.append(f"\n(%, mean ± std over seeds {', '.join(map(str, per_seed))})")
    return "\n".join(lines)


def reading(per_seed: dict[int, dict[str, dict]]) -> list[str]:
    """LNL against the baseline, seed by seed, from the numbers."""
    lines = []
    for key, title, better in (("colour_shuffled_accuracy", "colour-shuffled accuracy", 1),
                               ("probe_accuracy", "colour probe", -1)):
        diffs = [100 * (runs["LNL"][key] - runs["baseline"][key]) for runs in per_seed.values()]
        ahead = sum(better * d > 0 for d in diffs)
        lines.append(f"LNL - baseline, {title}: {np.mean(diffs):+.1f} points on the mean "
                     f"(seeds: {', '.join(f'{d:+.1f}' for d in diffs)}); "
                     f"{'higher' if better > 0 else 'lower'} on {ahead} of {len(diffs)} seeds.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--savedir", default="results/demo-lnl")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--dataset", default="glyphs", choices=["glyphs", "digits"],
                        help="the base of the coloured images: the embedded glyphs or the "
                             "UCI digits (scikit-learn's, real handwriting)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--data_root", default=None)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    savedir = Path(args.savedir)
    extra = (["--no_progress"] if args.no_progress else []) + (
        ["--data_root", args.data_root] if args.data_root else []) + [
        "--dataset", args.dataset]  # after DEMO_FLAGS': the last one counts
    seeds = [0] if args.quick else list(range(args.seeds))
    start, per_seed = time.perf_counter(), {}
    for seed in seeds:
        per_seed[seed] = {}
        for variant in VARIANTS:
            cfg = parse_biased_config(run_flags(variant, savedir / f"seed{seed}", args.quick,
                                                [*extra, "--seed", str(seed)]))
            per_seed[seed][variant] = (
                train(cfg, train_per_class=QUICK_PER_CLASS, probe_steps=20)
                if args.quick else train(cfg))
    text, lines = table(per_seed), reading(per_seed)
    wall = time.perf_counter() - start
    print(f"\nLNL demo: coloured {args.dataset}, sigma^2 = 0.06 ({wall:.0f} s)")
    print(text + "\n" + "\n".join(lines))
    print("Why these settings, and the paper's schedule: docs/lnl.md")
    summary = {"settings": {"flags": DEMO_FLAGS, "dataset": args.dataset,
                            "variants": VARIANTS, "quick": args.quick, "seeds": seeds},
               "results": {name: {key: [runs[name][key] for runs in per_seed.values()]
                                  for key, _ in COLUMNS} for name in VARIANTS},
               "reading": lines, "wall_seconds": wall}
    savedir.mkdir(parents=True, exist_ok=True)
    (savedir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (savedir / "summary.md").write_text(text + "\n\n" + "\n".join(f"- {x}" for x in lines)
                                        + "\n")
    print(f"wrote {savedir / 'summary.md'}, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
