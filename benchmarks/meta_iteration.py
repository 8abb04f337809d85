"""Seconds and peak memory per meta-training iteration: learn2learn's MAML against our MAML
and Bayesian TAML on the same backbone, for several backbones, second and first order.

    .venv/bin/python benchmarks/meta_iteration.py [--rows conv4-32 cnn-8 ...]
        [--orders second first] [--repeats 3] [--warmup 1] [--precision fp32|bf16]
        [--device cpu|cuda] [--compile] [--no_memory] [--threads N] [--quick] [--json PATH]
        [--max_shot N] [--query N] [--metabatch N] [--n_steps N]   (every row's episodes)

Each row (:data:`ROWS`) is one backbone ``nn.Module`` at one input size and episode shape;
every variant of the row starts from a copy of the same module (the same initial weights):

- ``l2l-maml``: learn2learn's MAML (``l2l.algorithms.MAML``) on the backbone plus a
  zero-initialised ``nn.Linear`` classifier, each task cut to its real support rows, the
  mean support cross-entropy, a backward per task (learn2learn's examples). It adapts every
  parameter, batch norm's too, and runs ``F.batch_norm`` (the module's own forward; the
  4-conv net's shift-only batch norm as :class:`ShiftOnlyBatchNorm`, the same function);
- ``maml`` / ``maml-vmap``: our MAML (``MetaLearner.meta_backward``, as the trainer runs it)
  with ``task_batching`` loop (one task at a time, cut to its real rows, a backward per
  task) and vmap (the padded meta-batch at once, masks);
- ``bayesian-taml``: our Bayesian TAML (all four switches, loop); its speed-up is over
  learn2learn's MAML on the same backbone (learn2learn has no Bayesian TAML);
- with ``--compile``, first order only: ``maml-compiled`` (our MAML's forward through
  ``torch.compile``), and ``predict`` / ``predict-compiled`` (meta-test's adapted query
  softmax, posterior means, under ``no_grad``; its speed-up is over eager ``predict``).

One iteration = sample a meta-batch, forward, meta-objective, backward, element-wise clip
to ±3, Adam step (as taml.episodic.train). The variants run interleaved, round by round, on
the same ``EpisodeBatch`` objects (random uint8 images laid out as a meta-train split: no
dataset needed), in one process; the table gives medians over the rounds after the warm-up
round(s), and each variant's speed-up over learn2learn's MAML of the same row and order.

Peak memory, in a separate pass (``--no_memory`` skips it): CUDA,
``torch.cuda.max_memory_allocated`` over one iteration; CPU, the peak resident set (VmHWM,
reset through /proc/self/clear_refs) above its size before the iteration, in a child
process with glibc's mmap threshold pinned at 64 KiB so that freed tensors are given back
to the system and the resident set follows the live tensors (in the timing process that
setting slowed the iterations 1.5-3x).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taml.data.episodes import EpisodeBatch, EpisodeSampler
from taml.data.store import make_split
from taml.episodic.learners.backbone import autocast
from taml.episodic.learners.conv4 import Conv4, images_to_input
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches, predictive_accuracy
from taml.episodic.learners.resnet12 import ResNet12

GRAD_CLIP = 3.0  # as taml.episodic.train
SHAPES = {"cifar": 32, "mimgnet": 84}  # the paper's input sizes (precision_error.py)
SWITCHES = {"maml": Switches(), "meta-sgd": Switches(alpha_on=True),
            "bayesian-taml": Switches(True, True, True, True)}


def small_cnn() -> nn.Module:
    """A user's network as the issue that asked for these rows built one: three 3x3 conv
    (32) + batch norm + ReLU blocks, a 2x2 max pool after the first two, average-pooled to
    2x2, and a linear layer to 64 features."""
    layers, channels = [], 3
    for block in range(3):
        layers += [nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
        if block < 2:
            layers.append(nn.MaxPool2d(2))
        channels = 32
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 64))


def resnet18() -> nn.Module:
    """torchvision's resnet18 (11M parameters) as a feature extractor (512 features)."""
    import torchvision

    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    return net


@dataclass(frozen=True)
class Row:
    """One backbone at one input size, and the episodes it is timed on (3-channel inputs)."""

    title: str
    backbone: Callable[[], nn.Module]
    image_size: int
    way: int = 5
    max_shot: int = 10
    query: int = 5
    metabatch: int = 4
    n_steps: int = 5


