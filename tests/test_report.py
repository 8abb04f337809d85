"""The report command: the paper's tables, from run folders, with seeds pooled honestly.

Meta-learning runs are tiny real ones on the embedded dataset (2 methods x 2 seeds, built
once per module); biased-data runs are hand-written files in the contract's format
(``config.json`` with ``"family": "biased"``, ``test.json``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main as cli
from taml.data.synthetic import generate_synthetic
from taml.report.collect import Measurement
from taml.report.tables import build_tables

TINY = ["--way", "3", "--max_shot", "2", "--query", "2", "--n_steps", "1", "--metabatch", "1",
        "--n_train_iters", "3", "--val_freq", "3", "--log_freq", "1", "--n_val_episodes", "2",
        "--n_test_episodes", "6", "--no_progress", "--device", "cpu",
        "--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood"]
METHODS = {"maml": [], "taml": ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]}
SEEDS = (0, 1)


@pytest.fixture(scope="session")
def report_data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_data")
    generate_synthetic("synthetic", root, images_per_class=8,
                       splits={"train": 4, "valid": 3, "test": 4}, progress=False)
    generate_synthetic("synthetic_ood", root, images_per_class=8,
                       splits={"valid": 3, "test": 4}, progress=False)
    return root


def run_main(argv, capfd) -> tuple[int, str, str]:
    capfd.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        rc = stop.code if isinstance(stop.code, int) else 1
    out, err = capfd.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def runs(report_data_root, tmp_path_factory):
    """results/{maml,taml}/seed{0,1}, meta-trained 3 iterations and tested with 1 inner
    step; maml/seed0 tested a second time with 2 inner steps (an incomparable result)."""
    root = tmp_path_factory.mktemp("report_runs") / "results"
    for method, switches in METHODS.items():
        mc = ["--n_mc_samples", "2"] if switches else []
        for seed in SEEDS:
            common = ["--savedir", root / method / f"seed{seed}", "--seed", seed,
                      "--data_root", report_data_root, *TINY, *switches]
            for argv in (["--mode", "meta_train", *common],
                         ["--mode", "meta_test", *common, *mc]):
                assert cli.main([str(a) for a in argv]) == 0
    extra = ["--mode", "meta_test", "--savedir", root / "maml" / "seed0", "--data_root",
             report_data_root, *TINY, "--n_steps", "2"]
    assert cli.main([str(a) for a in extra]) == 0
    return root


def accuracies(root: Path, method: str, test_name: str, column: str) -> list[tuple]:
    """(accuracy, ci95) of every seed's test JSON, read directly."""
    found = []
    for seed in SEEDS:
        path = root / method / f"seed{seed}" / test_name
        if not path.is_file():
            continue
        for r in json.loads(path.read_text())["results"]:
            if f"{r['role']}/{r['dataset']}" == column:
                found.append((r["accuracy"], r["ci95"]))
    return found


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out")
    rc = cli.main(["--mode", "report", "--savedir", str(runs), "--out", str(out),
                   "--no_progress"])
    assert rc == 0
    return out


def test_cells_are_mean_and_std_over_seeds(runs, report):
    rows = read_csv(report / "report.csv")
    checked = 0
    for method in METHODS:
        mc = 2 if METHODS[method] else 0
        for column in ("id/synthetic", "ood/synthetic_ood"):
            values = [a for a, _ in accuracies(runs, method, f"test_step1_mc{mc}.json", column)]
            cell = [r for r in rows if r["method"] == method and r["column"] == column
                    and r["n"] == "2"]
            assert len(cell) == 1, cell
            assert float(cell[0]["mean"]) == pytest.approx(np.mean(values), rel=1e-5)
            assert float(cell[0]["spread"]) == pytest.approx(np.std(values, ddof=1),
                                                             rel=1e-5, abs=1e-6)
            assert cell[0]["spread_kind"] == "std" and cell[0]["seeds"] == "0 1"
            checked += 1
    assert checked == 4
    text = (report / "report.md").read_text()
    maml_id = [a for a, _ in accuracies(runs, "maml", "test_step1_mc0.json", "id/synthetic")]
    assert f"{np.mean(maml_id):.2f} ± {np.std(maml_id, ddof=1):.2f} (n=2)" in text


