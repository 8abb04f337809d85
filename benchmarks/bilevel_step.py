"""Seconds per training step of ERM, TML, L2RW and MW-Net (taml.biased.methods) against the two
ways PyTorch users write these methods today, on the same network and batches.

    .venv/bin/python benchmarks/bilevel_step.py [--device cpu|cuda] [--repeats 10]
        [--warmup 2] [--network resnet32] [--batch 100] [--meta_batch 100]
        [--variants ...] [--quick] [--json PATH]

One training step = the method's meta-update (if any) + the real step (forward, backward,
momentum-SGD step), as the trainer runs it. Styles, for each bilevel method:

- ``ours``: ``build_method(...).step`` (the aligned route: first-order work plus one
  forward-mode pass; exact, see taml/biased/methods/core.py);
- ``unrolled``: ours through the differentiable lookahead (second order, functional_call);
- ``higher``: ``higher.innerloop_ctx`` (a differentiable SGD step on a monkey-patched copy),
  then a separate real forward/backward;
- ``deepcopy``: the originals' style (MW-Net's code): a fresh deep copy of the network per
  step, its parameters replaced by the looked-ahead tensors (module surgery), second
  order, then a separate real forward/backward.

The variants run interleaved, round by round, in one process (median over the rounds after
warm-up). Peak memory: each variant again in a fresh child process (one warm-up step, then
one measured step), with benchmarks/meta_iteration.py's ``PeakMemory`` (CUDA:
``max_memory_allocated``; CPU: peak resident set with glibc's mmap threshold pinned).
Random images and labels: no dataset needed. TML here updates its class weights every step
(``meta_every`` 1), the worst case; with the original's 10, 9 steps in 10 cost an ERM step.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import meta_iteration  # benchmarks/: PeakMemory, pin_mmap_threshold
import torch
import torch.nn.functional as F

from taml.biased.methods import MethodHyper, build_method, core
from taml.biased.methods.l2rw import weights_from_meta_gradient
from taml.biased.methods.mwnet import MWNet
from taml.biased.methods.tml import TML, project
from taml.biased.nets import build_network

BILEVEL = ("tml", "l2rw", "mwnet")
STYLES = ("ours", "unrolled", "higher", "deepcopy")
VARIANTS = ("erm",) + tuple(f"{m}-{s}" for m in BILEVEL for s in STYLES)
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4  # MW-Net's classifier optimizer
HP = MethodHyper(lookahead_lr=None, weight_decay=2e-3, meta_lr=0.1, meta_every=1)
MWNET_HP = MethodHyper(meta_lr=1e-3, meta_optimizer="adam")


def install(module: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """The originals' module surgery: each parameter replaced by a plain (non-leaf) tensor."""
    for name, tensor in params.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        del owner._parameters[leaf]
        setattr(owner, leaf, tensor)


