"""Grouping measurements into the paper's tables, and aggregating seeds into cells.

A *table* holds measurements whose settings make them comparable (same datasets, way, shots,
queries, test inner steps, training schedule, ...); within it a *row* is one learner (the
switch combination, and the test's MC samples); the seeds of a row are pooled. Settings that
change nothing measured (seed, folder, device, logging, checkpoint and validation schedule,
number of test episodes) are ignored. Runs that differ in anything else are kept apart, and
the report says in what. A row pools one test per seed (:func:`select`; collect has left
out what is not a finished test of the run's own configuration). LNL's runs get a table of
their own (per dataset and σ², one row per variant) with its columns: accuracy on its test
set, colour-shuffled and gray accuracy, and the colour probe.

A cell is, for one seed, that test's mean ± 95% CI over episodes; for n seeds, the mean of the
seeds' accuracies ± their standard deviation (ddof 1), with n.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from taml.episodic.learners import (
    ABLATIONS,
    LEARNERS,
    bayesian_taml,
    maml,
    meta_sgd,
    method_name,
    method_title,
    switches_on,
)
from taml.report.collect import (
    BIASED_SCORES,
    IGNORED,
    LNL_ROW_SETTINGS,
    LNL_SCORES,
    LNL_SETTINGS,
    Apart,
    Measurement,
)
from taml.report.published import CITATION, RESULTS, published_setting

ROW_FIELDS = {
    "lnl": LNL_ROW_SETTINGS,
    "meta": ("alpha_on", "omega_on", "gamma_on", "z_on", "n_mc_samples", "inner_lr",
             "first_order"),
    "biased": ("method", "meta_lr", "meta_every", "lookahead_lr", "focal_gamma",
               "mwnet_hidden", "meta_optimizer", "meta_batch_size", "color_var",
               "lnl_lambda", "grl_factor", "pretrain_epochs"),
}
# names and titles: the learners' table (taml.episodic.learners)
MAIN_METHODS = tuple(LEARNERS)  # Table 1's rows
ABLATION_ENDS = (meta_sgd.NAME, bayesian_taml.NAME)  # each ablation table's first and last
META_ORDER = (maml.NAME, meta_sgd.NAME, *ABLATIONS, bayesian_taml.NAME)
BIASED_ORDER = ("erm", "class_balanced", "focal", "tml", "l2rw", "mwnet")
LNL_ORDER = ("baseline", "gray", "lnl")  # LNL's table: its variants (train_lnl.variant_of)
LNL_LABELS = {"baseline": "baseline (no unlearning)", "gray": "gray (trained on gray)",
              "lnl": "LNL"}
BIASED_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.",
                "tail_recall": "tail recall",
                "colour_shuffled_accuracy": "colour-shuffled acc.",
                "gray_accuracy": "gray acc.",
                "probe_accuracy": "colour probe on f (lower: less colour)"}


@dataclass(frozen=True)
class Cell:
    mean: float
    spread: float | None   # 95% CI (n = 1, meta), std over seeds (n > 1), None otherwise
    kind: str              # 'ci95' | 'std' | 'value'
    n: int


@dataclass
class Row:
    label: str
    method: str
    cells: dict[str, Cell]
    measurements: list[Measurement] = field(default_factory=list)
    published: bool = False

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.measurements]


@dataclass
class Table:
    title: str
    family: str
    settings: dict          # the settings every measurement of the table shares
    columns: list[str]      # 'id/<name>', 'ood/<name>' or a biased score name
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    name: str = ""          # 'Table 1', set when numbered


def column_header(column: str) -> str:
    if "/" in column:
        role, name = column.split("/", 1)
        return f"{name} ({role.upper()})"
    return BIASED_NAMES.get(column, column)


def aggregate(values: list[tuple[float, float | None]]) -> Cell:
    """[(value, ci95 or None) per seed] -> one cell."""
    if len(values) == 1:
        value, ci = values[0]
        return Cell(value, ci, "ci95" if ci is not None else "value", 1)
    means = np.array([v for v, _ in values], dtype=np.float64)
    return Cell(float(means.mean()), float(means.std(ddof=1)), "std", len(values))


def _keys(m: Measurement) -> tuple[tuple, tuple]:
    """(table key, row key): sorted (name, value) pairs of the settings that matter."""
    if m.family == "lnl":  # the flags LNL reads, not the long-tail ones it records
        settings = {k: m.settings.get(k) for k in LNL_SETTINGS + LNL_ROW_SETTINGS}
    else:
        settings = {k: v for k, v in m.settings.items() if k not in IGNORED[m.family]}
    if m.family == "meta" and settings.get("alpha_on"):
        settings["inner_lr"] = None  # Meta-SGD's learned step sizes replace it
    if m.family == "biased" and settings.get("steps") is not None:
        settings["epochs"] = None  # --steps sets the length; --epochs did nothing
    row_fields = ROW_FIELDS[m.family]
    table = tuple(sorted((k, v) for k, v in settings.items() if k not in row_fields))
    row = tuple((k, settings.get(k)) for k in row_fields)
    return table, row


def method_of(m: Measurement) -> str:
    if m.family == "lnl":
        return str(m.settings.get("variant", "lnl"))
    if m.family == "biased":
        return str(m.settings.get("method", "?"))
    return method_name(switches_on(m.settings))


def method_label(method: str, family: str) -> str:
    if family == "lnl":
        return LNL_LABELS.get(method, method)
    if family == "biased":
        return method
    return method_title(method)  # e.g. 'switches omega, gamma' for taml_omega_gamma


def select(measurements: list[Measurement]) -> tuple[list[Measurement], list[Apart]]:
    """One test per seed of a configuration: the first (in path order) of each (table,
    row, seed); the others (the same run twice, e.g. a copied folder) are listed apart."""
    first: dict[tuple, Measurement] = {}
    kept, apart = [], []
    for m in measurements:
        key = (m.family, _keys(m), m.seed)
        if key in first:
            apart.append(Apart(m.test_file, (
                f"seed {m.seed} of this configuration is counted already from "
                f"{first[key].run_dir}: one test per seed (a copy of that run, or the same "
                "seed trained twice)")))
            continue
        first[key] = m
        kept.append(m)
    return kept, apart


def _differences(a: dict, b: dict) -> list[str]:
    names = sorted(set(a) | set(b))
    return [f"{n} ({_show(a.get(n))} vs {_show(b.get(n))})" for n in names
            if a.get(n) != b.get(n)]


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _method_rank(method: str, family: str) -> tuple:
    order = {"biased": BIASED_ORDER, "lnl": LNL_ORDER}.get(family, META_ORDER)
    return (order.index(method) if method in order else len(order), method)


def _rows(measurements: list[Measurement], family: str, notes: list[str]) -> list[Row]:
    by_row: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in measurements:
        by_row[_keys(m)[1]].append(m)
    per_method: dict[str, list[tuple]] = defaultdict(list)
    for key in by_row:
        per_method[method_of(by_row[key][0])].append(key)
    rows = []
    for method in sorted(per_method, key=lambda x: _method_rank(x, family)):
        keys = per_method[method]
        for key in keys:
            group = by_row[key]
            label = method_label(method, family)
            if len(keys) > 1:  # the same learner twice: name what sets the rows apart
                others = [dict(k) for k in keys if k != key]
                varying = sorted({n for o in others for n, v in o.items()
                                  if dict(key).get(n) != v})
                label += " (" + ", ".join(f"{n}={_show(dict(key)[n])}" for n in varying) + ")"
                notes.append(f"{label} is a row of its own: runs of "
                             f"{method_label(method, family)} differ in {', '.join(varying)}")
            columns = sorted({c for m in group for c in m.scores})
            cells = {c: aggregate([m.scores[c] for m in group if c in m.scores])
                     for c in columns}
            seeds = [m.seed for m in group]
            if len(set(seeds)) < len(seeds):
                notes.append(f"{label}: the same seed appears in several runs "
                             f"({', '.join(str(m.run_dir) for m in group)}); each counts")
            rows.append(Row(label, method, cells, group))
    return rows


def _published_rows(settings: dict, methods: list[str]) -> list[Row]:
    setting = published_setting(settings)
    if setting is None:
        return []
    return [Row(f"{method_title(m)} (published, {CITATION})", m,
                {c: Cell(v, ci, "ci95" if ci is not None else "value", 1)
                 for c, (v, ci) in RESULTS[setting][m].items()}, published=True)
            for m in methods if m in RESULTS[setting]]


def _title(family: str, settings: dict) -> str:
    if family == "lnl":
        return (f"LNL: coloured {settings.get('dataset')}, σ² {settings.get('color_var')} "
                "(accuracy on the colour-shuffled / gray test sets)")
    if family == "biased":
        bias = settings.get("bias")
        detail = {"long_tail": f"imbalance factor {settings.get('imbalance_factor')}",
                  "binary": f"majority share {settings.get('ratio')}",
                  "noise": f"{settings.get('noise_type')} noise {settings.get('noise_rate')}"}
        return (f"Biased data: {settings.get('dataset')}, {bias}"
                + (f" ({detail[bias]})" if bias in detail else ""))
    ids = _show(settings.get("id_dataset"))
    oods = _show(settings.get("ood_dataset"))
    return (f"ID {ids} / OOD {oods}: {settings.get('way')}-way, max_shot "
            f"{settings.get('max_shot')}, query {settings.get('query')}, "
            f"{settings.get('n_steps')} inner steps at test")


def _columns(family: str, settings: dict, rows: list[Row]) -> list[str]:
    if family in ("biased", "lnl"):
        present = {c for r in rows for c in r.cells}
        return [c for c in (LNL_SCORES if family == "lnl" else BIASED_SCORES) if c in present]
    order = [f"id/{n}" for n in settings.get("id_dataset") or ()]
    order += [f"ood/{n}" for n in settings.get("ood_dataset") or ()]
    extra = sorted({c for r in rows for c in r.cells} - set(order))
    return order + extra


def build_tables(measurements: list[Measurement]) -> tuple[list[Table], list[str]]:
    """The tables (meta-learning ones first, each setting's Table 1 layout, then its
    ablations) and the notes saying why runs were kept apart."""
    groups: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.family, _keys(m)[0])].append(m)
    tables: list[Table] = []
    order = ("meta", "biased", "lnl")
    for (family, key) in sorted(groups, key=lambda k: (order.index(k[0]), repr(k[1]))):
        settings = dict(key)
        notes: list[str] = []
        rows = _rows(groups[(family, key)], family, notes)
        if family != "meta":
            tables.append(Table(_title(family, settings), family, settings,
                                _columns(family, settings, rows), rows, notes))
            continue
        main = [r for r in rows if r.method in MAIN_METHODS]
        ablation = [r for r in rows if r.method not in MAIN_METHODS]
        if main:
            main += _published_rows(settings, [r.method for r in main])
            tables.append(Table(_title(family, settings), family, settings,
                                _columns(family, settings, main), main, notes))
        if ablation:  # Meta-SGD and Bayesian TAML again, as the ablation's two ends
            rows_ab = sorted([r for r in rows if r.method in ABLATION_ENDS] + ablation,
                             key=lambda r: _method_rank(r.method, family))
            tables.append(Table("Ablation, " + _title(family, settings), family, settings,
                                _columns(family, settings, rows_ab), rows_ab,
                                [] if main else notes))
    for i, table in enumerate(tables, 1):
        table.name = f"Table {i}"
    return tables, _apart_notes(tables)


def _apart_notes(tables: list[Table]) -> list[str]:
    """For tables on the same data: the settings that keep them apart."""
    notes, seen = [], []
    for table in tables:
        data_key = (table.family, table.settings.get("id_dataset"),
                    table.settings.get("dataset"))
        for other in seen:
            other_key = (other.family, other.settings.get("id_dataset"),
                         other.settings.get("dataset"))
            if other_key == data_key and other.settings != table.settings:
                notes.append(f"{table.name} is kept apart from {other.name}: their runs "
                             f"differ in " + "; ".join(_differences(other.settings,
                                                                    table.settings)))
                break
        seen.append(table)
    return notes