def test_a_single_seed_cell_is_the_episode_ci(runs, report):
    (acc, ci), = accuracies(runs, "maml", "test_step2_mc0.json", "ood/synthetic_ood")
    cell, = [r for r in read_csv(report / "report.csv")
             if r["method"] == "maml" and r["n"] == "1" and r["column"] == "ood/synthetic_ood"]
    assert (float(cell["mean"]), float(cell["spread"])) == (pytest.approx(acc, rel=1e-5),
                                                            pytest.approx(ci, rel=1e-5))
    assert cell["spread_kind"] == "ci95"


def test_runs_tested_with_other_inner_steps_are_kept_apart_and_the_report_says_why(report):
    rows = read_csv(report / "report.csv")
    tables = {r["table"] for r in rows}
    # Table 1: maml and taml at 1 step; the 2-step test alone in its own table
    assert len(tables) == 2
    two_step = {r["table"] for r in rows if "2 inner steps" in r["title"]}
    assert len(two_step) == 1 and {r["method"] for r in rows
                                   if r["table"] in two_step} == {"maml"}
    text = (report / "report.md").read_text()
    assert "kept apart" in text and "n_steps (1 vs 2)" in text


def test_figures_are_written_one_curve_per_group(report):
    assert Image.open(report / "report.png").size[0] > 100
    curves = sorted((report / "curves").glob("*.png"))
    assert len(curves) == 3  # maml and taml at 1 step, maml at 2 steps
    for path in curves:
        Image.open(path).verify()


def test_report_is_written_at_the_top_of_savedir_and_printed(runs, tmp_path, capfd):
    copy = tmp_path / "results"
    shutil.copytree(runs, copy)
    rc, out, err = run_main(["--mode", "report", "--savedir", copy, "--no_progress"], capfd)
    assert rc == 0, err
    assert "| MAML |" in out and "Bayesian TAML" in out
    for name in ("report.md", "report.csv", "report.png"):
        assert (copy / name).is_file()
    # a second report does not take the first one's outputs for runs
    rc, out2, _ = run_main(["--mode", "report", "--savedir", copy, "--no_progress"], capfd)
    assert rc == 0 and out2 == out


def test_a_corrupt_json_is_named_skipped_and_the_rest_reported(runs, tmp_path, capfd):
    copy = tmp_path / "results"
    shutil.copytree(runs, copy)
    broken = copy / "taml" / "seed1" / "test_step1_mc2.json"
    broken.write_text('{"results": [')
    broken_config = copy / "maml" / "seed1" / "config.json"
    broken_config.write_text("[1, 2]")  # valid JSON, not a config
    rc, out, err = run_main(["--mode", "report", "--savedir", copy, "--no_progress"], capfd)
    assert rc == 0 and "Traceback" not in err
    for path in (broken, broken_config):
        assert f"skipped {path}" in err
        assert str(path) in (copy / "report.md").read_text()
    rows = read_csv(copy / "report.csv")
    assert {r["n"] for r in rows if r["method"] == "taml"} == {"1"}
    assert {r["seeds"] for r in rows if r["method"] == "maml"} == {"0"}


@pytest.mark.parametrize("content", ["empty", "unfinished"])
def test_a_folder_without_finished_runs_gets_one_line(runs, tmp_path, capfd, content):
    if content == "unfinished":  # trained but never tested
        (tmp_path / "run").mkdir()
        shutil.copy(runs / "maml" / "seed0" / "config.json", tmp_path / "run")
    rc, out, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                            capfd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "no finished run" in lines[0]
    assert "--mode meta_test" in lines[0] and not (tmp_path / "report.md").exists()


def test_a_missing_savedir_gets_one_line(tmp_path, capfd):
    rc, _, err = run_main(["--mode", "report", "--savedir", tmp_path / "nope"], capfd)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not a folder" in err