class Reference:
    """One method written the way PyTorch users write it today (``higher`` or a deep copy
    per step); the meta-learned state lives in one of our method objects, whose update rule
    (projection, normalisation, V's optimizer) it reuses."""

    def __init__(self, method: str, style: str, num_classes: int):
        self.method, self.style = method, style
        if method == "tml":
            self.owner = TML(num_classes, HP)
        elif method == "mwnet":
            self.owner = MWNet(MWNET_HP)
        if style == "higher":
            import higher  # a dev dependency, only for this comparison
            self.higher = higher

    def meta_tensors(self, batch: int, like: torch.Tensor) -> list[torch.Tensor]:
        if self.method == "tml":
            return [self.owner.class_weights.to(like).requires_grad_()]
        if self.method == "l2rw":
            return [torch.zeros(batch, device=like.device, requires_grad=True)]
        self.owner.vnet.to(like.device)
        return list(self.owner.vnet.parameters())

    def coefficients(self, meta: list[torch.Tensor], losses: torch.Tensor, y) -> torch.Tensor:
        if self.method == "tml":
            return meta[0][y] / len(y)
        if self.method == "l2rw":
            return meta[0]
        return self.owner.vnet(losses) / len(y)

    def __call__(self, model, optimizer, x, y, meta_x, meta_y, lr) -> float:
        decay = HP.weight_decay if self.method == "tml" else 0.0
        step_size = 1.0 if self.method == "l2rw" else lr
        meta = self.meta_tensors(len(y), x)
        if self.style == "higher":
            inner = torch.optim.SGD(model.parameters(), lr=step_size, weight_decay=decay)
            with self.higher.innerloop_ctx(model, inner, copy_initial_weights=True) as (
                    fmodel, diffopt):
                losses = F.cross_entropy(fmodel(x), y, reduction="none")
                diffopt.step(core.weighted_loss(losses, self.coefficients(meta, losses.detach(),
                                                                          y)))
                meta_loss = F.cross_entropy(fmodel(meta_x), meta_y)
                if decay:
                    meta_loss = meta_loss + decay * sum(
                        (p * p).sum() for p in fmodel.parameters()) / 2
                grads = torch.autograd.grad(meta_loss, meta)
        else:
            pseudo = copy.deepcopy(model)
            params = dict(pseudo.named_parameters())
            losses = F.cross_entropy(pseudo(x), y, reduction="none")
            inner_loss = core.weighted_loss(losses, self.coefficients(meta, losses.detach(), y))
            inner_grads = torch.autograd.grad(inner_loss, list(params.values()),
                                              create_graph=True)
            ahead = {n: p - step_size * (g + decay * p)
                     for (n, p), g in zip(params.items(), inner_grads, strict=True)}
            install(pseudo, ahead)
            meta_loss = F.cross_entropy(pseudo(meta_x), meta_y)
            if decay:
                meta_loss = meta_loss + decay * core.half_squared_norm(ahead)
            grads = torch.autograd.grad(meta_loss, meta)

        real_meta = meta
        if self.method == "tml":  # the real step uses the weights before the update
            real_meta = [meta[0].detach()]
            _, self.owner.class_weights = project(meta[0].detach(), grads[0], HP.meta_lr)
        elif self.method == "mwnet":
            for p, g in zip(meta, grads, strict=True):
                p.grad = g
            self.owner.optimizer.step()
            self.owner.optimizer.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        losses = F.cross_entropy(model(x), y, reduction="none")
        with torch.no_grad():
            if self.method == "l2rw":
                weights = weights_from_meta_gradient(grads[0])
            else:
                weights = self.coefficients(real_meta, losses.detach(), y)
        loss = core.weighted_loss(losses, weights)
        loss.backward()
        optimizer.step()
        return loss.item()


class Ours:
    def __init__(self, method: str, route: str, num_classes: int):
        if method == "erm":
            self.method = build_method("erm", num_classes, HP)
        elif method == "tml":
            self.method = TML(num_classes, HP, route)
        elif method == "mwnet":
            self.method = MWNet(MWNET_HP, route)
        else:
            from taml.biased.methods.l2rw import L2RW
            self.method = L2RW(route)
        self.index = 0

    def __call__(self, model, optimizer, x, y, meta_x, meta_y, lr) -> float:
        optimizer.zero_grad(set_to_none=True)
        out = self.method.step(model, x, y, meta_x, meta_y, lr, self.index)
        out.loss.backward()
        optimizer.step()
        self.index += 1
        return out.loss.item()


def make_step(variant: str, num_classes: int):
    if variant == "erm":
        return Ours("erm", "aligned", num_classes)
    method, style = variant.split("-")
    if style in ("ours", "unrolled"):
        return Ours(method, "aligned" if style == "ours" else "unrolled", num_classes)
    return Reference(method, style, num_classes)


def make_model(args, device):
    torch.manual_seed(0)  # the same initial network for every variant
    model = build_network(args.network, args.num_classes, args.channels, args.image_size)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY, nesterov=True)
    return model, optimizer


