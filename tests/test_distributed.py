"""Meta-training across processes: two gloo processes on this CPU (torchrun on 127.0.0.1).

The claim: a K-process run takes exactly the steps of one process that draws each meta-batch
as the same K shards (``--shards K``), so splitting the work changes nothing but the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from taml.episodic.build import RandomStreams, ShardError
from taml.episodic.config import parse_config
from taml.episodic.learners.meta_learner import MetaLearner, TaskOutputs, meta_objective
from taml.episodic.resume import IncompatibleRun
from taml.episodic.train import meta_train
from taml.run import checkpoint
from taml.run.distributed import World

from .test_config import ROOT
from .test_training import TINY, config, learner_state

SWITCHES = ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]  # posterior streams too
COMMON = ["--val_freq", "2", "--save_freq", "2", "--print_freq", "2", *SWITCHES]


def flags(data_root, savedir, *extra):
    return ["--data_root", str(data_root), "--savedir", str(savedir), *TINY, *extra]


def torchrun(*argv):
    """``main.py argv`` in two processes; only ever on 127.0.0.1, on a port the OS picks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--rdzv_backend", "c10d",
               "--rdzv_endpoint", "127.0.0.1:0", "main.py", *argv]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def one_process(*argv):
    """The same run in this process, with one thread as each torchrun process has: Adam
    turns the last-bit differences of multi-threaded sums into visible ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return meta_train(parse_config(list(argv)))
    finally:
        torch.set_num_threads(threads)


def rounding_noise_only(key: str) -> bool:
    """The conv biases: batch norm subtracts any per-channel bias, so their meta-gradient is
    exactly 0 in exact arithmetic and rounding noise in floating point, whose sign depends
    on the order of the sums (tasks one by one, shards, ranks); Adam turns that noise into
    steps of up to the learning rate. They change no output, so runs that sum in another
    order agree on every other parameter, not on these."""
    return (key.startswith("backbone.conv") and key.endswith(".bias")) or (
        key.startswith("alpha.conv") and key.endswith("__bias"))


def assert_same_parameters(a_dir, b_dir, atol=1e-6, rtol=0.0, other_sum_order=False):
    """``other_sum_order``: the runs add the meta-gradient in different orders, so the
    conv biases (:func:`rounding_noise_only`) are left out."""
    a, b = learner_state(a_dir), learner_state(b_dir)
    assert a.keys() == b.keys()
    for key in a:
        if not (other_sum_order and rounding_noise_only(key)):
            torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)


def test_two_processes_take_the_steps_of_one_process_drawing_the_same_shards(data_root,
                                                                             tmp_path):
    run = torchrun(*flags(data_root, tmp_path / "two", "--n_train_iters", "4", *COMMON))
    one_process(*flags(data_root, tmp_path / "one", "--n_train_iters", "4", "--shards", "2",
                       *COMMON))
    assert_same_parameters(tmp_path / "two", tmp_path / "one")
    two = checkpoint.load(tmp_path / "two" / checkpoint.LATEST)
    one = checkpoint.load(tmp_path / "one" / checkpoint.LATEST)
    # validation episodes are split over the ranks and gathered: the same scores
    assert two["validation"] == one["validation"]
    assert two["config"]["shards"] == 2 and len(two["random"]) == 2
    # rank 0 alone logs: each line once in the log and on the terminal
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("val    iter 4:") == 1 and run.stdout.count("val    iter 4:") == 1


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(data_root, tmp_path):
    interrupted = tmp_path / "interrupted"
    torchrun(*flags(data_root, interrupted, "--n_train_iters", "2", *COMMON))
    # the checkpoint holds both ranks' streams: one process with --shards 2 continues too
    alone = tmp_path / "alone"
    shutil.copytree(interrupted, alone)
    with pytest.raises(IncompatibleRun, match="resume with torchrun --nproc_per_node 2"):
        meta_train(parse_config(flags(data_root, alone, "--n_train_iters", "4", *COMMON)))
    one_process(*flags(data_root, alone, "--n_train_iters", "4", "--shards", "2", *COMMON))
    torchrun(*flags(data_root, interrupted, "--n_train_iters", "4", *COMMON))
    one_process(*flags(data_root, tmp_path / "straight", "--n_train_iters", "4",
                       "--shards", "2", *COMMON))
    assert "Resuming from" in (interrupted / "train.log").read_text()
    assert_same_parameters(interrupted, tmp_path / "straight")
    assert_same_parameters(alone, tmp_path / "straight")


def test_a_metabatch_that_does_not_split_over_the_processes_fails_at_start(data_root,
                                                                          tmp_path):
    cfg = parse_config(flags(data_root, tmp_path / "run", "--metabatch", "3"))
    # the check comes before any collective, so no process group is needed to see it
    # a refusal the user can fix (main.py exits 2 on it, not 1, the code of a diverged run)
    with pytest.raises(ShardError, match=r"--metabatch 3 does not split evenly over 2 "
                                         r"processes.*--nproc_per_node"):
        meta_train(cfg, World(rank=0, size=2, local_rank=0))
    assert not (tmp_path / "run").exists()


def test_shards_must_divide_the_metabatch(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--metabatch", "4", "--shards", "3"])
    assert "--metabatch 4 does not split into --shards 3" in capsys.readouterr().err


def test_each_shard_draws_its_own_tasks_and_shard_zero_is_the_single_process_stream():
    single = RandomStreams.from_seed(7)
    first, second = RandomStreams.from_seed(7, 0), RandomStreams.from_seed(7, 1)
    assert single.episodes.random() == first.episodes.random()
    assert torch.equal(torch.rand(3, generator=single.posterior),
                       torch.rand(3, generator=first.posterior))
    assert RandomStreams.from_seed(7).episodes.random() != second.episodes.random()
    assert not torch.equal(torch.rand(3, generator=RandomStreams.from_seed(7).posterior),
                           torch.rand(3, generator=second.posterior))


def whole_meta_batch_backward(self, batch, generator, kl_sizes=None, scale=1.0,
                              task_batching="auto"):
    """The trainer's previous path: the meta-batch's objective backpropagated at once."""
    outputs = self(batch, sample=True, generator=generator, task_batching=task_batching)
    loss, per_task = meta_objective(outputs, batch, kl_sizes)
    (loss * scale).backward()
    return (loss.detach(), {k: v.detach() for k, v in per_task.items()},
            TaskOutputs(outputs.query_logits.detach(), outputs.kl.detach(), {}))


@pytest.mark.parametrize("shards", ["1", "2"])
def test_training_with_a_backward_per_task_equals_one_backward_per_meta_batch(
        data_root, tmp_path, monkeypatch, float64_default, shards):
    """In float64, the trained parameters of the task-by-task meta-gradient (the trainer's)
    equal those of backpropagating each shard's objective at once, with --shards and the
    padded KL normaliser (the case where shards share a normaliser)."""
    flags = ["--n_train_iters", "3", "--metabatch", "4", "--shards", shards,
             "--kl_normaliser", "padded", "--alpha_on", "--omega_on", "--gamma_on", "--z_on"]
    meta_train(config(data_root, tmp_path / "per_task", *flags))
    monkeypatch.setattr(MetaLearner, "meta_backward", whole_meta_batch_backward)
    meta_train(config(data_root, tmp_path / "at_once", *flags))
    assert learner_state(tmp_path / "per_task")["backbone.conv1.weight"].dtype == torch.float64
    assert_same_parameters(tmp_path / "per_task", tmp_path / "at_once", atol=1e-12,
                           rtol=1e-9, other_sum_order=True)