# name -> row; sizes cut from the paper's (max_shot 50, query 15) so that the whole table
# runs in about ten minutes on two CPU threads
ROWS = {
    "conv4-32": Row("4-conv net, 32 px", lambda: Conv4(generator=torch.Generator().manual_seed(0)),
                    32),
    "conv4-84": Row("4-conv net, 84 px", lambda: Conv4(generator=torch.Generator().manual_seed(0)),
                    84, metabatch=2),
    "cnn-8": Row("small CNN, 8 px", small_cnn, 8, way=4, max_shot=8),
    "cnn-28": Row("small CNN, 28 px", small_cnn, 28),
    "resnet12-32": Row("ResNet-12 (32-64-128-256), 32 px",
                       lambda: ResNet12(channels=(32, 64, 128, 256)), 32, max_shot=5,
                       metabatch=2, n_steps=3),
    "resnet18-32": Row("torchvision resnet18, 32 px", resnet18, 32, max_shot=5, query=3,
                       metabatch=2, n_steps=3),
}
# variant -> (label, what it is); the speed-up column divides learn2learn's MAML of the
# same row and order by the variant's time (predict-compiled: eager predict's)
VARIANTS = {
    "l2l-maml": "learn2learn MAML",
    "maml": "our MAML (loop)",
    "maml-vmap": "our MAML (vmap)",
    "bayesian-taml": "our Bayesian TAML (loop)",
    "maml-compiled": "our MAML (loop), torch.compile",
    "predict": "our MAML predict (meta-test)",
    "predict-compiled": "our MAML predict, torch.compile",
}
COMPILED = ("maml-compiled", "predict", "predict-compiled")  # --compile, first order only


class ShiftOnlyBatchNorm(nn.Module):
    """The 4-conv net's batch norm (a shift, no scale) for learn2learn: ``F.batch_norm``
    without affine parameters, then the shift. Passed as ``F.batch_norm``'s bias without a
    weight, the shift fails in the double backward ("Expected a proper Tensor but got None";
    torch 2.14): the same function, written the way that second order can differentiate."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.bias, self.eps = norm.bias, norm.eps

    def forward(self, x):
        return (F.batch_norm(x, None, None, training=True, eps=self.eps)
                + self.bias.view(1, -1, *([1] * (x.dim() - 2))))


def for_learn2learn(module: nn.Module) -> nn.Module:
    """``module`` with every scale-less batch norm as :class:`ShiftOnlyBatchNorm`."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.weight is None:
            setattr(module, name, ShiftOnlyBatchNorm(child))
        else:
            for_learn2learn(child)
    return module


class L2LModel(nn.Module):
    """The backbone plus a zero-initialised linear classifier, for learn2learn."""

    def __init__(self, backbone: nn.Module, features: int, way: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, way)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.backbone(x).flatten(1))


def clip_and_step(params, optimizer) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-GRAD_CLIP, GRAD_CLIP)
    optimizer.step()


