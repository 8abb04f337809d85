"""Seconds per meta-training iteration: learn2learn's MAML against our MAML, Meta-SGD and
Bayesian TAML, on the same 4-conv net, the same tasks and the same inner steps, in float32
and in bfloat16.

    .venv/bin/python benchmarks/meta_iteration.py [--shape cifar|mimgnet|both]
        [--repeats 7] [--warmup 1] [--device cpu|cuda] [--task_batching auto|vmap|loop]
        [--precisions fp32 bf16 [tf32]] [--first_order] [--quick] [--json PATH]
        [--backbone conv4|resnet12]

``--backbone resnet12`` times our variants on ResNet-12 (the command line's
``--backbone resnet12``) instead of the 4-conv net; learn2learn's variant is conv4 only, so
leave ``l2l-maml`` out of ``--variants`` then.

One iteration = sample a meta-batch, forward, meta-objective, backward, element-wise clip
to ±3, Adam step (as taml.episodic.train: ``MetaLearner.meta_backward``, one backward per task on
the loop path). Every variant runs in every precision (bf16: ``--precision bf16``, the conv
blocks under autocast; learn2learn gets the same autocast around its module's forward;
tf32: float32 with TF32 tensor cores, CUDA only). They run interleaved, round by round, on
the same EpisodeBatch objects, in one process; the table gives medians over the rounds
after warm-up, the speed-up over learn2learn in the first precision (fp32: learn2learn as
people run it), and the relative error (L2 norm) of each precision's first meta-gradient
against the first precision's (same parameters, batch and posterior noise). Random uint8
images laid out as a meta-train split: no dataset needed. The run ends with docs/benchmarks.md's
markdown tables.

learn2learn's MAML (``l2l.algorithms.MAML``, second order unless --first_order) adapts an
``nn.Module`` with the same architecture (conv 3x3 (32) + ``nn.BatchNorm2d`` on batch
statistics + ReLU + 2x2 max pool, x4; a zero-initialised linear classifier, the same conv
initialisation as ours), each task cut to its real support rows, with the mean support
cross-entropy, one task at a time with a backward per task (learn2learn's examples).

Arithmetic: the floating-point operations of one iteration of each variant (forward and
every backward, counted once by ``torch.utils.flop_counter.FlopCounterMode``: convolutions
and matrix products, which is where the arithmetic is; element-wise ops are not counted),
its achieved GFLOP/s (FLOPs / median seconds) and that as a share of the machine's measured
peak in its precision: the median GFLOP/s of a large matmul in fp32, bf16 (and fp32 with
TF32 for tf32) timed in the same process. A small share means the time goes to overhead
and memory-bound element-wise work, not to the convolutions' arithmetic.

Peak memory, in a separate pass after the timed rounds: CUDA,
``torch.cuda.max_memory_allocated`` over one iteration; CPU, the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs) above its size before the iteration, with
glibc's mmap threshold pinned at 64 KiB (only for that pass: it slows allocation) so that
freed tensors are given back to the system and RSS follows the live tensors.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from taml.data.episodes import EpisodeBatch, EpisodeSampler
from taml.data.store import make_split
from taml.episodic.learners import conv4
from taml.episodic.learners.inner_loop import InnerLoopConfig
from taml.episodic.learners.meta_learner import MetaLearner, Switches
from taml.episodic.learners.resnet12 import ResNet12

GRAD_CLIP = 3.0  # as taml.episodic.train
SHAPES = {"cifar": 32, "mimgnet": 84}
VARIANTS = {  # name -> switches (None: learn2learn)
    "l2l-maml": None,
    "maml": Switches(),
    "meta-sgd": Switches(alpha_on=True),
    "bayesian-taml": Switches(True, True, True, True),
}


class L2LConvNet(nn.Module):
    """The 4-conv base learner as an ordinary module, for learn2learn to clone and adapt."""

    def __init__(self, theta: dict[str, torch.Tensor], image_size: int, way: int):
        super().__init__()
        layers = []
        for l in range(1, conv4.N_BLOCKS + 1):
            conv = nn.Conv2d(3 if l == 1 else 32, 32, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(theta[f"conv{l}_w"])
                conv.bias.copy_(theta[f"conv{l}_b"])
            layers += [conv, nn.BatchNorm2d(32, eps=conv4.BN_EPS,
                                            track_running_stats=False),
                       nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(conv4.feature_size(image_size), way)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def clip_and_step(params, optimizer) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-GRAD_CLIP, GRAD_CLIP)
    optimizer.step()


class L2LStep:
    def __init__(self, image_size, way, n_steps, inner_lr, first_order, device, theta,
                 precision="fp32"):
        import learn2learn as l2l  # imports gym, which warns: only where it is used

        self.model = L2LConvNet(theta, image_size, way).to(device)
        self.maml = l2l.algorithms.MAML(self.model, lr=inner_lr, first_order=first_order)
        self.optimizer = torch.optim.Adam(self.maml.parameters(), lr=1e-3)
        self.n_steps, self.precision = n_steps, precision
        self.first_gradient = None

    def logits(self, learner, x):
        """The module's forward under the same autocast as ours (losses stay float32)."""
        with conv4.autocast(x, taml_precision(self.precision)):
            return learner(x).float()

    def __call__(self, batch: EpisodeBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        with tf32(self.precision):
            for t, n in enumerate(batch.support_sizes.tolist()):
                xs = conv4.images_to_input(batch.support_images[t, :n])
                ys = batch.support_labels[t, :n]
                learner = self.maml.clone()
                for _ in range(self.n_steps):
                    learner.adapt(F.cross_entropy(self.logits(learner, xs), ys))
                xq = conv4.images_to_input(batch.query_images[t])
                loss = (F.cross_entropy(self.logits(learner, xq), batch.query_labels[t])
                        / batch.n_tasks)
                loss.backward()
                total += loss.item()
        record_first_gradient(self, self.maml.parameters())
        clip_and_step(self.maml.parameters(), self.optimizer)
        return total


class OursStep:
    def __init__(self, switches, image_size, way, max_shot, n_steps, inner_lr, first_order,
                 device, task_batching, precision="fp32", backbone="conv4"):
        inner = InnerLoopConfig(n_steps, inner_lr, first_order, taml_precision(precision))
        # --backbone resnet12: the command line's ResNet-12 (every variant from the same
        # kernels); conv4: its pure-function 4-conv net
        module = (ResNet12(generator=torch.Generator().manual_seed(0))
                  if backbone == "resnet12" else None)
        self.learner = MetaLearner(switches, image_size, way, max_shot, inner,
                                   backbone=module).to(device)
        self.optimizer = torch.optim.Adam(self.learner.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(0)
        self.task_batching, self.precision = task_batching, precision
        self.first_gradient = None

    def __call__(self, batch: EpisodeBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with tf32(self.precision):
            loss, _, _ = self.learner.meta_backward(batch, self.generator,
                                                    task_batching=self.task_batching)
        record_first_gradient(self, self.learner.parameters())
        clip_and_step(self.learner.parameters(), self.optimizer)
        return loss.item()


def record_first_gradient(step, params) -> None:
    """Keeps the first iteration's meta-gradient (float64, before the clip): every
    precision of a variant starts from the same parameters on the same first batch and
    posterior noise, so these give the reduced precision's error against fp32."""
    if step.first_gradient is None:
        step.first_gradient = torch.cat([p.grad.detach().double().flatten().cpu()
                                         for p in params if p.grad is not None])


def taml_precision(precision: str) -> str:
    """taml's ``--precision`` for a benchmark precision: tf32 is a float32 run with TF32
    matmuls and convolutions allowed (CUDA only, :func:`tf32`)."""
    return "fp32" if precision == "tf32" else precision


@contextlib.contextmanager
def tf32(precision: str):
    """TF32 tensor-core matmuls and convolutions for ``tf32`` (CUDA), else unchanged."""
    if precision != "tf32":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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


def matmul_peak_gflops(device: torch.device, precision: str, size: int = 2048,
                       repeats: int = 5, budget_s: float = 0.5) -> float:
    """GFLOP/s of a square matmul in ``precision`` (median of ``repeats`` after a warm-up):
    the machine's practical peak for dense arithmetic in that precision. The side doubles
    from 256 up to ``size`` while one product takes under ``budget_s``: on a CPU without
    native bfloat16 (AVX2) a 2048-side bf16 product takes ~40 s, which made the --quick
    smoke test run for minutes; there the peak comes from a smaller product."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    side = min(256, size)
    with tf32(precision):
        while True:
            a = torch.randn(side, side, device=device).to(dtype)
            b = torch.randn(side, side, device=device).to(dtype)
            times = []
            for round_ in range(repeats + 1):
                sync(device)
                start = time.perf_counter()
                torch.mm(a, b)
                sync(device)
                if round_:
                    times.append(time.perf_counter() - start)
            if side >= size or statistics.median(times) * 8 > budget_s:
                return 2 * side**3 / statistics.median(times) / 1e9
            side *= 2


def iteration_flops(step, batch: EpisodeBatch) -> int:
    """Floating-point operations of one iteration of ``step`` (conv and matmul, forward and
    all backward passes), counted while running it (the counter slows it: never timed)."""
    with FlopCounterMode(display=False) as counter:
        step(batch)
    return counter.get_total_flops()


def bench_shape(image_size: int, args, device: torch.device) -> dict:
    """Every (variant, precision) on the same meta-batches, interleaved round by round."""
    sampler = random_sampler(image_size, args.way, args.max_shot, args.query)
    rng = np.random.default_rng(1)
    theta = conv4.init_conv_params(torch.Generator().manual_seed(0))
    common = dict(image_size=image_size, way=args.way, n_steps=args.n_steps,
                  inner_lr=args.inner_lr, device=device)
    names = [name for name in VARIANTS if name in args.variants]
    if not args.first_order and "maml" in names:
        names.append("maml first-order")
    steps = {}
    for name in names:
        for precision in args.precisions:
            if name == "l2l-maml":
                step = L2LStep(first_order=args.first_order, theta=theta,
                               precision=precision, **common)
            else:
                switches = VARIANTS[name.removesuffix(" first-order")]
                step = OursStep(switches, max_shot=args.max_shot,
                                first_order=args.first_order or name.endswith("first-order"),
                                task_batching=args.task_batching, precision=precision,
                                backbone=args.backbone, **common)
            steps[name, precision] = step

    sampling, seconds, flops = [], {key: [] for key in steps}, {}
    for round_ in range(args.warmup + args.repeats):
        start = time.perf_counter()
        batch = sampler.sample(args.metabatch, rng).to(device)
        sync(device)
        sample_s = time.perf_counter() - start
        if round_ >= args.warmup:
            sampling.append(sample_s)
        for key, step in steps.items():
            if round_ == 0 and args.warmup > 0:  # the untimed warm-up also counts the FLOPs
                flops[key] = iteration_flops(step, batch)
                continue
            start = time.perf_counter()
            step(batch)
            sync(device)
            if round_ >= args.warmup:
                seconds[key].append(sample_s + time.perf_counter() - start)

    memory = PeakMemory(device)
    batch = sampler.sample(args.metabatch, rng).to(device)
    peaks = {}
    for key, step in steps.items():
        with memory:
            step(batch)
        peaks[key] = memory.peak
    for key, step in steps.items():  # no warm-up round counted them
        if key not in flops and not args.memory_pass:
            flops[key] = iteration_flops(step, batch)

    medians = {key: statistics.median(s) for key, s in seconds.items()}
    reference = medians.get(("l2l-maml", args.precisions[0]))
    sample_median = statistics.median(sampling)
    rows = {name: {} for name in names}
    for (name, precision), step in steps.items():
        exact = steps[name, args.precisions[0]].first_gradient
        error = (step.first_gradient - exact).norm() / exact.norm()
        rows[name][precision] = {
            "seconds": medians[name, precision],
            "seconds_all": seconds[name, precision],
            "ratio_to_l2l": medians[name, precision] / reference if reference else None,
            "sampler_share": sample_median / medians[name, precision],
            "peak_memory_mb": peaks[name, precision] / 2**20,
            "gflop": flops.get((name, precision), 0) / 1e9,
            "gflops_per_s": flops.get((name, precision), 0) / medians[name, precision] / 1e9,
            "gradient_error": float(error),
        }
    return {"image_size": image_size, "backbone": args.backbone,
            "sampler_seconds": sample_median, "variants": rows}


def cpu_peaks_in_a_fresh_process(argv: list[str]) -> dict:
    """Peak memory per shape, variant and precision, measured by this script in a child
    process with glibc's mmap threshold pinned from the start (``--memory_pass``).

    Not in the timing process: the pinned threshold makes every large tensor a fresh mmap
    (page faults) and slowed the timed iterations 1.5-3x; switched on late instead, freed
    heap chunks make the resident set over-count (measured 1.8 GB instead of 1.0 GB).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        subprocess.run([sys.executable, __file__, *argv, "--memory_pass", "--json", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        shapes = json.loads(out.read_text())["shapes"]
    return {shape: {name: {precision: row["peak_memory_mb"] for precision, row in rows.items()}
                    for name, rows in result["variants"].items()}
            for shape, result in shapes.items()}


LABELS = {"l2l-maml": "learn2learn MAML", "maml": "our MAML", "meta-sgd": "our Meta-SGD",
          "bayesian-taml": "our Bayesian TAML", "maml first-order": "our MAML, first order"}


def print_table(shape: str, result: dict, peaks: dict[str, float]) -> None:
    print(f"\n{shape} ({result['image_size']}x{result['image_size']}): sampler "
          f"{1e3 * result['sampler_seconds']:.1f} ms per meta-batch")
    print(f"{'variant':<18} {'prec':<5} {'s/iter':>8} {'x l2l':>7} {'l2l/x':>7} "
          f"{'sampler':>8} {'peak MB':>9} {'GFLOP':>8} {'GFLOP/s':>8} {'% peak':>7} "
          f"{'grad err':>9}")
    for name, by_precision in result["variants"].items():
        for precision, row in by_precision.items():
            ratio = row["ratio_to_l2l"]
            ratio_s = f"{ratio:>7.2f} {1 / ratio:>7.2f}" if ratio else f"{'-':>7} {'-':>7}"
            print(f"{name:<18} {precision:<5} {row['seconds']:>8.3f} {ratio_s} "
                  f"{100 * row['sampler_share']:>7.2f}% {row['peak_memory_mb']:>9.1f} "
                  f"{row['gflop']:>8.2f} {row['gflops_per_s']:>8.1f} "
                  f"{100 * row['gflops_per_s'] / peaks[precision]:>6.1f}% "
                  f"{row['gradient_error']:>9.2e}")


def markdown_table(result: dict, peaks: dict[str, float]) -> str:
    """docs/benchmarks.md's table: one row per variant, for each precision s/iter, speed-up over
    learn2learn's first precision (fp32: learn2learn as people run it), peak MB, GFLOP/s
    and % of that precision's measured matmul peak; and the meta-gradient's relative error
    against the first precision."""
    precisions = list(next(iter(result["variants"].values())))
    head = ["variant", "GFLOP"]
    for precision in precisions:
        head += [f"{precision} s/iter", f"{precision} speed-up", f"{precision} peak MB",
                 f"{precision} GFLOP/s", f"{precision} % peak"]
    head += [f"{precision} grad. error" for precision in precisions[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    suffix = " (ResNet-12)" if result.get("backbone") == "resnet12" else ""
    for name, by_precision in result["variants"].items():
        cells = [LABELS.get(name, name) + suffix, f"{by_precision[precisions[0]]['gflop']:.1f}"]
        for precision in precisions:
            row = by_precision[precision]
            speed_up = f"{1 / row['ratio_to_l2l']:.2f}" if row["ratio_to_l2l"] else "-"
            cells += [f"{row['seconds']:.3g}", speed_up, f"{row['peak_memory_mb']:.0f}",
                      f"{row['gflops_per_s']:.1f}",
                      f"{100 * row['gflops_per_s'] / peaks[precision]:.1f}"]
        cells += [f"{by_precision[p]['gradient_error']:.2g}" for p in precisions[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_episode_arguments(p: argparse.ArgumentParser) -> None:
    """The episode and inner-loop shape (the paper's: meta-batch 4, 5-way, 1-50 shots, 15
    queries, 5 steps of 0.5), shared with ``precision_error.py``."""
    p.add_argument("--metabatch", type=int, default=4)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--max_shot", type=int, default=50)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--n_steps", type=int, default=5)
    p.add_argument("--inner_lr", type=float, default=0.5)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=["cifar", "mimgnet", "both"], default="both")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--task_batching", choices=["auto", "vmap", "loop"], default="auto")
    p.add_argument("--first_order", action="store_true")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                   choices=["fp32", "bf16", "tf32"],
                   help="each variant in each (the first is the reference of the speed-up "
                        "and of the gradient error; tf32: CUDA only)")
    add_episode_arguments(p)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: cifar shape, 2 tasks, max_shot 5, query 2, 2 steps, "
                        "1 repeat, no warm-up")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--backbone", choices=["conv4", "resnet12"], default="conv4",
                   help="our variants' base learner (learn2learn's is the 4-conv net only)")
    p.add_argument("--memory_pass", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.memory_pass:  # the child of cpu_peaks_in_a_fresh_process: timings are discarded
        args.repeats, args.warmup = 1, 0
    if args.quick:
        args.shape = "cifar" if args.shape == "both" else args.shape
        args.metabatch, args.max_shot, args.query, args.n_steps = 2, 5, 2, 2
        args.repeats, args.warmup = 1, 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible; use --device cpu")
    if "tf32" in args.precisions and args.device != "cuda":
        p.error("--precisions tf32 is a CUDA mode (TF32 tensor cores); use --device cuda")
    if args.backbone != "conv4" and "l2l-maml" in args.variants:
        p.error("--backbone resnet12 times our variants only: leave l2l-maml out of "
                "--variants (learn2learn's variant is the 4-conv net)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.memory_pass:
        global LIBC
        LIBC = pin_mmap_threshold()
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"backbone {args.backbone}, "
          f"task_batching {args.task_batching}, {'first' if args.first_order else 'second'} "
          f"order; metabatch {args.metabatch}, {args.way}-way, max_shot {args.max_shot}, "
          f"query {args.query}, {args.n_steps} steps; median of {args.repeats} after "
          f"{args.warmup} warm-up")
    results = {**run_header(args, device), "shapes": {}}
    if not args.memory_pass:
        results["peak_gflops"] = {precision: matmul_peak_gflops(device, precision)
                                  for precision in dict.fromkeys(["fp32", *args.precisions])}
        print("measured peak (2048x2048 matmul): "
              + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in results["peak_gflops"].items()))
    for shape in shapes:
        results["shapes"][shape] = bench_shape(SHAPES[shape], args, device)
    if device.type == "cpu" and not args.memory_pass:
        child_argv = [a for i, a in enumerate(argv)
                      if a != "--json" and (i == 0 or argv[i - 1] != "--json")]
        for shape, peaks in cpu_peaks_in_a_fresh_process(child_argv).items():
            for name, by_precision in peaks.items():
                for precision, peak in by_precision.items():
                    rows = results["shapes"][shape]["variants"][name]
                    rows[precision]["peak_memory_mb"] = peak
    if not args.memory_pass:
        for shape in shapes:
            print_table(shape, results["shapes"][shape], results["peak_gflops"])
        for shape in shapes:
            print(f"\n{shape}, for docs/benchmarks.md:\n"
                  + markdown_table(results["shapes"][shape], results["peak_gflops"]))
    write_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
