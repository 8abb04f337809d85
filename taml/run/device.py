"""``--device`` and ``--gpu_id`` as a torch device, the same for both families: under
torchrun each process of a node takes GPU ``LOCAL_RANK``, otherwise ``--gpu_id``."""

from __future__ import annotations

import platform

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


def cpu_has_native_bf16() -> bool | None:
    """Whether this x86 CPU computes bfloat16 natively as PyTorch runs it: AVX-512 kernels
    (not capped by ``ATEN_CPU_CAPABILITY=avx2``) on a CPU with AVX-512-BF16 or AMX. None
    where it is not an x86 CPU (not known)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def bf16_cpu_note(device: torch.device) -> str | None:
    """The one ``note:`` line of ``--precision bf16`` on a CPU without native bfloat16, where
    it is slower than float32, not faster (measured: a 32x32 conv forward and backward 2x
    slower on an AVX-512 CPU without BF16, 17x on AVX2, which falls back to
    ``_slow_conv2d``; docs/benchmarks.md). None where bf16 is native or the device a GPU."""
    if device.type != "cpu" or cpu_has_native_bf16() is not False:
        return None
    return (f"note: --precision bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}, "
            "no AVX-512-BF16 or AMX) runs bfloat16 without native kernels: slower than "
            "--precision fp32, not faster")
