"""The Learning-Not-to-Learn demo: baseline vs LNL on the embedded glyphs coloured by the
Colored-MNIST protocol, end to end on a CPU, no download.

    python -m experiments.demo_lnl [--savedir results/demo-lnl] [--quick]

Both runs are ordinary ``main.py --mode train --method lnl`` runs in ``<savedir>/baseline``
and ``<savedir>/lnl`` (re-running resumes, or only re-tests a finished run); they share the
seed, so LNL's pre-training is exactly the baseline's first epochs. The table gives the
accuracy on colour-shuffled test images (the colour no longer tells the class), on gray
test images, and the colour probe's accuracy on the frozen features f (lower = less colour
left in the features). summary.json and summary.md hold the same.

The settings are scaled down from the paper's (Colored MNIST, 100 + 100 epochs) to fit in
a few minutes on 2 CPU cores (``DEMO_FLAGS``): glyphs at 16x16, 8 epochs per run, SGD lr
0.02 in both phases. sigma^2 = 0.06 puts the baseline in the paper's regime: hurt by the
colour but above chance, while the shape task itself is easy (trained and tested on gray:
95.7%, seed 0); at sigma^2 = 0.01 the baseline learns almost only colour (~22%) and there
is nothing for LNL to win back in this budget. Two settings differ from the paper's, both
chosen on seeds 0-2 and then checked on seeds 3-4 (one thread per run):

- the entropy weight lambda = 0.1 (paper 0.01). Colour-shuffled accuracy, baseline ->
  LNL, seeds 0-4 (%): 53.6 -> 59.6, 47.6 -> 57.4, 49.9 -> 60.4, 50.3 -> 59.8,
  47.8 -> 48.4; colour probe 48.7 -> 43.4, 48.9 -> 45.1, 48.5 -> 44.0, 48.3 -> 43.2,
  47.4 -> 44.6. At lambda 0.01 the gain held on two seeds of three (53.6 -> 61.8,
  47.6 -> 55.3, 49.9 -> 48.0), with reversal 0.5 on one (54.3, 50.3, 54.7).
- the reversal factor 0.3 (paper 0.1, which left the accuracy where it was in this budget;
  1.0 removes shape as well as colour: gray accuracy fell to ~40%), and one epoch of
  pre-training (after 2 epochs of colour-only pre-training, 6 of unlearning did not lift
  the accuracy).

So the probe falls on every seed and the accuracy rises on most; tests/test_lnl.py holds
both at seed 0. The paper's schedule is runfiles/lnl.sh.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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


def table(results: dict[str, dict]) -> str:
    lines = ["| run | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, report in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * report[key]:.1f}"
                                                  for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--savedir", default="results/demo-lnl")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--data_root", default=None)
    args = parser.parse_args(argv)
    savedir = Path(args.savedir)
    extra = (["--no_progress"] if args.no_progress else []) + (
        ["--data_root", args.data_root] if args.data_root else [])
    start, results = time.perf_counter(), {}
    for variant in VARIANTS:
        cfg = parse_biased_config(run_flags(variant, savedir, args.quick, extra))
        results[variant] = (train(cfg, train_per_class=QUICK_PER_CLASS, probe_steps=20)
                            if args.quick else train(cfg))
    text = table(results)
    print(f"\nLNL demo: coloured glyphs, sigma^2 = 0.06 ({time.perf_counter() - start:.0f} s)")
    print(text)
    summary = {"settings": {"flags": DEMO_FLAGS, "variants": VARIANTS, "quick": args.quick},
               "results": {name: {key: r[key] for key, _ in COLUMNS} for name, r in
                           results.items()}}
    savedir.mkdir(parents=True, exist_ok=True)
    (savedir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (savedir / "summary.md").write_text(text + "\n")
    print(f"wrote {savedir / 'summary.md'}, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
