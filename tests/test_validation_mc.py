"""--n_val_mc_samples: meta-train's validation (which picks best.pt) with the softmax averaged
over posterior samples, drawn apart from the training streams."""

from __future__ import annotations

import json

import pytest
import torch

from taml.episodic.config import parse_config
from taml.episodic.train import meta_train
from taml.run import checkpoint

from .test_training import config, learner_state

ALL_ON = ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]
SCHEDULE = ["--n_train_iters", "4", "--val_freq", "2", "--save_freq", "2", "--print_freq", "4"]


def spy_on_validation(monkeypatch):
    """Records n_mc_samples and the posterior generators of every validation batch."""
    import taml.episodic.train as trainer

    calls, real = [], trainer.episode_accuracies

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "episode_accuracies", spy)
    return calls


def test_mc_validation_trains_the_same_parameters_and_says_what_it_used(data_root, tmp_path,
                                                                       monkeypatch):
    meta_train(config(data_root, tmp_path / "means", *SCHEDULE, *ALL_ON))
    calls = spy_on_validation(monkeypatch)
    meta_train(config(data_root, tmp_path / "mc", *SCHEDULE, "--n_val_mc_samples", "3",
                      *ALL_ON))
    # 2 validations x (ID + OOD), each averaging 3 posterior samples per episode
    assert [c["n_mc_samples"] for c in calls] == [3] * 4
    assert all(c["batch_generator"] is not None for c in calls)
    # the training stream was not touched: the very same parameters, bit for bit
    means, mc = learner_state(tmp_path / "means"), learner_state(tmp_path / "mc")
    assert means.keys() == mc.keys()
    for key in means:
        assert torch.equal(means[key], mc[key]), key
    for run, predictor in (("means", "posterior means"), ("mc", "3 MC samples")):
        history = json.loads((tmp_path / run / "validation.json").read_text())
        assert [h["predictor"] for h in history] == [predictor, predictor]
        assert f", {predictor})" in (tmp_path / run / "train.log").read_text()


def test_mc_validation_is_deterministic(data_root, tmp_path):
    for run in ("a", "b"):
        meta_train(config(data_root, tmp_path / run, *SCHEDULE, "--n_val_mc_samples", "2",
                          *ALL_ON))
    a = checkpoint.load(tmp_path / "a" / checkpoint.LATEST)["validation"]
    b = checkpoint.load(tmp_path / "b" / checkpoint.LATEST)["validation"]
    assert a == b


def test_mc_validation_samples_differ_between_batches_and_datasets(data_root, tmp_path,
                                                                  monkeypatch):
    calls = spy_on_validation(monkeypatch)
    meta_train(config(data_root, tmp_path / "mc", "--n_train_iters", "2", "--val_freq", "2",
                      "--n_val_mc_samples", "2", *ALL_ON))
    first = [torch.randn(3, generator=c["batch_generator"](0)) for c in calls]
    second = torch.randn(3, generator=calls[0]["batch_generator"](1))
    assert not torch.equal(first[0], first[1])  # ID and OOD
    assert not torch.equal(first[0], second)  # two batches of one dataset


def test_a_deterministic_learner_says_so(data_root, tmp_path):
    meta_train(config(data_root, tmp_path / "maml", "--n_train_iters", "2", "--val_freq", "2"))
    history = json.loads((tmp_path / "maml" / "validation.json").read_text())
    assert history[0]["predictor"] == "deterministic"


def test_a_resume_may_change_the_validation_predictor(data_root, tmp_path):
    savedir = tmp_path / "run"
    first_half = ["--n_train_iters", "2", *SCHEDULE[2:]]
    meta_train(config(data_root, savedir, *first_half, *ALL_ON))
    meta_train(config(data_root, savedir, *SCHEDULE, "--n_val_mc_samples", "2", *ALL_ON))
    state = checkpoint.load(savedir / checkpoint.LATEST)
    assert {"iteration": 3, "flag": "--n_val_mc_samples", "old": 0, "new": 2} in state["changes"]
    assert [h["predictor"] for h in state["validation"]] == ["posterior means", "2 MC samples"]


@pytest.mark.parametrize("argv, message", [
    (["--n_val_mc_samples", "5"], "switch on at least one of --omega_on"),
    (["--n_val_mc_samples", "-1", "--z_on"], "--n_val_mc_samples must be 0"),
])
def test_invalid_validation_samples_fail_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_default_is_the_posterior_means():
    assert parse_config([]).n_val_mc_samples == 0
    assert parse_config(["--z_on", "--n_val_mc_samples", "4"]).n_val_mc_samples == 4
