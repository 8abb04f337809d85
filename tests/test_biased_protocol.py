"""The biased methods' fair protocol: each method's own meta defaults (TML's original outer
step and update period, its lookahead at the base lr), a validation split in test.json, and
the study's grid and choice on validation, never on the test set."""

from __future__ import annotations

import json

import pytest

from experiments import biased_study as study
from taml.biased import build as parts
from taml.biased.config import BiasedConfig, parse_biased_config
from taml.biased.train import train

from .test_biased_train import TINY, glyph_root  # noqa: F401  (the fixture)


def test_meta_flags_left_out_take_each_methods_own_default():
    tml = parse_biased_config(["--method", "tml"])
    assert (tml.meta_lr, tml.meta_every) == (0.1, 10)  # the original's out_lr and hook
    mwnet = parse_biased_config(["--method", "mwnet"])
    assert (mwnet.meta_lr, mwnet.meta_every, mwnet.meta_optimizer) == (1e-3, 1, "adam")
    assert parse_biased_config(["--method", "tml", "--meta_lr", "0.5"]).meta_lr == 0.5
    assert BiasedConfig(method="tml").meta_every == 10  # built directly too
    assert json.loads(json.dumps(tml.to_dict()))["meta_lr"] == 0.1  # recorded resolved


def test_tmls_lookahead_uses_the_base_lr_and_mwnets_the_current_one():
    tml = parts.make_method(parse_biased_config(["--method", "tml", "--lr", "0.02"]), 3,
                            (5, 3, 1))
    assert tml.hp.lookahead_lr == 0.02  # not the decayed lr of the step
    mwnet = parts.make_method(parse_biased_config(["--method", "mwnet", "--lr", "0.02"]), 3,
                              (5, 3, 1))
    assert mwnet.hp.lookahead_lr is None  # MW-Net's original follows the decay
    own = parse_biased_config(["--method", "tml", "--lookahead_lr", "0.3"])
    assert parts.make_method(own, 3, (5, 3, 1)).hp.lookahead_lr == 0.3


def test_a_run_with_a_val_split_reports_it_beside_the_test(tmp_path, glyph_root):  # noqa: F811
    report = train(parse_biased_config([
        "--savedir", str(tmp_path / "run"), *TINY, "--dataset", "glyphs", "--steps", "3",
        "--val_per_class", "5", "--data_root", str(glyph_root)]))
    assert report["validation"]["n_test"] == 50  # 5 per class, 10 classes
    assert 0 <= report["validation"]["balanced_accuracy"] <= 1
    assert report["n_test"] == 1000  # the test set is untouched
    plain = train(parse_biased_config([
        "--savedir", str(tmp_path / "plain"), *TINY, "--dataset", "glyphs", "--steps", "1",
        "--data_root", str(glyph_root)]))
    assert "validation" not in plain


def test_the_grid_gives_every_method_the_same_lrs_and_the_meta_ones_two_settings_more():
    for method in ("erm", "class_balanced", "focal", "l2rw"):
        assert [f[1] for _, f in study.variants(method)] == [str(lr) for lr in study.LRS]
    assert 0.001 in study.LRS and 0.01 in study.LRS  # L2RW's and TML's papers' own lrs
    mwnet = study.variants("mwnet")
    assert len(mwnet) == 2 * len(study.LRS) and len({n for n, _ in mwnet}) == len(mwnet)
    assert len(study.variants("tml")) == 4 * len(study.LRS)  # meta lr x loss scale


def test_the_choice_is_the_best_validation_score_and_never_looks_at_the_test_set(
        monkeypatch, tmp_path):
    """A fake runner: the test accuracy is best at lr 0.05, validation best at 0.01."""
    def fake_run(args, run_dir):
        lr = float(args[args.index("--lr") + 1])
        val = {0.01: 0.9}.get(lr, 0.5)
        return {"accuracy": lr, "balanced_accuracy": lr, "tail_recall": lr,
                "validation": {"balanced_accuracy": val}}

    monkeypatch.setattr(study, "run_main", fake_run)
    monkeypatch.setattr(study, "best_eval", lambda run_dir: None)
    setting = study.SETTINGS["long_tail"]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        result = study.study_setting(setting, "glyphs", [0, 1, 2], tmp_path, pool)
    for method in setting.methods:
        flags = result["chosen"][method]["flags"]
        assert flags[:2] == ["--lr", "0.01"], (method, flags)
        assert [r["seed"] for r in result["runs"][method]] == [0, 1, 2]
    # a tie goes to the grid's first point: the smaller lr, the first meta setting
    assert result["chosen"]["mwnet"]["flags"][2:] == list(study.META_GRID["mwnet"][0])
    text = study.table(result, setting)
    assert "| ERM | --lr 0.01 | 90.0 |" in text
    assert "failed" in text.splitlines()[0]
    # every method at lr 0.01: level with ERM on every column and seed
    assert study.reading(result, setting)[0] == (
        "class-balanced - ERM: accuracy +0.00 (better on 0 of 3 seeds), balanced acc. +0.00 "
        "(better on 0 of 3 seeds), tail recall +0.00 (better on 0 of 3 seeds).")


@pytest.mark.parametrize("name", list(study.SETTINGS))
def test_every_settings_flags_parse(name):
    setting = study.SETTINGS[name]
    for method in setting.methods:
        for _, flags in study.variants(method)[:2]:
            cfg = parse_biased_config(["--method", method,
                                       *study.data_flags(setting, "glyphs"),
                                       *study.schedule_flags(setting), *flags])
            assert cfg.val_per_class == study.VAL_PER_CLASS
