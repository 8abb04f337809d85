"""Accuracy, not speed: taml's MAML with each head against learn2learn's MAML on one fixed
imbalanced-digits protocol, the same episodes and initial weights for every row.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/head_digits.py [--seeds 0 1 2]
        [--iterations 150] [--test_tasks 100] [--rows taml-learned-0.1 l2l-0.1 ...]

The protocol (issue 38's trial): scikit-learn's UCI digits (8x8, no download); digits 0-5
meta-train, 6-9 meta-test (classes never trained on); 4-way tasks of 1-8 shots per class
(``taml.EpisodeBuilder``, the paper's "both" sampler) and 5 queries per class; meta-batch 4,
3 inner steps, second order, Adam 1e-3 on the meta-parameters; 100 test tasks adapted with
the same 3 steps. A user's small CNN (3 x [conv 3x3 (32) + batch norm + ReLU], 2x2 max pool
after the first two) with a linear classifier of 4 outputs.

Rows: ``taml-learned-LR`` (``head="learned"``: the linear classifier's initialisation is
meta-learned, and starts at the same values as learn2learn's), ``taml-zero-LR`` (the
original's zero head), ``taml-backbone-LR`` (``head="backbone"``: the user's module with its
own last linear layer is the whole classifier), ``l2l-LR`` (``learn2learn.algorithms.MAML``
on that same module, each task cut to its real rows, train mode: batch statistics, as
learn2learn's examples). Every row starts from the same convolution weights (one seed) and
sees the same meta-batches and test tasks. One difference remains by design: taml
meta-learns batch norm's scale and shift but never adapts them, learn2learn adapts every
parameter. Per seed, the mean test accuracy over the tasks; then mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import taml

WAY, MAX_SHOT, QUERY, META_BATCH, STEPS = 4, 8, 5, 4, 3


def network(seed: int, with_classifier: bool) -> nn.Module:
    """The user's CNN; the same weights for a seed, the classifier drawn last."""
    torch.manual_seed(seed)
    layers = []
    for i, c_in in enumerate((1, 32, 32)):
        layers += [nn.Conv2d(c_in, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    classifier = nn.Linear(32 * 2 * 2, WAY)
    return nn.Sequential(*layers, classifier) if with_classifier else nn.Sequential(*layers)


def episodes(seed: int, iterations: int, test_tasks: int):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(1000 + seed)
    train = taml.EpisodeBuilder(x, y, way=WAY, max_shot=MAX_SHOT, query=QUERY,
                                classes=range(6))
    test = taml.EpisodeBuilder(x, y, way=WAY, max_shot=MAX_SHOT, query=QUERY,
                               classes=range(6, 10))
    return ([train.sample(META_BATCH, generator=g) for _ in range(iterations)],
            [test.sample(1, generator=g) for _ in range(test_tasks)])


def run_taml(head: str, lr: float, seed: int, train, test) -> float:
    full = network(seed, with_classifier=True)
    body = full if head == "backbone" else nn.Sequential(*list(full)[:-1])
    learner = taml.MAML(body, WAY, (1, 8, 8), n_steps=STEPS, inner_lr=lr, head=head)
    if head == "learned":  # start from learn2learn's classifier
        with torch.no_grad():
            learner.dense_w.copy_(full[-1].weight.T)
            learner.dense_b.copy_(full[-1].bias)
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
    for batch in train:
        optimiser.zero_grad()
        learner.meta_objective(*batch).loss.backward()
        optimiser.step()
    hits = [(learner.predict(b.support_x, b.support_y, b.query_x, b.support_mask).argmax(-1)
             == b.query_y).float().mean() for b in test]
    return float(torch.stack(hits).mean())


def run_l2l(lr: float, seed: int, train, test) -> float:
    import learn2learn as l2l

    maml = l2l.algorithms.MAML(network(seed, with_classifier=True), lr=lr, first_order=False)
    optimiser = torch.optim.Adam(maml.parameters(), lr=1e-3)

    def adapted(b, t):
        n = int(b.support_mask[t].sum())
        learner = maml.clone()
        for _ in range(STEPS):
            learner.adapt(F.cross_entropy(learner(b.support_x[t, :n]), b.support_y[t, :n]))
        return learner

    for b in train:
        optimiser.zero_grad()
        for t in range(META_BATCH):  # a backward per task, as learn2learn's examples
            loss = F.cross_entropy(adapted(b, t)(b.query_x[t]), b.query_y[t]) / META_BATCH
            loss.backward()
        optimiser.step()
    hits = []
    for b in test:
        logits = adapted(b, 0)(b.query_x[0]).detach()
        hits.append((logits.argmax(-1) == b.query_y[0]).float().mean())
    return float(torch.stack(hits).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--test_tasks", type=int, default=100)
    parser.add_argument("--rows", nargs="+", default=["taml-learned-0.1", "l2l-0.1",
                                                        "taml-zero-0.1", "taml-zero-0.5",
                                                        "taml-backbone-0.1"])
    args = parser.parse_args()
    results: dict[str, list[float]] = {row: [] for row in args.rows}
    for seed in args.seeds:
        train, test = episodes(seed, args.iterations, args.test_tasks)
        for row in args.rows:
            start = time.perf_counter()
            *kind, lr = row.split("-")
            lr = float(lr)
            accuracy = (run_l2l(lr, seed, train, test) if kind == ["l2l"]
                        else run_taml(kind[1], lr, seed, train, test))
            results[row].append(100 * accuracy)
            print(f"seed {seed} {row}: {100 * accuracy:.2f}% "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n| row | {' | '.join(f'seed {s}' for s in args.seeds)} | mean ± std |")
    print(f"|---|{'---|' * len(args.seeds)}---|")
    for row, values in results.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {row} | {' | '.join(f'{v:.2f}' for v in values)} | "
              f"{statistics.mean(values):.2f} ± {spread:.2f} |")


if __name__ == "__main__":
    main()
