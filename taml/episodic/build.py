"""What a run is made of, built from its config: device, episode samplers, the learner.

Shared by meta-training and meta-testing, so that both read the data and build the model
the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from taml.data.episodes import EpisodeSampler
from taml.data.loading import load_dataset_split
from taml.data.registry import get_spec
from taml.episodic.config import Config, image_size_of
from taml.episodic.learners.conv4 import Conv4
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches
from taml.episodic.learners.resnet12 import ResNet12
from taml.run import device as run_device
from taml.run.distributed import SINGLE, World
from taml.run.errors import Refusal
from taml.run.seeds import Stream, numpy_stream, shard_generator, torch_stream


def resolve_device(cfg: Config, world: World = SINGLE) -> torch.device:
    """``--device`` / ``--gpu_id`` (under torchrun: GPU ``LOCAL_RANK``), one line if absent."""
    return run_device.resolve_device(cfg.device, cfg.gpu_id, world)


def note_precision(cfg: Config, device: torch.device, world: World = SINGLE) -> None:
    """One ``note:`` line where ``--precision bf16`` is slower than fp32 (a CPU without native
    bfloat16), once the run has passed its checks (a refusal stays one line)."""
    note = run_device.bf16_cpu_note(device) if cfg.precision == "bf16" else None
    if note and world.is_main:
        print(note, file=sys.stderr)


class ShardError(Refusal):
    """A meta-batch that does not split over the shards or processes asked for."""


def shard_count(cfg: Config, world: World) -> int:
    """How many shards each meta-batch is drawn as (``--shards``, else one per process);
    refuses, naming the flags to change, when the meta-batch or the shards do not split."""
    shards = cfg.shards or world.size
    if cfg.metabatch % shards:
        if cfg.shards:
            raise ShardError(f"--metabatch {cfg.metabatch} does not split into --shards "
                             f"{shards} equal parts; choose a --metabatch that is a multiple "
                             f"of {shards}")
        raise ShardError(f"--metabatch {cfg.metabatch} does not split evenly over {shards} "
                         f"processes (torchrun's --nproc_per_node x --nnodes); use a "
                         f"--metabatch that is a multiple of {shards}, or a --nproc_per_node "
                         f"that divides {cfg.metabatch}")
    if shards % world.size:
        raise ShardError(f"--shards {shards} cannot be split over {world.size} processes; "
                         f"use a --nproc_per_node (x --nnodes) that divides {shards}")
    return shards


def make_sampler(cfg: Config, name: str, split: str) -> EpisodeSampler:
    data = load_dataset_split(name, split, cfg.data_root, cfg.image_size)
    return EpisodeSampler(data, cfg.way, cfg.max_shot, cfg.query, cfg.sampler_mode,
                          dataset_name=name, split_name=split)


def samplers_for(cfg: Config, names: tuple[str, ...], split: str) -> dict[str, EpisodeSampler]:
    """Samplers of ``split`` for the datasets in ``names`` that have that split."""
    return {n: make_sampler(cfg, n, split) for n in names
            if split in get_spec(n, cfg.image_size).splits}


def build_backbone(cfg: Config, generator: torch.Generator) -> nn.Module:
    """``--backbone``'s body: the 4-conv net with its kernels drawn from ``generator`` (the
    learner's, seeded by ``--seed``: the inference network's draws follow them, as in every
    run saved since the first), or a ResNet-12 whose kernels are drawn from their own
    stream of ``--seed``."""
    if cfg.backbone == "conv4":
        return Conv4(generator=generator)
    return ResNet12(generator=torch_stream(cfg.seed, Stream.BACKBONE))


def build_learner(cfg: Config) -> MetaLearner:
    """The command line's learner: the same ``MetaLearner`` that the API's ``MAML``,
    ``MetaSGD`` and ``BayesianTAML`` configure (:mod:`taml.episodic.api`)."""
    switches = Switches(cfg.alpha_on, cfg.omega_on, cfg.gamma_on, cfg.z_on)
    generator = torch.Generator().manual_seed(cfg.seed)
    return MetaLearner(
        switches,
        image_size=image_size_of(cfg),
        way=cfg.way,
        max_shot=cfg.max_shot,
        inner=InnerLoopConfig(cfg.n_steps, cfg.inner_lr, cfg.first_order, cfg.precision),
        backbone=build_backbone(cfg, generator),
        # the original's multi-dataset encoder reads ω from the class statistics directly
        omega_reads_statistics=len(cfg.id_dataset) > 1,
        generator=generator,
        sigma_init=cfg.sigma_init,
        head=cfg.head,
    )


@dataclass
class RandomStreams:
    """Every random generator of a run: one stream per purpose, so that validation and
    printouts never shift the training stream (a resumed run then equals an uninterrupted
    one whatever was validated in between)."""

    episodes: np.random.Generator  # meta-training episodes
    posterior: torch.Generator  # posterior samples in meta-training

    @classmethod
    def from_seed(cls, seed: int, shard: int = 0) -> RandomStreams:
        """The streams of one shard of the meta-batch (one per torchrun rank): shard 0's
        are a single-process run's, the others' are seeded by (seed, shard)."""
        episodes = numpy_stream(seed, Stream.EPISODES, *([shard] if shard else []))
        return cls(episodes, shard_generator(seed, shard))

    def state(self) -> dict:
        return {"episodes": self.episodes.bit_generator.state,
                "posterior": self.posterior.get_state()}

    def restore(self, state: dict) -> None:
        self.episodes.bit_generator.state = state["episodes"]
        self.posterior.set_state(state["posterior"])
