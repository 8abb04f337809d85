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
