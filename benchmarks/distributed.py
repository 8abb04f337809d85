"""Seconds per meta-iteration of main.py's meta-training with 1 process vs K under torchrun.

    .venv/bin/python benchmarks/distributed.py [--nproc 2] [--iters 4] [--n_steps 5] [--taml]

Writes random uint8 stores shaped as CIFAR-FS (64 meta-train classes x 600 images, 32 px)
to a temporary data root, so it needs no dataset on disk. Each run meta-trains
``2 * iters`` iterations with ``--log_freq iters`` and reports the second window (the first
holds the warm-up). The CPU's cores are split evenly: OMP_NUM_THREADS = cores / processes.
Only 127.0.0.1 is used for the rendezvous.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from taml.data.store import make_split, save_split

ROOT = Path(__file__).resolve().parents[1]


def write_stores(root: Path, image_size: int = 32) -> None:
    rng = np.random.default_rng(0)
    for name, split, n_classes, per_class in (("cifar", "train", 64, 600),
                                              ("cifar", "valid", 16, 100),
                                              ("svhn", "valid", 10, 100)):
        images = rng.integers(0, 256, (n_classes * per_class, image_size, image_size, 3),
                              np.uint8)
        labels = np.repeat(np.arange(n_classes), per_class)
        save_split(root / name, split, make_split(images, labels,
                                                  [f"c{i}" for i in range(n_classes)]))


def seconds_per_iteration(nproc: int, flags: list[str], savedir: Path) -> float:
    cores = os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // nproc)),
           "GLOO_SOCKET_IFNAME": "lo"}
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
        "--nproc_per_node", str(nproc), "--rdzv_backend", "c10d",
        "--rdzv_endpoint", "127.0.0.1:0"]
    subprocess.run([*launcher, "main.py", *flags, "--savedir", str(savedir)], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    with open(savedir / "train_metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["seconds_per_iter"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--iters", type=int, default=4, help="iterations per timed window")
    p.add_argument("--n_steps", type=int, default=5)
    p.add_argument("--metabatch", type=int, default=4)
    p.add_argument("--taml", action="store_true", help="all four switches on (else MAML)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_stores(tmp / "data")
        flags = ["--mode", "meta_train", "--data_root", str(tmp / "data"), "--device", "cpu",
                 "--way", "5", "--max_shot", "50", "--query", "15",
                 "--n_steps", str(args.n_steps), "--metabatch", str(args.metabatch),
                 "--n_train_iters", str(2 * args.iters), "--log_freq", str(args.iters),
                 "--val_freq", "1000000", "--save_freq", "1000000", "--no_progress"]
        if args.taml:
            flags += ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]
        print(f"CIFAR-FS shape: 5-way, 1-50 shot, 15 query, {args.n_steps} inner steps, "
              f"metabatch {args.metabatch}, {'TAML' if args.taml else 'MAML'}; "
              f"{os.cpu_count()} cores")
        base = None
        for nproc in (1, args.nproc):
            seconds = seconds_per_iteration(nproc, flags, tmp / f"run{nproc}")
            base = base or seconds
            print(f"{nproc} process(es): {seconds:.3f} s/iter  (speed-up {base / seconds:.2f}x)")


if __name__ == "__main__":
    main()
