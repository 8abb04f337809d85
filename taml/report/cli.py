"""``python main.py --mode report --savedir results/ [--out DIR] [--no_progress]``.

Walks every run folder below ``--savedir``, writes ``report.md``, ``report.csv``,
``report.png`` (grouped bars) and ``curves/*.png`` (learning curves, one per group of runs)
at its top (or in ``--out``), and prints the markdown. Test results that are not a
finished test of the run's own configuration, or a second test of a seed, are listed under
"Not pooled" with the reason. Exit status 2, with one line, when there is no finished run
to report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taml.report.collect import collect
from taml.report.plots import bar_chart, learning_curves, slug
from taml.report.render import csv_text, markdown
from taml.run.cli import OneLineParser, check_path_flag
from taml.run.folder import RunDirError, check_writable, write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="main.py --mode report",
                      description="Tables and learning curves from finished runs.")
    p.add_argument("--mode", choices=["report"], default="report")
    p.add_argument("--savedir", required=True,
                   help="folder searched (at any depth) for run folders; the report is "
                        "written at its top")
    p.add_argument("--out", default=None, help="write the report here instead of --savedir")
    p.add_argument("--no_progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value, fix in (
            ("--savedir", args.savedir, "give the folder holding your runs (e.g. results/)"),
            ("--out", args.out, "give a folder, or leave the flag out to write in --savedir")):
        try:  # '' would be the working folder: the report's files would land there
            check_path_flag(flag, value, fix)
        except ValueError as error:
            parser.error(str(error))
    root = Path(args.savedir).expanduser()
    out = Path(args.out).expanduser() if args.out is not None else root
    if not root.is_dir():
        print(f"error: --savedir {root} is not a folder: give the folder holding your runs "
              "(e.g. results/)", file=sys.stderr)
        return 2
    progress = args.progress and sys.stderr.isatty()
    found = collect(root, progress)
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from taml.report.tables import build_tables, select

    measurements, duplicates = select(found.measurements)
    apart = found.apart + duplicates
    if not measurements:
        if apart:
            first = apart[0]
            print(f"error: no finished run to pool under {root}: {len(apart)} test "
                  f"result(s), none pooled ({first.path}: {first.reason})", file=sys.stderr)
        else:
            print(f"error: no finished run under {root} ({found.n_run_dirs} run folder(s) "
                  "with config.json, none with a test result): run --mode meta_test (or "
                  "--mode test) on your runs first", file=sys.stderr)
        return 2
    try:
        check_writable(out, "--out" if args.out else "--savedir")
    except RunDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tables, notes = build_tables(measurements)
    text = markdown(tables, notes, found.warnings, apart)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.md", text)
    write_text_atomic(out / "report.csv", csv_text(tables))
    bar_chart(tables, out / "report.png")
    drawn: set[frozenset] = set()  # Meta-SGD and TAML rows recur in the ablation tables
    unreadable: dict = {}  # a corrupt train_metrics.csv, validation.json or eval.json
    for table in tables:
        for row in table.rows:
            runs = frozenset(m.test_file for m in row.measurements)
            if row.published or runs in drawn:
                continue
            drawn.add(runs)
            name = f"{slug(table.name)}_{slug(row.label)}.png"
            learning_curves(table, row, out / "curves" / name, unreadable)
    for note in unreadable.values():
        print(f"note: {note}", file=sys.stderr)
    print(text)
    print(f"written: {out / 'report.md'}, report.csv, report.png, curves/ ({len(drawn)} "
          "learning-curve figure(s))")
    return 0
