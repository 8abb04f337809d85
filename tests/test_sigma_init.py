"""--sigma_init: every posterior's σ at initialisation (taml's 0.2 by default, the
original's softplus(0) by ``original``); a resume keeps the σ the run started with, and a run
saved before the flag existed started with the original's."""

from __future__ import annotations

import pytest

from taml.episodic.build import build_learner
from taml.episodic.config import parse_config
from taml.episodic.learners.bayesian_taml import DEFAULT_SIGMA_INIT, ORIGINAL_SIGMA_INIT
from taml.episodic.resume import IncompatibleRun, check_resume

from .test_training import TINY

ALL_ON = ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]


def test_the_default_is_narrow_the_original_is_a_flag_and_both_reach_the_heads():
    assert parse_config(TINY).sigma_init == DEFAULT_SIGMA_INIT == 0.2
    original = build_learner(parse_config([*TINY, *ALL_ON, "--sigma_init", "original"])).inference
    narrow = build_learner(parse_config([*TINY, *ALL_ON])).inference
    for name in ("omega", "gamma", "z"):
        assert float(getattr(original, name).pre_std.bias.detach().abs().max()) == 0.0, name
        bias = getattr(narrow, name).pre_std.bias.detach()  # log(e^0.2 - 1) = softplus⁻¹(0.2)
        assert float(bias.mean()) == pytest.approx(-1.5078, abs=1e-4), name


def test_a_resume_with_another_sigma_is_refused_and_an_older_run_had_the_originals(tmp_path):
    saved = parse_config([*TINY, *ALL_ON]).to_dict()
    with pytest.raises(IncompatibleRun, match="--sigma_init"):
        check_resume(saved, parse_config([*TINY, *ALL_ON, "--sigma_init", "original"]), tmp_path)
    del saved["sigma_init"]  # a run folder written before the flag: the original's σ,
    # resumed by the same command under either (the flag only initialises)
    check_resume(saved, parse_config([*TINY, *ALL_ON, "--sigma_init", "original"]), tmp_path)
    check_resume(saved, parse_config([*TINY, *ALL_ON]), tmp_path)


@pytest.mark.parametrize("value", ["0", "-0.1", "nan"])
def test_a_sigma_that_is_no_std_is_refused_at_parse_time(value, capsys):
    with pytest.raises(SystemExit):
        parse_config([*TINY, "--sigma_init", value])
    assert "--sigma_init must be a positive finite σ" in capsys.readouterr().err


def test_original_names_the_originals_sigma_exactly():
    on = [*TINY, *ALL_ON]
    assert parse_config([*on, "--sigma_init", "original"]).sigma_init == ORIGINAL_SIGMA_INIT
    assert parse_config([*on, "--sigma_init", "0.2"]).sigma_init == 0.2


@pytest.mark.parametrize("switches", [[], ["--alpha_on"]])
def test_sigma_init_to_maml_or_meta_sgd_is_refused_at_parse_time(switches, capsys):
    """It would be recorded in config.json, then refused by the resume of the same command
    as a change of what is learned: a flag of another method."""
    with pytest.raises(SystemExit):
        parse_config([*TINY, *switches, "--sigma_init", "original"])
    assert "--sigma_init sets the balancing variables' posteriors" in capsys.readouterr().err


def test_a_sigma_whose_kl_gradient_overflows_is_refused_not_blamed_on_meta_lr(capsys):
    """σ = 1e-45 diverged at the first step (the KL's gradient -1/σ is inf in float32) and
    the stop told the user to lower --meta_lr."""
    with pytest.raises(SystemExit):
        parse_config([*TINY, *ALL_ON, "--sigma_init", "1e-45"])
    assert "--sigma_init must be at least 1e-30" in capsys.readouterr().err
