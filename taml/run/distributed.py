"""Meta-training across processes and machines: torchrun's ranks and their collectives.

A run started by ``torchrun`` finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its
environment; with ``WORLD_SIZE`` > 1 every process joins one ``torch.distributed`` group
(gloo on CPU, NCCL on CUDA with device ``cuda:LOCAL_RANK``). Without torchrun the world is one
process and every function here is a no-op, so the single-process code path is unchanged.

How a meta-batch is split (docs/distributed.md): it is drawn as ``shards`` equal parts, each
from its own random streams seeded by (run seed, shard); rank r of W owns the contiguous
shards ``r * shards/W ..``. The objective is the mean over the whole meta-batch, so each
shard's mean loss is weighted by its share of the tasks and the weighted gradients are
summed over ranks (all_reduce) before the element-wise clip. A single process with
``--shards K`` therefore computes the same update as K processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among torchrun's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, tables, plots, metrics and checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)))


SINGLE = World()


def start(cuda: bool, world: World | None = None) -> World:
    """Joins torchrun's process group when there is one (NCCL with this process on GPU
    ``LOCAL_RANK`` when ``cuda``, else gloo); returns this process's world."""
    world = World.from_env() if world is None else world
    if world.size > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank,
                                world_size=world.size)
    return world


def stop(world: World, finished: bool = True) -> None:
    """Leaves the process group. After a normal finish every rank first waits for the
    others: rank 0 still writes the last checkpoint while the others are done, and a rank
    that tore its gloo threads down meanwhile was seen to abort at exit ("terminate called
    without an active exception", once in a fresh-clone CI run). After an error
    no rank waits (the others may never arrive; torchrun stops them)."""
    if world.size > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def sum_in_place(tensors: list[torch.Tensor], world: World) -> None:
    """Sums ``tensors`` over all ranks, in place, in one collective."""
    if world.size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def sum_step(grads: list[torch.Tensor], statistics: dict[str, torch.Tensor],
             world: World) -> dict[str, float | list[float]]:
    """A training step's one collective: ``grads`` summed over ranks in place together with
    the step's named statistics (so that every rank takes the same step, or stops at the
    same one). Returns the statistics summed over ranks, in the gradients' dtype: a float
    for a scalar, a list of floats for a vector (e.g. per-class counts)."""
    dtype = grads[0].dtype if grads else torch.float64
    packed = torch.cat([value.to(dtype).reshape(-1) for value in statistics.values()])
    sum_in_place([*grads, packed], world)
    values, offset = packed.tolist(), 0
    summed: dict[str, float | list[float]] = {}
    for name, value in statistics.items():
        size = value.numel()
        summed[name] = values[offset] if value.dim() == 0 else values[offset:offset + size]
        offset += size
    return summed


def max_over_ranks(value: int, world: World, device: torch.device) -> int:
    """The largest of every rank's ``value`` (an integer), on every rank."""
    if world.size == 1:
        return value
    box = torch.tensor([value], dtype=torch.int64, device=device)  # NCCL: on the GPU
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box.item())


def broadcast_tensors(tensors: list[torch.Tensor], world: World) -> None:
    """Rank 0's values of ``tensors`` on every rank (parameters stay identical)."""
    if world.size == 1 or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    dist.broadcast(flat, 0)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def broadcast_object(obj, world: World):
    """Rank 0's ``obj`` (picklable; tensors on the CPU) on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, world: World) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out
