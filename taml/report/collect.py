"""Finding finished runs below a folder and reading their results.

A run folder is one holding ``config.json``. A meta-learning run is finished once
``--mode meta_test`` wrote a ``test_step{n}_mc{s}[_{digest}].json``; each such file is one
*measurement* (a run tested twice with other settings gives two). A biased-data run is
finished once ``--mode test`` wrote ``test.json``. The config's ``"family"`` key, which both
families write, tells them apart (``"episodic"`` or ``"biased"``; an episodic folder written
before the key existed has none); a folder of another family is named in a warning.
A file that cannot be read is named in a warning and skipped; the rest is still reported.

Only a finished test of the run's own configuration is pooled (:func:`judge`); any other
result is listed apart (:class:`Apart`) with the reason: a test whose recorded training
config is not the folder's ``config.json`` (a stale config, or an old test of a run changed
since, e.g. another method started anew in the folder), a run resumed with a flag that
changes what is learned (its steps ran under two settings), a run tested before the end
of its schedule, and a meta-test with another ``--n_test_episodes`` or ``--seed`` than the
run's (the same model measured again, not another seed). Runs written before the test
files recorded their training (``trained_config``, ``trained_iterations`` or
``total_steps``, ``changes``) are judged from what they hold: ``config.json``, the test's
``step``/``iteration``, ``checkpoint`` and ``train_counts``, the latest checkpoint's
iteration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from taml.run.progress import bar as progress_bar

TEST_NAME = re.compile(r"^test_step(\d+)_mc(\d+)(_[0-9a-f]+)?\.json$")
BIASED_TEST = "test.json"


@dataclass(frozen=True)
class Measurement:
    """One test result of one run.

    ``settings``: the run's training config with the test's own values laid over it
    (``n_steps``, ``n_mc_samples`` and whatever the test changed, e.g. ``query``), the
    training ``n_steps`` kept as ``train_n_steps``. ``scores``: column -> (value, ci95 or
    None), values in percent."""

    family: str                   # 'meta' | 'biased' | 'lnl' (biased runs of --method lnl)
    run_dir: Path
    test_file: Path
    settings: dict
    scores: dict[str, tuple[float, float | None]]
    seed: int
    # a meta-test's own --n_test_episodes / --seed where they are not the run's ({}: the
    # run's own test); one test per run is pooled (:func:`_one_test_per_run`)
    test_only: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Apart:
    """A test result read but not pooled, and why (the report's "Not pooled")."""

    path: Path
    reason: str


@dataclass
class Collection:
    measurements: list[Measurement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    apart: list[Apart] = field(default_factory=list)
    n_run_dirs: int = 0
    n_tests: int = 0


# settings that change nothing measured, per family: the tables ignore them, and so does
# the comparison of a test's recorded training config with config.json
IGNORED = {
    "meta": {"seed", "savedir", "device", "gpu_id", "progress", "data_root", "mode",
             "save_freq", "log_freq", "print_freq", "task_batching", "shards",
             "n_test_episodes", "val_freq", "n_val_episodes", "tensorboard", "family",
             "force"},
    "biased": {"seed", "savedir", "device", "gpu_id", "progress", "data_root", "mode",
               "eval_every", "log_every", "save_every", "family", "tensorboard", "force",
               "chance_check"},
}
# LNL's runs (their own table) depend on these flags only; the long-tail / noise /
# binary flags a config also records do nothing to them
LNL_SETTINGS = ("dataset", "color_var", "image_size", "batch_size", "epochs",
                "pretrain_epochs", "lr", "lr_schedule", "lr_factor", "momentum",
                "weight_decay")
LNL_ROW_SETTINGS = ("variant", "lnl_lambda", "grl_factor")
# the meta-test's own choice, laid over the training config (not a training setting)
META_TEST_ONLY = {"n_mc_samples"}
# a resume may lengthen a run: the steps before are those of the longer schedule
# (milestones count from the start), so the run is a run of its final length
LENGTH_FLAGS = {"meta": {"n_train_iters"}, "biased": {"steps", "epochs"},
                "lnl": {"epochs"}}


def matters(name: str, family: str) -> bool:
    """Whether setting ``name`` changes the numbers of a run of ``family``."""
    if family == "lnl":
        return name in LNL_SETTINGS or name in LNL_ROW_SETTINGS or name in ("gray",)
    return name not in IGNORED[family] and not (family == "meta" and name in META_TEST_ONLY)


def _read_json(path: Path, warnings: list[str], expect: type):
    """The parsed file, or None with a warning naming it (unreadable, corrupt, wrong shape)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        warnings.append(f"skipped {path}: cannot be read as JSON ({error})")
        return None
    if not isinstance(data, expect):
        warnings.append(f"skipped {path}: expected a JSON {expect.__name__}, found "
                        f"{type(data).__name__}")
        return None
    return data


# the "family" key of a run's config.json -> the report's label of the family
FAMILIES = {"episodic": "meta", "biased": "biased"}
OLD_FAMILY = "episodic"  # folders written before configs had the key: the episodic ones


def family_of(config: dict) -> str | None:
    """The report's family label of a run's config ('meta' | 'biased'), None for another."""
    family = config.get("family", OLD_FAMILY)
    return FAMILIES.get(family) if isinstance(family, str) else None


def _with_defaults(config: dict, family: str) -> dict:
    """The config with today's defaults for the fields it lacks: a run made before a flag
    existed ran with that flag's default, and must not look incomparable for it."""
    if family == "biased":
        from taml.biased.config import BiasedConfig as Defaults
    else:
        from taml.episodic.config import Config as Defaults
    merged = {**Defaults().to_dict(), **config}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}


def _show(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _differences(config: dict, trained: dict, family: str) -> list[str]:
    names = sorted(n for n in set(config) | set(trained) if matters(n, family))
    return [f"{n} {_shown(trained.get(n), config.get(n))} in the test, "
            f"{_shown(config.get(n), trained.get(n))} in config.json"
            for n in names if config.get(n) != trained.get(n)]


def _shown(value, other) -> str:
    """``value`` as text, with its type where ``other`` reads the same but is not equal
    (``"4"`` in one file, ``4`` in the other read "4 in the test, 4 in config.json")."""
    if _show(value) == _show(other):
        return f"{value!r} ({type(value).__name__})"
    return _show(value)


def _learning_changes(changes, family: str) -> list[str]:
    """The flags changed on resume (the checkpoint's ``changes``) that change what is
    learned, as text; a longer schedule and logging flags are not among them."""
    found = []
    for change in changes if isinstance(changes, list) else ():
        if not isinstance(change, dict):
            continue
        name = str(change.get("flag", "")).removeprefix("--")
        if not matters(name, family) or name in LENGTH_FLAGS[family] and not (
                name == "steps" and None in (change.get("old"), change.get("new"))):
            continue  # steps from or to None: --epochs became --steps, milestones moved
        counter = "iteration" if "iteration" in change else "step"
        found.append(f"--{name} {_show(change.get('old'))} -> {_show(change.get('new'))} "
                     f"from {counter} {change.get(counter)}")
    return found


def _latest_iteration(run_dir: Path) -> int | None:
    """The iteration of the run's checkpoint.pt (for meta-tests written before they
    recorded it), None when it cannot be read."""
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        return None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(state["iteration"])
    except Exception:  # any unreadable checkpoint: the run is judged without it
        return None


def judge(family: str, run_dir: Path, config: dict, report: dict,
          path: Path) -> tuple[dict, str | None]:
    """(the settings the test's model was trained with, the reason it is not pooled or
    None). ``config``: config.json with today's defaults for what it lacks."""
    trained = report.get("trained_config")
    trained = _with_defaults(trained, "meta" if family == "meta" else "biased") if (
        isinstance(trained, dict)) else None
    if family != "meta":
        for name in ("method", "dataset"):
            tested = report.get(name)
            if tested is not None and tested != config.get(name):
                return config, (
                    f"it is a test of --{name} {tested}, but config.json holds a run of "
                    f"--{name} {config.get(name)} (a new run started in the folder and not "
                    "tested yet): finish it with --mode train, or test it with --mode test")
    settings = config if trained is None else trained
    if trained is not None:
        diffs = _differences(config, trained, family)
        if diffs:
            return settings, (
                f"the model tested was trained with other settings than config.json records "
                f"({'; '.join(diffs)}): config.json is stale or the run changed after the "
                "test; test it again with the run's flags")
    changed = _learning_changes(report.get("changes"), family)
    if changed:
        return settings, (
            f"resumed with {', '.join(changed)}: its steps ran under two settings, so it is a "
            "seed of neither; train it again in a new --savedir")
    if family == "meta":
        done = report.get("trained_iterations")
        if done is None:
            done = (report.get("iteration") if report.get("checkpoint") == "checkpoint.pt"
                    else _latest_iteration(run_dir))
        planned = settings.get("n_train_iters")
        if isinstance(done, int) and isinstance(planned, int) and done < planned:
            return settings, (
                f"tested after iteration {done} of {planned} (unfinished): rerun the same "
                "--mode meta_train command to finish it, then --mode meta_test")
        return settings, None
    step, total = report.get("step"), report.get("total_steps")
    if total is None:
        total = _old_total(settings, report)
    if isinstance(step, int) and isinstance(total, int) and step < total:
        return settings, (
            f"tested at step {step} of {total} (unfinished): rerun the same --mode train "
            "command to finish it (it tests at the end)")
    return settings, None


def _old_total(settings: dict, report: dict) -> int | None:
    """The schedule's length of a test.json written before it recorded it: --steps, or
    --epochs x the steps per epoch of its training counts; None when unknown (LNL)."""
    if settings.get("steps") is not None:
        return int(settings["steps"])
    counts = report.get("train_counts")
    batch = settings.get("batch_size")
    if settings.get("method") == "lnl" or not isinstance(counts, list) or not batch:
        return None
    try:
        return int(settings["epochs"]) * max(1, int(sum(counts)) // int(batch))
    except (TypeError, ValueError):
        return None


def _meta_measurement(run_dir: Path, config: dict, path: Path, warnings: list[str],
                      apart: list[Apart]) -> Measurement | None:
    report = _read_json(path, warnings, dict)
    if report is None:
        return None
    config, reason = judge("meta", run_dir, config, report, path)
    if reason is not None:
        apart.append(Apart(path, reason))
        return None
    tested = report.get("settings") or {}
    # --n_test_episodes and --seed measure the same model again: not the row's settings
    # (the run's seed stays its seed), but which of a run's tests is pooled
    test_only = {n: v for n, v in tested.items()
                 if n in IGNORED["meta"] and v != config.get(n)} if isinstance(tested, dict) else {}
    try:
        settings = {**config, "train_n_steps": config.get("n_steps"),
                    **{n: v for n, v in tested.items() if n not in IGNORED["meta"]},
                    "n_steps": int(report["n_steps"]), "n_mc_samples": int(report["n_mc_samples"])}
        scores = {f"{r['role']}/{r['dataset']}": (float(r["accuracy"]), float(r["ci95"]))
                  for r in report["results"]}
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        warnings.append(f"skipped {path}: not a meta-test result (missing or bad {error})")
        return None
    if _not_finite(scores, path, apart):
        return None
    for name in ("id_dataset", "ood_dataset"):  # a test's own lists -> tuples, as the config's
        if isinstance(settings.get(name), list):
            settings[name] = tuple(settings[name])
    return Measurement("meta", run_dir, path, settings, scores, int(settings.get("seed", 0)),
                       test_only)


def _not_finite(scores: dict[str, tuple[float, float | None]], path: Path,
                apart: list[Apart]) -> bool:
    """A NaN or infinite score (a diverged model tested) is listed apart, never pooled: one
    NaN turned the row's mean and spread into nan."""
    import math

    bad = [name for name, (value, ci) in scores.items()
           if not math.isfinite(value) or (ci is not None and not math.isfinite(ci))]
    if bad:
        apart.append(Apart(path, f"its {', '.join(bad)} is not a finite number (the model "
                                 "tested had diverged): train it again, then test it"))
    return bool(bad)


def _one_test_per_run(measurements: list[Measurement], config: dict,
                      apart: list[Apart]) -> list[Measurement]:
    """A run's meta-tests, one per row: tests that differ only in ``--n_test_episodes`` or
    ``--seed`` measure the same model again, so one is pooled, by this rule: the run's own
    test (its settings); without it, the one over the most episodes (then the first by file
    name). The others are listed apart, naming the one pooled."""
    rows: dict[str, list[Measurement]] = {}
    for m in measurements:
        key = json.dumps({n: _show(v) for n, v in m.settings.items() if matters(n, "meta")},
                         sort_keys=True)
        rows.setdefault(key, []).append(m)
    kept = []
    for group in rows.values():
        chosen = min(group, key=lambda m: (
            bool(m.test_only), -int(m.test_only.get("n_test_episodes",
                                                    config.get("n_test_episodes", 0)) or 0),
            m.test_file.name))
        kept.append(chosen)
        for m in group:
            if m is chosen:
                continue
            other = m.test_only or {n: config.get(n) for n in ("n_test_episodes",)}
            apart.append(Apart(m.test_file, (
                "tested with " + ", ".join(f"--{n} {_show(v)} (the run's: "
                                           f"{_show(config.get(n))})" for n, v in other.items())
                + ": the same model measured again, not another seed; the run's pooled test "
                f"is {chosen.test_file.name}")))
    return kept


BIASED_SCORES = ("accuracy", "balanced_accuracy", "tail_recall")
# LNL's test.json: accuracy on its variant's test set (colour-shuffled, gray for --gray),
# both test sets, and the colour a probe still reads from f
LNL_SCORES = ("accuracy", "colour_shuffled_accuracy", "gray_accuracy", "probe_accuracy")


def lnl_variant(settings: dict) -> str:
    """train_lnl.variant_of on a config dict (for test.json files without "variant")."""
    if settings.get("gray"):
        return "gray"
    return "baseline" if settings.get("lnl_lambda") == 0 and settings.get("grl_factor") == 0 \
        else "lnl"


def _biased_measurement(run_dir: Path, config: dict, path: Path, warnings: list[str],
                        apart: list[Apart]) -> Measurement | None:
    result = _read_json(path, warnings, dict)
    if result is None:
        return None
    family = "lnl" if config.get("method") == "lnl" else "biased"
    config, reason = judge(family, run_dir, config, result, path)
    if reason is not None:
        apart.append(Apart(path, reason))
        return None
    if family == "lnl":
        config = {**config, "variant": result.get("variant") or lnl_variant(config)}
    try:
        # fractions in test.json; percent here, as the meta-learning tables
        scores = {k: (100.0 * float(result[k]), None)
                  for k in (LNL_SCORES if family == "lnl" else BIASED_SCORES)
                  if result.get(k) is not None}
    except (TypeError, ValueError) as error:
        warnings.append(f"skipped {path}: a score is not a number ({error})")
        return None
    if "accuracy" not in scores:
        warnings.append(f"skipped {path}: no 'accuracy' (not a --mode test result)")
        return None
    if _not_finite(scores, path, apart):
        return None
    return Measurement(family, run_dir, path, config, scores, int(config.get("seed", 0)))


def collect(root: Path, progress: bool = False) -> Collection:
    """Every measurement below ``root`` (any depth), in path order."""
    found = Collection()
    configs = sorted(root.rglob("config.json"))
    for config_path in progress_bar(configs, desc="reading runs", unit="run",
                                  enabled=progress):
        run_dir = config_path.parent
        found.n_run_dirs += 1
        config = _read_json(config_path, found.warnings, dict)
        if config is None:
            continue
        family = family_of(config)
        if family is None:
            found.warnings.append(f"skipped {config_path}: \"family\" is "
                                  f"{config.get('family')!r}, not one of "
                                  f"{', '.join(map(repr, FAMILIES))}")
            continue
        config = _with_defaults(config, family)
        if family == "biased":
            test = run_dir / BIASED_TEST
            if test.is_file():
                found.n_tests += 1
                m = _biased_measurement(run_dir, config, test, found.warnings, found.apart)
                if m is not None:
                    found.measurements.append(m)
            continue
        tests = []
        for path in sorted(run_dir.iterdir()):
            if TEST_NAME.match(path.name):
                found.n_tests += 1
                m = _meta_measurement(run_dir, config, path, found.warnings, found.apart)
                if m is not None:
                    tests.append(m)
        found.measurements += _one_test_per_run(tests, config, found.apart)
    return found
