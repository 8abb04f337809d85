"""Finding finished runs below a folder and reading their results.

A run folder is one holding ``config.json``. A meta-learning run is finished once
``--mode meta_test`` wrote a ``test_step{n}_mc{s}[_{digest}].json``; each such file is one
*measurement* (a run tested twice with other settings gives two). A biased-data run is
finished once ``--mode test`` wrote ``test.json``. The config's ``"family"`` key, which both
families write, tells them apart (``"episodic"`` or ``"biased"``; an episodic folder written
before the key existed has none); a folder of another family is named in a warning.
A file that cannot be read is named in a warning and skipped; the rest is still reported.
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

    family: str                   # 'meta' | 'biased'
    run_dir: Path
    test_file: Path
    settings: dict
    scores: dict[str, tuple[float, float | None]]
    seed: int


@dataclass
class Collection:
    measurements: list[Measurement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_run_dirs: int = 0


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


def _meta_measurement(run_dir: Path, config: dict, path: Path,
                      warnings: list[str]) -> Measurement | None:
    report = _read_json(path, warnings, dict)
    if report is None:
        return None
    try:
        settings = {**config, "train_n_steps": config.get("n_steps"),
                    **(report.get("settings") or {}),
                    "n_steps": int(report["n_steps"]), "n_mc_samples": int(report["n_mc_samples"])}
        scores = {f"{r['role']}/{r['dataset']}": (float(r["accuracy"]), float(r["ci95"]))
                  for r in report["results"]}
    except (KeyError, TypeError, ValueError) as error:
        warnings.append(f"skipped {path}: not a meta-test result (missing or bad {error})")
        return None
    for name in ("id_dataset", "ood_dataset"):  # a test's own lists -> tuples, as the config's
        if isinstance(settings.get(name), list):
            settings[name] = tuple(settings[name])
    return Measurement("meta", run_dir, path, settings, scores, int(settings.get("seed", 0)))


BIASED_SCORES = ("accuracy", "balanced_accuracy", "tail_recall")


def _biased_measurement(run_dir: Path, config: dict, path: Path,
                        warnings: list[str]) -> Measurement | None:
    result = _read_json(path, warnings, dict)
    if result is None:
        return None
    try:
        # fractions in test.json; percent here, as the meta-learning tables
        scores = {k: (100.0 * float(result[k]), None) for k in BIASED_SCORES
                  if result.get(k) is not None}
    except (TypeError, ValueError) as error:
        warnings.append(f"skipped {path}: a score is not a number ({error})")
        return None
    if "accuracy" not in scores:
        warnings.append(f"skipped {path}: no 'accuracy' (not a --mode test result)")
        return None
    return Measurement("biased", run_dir, path, config, scores, int(config.get("seed", 0)))


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
                m = _biased_measurement(run_dir, config, test, found.warnings)
                if m is not None:
                    found.measurements.append(m)
            continue
        for path in sorted(run_dir.iterdir()):
            if TEST_NAME.match(path.name):
                m = _meta_measurement(run_dir, config, path, found.warnings)
                if m is not None:
                    found.measurements.append(m)
    return found