def make_batches(args, device):
    g = torch.Generator().manual_seed(1)
    shape = (args.channels, args.image_size, args.image_size)
    x = torch.randn(args.batch, *shape, generator=g)
    meta_x = torch.randn(args.meta_batch, *shape, generator=g)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=g)
    meta_y = torch.randint(0, args.num_classes, (args.meta_batch,), generator=g)
    return [t.to(device) for t in (x, y, meta_x, meta_y)]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variants(args, device) -> dict[str, list[float]]:
    batches = make_batches(args, device)
    runs = {}
    for variant in args.variants:
        model, optimizer = make_model(args, device)
        runs[variant] = (make_step(variant, args.num_classes), model, optimizer)
    seconds = {variant: [] for variant in runs}
    for round_ in range(args.warmup + args.repeats):
        for variant, (step, model, optimizer) in runs.items():
            synchronize(device)
            start = time.perf_counter()
            step(model, optimizer, *batches, LR)
            synchronize(device)
            if round_ >= args.warmup:
                seconds[variant].append(time.perf_counter() - start)
    return seconds


def peak_memory_mb(args, device) -> float:
    """The child's job (``--memory_of VARIANT``): one warm-up step, then the measured one."""
    batches = make_batches(args, device)
    model, optimizer = make_model(args, device)
    step = make_step(args.memory_of, args.num_classes)
    step(model, optimizer, *batches, LR)
    with meta_iteration.PeakMemory(device) as memory:
        step(model, optimizer, *batches, LR)
    return memory.peak / 2**20


def peaks_in_fresh_processes(argv: list[str], variants) -> dict[str, float]:
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            out = Path(tmp) / f"{variant}.json"
            subprocess.run([sys.executable, __file__, *argv, "--memory_of", variant,
                            "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
            peaks[variant] = json.loads(out.read_text())["peak_memory_mb"]
    return peaks


def table(rows: dict) -> str:
    erm = rows.get("erm")
    lines = ["| method | style | s / step | x ERM | peak MB |", "|---|---|---|---|---|"]
    for variant, row in rows.items():
        method, _, style = variant.partition("-")
        ratio = f"{row['seconds'] / erm['seconds']:.2f}" if erm else "-"
        lines.append(f"| {method} | {style or '-'} | {row['seconds']:.4f} | {ratio} | "
                     f"{row['peak_memory_mb']:.1f} |")
    lines += ["", "| method | higher / ours | deepcopy / ours | unrolled / ours |",
              "|---|---|---|---|"]
    for method in BILEVEL:
        ours = rows.get(f"{method}-ours")
        if ours is None:
            continue
        cells = [f"{rows[f'{method}-{s}']['seconds'] / ours['seconds']:.2f}"
                 if f"{method}-{s}" in rows else "-" for s in ("higher", "deepcopy", "unrolled")]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--network", default="resnet32")
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--meta_batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: resnet8, 16x16 images, batch 4, meta batch 4, "
                        "1 warm-up, 1 repeat")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--memory_of", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.quick:
        args.network, args.image_size, args.batch, args.meta_batch = "resnet8", 16, 4, 4
        args.repeats, args.warmup = 1, 1
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible; use --device cpu")
    if any("higher" in v for v in args.variants):
        try:
            import higher  # noqa: F401
        except ImportError:
            p.error("the 'higher' variants need the package: .venv/bin/python -m pip install "
                    "higher (or pass --variants without them)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.memory_of:  # a child of peaks_in_fresh_processes
        if device.type == "cpu":
            meta_iteration.LIBC = meta_iteration.pin_mmap_threshold()
        args.json.write_text(json.dumps({"peak_memory_mb": peak_memory_mb(args, device)}))
        return {}

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; "
          f"{args.network} {args.channels}x{args.image_size}x{args.image_size}, batch "
          f"{args.batch}, meta batch {args.meta_batch}; median of {args.repeats} after "
          f"{args.warmup} warm-up", flush=True)
    seconds = time_variants(args, device)
    child_argv = [a for i, a in enumerate(argv)
                  if a != "--json" and (i == 0 or argv[i - 1] != "--json")]
    peaks = peaks_in_fresh_processes(child_argv, args.variants)
    rows = {v: {"seconds": statistics.median(s), "seconds_all": s,
                "peak_memory_mb": peaks[v]} for v, s in seconds.items()}
    results = {**meta_iteration.run_header(args, device),
               "device_name": (torch.cuda.get_device_name(device)
                               if device.type == "cuda" else "cpu"),
               "variants": rows}
    print(table(rows))
    meta_iteration.write_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
