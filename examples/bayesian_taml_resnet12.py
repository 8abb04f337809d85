"""Bayesian TAML on your own ResNet-12, in a plain PyTorch loop.

The tasks are imbalanced on purpose (each class of a task gets 1..max_shot support images,
as in the paper): that is where Bayesian TAML's balancing variables earn their keep. Your
episodes come from your own data; here a stand-in of random class templates plus noise
keeps the script self-contained. Tiny by default (CPU seconds); `--channels 64 160 320 640
--size 84` is the standard ResNet-12 at miniImageNet's size (use a GPU).

    python examples/bayesian_taml_resnet12.py --iterations 300
"""

import argparse

import torch

import taml

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=10)
parser.add_argument("--way", type=int, default=5)
parser.add_argument("--max_shot", type=int, default=5)
parser.add_argument("--query", type=int, default=5)
parser.add_argument("--size", type=int, default=16)
parser.add_argument("--alpha_init", type=float, default=0.01)
parser.add_argument("--channels", type=int, nargs=4, default=[8, 16, 32, 64])
args = parser.parse_args()
rng = torch.Generator().manual_seed(0)
templates = torch.rand(40, 3, args.size, args.size, generator=rng)  # your 40 classes


def meta_batch(tasks: int):
    """[T, N, 3, H, W] supports (classes of 1..max_shot images, padded), their labels and
    mask, and [T, way*query, 3, H, W] queries."""
    n = args.way * args.max_shot
    sx = torch.zeros(tasks, n, 3, args.size, args.size)
    sy = torch.zeros(tasks, n, dtype=torch.long)
    mask = torch.zeros(tasks, n, dtype=torch.bool)
    qx, qy = [], []
    for t in range(tasks):
        classes = torch.randperm(len(templates), generator=rng)[:args.way]
        shots = torch.randint(1, args.max_shot + 1, (args.way,), generator=rng)
        labels = torch.repeat_interleave(torch.arange(args.way), shots)
        real = len(labels)
        noise = 0.2 * torch.randn(real, 3, args.size, args.size, generator=rng)
        sx[t, :real] = templates[classes[labels]] + noise
        sy[t, :real], mask[t, :real] = labels, True  # real rows first, padding last
        q = torch.arange(args.way).repeat_interleave(args.query)
        qx.append(templates[classes[q]]
                  + 0.2 * torch.randn(len(q), 3, args.size, args.size, generator=rng))
        qy.append(q)
    return sx, sy, mask, torch.stack(qx), torch.stack(qy)


backbone = taml.ResNet12(in_channels=3, channels=tuple(args.channels))  # your module
learner = taml.BayesianTAML(backbone, way=args.way, input_shape=(3, args.size, args.size),
                            max_shot=args.max_shot, n_steps=3, first_order=True,
                            alpha_init=args.alpha_init)
optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
noise = torch.Generator().manual_seed(1)  # the posterior samples' noise
for iteration in range(1, args.iterations + 1):
    sx, sy, mask, qx, qy = meta_batch(tasks=2)
    optimiser.zero_grad()
    objective = learner.meta_objective(sx, sy, qx, qy, mask, generator=noise)
    objective.loss.backward()
    optimiser.step()
    print(f"iteration {iteration}: meta-loss {objective.loss.item():.3f}, query accuracy "
          f"{100 * objective.accuracy.mean().item():.1f}%")

test = meta_batch(tasks=4)  # meta-test: 4 new tasks, 5 posterior samples
probs = learner.predict(test[0], test[1], test[3], test[2], n_samples=5, generator=noise)
accuracy = (probs.argmax(-1) == test[4]).float().mean().item()
print(f"meta-test accuracy {100 * accuracy:.1f}% (chance {100 / args.way:.0f}%)")
# the balancing of the last meta-training task: its class sizes and the class weights
# softmax(omega) its inner loss used (the paper: smaller classes get larger weights)
shots = torch.bincount(sy[-1][mask[-1]], minlength=args.way)
weights = torch.softmax(objective.balancing["omega"][-1].detach(), -1)
print("class sizes -> weights: " + ", ".join(
    f"{n} -> {w:.3f}" for n, w in zip(shots.tolist(), weights.tolist(), strict=True)))