class L2LStep:
    def __init__(self, backbone: nn.Module, features: int, row: Row, first_order: bool,
                 precision: str, device):
        import learn2learn as l2l  # imports gym, which warns: only where it is used

        self.model = L2LModel(for_learn2learn(backbone), features, row.way).to(device)
        self.maml = l2l.algorithms.MAML(self.model, lr=0.5, first_order=first_order)
        self.optimizer = torch.optim.Adam(self.maml.parameters(), lr=1e-3)
        self.n_steps, self.precision = row.n_steps, precision

    def logits(self, learner, x):
        """The module's forward under the same autocast as ours (losses stay float32)."""
        with autocast(x, self.precision):
            return learner(x).float()

    def __call__(self, batch: EpisodeBatch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for t, n in enumerate(batch.support_sizes.tolist()):
            xs = images_to_input(batch.support_images[t, :n])
            ys = batch.support_labels[t, :n]
            learner = self.maml.clone()
            for _ in range(self.n_steps):
                learner.adapt(F.cross_entropy(self.logits(learner, xs), ys))
            xq = images_to_input(batch.query_images[t])
            loss = F.cross_entropy(self.logits(learner, xq), batch.query_labels[t])
            (loss / batch.n_tasks).backward()
        clip_and_step(self.maml.parameters(), self.optimizer)


class OursStep:
    def __init__(self, backbone: nn.Module, row: Row, switches: Switches, first_order: bool,
                 precision: str, device, task_batching: str, compiled: bool = False):
        inner = InnerLoopConfig(row.n_steps, 0.5, first_order, precision)
        self.learner = MetaLearner(switches, row.image_size, row.way, row.max_shot, inner,
                                   backbone).to(device)
        self.optimizer = torch.optim.Adam(self.learner.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(0)
        self.task_batching = task_batching
        # the forward compiled, the backward as autograd runs it (meta_backward's loop
        # backpropagates inside: it is the eager reference's step)
        self.forward = torch.compile(self.learner) if compiled else self.learner
        self.compiled = compiled

    def __call__(self, batch: EpisodeBatch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.compiled:
            outputs = self.forward(batch, sample=True, generator=self.generator,
                                   task_batching=self.task_batching)
            F.cross_entropy(outputs.query_logits.transpose(1, 2), batch.query_labels).backward()
        else:
            self.learner.meta_backward(batch, self.generator, task_batching=self.task_batching)
        clip_and_step(self.learner.parameters(), self.optimizer)


class PredictStep:
    """Meta-test's prediction (posterior means, no meta-gradient), eager or compiled."""

    def __init__(self, backbone: nn.Module, row: Row, precision: str, device, compiled: bool):
        inner = InnerLoopConfig(row.n_steps, 0.5, False, precision)
        learner = MetaLearner(Switches(), row.image_size, row.way, row.max_shot, inner,
                              backbone).to(device)
        self.learner = torch.compile(learner) if compiled else learner

    def __call__(self, batch: EpisodeBatch) -> None:
        predictive_accuracy(self.learner, batch, 0, None, task_batching="loop")


def pin_mmap_threshold():
    """Large blocks mmapped and unmapped on free (M_MMAP_THRESHOLD = -3 at 64 KiB), so that
    the resident set follows the live tensors; must run before the big allocations."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    libc.mallopt(-3, 64 * 1024)
    return libc


LIBC = None


class PeakMemory:
    """Peak bytes above the starting point, over a ``with`` block."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            if LIBC is not None:
                LIBC.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.start = self._status("VmRSS:")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.peak = self._status("VmHWM:") - self.start


def run_header(args: argparse.Namespace, device: torch.device) -> dict:
    """What every benchmark's JSON starts with: the command, torch, device, threads, flags."""
    return {"command": " ".join(sys.argv), "torch": torch.__version__,
            "device": str(device), "threads": torch.get_num_threads(),
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()}}


def write_results(path: Path | None, results: dict) -> None:
    """The results as JSON at ``path`` (``--json``), if one was given."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))


def random_sampler(image_size, way, max_shot, query, n_classes=64, seed=0) -> EpisodeSampler:
    rng = np.random.default_rng(seed)
    per_class = max_shot + query + 5
    images = rng.integers(0, 256, (n_classes * per_class, image_size, image_size, 3), np.uint8)
    labels = np.repeat(np.arange(n_classes), per_class)
    split = make_split(images, labels, [f"c{i}" for i in range(n_classes)])
    return EpisodeSampler(split, way, max_shot, query)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_steps(row: Row, args, device) -> dict[tuple[str, str], Callable]:
    """(variant, order) -> one iteration, every one from a copy of the same module."""
    torch.manual_seed(0)  # the modules whose layers draw their default initialisation
    template = row.backbone()
    features = MetaLearner(Switches(), row.image_size, row.way, row.max_shot,
                           InnerLoopConfig(1, 0.5), copy.deepcopy(template)).dense_w.shape[0]
    steps = {}
    for order in args.orders:
        first = order == "first"
        for name in args.variants:
            if name in COMPILED and not (args.compile and first):
                continue
            backbone = copy.deepcopy(template)
            if name == "l2l-maml":
                step = L2LStep(backbone, features, row, first, args.precision, device)
            elif name.startswith("predict"):
                step = PredictStep(backbone, row, args.precision, device,
                                   compiled=name.endswith("compiled"))
            else:
                switches = SWITCHES["bayesian-taml" if name == "bayesian-taml" else "maml"]
                step = OursStep(backbone, row, switches, first, args.precision, device,
                                "vmap" if name == "maml-vmap" else "loop",
                                compiled=name == "maml-compiled")
            steps[name, order] = step
    return steps


def bench_row(row: Row, args, device: torch.device) -> dict:
    """Every (variant, order) of ``row`` on the same meta-batches, interleaved round by round."""
    sampler = random_sampler(row.image_size, row.way, row.max_shot, row.query)
    rng = np.random.default_rng(1)
    steps = make_steps(row, args, device)
    seconds = {key: [] for key in steps}
    for round_ in range(args.warmup + args.repeats):
        batch = sampler.sample(row.metabatch, rng).to(device)
        # a round's order rotates, so that no variant always runs after the same one
        keys = list(steps)
        keys = keys[round_ % len(keys):] + keys[:round_ % len(keys)]
        for key in keys:
            sync(device)
            start = time.perf_counter()
            steps[key](batch)
            sync(device)
            if round_ >= args.warmup:
                seconds[key].append(time.perf_counter() - start)
    peaks = {}
    if args.memory_pass or device.type == "cuda":
        memory = PeakMemory(device)
        batch = sampler.sample(row.metabatch, rng).to(device)
        for key, step in steps.items():
            with memory:
                step(batch)
            peaks[key] = memory.peak
    variants = {}
    for (name, order), times in seconds.items():
        median = statistics.median(times)
        reference = ("predict", order) if name == "predict-compiled" else ("l2l-maml", order)
        base = statistics.median(seconds[reference]) if reference in seconds else None
        variants.setdefault(order, {})[name] = {
            "seconds": median, "seconds_all": times,
            "speed_up": base / median if base and name != "predict" else None,
            "peak_memory_mb": peaks[name, order] / 2**20 if (name, order) in peaks else None,
        }
    return {"title": row.title, "shape": row.__dict__ | {"backbone": None}, "orders": variants}


def cpu_peaks_in_a_fresh_process(argv: list[str]) -> dict:
    """Peak memory per row, order and variant, measured by this script in a child process
    with glibc's mmap threshold pinned from the start (``--memory_pass``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        subprocess.run([sys.executable, __file__, *argv, "--memory_pass", "--json", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())["rows"]


def markdown_table(results: dict) -> str:
    """docs/benchmarks.md's table: one line per row, order and variant."""
    lines = ["| backbone | episodes | order | variant | s/iter | speed-up | peak MB | "
             "memory / l2l |", "|---|---|---|---|---|---|---|---|"]
    for result in results["rows"].values():
        shape = result["shape"]
        episodes = (f"{shape['way']}-way, 1–{shape['max_shot']} shots, {shape['query']} "
                    f"queries, {shape['metabatch']} tasks, {shape['n_steps']} steps")
        for order, variants in result["orders"].items():
            l2l_peak = (variants.get("l2l-maml") or {}).get("peak_memory_mb")
            for name, cell in variants.items():
                peak = cell["peak_memory_mb"]
                lines.append("| " + " | ".join([
                    result["title"], episodes, order, VARIANTS[name],
                    f"{cell['seconds']:.3g}",
                    f"{cell['speed_up']:.2f}" if cell["speed_up"] else "-",
                    f"{peak:.0f}" if peak is not None else "-",
                    f"{peak / l2l_peak:.2f}" if peak is not None and l2l_peak else "-"]) + " |")
    return "\n".join(lines)


def add_episode_arguments(p: argparse.ArgumentParser) -> None:
    """The episode and inner-loop shape of the paper (meta-batch 4, 5-way, 1-50 shots, 15
    queries, 5 steps of 0.5), for ``precision_error.py`` and ``profile_iteration.py``."""
    p.add_argument("--metabatch", type=int, default=4)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--max_shot", type=int, default=50)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--n_steps", type=int, default=5)
    p.add_argument("--inner_lr", type=float, default=0.5)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--orders", nargs="+", default=["second", "first"], choices=["second", "first"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="every variant's (bf16: the backbone under autocast, learn2learn's too)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--compile", action="store_true",
                   help="also the torch.compile variants (first order; compiling takes minutes)")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    for field in ("max_shot", "query", "metabatch", "n_steps"):
        p.add_argument(f"--{field}", type=int, default=None,
                       help=f"every row's {field} (default: each row's own)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: the small CNN at 8 px, 2 tasks, 2 steps, 1 round")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--memory_pass", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("max_shot", "query", "metabatch", "n_steps")
                 if getattr(args, k) is not None}
    rows = {k: Row(**{**v.__dict__, **overrides}) for k, v in ROWS.items()}
    if args.quick:
        args.repeats, args.warmup = 1, 0
        if args.rows == list(ROWS):
            args.rows = ["cnn-8"]
        rows = {k: Row(**{**v.__dict__, "metabatch": 2, "n_steps": 2, "max_shot": 3,
                          "query": 2}) for k, v in ROWS.items()}
    if args.memory_pass:  # the child of cpu_peaks_in_a_fresh_process: timings are discarded
        args.repeats, args.warmup = 1, 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.memory_pass:
        global LIBC
        LIBC = pin_mmap_threshold()

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{args.precision}, orders {' '.join(args.orders)}; median of {args.repeats} after "
          f"{args.warmup} warm-up")
    results = {**run_header(args, device), "rows": {}}
    for name in args.rows:
        results["rows"][name] = result = bench_row(rows[name], args, device)
        if not args.memory_pass:
            for order, variants in result["orders"].items():
                for variant, cell in variants.items():
                    speed_up = f"{cell['speed_up']:.2f}x" if cell["speed_up"] else "-"
                    print(f"{name:<12} {order:<6} {variant:<17} {cell['seconds']:8.3f} s "
                          f"{speed_up:>7}", flush=True)
    if device.type == "cpu" and not args.memory_pass and not args.no_memory:
        child_argv = [a for i, a in enumerate(argv)
                      if a != "--json" and (i == 0 or argv[i - 1] != "--json")]
        for name, result in cpu_peaks_in_a_fresh_process(child_argv).items():
            for order, variants in result["orders"].items():
                for variant, cell in variants.items():
                    ours = results["rows"][name]["orders"][order][variant]
                    ours["peak_memory_mb"] = cell["peak_memory_mb"]
    if not args.memory_pass:
        print("\nfor docs/benchmarks.md:\n" + markdown_table(results))
    write_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
