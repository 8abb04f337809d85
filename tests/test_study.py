"""`python -m experiments.study`: every variant of a study trains, is tested with each of its
predictors, and the tables report them over seeds; a re-run reuses finished runs."""

from __future__ import annotations

import json

from experiments import study
from experiments.demo import METHODS


def test_the_variables_study_isolates_each_balancing_variable_on_meta_sgd():
    chosen = {v.name: v for v in study.variants("variables", mc=10)}
    assert chosen["Meta-SGD"].switches == ("--alpha_on",) and chosen["Meta-SGD"].test_mc == (0,)
    for name, switch in (("Meta-SGD + z", "--z_on"), ("Meta-SGD + ω", "--omega_on"),
                         ("Meta-SGD + γ", "--gamma_on")):
        assert chosen[name].switches == ("--alpha_on", switch)
        assert chosen[name].test_mc == (0, 1, 10)  # means, one sample, the demo's samples
    assert chosen["Bayesian TAML"].switches == ("--alpha_on", "--omega_on", "--gamma_on", "--z_on")
    assert chosen["Bayesian TAML"].switches == tuple(METHODS["Bayesian TAML"][1])


def test_the_schedule_study_compares_normalisers_and_validation_predictors():
    chosen = {v.name: v for v in study.variants("schedule", mc=10)}
    assert chosen["Bayesian TAML, padded KL"].switches[-2:] == ("--kl_normaliser", "padded")
    assert chosen["Meta-SGD + z, padded KL"].switches[-2:] == ("--kl_normaliser", "padded")
    assert "--n_val_mc_samples" in chosen["Bayesian TAML, MC validation"].switches
    assert chosen["Bayesian TAML, MC validation"].test_mc == chosen["Bayesian TAML"].test_mc


def test_a_quick_study_runs_tests_and_tabulates_every_predictor(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "variants", lambda name, mc: [
        study.Variant("Meta-SGD", "meta_sgd", ("--alpha_on",), (0,)),
        study.Variant("Meta-SGD + z", "meta_sgd_z", ("--alpha_on", "--z_on"), (0, mc)),
    ])
    args = ["--study", "variables", "--quick", "--seeds", "0", "1", "--savedir",
            str(tmp_path / "study"), "--data_root", str(tmp_path / "data")]
    summary = study.main(args)
    assert sorted((r["variant"], r["seed"]) for r in summary["runs"]) == [
        ("Meta-SGD", 0), ("Meta-SGD", 1), ("Meta-SGD + z", 0), ("Meta-SGD + z", 1)]
    z_runs = [r for r in summary["runs"] if r["variant"] == "Meta-SGD + z"]
    assert all(sorted(r["tests"]) == ["0", "2"] for r in z_runs)
    assert z_runs[0]["tests"]["2"]["n_mc_samples"] == 2
    text = (tmp_path / "study" / "study.md").read_text()
    for row in ("| Meta-SGD | deterministic |", "| Meta-SGD + z | posterior means |",
                "| Meta-SGD + z | 2 MC samples |"):
        assert row in text
    on_disk = json.loads((tmp_path / "study" / "study.json").read_text())
    assert on_disk["settings"]["seeds"] == [0, 1]
    assert (tmp_path / "study" / "curves.png").stat().st_size > 0  # the validation curves
    # a re-run reuses every finished run and test: no test file is written again
    tests = sorted((tmp_path / "study").rglob("test_step*_mc*.json"))
    stamps = [p.stat().st_mtime_ns for p in tests]
    again = study.main(args)
    assert [p.stat().st_mtime_ns for p in tests] == stamps
    assert again["runs"] == summary["runs"]


def test_mean_std_over_seeds():
    assert study.mean_std([70.0, 74.0]) == "72.0 ± 2.8"
    assert study.mean_std([70.0]) == "70.0"


def test_the_ranking_study_compares_the_three_learners_and_the_originals_start():
    chosen = {v.name: v for v in study.variants("ranking", mc=10)}
    assert list(chosen)[:3] == ["MAML", "Meta-SGD", "Bayesian TAML"]
    assert chosen["MAML"].switches == () and chosen["MAML"].test_mc == (0,)
    assert chosen["Bayesian TAML"].test_mc == (0, 10)  # posterior means beside the paper's
    assert "--sigma_init" not in chosen["Bayesian TAML"].switches  # taml's default start
    original = chosen["Bayesian TAML, original σ init"]
    assert original.switches[-2:] == ("--sigma_init", "original")
    assert original.folder != chosen["Bayesian TAML"].folder
    assert study.STUDY_ITERS["ranking"] == 1500


def test_the_tendency_table_averages_each_set_over_seeds():
    def run(seed, ratio):
        return {"variant": "Bayesian TAML", "seed": seed, "balancing": {"iteration": 9, "sets": [
            {"role": "ID", "dataset": "d", "n_tasks": 4, "omega_small_over_large": ratio,
             "omega_r": -0.5, "gamma_r": dict.fromkeys(study.LAYERS, 0.25)}]}}

    text = study.tendency_table([run(0, 1.2), run(1, 1.4), {"variant": "MAML", "seed": 0}])
    [row] = [line for line in text.splitlines() if line.startswith("| Bayesian TAML")]
    assert row.startswith("| Bayesian TAML | ID | 1.30 ± 0.14 | -0.50 ± 0.00 | 0.25 ± 0.00 |")
    assert "MAML" not in text
