"""``--device`` and ``--gpu_id`` as a torch device, the same for both families: under
torchrun each process of a node takes GPU ``LOCAL_RANK``, otherwise ``--gpu_id``."""

from __future__ import annotations

import torch

from taml.run.distributed import SINGLE, World
from taml.run.errors import Refusal


class DeviceError(Refusal):
    """The device asked for is not on this machine."""


def resolve_device(device: str, gpu_id: int, world: World = SINGLE) -> torch.device:
    """``device`` is ``auto`` (CUDA when there is one), ``cuda`` or ``cpu``."""
    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        index = world.local_rank if world.size > 1 else gpu_id
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--gpu_id {index}: this machine has "
                              f"{torch.cuda.device_count()} GPU(s); choose another id")
        return torch.device("cuda", index)
    if device == "cuda":
        raise DeviceError("--device cuda: no CUDA device is available here; use --device cpu "
                          "or --device auto")
    return torch.device("cpu")
