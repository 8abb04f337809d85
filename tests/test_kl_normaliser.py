"""--kl_normaliser: each task's KL divided by N + M with N its real support size (task, the
default) or the meta-batch's padded support length (padded, the original's N_t)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taml.data.episodes import EpisodeSampler
from taml.episodic.config import parse_config
from taml.episodic.learners.conv4 import Conv4
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import (
    MetaLearner,
    Switches,
    kl_support_sizes,
    meta_objective,
)
from taml.episodic.resume import IncompatibleRun, check_resume
from taml.episodic.train import meta_train
from taml.run import checkpoint

from .conftest import colour_split
from .test_training import TINY, config

ALL_ON = ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]


@pytest.fixture
def unequal_batch():
    """Three tasks of 3 classes with 1..6 shots per task: support sizes differ."""
    sampler = EpisodeSampler(colour_split(8, 20, size=32), 3, 6, 2, mode="task")
    batch = sampler.sample(3, np.random.default_rng(4))
    sizes = batch.support_sizes.tolist()
    assert len(set(sizes)) > 1, sizes  # else padded and task could not differ
    return batch


def test_padded_kl_is_the_task_kl_scaled_by_n_plus_m_over_padded_n_plus_m(unequal_batch,
                                                                            float64_default):
    learner = MetaLearner(Switches(True, True, True, True), 32, 3, 6, InnerLoopConfig(1, 0.4),
                          Conv4())
    outputs = learner(unequal_batch, sample=False)
    _, task = meta_objective(outputs, unequal_batch)
    padded_sizes = kl_support_sizes(unequal_batch, "padded")
    _, padded = meta_objective(outputs, unequal_batch, padded_sizes)

    n_pad = unequal_batch.support_mask.shape[1]  # the length the sampler padded to
    m = unequal_batch.query_labels.shape[1]
    for t, n in enumerate(unequal_batch.support_sizes.tolist()):
        by_hand = outputs.kl[t].item() / (n_pad + m)
        assert padded["kl"][t].item() == pytest.approx(by_hand, rel=1e-12)
        assert padded["kl"][t].item() == pytest.approx(
            task["kl"][t].item() * (n + m) / (n_pad + m), rel=1e-12)
    smallest = int(unequal_batch.support_sizes.argmin())
    assert padded["kl"][smallest] < task["kl"][smallest]  # a small task's KL weighs less
    # everything else is masked as before: the cross-entropy and accuracy do not change
    torch.testing.assert_close(padded["cross_entropy"], task["cross_entropy"])
    torch.testing.assert_close(padded["accuracy"], task["accuracy"])


def test_padded_size_of_a_sharded_meta_batch_is_the_largest_of_all_shards(unequal_batch):
    assert kl_support_sizes(unequal_batch, "padded", padded_size=40).tolist() == [40] * 3
    assert torch.equal(kl_support_sizes(unequal_batch, "task"), unequal_batch.support_sizes)
    with pytest.raises(ValueError, match="task or padded"):
        kl_support_sizes(unequal_batch, "real")


def spy_on_objective(monkeypatch):
    """Records (support sizes, KL normaliser sizes) of every meta_objective call of the
    trainer."""
    import taml.episodic.learners.meta_learner as objective_module

    calls, real = [], objective_module.meta_objective

    def spy(outputs, batch, kl_sizes=None):
        calls.append((batch.support_sizes.tolist(), kl_sizes.tolist()))
        return real(outputs, batch, kl_sizes)

    monkeypatch.setattr(objective_module, "meta_objective", spy)
    return calls


@pytest.mark.parametrize("shards", ["1", "2"])
def test_the_flag_reaches_the_objective_from_the_command_line(data_root, tmp_path,
                                                              monkeypatch, shards):
    calls = spy_on_objective(monkeypatch)
    meta_train(config(data_root, tmp_path / "run", "--n_train_iters", "3", "--metabatch", "4",
                      "--shards", shards, "--kl_normaliser", "padded", *ALL_ON))
    per_shard = int(shards)
    assert len(calls) == 3 * per_shard
    for i in range(0, len(calls), per_shard):
        iteration = calls[i : i + per_shard]
        largest = max(max(sizes) for sizes, _ in iteration)  # over the whole meta-batch
        assert all(kl == [largest] * len(sizes) for sizes, kl in iteration)
    assert any(min(sizes) < max(kl) for sizes, kl in calls)  # padding made a difference
    saved = checkpoint.load(tmp_path / "run" / checkpoint.LATEST)["config"]
    assert saved["kl_normaliser"] == "padded"
    assert '"kl_normaliser": "padded"' in (tmp_path / "run" / "config.json").read_text()


def test_the_default_divides_by_each_tasks_real_support(data_root, tmp_path, monkeypatch):
    calls = spy_on_objective(monkeypatch)
    meta_train(config(data_root, tmp_path / "run", "--n_train_iters", "2", *ALL_ON))
    assert calls and all(sizes == kl for sizes, kl in calls)


def test_a_resume_with_another_normaliser_is_refused(data_root, tmp_path):
    savedir = tmp_path / "run"
    meta_train(config(data_root, savedir, "--n_train_iters", "2", *ALL_ON))
    before = (savedir / checkpoint.LATEST).read_bytes()
    with pytest.raises(IncompatibleRun, match="--kl_normaliser task there, "
                                              "--kl_normaliser padded now"):
        meta_train(config(data_root, savedir, "--n_train_iters", "4", "--kl_normaliser",
                          "padded", *ALL_ON))
    assert (savedir / checkpoint.LATEST).read_bytes() == before


def test_a_run_saved_before_the_flag_existed_learned_with_task(tmp_path):
    saved = parse_config(TINY).to_dict()
    del saved["kl_normaliser"]
    check_resume(saved, parse_config(TINY), tmp_path)  # the same: accepted
    with pytest.raises(IncompatibleRun, match="--kl_normaliser task there"):
        check_resume(saved, parse_config([*TINY, "--kl_normaliser", "padded"]), tmp_path)


def test_an_unknown_normaliser_fails_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--kl_normaliser", "real"])
    assert "invalid choice" in capsys.readouterr().err


def test_two_processes_normalise_by_the_whole_meta_batchs_padded_size(data_root, tmp_path):
    """Each rank draws its own shard; the padded N is the largest over both ranks (a
    collective), so two processes take the steps of one process drawing the same shards."""
    from .test_distributed import assert_same_parameters, flags, one_process, torchrun

    common = ["--n_train_iters", "3", "--metabatch", "4", "--val_freq", "3",
              "--kl_normaliser", "padded", *ALL_ON]
    torchrun(*flags(data_root, tmp_path / "two", *common))
    one_process(*flags(data_root, tmp_path / "one", "--shards", "2", *common))
    assert_same_parameters(tmp_path / "two", tmp_path / "one")