# --------------------------------------------------------------- biased-data runs
def write_biased_run(folder: Path, method: str, seed: int, scores: dict, dataset="glyphs",
                     **test_fields):
    """A biased run folder as --mode train leaves it; ``test_fields`` are laid over
    test.json's (e.g. an older format without "total_steps", or a record of changes)."""
    folder.mkdir(parents=True)
    config = {"mode": "train", "method": method, "dataset": dataset, "bias": "long_tail",
              "imbalance_factor": 100.0, "network": "lenet_tml", "steps": 50, "lr": 0.1,
              "seed": seed, "savedir": str(folder), "device": "cpu", "family": "biased"}
    (folder / "config.json").write_text(json.dumps(config))
    record = {"step": 50, "total_steps": 50, "trained_config": config, "changes": []}
    (folder / "test.json").write_text(json.dumps(
        {"method": method, "dataset": dataset, "bias": "long_tail", "n_test": 100,
         "per_class_recall": [0.5, 0.5], "checkpoint": "checkpoint.pt", **scores,
         **record, **test_fields}))
    (folder / "train_metrics.csv").write_text(
        "step,epoch,loss,accuracy,lr,seconds\n10,0,2.0,0.3,0.1,0.5\n20,0,1.5,0.5,0.1,0.5\n")
    (folder / "eval.json").write_text(json.dumps(
        [{"step": 10, "accuracy": 0.4, "balanced_accuracy": 0.3},
         {"step": 20, "accuracy": 0.6, "balanced_accuracy": 0.5}]))


BIASED = {("erm", 0): (0.70, 0.60, 0.20), ("erm", 1): (0.74, 0.62, 0.30),
          ("mwnet", 0): (0.78, 0.70, 0.45), ("mwnet", 1): (0.80, 0.71, 0.55)}


def test_biased_runs_get_their_own_table_mean_and_std_over_seeds(tmp_path, capfd):
    for (method, seed), (acc, bal, tail) in BIASED.items():
        write_biased_run(tmp_path / method / f"seed{seed}", method, seed,
                         {"accuracy": acc, "balanced_accuracy": bal, "tail_recall": tail})
    # another dataset: its own table; a binary run without tail recall still reports
    write_biased_run(tmp_path / "other" / "erm", "erm", 0,
                     {"accuracy": 0.9, "balanced_accuracy": 0.8, "tail_recall": None},
                     dataset="mnist")
    rc, out, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                            capfd)
    assert rc == 0, err
    rows = read_csv(tmp_path / "report.csv")
    assert {r["family"] for r in rows} == {"biased"}
    assert len({r["table"] for r in rows}) == 2
    for method in ("erm", "mwnet"):
        for i, column in enumerate(("accuracy", "balanced_accuracy", "tail_recall")):
            values = [100 * BIASED[(method, s)][i] for s in (0, 1)]
            cell, = [r for r in rows if r["method"] == method and r["column"] == column
                     and r["n"] == "2"]
            assert float(cell["mean"]) == pytest.approx(np.mean(values))
            assert float(cell["spread"]) == pytest.approx(np.std(values, ddof=1))
    mnist = [r for r in rows if "mnist" in r["title"]]
    assert {r["column"] for r in mnist} == {"accuracy", "balanced_accuracy"}
    assert "| erm | 72.00 ± 2.83 (n=2) | 61.00 ± 1.41 (n=2) | 25.00 ± 7.07 (n=2) |" in out
    assert len(list((tmp_path / "curves").glob("*.png"))) == 3


# --------------------------------------------------------------- published numbers
def measurement(method_switches: dict, **changes) -> Measurement:
    settings = {"id_dataset": ("cifar",), "ood_dataset": ("svhn",), "way": 5, "max_shot": 50,
                "query": 15, "n_steps": 10, "train_n_steps": 5, "sampler_mode": "both",
                "image_size": None, "first_order": False, "metabatch": 4,
                "n_train_iters": 50000, "meta_lr": 1e-3, "inner_lr": 0.5,
                "n_mc_samples": 0, **method_switches, **changes}
    return Measurement("meta", Path("run"), Path("run/test.json"), settings,
                       {"id/cifar": (70.0, 0.3), "ood/svhn": (45.0, 0.3)}, 0)


def test_published_numbers_appear_only_beside_runs_in_the_papers_configuration():
    tables, _ = build_tables([measurement({}), measurement({"alpha_on": True})])
    published = {r.label: r.cells["id/cifar"].mean for r in tables[0].rows if r.published}
    assert published == {"MAML (published, Lee et al. 2020)": 71.55,
                         "Meta-SGD (published, Lee et al. 2020)": 72.71}
    tables, _ = build_tables([measurement({}, max_shot=20)])
    assert not any(r.published for t in tables for r in t.rows)


def test_ablation_rows_go_to_their_own_table_with_both_ends():
    switches = {"alpha_on": True}
    tables, _ = build_tables([
        measurement({}), measurement(switches),
        measurement({**switches, "omega_on": True, "n_mc_samples": 10}),
        measurement({**switches, "omega_on": True, "gamma_on": True, "z_on": True,
                     "n_mc_samples": 10})])
    assert [r.method for r in tables[0].rows if not r.published] == ["maml", "meta_sgd", "taml"]
    assert [r.label for r in tables[1].rows] == ["Meta-SGD", "Meta-SGD + ω", "Bayesian TAML"]


