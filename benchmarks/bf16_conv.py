"""What --precision bf16 does to a convolution's speed on this CPU: one 3x3 conv (32 -> 32
channels, 100 images of 32x32, the 4-conv net's second block) forward and backward, in float32
and under bfloat16 autocast, interleaved, median of 5 after a warm-up.

    .venv/bin/python benchmarks/bf16_conv.py [--threads 1]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/bf16_conv.py

The second line runs PyTorch and oneDNN as on an AVX2-only CPU (their own switches). On a CPU
without native bfloat16 (no AVX-512-BF16 or AMX) bf16 is slower, not faster: what
taml.run.device.bf16_cpu_note says when --precision bf16 is asked for there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from taml.run.device import cpu_has_native_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 32, 32, 32, generator=generator)
    w = torch.randn(32, 32, 3, 3, generator=generator).requires_grad_()

    def once(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, w, padding=1)
        y.float().sum().backward()
        return time.perf_counter() - start

    times = {False: [], True: []}
    for round_ in range(args.repeats + 1):
        for bf16 in (False, True):
            seconds = once(bf16)
            if round_:
                times[bf16].append(seconds)
    fp32, bf16 = (statistics.median(times[k]) for k in (False, True))
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16 {cpu_has_native_bf16()}, {torch.get_num_threads()} thread(s)")
    print(f"conv 3x3 forward+backward: fp32 {1e3 * fp32:.1f} ms, bf16 {1e3 * bf16:.1f} ms "
          f"(bf16 / fp32 = {bf16 / fp32:.2f})")


if __name__ == "__main__":
    main()
