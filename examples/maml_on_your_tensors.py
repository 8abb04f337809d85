"""MAML on your own tensors: a labelled image tensor, your own small network, N-way
K-shot episodes drawn from it, and a plain PyTorch loop.

Here the tensor is scikit-learn's handwritten digits (1,797 real 8x8 images, no download;
classes 0-6 to meta-train, 7-9 to meta-test): replace `images, labels` with yours.

    python examples/maml_on_your_tensors.py --iterations 100
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn

import taml

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=20)
parser.add_argument("--way", type=int, default=3)
parser.add_argument("--shot", type=int, default=5)
parser.add_argument("--query", type=int, default=10)
parser.add_argument("--inner_lr", type=float, default=0.1)
args = parser.parse_args()

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16  # [1797,1,8,8]
labels = torch.tensor(digits.target)
rng = torch.Generator().manual_seed(0)


def episodes(classes: list[int], tasks: int):
    """[T, way*shot, 1, 8, 8] supports and [T, way*query, 1, 8, 8] queries, labels 0..way-1."""
    sx, sy, qx, qy = [], [], [], []
    for _ in range(tasks):
        chosen = torch.tensor(classes)[torch.randperm(len(classes), generator=rng)[:args.way]]
        s, q = [], []
        for c in chosen:
            rows = torch.nonzero(labels == c).flatten()
            rows = rows[torch.randperm(len(rows), generator=rng)[:args.shot + args.query]]
            s.append(rows[:args.shot])
            q.append(rows[args.shot:])
        s, q = torch.cat(s), torch.cat(q)
        sx.append(images[s])
        qx.append(images[q])
        sy.append(torch.arange(args.way).repeat_interleave(args.shot))
        qy.append(torch.arange(args.way).repeat_interleave(args.query))
    return torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy)


network = nn.Sequential(  # yours: conv / linear layers with batch norm
    nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten())
learner = taml.MAML(network, way=args.way, input_shape=(1, 8, 8), n_steps=5,
                   inner_lr=args.inner_lr)
optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
for iteration in range(1, args.iterations + 1):
    sx, sy, qx, qy = episodes(list(range(7)), tasks=4)
    optimiser.zero_grad()
    objective = learner.meta_objective(sx, sy, qx, qy)
    objective.loss.backward()
    optimiser.step()
    if iteration % 10 == 0 or iteration == args.iterations:
        print(f"iteration {iteration}: meta-loss {objective.loss.item():.3f}, "
              f"query accuracy {100 * objective.accuracy.mean().item():.1f}%")

sx, sy, qx, qy = episodes([7, 8, 9], tasks=20)  # classes never seen in meta-training
accuracy = (learner.predict(sx, sy, qx).argmax(-1) == qy).float().mean().item()
print(f"meta-test on digits 7-9: {100 * accuracy:.1f}% (chance {100 / args.way:.0f}%)")