def test_the_same_learner_with_other_mc_samples_gets_its_own_labelled_row():
    taml = {"alpha_on": True, "omega_on": True, "gamma_on": True, "z_on": True}
    tables, _ = build_tables([measurement(taml, n_mc_samples=0),
                              measurement(taml, n_mc_samples=10)])
    labels = [r.label for r in tables[0].rows if not r.published]
    assert labels == ["Bayesian TAML (n_mc_samples=0)", "Bayesian TAML (n_mc_samples=10)"]
    assert any("differ in n_mc_samples" in note for note in tables[0].notes)


# --------------------------------------------------------------- what is pooled
# one row per configuration, one finished test of the run's own settings per seed; the rest
# under "Not pooled", each file with its reason
SCORES = {"accuracy": 0.70, "balanced_accuracy": 0.60, "tail_recall": 0.20}


def report_of(root: Path, capfd) -> tuple[list[dict], str]:
    rc, out, err = run_main(["--mode", "report", "--savedir", root, "--no_progress"], capfd)
    assert rc == 0, err
    return read_csv(root / "report.csv"), (root / "report.md").read_text()


def not_pooled(text: str) -> dict[str, str]:
    """report.md's "Not pooled" section: file -> reason."""
    assert "## Not pooled" in text
    section = text.split("## Not pooled", 1)[1].split("\n## ", 1)[0]
    items = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    return dict(item.split(": ", 1) for item in items)


def seeds_of(rows: list[dict], method: str) -> set[str]:
    """The seeds of the method's rows, each row's sorted ("0 3")."""
    return {" ".join(sorted(r["seeds"].split(), key=int)) for r in rows
            if r["method"] == method}


def test_a_run_tested_before_the_end_of_its_schedule_is_not_a_seed(tmp_path, capfd):
    write_biased_run(tmp_path / "erm" / "seed0", "erm", 0, SCORES)
    write_biased_run(tmp_path / "erm" / "seed1", "erm", 1, SCORES, step=10)  # of 50
    # written before test.json recorded the schedule: --steps 50 in its config says it
    write_biased_run(tmp_path / "erm" / "seed2", "erm", 2, SCORES, step=20,
                     total_steps=None, trained_config=None, changes=None)
    rows, text = report_of(tmp_path, capfd)
    assert seeds_of(rows, "erm") == {"0"}
    apart = not_pooled(text)
    assert "tested at step 10 of 50 (unfinished)" in apart[
        str(tmp_path / "erm" / "seed1" / "test.json")]
    assert "step 20 of 50" in apart[str(tmp_path / "erm" / "seed2" / "test.json")]


def test_a_resumed_run_with_a_stale_config_or_changed_flags_is_not_a_seed_of_its_original(
        tmp_path, capfd):
    write_biased_run(tmp_path / "a", "erm", 0, SCORES)
    # resumed with --lr 0.01 from step 26; config.json still says --lr 0.1
    stale = tmp_path / "b"
    write_biased_run(stale, "erm", 1, SCORES)
    config = json.loads((stale / "config.json").read_text())
    report = json.loads((stale / "test.json").read_text())
    report["trained_config"] = {**config, "lr": 0.01}
    report["changes"] = [{"step": 26, "flag": "--lr", "old": 0.1, "new": 0.01}]
    (stale / "test.json").write_text(json.dumps(report))
    # the same change, config.json rewritten: still a mix of two settings
    write_biased_run(tmp_path / "c", "erm", 2, SCORES,
                     changes=[{"step": 26, "flag": "--lr", "old": 0.1, "new": 0.01}])
    # a longer schedule only: a run of its final length, pooled
    write_biased_run(tmp_path / "d", "erm", 3, SCORES,
                     changes=[{"step": 26, "flag": "--steps", "old": 25, "new": 50}])
    rows, text = report_of(tmp_path, capfd)
    assert seeds_of(rows, "erm") == {"0 3"}
    apart = not_pooled(text)
    assert "lr 0.01 in the test, 0.1 in config.json" in apart[str(stale / "test.json")]
    assert "resumed with --lr 0.1 -> 0.01 from step 26" in apart[
        str(tmp_path / "c" / "test.json")]
    assert str(tmp_path / "d" / "test.json") not in apart


