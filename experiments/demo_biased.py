"""The biased-data demo: each paper's own setting on the embedded glyphs, every method at the
values a fair tuning chose for it, three seeds, end to end on a CPU.

    python -m experiments.demo_biased [--savedir results/demo-biased] [--seeds 3]
                                      [--settings long_tail ...] [--quick]

The tables: long tail (ERM, class-balanced, focal, TML, L2RW, MW-Net: accuracy, balanced
accuracy, tail recall), label noise 40% uniform and flip (ERM, L2RW, MW-Net: accuracy, the
weight mass the method puts on corrupted labels) and binary imbalance 0.995 (ERM, TML,
L2RW: minority recall and precision). Each method runs at the values chosen for it on a
held-out validation split by ``python -m experiments.biased_study --publish
docs/biased_settings.json`` (the same lr grid for all, two meta settings more for the
meta-learned ones; never the test set), which this demo reads and prints. Every run is an
ordinary ``main.py --mode train`` run in ``<savedir>/<setting>/<method>/<variant>/seed<k>``
(re-running reuses finished runs), two one-thread processes at a time. The reading under
each table is computed from its numbers. ``summary.json`` and ``summary.md`` hold the same.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments import biased_study as study

QUICK_STEPS = 3


def load_published(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: python -m experiments.biased_study "
                         f"--publish {path} writes it (the values chosen on validation)")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--savedir", default="results/demo-biased")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method")
    parser.add_argument("--settings", nargs="+", default=None, choices=list(study.SETTINGS),
                        help="default: every setting the published study has")
    parser.add_argument("--workers", type=int, default=2,
                        help="one-thread runs at a time (2 on a 2-core machine)")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--published", default=str(study.PUBLISHED),
                        help="the study's chosen values (experiments.biased_study --publish)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: {QUICK_STEPS} steps, one seed")
    parser.add_argument("--no_progress", action="store_true",
                        help="(runs never show bars here: they are subprocesses)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    wall_start = time.perf_counter()
    published = load_published(Path(args.published))
    names = args.settings or [n for n in study.SETTINGS if n in published["settings"]]
    missing = [n for n in names if n not in published["settings"]]
    if missing:
        parser.error(f"{args.published} has no chosen values for {', '.join(missing)}: run "
                     "python -m experiments.biased_study --settings "
                     + " ".join(missing) + " --publish " + args.published)
    seeds = [0] if args.quick else list(range(args.seeds))
    savedir = Path(args.savedir)
    run_root = savedir / "quick" if args.quick else savedir  # never reused by a full run
    dataset = published["dataset"]
    results, texts = {}, []
    print(f"Chosen values: {published['command']} ({published['measured']}), on a "
          f"validation split of {study.VAL_PER_CLASS} images per class, never the test set")
    with ThreadPoolExecutor(args.workers) as pool:
        for name in names:
            setting = study.with_flags(study.SETTINGS[name],
                                       ["--data_root", args.data_root] if args.data_root else [])
            schedule = None
            if args.quick:
                schedule = [*study.SCHEDULE, "--steps", str(QUICK_STEPS), "--lr_schedule", "",
                            "--eval_every", "2", "--save_every", "100", "--log_every", "1"]
            start = time.perf_counter()
            print(f"\n=== {setting.title}: {len(setting.methods)} methods x "
                  f"{len(seeds)} seed(s) ===", flush=True)
            result = study.run_chosen(setting, dataset, seeds, run_root, pool,
                                      published["settings"][name]["chosen"], schedule)
            result["seconds"] = time.perf_counter() - start
            text = study.table(result, setting)
            lines = study.reading(result, setting)
            print(text + "\n" + "\n".join(lines), flush=True)
            results[name] = result
            texts.append(f"### {setting.title}\n\n{text}\n\n"
                         + "\n".join(f"- {line}" for line in lines))
    wall = time.perf_counter() - wall_start
    summary = {"published": args.published, "chosen_by": published["command"],
               "dataset": dataset, "seeds": seeds, "quick": args.quick,
               "settings": results, "wall_seconds": wall}
    savedir.mkdir(parents=True, exist_ok=True)
    (savedir / "summary.json").write_text(json.dumps(summary, indent=1))
    (savedir / "summary.md").write_text(
        f"# The biased-data demo on {dataset}\n\nValues chosen by `{published['command']}`"
        f" ({published['measured']}).\n\n" + "\n\n".join(texts) + "\n")
    print("\nHow the values were chosen and what the originals do differently: "
          "docs/biased.md.")
    print(f"Summary: {savedir / 'summary.json'}, {savedir / 'summary.md'}")
    print(f"Wall time of the demo: {wall:.0f} s ({wall / 60:.1f} min)")
    return summary


if __name__ == "__main__":
    main()
