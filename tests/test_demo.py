"""`python -m experiments.demo --quick`: every row trains, is tested as its table says, and the
summary records the settings the demo ran with and its wall time."""

from __future__ import annotations

import json
from dataclasses import asdict

from experiments import demo


def test_the_quick_demo_runs_every_method_and_records_its_settings(tmp_path, capsys):
    savedir = tmp_path / "demo"
    summary = demo.main(["--quick", "--no_progress", "--savedir", str(savedir),
                         "--data_root", str(tmp_path / "data")])
    printed = capsys.readouterr().out
    settings = demo.demo_settings(quick=True)
    assert list(summary["methods"]) == ["MAML", "Meta-SGD", "Bayesian TAML"]
    tested = {m: r["tested_with"] for m, r in summary["methods"].items()}
    assert tested == {"MAML": "deterministic", "Meta-SGD": "deterministic",
                      "Bayesian TAML": f"{settings.n_mc_samples} MC samples"}
    assert summary["methods"]["Bayesian TAML"]["n_mc_samples"] == settings.n_mc_samples > 0
    assert summary["methods"]["Meta-SGD"]["n_mc_samples"] == 0
    for report in summary["methods"].values():  # the same test episodes for every row
        assert [r["n_episodes"] for r in report["results"]] == [settings.n_test_episodes] * 2
    on_disk = json.loads((savedir / "summary.json").read_text())
    recorded = dict(on_disk["settings"])
    methods = recorded.pop("methods")
    assert recorded == asdict(settings)
    assert methods["Meta-SGD"] == {"switches": ["--alpha_on"], "tested_with": "deterministic"}
    assert on_disk["wall_seconds"] > 0
    assert "Wall time of the demo:" in printed
    table = (savedir / "summary.md").read_text()
    assert "tested with" in table and table.count("\n| ") == 3  # a row per method
    for folder in ("maml", "meta_sgd", "taml"):
        assert (savedir / folder / "best.pt").is_file(), folder
    assert (savedir / "taml" / f"test_step1_mc{settings.n_mc_samples}.json").is_file()


def report(id_acc, ood_acc, ci=1.0):
    return {"results": [{"role": "id", "accuracy": id_acc, "ci95": ci},
                        {"role": "ood", "accuracy": ood_acc, "ci95": ci}]}


def test_the_reading_ranks_from_the_numbers_and_names_overlapping_intervals():
    lines = demo.ranking_reading({"MAML": report(70, 60), "Meta-SGD": report(71.5, 65),
                                  "Bayesian TAML": report(80, 70)})
    assert lines[0] == ("In distribution: Bayesian TAML 80.00 > Meta-SGD 71.50 > MAML 70.00 "
                        "(95% intervals overlap: Meta-SGD / MAML).")
    assert lines[1] == "Out of distribution: Bayesian TAML 70.00 > Meta-SGD 65.00 > MAML 60.00."


def test_the_demo_compares_its_order_with_the_ranking_studys_table(tmp_path):
    def row(name, tested, id_mean, ood_mean):
        return {"variant": name, "tested_with": tested, "n_seeds": 3,
                "id": {"mean": id_mean, "std": 1.0}, "ood": {"mean": ood_mean, "std": 1.0}}

    path = tmp_path / "ranking.json"
    path.write_text(json.dumps({"command": "python -m experiments.study --study ranking",
                                "n_train_iters": 1500, "seeds": [0, 1, 2], "rows": [
        row("MAML", "deterministic", 70, 60), row("Meta-SGD", "deterministic", 75, 65),
        row("Bayesian TAML", "posterior means", 10, 10),
        row("Bayesian TAML", "10 MC samples", 80, 70)]}))
    tested = {"MAML": "deterministic", "Meta-SGD": "deterministic",
              "Bayesian TAML": "10 MC samples"}
    ours = {"MAML": report(70, 61), "Meta-SGD": report(60, 65), "Bayesian TAML": report(90, 99)}
    lines = demo.established_reading(ours, tested, path)
    assert "Over seeds 0, 1, 2 at 1500 iterations" in lines[0]
    assert "Bayesian TAML  ID 80.00 ± 1.00" in lines[3]  # the row tested as the demo tests
    assert lines[4].endswith("Bayesian TAML > Meta-SGD > MAML; the demo's order differs: its "
                             "one seed at its schedule does not establish a ranking.")
    assert lines[5].endswith("Bayesian TAML > Meta-SGD > MAML; the demo's order is the same.")
    assert "no row" in demo.established_reading({**ours, "Other": report(1, 1)},
                                                {**tested, "Other": "x"}, path)[0]