def test_an_old_test_of_another_method_is_not_reported_under_the_new_one(tmp_path, capfd):
    write_biased_run(tmp_path / "mwnet0", "mwnet", 0, SCORES)
    # erm's test.json left in a folder where an mwnet run was started anew (not tested yet)
    folder = tmp_path / "mwnet1"
    write_biased_run(folder, "erm", 1, SCORES, trained_config=None, changes=None,
                     total_steps=None)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "method": "mwnet"}))
    rows, text = report_of(tmp_path, capfd)
    assert seeds_of(rows, "mwnet") == {"0"} and seeds_of(rows, "erm") == set()
    reason = not_pooled(text)[str(folder / "test.json")]
    assert "--method erm" in reason and "--method mwnet" in reason


def test_a_copied_run_is_one_seed_not_two(tmp_path, capfd):
    write_biased_run(tmp_path / "erm" / "seed0", "erm", 0, SCORES)
    shutil.copytree(tmp_path / "erm" / "seed0", tmp_path / "erm" / "seed0_copy")
    rows, text = report_of(tmp_path, capfd)
    assert {r["n"] for r in rows if r["method"] == "erm"} == {"1"}
    reason = not_pooled(text)[str(tmp_path / "erm" / "seed0_copy" / "test.json")]
    assert "seed 0" in reason and str(tmp_path / "erm" / "seed0") in reason


def write_meta_run(folder: Path, seed: int, n_train_iters: int = 5) -> dict:
    from taml.episodic.config import Config

    folder.mkdir(parents=True)
    config = {**Config().to_dict(), "seed": seed, "n_train_iters": n_train_iters,
              "savedir": str(folder)}
    (folder / "config.json").write_text(json.dumps(config))
    return config


def write_meta_test(folder: Path, config: dict, accuracy: float, name="test_step5_mc0.json",
                    **fields) -> None:
    (folder / name).write_text(json.dumps({
        "checkpoint": "best.pt", "iteration": 3, "n_steps": 5, "n_mc_samples": 0,
        "results": [{"role": "id", "dataset": "cifar", "accuracy": accuracy, "ci95": 0.5},
                    {"role": "ood", "dataset": "svhn", "accuracy": 40.0, "ci95": 0.5}],
        "trained_iterations": config["n_train_iters"], "trained_config": config,
        "changes": [], **fields}))


def test_meta_tests_with_other_test_episodes_are_not_seeds(tmp_path, capfd):
    config = write_meta_run(tmp_path / "maml" / "seed0", 0)
    folder = tmp_path / "maml" / "seed0"
    write_meta_test(folder, config, 70.0)
    for episodes, digest, accuracy in ((100, "0a1b2c3d", 60.0), (200, "4e5f6a7b", 80.0)):
        write_meta_test(folder, config, accuracy, f"test_step5_mc0_{digest}.json",
                        settings={"n_test_episodes": episodes})
    rows, text = report_of(tmp_path, capfd)
    cell, = [r for r in rows if r["column"] == "id/cifar"]
    assert (cell["n"], float(cell["mean"]), cell["spread_kind"]) == ("1", 70.0, "ci95")
    apart = not_pooled(text)
    reason = apart[str(folder / "test_step5_mc0_0a1b2c3d.json")]
    assert "--n_test_episodes 100" in reason and "test_step5_mc0.json" in reason
    assert str(folder / "test_step5_mc0_4e5f6a7b.json") in apart


def test_a_runs_only_test_with_other_test_episodes_is_its_test(tmp_path, capfd):
    """Two seeds, each meta-tested only with --n_test_episodes 8 (the run's: 1000): each
    run's only test is its test, so both are pooled; a seed's second test over fewer
    episodes is listed apart, naming the one pooled (the most episodes)."""
    for seed in (0, 1):
        folder = tmp_path / "maml" / f"seed{seed}"
        config = write_meta_run(folder, seed)
        write_meta_test(folder, config, 70.0 + seed, "test_step5_mc0_0a1b2c3d.json",
                        settings={"n_test_episodes": 8})
    folder = tmp_path / "maml" / "seed1"
    write_meta_test(folder, json.loads((folder / "config.json").read_text()), 10.0,
                    "test_step5_mc0_4e5f6a7b.json", settings={"n_test_episodes": 4})
    rows, text = report_of(tmp_path, capfd)
    cell, = [r for r in rows if r["column"] == "id/cifar"]
    assert (cell["n"], float(cell["mean"])) == ("2", 70.5)
    reason = not_pooled(text)[str(folder / "test_step5_mc0_4e5f6a7b.json")]
    assert "--n_test_episodes 4" in reason and "test_step5_mc0_0a1b2c3d.json" in reason


