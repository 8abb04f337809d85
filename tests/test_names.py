"""One house for the names: the learners' table (``taml.episodic.learners``) names every
switch combination, the config, the report and the studies take their names from it, both
families write the "family" key the report tells them apart by, and the config's precision
choices are the network's."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from taml.episodic.config import PRECISIONS, Config, build_parser, parse_config
from taml.episodic.learners import (
    ABLATIONS,
    LEARNERS,
    SWITCH_NAMES,
    bayesian_taml,
    maml,
    meta_sgd,
    method_name,
    method_title,
    switches_on,
)
from taml.report.collect import collect
from taml.report.tables import build_tables, method_label

ROOT = Path(__file__).resolve().parents[1]
LEARNER_FILES = ("maml.py", "meta_sgd.py", "bayesian_taml.py")
ALL = ("alpha_on", "omega_on", "gamma_on", "z_on")

# (alpha, omega, gamma, z) -> Config.method as it always was: the default run folders'
# names (./results/<id>/<method>), which must not change
OLD_NAMES = {
    (0, 0, 0, 0): "maml",
    (1, 0, 0, 0): "meta_sgd",
    (1, 1, 1, 1): "taml",
    (0, 1, 0, 0): "taml_omega",
    (0, 0, 1, 0): "taml_gamma",
    (0, 0, 0, 1): "taml_z",
    (0, 1, 1, 0): "taml_omega_gamma",
    (0, 1, 0, 1): "taml_omega_z",
    (0, 0, 1, 1): "taml_gamma_z",
    (0, 1, 1, 1): "taml_omega_gamma_z",
    (1, 1, 0, 0): "taml_alpha_omega",
    (1, 0, 1, 0): "taml_alpha_gamma",
    (1, 0, 0, 1): "taml_alpha_z",
    (1, 1, 1, 0): "taml_alpha_omega_gamma",
    (1, 1, 0, 1): "taml_alpha_omega_z",
    (1, 0, 1, 1): "taml_alpha_gamma_z",
}


def test_the_sixteen_switch_combinations_keep_their_names():
    assert sorted(OLD_NAMES) == sorted(itertools.product((0, 1), repeat=4))
    for bits, expected in OLD_NAMES.items():
        on = [s for s, bit in zip(ALL, bits, strict=True) if bit]
        cfg = Config(**{s: bool(bit) for s, bit in zip(ALL, bits, strict=True)})
        assert method_name(on) == expected
        assert cfg.method == expected
        assert cfg.resolved_savedir == f"./results/cifar/{expected}"
        assert switches_on(cfg) == tuple(on) == switches_on(asdict(cfg))
    assert parse_config(["--alpha_on", "--omega_on"]).method == "taml_alpha_omega"


def test_an_unknown_switch_is_refused():
    with pytest.raises(ValueError, match="unknown switch"):
        method_name(["beta_on"])


def test_one_table_of_names_titles_and_switches():
    assert LEARNERS == {
        "maml": ("MAML", ()),
        "meta_sgd": ("Meta-SGD", ("alpha_on",)),
        "taml": ("Bayesian TAML", ("alpha_on", "omega_on", "gamma_on", "z_on")),
    }
    assert ABLATIONS == {
        "taml_alpha_omega": ("Meta-SGD + ω", ("alpha_on", "omega_on")),
        "taml_alpha_gamma": ("Meta-SGD + γ", ("alpha_on", "gamma_on")),
        "taml_alpha_z": ("Meta-SGD + z", ("alpha_on", "z_on")),
    }
    for name, (title, switches) in {**LEARNERS, **ABLATIONS}.items():
        assert method_name(switches) == name and method_title(name) == title
        assert method_label(name, "meta") == title  # the report's rows
    # the other combinations: the report's fallback, as before
    assert method_title("taml_omega_gamma") == "switches omega, gamma"
    assert method_title("taml_alpha_omega_z") == "switches alpha, omega, z"
    assert method_label("taml_z", "meta") == "switches z"


def test_each_learner_file_holds_its_name_title_and_switches_and_no_build():
    for module, name in ((maml, "maml"), (meta_sgd, "meta_sgd"), (bayesian_taml, "taml")):
        assert module.NAME == name and module.__doc__  # the equations stay with it
        assert LEARNERS[name] == (module.TITLE, module.SWITCHES)
    for file in LEARNER_FILES:
        tree = ast.parse((ROOT / "taml/episodic/learners" / file).read_text())
        functions = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert functions == [], f"{file} defines {functions}"


def test_the_switch_names_are_the_configs_and_the_networks():
    from taml.episodic.learners.meta_learner import Switches

    assert SWITCH_NAMES == ALL == tuple(f.name for f in fields(Switches))
    assert set(SWITCH_NAMES) <= {f.name for f in fields(Config)}
    for _, switches in LEARNERS.values():  # a learner's switches build its network's
        Switches(**dict.fromkeys(switches, True))


def test_the_studies_name_their_runs_from_the_table():
    from experiments import study

    for which in ("variables", "schedule"):
        for variant in study.variants(which, mc=10):
            on = tuple(f.removeprefix("--") for f in variant.switches if f[2:] in ALL)
            assert variant.folder.startswith(method_name(on))
            assert variant.name.startswith(method_title(method_name(on)))
    folders = [v.folder for v in study.variants("variables", mc=10)]
    assert folders == ["meta_sgd", "taml_alpha_z", "taml_alpha_omega", "taml_alpha_gamma",
                       "taml"]
    folders = [v.folder for v in study.variants("schedule", mc=10)]
    assert folders == ["taml", "taml_padded", "taml_mc_val", "taml_alpha_z",
                       "taml_alpha_z_padded"]


# ------------------------------------------------------------------------ the family key
def test_an_episodic_config_says_its_family():
    saved = parse_config(["--alpha_on"]).to_dict()
    assert saved["family"] == "episodic"
    # --force says how to start, not what the run is: never saved (issue 25)
    assert {k: v for k, v in saved.items() if k != "family"} == {
        k: v for k, v in asdict(parse_config(["--alpha_on"])).items() if k != "force"}
    assert json.loads(json.dumps(saved))["family"] == "episodic"  # config.json's


def test_the_family_key_changes_no_resume_or_meta_test_check(tmp_path):
    from taml.episodic.resume import changed_test_settings, check_meta_test, check_resume

    cfg = parse_config(["--alpha_on", "--id_dataset", "synthetic",
                        "--ood_dataset", "synthetic_ood"])
    new = cfg.to_dict()
    old = {k: v for k, v in new.items() if k != "family"}  # a run from before the key
    for saved in (new, old):
        assert check_resume(saved, cfg, tmp_path) == []
        check_meta_test(saved, cfg, tmp_path)
        assert changed_test_settings(saved, cfg) == {}


def write_meta_run(folder: Path, config: dict, seed: int, accuracy: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**config, "seed": seed}))
    (folder / "test_step5_mc0.json").write_text(json.dumps(
        {"n_steps": 5, "n_mc_samples": 0,
         "results": [{"role": "id", "dataset": "cifar", "accuracy": accuracy, "ci95": 0.5},
                     {"role": "ood", "dataset": "svhn", "accuracy": 40.0, "ci95": 0.5}]}))


def test_the_report_reads_a_folder_without_the_key_as_episodic(tmp_path):
    cfg = Config(alpha_on=True)
    old = asdict(cfg)  # config.json as episodic runs wrote it before the key
    assert "family" not in old
    write_meta_run(tmp_path / "old", old, 0, 70.0)
    write_meta_run(tmp_path / "new", cfg.to_dict(), 1, 72.0)
    found = collect(tmp_path)
    assert found.warnings == []
    assert [m.family for m in found.measurements] == ["meta", "meta"]
    tables, _ = build_tables(found.measurements)
    # one table, one row: the key keeps no runs apart
    assert len(tables) == 1 and [r.label for r in tables[0].rows] == ["Meta-SGD"]
    assert tables[0].rows[0].cells["id/cifar"].n == 2
    assert tables[0].rows[0].cells["id/cifar"].mean == pytest.approx(71.0)


def test_the_report_tells_the_families_apart_by_the_key(tmp_path):
    write_meta_run(tmp_path / "episodic", Config().to_dict(), 0, 70.0)
    biased = tmp_path / "biased"
    biased.mkdir()
    (biased / "config.json").write_text(json.dumps({"family": "biased", "method": "erm"}))
    (biased / "test.json").write_text(json.dumps({"accuracy": 0.5}))
    other = tmp_path / "other"  # a family the report does not know: named, not misread
    write_meta_run(other, {**Config().to_dict(), "family": "unknown"}, 0, 70.0)
    found = collect(tmp_path)
    assert sorted(m.family for m in found.measurements) == ["biased", "meta"]
    assert len(found.warnings) == 1 and "other" in found.warnings[0]
    assert "'unknown'" in found.warnings[0]


# ------------------------------------------------------------------------ precisions
def test_the_configs_precision_choices_are_the_networks_dtypes():
    import torch

    from taml.episodic.learners import backbone

    assert PRECISIONS == tuple(backbone.PRECISIONS) == ("fp32", "bf16")
    assert backbone.PRECISIONS == {"fp32": None, "bf16": torch.bfloat16}
    action, = [a for a in build_parser()._actions if a.dest == "precision"]
    assert tuple(action.choices) == PRECISIONS and Config().precision in PRECISIONS


def test_the_config_and_the_report_tables_load_no_network():
    code = ("import sys, taml.episodic.config, taml.report.tables; "
            "print(sorted(m for m in sys.modules if m == 'torch' "
            "or m.startswith('taml.episodic.learners.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split("\n")[0] == str(sorted(
        f"taml.episodic.learners.{m}" for m in ("maml", "meta_sgd", "bayesian_taml")))
