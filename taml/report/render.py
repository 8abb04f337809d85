"""The tables as markdown (for the terminal and a paper draft) and as CSV (one row per cell)."""

from __future__ import annotations

import csv
import io

from taml.report.collect import Apart
from taml.report.tables import Cell, Table, column_header

CSV_COLUMNS = ("table", "title", "family", "row", "method", "published", "column", "mean",
               "spread", "spread_kind", "n", "seeds", "runs")


def format_cell(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    if cell.spread is None:
        text = f"{cell.mean:.2f}"
    else:
        text = f"{cell.mean:.2f} ± {cell.spread:.2f}"
    return text + (f" (n={cell.n})" if cell.n > 1 or cell.kind == "value" else "")


def markdown(tables: list[Table], notes: list[str], warnings: list[str],
             apart: list[Apart] = ()) -> str:
    lines = ["# Results", "",
             "Cells: accuracy in percent. One seed: mean ± 95% CI over the test episodes; "
             "n seeds: mean ± standard deviation over the seeds (n shown). Rows marked "
             "*published* are the paper's numbers, shown only where the settings match.", ""]
    for table in tables:
        lines += [f"## {table.name}: {table.title}", ""]
        header = ["method"] + [column_header(c) for c in table.columns]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in table.rows:
            label = f"*{row.label}*" if row.published else row.label
            cells = [format_cell(row.cells.get(c)) for c in table.columns]
            lines.append("| " + " | ".join([label] + cells) + " |")
        lines.append("")
        for note in table.notes:
            lines += [f"- {note}"]
        if table.notes:
            lines.append("")
    if notes:
        lines += ["## Runs kept apart", ""] + [f"- {n}" for n in notes] + [""]
    if apart:
        lines += ["## Not pooled", "",
                  "Test results read but left out of the tables: one finished test of the "
                  "run's own configuration per seed is pooled.", ""]
        lines += [f"- {a.path}: {a.reason}" for a in apart] + [""]
    if warnings:
        lines += ["## Files skipped", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)


def csv_text(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = row.cells.get(column)
                if cell is None:
                    continue
                writer.writerow([
                    table.name, table.title, table.family, row.label, row.method,
                    int(row.published), column, repr(cell.mean),
                    "" if cell.spread is None else repr(cell.spread), cell.kind, cell.n,
                    " ".join(str(s) for s in row.seeds),
                    " ".join(str(m.run_dir) for m in row.measurements)])
    return out.getvalue()