def test_a_non_finite_result_is_not_pooled_and_the_report_says_why(tmp_path, capfd):
    """A NaN test (a diverged model) made the row "MAML nan +- nan (n=2)"."""
    for seed, accuracy in ((0, 70.0), (1, float("nan"))):
        config = write_meta_run(tmp_path / "maml" / f"seed{seed}", seed)
        write_meta_test(tmp_path / "maml" / f"seed{seed}", config, accuracy)
    write_biased_run(tmp_path / "erm", "erm", 0, {**SCORES, "accuracy": float("nan")})
    rc, out, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                            capfd)
    assert rc == 0, err
    rows = read_csv(tmp_path / "report.csv")
    cell, = [r for r in rows if r["column"] == "id/cifar"]
    assert (cell["n"], float(cell["mean"])) == ("1", 70.0)
    assert "nan" not in (tmp_path / "report.csv").read_text().lower()
    apart = not_pooled((tmp_path / "report.md").read_text())
    assert "id/cifar is not a finite number" in apart[
        str(tmp_path / "maml" / "seed1" / "test_step5_mc0.json")]
    assert "accuracy is not a finite number" in apart[str(tmp_path / "erm" / "test.json")]


def test_a_field_of_another_type_is_named_with_its_types(tmp_path, capfd):
    """The reason read "way 4 in the test, 4 in config.json"."""
    config = write_meta_run(tmp_path / "seed0", 0)
    write_meta_test(tmp_path / "seed0", {**config, "way": "5"}, 70.0)
    rc, out, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                            capfd)
    assert rc == 2
    assert "way '5' (str) in the test, 5 (int) in config.json" in err


@pytest.mark.parametrize("name", ["train_metrics.csv", "validation.json"])
def test_a_corrupt_curve_file_gets_one_note(tmp_path, capfd, name):
    config = write_meta_run(tmp_path / "seed0", 0)
    write_meta_test(tmp_path / "seed0", config, 70.0)
    (tmp_path / "seed0" / name).write_text("iteration,cross_entropy\n1,x\n" if
                                           name.endswith(".csv") else "[{\"iteration\"")
    rc, out, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                            capfd)
    assert rc == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and name in notes[0] and "left out" in notes[0], err


def test_an_unfinished_meta_run_is_not_a_seed(tmp_path, capfd):
    for seed in (0, 1):
        config = write_meta_run(tmp_path / f"seed{seed}", seed)
        write_meta_test(tmp_path / f"seed{seed}", config, 70.0,
                        trained_iterations=5 if seed == 0 else 2)
    rows, text = report_of(tmp_path, capfd)
    assert {r["seeds"] for r in rows} == {"0"}
    assert "tested after iteration 2 of 5 (unfinished)" in not_pooled(text)[
        str(tmp_path / "seed1" / "test_step5_mc0.json")]


LNL_SCORES = {"accuracy": 0.55, "colour_shuffled_accuracy": 0.55, "gray_accuracy": 0.65,
              "probe_accuracy": 0.30, "balanced_accuracy": 0.54, "tail_recall": 0.0}


def test_lnl_runs_get_their_own_table_with_their_own_columns(tmp_path, capfd):
    write_biased_run(tmp_path / "erm", "erm", 0, SCORES)
    for seed in (0, 1):
        folder = tmp_path / "lnl" / f"seed{seed}"
        write_biased_run(folder, "lnl", seed, LNL_SCORES, variant="lnl", bias="colour")
        config = json.loads((folder / "config.json").read_text())
        # an LNL config records the long-tail defaults it does not use (bias long_tail)
        config.update(steps=None, epochs=2, pretrain_epochs=1, color_var=0.02)
        (folder / "config.json").write_text(json.dumps(config))
        report = json.loads((folder / "test.json").read_text())
        report.update(trained_config=config, step=30, total_steps=30)
        (folder / "test.json").write_text(json.dumps(report))
    rows, text = report_of(tmp_path, capfd)
    lnl = [r for r in rows if r["family"] == "lnl"]
    assert {r["column"] for r in lnl} == {"accuracy", "colour_shuffled_accuracy",
                                          "gray_accuracy", "probe_accuracy"}
    assert {r["n"] for r in lnl} == {"2"} and {r["row"] for r in lnl} == {"LNL"}
    long_tail = {r["table"] for r in rows if r["family"] == "biased"}
    assert long_tail.isdisjoint({r["table"] for r in lnl})
    assert {r["method"] for r in rows if r["table"] in long_tail} == {"erm"}
    assert "LNL: coloured glyphs, σ² 0.02" in text and "colour probe on f" in text


def test_nothing_to_pool_is_one_line(tmp_path, capfd):
    write_biased_run(tmp_path / "erm", "erm", 0, SCORES, step=10)
    rc, _, err = run_main(["--mode", "report", "--savedir", tmp_path, "--no_progress"],
                          capfd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "none pooled" in lines[0]
    assert "step 10 of 50" in lines[0] and not (tmp_path / "report.md").exists()


# ---------------------------------- what the trainers record, from tiny real runs
def test_biased_test_json_records_what_the_report_judges_by(monkeypatch, tmp_path, capfd):
    from taml.biased import build as parts
    from taml.biased.config import parse_biased_config
    from taml.biased.evaluate import test as biased_test
    from taml.biased.train import train as biased_train
    from taml.run.errors import TrainingDiverged

    from .biased_fakes import FakeMethod, fake_data

    data = fake_data()
    monkeypatch.setattr(parts, "load_data", lambda cfg: data)
    poison = {}
    monkeypatch.setattr(parts, "make_method",
                        lambda cfg, n, counts: FakeMethod(n, poison.get("at")))

    def config(savedir, seed, *extra):
        return parse_biased_config(["--savedir", str(savedir), "--seed", str(seed),
                                    "--batch_size", "8", "--meta_batch_size", "6",
                                    "--network", "lenet_tml", "--lr", "0.05",
                                    "--lr_schedule", "", "--no_progress", "--device", "cpu",
                                    *extra])

    biased_train(config(tmp_path / "whole", 0, "--steps", "4"))
    biased_train(config(tmp_path / "longer", 1, "--steps", "2"))
    biased_train(config(tmp_path / "longer", 1, "--steps", "4"))  # pooled: a 4-step run
    biased_train(config(tmp_path / "mixed", 2, "--steps", "2"))
    biased_train(config(tmp_path / "mixed", 2, "--steps", "4", "--lr", "0.02"))
    poison["at"] = 3  # diverges after the step-2 checkpoint; tested there, of 4
    with pytest.raises(TrainingDiverged):
        biased_train(config(tmp_path / "cut", 3, "--steps", "4", "--save_every", "2"))
    poison.clear()
    biased_test(config(tmp_path / "cut", 3, "--steps", "4"))
    cut = json.loads((tmp_path / "cut" / "test.json").read_text())
    assert (cut["step"], cut["total_steps"]) == (2, 4)
    assert cut["trained_config"]["steps"] == 4 and cut["changes"] == []
    rows, text = report_of(tmp_path, capfd)
    assert seeds_of(rows, "erm") == {"0 1"}
    apart = not_pooled(text)
    assert "step 2 of 4" in apart[str(tmp_path / "cut" / "test.json")]
    assert "--lr 0.05 -> 0.02 from step 3" in apart[str(tmp_path / "mixed" / "test.json")]


def test_a_meta_test_older_than_the_runs_training_is_not_pooled(runs, report_data_root,
                                                                tmp_path, capfd):
    copy = tmp_path / "results"
    shutil.copytree(runs / "maml", copy)
    tested = json.loads((copy / "seed1" / "test_step1_mc0.json").read_text())
    assert tested["trained_iterations"] == 3 and tested["trained_config"]["n_train_iters"] == 3
    # seed 1 trained on to 6 iterations after its test: the test is of the 3-iteration run
    argv = ["--mode", "meta_train", "--savedir", copy / "seed1", "--seed", 1, "--data_root",
            report_data_root, *TINY, "--n_train_iters", 6]
    assert cli.main([str(a) for a in argv]) == 0
    rows, text = report_of(copy, capfd)
    assert {r["seeds"] for r in rows} == {"0"}
    reason = not_pooled(text)[str(copy / "seed1" / "test_step1_mc0.json")]
    assert "n_train_iters 3 in the test, 6 in config.json" in reason
